"""Counter terms b_k(tau): closed form against per-k recurrence, literature values, oracles."""

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy

from hbflow import Tree, coefficients_at, coefficients_up_to, counter_terms, trees_up_to

T = Tree.from_level_sequence
beta, k = sympy.symbols("beta k")


@pytest.fixture(scope="module", params=["hb", "nag"])
def ct5(request):
    return counter_terms(5, request.param)


def test_leading_coefficient_is_gamma_k(ct5):
    # docs/theory.md#heavy-ball-flow: b_k(•) = (1 - beta^(k+1)) / (1 - beta) for every k
    # (symbolic k).
    expected = (1 - beta ** (k + 1)) / (1 - beta)
    assert sympy.simplify(sympy.expand(ct5.closed_form(T([1])) - expected)) == 0
    for kk in range(12):
        assert (
            sympy.cancel(coefficients_at(1, kk, method=ct5.method)[T([1])] - expected.subs(k, kk))
            == 0
        )


def test_closed_form_equals_per_k_recurrence(ct5):
    # Two constructions: the exponential polynomial in a symbolic k, and the recurrence of the
    # theory document run for each k = 0..10, exact rational functions of beta.  Both take the log
    # of a composition with the same Character, compose, inverse and log, so a bug there passes
    # this test; tests/test_independent_log.py checks the closed form without that code.
    per_k = coefficients_up_to(5, 10, method=ct5.method, as_sympy=False)
    for kk, values in enumerate(per_k):
        assert ct5.at(kk, as_sympy=False) == values, f"k = {kk}"


def test_closed_form_equals_per_k_at_rational_beta(ct5):
    per_k = coefficients_up_to(5, 25, method=ct5.method, beta=Fraction(7, 9), as_sympy=False)
    for kk in (0, 1, 13, 25):
        assert ct5.at(kk, beta="7/9", as_sympy=False) == per_k[kk]


# Explicit Euler's modified equation, HLW (Hairer, Lubich & Wanner, Geometric Numerical
# Integration, 2nd ed., Springer 2006), Section IX.1, the explicit Euler example, also quoted in
# docs/theory.md#heavy-ball-flow:
#   f_h = f - h/2 f'f + h^2 (1/12 f''(f,f) + 1/3 f'f'f) + O(h^3),
# i.e. b/sigma = 1, -1/2, 1/12, 1/3 on •, [•], [•,•], [[•]].
HLW_EULER = {
    (1,): 1,
    (1, 2): Fraction(-1, 2),
    (1, 2, 2): Fraction(1, 12),
    (1, 2, 3): Fraction(1, 3),
}


@pytest.mark.parametrize("method", ["gd", "hb", "nag"])
def test_beta_zero_is_explicit_euler(method):
    gd = counter_terms(4, "gd")
    for t, value in HLW_EULER.items():
        tree = T(t)
        assert gd.steady_state(tree) / tree.sigma == value
    # hb and nag at beta = 0 are gradient descent: the same character for every k.
    for kk in range(4):
        at = coefficients_at(4, kk, method=method, beta=0)
        assert all(at[t] == gd.steady_state(t) for t in gd.trees)


def _euler_modified_field_scalar(f, y, h, order):
    """Independent construction (no trees): the scalar field F_h = sum h^n f_(n+1) whose exact
    time-h flow, expanded by the Lie series sum h^n/n! D^n y with D = F_h d/dy, equals the Euler
    step y + h f(y) to O(h^(order+1)) (the construction of HLW Section IX.1)."""
    parts = [f]
    for n in range(1, order):
        unknown = sympy.Symbol("unknown")
        field = sum(h**i * p for i, p in enumerate(parts)) + h**n * unknown
        term, flow = y, y
        for m in range(1, n + 2):
            term = sympy.expand(field * sympy.diff(term, y))
            flow += h**m / sympy.factorial(m) * term
        coeff = sympy.expand(flow).coeff(h, n + 1)
        parts.append(sympy.solve(coeff, unknown)[0])
    return sum(h**i * p for i, p in enumerate(parts))


@pytest.mark.parametrize("f_of_y", ["y**2", "exp(y)", "y**3 - y", "sin(y)"])
def test_gd_order_four_against_scalar_modified_equation(f_of_y):
    y, h = sympy.symbols("y h")
    f = sympy.sympify(f_of_y, locals={"y": y})
    expected = _euler_modified_field_scalar(f, y, h, 4)
    gd = counter_terms(4, "gd")
    F = {}
    for t in trees_up_to(4):
        value = sympy.diff(f, y, len(t.children))
        for c in t.children:
            value *= F[c]
        F[t] = value
    field = sum(h ** (t.order - 1) * gd.steady_state(t) / t.sigma * F[t] for t in gd.trees)
    assert sympy.simplify(sympy.expand(field - expected)) == 0


def test_steady_state_is_the_limit_and_matches_first_order_modified_loss(ct5):
    # docs/theory.md#closed-form-and-steady-state: du/dt = -grad L~/(1-beta),
    # L~ = L + eta (1+beta)/(4(1-beta)^2) |grad L|^2, so
    # b_inf(•) = 1/(1-beta) and (grad |grad L|^2 = 2 H grad L) b_inf([•]) = -(1+beta)/(2(1-beta)^3).
    if ct5.method == "hb":
        assert sympy.simplify(ct5.steady_state(T([1])) - 1 / (1 - beta)) == 0
        expected = -(1 + beta) / (2 * (1 - beta) ** 3)
        assert sympy.simplify(ct5.steady_state(T([1, 2])) - expected) == 0
    # The steady state is the k -> oo limit of the per-k recurrence (the second construction):
    b = Fraction(1, 3)
    late = coefficients_at(5, 60, method=ct5.method, beta=b, as_sympy=False)
    for t in ct5.trees:
        steady = ct5.exponential_terms(t)[(0, 0)](b)
        assert abs(late[t](b) - steady) < Fraction(1, 10**20) * max(1, abs(steady))
    # ... and the closed form minus the steady state is made of beta^(jk) terms with j >= 1.
    for t in ct5.trees:
        assert all(j >= 1 for (j, m) in ct5.exponential_terms(t) if (j, m) != (0, 0))


def test_steady_state_grows_no_polynomial_in_k(ct5):
    for t in ct5.trees:
        assert not [m for (j, m) in ct5.exponential_terms(t) if j == 0 and m > 0]


@pytest.mark.parametrize("method", ["hb", "nag"])
def test_quadratic_oracle_on_tall_trees(method):
    # L = lambda u^2 / 2: the iterates are u_k = p_k(z) u_0 with z = eta*lambda and
    # p_{k+1} = (1+beta) p_k - beta p_{k-1} - z ((1+a) p_k - a p_{k-1}), p_{-1} = p_0 = 1.
    # Only the tall trees (1,2,...,n) survive, F = (-lambda)^n u, so
    # sum_n b_k(tall_n) (-z)^n = log(p_{k+1}(z) / p_k(z)) as a power series in z.
    order = 5
    z = sympy.Symbol("z")
    a = beta if method == "nag" else 0
    ct = counter_terms(order, method)
    p_prev = p = sympy.Integer(1)
    for kk in range(5):
        p_next = sympy.expand((1 + beta) * p - beta * p_prev - z * ((1 + a) * p - a * p_prev))
        series = sympy.series(sympy.log(p_next / p), z, 0, order + 1).removeO()
        at = ct.at(kk)
        for n in range(1, order + 1):
            tall = T(range(1, n + 1))
            assert sympy.cancel(series.coeff(z, n) - at[tall] * (-1) ** n) == 0, (kk, n)
        p_prev, p = p, p_next


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_order(bad):
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        counter_terms(bad)


@pytest.mark.parametrize("bad", [1, -0.1, 1.5, "x", float("nan")])
def test_bad_beta(bad):
    with pytest.raises(ValueError, match=r"beta must be .*\[0, 1\)"):
        coefficients_at(2, 0, beta=bad)


def test_bad_method_and_k():
    with pytest.raises(ValueError, match="method must be one of hb, nag, gd, nesterov, qhm"):
        counter_terms(2, "adam")
    with pytest.raises(ValueError, match="k must be an integer >= 0"):
        counter_terms(2).at(-1)


def test_float_table_near_beta_one_is_exact_to_rounding():
    # beta = 0.99: the closed form cancels catastrophically in float64 at small k (poles up to
    # (1-beta)^-7 at order 4). The table must match the exact per-k recurrence at the exact
    # binary value of 0.99 to rounding, where term-by-term float64 summation does not.
    ct = counter_terms(4, "hb")
    exact_beta = Fraction(0.99)
    table = ct.coefficient_table(0.99, 30)
    per_k = coefficients_up_to(4, 29, method="hb", beta=exact_beta, as_sympy=False)
    for kk in range(30):
        for i, t in enumerate(ct.trees):
            exact = per_k[kk][t](exact_beta)
            assert abs(table[kk, i] - float(exact)) <= 2**-50 * abs(float(exact)), (kk, t)
    tall = T([1, 2, 3, 4])
    naive = sum(float(c(exact_beta)) * 0**m for (j, m), c in ct.exponential_terms(tall).items())
    assert abs(naive - (-0.25)) > 1e-2  # the hazard the table avoids
    assert table[0, ct.trees.index(tall)] == -0.25


def _mpmath_table(ct, beta: float, num_pieces: int) -> np.ndarray:
    """Reference: each entry summed term by term in mpmath with digits to spare, rounded once."""
    b = Fraction(beta)
    out = np.empty((num_pieces, len(ct.trees)))
    for i, tree in enumerate(ct.trees):
        terms = {jm: c(b) for jm, c in ct.exponential_terms(tree).items()}
        for kk in range(num_pieces):
            parts = [c * kk**m * b ** (j * kk) for (j, m), c in terms.items()]
            biggest = max((abs(p) for p in parts if p), default=Fraction(1))
            digits = 80 + max(
                0, int(mpmath.log10(mpmath.mpf(biggest.numerator) / biggest.denominator))
            )
            with mpmath.workdps(digits):
                total = mpmath.fsum(mpmath.mpf(p.numerator) / p.denominator for p in parts)
                if abs(total) < mpmath.mpf(10) ** (20 - digits) * biggest:
                    total = sum(parts)  # lost to cancellation (an exact zero): in rationals
                out[kk, i] = float(total)
    return out


def _exact_table(ct, beta: float, num_pieces: int) -> np.ndarray:
    """Reference: the exact per-k recurrence (no closed form) rounded once by Fraction."""
    b = Fraction(beta)
    per_k = coefficients_up_to(ct.order, num_pieces - 1, method=ct.method, beta=b, as_sympy=False)
    return np.array([[float(per_k[kk][t](b)) for t in ct.trees] for kk in range(num_pieces)])


def _same_bits(a, b):
    return np.array_equal(np.asarray(a).view(np.int64), np.asarray(b).view(np.int64))


@pytest.mark.parametrize(
    "method, order, beta, num_pieces",
    [
        ("hb", 4, 0.99, 30),
        ("nag", 4, 0.99, 30),
        ("hb", 3, 1e-200, 4),
        ("nag", 3, 1e-5, 12),
        ("hb", 3, 5e-324, 4),  # the smallest subnormal
        ("nag", 2, 0.5, 80),
    ],
)
def test_table_is_correctly_rounded(method, order, beta, num_pieces):
    # Bit for bit equal to a generous mpmath evaluation and to the exact recurrence rounded
    # once (including the sign of exact zeros).
    ct = counter_terms(order, method)
    table = ct.coefficient_table(beta, num_pieces)
    assert _same_bits(table, _mpmath_table(ct, beta, num_pieces))
    assert _same_bits(table, _exact_table(ct, beta, num_pieces))


def test_table_near_a_rounding_tie_uses_no_unchecked_cutoff():
    # nag, beta = 1/2, piece 54 of [•]: the transient is ~2^-50 of the steady state, and it
    # decides the last bit. A cut-off "below 2^-64, use the steady state" must be checked.
    ct = counter_terms(2, "nag")
    exact = _exact_table(ct, 0.5, 60)
    assert _same_bits(ct.coefficient_table(0.5, 60), exact)
    assert exact[54, 1] != float(ct.exponential_terms(ct.trees[1])[(0, 0)](Fraction(1, 2)))


def test_long_table_ends_in_the_steady_state():
    ct = counter_terms(3, "hb")
    table = ct.coefficient_table(0.75, 5000)
    assert _same_bits(table[-1], ct.steady_state_values(0.75))
    assert _same_bits(table[:40], _exact_table(ct, 0.75, 40))


def test_table_at_tiny_beta_is_gradient_descent_to_rounding():
    # beta -> 0: every transient term carries a factor beta^j, so b_k -> the Euler character.
    gd = counter_terms(3, "gd").coefficient_table(0.0, 4)
    assert (counter_terms(3, "hb").coefficient_table(1e-200, 4) == gd).all()


@pytest.mark.parametrize("bad", [[2], None, 2.0])
def test_unhashable_or_wrong_order_type(bad):
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        counter_terms(bad)


@pytest.mark.parametrize("method", ["hb", "nag"])
def test_poles_at_beta_one_have_order_two_tau_minus_one(method):
    # The coefficients blow up like (1 - beta)^-(2|tau| - 1) as beta -> 1 (the scaling behind
    # lambda = eta/(1-beta)^2); the steady state alone has no other pole.
    ct = counter_terms(6, method)
    for order in range(1, 7):
        worst = 0
        for tree in (t for t in ct.trees if t.order == order):
            for (j, m), c in ct.exponential_terms(tree).items():
                den = sympy.Poly(list(reversed(c.den)), beta)
                factors = dict(sympy.factor_list(den.as_expr())[1])
                worst = max(worst, factors.get(beta - 1, 0))
                if (j, m) == (0, 0):
                    assert set(factors) <= {beta - 1}, (tree, den)
        assert worst == 2 * order - 1

"""Counter terms of the library rules (docs/theory.md#library-momentum), by second constructions.

- Nesterov momentum is the look-ahead sequence of NAG: its characters are
  $(1+\\beta)a_k - \\beta a_{k-1}$ with NAG's $a_k$, per $k$ and in closed form;
- QHM at $\\nu = 1$ is HB with step $\\eta(1-\\beta)$, at $\\nu = 0$ gradient descent;
- the first step is an Euler step of size $c_0\\eta$;
- on a quadratic the steady state is the logarithm of the characteristic root near 1;
- the Kovachki–Stuart mass puts the slow manifold on the first steady counter term.
"""

import json
import re
from fractions import Fraction

import pytest
import sympy
from flint import fmpz_poly

from hbflow import _counter_terms as cache, _derive, counter_terms
from hbflow._bseries import Character, compose, inverse, log
from hbflow._cli import main
from hbflow._derive import RationalFunction
from hbflow._exppoly import BETA, ExpPolyRing, QBeta
from hbflow._models import _kovachki_stuart_mass
from hbflow._trees import Tree, trees_up_to

ORDER = 5
K_MAX = 10


def _qbeta(rf: RationalFunction) -> QBeta:
    return QBeta(fmpz_poly(list(rf.num)), fmpz_poly(list(rf.den)))


def _at(ct, k: int) -> dict:
    """b_k(tau) from the closed form, summed in FLINT's Q(beta) (as RationalFunction)."""
    beta = ExpPolyRing().beta
    out = {}
    for tree in ct.trees:
        total = QBeta.of(0)
        for (j, m), c in ct.exponential_terms(tree).items():
            total = total + _qbeta(c) * (k**m) * beta ** (j * k)
        out[tree] = RationalFunction.from_frac(total)
    return out


def _combine(terms, one) -> Character:
    """sum of scale * character, tree by tree, as an iterate character (1 on the empty tree)."""
    values = {}
    for t in trees_up_to(ORDER):
        acc = one - one
        for scale, char in terms:
            acc = acc + scale * char[t]
        values[t] = acc
    return Character(values, ORDER, 1, one)


def _nag_characters(num: int) -> list[Character]:
    """NAG's a_0, ..., a_{num-1} from rest, written here from the theory (Iterates as B-series):
    e_k = (1 + beta) a_k - beta a_{k-1}, a_{k+1} = (1 + beta) a_k - beta a_{k-1} + D(e_k)."""
    beta, one = ExpPolyRing().beta, QBeta.of(1)
    identity = Character({t: one - one for t in trees_up_to(ORDER)}, ORDER, 1, one)
    chars = [identity]
    prev = cur = identity
    while len(chars) < num:
        e = _combine([(1 + beta, cur), (-beta, prev)], one)
        d = {}
        for t in trees_up_to(ORDER):
            d[t] = one
            for child in t.children:
                d[t] = d[t] * e[child]
        nxt = _combine([(1 + beta, cur), (-beta, prev), (one, Character(d, ORDER, 0, one))], one)
        chars.append(nxt)
        prev, cur = cur, nxt
    return chars


def test_nesterov_is_the_look_ahead_of_nag_per_k():
    beta, one = ExpPolyRing().beta, QBeta.of(1)
    nag = _nag_characters(K_MAX + 2)
    # y_k = x_k + beta (x_k - x_{k-1}) from rest (x_{-1} = x_0).
    look = [
        _combine([(1 + beta, nag[k]), (-beta, nag[max(k - 1, 0)])], one) for k in range(K_MAX + 2)
    ]
    ct = counter_terms(ORDER, "nesterov")
    for k in range(K_MAX + 1):
        want = log(compose(inverse(look[k]), look[k + 1]))
        got = _at(ct, k)
        for tree in trees_up_to(ORDER):
            assert got[tree] == RationalFunction.from_frac(want[tree]), (k, tree)


def test_nesterov_is_the_look_ahead_of_nag_in_closed_form():
    E = ExpPolyRing()
    nag = _derive.closed_form_iterates(E, ORDER, "nag")
    # Valid for k >= 1, so equal as exponential polynomials, hence for every k.
    values = {t: (1 + E.beta) * nag[t] - E.beta * E.shift(nag[t], -1) for t in trees_up_to(ORDER)}
    look = Character(values, ORDER, 1, E.one)
    look1 = look.map(lambda p: E.shift(p, 1), one=E.one)
    b = log(compose(inverse(look), look1))
    ct = counter_terms(ORDER, "nesterov")
    for tree in trees_up_to(ORDER):
        want = {
            (j, m): RationalFunction.from_frac(c)
            for j, by_m in E.by_exponent(b[tree]).items()
            for m, c in by_m.items()
        }
        assert ct.exponential_terms(tree) == want, tree
    # ...and it is not NAG's (the sequences differ).
    nag_ct = counter_terms(ORDER, "nag")
    assert any(ct.exponential_terms(t) != nag_ct.exponential_terms(t) for t in trees_up_to(ORDER))


def test_per_k_recurrence_equals_closed_form():
    # The family recurrence run per k in sympy's Q(beta) against the closed form (FLINT).
    for method, nu in [("nesterov", None), ("qhm", "7/10")]:
        ct = counter_terms(4, method, nu=nu)
        runs = _derive.coefficients_up_to(4, 6, method=method, nu=nu, as_sympy=False)
        for k, run in enumerate(runs):
            assert _at(ct, k) == run, (method, k)


def test_qhm_at_nu_one_is_heavy_ball_with_step_eta_one_minus_beta():
    # eta -> eta (1 - beta) multiplies the coefficient of tree tau by (1 - beta)^|tau|.
    qhm = counter_terms(ORDER, "qhm", nu=1)
    hb = counter_terms(ORDER, "hb")
    one_minus_beta = 1 - ExpPolyRing().beta
    for tree in trees_up_to(ORDER):
        got, want = qhm.exponential_terms(tree), hb.exponential_terms(tree)
        assert set(got) == set(want), tree
        for jm, c in want.items():
            scaled = RationalFunction.from_frac(one_minus_beta**tree.order * _qbeta(c))
            assert got[jm] == scaled, (tree, jm)
    for k in (0, 1, 7):
        got, base = _at(qhm, k), _at(hb, k)
        for tree in trees_up_to(ORDER):
            want = RationalFunction.from_frac(one_minus_beta**tree.order * _qbeta(base[tree]))
            assert got[tree] == want, (k, tree)


def test_qhm_at_nu_zero_is_gradient_descent():
    qhm = counter_terms(ORDER, "qhm", nu=0)
    gd = counter_terms(ORDER, "gd")
    zero = RationalFunction((0,), (1,))
    for tree in trees_up_to(ORDER):
        # No transient at all: only the steady part, equal to explicit Euler's character.
        terms = qhm.exponential_terms(tree)
        assert set(terms) <= {(0, 0)}, tree
        assert terms.get((0, 0), zero) == gd.exponential_terms(tree)[(0, 0)], tree
    for k in (0, 3, K_MAX):
        assert _at(qhm, k) == _at(gd, 0)


@pytest.mark.parametrize("method,nu", [("nesterov", None), ("qhm", "7/10"), ("qhm", "1/3")])
def test_first_step_is_an_euler_step_of_size_c0_eta(method, nu):
    # a_1 = a_0 + c0 D(a_0): u_1 = u_0 - c0 eta grad L(u_0), whose modified field is Euler's
    # character with eta -> c0 eta: b_0(tau) = c0^|tau| b_GD(tau).
    nu_q = None if nu is None else sympy.Rational(nu)
    c0 = 1 + BETA if method == "nesterov" else 1 - nu_q * BETA
    b0 = counter_terms(4, method, nu=nu).at(0)
    gd = counter_terms(4, "gd").at(0)
    for tree in trees_up_to(4):
        assert sympy.simplify(b0[tree] - c0**tree.order * gd[tree]) == 0, tree


def _tall(n: int) -> Tree:
    return Tree.from_level_sequence(list(range(1, n + 1)))


def _root_series(method: str, nu, n: int):
    """log z(h) to O(h^(n+1)) for the root z(h) -> 1 of the characteristic polynomial on a
    quadratic with h = eta * lambda, from the update rules as written in the theory."""
    h, z = sympy.symbols("h z")
    b = BETA
    if method == "hb":
        poly = z**2 - (1 + b - h) * z + b
    elif method == "nag":
        poly = z**2 - (1 + b) * (1 - h) * z + b * (1 - h)
    elif method == "nesterov":
        poly = z**2 - (1 + b - (1 + b) * h) * z + (b - b * h)
    else:
        poly = z**2 - (1 + b - (1 - nu * b) * h) * z + (b - b * (1 - nu) * h)
    # z = 1 + sum_i d_i h^i, solved order by order.
    ds = sympy.symbols(f"d1:{n + 1}")
    zs = 1 + sum(d * h ** (i + 1) for i, d in enumerate(ds))
    expanded = sympy.expand(poly.subs(z, zs))
    sol = {}
    for i in range(1, n + 1):
        eq = expanded.coeff(h, i).subs(sol)
        sol[ds[i - 1]] = sympy.solve(eq, ds[i - 1])[0]
    x = sympy.expand(zs.subs(sol) - 1)  # O(h): log(1 + x) = x - x^2/2 + ... to h^n
    series = sympy.expand(sum(sympy.Rational((-1) ** (i + 1), i) * x**i for i in range(1, n + 1)))
    return [sympy.factor(series.coeff(h, i)) for i in range(1, n + 1)]


@pytest.mark.parametrize(
    "method,nu", [("hb", None), ("nag", None), ("nesterov", None), ("qhm", Fraction(7, 10))]
)
def test_steady_state_on_tall_trees_is_the_characteristic_root(method, nu):
    # On L = lambda u^2/2, F(tall_n) = (-lambda)^n u, so log z = sum_n b_inf(tall_n) (-h)^n.
    n = 4
    coeffs = _root_series(method, None if nu is None else sympy.Rational(nu), n)
    ct = counter_terms(n, method, nu=nu)
    for i in range(1, n + 1):
        got = ct.steady_state(_tall(i))
        assert sympy.simplify(got - (-1) ** i * coeffs[i - 1]) == 0, (method, i)


@pytest.mark.parametrize(
    "method,nu", [("hb", None), ("nag", None), ("nesterov", None), ("qhm", Fraction(7, 10))]
)
@pytest.mark.parametrize("beta", [Fraction(1, 2), Fraction(9, 10)])
def test_kovachki_stuart_mass_matches_the_first_steady_counter_term(method, nu, beta):
    # Slow manifold of eta a u'' + (1-beta) u' + c grad L = 0: u' = s g - eta a s^2 g'g/(1-beta),
    # with s = c/(1-beta): it matches b_inf([.]) iff a = -(1-beta)^3 b_inf([.]) / c^2.
    c = 1 - beta if method == "qhm" else 1
    b2 = counter_terms(2, method, nu=nu).steady_state(_tall(2), beta=beta)
    want = -((1 - beta) ** 3) * Fraction(str(b2)) / c**2
    mass = _kovachki_stuart_mass(method, float(beta), None if nu is None else float(nu))
    assert mass == pytest.approx(float(want), rel=1e-14)


# --- cache and input --------------------------------------------------------------------------


def test_qhm_cache_is_keyed_by_nu(user_cache):
    a = counter_terms(3, "qhm", nu=0.7)
    path = user_cache / "counter_terms_qhm_nu7-10_order3.json"
    assert path.is_file()
    data = json.loads(path.read_text())
    assert data["nu"] == "7/10" and data["method"] == "qhm"
    b = counter_terms(3, "qhm", nu="1/2")
    assert (user_cache / "counter_terms_qhm_nu1-2_order3.json").is_file()
    assert a.nu == Fraction(7, 10) and b.nu == Fraction(1, 2)
    tree = Tree.from_level_sequence([1, 2])
    assert a.exponential_terms(tree) != b.exponential_terms(tree)
    cache._counter_terms.cache_clear()
    again = counter_terms(2, "qhm", nu=Fraction(7, 10))  # loaded from the file, truncated
    assert again.nu == Fraction(7, 10)
    assert again.exponential_terms(tree) == a.exponential_terms(tree)
    # A file whose contents say another nu is not used for this one.
    other = {**data, "nu": "1/3"}
    other["checksum"] = cache._checksum(other)  # a sound file, of the wrong nu
    path.write_text(json.dumps(other))
    cache._counter_terms.cache_clear()
    with pytest.warns(RuntimeWarning, match="disagree"):
        counter_terms(3, "qhm", nu=0.7)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="qhm"), r"method 'qhm' needs nu"),
        (dict(method="qhm", nu=1.5), r"nu must be in \[0, 1\], got 1\.5"),
        (dict(method="qhm", nu="a"), r"nu must be a number in \[0, 1\], got 'a'"),
        (dict(method="hb", nu=0.5), r"method 'hb' has no nu"),
    ],
)
def test_counter_terms_bad_nu(kwargs, match):
    with pytest.raises(ValueError, match=match):
        counter_terms(2, **kwargs)


def test_cli_derive_qhm(capsys):
    assert (
        main(["derive", "--method", "qhm", "--nu", "0.7", "--order", "2", "--format", "json"]) == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "qhm" and data["nu"] == "7/10"
    assert main(["derive", "--method", "nesterov", "--order", "2", "--steady-state"]) == 0
    assert "Nesterov momentum" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--method", "qhm", "--nu", "-1"], r"--nu must be in \[0, 1\], got '-1'"),
        (["--method", "qhm"], r"method 'qhm' needs --nu"),
        (["--method", "nag", "--nu", "0.5"], r"method 'nag' has no --nu"),
    ],
)
def test_cli_derive_bad_nu(capsys, argv, match):
    assert main(["derive", "--order", "2", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.startswith("hbflow: error: ") and len(err.strip().splitlines()) == 1
    assert re.search(match, err), err

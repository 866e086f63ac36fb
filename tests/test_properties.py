"""Properties over random inputs (hypothesis): random quadratics, random (β, η), random k and β.

On a quadratic L = ½u·Qu everything is linear (docs/theory.md#quadratic-losses):
F(τ) vanishes unless τ is the tall tree (1, 2, …, n), where F = (−Q)^n u, so the HBF of order α
on piece k is u' = A_k u with
A_k = Σ_n η^(n−1) b_k(tall_n) (−Q)^n, and its exact solution is the product of the matrix
exponentials exp(η A_k).  That oracle checks the integration (to the solver tolerance) and the
order claim (HBF of order α against the iterates from rest: error ratio 2^α when η halves at a
fixed horizon).  The second group checks the closed form in k of the counter terms against a
direct run of the recurrence, at random k and rational β.
"""

from fractions import Fraction

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import sympy
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy.linalg import expm

import hbflow


def fast(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


class Quadratic(eqx.Module):
    """L(u) = ½ u·Qu with Q a traced array, so one compiled solver serves every random Q."""

    Q: jax.Array

    def __call__(self, u):
        return 0.5 * u @ (self.Q @ u)


@st.composite
def quadratics(draw):
    """A random symmetric positive definite Q (d = 2 or 3, eigenvalues in [0.2, 2]) and u0."""
    d = draw(st.integers(2, 3))
    eig = np.array(draw(st.lists(st.floats(0.2, 2.0), min_size=d, max_size=d)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    Q = rotation @ np.diag(eig) @ rotation.T
    u0 = rng.normal(size=d)
    u0 /= np.linalg.norm(u0)
    return 0.5 * (Q + Q.T), u0


@st.composite
def method_and_beta(draw, beta_max=0.5):
    method = draw(st.sampled_from(["hb", "nag", "gd"]))
    # β = 0, tiny β down to the subnormals (where every transient term underflows float64),
    # and the bulk of [0, beta_max].
    tiny = st.floats(5e-324, 1e-3, allow_subnormal=True)
    beta = 0.0 if method == "gd" else draw(st.one_of(st.just(0.0), tiny, st.floats(1e-3, beta_max)))
    return method, beta


def numpy_iterates(Q, u0, method, beta, eta, num_steps):
    """The recursion of docs/theory.md#methods on a quadratic, from rest."""
    a = beta if method == "nag" else 0.0
    u_prev, u = u0.copy(), u0.copy()
    out = [u.copy()]
    for _ in range(num_steps):
        y = u + a * (u - u_prev)
        u_prev, u = u, u + beta * (u - u_prev) - eta * (Q @ y)
        out.append(u.copy())
    return np.array(out)


def exact_hbf(Q, u0, alpha, method, beta, eta, num_pieces):
    """u(t_k), k = 0..K, of the HBF of order α on ½u·Qu, by matrix exponentials."""
    model = hbflow.HeavyBallFlow(alpha)
    table = model.coefficients(method, beta, num_pieces)
    tall = [
        (i, t.order)
        for i, t in enumerate(model.trees)
        if t.level_sequence == tuple(range(1, t.order + 1))
    ]
    powers = {n: np.linalg.matrix_power(-Q, n) for _, n in tall}
    out = [u0]
    for row in table:
        A = sum(eta ** (n - 1) * row[i] * powers[n] for i, n in tall)
        out.append(expm(eta * A) @ out[-1])
    return np.array(out)


# λ‖Q‖ = η‖Q‖/(1-β)² in [0.01, 0.04] and β <= 0.5 keep the fixed horizon T = 32η in the
# asymptotic regime (measured over the corners of this box: |log2 ratio - α| <= 0.2).
@fast(25)
@given(
    problem=quadratics(), mb=method_and_beta(), alpha=st.integers(1, 4), lam=st.floats(0.01, 0.04)
)
def test_hbf_on_random_quadratic_has_its_order(problem, mb, alpha, lam):
    Q, u0 = problem
    method, beta = mb
    eta = lam * (1 - beta) ** 2 / np.linalg.eigvalsh(Q).max()
    errors = []
    for scale in (1, 2):
        K = 32 * scale
        flow = exact_hbf(Q, u0, alpha, method, beta, eta / scale, K)
        iterates = numpy_iterates(Q, u0, method, beta, eta / scale, K)
        errors.append(np.linalg.norm(flow - iterates, axis=1).max())
    observed = np.log2(errors[0] / errors[1])
    assert abs(observed - alpha) <= 0.3, (observed, errors, method, beta, alpha)


@fast(8)
@given(
    problem=quadratics(), mb=method_and_beta(), alpha=st.integers(1, 3), lam=st.floats(0.01, 0.1)
)
def test_solved_hbf_equals_exact_linear_solution(problem, mb, alpha, lam):
    Q, u0 = problem
    method, beta = mb
    eta = lam * (1 - beta) ** 2 / np.linalg.eigvalsh(Q).max()
    K = 12
    sol = hbflow.solve_model(
        hbflow.HeavyBallFlow(alpha),
        Quadratic(jnp.asarray(Q)),
        jnp.asarray(u0),
        method=method,
        beta=beta,
        eta=eta,
        num_pieces=K,
    )
    want = exact_hbf(Q, u0, alpha, method, beta, eta, K)
    np.testing.assert_allclose(np.asarray(sol.us), want, rtol=1e-9, atol=1e-11)
    assert np.linalg.norm(want[-1] - want[0]) > 1e-3  # the flow moved


rational_betas = st.fractions(min_value=0, max_value=Fraction(19, 20), max_denominator=40)


@fast(30)
@given(method=st.sampled_from(["hb", "nag"]), k=st.integers(0, 30), beta=rational_betas)
def test_closed_form_equals_recurrence_at_random_k_and_beta(method, k, beta):
    closed = hbflow.counter_terms(4, method).at(k, beta)
    direct = hbflow.coefficients_at(4, k, method=method, beta=beta)
    assert set(closed) == set(direct) and len(closed) == 8
    for tree, value in closed.items():
        assert value == direct[tree], (tree, k, beta, value, direct[tree])


@fast(6)
@given(method=st.sampled_from(["hb", "nag", "gd"]), k=st.integers(0, 3))
def test_closed_form_equals_recurrence_with_symbolic_beta(method, k):
    closed = hbflow.counter_terms(4, method).at(k)
    direct = hbflow.coefficients_at(4, k, method=method)
    for tree, value in closed.items():
        assert sympy.cancel(value - direct[tree]) == 0, (tree, k, value, direct[tree])


@fast(20)
@given(
    method=st.sampled_from(["hb", "nag"]),
    k=st.integers(0, 200),
    beta=st.one_of(
        st.just(0.0), st.floats(5e-324, 1e-3, allow_subnormal=True), st.floats(1e-3, 0.99)
    ),
)
def test_first_coefficient_is_the_geometric_sum(method, k, beta):
    # b_k(•) = γ_k = (1 - β^(k+1))/(1 - β) (docs/theory.md#heavy-ball-flow), through the
    # float64 bridge.
    table = hbflow.counter_terms(2, method).coefficient_table(beta, k + 1)
    gamma = (1 - beta ** (k + 1)) / (1 - beta)
    assert abs(table[k, 0] - gamma) <= 1e-12 * gamma

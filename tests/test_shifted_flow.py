"""The steady-state flow from the exact shifted start (shiftedN), and errors outside the initial
layer (docs/theory.md#shifted-start, docs/theory.md#initial-layer)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from hbflow import (
    ShiftedSteadyStateFlow,
    Tree,
    compare,
    counter_terms,
    fit_order,
    get_problem,
    model_from_name,
    shifted_start,
)
from hbflow._compare import layer_width
from hbflow._differentials import gradient_field


def tall(n):
    return Tree.from_level_sequence(tuple(range(1, n + 1)))


# --- quadratic oracle ----------------------------------------------------------------------------
# For L = ½ u·Qu, F(tall_n)(u) = (-Q)^n u and every other elementary differential vanishes, so the
# shifted steady flow of order N is linear: per eigenvalue q, with z = -ηq,
#   u(t_k) = exp(k φ(z)) (1 + Σ_n ψ_n z^n) u_0,   φ(z) = Σ_{n≤N} b_∞(tall_n) z^n,
# while the iterates solve x_{k+1} = (1+β)x_k - βx_{k-1} + z(c_0 x_k - c_1 x_{k-1}) exactly, with
# (c_0, c_1) = (1+a, a) for HB (a = 0) and NAG (a = β), and (1+β, β) for optax's Nesterov, whose
# buffer starts at zero: no c_1 term on the first step.

EIGS = np.array([1.0, 4.0])


def oracle_errors(method, beta, order, eta, horizon, after):
    ct, s = counter_terms(order, method), shifted_start(order, method)
    b_inf = [float(ct.steady_state(tall(n), beta)) for n in range(1, order + 1)]
    psi = [float(s.coefficient(tall(n), beta)) for n in range(1, order + 1)]
    a = beta if method == "nag" else 0.0
    c0, c1 = (1 + beta, beta) if method == "nesterov" else (1 + a, a)
    z = -eta * EIGS
    phi = sum(c * z**n for n, c in enumerate(b_inf, 1))
    start = 1 + sum(c * z**n for n, c in enumerate(psi, 1))
    num = round(horizon / eta)
    prev = cur = np.ones_like(z)
    errors = []
    for k in range(num + 1):
        if k * eta >= after - 1e-12:
            errors.append(np.linalg.norm(cur - np.exp(k * phi) * start))
        first = k == 0 and method == "nesterov"  # NAG looks ahead from u_{-1} = u_0 instead
        force = c0 * cur - (0.0 if first else c1 * prev)
        prev, cur = cur, (1 + beta) * cur - beta * prev + z * force
    return max(errors)


QUADRATIC_ETAS = {0.5: [0.01, 0.005, 0.0025], 0.9: [0.001, 0.0005, 0.00025]}


@pytest.mark.parametrize("method", ["hb", "nag", "nesterov"])
@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_quadratic_oracle_order_outside_the_layer(method, beta):
    etas = QUADRATIC_ETAS[beta]
    for order in (1, 2, 3, 4):
        errs = [oracle_errors(method, beta, order, eta, 1.0, 0.5) for eta in etas]
        slope = fit_order(etas, errs)[0]
        assert abs(slope - order) <= 0.3, (order, slope, errs)


def test_quadratic_oracle_order_one_inside_the_layer():
    # From t = 0 the transient of the iterates, O(η β^k), is not in any memoryless flow.
    etas = QUADRATIC_ETAS[0.5]
    for order in (2, 3, 4):
        errs = [oracle_errors("hb", 0.5, order, eta, 1.0, 0.0) for eta in etas]
        assert abs(fit_order(etas, errs)[0] - 1) <= 0.3


def test_unshifted_start_has_order_one_on_the_quadratic():
    # The same flow from u_0 instead of B(ψ, u_0) stays O(η) even outside the layer: ψ matters.
    method, beta, order = "hb", 0.5, 3
    ct = counter_terms(order, method)
    b_inf = [float(ct.steady_state(tall(n), beta)) for n in range(1, order + 1)]
    etas = QUADRATIC_ETAS[beta]
    errs = []
    for eta in etas:
        z = -eta * EIGS
        phi = sum(c * z**n for n, c in enumerate(b_inf, 1))
        prev = cur = np.ones_like(z)
        worst = 0.0
        for k in range(round(1 / eta) + 1):
            if k * eta >= 0.5:
                worst = max(worst, np.linalg.norm(cur - np.exp(k * phi)))
            prev, cur = cur, (1 + beta) * cur - beta * prev + z * cur
        errs.append(worst)
    assert abs(fit_order(etas, errs)[0] - 1) <= 0.3


def test_model_start_and_field_on_the_quadratic():
    # The model's start and field, with the elementary differentials by autodiff, against the
    # linear formulas above (hb, β = 0.9, order 3: ψ and b_∞ on the tall trees).
    Q = jnp.diag(jnp.asarray(EIGS))

    def loss(u):
        return 0.5 * u @ Q @ u

    u0 = jnp.array([1.0, -2.0])
    model = model_from_name("shifted3")
    assert isinstance(model, ShiftedSteadyStateFlow) and model.name == "shifted3"
    assert model.order("hb", 0.9) == 3
    eta, beta = 0.01, 0.9
    table = model.coefficients("hb", beta, 4)
    assert table.shape == (4, 2 * len(model.trees))
    g, x0, _ = gradient_field(loss, u0)
    y0 = model.initial_state(g, x0, eta, beta, jnp.asarray(table[0]))
    s, ct = shifted_start(3, "hb"), counter_terms(3, "hb")
    z = -eta * EIGS
    start = 1 + sum(float(s.coefficient(tall(n), beta)) * z**n for n in (1, 2, 3))
    np.testing.assert_allclose(y0, start * np.asarray(u0), rtol=1e-13)
    field = model.vector_field(g, 0.0, y0, eta, beta, jnp.asarray(table[0]))
    phi = sum(float(ct.steady_state(tall(n), beta)) * z**n for n in (1, 2, 3))
    np.testing.assert_allclose(field, phi / eta * np.asarray(y0), rtol=1e-13)
    with pytest.raises(ValueError, match="shifted start needs eta"):
        model.initial_state(g, x0)


def test_gd_shifted_is_the_steady_state_flow():
    model, steady = model_from_name("shifted2"), model_from_name("steady2")
    table = model.coefficients("gd", 0.0, 3)
    np.testing.assert_array_equal(table[:, : table.shape[1] // 2], steady.coefficients("gd", 0, 3))
    assert np.all(table[:, table.shape[1] // 2 :] == 0)


# --- the initial layer ---------------------------------------------------------------------------


def test_layer_width_on_a_made_up_trajectory():
    # e_k = β^k + small: the level is 2 × max over t >= T/2, the layer ends after the last
    # k with e_k above it.
    e = 0.5 ** np.arange(11) + 1e-3
    level = 2 * e[5:].max()
    expected = np.flatnonzero(e > level)[-1] + 1
    assert layer_width(e, 0.1, 0.0, 1.0) == expected
    assert layer_width(np.linspace(0, 1, 11), 0.1, 0.0, 1.0) == 0  # growing: no layer
    assert layer_width(e, 0.1, 0.8, 1.0) > expected  # a later window, a lower level


# --- non-convex problems -------------------------------------------------------------------------

SHIFTED = ("shifted1", "shifted2", "shifted3", "shifted4")
# (loss scale, etas, horizon, after) per β: λ|∇²L| <= 0.1, and T0 well beyond the layer of about
# (N-1) log(1/η)/log(1/β) steps.  At β = 0.9 (λ = 100η) the losses are scaled by 1/10, which keeps
# λ|∇²L| small at step sizes whose runs stay short.
SETTINGS = {
    ("double-well", 0.5): (1.0, [0.01, 0.005, 0.0025], 1.0, 0.25),
    ("himmelblau-scaled", 0.5): (1.0, [0.04, 0.02, 0.01], 2.0, 0.5),
    ("double-well", 0.9): (0.1, [0.004, 0.002, 0.001], 1.0, 0.6),
    ("himmelblau-scaled", 0.9): (0.1, [0.004, 0.002, 0.001], 1.0, 0.6),
}
_LOSSES = {}
_STUDIES = {}


def scaled_loss(problem, scale):
    # One function object per (problem, scale), so that hb and nag share the compiled solver.
    if (problem, scale) not in _LOSSES:
        loss = get_problem(problem).loss
        _LOSSES[problem, scale] = loss if scale == 1.0 else (lambda u: scale * loss(u))
    return _LOSSES[problem, scale]


def study(problem, method, beta):
    key = (problem, method, beta)
    if key not in _STUDIES:
        scale, etas, horizon, after = SETTINGS[(problem, beta)]
        _STUDIES[key] = compare(
            scaled_loss(problem, scale),
            get_problem(problem).u0,
            method=method,
            beta=beta,
            etas=etas,
            horizon=horizon,
            models=SHIFTED,
            after=after,
            solver_check=False,
        )
    return _STUDIES[key]


@pytest.mark.parametrize("problem,beta", list(SETTINGS))
@pytest.mark.parametrize("method", ["hb", "nag"])
def test_shifted_slopes_outside_and_inside_the_layer(problem, method, beta):
    s = study(problem, method, beta)
    for name in SHIFTED:
        m = s.models[name]
        n = int(name[len("shifted") :])
        assert m.expected_order == n
        assert abs(m.slope - n) <= 0.3, (name, m.slope, m.max_errors)
        # From t = 0 the same trajectories have order about 1: the layer is O(η).
        whole = fit_order(s.etas, [e.max() for e in m.errors])[0]
        assert abs(whole - 1) <= 0.3, (name, whole)
        if n >= 2:
            assert np.all(m.layer_steps > 0)


def test_after_in_json_and_text():
    s = study("himmelblau-scaled", "hb", 0.5)
    data = json.loads(json.dumps(s.to_json()))
    assert data["after"] == 0.5
    assert len(data["models"]["shifted3"]["layer_steps"]) == 3
    text = s.to_text()
    assert "over t_k in [0.5, 2] (after=0.5)" in text
    assert "initial layer" in text
    # The window really is [T0, T]: the max over it is the max of the trajectory's tail.
    m = s.models["shifted2"]
    for eta, e, worst in zip(s.etas, m.errors, m.max_errors):
        assert worst == e[round(0.5 / eta) :].max() < e.max()


@pytest.mark.parametrize("after", [-0.1, 2.0, 3.0, "0.5", float("nan"), True])
def test_bad_after(after, without_runtime_type_checks):
    # hbflow's own message, also for values the annotation excludes (a string, a bool)
    p = get_problem("double-well")
    with pytest.raises(
        ValueError, match=r"after must be a finite number with 0 <= after < horizon"
    ):
        compare(p.loss, p.u0, method="hb", beta=0.5, etas=[0.1, 0.05], horizon=2.0, after=after)


def test_qhm_has_no_shifted_start(without_runtime_type_checks):
    # psi of qhm would depend on nu: refused by name, by the model and by compare.
    with pytest.raises(
        ValueError, match=r"derived for the methods hb, nag, gd, nesterov, not 'qhm'"
    ):
        shifted_start(2, "qhm")
    with pytest.raises(ValueError, match="not 'qhm'"):
        model_from_name("shifted2").order("qhm", 0.5, nu=0.7)
    problem = get_problem("himmelblau-scaled")
    with pytest.raises(ValueError, match="not 'qhm'"):
        compare(
            problem.loss,
            problem.u0,
            method="qhm",
            nu=0.7,
            beta=0.5,
            etas=[0.1, 0.05],
            horizon=1.0,
            models=["shifted2"],
        )

"""Order studies: measured slopes against the stated orders, and the comparator's checks."""

import json
import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hbflow import get_problem
from hbflow._compare import SOLVER_MARGIN, compare, fit_order

HBF = ("hbf1", "hbf2", "hbf3", "hbf4")
MEMORYLESS = ("rgf", "steady2", "steady3")

# Two non-convex problems, each with step sizes small against (1-β)²/|∇²L| at β = 0.5
# (λ|∇²L| <= 0.11 and 0.07) and a fixed horizon; see hbflow._problems for their sources.
SETTINGS = {
    "himmelblau-scaled": dict(etas=[0.04, 0.02, 0.01], horizon=2.0),
    "double-well": dict(etas=[0.01, 0.005, 0.0025], horizon=1.0),
}
METHODS = [("hb", 0.5), ("nag", 0.5), ("gd", 0.0)]
# The library rules of docs/theory.md#library-momentum, with their second-order models too.
LIBRARY = [("nesterov", 0.5, None), ("qhm", 0.5, 0.7)]
SECOND_ORDER = ("ks2", "mgf")
_STUDIES = {}


def study(problem, method, beta, nu=None):
    key = (problem, method, beta, nu)
    if key not in _STUDIES:
        p = get_problem(problem)
        models = HBF + MEMORYLESS + (SECOND_ORDER if method in ("nesterov", "qhm") else ())
        _STUDIES[key] = compare(
            p.loss, p.u0, method=method, beta=beta, nu=nu, models=models, **SETTINGS[problem]
        )
    return _STUDIES[key]


def assert_solver_error_far_below(s, names):
    for name in names:
        m = s.models[name]
        assert not m.solver_flags.any(), (name, m.solver_errors, m.max_errors)
        assert np.all(m.solver_errors * SOLVER_MARGIN < m.max_errors), name


@pytest.mark.parametrize("problem", list(SETTINGS))
@pytest.mark.parametrize("method,beta", METHODS)
def test_hbf_slopes_match_stated_order(problem, method, beta):
    s = study(problem, method, beta)
    for name in HBF:
        m = s.models[name]
        assert m.expected_order == int(name[3:])
        assert abs(m.slope - m.expected_order) <= 0.3, (name, m.slope, m.max_errors)
        assert np.all(np.diff(m.max_errors) < 0)
    assert_solver_error_far_below(s, HBF)


@pytest.mark.parametrize("problem", list(SETTINGS))
@pytest.mark.parametrize("method,beta", METHODS[:2])
def test_memoryless_flows_have_order_one_from_rest(problem, method, beta):
    # docs/theory.md#shifted-start: a memoryless flow started at u0 misses the transient, so it has
    # O(eta) global error against iterates from rest, whatever its order.
    s = study(problem, method, beta)
    for name in MEMORYLESS:
        m = s.models[name]
        assert m.expected_order == 1
        assert abs(m.slope - 1) <= 0.3, (name, m.slope, m.max_errors)
    assert_solver_error_far_below(s, MEMORYLESS)
    # ...while the steady-state flow of order 3 is not better than order 1 in the slope,
    # the piecewise HBF of order 3 is far closer.
    assert s.models["hbf3"].max_errors[-1] < s.models["steady3"].max_errors[-1] / 20


@pytest.mark.parametrize("problem", list(SETTINGS))
@pytest.mark.parametrize("method,beta,nu", LIBRARY)
def test_library_rules_orders(problem, method, beta, nu):
    # HBF alpha has order alpha; the memoryless and second-order models, order 1.
    s = study(problem, method, beta, nu)
    for name in HBF:
        m = s.models[name]
        assert m.expected_order == int(name[3:])
        assert abs(m.slope - m.expected_order) <= 0.3, (name, m.slope, m.max_errors)
        assert np.all(np.diff(m.max_errors) < 0)
    for name in MEMORYLESS + SECOND_ORDER:
        m = s.models[name]
        assert m.expected_order == 1
        assert abs(m.slope - 1) <= 0.3, (name, m.slope, m.max_errors)
    assert_solver_error_far_below(s, HBF + MEMORYLESS + SECOND_ORDER)
    assert s.models["hbf3"].max_errors[-1] < s.models["steady3"].max_errors[-1] / 20


def test_steady_state_flow_has_full_order_for_gradient_descent():
    # No transient for gd (beta = 0): the steady-state flow is the HBF, order alpha.
    s = study("double-well", "gd", 0.0)
    assert s.models["steady2"].expected_order == 2
    assert s.models["steady3"].expected_order == 3
    for name in ("steady2", "steady3"):
        assert abs(s.models[name].slope - s.models[name].expected_order) <= 0.3
    np.testing.assert_allclose(
        s.models["steady3"].max_errors, s.models["hbf3"].max_errors, rtol=1e-6
    )


def test_beta_099():
    # beta = 0.99 (coefficients up to (1-beta)^-5 ~ 1e10): the loss is scaled by 1e-3 so that
    # lambda*|H| <= 0.03.  Full slopes need K >> 1/(1-beta)^2 steps (the transient's
    # contribution is O(eta^(alpha+1)/(1-beta)^p)); at K <= 3200 the slopes are still rising
    # towards alpha, so this checks the ordering and the direction, not +-0.3.
    p = get_problem("himmelblau-scaled")

    def loss(u):
        return 1e-3 * p.loss(u)

    s = compare(
        loss,
        p.u0,
        method="hb",
        beta=0.99,
        etas=[0.01, 0.005, 0.0025],
        horizon=8.0,
        models=("hbf1", "hbf2", "hbf3", "rgf"),
    )
    e = {n: s.models[n].max_errors for n in s.models}
    assert np.all(e["hbf2"] < e["hbf1"] / 5) and np.all(e["hbf3"] < e["hbf2"] / 5)
    assert np.all(e["hbf1"] < e["rgf"] / 5)
    slopes = [s.models[f"hbf{a}"].slope for a in (1, 2, 3)]
    assert 0.6 < slopes[0] <= 1.3 and slopes[1] > slopes[0] + 0.5 and slopes[2] > slopes[1] + 0.5
    local = s.models["hbf3"].local_slopes
    assert local[-1] > local[0]  # approaching order 3 from below
    assert abs(s.models["rgf"].slope - 1) <= 0.3
    assert np.all(s.models["hbf3"].solver_errors * SOLVER_MARGIN < e["hbf3"])


def test_fit_order_on_exact_power_law():
    etas = 0.1 * 2.0 ** -np.arange(4)
    slope, stderr, local = fit_order(etas, 3.0 * etas**2.5)
    assert slope == pytest.approx(2.5, abs=1e-12)
    assert stderr == pytest.approx(0.0, abs=1e-10)
    np.testing.assert_allclose(local, 2.5)
    assert math.isnan(fit_order(etas, np.zeros(4))[0])
    with pytest.raises(ValueError, match="at least two step sizes"):
        fit_order(etas[:1], [1.0])


def test_json_and_text_rendering():
    s = study("himmelblau-scaled", "hb", 0.5)
    data = json.loads(json.dumps(s.to_json()))
    assert data["method"] == "hb" and data["beta"] == 0.5 and data["horizon"] == 2.0
    assert data["etas"] == [0.04, 0.02, 0.01]
    m = data["models"]["hbf3"]
    assert m["expected_order"] == 3 and len(m["max_errors"]) == 3 and len(m["final_errors"]) == 3
    assert len(m["solver_error"]) == 3 and abs(m["slope"] - 3) < 0.3
    np.testing.assert_allclose(data["lambda"], np.array([0.04, 0.02, 0.01]) / 0.25)
    text = s.to_text()
    for name in HBF + MEMORYLESS:
        assert f"\n{name} " in text
    assert "slope" in text and "eta=0.04" in text


def test_errors_along_trajectory():
    s = study("himmelblau-scaled", "hb", 0.5)
    m = s.models["hbf2"]
    for e, k, mx, fin in zip(m.errors, s.num_steps, m.max_errors, m.final_errors):
        assert e.shape == (k + 1,) and e[0] == 0.0  # same start
        assert e.max() == mx and e[-1] == fin


def test_lambda_warning():
    p = get_problem("rosenbrock-soft")  # |H| ~ 8 at u0: lambda |H| ~ 1.3 at eta = 0.04
    s = compare(
        p.loss, p.u0, method="hb", beta=0.5, etas=[0.04, 0.02], horizon=0.4, models=("rgf",)
    )
    assert any("not small" in w and "lambda" in w for w in s.warnings)
    assert s.lambda_h[0] > 1
    # Every step size above the threshold is named, with its lambda*|H|, not only the largest.
    (warning,) = [w for w in s.warnings if "not small" in w]
    above = [i for i, x in enumerate(s.lambda_h) if x > 0.2]
    assert len(above) == 2, s.lambda_h
    listed = re.search(r"at eta = ([0-9., ]+) are not small", warning).group(1)
    assert [float(e) for e in listed.split(",")] == [float(s.etas[i]) for i in above]
    for i in above:
        assert f"{s.lambda_h[i]:.3g}" in warning
    quiet = study("double-well", "hb", 0.5)
    assert not any("not small" in w for w in quiet.warnings)


def quadratic(u):
    return 0.5 * jnp.sum(u**2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"beta": 1.0}, r"beta must be in \[0, 1\)"),
        ({"etas": [0.1, -0.05]}, r"eta must be a finite number > 0"),
        ({"etas": [0.1, 0.1]}, r"etas must be distinct"),
        ({"horizon": 0.25, "etas": [0.1]}, r"horizon 0.25 must be a positive integer multiple"),
        ({"horizon": -1.0}, r"horizon must be a finite number > 0"),
        ({"models": ["hbf2", "rk4"]}, r"unknown model 'rk4'; valid models are hbfN and steadyN"),
        ({"method": "adam"}, r"method must be one of hb, nag, gd, nesterov, qhm"),
        ({"loss": lambda u: u}, r"loss must return a real scalar \(shape \(\)\), got shape \(2,\)"),
        ({"loss": lambda u: jnp.log(u[0] - 2)}, r"loss must be finite at u0"),
        ({"rtol": 0.0}, r"rtol must be a finite number > 0"),
    ],
)
@pytest.mark.usefixtures("without_runtime_type_checks")  # wrong types on purpose
def test_bad_input(kwargs, match):
    args = dict(
        loss=quadratic,
        u0=jnp.array([1.0, 0.5]),
        method="hb",
        beta=0.5,
        etas=[0.1, 0.05],
        horizon=1.0,
        models=["rgf"],
    )
    args.update(kwargs)
    loss, u0 = args.pop("loss"), args.pop("u0")
    with pytest.raises(ValueError, match=match):
        compare(loss, u0, **args)


class _Quadratic(eqx.Module):
    # L(u) = sum(q u^2)/2 with q an array field, as a notebook writes a loss per kappa.
    q: jax.Array

    def __call__(self, u):
        return 0.5 * jnp.sum(self.q * u * u)


def test_a_sweep_over_step_sizes_and_losses_of_one_class_traces_the_solve_once(monkeypatch):
    import hbflow._integrate as integrate

    traces = []
    solve_pieces = integrate._solve_pieces

    def counting(*args, **kwargs):
        traces.append(args[4])  # eta, a tracer: runs only when JAX traces
        return solve_pieces(*args, **kwargs)

    monkeypatch.setattr(integrate, "_solve_pieces", counting)
    u0, etas = jnp.array([1.0, 0.5]), [0.1, 0.05, 0.025]
    finals = []
    for q in ([1.0, 2.0], [1.0, 5.0]):
        study = compare(
            _Quadratic(jnp.array(q)),
            u0,
            method="gd",
            beta=0.0,
            etas=etas,
            horizon=0.5,
            models=["gf"],
            solver_check=False,
        )
        finals.append(study.models["gf"].final_errors)
    assert len(traces) == 1
    # Each loss used its own q: gradient descent against the gradient flow of that q.
    for q, final in zip(([1.0, 2.0], [1.0, 5.0]), finals):
        for eta, err in zip(etas, final):
            n = round(0.5 / eta)
            gd = np.asarray(u0) * (1 - eta * np.array(q)) ** n
            flow = np.asarray(u0) * np.exp(-np.array(q) * 0.5)
            np.testing.assert_allclose(err, np.linalg.norm(gd - flow), rtol=1e-9)


def test_each_step_size_is_solved_once(monkeypatch):
    # Compilation is measured from the first call, not by solving the first step size twice.
    import hbflow._compare as module

    calls = []
    solve = module.solve_flat

    def counting(*args, **kwargs):
        calls.append(kwargs["eta"])
        return solve(*args, **kwargs)

    monkeypatch.setattr(module, "solve_flat", counting)
    etas = [0.1, 0.05]
    study = compare(
        quadratic, jnp.array([1.0, 0.5]), etas=etas, horizon=1.0, models=["rgf"], solver_check=False
    )
    assert calls == etas
    m = study.models["rgf"]
    assert m.compile_seconds >= 0 and m.run_seconds >= 0
    calls.clear()
    compare(quadratic, jnp.array([1.0, 0.5]), etas=etas, horizon=1.0, models=["rgf"])
    assert calls == [0.1, 0.1, 0.05, 0.05]  # with the 100x tighter solve of each step size


@pytest.mark.parametrize("method, beta, nu", [("hb", 0.5, None), ("qhm", 0.5, 0.7)])
def test_models_sharing_one_solve_equal_their_own_solves(method, beta, nu):
    # compare solves gf, rgf, steady2 and hbf1-3 as hbf3's field with zero-padded tables;
    # solve_model solves each with its own field.
    import hbflow

    p = get_problem("double-well")
    etas, horizon = [0.1, 0.05], 1.0
    names = ["gf", "rgf", "steady2", "hbf1", "hbf3"]
    study = compare(
        p.loss,
        p.u0,
        method=method,
        beta=beta,
        nu=nu,
        etas=etas,
        horizon=horizon,
        models=names,
        solver_check=False,
    )
    for eta in etas:
        k = round(horizon / eta)
        us = np.asarray(
            hbflow.iterates(p.loss, p.u0, method=method, beta=beta, nu=nu, eta=eta, num_steps=k)
        )
        for name in names:
            sol = hbflow.solve_model(
                name, p.loss, p.u0, method=method, beta=beta, nu=nu, eta=eta, num_pieces=k
            )
            own = np.linalg.norm(np.asarray(sol.us) - us, axis=1)
            i = etas.index(eta)
            np.testing.assert_allclose(
                study.models[name].errors[i], own, rtol=1e-9, atol=1e-13, err_msg=name
            )


def test_data_are_traced_arguments_one_compilation_for_every_data_set(monkeypatch):
    import hbflow._integrate as integrate

    traces = []
    solve_pieces = integrate._solve_pieces

    def counting(*args, **kwargs):
        traces.append(args[4])
        return solve_pieces(*args, **kwargs)

    monkeypatch.setattr(integrate, "_solve_pieces", counting)

    def loss(u, data):  # least squares on (A, b)
        return 0.5 * jnp.sum((data["A"] @ u - data["b"]) ** 2)

    rng = np.random.default_rng(0)
    u0, etas = jnp.array([1.0, -0.5]), [0.1, 0.05]
    for seed in range(2):
        data = {"A": rng.standard_normal((3, 2)) / 2, "b": rng.standard_normal(3)}
        kw = dict(etas=etas, horizon=0.5, models=["hbf2", "rgf"], solver_check=False)
        with_data = compare(loss, u0, data=data, **kw)
        closure = compare(lambda u, d=data: loss(u, d), u0, **kw)
        for name in ("hbf2", "rgf"):
            np.testing.assert_allclose(
                with_data.models[name].max_errors, closure.models[name].max_errors, rtol=1e-12
            )
    # One trace for both data sets (the closures trace their own, one each).
    assert len(traces) == 1 + 2


def test_bad_data_is_refused():
    with pytest.raises(ValueError, match="data"):
        compare(
            lambda u, d: jnp.sum(u**2),
            jnp.ones(2),
            etas=[0.1, 0.05],
            horizon=0.5,
            data={"x": "not an array"},
        )

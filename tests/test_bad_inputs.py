"""Every bad input a user can give, through the Python API and through the command line.

For the API: the exception type and a message that names the parameter (and its allowed range or
the valid names).  For the CLI (``hbflow derive`` / ``hbflow order``, in-process and in a real
subprocess): a non-zero exit code, the message on stderr, nothing on stdout, and no traceback.
"""

import math
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_runner import run_cli

import hbflow
from hbflow.testing import assert_error_order

# These tests pass arguments of the wrong type on purpose, to check hbflow's own messages.
pytestmark = pytest.mark.usefixtures("without_runtime_type_checks")


def quadratic(u):
    return 0.5 * jnp.sum(u**2)


def not_scalar(u):
    return u**2


def numpy_loss(u):
    return float(np.sum(np.asarray(u) ** 2))


def python_branch(u):
    return u[0] if u[0] > 0 else -u[0]


def log_loss(u):  # -inf at u0 = (2, 0.5)... and NaN below 2
    return jnp.log(u[0] - 2.0)


def sqrt_loss(u):  # finite at u[0] = 0 but with an infinite gradient there
    return jnp.sqrt(jnp.abs(u[0])) + jnp.sum(u**2)


def reads_third(u):  # for a start of length 2, u[2] is out of range (JAX would clamp it)
    return u[0] ** 2 + u[2] ** 2


def matrix_loss(u):  # needs a start of length 2
    return 0.5 * u @ (jnp.diag(jnp.array([1.0, 2.0])) @ u)


X0 = jnp.array([1.0, 0.5])
COMPARE = dict(
    method="hb", beta=0.5, etas=[0.1, 0.05], horizon=1.0, models=["rgf"], solver_check=False
)


def compare(loss=quadratic, u0=X0, **overrides):
    return hbflow.compare(loss, u0, **{**COMPARE, **overrides})


def iterates(loss=quadratic, u0=X0, **overrides):
    kwargs = dict(method="hb", beta=0.5, eta=0.1, num_steps=5)
    return hbflow.iterates(loss, u0, **{**kwargs, **overrides})


def solve(loss=quadratic, u0=X0, model="rgf", **overrides):
    kwargs = dict(method="hb", beta=0.5, eta=0.1, num_pieces=3)
    return hbflow.solve_model(model, loss, u0, **{**kwargs, **overrides})


NAN, INF = math.nan, math.inf

API_CASES = {
    # β outside [0, 1)
    "compare-beta-1": (lambda: compare(beta=1.0), r"beta must be in \[0, 1\), got 1\.0"),
    "compare-beta-negative": (lambda: compare(beta=-0.1), r"beta must be in \[0, 1\)"),
    "compare-beta-nan": (lambda: compare(beta=NAN), r"beta must be in \[0, 1\)"),
    "compare-beta-text": (lambda: compare(beta="x"), r"beta must be a number in \[0, 1\)"),
    "compare-gd-beta": (lambda: compare(method="gd", beta=0.5), r"method 'gd' is the case beta"),
    "iterates-beta": (lambda: iterates(beta=1.5), r"beta must be in \[0, 1\), got 1\.5"),
    "iterates-beta-text": (lambda: iterates(beta="x"), r"beta must be a number in \[0, 1\)"),
    "solve-beta": (lambda: solve(beta=1.0), r"beta must be in \[0, 1\)"),
    "coefficients_at-beta": (
        lambda: hbflow.coefficients_at(3, 2, beta=1),
        r"beta must be in \[0, 1\)",
    ),
    "counter_terms.at-beta": (
        lambda: hbflow.counter_terms(3).at(2, beta=2),
        r"beta must be in \[0, 1\)",
    ),
    "table-beta": (
        lambda: hbflow.HeavyBallFlow(2).coefficients("hb", 1.0, 3),
        r"beta must be in \[0, 1\)",
    ),
    "model-order-beta": (
        lambda: hbflow.HeavyBallFlow(2).order("hb", 1.0),
        r"beta must be in \[0, 1\)",
    ),
    "assert_error_order-beta": (
        lambda: assert_error_order(quadratic, X0, beta=1.0, etas=[0.1, 0.05]),
        r"beta must be in \[0, 1\)",
    ),
    # η <= 0 or not finite
    "iterates-eta-0": (lambda: iterates(eta=0.0), r"eta must be a finite number > 0, got 0\.0"),
    "iterates-eta-negative": (lambda: iterates(eta=-1e-3), r"eta must be a finite number > 0"),
    "iterates-eta-inf": (lambda: iterates(eta=INF), r"eta must be a finite number > 0, got inf"),
    "iterates-eta-nan": (lambda: iterates(eta=NAN), r"eta must be a finite number > 0, got nan"),
    "iterates-eta-none": (lambda: iterates(eta=None), r"eta must be a real scalar, got None"),
    "solve-eta-0": (lambda: solve(eta=0.0), r"eta must be a finite number > 0"),
    "solve-eta-inf": (lambda: solve(eta=INF), r"eta must be a finite number > 0"),
    "compare-eta-negative": (
        lambda: compare(etas=[0.1, -0.05]),
        r"eta must be a finite number > 0, got -0\.05",
    ),
    "compare-eta-inf": (lambda: compare(etas=[INF, 0.1]), r"eta must be a finite number > 0"),
    "compare-eta-nan": (lambda: compare(etas=[0.1, NAN]), r"eta must be a finite number > 0"),
    # order < 1 or not an integer
    "counter_terms-order-0": (
        lambda: hbflow.counter_terms(0),
        r"order must be an integer >= 1, got 0",
    ),
    "counter_terms-order-float": (
        lambda: hbflow.counter_terms(2.5),
        r"order must be an integer >= 1, got 2\.5",
    ),
    "coefficients_at-order": (
        lambda: hbflow.coefficients_at(0, 1),
        r"order must be an integer >= 1",
    ),
    "coefficients_up_to-order": (
        lambda: hbflow.coefficients_up_to(1.5, 2),
        r"order must be an integer >= 1",
    ),
    "HeavyBallFlow-order": (
        lambda: hbflow.HeavyBallFlow(0),
        r"alpha must be an integer >= 1, got 0",
    ),
    "SteadyStateFlow-order": (
        lambda: hbflow.SteadyStateFlow(2.5),
        r"alpha must be an integer >= 1, got 2\.5",
    ),
    "model-name-order": (lambda: hbflow.model_from_name("hbf0"), r"unknown model 'hbf0'.*N >= 1"),
    "trees-order": (lambda: hbflow.trees_up_to(0), r"order must be an integer >= 1"),
    # step sizes for a slope fit: empty, unsorted, too short
    "compare-etas-empty": (lambda: compare(etas=[]), r"etas must be a non-empty list"),
    "compare-etas-one": (lambda: compare(etas=[0.1]), r"etas must hold at least two step sizes"),
    "compare-etas-unsorted": (
        lambda: compare(etas=[0.05, 0.1, 0.025]),
        r"etas must be sorted \(decreasing",
    ),
    "compare-etas-repeated": (lambda: compare(etas=[0.1, 0.1]), r"etas must be distinct"),
    "compare-etas-text": (lambda: compare(etas="0.1,0.05"), r"etas must be a list of step sizes"),
    "fit_order-empty": (lambda: hbflow.fit_order([], []), r"etas must be a non-empty"),
    "fit_order-single": (lambda: hbflow.fit_order([0.01], [1.0]), r"at least two step sizes"),
    "fit_order-unsorted": (
        lambda: hbflow.fit_order([0.02, 0.04, 0.01], [1.0, 2.0, 0.5]),
        r"etas must be sorted",
    ),
    "fit_order-lengths": (
        lambda: hbflow.fit_order([0.02, 0.01], [1.0]),
        r"errors must have one entry per step size",
    ),
    "fit_order-eta-0": (
        lambda: hbflow.fit_order([0.02, 0.0], [1.0, 0.5]),
        r"etas must be finite and > 0",
    ),
    # horizon not a multiple of η
    "compare-horizon-multiple": (
        lambda: compare(horizon=0.33),
        r"horizon 0\.33 must be a positive integer multiple of every "
        r"eta; horizon/eta = 3\.3 for eta=0\.1 \(e\.g\. horizon=0\.3 or horizon=0\.4: "
        r"multiples of 0\.1, the least common multiple",
    ),
    "compare-horizon-short": (
        lambda: compare(horizon=0.04),
        r"horizon 0\.04 must be a positive integer multiple",
    ),
    "compare-horizon-0": (lambda: compare(horizon=0.0), r"horizon must be a finite number > 0"),
    "compare-horizon-nan": (lambda: compare(horizon=NAN), r"horizon must be a finite number > 0"),
    # a loss that is not scalar-valued, not traceable by JAX, not finite at u0
    "compare-loss-vector": (
        lambda: compare(loss=not_scalar),
        r"loss must return a real scalar \(shape \(\)\), got shape \(2,\)",
    ),
    "compare-loss-int": (
        lambda: compare(loss=lambda u: jnp.sum(u > 0)),
        r"loss must return a real floating scalar, got dtype int",
    ),
    "compare-loss-numpy": (
        lambda: compare(loss=numpy_loss),
        r"loss is not traceable by JAX \(TracerArrayConversionError",
    ),
    "compare-loss-branch": (
        lambda: compare(loss=python_branch),
        r"loss is not traceable by JAX \(TracerBoolConversionError.*jnp\.where",
    ),
    "compare-loss-nan": (lambda: compare(loss=log_loss), r"loss must be finite at u0, got nan"),
    "compare-loss-grad-inf": (
        lambda: compare(loss=sqrt_loss, u0=jnp.array([0.0, 1.0])),
        r"the gradient of the loss must be finite at u0",
    ),
    "compare-loss-not-callable": (
        lambda: compare(loss=3),
        r"loss must be a callable returning a real scalar, got 3",
    ),
    "iterates-loss-vector": (lambda: iterates(loss=not_scalar), r"loss must return a real scalar"),
    "iterates-loss-numpy": (lambda: iterates(loss=numpy_loss), r"loss is not traceable by JAX"),
    "iterates-loss-nan": (lambda: iterates(loss=log_loss), r"loss must be finite at u0, got nan"),
    "solve-loss-vector": (lambda: solve(loss=not_scalar), r"loss must return a real scalar"),
    "solve-loss-branch": (lambda: solve(loss=python_branch), r"loss is not traceable by JAX"),
    "solve-loss-nan": (lambda: solve(loss=log_loss), r"loss must be finite at u0"),
    # u0 with NaN/Inf or the wrong shape
    "compare-u0-nan": (
        lambda: compare(u0=jnp.array([1.0, NAN])),
        r"u0 must be finite; u0 contains NaN or Inf",
    ),
    "compare-u0-inf": (lambda: compare(u0=[INF, 0.0]), r"u0 must be finite"),
    "compare-u0-pytree-nan": (
        lambda: compare(loss=lambda p: jnp.sum(p["a"] ** 2), u0={"a": jnp.array([1.0, NAN])}),
        r"u0 must be finite; u0\['a'\] contains NaN or Inf",
    ),
    "compare-u0-shape": (
        lambda: compare(loss=matrix_loss, u0=jnp.ones(3)),
        r"loss cannot be evaluated at u0 \(shape \(3,\)\).*check that u0 has "
        r"the shape the loss expects",
    ),
    "compare-u0-too-short": (
        lambda: compare(loss=reads_third, u0=jnp.ones(2)),
        r"loss indexes outside u0 \(shape \(2,\)\): .*index 2 is out of "
        r"bounds",
    ),
    "compare-u0-empty": (lambda: compare(u0=jnp.zeros(0)), r"u0 must have at least one entry"),
    "compare-u0-text": (lambda: compare(u0="1,2"), r"u0 must be an array of real numbers"),
    "compare-u0-none": (lambda: compare(u0=None), r"u0 must be an array \(or a pytree"),
    "compare-u0-complex": (lambda: compare(u0=jnp.array([1j, 0.0])), r"u0 must be real"),
    "iterates-u0-nan": (lambda: iterates(u0=jnp.array([NAN, 1.0])), r"u0 must be finite"),
    "iterates-u0-too-short": (
        lambda: iterates(loss=reads_third, u0=jnp.ones(2)),
        r"loss indexes outside u0",
    ),
    "iterates-v0-shape": (lambda: iterates(v0=jnp.zeros(3)), r"v0 must have the shapes of u0"),
    "solve-u0-inf": (lambda: solve(u0=jnp.array([1.0, INF])), r"u0 must be finite"),
    "solve-u0-too-short": (
        lambda: solve(loss=reads_third, u0=jnp.ones(2)),
        r"loss indexes outside u0",
    ),
    # unknown problem, model or method names, with the valid names listed
    "get_problem": (
        lambda: hbflow.get_problem("nope"),
        r"unknown problem 'nope'; valid names: ks-quadratic-5, .*himmelblau-scaled",
    ),
    "model_from_name": (
        lambda: hbflow.model_from_name("rk4"),
        r"unknown model 'rk4'; valid models are hbfN and steadyN .*gf, rgf, ks2, "
        r"mgf",
    ),
    "compare-model": (lambda: compare(models=["hbf2", "rk4"]), r"unknown model 'rk4'"),
    "compare-model-object": (
        lambda: compare(models=[3]),
        r"models: 3 is neither a model name nor a continuous model",
    ),
    "solve-model": (lambda: solve(model="rk4"), r"unknown model 'rk4'; valid models"),
    "solve-model-object": (lambda: solve(model=3), r"model must be a continuous model"),
    "compare-method": (
        lambda: compare(method="adam"),
        r"method must be one of hb, nag, gd, nesterov, qhm",
    ),
    "iterates-method": (
        lambda: iterates(method="adam"),
        r"method must be one of hb, nag, gd, nesterov, qhm, got 'adam'",
    ),
    "solve-method": (
        lambda: solve(method="sgd"),
        r"method must be one of hb, nag, gd, nesterov, qhm",
    ),
    "counter_terms-method": (
        lambda: hbflow.counter_terms(3, "adam"),
        r"method must be one of hb, nag, gd, nesterov, qhm, got 'adam'",
    ),
    "coefficients_at-method": (
        lambda: hbflow.coefficients_at(2, 1, method="sgd"),
        r"method must be one of hb, nag, gd, nesterov, qhm",
    ),
    "model-order-method": (
        lambda: hbflow.RescaledGradientFlow().order("adam", 0.5),
        r"method must be one of hb, nag, gd, nesterov, qhm",
    ),
    # other arguments of the entry points
    "compare-max_steps": (lambda: compare(max_steps=0), r"max_steps must be an integer >= 1"),
    "compare-rtol": (lambda: compare(rtol=0.0), r"rtol must be a finite number > 0"),
    "compare-solver": (lambda: compare(solver="tsit5"), r"solver must be a diffrax solver"),
    "compare-progress": (lambda: compare(progress="yes"), r"progress must be a bool or a callable"),
    "solve-num_pieces": (lambda: solve(num_pieces=2.0), r"num_pieces must be an integer >= 1"),
    "iterates-num_steps": (lambda: iterates(num_steps=0), r"num_steps must be an integer >= 1"),
    "counter_terms.at-k": (lambda: hbflow.counter_terms(2).at(-1), r"k must be an integer >= 0"),
    "coefficients_up_to-k_max": (
        lambda: hbflow.coefficients_up_to(2, -1),
        r"^k_max must be an integer >= 0, got -1$",
    ),
    "coefficients_at-k": (lambda: hbflow.coefficients_at(2, -1), r"^k must be an integer >= 0"),
    "compare-throw": (lambda: compare(throw="no"), r"throw must be True or False"),
    "field_text-k": (
        lambda: hbflow.field_text(hbflow.counter_terms(2), k=1.5),
        r"k must be an integer >= 0",
    ),
    "field_text-object": (
        lambda: hbflow.field_text("hb"),
        r"expected the CounterTerms of hbflow\.counter_terms",
    ),
    "field_latex-views": (
        lambda: hbflow.field_latex(hbflow.counter_terms(2), k=1, steady_state=True),
        r"give either k or steady_state, not both",
    ),
    "network-size": (lambda: hbflow.diagonal_linear_network(n=0), r"n must be an integer >= 1"),
    "network-scale": (
        lambda: hbflow.deep_linear_network(init_scale="big"),
        r"init_scale must be a finite number > 0",
    ),
    "plot-study": (
        lambda: hbflow.plot_order_study("study", "out.png"),
        r"study must be an OrderStudy",
    ),
    "assert_error_order-tol": (
        lambda: assert_error_order(quadratic, X0, etas=[0.1, 0.05], tol=0),
        r"tol must be a finite number > 0",
    ),
    "assert_error_order-models": (
        lambda: assert_error_order(quadratic, X0, etas=[0.1, 0.05], models=["rgf"]),
        r"assert_error_order sets models itself",
    ),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_rejects_bad_input(case):
    call, match = API_CASES[case]
    with pytest.raises(ValueError, match=match):
        call()


def test_api_refuses_float32():
    # hbflow switches float64 on at import; a later switch-off must not give float32 results.
    assert jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        for call in (
            lambda: compare(),
            lambda: iterates(),
            lambda: solve(),
            lambda: assert_error_order(quadratic, X0, etas=[0.1, 0.05]),
        ):
            with pytest.raises(RuntimeError, match=r"needs float64.*jax_enable_x64.*meaningless"):
                call()
    finally:
        jax.config.update("jax_enable_x64", True)
    study = compare()  # and float64 on again: it runs, in float64
    assert study.models["rgf"].errors[0].dtype == np.float64


# --- the command line --------------------------------------------------------------------------

BAD_LOSSES = """
import jax.numpy as jnp
import numpy as np

def vector(u):
    return u ** 2

def numpy_loss(u):
    return float(np.sum(np.asarray(u) ** 2))

def log_loss(u):
    return jnp.log(u[0] - 2.0)

def reads_second(u):
    return u[0] ** 2 + u[1] ** 2

NOT_A_FUNCTION = 3
"""


@pytest.fixture(scope="module")
def loss_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("losses")
    (folder / "hbflow_bad_losses.py").write_text(textwrap.dedent(BAD_LOSSES))
    (folder / "hbflow_broken_module.py").write_text("def loss(u)\n    return u\n")
    return folder


LOSS = "hbflow_bad_losses"
CLI_CASES = {
    # β outside [0, 1)
    "order-beta-1": (["order", "--beta", "1.0"], r"--beta must be in \[0, 1\), got 1\.0"),
    "order-beta-negative": (["order", "--beta", "-0.5"], r"--beta must be in \[0, 1\)"),
    "order-beta-text": (["order", "--beta", "x"], r"--beta must be a number in \[0, 1\), got 'x'"),
    "derive-beta-1": (["derive", "--order", "2", "--beta", "1"], r"beta must be in \[0, 1\)"),
    "derive-beta-text": (
        ["derive", "--order", "2", "--beta", "x"],
        r"beta must be a number in \[0, 1\)",
    ),
    # η <= 0 or not finite
    "order-eta-0": (
        ["order", "--etas", "0.04,0"],
        r"--etas: every step size must be a finite number > 0, got 0",
    ),
    "order-eta-negative": (
        ["order", "--etas", "0.04,-0.02"],
        r"--etas: every step size must be a finite number > 0",
    ),
    "order-eta-inf": (["order", "--etas", "0.04,inf"], r"--etas must be finite, got 'inf'"),
    "order-eta-nan": (["order", "--etas", "nan,0.02"], r"--etas must be finite, got 'nan'"),
    "order-eta-text": (["order", "--etas", "0.04,big"], r"--etas must be a number > 0"),
    # order < 1 or not an integer
    "derive-order-0": (["derive", "--order", "0"], r"order must be an integer >= 1, got 0"),
    "derive-order-float": (["derive", "--order", "2.5"], r"--order: invalid int value: '2\.5'"),
    "order-model-order": (["order", "--models", "hbf0"], r"unknown model 'hbf0'.*N >= 1"),
    # step sizes for a slope fit
    "order-etas-empty": (["order", "--etas", ","], r"--etas must be a comma-separated list"),
    "order-etas-one": (["order", "--etas", "0.04"], r"etas must hold at least two step sizes"),
    "order-etas-unsorted": (["order", "--etas", "0.02,0.04,0.01"], r"etas must be sorted"),
    "order-etas-repeated": (["order", "--etas", "0.04,0.04"], r"etas must be distinct"),
    # horizon
    "order-horizon-multiple": (
        ["order", "--horizon", "0.33"],
        r"horizon 0\.33 must be a positive integer multiple of every eta",
    ),
    "order-horizon-0": (["order", "--horizon", "0"], r"--horizon must be a finite number > 0"),
    "order-horizon-text": (["order", "--horizon", "two"], r"--horizon must be a number > 0"),
    # the loss
    "order-loss-vector": (
        ["order", "--loss", f"{LOSS}:vector", "--x0", "1,2"],
        r"loss must return a real scalar \(shape \(\)\), got shape \(2,\)",
    ),
    "order-loss-numpy": (
        ["order", "--loss", f"{LOSS}:numpy_loss", "--x0", "1,2"],
        r"loss is not traceable by JAX",
    ),
    "order-loss-nan": (
        ["order", "--loss", f"{LOSS}:log_loss", "--x0", "1,2"],
        r"loss must be finite at u0, got nan",
    ),
    # x0
    "order-x0-nan": (["order", "--x0", "1,nan"], r"--x0 must be finite, got 'nan'"),
    "order-x0-inf": (["order", "--x0", "inf,1"], r"--x0 must be finite, got 'inf'"),
    "order-x0-text": (["order", "--x0", "1,a"], r"--x0 must be a number"),
    "order-x0-length": (
        ["order", "--x0", "1,2,3"],
        r"--x0 must have 2 numbers for problem himmelblau-scaled",
    ),
    "order-x0-pytree": (
        ["order", "--problem", "diagonal-linear-network", "--x0", "1,2"],
        r"--x0 cannot set the start of diagonal-linear-network",
    ),
    "order-x0-too-short": (
        ["order", "--loss", f"{LOSS}:reads_second", "--x0", "1"],
        r"loss indexes outside u0 \(shape \(1,\)\)",
    ),
    "order-x0-missing": (
        ["order", "--loss", f"{LOSS}:reads_second"],
        r"--x0 is required with --loss",
    ),
    # names
    "order-problem": (
        ["order", "--problem", "nope"],
        r"--problem must be one of .*himmelblau-scaled.*, got 'nope'",
    ),
    "order-model": (
        ["order", "--models", "hbf2,foo"],
        r"unknown model 'foo'; valid models are hbfN and steadyN",
    ),
    "order-method": (
        ["order", "--method", "sgd"],
        r"method must be one of hb, nag, gd, nesterov, qhm, got 'sgd'",
    ),
    "derive-method": (
        ["derive", "--order", "2", "--method", "sgd"],
        r"method must be one of hb, nag, gd, nesterov, qhm",
    ),
    "order-format": (
        ["order", "--format", "xml"],
        r"--format must be one of text, json, got 'xml'",
    ),
    "derive-format": (
        ["derive", "--order", "2", "--format", "xml"],
        r"format must be one of text, latex, json",
    ),
    # --loss module:function that cannot be imported
    "loss-no-module": (
        ["order", "--loss", "hbflow_no_such_module:f", "--x0", "1,2"],
        r"--loss: cannot import module 'hbflow_no_such_module'",
    ),
    "loss-no-function": (
        ["order", "--loss", f"{LOSS}:nope", "--x0", "1,2"],
        r"--loss: module 'hbflow_bad_losses' has no function 'nope'",
    ),
    "loss-not-callable": (
        ["order", "--loss", f"{LOSS}:NOT_A_FUNCTION", "--x0", "1,2"],
        r"has no function 'NOT_A_FUNCTION'",
    ),
    "loss-syntax-error": (
        ["order", "--loss", "hbflow_broken_module:loss", "--x0", "1,2"],
        r"--loss: cannot import module 'hbflow_broken_module' from the current "
        r"directory: expected ':'",
    ),
    "loss-no-colon": (
        ["order", "--loss", "hbflow_bad_losses", "--x0", "1,2"],
        r"--loss must be module:function",
    ),
    # other options
    "order-max-steps": (["order", "--max-steps", "0"], r"--max-steps must be an integer >= 1"),
    "order-rtol": (["order", "--rtol", "-1"], r"--rtol must be a finite number > 0"),
    "order-plot": (["order", "--plot", "figure"], r"--plot must be a file name with a suffix"),
    "derive-k": (["derive", "--order", "2", "--k", "-1"], r"k must be an integer >= 0"),
    "no-command": ([], r"the following arguments are required"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_rejects_bad_input(case, capsys, loss_dir, monkeypatch):
    argv, match = CLI_CASES[case]
    monkeypatch.chdir(loss_dir)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (code, err)
    assert out == ""
    assert "Traceback" not in err
    assert "hbflow: error: " in err
    assert re.search(match, err), err


def _console_script() -> str | None:
    here = Path(sys.executable).parent / "hbflow"
    return str(here) if here.exists() else shutil.which("hbflow")


@pytest.mark.parametrize(
    "entry,argv,match",
    [
        ("module", ["order", "--beta", "1.0"], "--beta must be in [0, 1)"),
        (
            "module",
            ["order", "--loss", "hbflow_no_such_module:f", "--x0", "1,2"],
            "--loss: cannot import module 'hbflow_no_such_module'",
        ),
        ("console-script", ["derive", "--order", "0"], "order must be an integer >= 1"),
    ],
)
def test_real_process_reports_without_traceback(entry, argv, match, tmp_path):
    if entry == "module":
        command = [sys.executable, "-m", "hbflow._cli"]
    else:
        script = _console_script()
        if script is None:
            pytest.skip("the hbflow console script is not installed")
        command = [script]
    proc = subprocess.run(command + argv, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("hbflow: error: ") and match in proc.stderr

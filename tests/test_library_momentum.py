"""The library momentum rules (docs/theory.md#library-momentum): iterates, limits and checks.

The iterates of ``hb`` and ``nesterov`` are compared step by step with optax's own
``optax.sgd``; ``qhm`` with a velocity-form loop written here from Ma & Yarats (2019).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hbflow._cli import main
from hbflow._methods import DivergenceError, iterates, stability_limit


def loss_a(p):
    # Non-convex, on a pytree: a quartic in w with a sine, coupled to a scalar b.
    w, b = p["w"], p["b"]
    return 0.25 * jnp.sum(w**4) + jnp.sum(jnp.sin(w)) + 0.5 * b**2 * (1.0 + w[0] ** 2)


def loss_b(p):
    # A log-sum-exp with a quadratic term, on a tuple of arrays.
    x, y = p
    z = jnp.concatenate([x @ jnp.array([1.0, -2.0]), y.ravel()])
    return jax.nn.logsumexp(z) + 0.5 * jnp.sum(x**2) + 0.1 * jnp.sum(y**2)


STARTS = {
    "a": (loss_a, {"w": jnp.array([0.7, -0.4, 1.1]), "b": jnp.array(0.3)}),
    "b": (loss_b, (jnp.array([[0.5, -1.0], [0.2, 0.3]]), jnp.array([[0.4], [-0.6]]))),
}


@functools.cache
def _optax_run(loss, eta, beta, nesterov, num_steps):
    opt = optax.sgd(eta, momentum=beta, nesterov=nesterov)
    grad = jax.grad(loss)

    @jax.jit
    def run(u0):
        def step(carry, _):
            u, state = carry
            updates, state = opt.update(grad(u), state, u)
            u = optax.apply_updates(u, updates)
            return (u, state), u

        _, us = jax.lax.scan(step, (u0, opt.init(u0)), None, length=num_steps)
        return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b]), u0, us)

    return run


@pytest.mark.parametrize("name", list(STARTS))
@pytest.mark.parametrize("eta,beta", [(0.05, 0.7), (0.02, 0.9), (0.1, 0.3)])
@pytest.mark.parametrize("method,nesterov", [("hb", False), ("nesterov", True)])
def test_iterates_equal_optax_sgd_step_by_step(name, eta, beta, method, nesterov):
    loss, u0 = STARTS[name]
    num_steps = 60
    got = iterates(loss, u0, method=method, beta=beta, eta=eta, num_steps=num_steps)
    want = _optax_run(loss, eta, beta, nesterov, num_steps)(u0)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert g.shape == w.shape == (num_steps + 1, *w.shape[1:])
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=1e-13)


def test_nag_is_not_optax_nesterov_but_its_look_ahead_sequence():
    # nag is the sequence x_k; optax's Nesterov is y_k = x_k + beta (x_k - x_{k-1}).
    loss, u0 = STARTS["a"]
    eta, beta, n = 0.05, 0.7, 60
    x = iterates(loss, u0, method="nag", beta=beta, eta=eta, num_steps=n)
    y = iterates(loss, u0, method="nesterov", beta=beta, eta=eta, num_steps=n)
    x_prev = jax.tree_util.tree_map(lambda a: jnp.concatenate([a[:1], a[:-1]]), x)
    look = jax.tree_util.tree_map(lambda a, b: a + beta * (a - b), x, x_prev)
    for got, want in zip(jax.tree_util.tree_leaves(y), jax.tree_util.tree_leaves(look)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-13)
    gap = max(float(jnp.abs(a - b).max()) for a, b in zip(*map(jax.tree_util.tree_leaves, (x, y))))
    assert gap > 1e-3


def qhm_velocity_form(grad, u0, eta, beta, nu, num_steps):
    """QHM as Ma & Yarats write it.

    m <- beta m + (1-beta) grad, u <- u - eta [(1-nu) grad + nu m].
    """
    u = np.array(u0, dtype=np.float64)
    m = np.zeros_like(u)
    out = [u.copy()]
    for _ in range(num_steps):
        d = grad(u)
        m = beta * m + (1 - beta) * d
        u = u - eta * ((1 - nu) * d + nu * m)
        out.append(u.copy())
    return np.stack(out)


def _np_grad(u):
    # The gradient of loss_flat below, written by hand.
    g = u**3 + np.cos(u)
    g[0] += u[1]
    g[1] += u[0]
    return g


def loss_flat(u):
    return 0.25 * jnp.sum(u**4) + jnp.sum(jnp.sin(u)) + u[0] * u[1]


@pytest.mark.parametrize("eta,beta,nu", [(0.05, 0.9, 0.7), (0.1, 0.5, 0.0), (0.02, 0.99, 1.0)])
def test_qhm_equals_its_velocity_form(eta, beta, nu):
    u0 = np.array([0.7, -0.4, 1.1])
    got = iterates(
        loss_flat, jnp.asarray(u0), method="qhm", beta=beta, nu=nu, eta=eta, num_steps=80
    )
    want = qhm_velocity_form(_np_grad, u0, eta, beta, nu, 80)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-13)


def test_qhm_at_the_ends_of_nu():
    # nu = 1: heavy ball with step eta (1 - beta); nu = 0: gradient descent.
    u0 = jnp.array([0.7, -0.4, 1.1])
    eta, beta = 0.05, 0.8
    one = iterates(loss_flat, u0, method="qhm", beta=beta, nu=1.0, eta=eta, num_steps=50)
    hb = iterates(loss_flat, u0, method="hb", beta=beta, eta=eta * (1 - beta), num_steps=50)
    np.testing.assert_allclose(np.asarray(one), np.asarray(hb), rtol=0, atol=1e-13)
    zero = iterates(loss_flat, u0, method="qhm", beta=beta, nu=0.0, eta=eta, num_steps=50)
    gd = iterates(loss_flat, u0, method="gd", beta=0.0, eta=eta, num_steps=50)
    np.testing.assert_allclose(np.asarray(zero), np.asarray(gd), rtol=0, atol=1e-13)


# --- stability on a quadratic ---------------------------------------------------------------


def spectral_radius(method, beta, h, nu=None):
    """Largest |root| of the two-step recurrence on L = h u^2 / (2 eta), from the update rule."""
    # c0, c1 as Ma & Yarats and the optax source write them, eliminated by hand (theory doc).
    c0, c1 = (1 + beta, beta) if method == "nesterov" else (1 - nu * beta, beta * (1 - nu))
    # u_{k+1} = (1 + beta - h c0) u_k - (beta - h c1) u_{k-1}
    return max(abs(np.roots([1.0, -(1 + beta - h * c0), beta - h * c1])))


@pytest.mark.parametrize(
    "method,beta,nu",
    [
        ("nesterov", 0.9, None),
        ("nesterov", 0.3, None),
        ("qhm", 0.9, 0.7),
        ("qhm", 0.5, 0.0),
        ("qhm", 0.95, 1.0),
    ],
)
def test_stability_limit_is_where_the_spectral_radius_crosses_one(method, beta, nu):
    curvature = 3.0
    limit = stability_limit(method, beta, curvature, nu=nu)
    h = limit * curvature
    assert spectral_radius(method, beta, h * (1 - 1e-6), nu) < 1
    assert spectral_radius(method, beta, h * (1 + 1e-6), nu) > 1

    # ...and the iterates on that quadratic do the same.
    def quadratic(u):
        return 0.5 * curvature * jnp.sum(u**2)

    u0 = jnp.array([1.0])
    kw = dict(method=method, beta=beta, nu=nu, num_steps=4000, check_finite=False)
    below = iterates(quadratic, u0, eta=0.98 * limit, **kw)
    above = iterates(quadratic, u0, eta=1.02 * limit, **kw)
    assert abs(float(below[-1, 0])) < 1e-3
    assert not np.isfinite(float(above[-1, 0])) or abs(float(above[-1, 0])) > 1e3


def test_stability_limit_reduces_to_the_known_ones():
    # QHM at nu = 1 is HB with step eta (1 - beta); at nu = 0 it is GD; Nesterov's is NAG's.
    b = 0.8
    assert stability_limit("qhm", b, 1.0, nu=1.0) == pytest.approx(
        stability_limit("hb", b, 1.0) / (1 - b), rel=1e-14
    )
    assert stability_limit("qhm", b, 1.0, nu=0.0) == pytest.approx(2.0, rel=1e-14)
    assert stability_limit("nesterov", b, 1.0) == stability_limit("nag", b, 1.0)


def test_divergence_message_names_the_library_limit():
    def quadratic(u):
        return 2.0 * jnp.sum(u**2)  # L_max = 4

    with pytest.raises(DivergenceError, match=r"2\(1\+beta\)/\(\(1\+beta-2 nu beta\) L_max\)") as e:
        eta = 4 * stability_limit("qhm", 0.9, 4.0, nu=0.7)
        iterates(quadratic, jnp.ones(2), method="qhm", beta=0.9, nu=0.7, eta=eta, num_steps=2000)
    assert "nu=0.7" in str(e.value)
    assert f"{stability_limit('qhm', 0.9, 4.0, nu=0.7):.4g}" in str(e.value)
    with pytest.raises(DivergenceError, match=r"2\(1\+beta\)/\(\(1\+2 beta\) L_max\)"):
        eta = 4 * stability_limit("nesterov", 0.9, 4.0)
        iterates(quadratic, jnp.ones(2), method="nesterov", beta=0.9, eta=eta, num_steps=2000)


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="qhm", nu=1.5), r"nu must be in \[0, 1\], got 1\.5"),
        (dict(method="qhm", nu=-0.1), r"nu must be in \[0, 1\]"),
        (dict(method="qhm", nu=float("nan")), r"nu must be in \[0, 1\]"),
        (dict(method="qhm"), r"method 'qhm' needs nu"),
        (dict(method="hb", nu=0.7), r"nu is the parameter of quasi-hyperbolic momentum.*'hb'"),
        (dict(method="nesterov", nu=0.7), r"method 'nesterov' has no nu"),
        (dict(method="nesterov", v0=jnp.array([0.1, 0.0])), r"v0 must be None \(or zero\)"),
        (dict(method="qhm", nu=0.7, v0=jnp.array([0.0, 0.2])), r"for method 'qhm'"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        iterates(loss_flat, jnp.array([0.1, 0.2]), beta=0.9, eta=0.1, num_steps=3, **kwargs)


def test_zero_initial_velocity_is_from_rest():
    u0 = jnp.array([0.1, 0.2])
    a = iterates(loss_flat, u0, method="nesterov", beta=0.9, eta=0.1, num_steps=5)
    b = iterates(loss_flat, u0, method="nesterov", beta=0.9, eta=0.1, num_steps=5, v0=jnp.zeros(2))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--method", "qhm", "--nu", "1.2"], r"--nu must be in \[0, 1\], got '1\.2'"),
        (["--method", "qhm", "--nu", "x"], r"--nu must be a number in \[0, 1\], got 'x'"),
        (["--method", "qhm"], r"method 'qhm' needs --nu"),
        (["--method", "hb", "--nu", "0.7"], r"method 'hb' has no --nu"),
    ],
)
def test_cli_order_bad_nu(capsys, argv, match):
    code = main(["order", *argv])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("hbflow: error: ")
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(match, err), err

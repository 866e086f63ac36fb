"""The discrete methods against a plain NumPy loop, compile-once behaviour, and input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow._methods import iterates

A = np.array([[3.0, 1.0], [1.0, 2.0]])


def loss_np_grad(u):
    # L(u) = 1/2 u.Au + 1/4 sum(u^4) + sin(u_0): non-quadratic, so the look-ahead point matters.
    g = A @ u + u**3
    g[0] += np.cos(u[0])
    return g


def loss_jax(u):
    return 0.5 * u @ (A @ u) + 0.25 * jnp.sum(u**4) + jnp.sin(u[0])


def reference(grad, u0, method, beta, eta, num_steps, v0=None):
    """The recursion of docs/theory.md#methods written with u_{k-1} kept explicitly."""
    a = {"gd": 0.0, "hb": 0.0, "nag": beta}[method]
    u = np.array(u0, dtype=np.float64)
    u_prev = u.copy() if v0 is None else u - np.asarray(v0)
    out = [u.copy()]
    for _ in range(num_steps):
        u_next = u + beta * (u - u_prev) - eta * grad(u + a * (u - u_prev))
        u_prev, u = u, u_next
        out.append(u.copy())
    return np.stack(out)


@pytest.mark.parametrize("method,beta", [("gd", 0.0), ("hb", 0.9), ("hb", 0.3), ("nag", 0.9)])
@pytest.mark.parametrize("v0", [None, np.array([0.05, -0.02])])
def test_matches_python_loop(method, beta, v0):
    u0 = np.array([0.7, -0.4])
    got = iterates(
        loss_jax,
        jnp.asarray(u0),
        method=method,
        beta=beta,
        eta=0.05,
        num_steps=40,
        v0=None if v0 is None else jnp.asarray(v0),
    )
    want = reference(loss_np_grad, u0, method, beta, 0.05, 40, v0=None if method == "gd" else v0)
    assert got.shape == (41, 2)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-14)


def test_methods_differ():
    # Guards against a look-ahead or momentum that is silently dropped.
    u0 = jnp.array([0.7, -0.4])
    runs = {
        m: iterates(loss_jax, u0, method=m, beta=0.5 * (m != "gd"), eta=0.05, num_steps=5)
        for m in ("gd", "hb", "nag")
    }
    assert not np.allclose(runs["gd"][-1], runs["hb"][-1])
    assert not np.allclose(runs["hb"][-1], runs["nag"][-1])
    for run in runs.values():
        np.testing.assert_array_equal(run[0], u0)
        # From rest the first step is a gradient step for every method.
        np.testing.assert_allclose(run[1], u0 - 0.05 * loss_np_grad(np.asarray(u0)), rtol=1e-14)


def test_pytree_parameters():
    w = np.array([[0.5, -0.3], [0.2, 0.8]])
    b = np.array([0.1, -0.2])

    def loss(p):
        return jnp.sum(jnp.tanh(p["w"] @ p["b"]) ** 2) + 0.5 * jnp.sum(p["w"] ** 2)

    def grad_np(w, b):
        z = w @ b
        s = 2 * np.tanh(z) * (1 - np.tanh(z) ** 2)
        return np.outer(s, b) + w, w.T @ s

    p0 = {"w": jnp.asarray(w), "b": jnp.asarray(b)}
    v0 = {"w": jnp.full((2, 2), 0.01), "b": jnp.array([0.0, 0.02])}
    got = iterates(loss, p0, method="nag", beta=0.8, eta=0.1, num_steps=25, v0=v0)
    assert set(got) == {"w", "b"}
    assert got["w"].shape == (26, 2, 2) and got["b"].shape == (26, 2)

    beta, eta = 0.8, 0.1
    w_prev, b_prev = w - 0.01, b - np.array([0.0, 0.02])
    for k in range(25):
        yw, yb = w + beta * (w - w_prev), b + beta * (b - b_prev)
        gw, gb = grad_np(yw, yb)
        w_next = w + beta * (w - w_prev) - eta * gw
        b_next = b + beta * (b - b_prev) - eta * gb
        w_prev, b_prev, w, b = w, b, w_next, b_next
        np.testing.assert_allclose(got["w"][k + 1], w, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got["b"][k + 1], b, rtol=1e-12, atol=1e-14)


def test_no_retrace_across_eta_and_beta():
    traces = []

    def loss(u):
        traces.append(None)  # runs only while JAX traces the function
        return jnp.sum(jnp.cos(u)) + jnp.sum(u**2)

    u0 = jnp.array([0.3, 0.1, -0.2])
    iterates(loss, u0, method="hb", beta=0.9, eta=0.1, num_steps=20)
    n_first = len(traces)
    assert n_first >= 1
    for eta in (0.05, 0.025, 0.0125, 1e-3):
        for beta in (0.9, 0.5, 0.0):
            iterates(loss, u0, method="hb", beta=beta, eta=eta, num_steps=20)
    # Python floats, NumPy and JAX scalars all reuse the compiled iteration.
    iterates(loss, u0, method="hb", beta=np.float64(0.3), eta=jnp.asarray(0.2), num_steps=20)
    iterates(loss, u0 + 1.0, method="hb", beta=0.3, eta=0.2, num_steps=20, v0=jnp.ones(3))
    assert len(traces) == n_first
    # A new method, shape or length is a new compilation.
    iterates(loss, u0, method="nag", beta=0.9, eta=0.1, num_steps=20)
    assert len(traces) > n_first


def test_vmap_over_eta():
    u0 = jnp.array([0.7, -0.4])
    etas = jnp.array([0.1, 0.05, 0.01])
    batched = jax.vmap(
        lambda eta: iterates(loss_jax, u0, method="hb", beta=0.6, eta=eta, num_steps=7)
    )(etas)
    for eta, run in zip(etas, batched):
        want = reference(loss_np_grad, np.asarray(u0), "hb", 0.6, float(eta), 7)
        np.testing.assert_allclose(run, want, rtol=1e-12)


def test_public_reexport():
    assert hbflow.iterates is iterates


def _call(**overrides):
    kwargs = dict(method="hb", beta=0.9, eta=0.1, num_steps=5)
    kwargs.update(overrides)
    loss = kwargs.pop("loss", loss_jax)
    u0 = kwargs.pop("u0", jnp.array([1.0, 0.5]))
    return iterates(loss, u0, **kwargs)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(method="adam"), r"method must be one of hb, nag, gd, nesterov, qhm, got 'adam'"),
        (dict(method="HB"), r"method must be one of"),
        (dict(beta=1.0), r"beta must be in \[0, 1\), got 1\.0"),
        (dict(beta=-0.1), r"beta must be in \[0, 1\)"),
        (dict(beta=float("nan")), r"beta must be in \[0, 1\)"),
        (dict(beta=jnp.array([0.5, 0.5])), r"beta must be a real scalar"),
        (dict(method="gd", beta=0.5), r"method 'gd' is the case beta = 0"),
        (dict(eta=0.0), r"eta must be a finite number > 0, got 0\.0"),
        (dict(eta=-1e-3), r"eta must be a finite number > 0"),
        (dict(eta=float("inf")), r"eta must be a finite number > 0, got inf"),
        (dict(eta=float("nan")), r"eta must be a finite number > 0"),
        (dict(num_steps=0), r"num_steps must be an integer >= 1"),
        (dict(num_steps=-3), r"num_steps must be an integer >= 1"),
        (dict(num_steps=2.0), r"num_steps must be an integer >= 1, got 2\.0"),
        (dict(num_steps=True), r"num_steps must be an integer >= 1"),
        (dict(u0=jnp.array([1.0, jnp.nan])), r"u0 must be finite"),
        (
            dict(u0={"a": jnp.array([1.0, jnp.inf])}, loss=lambda p: jnp.sum(p["a"])),
            r"u0 must be finite; u0\['a'\] contains NaN or Inf",
        ),
        (dict(v0=jnp.array([0.0, jnp.nan])), r"v0 must be finite"),
        (dict(v0=jnp.zeros(3)), r"v0 must have the shapes of u0"),
        (dict(v0={"a": jnp.zeros(2)}), r"v0 must have the tree structure of u0"),
        (dict(loss=lambda u: u**2), r"loss must return a real scalar \(shape \(\)\), got shape"),
        (dict(loss=lambda u: (u[0], u[1])), r"loss must return a real scalar"),
    ],
)
@pytest.mark.usefixtures("without_runtime_type_checks")  # wrong types on purpose
def test_bad_inputs(overrides, match):
    with pytest.raises(ValueError, match=match):
        _call(**overrides)


def test_gd_accepts_zero_beta_and_ignores_v0():
    u0 = jnp.array([0.7, -0.4])
    a = iterates(loss_jax, u0, method="gd", beta=0, eta=0.05, num_steps=4)
    b = iterates(loss_jax, u0, method="gd", beta=0.0, eta=0.05, num_steps=4, v0=jnp.ones(2))
    np.testing.assert_array_equal(a, b)

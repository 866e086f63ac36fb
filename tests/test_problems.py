"""The named test problems: well-formed losses, the formulas they claim, the networks' data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow._problems import (
    DEFAULT_PROBLEM,
    Problem,
    deep_linear_network,
    diagonal_linear_network,
    get_problem,
    problem_names,
)


def test_names():
    names = problem_names()
    assert len(names) == len(set(names))
    for required in (
        "ks-quadratic-5",
        "ks-quadratic-10",
        "ks-quadratic-20",
        "diagonal-linear-network",
        "deep-linear-network",
    ):
        assert required in names
    assert DEFAULT_PROBLEM in names
    # At least three 2-D non-convex problems besides the quadratics.
    two_d = []
    for name in names:
        x0 = get_problem(name).u0
        if not name.startswith("ks-") and isinstance(x0, jax.Array) and x0.shape == (2,):
            two_d.append(name)
    assert len(two_d) >= 3


@pytest.mark.parametrize("name", problem_names())
def test_problem_is_well_formed(name):
    problem = get_problem(name)
    assert isinstance(problem, Problem)
    assert problem.name == name
    assert problem.description and problem.source
    for leaf in jax.tree_util.tree_leaves(problem.u0):
        assert isinstance(leaf, jax.Array) and leaf.dtype == jnp.float64
        assert np.all(np.isfinite(leaf))
    value = problem.loss(problem.u0)
    assert jnp.shape(value) == () and value.dtype == jnp.float64
    assert np.isfinite(value) and value >= 0.0
    grad = jax.grad(problem.loss)(problem.u0)
    assert jax.tree_util.tree_structure(grad) == jax.tree_util.tree_structure(problem.u0)
    grad_leaves = jax.tree_util.tree_leaves(grad)
    assert all(np.all(np.isfinite(g)) for g in grad_leaves)
    # No problem starts at a stationary point.
    assert sum(float(jnp.sum(g**2)) for g in grad_leaves) > 1e-8


def test_get_problem_returns_the_same_object():
    assert get_problem("ks-quadratic-10") is get_problem("ks-quadratic-10")
    assert diagonal_linear_network(d=50) is diagonal_linear_network(d=50)


@pytest.mark.usefixtures("without_runtime_type_checks")  # 3 is of the wrong type on purpose
@pytest.mark.parametrize("bad", ["rosenbrock", "", "KS-QUADRATIC-5", 3])
def test_unknown_name_lists_valid_names(bad):
    with pytest.raises(ValueError, match="unknown problem") as info:
        get_problem(bad)
    for name in problem_names():
        assert name in str(info.value)


@pytest.mark.parametrize("kappa", [5, 10, 20])
def test_ks_quadratic(kappa):
    problem = get_problem(f"ks-quadratic-{kappa}")
    np.testing.assert_array_equal(problem.u0, [1.0, 1.0])
    rng = np.random.default_rng(kappa)
    for u in rng.normal(size=(5, 2)):
        want = 0.5 * (u[0] ** 2 + kappa * u[1] ** 2)
        np.testing.assert_allclose(problem.loss(jnp.asarray(u)), want, rtol=1e-15)
    hessian = jax.hessian(problem.loss)(problem.u0)
    np.testing.assert_allclose(hessian, np.diag([1.0, kappa]), rtol=1e-15)
    assert "Kovachki" in problem.source and "Stuart" in problem.source


def test_two_d_formulas():
    u = jnp.array([0.3, -1.7])
    x, y = 0.3, -1.7
    himmelblau = ((x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2) / 100
    np.testing.assert_allclose(get_problem("himmelblau-scaled").loss(u), himmelblau, rtol=1e-14)
    rosen = 0.5 * (1 - x) ** 2 + 0.5 * (y - x**2) ** 2
    np.testing.assert_allclose(get_problem("rosenbrock-soft").loss(u), rosen, rtol=1e-14)
    well = 0.25 * (x**2 - 1) ** 2 + 0.5 * y**2 + 0.5 * x**2 * y**2
    np.testing.assert_allclose(get_problem("double-well").loss(u), well, rtol=1e-14)
    # Known minima have zero loss and zero gradient.
    for name, minimum in [
        ("himmelblau-scaled", [3.0, 2.0]),
        ("rosenbrock-soft", [1.0, 1.0]),
        ("double-well", [-1.0, 0.0]),
    ]:
        loss = get_problem(name).loss
        assert float(loss(jnp.array(minimum))) == pytest.approx(0.0, abs=1e-15)
        np.testing.assert_allclose(jax.grad(loss)(jnp.array(minimum)), 0.0, atol=1e-14)


@pytest.mark.parametrize("name", ["himmelblau-scaled", "rosenbrock-soft", "double-well"])
def test_two_d_problems_are_non_convex(name):
    loss = get_problem(name).loss
    grid = jnp.stack(jnp.meshgrid(jnp.linspace(-3, 3, 31), jnp.linspace(-3, 3, 31)), -1)
    eigs = jax.vmap(jax.vmap(lambda u: jnp.linalg.eigvalsh(jax.hessian(loss)(u))[0]))(grid)
    assert float(eigs.min()) < -0.1


def test_default_problem_keeps_lambda_h_small():
    # The default of an order study: beta = 0.5, eta <= 0.04, horizon 2.
    problem = get_problem(DEFAULT_PROBLEM)
    np.testing.assert_array_equal(problem.u0, [1.0, 0.7])
    beta, eta = 0.5, 0.04
    us = hbflow.iterates(problem.loss, problem.u0, method="hb", beta=beta, eta=eta, num_steps=50)
    hessians = jax.vmap(jax.hessian(problem.loss))(us)
    norms = jnp.linalg.norm(hessians, ord=2, axis=(1, 2))
    lam = eta / (1 - beta) ** 2
    assert float(lam * norms.max()) < 0.2
    # The path visits a non-convex region and actually moves.
    assert float(jnp.linalg.eigvalsh(hessians)[:, 0].min()) < 0.0
    assert float(jnp.linalg.norm(us[-1] - us[0])) > 1.0


@pytest.mark.parametrize("d", [100, 1000, 10000])
def test_diagonal_linear_network_data(d):
    problem = diagonal_linear_network(n=40, d=d, sparsity=5, init_scale=0.1, seed=0)
    X, y, theta_star = problem.data["X"], problem.data["y"], problem.data["theta_star"]
    assert X.shape == (40, d) and y.shape == (40,) and theta_star.shape == (d,)
    assert int(jnp.count_nonzero(theta_star)) == 5
    np.testing.assert_array_equal(jnp.abs(theta_star[theta_star != 0]), 1.0)
    np.testing.assert_allclose(y, X @ theta_star, rtol=1e-14)
    assert set(problem.u0) == {"u", "v"}
    for part in ("u", "v"):
        np.testing.assert_array_equal(problem.u0[part], jnp.full(d, 0.1))
    # Balanced start: theta(0) = 0, so L(x0) = mean(y^2)/2.
    np.testing.assert_array_equal(problem.data["theta"](problem.u0), 0.0)
    np.testing.assert_allclose(problem.loss(problem.u0), 0.5 * jnp.mean(y**2), rtol=1e-14)
    # At u = sqrt(theta*_+), v = sqrt(theta*_-) the loss vanishes.
    star = {"u": jnp.sqrt(jnp.maximum(theta_star, 0)), "v": jnp.sqrt(jnp.maximum(-theta_star, 0))}
    assert float(problem.loss(star)) < 1e-28


def test_diagonal_linear_network_draws_are_those_of_its_documented_keys():
    # The recipe of the docstring, drawn op by op: the key of the seed split in three, for X,
    # the support and the signs.  The data of every study and notebook on this problem are these.
    seed, n, d, sparsity = 4, 12, 30, 4
    key_x, key_support, key_sign = jax.random.split(jax.random.PRNGKey(seed), 3)
    X = jax.random.normal(key_x, (n, d), dtype=jnp.float64)
    support = jax.random.permutation(key_support, d)[:sparsity]
    signs = jnp.where(jax.random.bernoulli(key_sign, 0.5, (sparsity,)), 1.0, -1.0)
    problem = diagonal_linear_network(n=n, d=d, sparsity=sparsity, seed=seed)
    np.testing.assert_array_equal(problem.data["X"], X)
    theta_star = np.asarray(problem.data["theta_star"])
    np.testing.assert_array_equal(theta_star[np.asarray(support)], signs)
    assert np.count_nonzero(theta_star) == sparsity
    np.testing.assert_array_equal(problem.data["y"], X @ jnp.asarray(theta_star))


def test_diagonal_linear_network_seeding_and_checks():
    a, b = diagonal_linear_network(d=30, seed=1), diagonal_linear_network(d=30, seed=2)
    assert not np.array_equal(a.data["X"], b.data["X"])
    again = diagonal_linear_network.__wrapped__(d=30, seed=1)  # bypasses the cache
    np.testing.assert_array_equal(a.data["X"], again.data["X"])
    np.testing.assert_array_equal(a.data["theta_star"], again.data["theta_star"])
    with pytest.raises(ValueError, match="sparsity must be at most d"):
        diagonal_linear_network(d=3, sparsity=5)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        diagonal_linear_network(n=0)
    with pytest.raises(ValueError, match="init_scale must be a finite number > 0"):
        diagonal_linear_network(init_scale=-1.0)


def test_deep_linear_network():
    problem = deep_linear_network(depth=4, width=6, input_dim=3, output_dim=2, n=20, seed=3)
    shapes = [w.shape for w in problem.u0]
    assert shapes == [(6, 3), (6, 6), (6, 6), (2, 6)]
    X, Y, Phi = problem.data["X"], problem.data["Y"], problem.data["Phi"]
    assert X.shape == (3, 20) and Y.shape == (2, 20)
    np.testing.assert_allclose(Y, Phi @ X, rtol=1e-14)
    w = problem.u0
    product = w[3] @ w[2] @ w[1] @ w[0]
    np.testing.assert_allclose(problem.data["end_to_end"](w), product, rtol=1e-13)
    want = 0.5 * np.sum((product @ X - Y) ** 2) / 20
    np.testing.assert_allclose(problem.loss(w), want, rtol=1e-13)
    # Factorising the target exactly gives zero loss.
    exact = (Phi, jnp.eye(2), jnp.eye(2))
    solved = deep_linear_network(depth=3, width=2, input_dim=3, output_dim=2, n=20, seed=3)
    assert float(solved.loss(exact)) < 1e-28
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        deep_linear_network(depth=0)


@pytest.mark.usefixtures("without_runtime_type_checks")  # wrong types on purpose
def test_problem_validation():
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        Problem(name="", loss=jnp.sum, u0=jnp.zeros(2), description="d", source="s")
    with pytest.raises(ValueError, match="loss must be callable"):
        Problem(name="p", loss=None, u0=jnp.zeros(2), description="d", source="s")
    p = Problem(name="p", loss=jnp.sum, u0=jnp.zeros(2), description="d", source="s")
    with pytest.raises(TypeError):
        p.data["X"] = 1  # read-only


def test_public_reexports():
    assert hbflow.get_problem is get_problem
    assert hbflow.Problem is Problem
    assert hbflow.DEFAULT_PROBLEM == DEFAULT_PROBLEM
    assert hbflow.problem_names() == problem_names()

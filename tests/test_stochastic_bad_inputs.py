"""Bad input to the stochastic API: a clear ValueError naming the parameter."""

import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow import FiniteSumProblem, compare_weak, stochastic_iterates

LS = hbflow.get_stochastic_problem("least-squares")
SWEEP = dict(etas=[0.02, 0.01], horizon=0.2)
DATA = {"x": jnp.ones((5, 2)), "y": jnp.arange(5.0)}


def mean_loss(u, batch):
    return 0.5 * jnp.mean((batch["x"] @ u - batch["y"]) ** 2)


def test_a_valid_problem_is_accepted():
    p = FiniteSumProblem("toy", mean_loss, DATA, jnp.zeros(2))
    assert p.n == 5 and p.dim == 2


def test_loss_without_a_batch_argument():
    with pytest.raises(ValueError, match=r"loss must take two arguments, loss\(u, batch\)"):
        FiniteSumProblem("toy", lambda u: jnp.sum(u**2), DATA, jnp.zeros(2))


def test_mismatched_data_shapes():
    data = {"x": jnp.ones((5, 2)), "y": jnp.arange(4.0)}
    with pytest.raises(ValueError, match="same number of samples"):
        FiniteSumProblem("toy", mean_loss, data, jnp.zeros(2))


def test_start_of_the_wrong_shape():
    with pytest.raises(ValueError, match="x0"):
        FiniteSumProblem("toy", mean_loss, DATA, jnp.zeros(3))


def test_a_sum_instead_of_a_mean_is_refused():
    def summed(u, batch):
        return 0.5 * jnp.sum((batch["x"] @ u - batch["y"]) ** 2)

    with pytest.raises(ValueError, match="mean of the per-sample losses"):
        FiniteSumProblem("toy", summed, DATA, jnp.zeros(2))


def test_least_squares_shapes():
    with pytest.raises(ValueError, match="X of shape"):
        hbflow.least_squares_problem(np.ones((4, 2)), np.ones(3), np.zeros(2))


@pytest.mark.parametrize("batch_size", [0, -1, LS.n + 1, 2.5, True])
def test_batch_size_out_of_range(batch_size):
    with pytest.raises(ValueError, match=r"batch_size must be .*\[1, n = 32\]"):
        stochastic_iterates(LS, eta=0.1, num_steps=2, batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size"):
        compare_weak(LS, batch_size=batch_size, paths="exact", **SWEEP)


@pytest.mark.parametrize("paths", [1, 0, 2.0, "many"])
def test_fewer_than_two_paths(paths):
    with pytest.raises(ValueError, match=r"paths must be an integer >= 2"):
        compare_weak(LS, batch_size=2, paths=paths, **SWEEP)


@pytest.mark.parametrize(
    "phi,match",
    [
        (lambda u: None, "must return one array"),
        (lambda u: (u, u), "must return one array"),
        (lambda u: "mean", "cannot be evaluated|must return"),
        (lambda u: u[None] @ jnp.ones((7, 7)), "cannot be evaluated"),
        ("variance", "unknown test function"),
        (3, "must be a name or a callable"),
    ],
)
def test_phi_not_returning_an_array(phi, match):
    with pytest.raises(ValueError, match=match):
        compare_weak(LS, batch_size=2, paths=10, phis=[phi], **SWEEP)


def test_exact_oracle_limits():
    logistic = hbflow.get_stochastic_problem("logistic-regression")
    with pytest.raises(ValueError, match="least-squares problem"):
        compare_weak(logistic, batch_size=2, paths="exact", **SWEEP)
    with pytest.raises(ValueError, match="with-replacement sampling only"):
        compare_weak(LS, batch_size=2, paths="exact", sampling="reshuffling", **SWEEP)
    with pytest.raises(ValueError, match="not \\['norm'\\]"):
        compare_weak(LS, batch_size=2, paths="exact", phis=["mean", jnp.linalg.norm], **SWEEP)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="unknown SDE model"):
        compare_weak(LS, batch_size=2, paths="exact", models=["sme2"], **SWEEP)
    with pytest.raises(ValueError, match="sampling must be one of"):
        stochastic_iterates(LS, eta=0.1, num_steps=2, batch_size=2, sampling="shuffle")
    with pytest.raises(ValueError, match="unknown stochastic problem"):
        hbflow.get_stochastic_problem("mnist")
    with pytest.raises(ValueError, match="key must be"):
        stochastic_iterates(LS, eta=0.1, num_steps=2, batch_size=2, key="seed")
    with pytest.raises(ValueError, match="beta"):
        stochastic_iterates(LS, method="gd", beta=0.5, eta=0.1, num_steps=2, batch_size=2)
    with pytest.raises(ValueError, match="eta"):
        stochastic_iterates(LS, eta=-0.1, num_steps=2, batch_size=2)
    with pytest.raises(ValueError, match="horizon"):
        compare_weak(LS, batch_size=2, paths="exact", etas=[0.03, 0.01], horizon=0.1)

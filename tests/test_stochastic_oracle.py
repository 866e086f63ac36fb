"""The exact moment oracle against Monte Carlo (both the iterates and an SDE) and against
independent constructions (deterministic iterates, the noise covariance formula)."""

import numpy as np
import pytest

import hbflow
from hbflow._stochastic._compare import _recorder
from hbflow._stochastic._iterates import MethodCoefficients, iterate_statistics
from hbflow._stochastic._oracle import iterate_moments_exact, sde_moments_exact
from hbflow._stochastic._sde import sde_model_from_name, sde_statistics

PROBLEM = hbflow.get_stochastic_problem("least-squares")
PHIS = ("mean", "second-moment")
ETA, STEPS, B, PATHS = 0.1, 8, 2, 4000
SIGMAS = 4.0


def within_sigmas(mc_mean, mc_var, count, exact, what):
    se = np.sqrt(mc_var / count)
    z = np.abs(mc_mean - exact) / se
    assert np.all(se > 0), what
    assert z.max() <= SIGMAS, f"{what}: largest deviation {z.max():.2f} standard errors"
    return z


def test_noise_covariance_is_the_centred_sample_gradient_covariance():
    X, y = PROBLEM.least_squares
    u = np.array([0.3, -0.2, 0.9])
    grads = X * (X @ u - y)[:, None]
    centred = grads - grads.mean(axis=0)
    expected = centred.T @ centred / (len(y) * 3)
    assert np.allclose(PROBLEM.noise_covariance(u, 3), expected, rtol=1e-12, atol=1e-14)
    assert np.allclose(PROBLEM.grad(u), grads.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize("method,beta", [("hb", 0.7), ("nag", 0.7), ("gd", 0.0)])
def test_oracle_mean_is_the_deterministic_iterates(method, beta):
    # The mini-batch gradient is affine and unbiased, so E u_k follows the full-batch method.
    ex = iterate_moments_exact(
        PROBLEM, method=method, beta=beta, eta=0.05, num_steps=30, batch_size=B
    )
    full = PROBLEM.as_problem()
    us = hbflow.iterates(full.loss, full.x0, method=method, beta=beta, eta=0.05, num_steps=30)
    assert np.allclose(ex.mean, np.asarray(us), rtol=1e-12, atol=1e-13)
    cov = ex.second - ex.mean[:, :, None] * ex.mean[:, None, :]
    assert np.all(np.linalg.eigvalsh(cov[1:]) > 0)  # noise has entered every direction


@pytest.mark.parametrize(
    "method,beta",
    [("hb", 0.5), (MethodCoefficients(0.8, 0.3, 1.0), 0.5)],
    ids=["hb", "c0-c1-lookahead"],
)
def test_oracle_iterate_moments_match_monte_carlo(method, beta):
    ex = iterate_moments_exact(
        PROBLEM, method=method, beta=beta, eta=ETA, num_steps=STEPS, batch_size=B
    )
    st = iterate_statistics(
        PROBLEM,
        _recorder(PROBLEM, PHIS),
        method=method,
        beta=beta,
        eta=ETA,
        num_steps=STEPS,
        batch_size=B,
        key=11,
        num_paths=PATHS,
        chunk_size=PATHS,
    )
    within_sigmas(st.mean["mean"][1:], st.var["mean"][1:], st.count, ex.mean[1:], "mean")
    within_sigmas(
        st.mean["second-moment"][1:],
        st.var["second-moment"][1:],
        st.count,
        ex.second[1:],
        "second moment",
    )


def test_oracle_sde_moments_match_monte_carlo():
    # sme-hbf2-gamma uses every column of the table: the piecewise drift and the scale s_k.
    model = sde_model_from_name("sme-hbf2-gamma")
    ex = sde_moments_exact(
        model, PROBLEM, method="hb", beta=0.5, eta=ETA, num_steps=STEPS, batch_size=B
    )
    values, solver = sde_statistics(
        model,
        PROBLEM,
        _recorder(PROBLEM, PHIS),
        method="hb",
        beta=0.5,
        eta=ETA,
        num_steps=STEPS,
        batch_size=B,
        key=5,
        num_paths=PATHS // 2,
        chunk_size=PATHS // 2,
    )
    count = values.count
    within_sigmas(values.mean["mean"][1:], values.var["mean"][1:], count, ex.mean[1:], "mean")
    within_sigmas(
        values.mean["second-moment"][1:],
        values.var["second-moment"][1:],
        count,
        ex.second[1:],
        "second moment",
    )
    # The Richardson solver-error estimate resolves finer than the Monte Carlo error and
    # detects no solver error at that resolution.
    delta, delta_se = solver.mean["mean"][1:], np.sqrt(solver.var["mean"][1:] / count)
    assert np.all(delta_se < 0.3 * np.sqrt(values.var["mean"][1:] / count))
    assert np.all(np.abs(delta) <= SIGMAS * delta_se)


def test_noise_apply_is_the_noise_factor_times_w():
    u, w = np.array([0.3, -0.2, 0.9]), np.linspace(-1.0, 2.0, PROBLEM.n)
    direct = np.asarray(PROBLEM.noise_factor(u, 3)) @ w
    assert np.allclose(PROBLEM.noise_apply(u, w, 3), direct, rtol=1e-12, atol=1e-14)


def test_oracle_matches_monte_carlo_with_more_parameters_than_samples():
    # d > n: the SDE is driven by an n-dimensional Brownian motion through G(u) (an operator).
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 7)) / np.sqrt(7)
    wide = hbflow.least_squares_problem(X, rng.standard_normal(5), rng.standard_normal(7))
    model = sde_model_from_name("sme1")
    ex = sde_moments_exact(model, wide, method="hb", beta=0.5, eta=0.2, num_steps=4, batch_size=1)
    values, _ = sde_statistics(
        model,
        wide,
        _recorder(wide, PHIS),
        method="hb",
        beta=0.5,
        eta=0.2,
        num_steps=4,
        batch_size=1,
        key=9,
        num_paths=2000,
        chunk_size=2000,
    )
    within_sigmas(values.mean["mean"][1:], values.var["mean"][1:], 2000, ex.mean[1:], "mean")
    within_sigmas(
        values.mean["second-moment"][1:],
        values.var["second-moment"][1:],
        2000,
        ex.second[1:],
        "second moment",
    )


def test_psd_cholesky_factors_full_and_low_rank_covariances():
    from hbflow._stochastic._sde import psd_cholesky

    rng = np.random.default_rng(0)
    for rank in (4, 2):
        a = rng.standard_normal((4, rank))
        sigma = a @ a.T
        factor = np.asarray(psd_cholesky(sigma))
        assert np.allclose(np.triu(factor, 1), 0)
        assert np.allclose(factor @ factor.T, sigma, rtol=1e-10, atol=1e-12)

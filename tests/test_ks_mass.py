"""The Kovachki–Stuart second-order ODE against the paper's mass and the exact linear solution.

Kovachki & Stuart (JMLR 22(17), 2021) model heavy ball and Nesterov from rest by
eta m u'' + (1 - beta) u' + grad L(u) = 0 in the time t = k eta, with the mass
m = (1 + beta)/2 for heavy ball and m = (1 - beta + 2 beta^2)/2 for Nesterov.  The masses below are
written from the paper, not read from the package; on a quadratic the ODE is solved exactly, one
Hessian eigenvalue at a time, from the eigen-decomposition of its 2x2 companion matrix.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow import KovachkiStuartODE, solve_model

PAPER_MASS = {
    "hb": lambda beta: (1 + beta) / 2,
    "nag": lambda beta: (1 - beta + 2 * beta**2) / 2,
    "gd": lambda beta: 0.5,  # beta = 0: both formulas give 1/2, the modified equation of GD
}

# Kovachki & Stuart's quadratic L = u.Qu/2, Q = diag(1, kappa), u0 = (1, 1), here kappa = 5.
Q = np.diag([1.0, 5.0])
U0 = np.array([1.0, 1.0])


def quadratic(u):
    return 0.5 * u @ jnp.asarray(Q) @ u


def ks_exact(mass, beta, eta, ts):
    """u(t) of eta m u'' + (1 - beta) u' + Q u = 0, u(0) = U0, u'(0) = 0, at the times ts."""
    lams, V = np.linalg.eigh(Q)
    c = V.T @ U0
    out = np.zeros((len(ts), len(U0)))
    for i, lam in enumerate(lams):
        # x'' = -(lam x + (1 - beta) x') / (eta m): y = (x, x'), y' = A y
        A = np.array([[0.0, 1.0], [-lam / (eta * mass), -(1 - beta) / (eta * mass)]])
        w, P = np.linalg.eig(A)
        assert np.linalg.cond(P) < 1e8  # distinct roots: A is diagonalisable
        coef = np.linalg.solve(P, np.array([c[i], 0.0]))
        out[:, i] = (P[0] * coef * np.exp(np.outer(ts, w))).sum(axis=1).real
    return out @ V.T


def iterates_from_rest(method, beta, eta, num_steps):
    """u_{k+1} = u_k + beta (u_k - u_{k-1}) - eta Q (u_k + a (u_k - u_{k-1})), u_{-1} = u_0."""
    a = beta if method == "nag" else 0.0
    prev = cur = U0.copy()
    out = [cur]
    for _ in range(num_steps):
        prev, cur = cur, cur + beta * (cur - prev) - eta * Q @ (cur + a * (cur - prev))
        out.append(cur)
    return np.array(out)


@pytest.mark.parametrize("method", ["hb", "nag"])
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.9])
def test_mass_is_the_papers(method, beta):
    table = KovachkiStuartODE().coefficients(method, beta, 4)
    # column 0: the mass; column 1: the weight c0 - c1 of the gradient, 1 for hb and nag
    np.testing.assert_allclose(table[:, 0], PAPER_MASS[method](beta), rtol=1e-15)
    np.testing.assert_array_equal(table[:, 1], 1.0)


@pytest.mark.parametrize("method,beta", [("hb", 0.9), ("nag", 0.9), ("hb", 0.5), ("gd", 0.0)])
def test_solution_is_the_exact_linear_one(method, beta):
    eta, num_pieces = 0.02, 25
    sol = solve_model(
        KovachkiStuartODE(), quadratic, U0, method=method, beta=beta, eta=eta, num_pieces=num_pieces
    )
    want = ks_exact(PAPER_MASS[method](beta), beta, eta, np.arange(num_pieces + 1) * eta)
    np.testing.assert_allclose(sol.us, want, rtol=1e-9, atol=1e-11)
    assert np.linalg.norm(want[-1] - want[0]) > 1e-2  # it moved


@pytest.mark.parametrize("method", ["hb", "nag"])
def test_order_one_and_error_against_the_iterates(method):
    # beta = 0.5, lambda|Q| = 4 eta * 5 <= 0.2: the asymptotic regime.  The ODE from rest imitates
    # the transient, so its error is O(eta) with a small constant; a wrong mass gives an error
    # several times larger, decaying more slowly over this sweep (slope about 0.65).
    beta, horizon, etas = 0.5, 0.5, (0.01, 0.005, 0.0025)
    study = hbflow.compare(
        quadratic,
        U0,
        method=method,
        beta=beta,
        etas=etas,
        horizon=horizon,
        models=("ks2",),
        solver_check=False,
    )
    errors = []
    for eta in etas:
        n = round(horizon / eta)
        ts = np.arange(n + 1) * eta
        exact = ks_exact(PAPER_MASS[method](beta), beta, eta, ts)
        distance = np.linalg.norm(exact - iterates_from_rest(method, beta, eta, n), axis=1)
        errors.append(distance.max())
    slope = np.polyfit(np.log(etas), np.log(errors), 1)[0]
    assert abs(slope - 1) < 0.12, (slope, errors)
    ks2 = study.models["ks2"]
    np.testing.assert_allclose(ks2.max_errors, errors, rtol=1e-6)
    assert abs(ks2.slope - 1) < 0.12 and ks2.expected_order == 1

r"""Exact first and second moments for least squares: no Monte Carlo error at all.

For $\ell_i(u) = \frac12(x_i\cdot u - y_i)^2$ the per-sample gradient is affine,
$\nabla\ell_i(w) = x_i\,q_i^\top\tilde w$ with $\tilde w = (w, 1)$ and $q_i = (x_i, -y_i)$.

**Iterates** (with-replacement sampling).  The augmented state
$\zeta_k = (u_k, u_{k-1}, \hat g_{k-1}, 1)$ evolves by $\zeta_{k+1} = T_k\zeta_k$ with
$T_k = F + \frac1B\sum_{j=1}^B J_{I_j}$, $J_i = p_i\,r_i^\top$ of rank one and the $I_j$ i.i.d.
uniform and independent of $\zeta_k$.  So $S_k = \mathbb E\,\zeta_k\zeta_k^\top$ obeys the exact
linear recursion

$$S_{k+1} = \bar T S_k \bar T^\top + \frac1B\Big(\frac1n\sum_i J_i S_k J_i^\top
  - \bar J S_k \bar J^\top\Big),\qquad \bar J = \frac1n\sum_i J_i,\ \bar T = F + \bar J,$$

and $\mathbb E u_k$, $\mathbb E u_k u_k^\top$ are blocks of $S_k$.

**Linear-drift SDEs** $du = (A_k u + f_k)\,dt + \sqrt\eta\,s_k\,G(u)\,dW$ on piece $k$ with
$G G^\top = \Sigma_B(u)$: for $\tilde u = (u, 1)$, $S = \mathbb E\,\tilde u\tilde u^\top$ obeys
$\dot S = \tilde A S + S\tilde A^\top + \eta s_k^2\,\mathbb E\,\Sigma_B(u)$, and
$\mathbb E\,\Sigma_B(u) = \frac1B(\frac1n\sum_i M_i S M_i^\top - \bar M S \bar M^\top)$ with
$M_i = (x_i, 0)\,q_i^\top$ is linear in $S$: a linear ODE, solved exactly on each piece by a
matrix exponential of the vectorised operator.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._iterates import method_coefficients
from ._problems import FiniteSumProblem, check_batch_size

__all__ = ["ExactMoments", "iterate_moments_exact", "sde_moments_exact", "check_oracle"]


class ExactMoments(NamedTuple):
    r"""`mean` $\mathbb E u_k$ (``(K+1, d)``) and `aug` $\mathbb E\,\tilde u_k\tilde u_k^\top$
    (``(K+1, d+1, d+1)``, $\tilde u = (u, 1)$)."""

    mean: np.ndarray
    aug: np.ndarray

    @property
    def second(self) -> np.ndarray:
        r"""$\mathbb E\,u_k u_k^\top$, ``(K+1, d, d)``."""
        d = self.mean.shape[1]
        return self.aug[:, :d, :d]


def check_oracle(problem: FiniteSumProblem) -> tuple[np.ndarray, np.ndarray]:
    """The least-squares data ``(X, y)`` of `problem`, or a `ValueError` if it has none."""
    if not isinstance(problem, FiniteSumProblem) or problem.least_squares is None:
        name = getattr(problem, "name", problem)
        raise ValueError(
            f"the exact moment oracle (paths='exact') needs a least-squares problem (built by "
            f"least_squares_problem or named 'least-squares'), got {name!r}; use a number of "
            "Monte Carlo paths instead"
        )
    return problem.least_squares


def iterate_moments_exact(
    problem: FiniteSumProblem,
    *,
    method="hb",
    beta: float,
    eta: float,
    num_steps: int,
    batch_size: int,
) -> ExactMoments:
    r"""Exact $\mathbb E u_k$ and $\mathbb E\,\tilde u_k\tilde u_k^\top$, $k = 0..K$, of the
    mini-batch iterates from rest with with-replacement sampling (module docstring).

    **Raises:** `ValueError` if `problem` is not least squares or `batch_size` is not in
    ``[1, n]``.
    """
    X, y = check_oracle(problem)
    B = check_batch_size(batch_size, problem.n)
    c0, c1, lookahead = method_coefficients(method)
    n, d = X.shape
    a = lookahead * beta
    D = 3 * d + 1
    eye = np.eye(d)
    F = np.zeros((D, D))
    F[:d, :d] = (1 + beta) * eye
    F[:d, d : 2 * d] = -beta * eye
    F[:d, 2 * d : 3 * d] = eta * c1 * eye
    F[d : 2 * d, :d] = eye
    F[-1, -1] = 1.0
    # g_i(w) = x_i q_i . (w, 1) with w = (1 + a) u_k - a u_{k-1}: r_i = W^T q_i
    r = np.zeros((n, D))
    r[:, :d] = (1 + a) * X
    r[:, d : 2 * d] = -a * X
    r[:, -1] = -y
    # the mini-batch gradient enters u_{k+1} with -eta c0 and becomes the next g_{k-1}
    p = np.zeros((n, D))
    p[:, :d] = -eta * c0 * X
    p[:, 2 * d : 3 * d] = X
    Jbar = p.T @ r / n
    Tbar = F + Jbar
    x0 = np.asarray(problem.flat_x0)
    zeta = np.concatenate([x0, x0, np.zeros(d), [1.0]])
    S = np.outer(zeta, zeta)
    out = np.empty((num_steps + 1, D, D))
    out[0] = S
    for k in range(num_steps):
        quad = np.einsum("id,de,ie->i", r, S, r)
        S = Tbar @ S @ Tbar.T + ((p.T * quad) @ p / n - Jbar @ S @ Jbar.T) / B
        S = 0.5 * (S + S.T)
        out[k + 1] = S
    idx = np.r_[0:d, D - 1]
    aug = out[:, idx][:, :, idx]
    return ExactMoments(aug[:, :d, d].copy(), aug)


def drift_affine_maps(model, problem: FiniteSumProblem, eta, beta, table):
    r"""$(A_k, f_k)$ with $f_k(u) = A_k u + f_k$ the drift of `model` on piece $k$ (rows of
    `table`), exact for least squares where every drift is affine."""
    A, f = _affine_fn(model, problem)(eta, beta, jnp.asarray(table))
    return np.asarray(A), np.asarray(f)


@functools.lru_cache(maxsize=64)
def _affine_fn(model, problem: FiniteSumProblem):
    zero = jnp.zeros(problem.dim)

    def affine(eta, beta, row):
        def drift(u):
            return model.drift_field(problem, u, eta, beta, row)

        return jax.jacfwd(drift)(zero), drift(zero)

    return jax.jit(jax.vmap(affine, in_axes=(None, None, 0)))


def _noise_operator(X, y, B: int) -> np.ndarray:
    r"""The matrix of $S \mapsto \mathbb E\,\Sigma_B$ (padded to $(d+1)^2$), row-major vec."""
    n, d = X.shape
    q = np.concatenate([X, -y[:, None]], axis=1)  # (n, d+1)
    xh = np.concatenate([X, np.zeros((n, 1))], axis=1)
    M = xh[:, :, None] * q[:, None, :]  # (n, d+1, d+1)
    Mbar = M.mean(axis=0)
    op = np.einsum("iab,icd->acbd", M, M).reshape((d + 1) ** 2, (d + 1) ** 2) / n
    return (op - np.kron(Mbar, Mbar)) / B


def sde_moments_exact(
    model,
    problem: FiniteSumProblem,
    *,
    method: str = "hb",
    beta: float,
    eta: float,
    num_steps: int,
    batch_size: int,
) -> ExactMoments:
    r"""Exact $\mathbb E u(t_k)$ and $\mathbb E\,\tilde u\tilde u^\top(t_k)$ of the SDE `model`
    (a `StochasticModifiedEquation`) on a least-squares problem, $t_k = k\eta$.

    **Raises:** `ValueError` if `problem` is not least squares or `batch_size` is not in
    ``[1, n]``.
    """
    X, y = check_oracle(problem)
    B = check_batch_size(batch_size, problem.n)
    d = X.shape[1]
    table = model.coefficients(method, beta, num_steps)
    A, f = drift_affine_maps(model, problem, eta, beta, table[:, :-1])
    scale = table[:, -1]
    noise = _noise_operator(X, y, B)
    eye = np.eye(d + 1)
    x0 = np.concatenate([np.asarray(problem.flat_x0), [1.0]])
    S = np.outer(x0, x0)
    out = np.empty((num_steps + 1, d + 1, d + 1))
    out[0] = S
    cache: dict[bytes, np.ndarray] = {}
    for k in range(num_steps):
        At = np.zeros((d + 1, d + 1))
        At[:d, :d] = A[k]
        At[:d, d] = f[k]
        key = At.tobytes() + scale[k].tobytes()
        if key not in cache:
            op = np.kron(At, eye) + np.kron(eye, At) + eta * scale[k] ** 2 * noise
            cache[key] = np.asarray(jax.scipy.linalg.expm(jnp.asarray(eta * op)))
        S = (cache[key] @ S.reshape(-1)).reshape(d + 1, d + 1)
        S = 0.5 * (S + S.T)
        out[k + 1] = S
    return ExactMoments(out[:, :d, d].copy(), out)

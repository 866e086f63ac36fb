r"""Stochastic modified equations (SMEs) of the mini-batch iterates, integrated with diffrax.

An SME here is an Itô SDE in the iterates' time $t = k\eta$,

$$du = f_k(u)\,dt + \sqrt\eta\;s_k\;G(u)\,dW_t,\qquad G G^\top = \Sigma_B(u),$$

on $t\in[k\eta, (k+1)\eta]$, with a drift $f_k$ taken from a deterministic model of
``hbflow._models``.  When $d \le \min(n, 16)$ the noise is $L\,dW$ with $LL^\top = \Sigma_B$
(`psd_cholesky`) and $W$ in $\mathbb R^d$; otherwise it is $G\,dW$ with $W$ in $\mathbb R^n$
and $G$ the centred per-sample gradient matrix over $\sqrt{Bn}$, applied by one reverse pass
(a `lineax.FunctionLinearOperator`) without forming it; the two have the same law.  Models:

- ``sme1``: $f = -\nabla L/(1-\beta)$, $s = 1/(1-\beta)$ — the first-order SME of Li, Tai & E
  (2017, 2019) with momentum.  Expected weak order 1.
- ``sme-steadyN``: the steady-state HBF-N drift ($b_\infty$ counter terms), $s = 1/(1-\beta)$.
  At $\beta = 0$, ``sme-steady2`` is the second-order SME of Li, Tai & E,
  $du = -\nabla(L + \frac\eta4\|\nabla L\|^2)dt + \sqrt{\eta\Sigma_B}\,dW$: expected weak order
  $\min(N, 2)$ at $\beta = 0$ (the diffusion is not corrected beyond first order), and 1 for
  $\beta > 0$ (started at $u_0$ it misses the transient of the iterates from rest).
- ``sme-hbfN``: the piecewise HBF-N drift ($b_k$ on piece $k$), $s = 1/(1-\beta)$;
  ``sme-hbfN-gamma``: the same with the diffusion scaled like the leading drift,
  $s_k = b_k(\bullet) = (1-\beta^{k+1})/(1-\beta)$.  At $\beta = 0$ they are ``sme-steadyN``;
  for $\beta > 0$ and $N \ge 2$ their weak order is *measured, not claimed*
  (`order` returns ``None``).

Integration: Euler–Maruyama (`diffrax.Euler`) with `diffrax.ControlTerm` driven by a Brownian
path (`GridBrownianPath`, exact on the finest grid), in the normalised time $s = t/\eta$ (so
the path does not depend on $\eta$), with $m$, $2m$ and $4m$ fixed steps per piece on the
*same* Brownian path.  Euler's
weak error is $C h + O(h^2)$ (Talay & Tubaro 1990), so the Richardson combinations
$R_1 = 2E_{2m} - E_m$ and $R_2 = 2E_{4m} - E_{2m}$ are $O(h^2)$; $R_2$ is reported and
$|R_2 - R_1|$ is the solver-error estimate (an estimate of $R_1$'s error, which bounds $R_2$'s).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

from .._counter_terms import counter_terms
from .._custom_types import PyTree
from .._models import (
    HeavyBallFlow,
    RescaledGradientFlow,
    SteadyStateFlow,
)
from .._validate import check_beta, check_count, check_method
from ._iterates import PathStatistics, accumulate_paths
from ._problems import FiniteSumProblem, check_batch_size

__all__ = [
    "StochasticModifiedEquation",
    "sde_model_from_name",
    "SDE_MODEL_NAMES",
    "sde_statistics",
    "DEFAULT_SUBSTEPS",
]


#: Euler steps per piece of the coarsest of the three solves (then 2m and 4m).
DEFAULT_SUBSTEPS = 2

SDE_MODEL_NAMES = ("sme1", "sme-steadyN", "sme-hbfN", "sme-hbfN-gamma")


class StochasticModifiedEquation(eqx.Module):
    r"""An SME: the drift of a deterministic model plus the mini-batch diffusion.

    **Arguments:**

    - `drift`: a first-order `AbstractContinuousModel` of ``hbflow._models`` (``rgf``,
      ``steadyN``, ``hbfN``) whose field is the drift.
    - `diffusion`: ``"constant"`` ($s = 1/(1-\beta)$) or ``"gamma"``
      ($s_k = b_k(\bullet)$ on piece $k$).
    """

    drift: RescaledGradientFlow | SteadyStateFlow | HeavyBallFlow
    diffusion: str = "constant"

    def __check_init__(self):
        if not isinstance(self.drift, (RescaledGradientFlow, SteadyStateFlow, HeavyBallFlow)):
            raise ValueError(
                f"drift must be a first-order model (rgf, steadyN, hbfN), got {self.drift!r}"
            )
        if self.diffusion not in ("constant", "gamma"):
            raise ValueError(f"diffusion must be 'constant' or 'gamma', got {self.diffusion!r}")

    @property
    def name(self) -> str:
        if isinstance(self.drift, RescaledGradientFlow):
            base = "sme1"
        elif isinstance(self.drift, SteadyStateFlow):
            base = f"sme-steady{self.drift.alpha}"
        else:
            base = f"sme-hbf{self.drift.alpha}"
        return base + ("-gamma" if self.diffusion == "gamma" else "")

    def order(self, method: str, beta: float) -> int | None:
        r"""The expected weak order against the iterates from rest, or ``None`` where it is
        measured, not claimed (HBF-N drift, $N\ge2$, $\beta>0$)."""
        method = check_method(method)
        beta = check_beta(beta, method)
        if isinstance(self.drift, RescaledGradientFlow):
            return 1
        alpha = int(self.drift.alpha)
        if beta == 0:
            return min(alpha, 2)
        if isinstance(self.drift, SteadyStateFlow) or alpha == 1:
            return 1
        return None

    def coefficients(self, method: str, beta: float, num_pieces: int) -> np.ndarray:
        """The drift model's table with one more column: the diffusion scale $s_k$."""
        method = check_method(method)
        beta = check_beta(beta, method)
        num_pieces = check_count(num_pieces, "num_pieces")
        table = self.drift.coefficients(method, beta, num_pieces)
        if self.diffusion == "gamma":
            scale = counter_terms(1, method).coefficient_table(beta, num_pieces)[:, 0]
        else:
            scale = np.full(num_pieces, 1.0 / (1.0 - beta))
        return np.concatenate([table, scale[:, None]], axis=1)

    def drift_field(self, problem: FiniteSumProblem, u, eta, beta, row):
        """$f_k(u)$ for the drift part `row` of a table row (flat `u`)."""

        def g(x):
            return -problem.grad(x)

        # the drift models are autonomous: t is not used
        return self.drift.vector_field(g, 0.0, u, eta, beta, row)


def sde_model_from_name(name: str | StochasticModifiedEquation) -> StochasticModifiedEquation:
    """``sme1``, ``sme-steadyN``, ``sme-hbfN`` or ``sme-hbfN-gamma`` ($N \\ge 1$).

    **Raises:** `ValueError` listing the valid names.
    """
    if isinstance(name, StochasticModifiedEquation):
        return name
    key = name.strip().lower() if isinstance(name, str) else None
    if key == "sme1":
        return StochasticModifiedEquation(RescaledGradientFlow())
    match = re.fullmatch(r"sme-(steady|hbf)(\d+)(-gamma)?", key) if key else None
    if match and int(match.group(2)) >= 1 and not (match.group(1) == "steady" and match.group(3)):
        alpha = int(match.group(2))
        drift = HeavyBallFlow(alpha) if match.group(1) == "hbf" else SteadyStateFlow(alpha)
        return StochasticModifiedEquation(drift, "gamma" if match.group(3) else "constant")
    raise ValueError(
        f"unknown SDE model {name!r}; valid models are sme1, sme-steadyN, sme-hbfN and "
        "sme-hbfN-gamma (N >= 1, e.g. sme-hbf2)"
    )


class GridBrownianPath(diffrax.AbstractBrownianPath):
    r"""A Brownian motion sampled exactly on the grid $s = j/r$, $j = 0..M$, and linear in
    between; every increment the solves ask for is between grid points, so it is exact.

    It plays the role of a `diffrax.VirtualBrownianTree` evaluated at a fixed resolution (the
    same path at every step size that divides the grid, which the Richardson estimate needs)
    without descending the tree at every step.
    """

    values: jax.Array
    resolution: int = eqx.field(static=True)
    levy_area: type[diffrax.BrownianIncrement] = eqx.field(
        static=True, default=diffrax.BrownianIncrement
    )

    @classmethod
    def sample(cls, key, horizon: int, resolution: int, shape: tuple[int, ...]):
        """The path on $[0, $ `horizon` $]$ at `resolution` points per unit time."""
        steps = jax.random.normal(key, (horizon * resolution, *shape), dtype=jnp.float64)
        steps = steps / math.sqrt(resolution)
        values = jnp.concatenate([jnp.zeros((1, *shape)), jnp.cumsum(steps, axis=0)])
        return cls(values=values, resolution=resolution)

    @property
    def t0(self):
        return 0.0

    @property
    def t1(self):
        return (self.values.shape[0] - 1) / self.resolution

    def _at(self, t):
        x = t * self.resolution
        j = jnp.clip(jnp.floor(x).astype(int), 0, self.values.shape[0] - 2)
        frac = x - j
        return self.values[j] + frac * (self.values[j + 1] - self.values[j])

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        if use_levy:
            raise ValueError("GridBrownianPath has no Levy area; use a solver that needs none")
        if t1 is None:
            return self._at(t0)
        return self._at(t1) - self._at(t0)


#: Largest d for which the noise uses a d-dimensional Brownian motion and an unrolled Cholesky
#: factor of Sigma_B (elementwise operations that vectorise over paths; LAPACK calls on tiny
#: matrices do not).
SMALL_DIM = 16


def psd_cholesky(sigma):
    r"""A lower-triangular $L$ with $LL^\top = \Sigma$ for a positive semi-definite $\Sigma$.

    Unrolled over the (small, static) dimension.  A pivot below $10^{-13}\,\mathrm{tr}\Sigma$
    is taken as 0 together with the rest of its column, which is exact for a positive
    semi-definite matrix of lower rank (the mini-batch covariance has rank $\le n-1$).
    """
    d = sigma.shape[-1]
    tiny = 1e-13 * jnp.trace(sigma)
    cols: list[list] = [[None] * d for _ in range(d)]
    zero = jnp.zeros_like(sigma[0, 0])
    for j in range(d):
        pivot = sigma[j, j] - sum((cols[j][k] ** 2 for k in range(j)), zero)
        ok = pivot > tiny
        ljj = jnp.sqrt(jnp.where(ok, pivot, 1.0))
        cols[j][j] = jnp.where(ok, ljj, 0.0)
        for i in range(j + 1, d):
            off = sigma[i, j] - sum((cols[i][k] * cols[j][k] for k in range(j)), zero)
            cols[i][j] = jnp.where(ok, off / ljj, 0.0)
    rows = [jnp.stack([cols[i][j] if j <= i else zero for j in range(d)]) for i in range(d)]
    return jnp.stack(rows)


def _solve_path(
    model, problem, batch_size, num_pieces, substeps, record, key, x0, eta, beta, table
):
    """`record(u(t_k))` for k = 0..K on one Brownian path, with substeps m, 2m, 4m."""
    finest = 4 * substeps
    # The noise is G(u) dW with W in R^n (G G^T = Sigma_B), or Sigma_B^{1/2} dW with W in R^d:
    # the same law; the smaller Brownian dimension is cheaper to sample.
    small = problem.dim <= min(problem.n, SMALL_DIM)
    noise_dim = problem.dim if small else problem.n
    bm = GridBrownianPath.sample(key, num_pieces, finest, (noise_dim,))
    ts = jnp.arange(num_pieces + 1, dtype=jnp.float64)

    def piece(s, m):
        return jnp.clip(jnp.floor(s + 0.25 / m).astype(int), 0, num_pieces - 1)

    def drift(s, u, m):
        row = table[piece(s, m)]
        return eta * model.drift_field(problem, u, eta, beta, row[:-1])

    def diffusion(s, u, m):
        scale = eta * table[piece(s, m)][-1]
        if small:
            factor = scale * psd_cholesky(problem.noise_covariance(u, batch_size))
            return lx.FunctionLinearOperator(
                lambda w: jnp.sum(factor * w, axis=1),
                jax.ShapeDtypeStruct((noise_dim,), jnp.float64),
            )
        return lx.FunctionLinearOperator(
            lambda w: scale * problem.noise_apply(u, w, batch_size),
            jax.ShapeDtypeStruct((noise_dim,), jnp.float64),
        )

    terms = diffrax.MultiTerm(diffrax.ODETerm(drift), diffrax.ControlTerm(diffusion, bm))

    def solve(m):
        sol = diffrax.diffeqsolve(
            terms,
            diffrax.Euler(),
            0.0,
            float(num_pieces),
            1.0 / m,
            x0,
            args=m,
            saveat=diffrax.SaveAt(ts=ts),
            max_steps=num_pieces * finest + 1,
        )
        return jax.vmap(record)(sol.ys)

    # One solve vmapped over the three step sizes: one compilation instead of three.
    levels = jax.vmap(solve)(jnp.array([substeps, 2 * substeps, finest], dtype=jnp.float64))

    def combine(v):
        coarse, mid, fine = v[0], v[1], v[2]
        r2 = 2 * fine - mid
        return r2, r2 - (2 * mid - coarse)

    pairs = jax.tree_util.tree_map(combine, levels)
    values = jax.tree_util.tree_map(lambda _, p: p[0], levels, pairs)
    solver = jax.tree_util.tree_map(lambda _, p: p[1], levels, pairs)
    return values, solver


@functools.lru_cache(maxsize=64)
def _compiled(model, problem, batch_size, num_pieces, substeps, record):
    fn = functools.partial(_solve_path, model, problem, batch_size, num_pieces, substeps, record)
    return jax.jit(jax.vmap(fn, in_axes=(0, None, None, None, None)))


def sde_statistics(
    model: StochasticModifiedEquation,
    problem: FiniteSumProblem,
    record: Callable[[jax.Array], PyTree],
    *,
    method: str = "hb",
    beta: float,
    eta: float,
    num_steps: int,
    batch_size: int,
    key,
    num_paths: int,
    substeps: int = DEFAULT_SUBSTEPS,
    chunk_size: int | None = 256,
    table: np.ndarray | jax.Array | None = None,
) -> tuple[PathStatistics, PathStatistics]:
    r"""Monte Carlo statistics of ``record(u(t_k))``, $k = 0..K$, for the SME `model`.

    **Returns:** ``(values, solver)``: the mean and variance over paths of the Richardson
    value $R_2$ and of the solver-error estimate $R_2 - R_1$ (module docstring).

    **Raises:** `ValueError` for a bad batch size, step count or substep count.
    """
    batch_size = check_batch_size(batch_size, problem.n)
    num_steps = check_count(num_steps, "num_steps")
    substeps = check_count(substeps, "substeps")
    if table is None:
        table = model.coefficients(method, beta, num_steps)
    fn = _compiled(model, problem, batch_size, num_steps, substeps, record)
    x0 = problem.flat_x0
    table = jnp.asarray(table[:num_steps])
    stats = accumulate_paths(
        lambda keys: fn(keys, x0, eta, beta, table), key, num_paths, chunk_size
    )
    values = PathStatistics(stats.mean[0], stats.var[0], stats.count)
    solver = PathStatistics(stats.mean[1], stats.var[1], stats.count)
    return values, solver

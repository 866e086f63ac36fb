r"""The weak-error comparator: stochastic modified equations against the mini-batch iterates.

For a finite-sum problem, a method, $\beta$, a batch size $B$, a sweep of step sizes at a fixed
horizon $T$, and test functions $\varphi$:

- $\mathbb E\varphi(u_k)$ over the mini-batch iterates from rest, $k \le K = T/\eta$;
- $\mathbb E\varphi(u(t_k))$ for each SME;
- the weak error $e_k = \|\mathbb E\varphi(u_k) - \mathbb E\varphi(u(t_k))\|$ (Euclidean norm
  over the entries of $\varphi$), its maximum and final value, and the least-squares slope of
  $\log\max_k e_k$ against $\log\eta$;
- with Monte Carlo (`paths` a number): the standard error of every one of these numbers, and a
  warning (``!`` in the table) where it is not `MC_MARGIN` times below the error it qualifies;
  the solver error of the SDE solves (Richardson estimate, ``_sde``), flagged where it is not
  `SOLVER_MARGIN` times below the model error;
- with ``paths="exact"`` (least squares, with-replacement sampling): exact moments from
  ``_oracle``, no Monte Carlo error, and ``φ`` limited to the mean, the second-moment matrix
  and the loss.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._compare import (
    LAMBDA_SMALL,
    SOLVER_MARGIN,
    _check_etas,
    _float,
    _floats,
    _fmt,
    aligned,
    fit_order,
)
from .._methods import hessian_estimates
from .._validate import check_beta, check_count, check_method, check_positive, require_float64
from ._iterates import as_key, check_sampling, iterate_statistics
from ._oracle import ExactMoments, check_oracle, iterate_moments_exact, sde_moments_exact
from ._problems import FiniteSumProblem, check_batch_size, get_stochastic_problem
from ._sde import DEFAULT_SUBSTEPS, StochasticModifiedEquation, sde_model_from_name, sde_statistics

__all__ = [
    "compare_weak",
    "WeakOrderStudy",
    "WeakModelErrors",
    "MC_MARGIN",
    "BUILTIN_PHIS",
]

#: A Monte Carlo standard error must be this many times below the error it qualifies.
MC_MARGIN = 5.0

#: Test functions known by name.
BUILTIN_PHIS = ("mean", "second-moment", "loss")


@dataclasses.dataclass(frozen=True)
class WeakModelErrors:
    r"""One SME's weak errors for one test function over the sweep (index `i` ↔ ``etas[i]``).

    - `name`, `phi`, `expected_order` (``None``: measured, not claimed).
    - `max_errors`, `final_errors`, `errors` ($e_k$ per step size) and their Monte Carlo
      standard errors `max_errors_stderr`, `final_errors_stderr`, `errors_stderr` (0 exact).
    - `slope`, `slope_stderr` (fit), `slope_mc_stderr` (propagated Monte Carlo error),
      `local_slopes`, `slope_spread`.
    - `solver_errors`: max over $k$ of the SDE solver-error estimate $|R_2 - R_1|$ (0 with
      the oracle); `solver_bounds`: max over $k$ of estimate + 3 standard errors (the estimate
      is itself a Monte Carlo mean); `solver_flags`: where a resolved estimate is not
      `SOLVER_MARGIN` below the max error, or the bound is not `MC_MARGIN` below it.
    - `mc_flags`: where the standard error of the max error is not `MC_MARGIN` below it.
    - `seconds`: run time of this model's solves (all step sizes, with compilation).
    """

    name: str
    phi: str
    expected_order: int | None
    max_errors: np.ndarray
    final_errors: np.ndarray
    errors: tuple[np.ndarray, ...]
    max_errors_stderr: np.ndarray
    final_errors_stderr: np.ndarray
    errors_stderr: tuple[np.ndarray, ...]
    slope: float
    slope_stderr: float
    slope_mc_stderr: float
    local_slopes: np.ndarray
    slope_spread: float
    solver_errors: np.ndarray
    solver_bounds: np.ndarray
    solver_flags: np.ndarray
    mc_flags: np.ndarray
    seconds: float


@dataclasses.dataclass(frozen=True)
class WeakOrderStudy:
    """The result of `compare_weak`: plain data, rendered by `to_json` and `to_text`.

    - `problem`, `method`, `beta`, `horizon`, `etas`, `num_steps`, `batch_size`, `paths`
      (a number, or ``"exact"``), `sampling`, `seed` (``None`` for a key).
    - `phis`: the test functions' names; `by_phi`: phi → model name → `WeakModelErrors`;
      `models`: the first test function's entry (the layout of `hbflow.OrderStudy`).
    - `lambdas` ($\\eta/(1-\\beta)^2$), `hessian_norm`, `lambda_h`, `warnings`,
      `iterates_seconds`.
    """

    problem: str
    method: str
    beta: float
    horizon: float
    etas: np.ndarray
    num_steps: tuple[int, ...]
    batch_size: int
    paths: int | str
    sampling: str
    seed: int | None
    phis: tuple[str, ...]
    by_phi: dict[str, dict[str, WeakModelErrors]]
    lambdas: np.ndarray
    hessian_norm: float
    lambda_h: np.ndarray
    warnings: tuple[str, ...]
    iterates_seconds: float

    @property
    def models(self) -> dict[str, WeakModelErrors]:
        """The errors of the first test function, model by model."""
        return self.by_phi[self.phis[0]]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``); ``models`` is the first test function's."""

        def entry(m: WeakModelErrors) -> dict[str, Any]:
            return {
                "expected_order": m.expected_order,
                "max_errors": _floats(m.max_errors),
                "max_errors_stderr": _floats(m.max_errors_stderr),
                "final_errors": _floats(m.final_errors),
                "final_errors_stderr": _floats(m.final_errors_stderr),
                "slope": _float(m.slope),
                "slope_stderr": _float(m.slope_stderr),
                "slope_mc_stderr": _float(m.slope_mc_stderr),
                "slope_spread": _float(m.slope_spread),
                "local_slopes": _floats(m.local_slopes),
                "solver_error": _floats(m.solver_errors),
                "solver_error_bound": _floats(m.solver_bounds),
                "solver_error_flagged": [bool(f) for f in m.solver_flags],
                "mc_error_flagged": [bool(f) for f in m.mc_flags],
                "run_seconds": round(m.seconds, 4),
            }

        return {
            "problem": self.problem,
            "method": self.method,
            "beta": self.beta,
            "horizon": self.horizon,
            "batch_size": self.batch_size,
            "paths": self.paths,
            "sampling": self.sampling,
            "seed": self.seed,
            "etas": _floats(self.etas),
            "num_steps": list(self.num_steps),
            "lambda": _floats(self.lambdas),
            "hessian_norm": _float(self.hessian_norm),
            "lambda_hessian_norm": _floats(self.lambda_h),
            "phi": self.phis[0],
            "models": {name: entry(m) for name, m in self.models.items()},
            "by_phi": {
                phi: {name: entry(m) for name, m in models.items()}
                for phi, models in self.by_phi.items()
            },
            "warnings": list(self.warnings),
        }

    def to_text(self) -> str:
        """One table per test function: max weak errors ± standard errors, slopes, solver."""
        paths = "exact moments" if self.paths == "exact" else f"{self.paths} paths"
        lines = [
            f"weak order study: method={self.method} beta={self.beta:g} "
            f"horizon={self.horizon:g} B={self.batch_size} {paths} sampling={self.sampling} "
            f"|grad^2 L|≈{self.hessian_norm:.3g}"
        ]
        for phi in self.phis:
            header = ["model", "expected", *[f"eta={e:.4g}" for e in self.etas]]
            header += ["slope", "spread", "solver err (max)"]
            rows = []
            for name, m in self.by_phi[phi].items():
                cells = []
                for err, se, flag in zip(m.max_errors, m.max_errors_stderr, m.mc_flags):
                    text = f"{err:.3e}" if np.isfinite(err) else "failed"
                    if self.paths != "exact":
                        text += f"±{se:.1e}"
                    cells.append(text + ("!" if flag else ""))
                slope = _fmt(m.slope, ".2f")
                if self.paths != "exact" and np.isfinite(m.slope_mc_stderr):
                    slope += f"±{m.slope_mc_stderr:.2f}"
                solver = (
                    "exact"
                    if self.paths == "exact"
                    else f"{np.nanmax(m.solver_errors):.1e} (<{np.nanmax(m.solver_bounds):.1e})"
                    + (" !" if m.solver_flags.any() else "")
                )
                expected = "measured" if m.expected_order is None else str(m.expected_order)
                rows.append([name, expected, *cells, slope, _fmt(m.slope_spread, ".2f"), solver])
            lines.append(f"max_k |E phi(u_k) - E phi(u(t_k))|, phi = {phi}:")
            lines += aligned([header, *rows])
        lam = "  ".join(f"{x:.3g}" for x in self.lambdas)
        lamh = "  ".join(f"{x:.3g}" for x in self.lambda_h)
        lines.append(f"lambda: {lam}; lambda|H|: {lamh}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


# --- test functions ---------------------------------------------------------------------------


def _phi_name(phi, i: int) -> str:
    if isinstance(phi, str):
        return phi
    return getattr(phi, "__name__", None) or f"phi{i}"


def _check_phis(phis, problem: FiniteSumProblem) -> tuple:
    if isinstance(phis, str) or callable(phis):
        phis = (phis,)
    try:
        phis = tuple(phis)
    except TypeError:
        raise ValueError(
            f"phis must be a test function or a list of them ({', '.join(BUILTIN_PHIS)} or "
            f"callables), got {phis!r}"
        ) from None
    if not phis:
        raise ValueError("phis must hold at least one test function")
    for i, phi in enumerate(phis):
        if isinstance(phi, str):
            if phi not in BUILTIN_PHIS:
                raise ValueError(
                    f"unknown test function {phi!r}; valid names: {', '.join(BUILTIN_PHIS)}, "
                    "or pass a callable phi(u) returning an array"
                )
            continue
        if not callable(phi):
            raise ValueError(f"phis[{i}] must be a name or a callable, got {phi!r}")
        _check_phi_output(phi, problem, _phi_name(phi, i))
    names = [_phi_name(p, i) for i, p in enumerate(phis)]
    if len(set(names)) != len(names):
        raise ValueError(f"phis must have distinct names, got {names}")
    return phis


def _check_phi_output(phi: Callable, problem: FiniteSumProblem, name: str) -> None:
    try:
        out = jax.eval_shape(phi, problem.x0)
    except Exception as err:  # noqa: BLE001 - any failure at x0 is a bad phi
        raise ValueError(
            f"test function {name!r} cannot be evaluated at x0: {type(err).__name__}: "
            f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}; phi(u) must take "
            "the parameters (shaped like x0) and return a JAX array"
        ) from None
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(
            f"test function {name!r} must return one array (e.g. jnp.stack of its values), got "
            f"{jax.tree_util.tree_structure(out)}"
        )
    if not (jnp.issubdtype(out.dtype, jnp.floating) or jnp.issubdtype(out.dtype, jnp.integer)):
        raise ValueError(f"test function {name!r} must return a real array, got {out.dtype}")


@functools.lru_cache(maxsize=64)
def _recorder(problem: FiniteSumProblem, phis: tuple) -> Callable:
    """A hashable record(flat u) -> {phi name: value}, one object per (problem, phis)."""

    def record(x):
        out = {}
        for i, phi in enumerate(phis):
            name = _phi_name(phi, i)
            if phi == "mean":
                out[name] = x
            elif phi == "second-moment":
                out[name] = jnp.outer(x, x)
            elif phi == "loss":
                out[name] = problem.full_loss(x)
            else:
                out[name] = jnp.asarray(phi(problem.unravel(x)), dtype=jnp.float64)
        return out

    return record


def _exact_phi(phi: str, moments: ExactMoments, problem: FiniteSumProblem) -> np.ndarray:
    if phi == "mean":
        return moments.mean
    if phi == "second-moment":
        return moments.second
    # paths == 'exact' is accepted only for least squares, where this is set
    assert problem.least_squares is not None
    X, y = problem.least_squares
    q = np.concatenate([X, -y[:, None]], axis=1)
    return 0.5 * np.einsum("ia,kab,ib->k", q, moments.aug, q) / X.shape[0]


# --- the comparator ---------------------------------------------------------------------------


def _as_models(models) -> list[StochasticModifiedEquation]:
    if isinstance(models, (str, StochasticModifiedEquation)):
        models = [models]
    out = [sde_model_from_name(m) for m in models]
    if not out:
        raise ValueError("models must name at least one SDE model")
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"models must be distinct, got {names}")
    return out


def _check_paths(paths) -> int | str:
    if paths == "exact":
        return "exact"
    if isinstance(paths, bool) or not isinstance(paths, (int, np.integer)) or paths < 2:
        raise ValueError(
            f"paths must be an integer >= 2 (Monte Carlo paths) or 'exact' (least squares), got "
            f"{paths!r}"
        )
    return int(paths)


def _norms(diff: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(diff.reshape(diff.shape[0], -1) ** 2, axis=1))


def compare_weak(
    problem: FiniteSumProblem | str,
    *,
    method: str = "hb",
    beta: float = 0.5,
    etas: Sequence[float] | np.ndarray,
    horizon: float,
    batch_size: int,
    models: Sequence[str | StochasticModifiedEquation] = ("sme1",),
    phis: Sequence[str | Callable] = ("mean",),
    paths: int | str = 1000,
    key=0,
    sampling: str = "with-replacement",
    substeps: int = DEFAULT_SUBSTEPS,
    chunk_size: int | None = 1024,
) -> WeakOrderStudy:
    r"""Measure each SME's weak error against the mini-batch iterates, and its weak order.

    **Arguments:**

    - `problem`: a `FiniteSumProblem` or the name of a built-in one.
    - `method`: ``"hb"``, ``"nag"`` or ``"gd"``; `beta`: $0\le\beta<1$ (0 for ``"gd"``).
    - `etas`, `horizon`: as in `hbflow.compare` (sorted step sizes, $T$ a multiple of each).
    - `batch_size`: $1 \le B \le n$.
    - `models`: SDE model names (``sme1``, ``sme-steadyN``, ``sme-hbfN``, ``sme-hbfN-gamma``)
      or `StochasticModifiedEquation`s.
    - `phis`: test functions: ``"mean"`` ($u$), ``"second-moment"`` ($uu^\top$), ``"loss"``
      ($L(u)$) or callables ``phi(u) -> array`` of the parameters.
    - `paths`: Monte Carlo paths ($\ge 2$, for the iterates and for each SME) or ``"exact"``
      (the oracle; least squares with with-replacement sampling only).
    - `key`: a ``jax.random`` key or integer seed (iterates and SDEs use independent streams).
    - `sampling`: ``"with-replacement"`` or ``"reshuffling"``.
    - `substeps`: Euler steps per piece of the coarsest SDE solve (then 2× and 4×).
    - `chunk_size`: paths per compiled batch.

    **Returns:** a `WeakOrderStudy`.

    **Raises:** `ValueError` naming the parameter for bad input; `RuntimeError` if the
    iterates or a solve produce non-finite moments (diverging iterates) or JAX is in float32.
    """
    require_float64("hbflow.compare_weak")
    if isinstance(problem, str):
        problem = get_stochastic_problem(problem)
    if not isinstance(problem, FiniteSumProblem):
        raise ValueError(f"problem must be a FiniteSumProblem or a name, got {problem!r}")
    method = check_method(method)
    beta = check_beta(beta, method)
    horizon = check_positive(horizon, "horizon")
    etas, nums = _check_etas(etas, horizon)
    batch_size = check_batch_size(batch_size, problem.n)
    model_list = _as_models(models)
    phis = _check_phis(phis, problem)
    paths = _check_paths(paths)
    sampling = check_sampling(sampling)
    substeps = check_count(substeps, "substeps")
    seed = int(key) if isinstance(key, (int, np.integer)) and not isinstance(key, bool) else None
    key = as_key(key)
    names = [_phi_name(p, i) for i, p in enumerate(phis)]
    if paths == "exact":
        check_oracle(problem)
        if sampling != "with-replacement":
            raise ValueError(
                "paths='exact' covers with-replacement sampling only; use a number of paths "
                "for sampling='reshuffling'"
            )
        bad = [n for n, p in zip(names, phis) if not isinstance(p, str)]
        if bad:
            raise ValueError(
                f"paths='exact' computes the test functions {', '.join(BUILTIN_PHIS)} only, "
                f"not {bad}; use a number of paths for user test functions"
            )
    kmax = max(nums)
    key_iterates, key_sde = jax.random.split(key)
    record = _recorder(problem, phis)

    def stats_from(mean, var, count):
        return {n: (np.asarray(mean[n]), np.asarray(var[n]) / count) for n in names}

    start = time.perf_counter()
    iterate_stats = []
    for eta in etas:
        if paths == "exact":
            ex = iterate_moments_exact(
                problem,
                method=method,
                beta=beta,
                eta=float(eta),
                num_steps=kmax,
                batch_size=batch_size,
            )
            iterate_stats.append({n: (_exact_phi(n, ex, problem), 0.0) for n in names})
        else:
            assert isinstance(paths, int)  # _check_paths: an int unless 'exact'
            st = iterate_statistics(
                problem,
                record,
                method=method,
                beta=beta,
                eta=float(eta),
                num_steps=kmax,
                batch_size=batch_size,
                key=key_iterates,
                num_paths=paths,
                sampling=sampling,
                chunk_size=chunk_size,
            )
            iterate_stats.append(stats_from(st.mean, st.var, st.count))
        if not all(np.all(np.isfinite(v[0])) for v in iterate_stats[-1].values()):
            raise RuntimeError(
                f"the mini-batch iterates diverge at eta={eta:g} (non-finite moments); use "
                "smaller step sizes"
            )
    iterates_seconds = time.perf_counter() - start

    by_phi: dict[str, dict[str, WeakModelErrors]] = {n: {} for n in names}
    warnings: list[str] = []
    for model in model_list:
        t0 = time.perf_counter()
        table = model.coefficients(method, beta, kmax)
        per_eta = []
        for i, eta in enumerate(etas):
            if paths == "exact":
                ex = sde_moments_exact(
                    model,
                    problem,
                    method=method,
                    beta=beta,
                    eta=float(eta),
                    num_steps=kmax,
                    batch_size=batch_size,
                )
                per_eta.append({n: (_exact_phi(n, ex, problem), 0.0, 0.0) for n in names})
            else:
                assert isinstance(paths, int)  # _check_paths: an int unless 'exact'
                values, solver = sde_statistics(
                    model,
                    problem,
                    record,
                    method=method,
                    beta=beta,
                    eta=float(eta),
                    num_steps=kmax,
                    batch_size=batch_size,
                    key=key_sde,
                    num_paths=paths,
                    substeps=substeps,
                    chunk_size=chunk_size,
                    table=table,
                )
                per_eta.append(
                    {
                        n: (
                            np.asarray(values.mean[n]),
                            np.asarray(values.var[n]) / values.count,
                            (np.asarray(solver.mean[n]), np.asarray(solver.var[n]) / solver.count),
                        )
                        for n in names
                    }
                )
            if not all(np.all(np.isfinite(v[0])) for v in per_eta[-1].values()):
                raise RuntimeError(
                    f"{model.name}: the SDE solve gives non-finite moments at eta={eta:g}; use "
                    "smaller step sizes or more substeps"
                )
        seconds = time.perf_counter() - t0
        for n in names:
            errors, errors_se = [], []
            n_eta = len(etas)
            max_err, max_se, final_err, final_se, solver_err, solver_bound = (
                np.zeros(n_eta) for _ in range(6)
            )
            solver_resolved = np.zeros(n_eta, dtype=bool)
            for i, k in enumerate(nums):
                it_mean, it_var = iterate_stats[i][n]
                sde_mean, sde_var, solver_mean = per_eta[i][n]
                diff = (it_mean - sde_mean)[: k + 1]
                var = (np.broadcast_to(it_var, it_mean.shape) + sde_var)[: k + 1]
                e = _norms(diff)
                se = np.sqrt(np.sum(var.reshape(k + 1, -1), axis=1))
                errors.append(e)
                errors_se.append(se)
                j = int(np.argmax(e))
                max_err[i], max_se[i] = e[j], se[j]
                final_err[i], final_se[i] = e[-1], se[-1]
                if paths != "exact":
                    delta, delta_var = solver_mean
                    delta_se = np.sqrt(np.sum(delta_var[: k + 1].reshape(k + 1, -1), axis=1))
                    estimate = _norms(delta[: k + 1])
                    solver_err[i] = float(np.max(estimate))
                    solver_bound[i] = float(np.max(estimate + 3 * delta_se))
                    solver_resolved[i] = bool(np.any(estimate > 3 * delta_se))
            slope, stderr, local = fit_order(etas, max_err)
            x = np.log(etas)
            w = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                slope_mc = float(np.sqrt(np.sum((w * max_se / max_err) ** 2)))
            spread = float(np.max(np.abs(local - slope))) if np.isfinite(slope) else math.nan
            # A solver error the Monte Carlo resolves must be SOLVER_MARGIN below the weak
            # error; one it cannot resolve must have its 3-sigma bound MC_MARGIN below it,
            # the resolution the Monte Carlo itself is held to.
            solver_flags = (solver_resolved & (solver_err * SOLVER_MARGIN > max_err)) | (
                solver_bound * MC_MARGIN > max_err
            )
            mc_flags = max_se * MC_MARGIN > max_err
            label = f"{model.name} (phi = {n})"
            if mc_flags.any():
                bad = ", ".join(f"{etas[i]:g}" for i in np.flatnonzero(mc_flags))
                warnings.append(
                    f"{label}: the Monte Carlo standard error is not {MC_MARGIN:g}x below the "
                    f"weak error at eta = {bad}; use more paths or the slope measures noise"
                )
            if solver_flags.any():
                bad = ", ".join(f"{etas[i]:g}" for i in np.flatnonzero(solver_flags))
                warnings.append(
                    f"{label}: the SDE solver error is not {SOLVER_MARGIN:g}x below the weak "
                    f"error at eta = {bad}; use more substeps or the slope is not the model's"
                )
            by_phi[n][model.name] = WeakModelErrors(
                name=model.name,
                phi=n,
                expected_order=model.order(method, beta),
                max_errors=max_err,
                final_errors=final_err,
                errors=tuple(errors),
                max_errors_stderr=max_se,
                final_errors_stderr=final_se,
                errors_stderr=tuple(errors_se),
                slope=slope,
                slope_stderr=stderr,
                slope_mc_stderr=slope_mc if paths != "exact" else 0.0,
                local_slopes=local,
                slope_spread=spread,
                solver_errors=solver_err,
                solver_bounds=solver_bound,
                solver_flags=solver_flags,
                mc_flags=mc_flags,
                seconds=seconds,
            )

    lambdas = etas / (1 - beta) ** 2
    full = problem.as_problem()
    norms, _ = hessian_estimates(full.loss, full.x0, np.asarray(problem.flat_x0)[None])
    hessian_norm = float(np.max(norms))
    lambda_h = lambdas * hessian_norm
    if np.any(lambda_h > LAMBDA_SMALL):
        worst = int(np.argmax(lambda_h))
        warnings.insert(
            0,
            f"lambda*|grad^2 L| = {lambda_h[worst]:.3g} at eta = {etas[worst]:g} is not small "
            f"(> {LAMBDA_SMALL:g}): weak orders may be pre-asymptotic",
        )
    return WeakOrderStudy(
        problem=problem.name,
        method=method,
        beta=beta,
        horizon=horizon,
        etas=etas,
        num_steps=tuple(nums),
        batch_size=batch_size,
        paths=paths,
        sampling=sampling,
        seed=seed,
        phis=tuple(names),
        by_phi=by_phi,
        lambdas=lambdas,
        hessian_norm=hessian_norm,
        lambda_h=lambda_h,
        warnings=tuple(warnings),
        iterates_seconds=iterates_seconds,
    )

r"""The error comparator: how far each continuous model is from the iterates, and with what order.

For a loss, a start $u_0$, a method, $\beta$, a geometric sequence of step sizes and a fixed
horizon $T$ (``../shared/MATH.md`` §6):

- the iterates $u_0, \dots, u_K$, $K = T/\eta$, from rest;
- each model's $u(t_k)$ at the grid times $t_k = k\eta$;
- the error $e_k = \|u(t_k) - u_k\|$ along the trajectory, its maximum and final value;
- the least-squares slope of $\log \max_k e_k$ against $\log\eta$ (the measured order), with its
  spread;
- a solver-error estimate: the same solve with tolerances 100× tighter, flagged when it is not
  far below the model error (then the slope says nothing about the model);
- $\lambda = \eta/(1-\beta)^2$ and $\lambda\|\nabla^2L\|$, with a warning when it is not small.

Compilation is shared across the sweep: every model is compiled once for the largest number of
pieces (smaller ones are masked), and the iterates are run once per step size with the same
number of steps (the extra steps are discarded).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PyTree

from ._integrate import DEFAULT_ATOL, DEFAULT_RTOL, solve_model
from ._models import AbstractContinuousModel, check_beta, check_method, model_from_name

__all__ = ["compare", "OrderStudy", "ModelErrors", "fit_order", "SOLVER_MARGIN", "LAMBDA_SMALL"]

#: The solver error must be this many times below the model error for a slope to count.
SOLVER_MARGIN = 100.0
#: $\lambda\|\nabla^2 L\|$ above this is "not small": expect pre-asymptotic slopes.
LAMBDA_SMALL = 0.2


@dataclasses.dataclass(frozen=True)
class ModelErrors:
    """One model's errors against the iterates over the sweep (index `i` ↔ ``etas[i]``).

    - `name`, `expected_order`: the model and its stated order for this method and β.
    - `max_errors`, `final_errors`: $\\max_k e_k$ and $e_K$ per step size.
    - `errors`: $e_k$ along the trajectory, one array of length $K+1$ per step size.
    - `slope`: least-squares slope of $\\log$ max error against $\\log\\eta$ (NaN if undefined).
    - `slope_stderr`: its standard error (NaN with fewer than three step sizes).
    - `local_slopes`: slopes between consecutive step sizes; `slope_spread` is the largest
      distance of one of them from `slope`.
    - `solver_errors`: max difference to a solve with 100× tighter tolerances (NaN if skipped).
    - `solver_flags`: True where the solver error is not `SOLVER_MARGIN` times below the max
      error.
    - `compile_seconds`, `run_seconds`: compile time, and run time of all the solves.
    """

    name: str
    expected_order: int
    max_errors: np.ndarray
    final_errors: np.ndarray
    errors: tuple[np.ndarray, ...]
    slope: float
    slope_stderr: float
    local_slopes: np.ndarray
    slope_spread: float
    solver_errors: np.ndarray
    solver_flags: np.ndarray
    compile_seconds: float
    run_seconds: float


@dataclasses.dataclass(frozen=True)
class OrderStudy:
    """The result of `compare`: plain data, rendered by `to_json` and `to_text`.

    - `method`, `beta`, `horizon`, `etas`, `num_steps` ($K$ per step size).
    - `models`: name → `ModelErrors`, in the order requested.
    - `lambdas`: $\\lambda = \\eta/(1-\\beta)^2$ per step size; `hessian_norm`: the largest
      $\\|\\nabla^2 L\\|$ found along the iterates (power iteration); `lambda_h` = their product.
    - `warnings`: human-readable warnings (λ‖∇²L‖ not small, solver error too large).
    - `iterates_seconds`: wall time of the iterates (all step sizes, with compilation).
    """

    method: str
    beta: float
    horizon: float
    etas: np.ndarray
    num_steps: tuple[int, ...]
    models: dict[str, ModelErrors]
    lambdas: np.ndarray
    hessian_norm: float
    lambda_h: np.ndarray
    warnings: tuple[str, ...]
    iterates_seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        return {
            "method": self.method,
            "beta": self.beta,
            "horizon": self.horizon,
            "etas": _floats(self.etas),
            "num_steps": list(self.num_steps),
            "lambda": _floats(self.lambdas),
            "hessian_norm": _float(self.hessian_norm),
            "lambda_hessian_norm": _floats(self.lambda_h),
            "models": {
                name: {
                    "expected_order": m.expected_order,
                    "max_errors": _floats(m.max_errors),
                    "final_errors": _floats(m.final_errors),
                    "slope": _float(m.slope),
                    "slope_stderr": _float(m.slope_stderr),
                    "slope_spread": _float(m.slope_spread),
                    "local_slopes": _floats(m.local_slopes),
                    "solver_error": _floats(m.solver_errors),
                    "solver_error_flagged": [bool(f) for f in m.solver_flags],
                    "compile_seconds": round(m.compile_seconds, 4),
                    "run_seconds": round(m.run_seconds, 4),
                }
                for name, m in self.models.items()
            },
            "warnings": list(self.warnings),
        }

    def to_text(self) -> str:
        """A table of max errors per model and step size, with fitted slopes."""
        head = (
            f"order study: method={self.method} beta={self.beta:g} horizon={self.horizon:g} "
            f"|grad^2 L|≈{self.hessian_norm:.3g}"
        )
        eta_cols = [f"eta={e:.4g}" for e in self.etas]
        header = ["model", "expected", *eta_cols, "slope", "spread", "solver err (max)"]
        rows = []
        for name, m in self.models.items():
            flagged = " !" if m.solver_flags.any() else ""
            rows.append(
                [
                    name,
                    str(m.expected_order),
                    *[f"{e:.3e}" for e in m.max_errors],
                    _fmt(m.slope, ".2f"),
                    _fmt(m.slope_spread, ".2f"),
                    f"{np.nanmax(m.solver_errors):.1e}{flagged}"
                    if np.isfinite(m.solver_errors).any()
                    else "-",
                ]
            )
        lam_row = ["lambda", "", *[f"{x:.3g}" for x in self.lambdas], "", "", ""]
        lamh_row = ["lambda|H|", "", *[f"{x:.3g}" for x in self.lambda_h], "", "", ""]
        table = [header, *rows, lam_row, lamh_row]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        lines = [head, "max_k |u(t_k) - u_k| against the iterates from rest:"]
        for j, r in enumerate(table):
            lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                                   enumerate(zip(r, widths))).rstrip())
            if j == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _fmt(x: float, spec: str) -> str:
    return "nan" if not np.isfinite(x) else format(x, spec)


def _float(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _floats(xs) -> list[float | None]:
    return [_float(x) for x in np.asarray(xs).ravel()]


def fit_order(etas: Sequence[float], errors: Sequence[float]) -> tuple[float, float, np.ndarray]:
    r"""Least-squares slope of $\log$ `errors` against $\log$ `etas`.

    **Returns:** ``(slope, stderr, local_slopes)``; NaN where undefined (fewer than two points,
    or a zero or non-finite error).
    """
    x = np.log(np.asarray(etas, dtype=np.float64))
    errors = np.asarray(errors, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(errors)
        local = np.diff(y) / np.diff(x) if len(x) >= 2 else np.array([])
    if len(x) < 2 or not np.all(np.isfinite(y)):
        return math.nan, math.nan, local
    xm, ym = x - x.mean(), y - y.mean()
    slope = float(xm @ ym / (xm @ xm))
    if len(x) > 2:
        resid = ym - slope * xm
        stderr = float(np.sqrt(resid @ resid / (len(x) - 2) / (xm @ xm)))
    else:
        stderr = math.nan
    return slope, stderr, local


@functools.lru_cache(maxsize=64)
def _hessian_norm_fn(loss: Callable, treedef: Any, shapes: tuple, iters: int = 40) -> Callable:
    example = jax.tree_util.tree_unflatten(treedef, [jnp.zeros(s) for s in shapes])
    _, unravel = ravel_pytree(example)
    grad = jax.grad(lambda x: loss(unravel(x)))

    def norm_at(x, v):
        def hvp(w):
            return jax.jvp(grad, (x,), (w,))[1]

        def body(_, w):
            hw = hvp(w)
            return hw / jnp.maximum(jnp.linalg.norm(hw), 1e-300)

        w = jax.lax.fori_loop(0, iters, body, v / jnp.linalg.norm(v))
        return jnp.linalg.norm(hvp(w))

    return jax.jit(jax.vmap(norm_at))


def _as_models(models) -> list[AbstractContinuousModel]:
    if isinstance(models, (str, AbstractContinuousModel)):
        models = [models]
    out = [model_from_name(m) if isinstance(m, str) else m for m in models]
    if not out:
        raise ValueError("models must name at least one model")
    for m in out:
        if not isinstance(m, AbstractContinuousModel):
            raise ValueError(f"models: {m!r} is neither a model name nor a continuous model")
    names = [m.name for m in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"models: {sorted(dup)} requested more than once")
    return out


def _check_etas(etas, horizon: float) -> tuple[np.ndarray, list[int]]:
    try:
        etas = np.atleast_1d(np.asarray(etas, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"etas must be a list of step sizes > 0, got {etas!r}") from None
    if etas.ndim != 1 or etas.size == 0:
        raise ValueError("etas must be a non-empty list of step sizes > 0")
    for e in etas:
        if not (math.isfinite(e) and e > 0):
            raise ValueError(f"eta must be a finite number > 0, got {e!r}")
    if len(set(etas.tolist())) != len(etas):
        raise ValueError(f"etas must be distinct, got {etas.tolist()}")
    nums = []
    for e in etas:
        k = round(horizon / e)
        if k < 1 or abs(k * e - horizon) > 1e-9 * horizon:
            raise ValueError(
                f"horizon {horizon:g} must be a positive integer multiple of every eta; "
                f"horizon/eta = {horizon / e:.6g} for eta={e:g}"
            )
        nums.append(int(k))
    return etas, nums


def _check_loss(loss: Callable, u0: PyTree) -> None:
    if not callable(loss):
        raise ValueError(f"loss must be a callable returning a scalar, got {loss!r}")
    try:
        out = jax.eval_shape(loss, u0)
    except Exception as err:  # report any failure to trace the loss at u0 as a bad loss
        raise ValueError(f"loss cannot be evaluated at x0: {type(err).__name__}: {err}") from None
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        got = f"shape {out.shape}" if isinstance(out, jax.ShapeDtypeStruct) else repr(out)
        raise ValueError(f"loss must return a real scalar (shape ()), got {got}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"loss must return a real floating scalar, got dtype {out.dtype}")
    value, grad = jax.value_and_grad(loss)(u0)
    if not np.isfinite(float(value)):
        raise ValueError(f"loss must be finite at x0, got {float(value)}")
    if not np.all(np.isfinite(ravel_pytree(grad)[0])):
        raise ValueError("the gradient of the loss must be finite at x0, got NaN or Inf")


def compare(
    loss: Callable[[PyTree], Array],
    x0: PyTree,
    *,
    method: str = "hb",
    beta: float = 0.5,
    etas: Sequence[float],
    horizon: float,
    models: Sequence[str | AbstractContinuousModel] = ("hbf1", "hbf2", "hbf3", "rgf"),
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    solver: diffrax.AbstractSolver | None = None,
    max_steps: int = 4096,
    solver_check: bool = True,
) -> OrderStudy:
    r"""Measure each model's distance to the iterates, and its order in the step size.

    **Arguments:**

    - `loss`: a JAX scalar loss of a pytree shaped like `x0`.
    - `x0`: the start $u_0$ (iterates from rest).
    - `method`: ``"hb"``, ``"nag"`` or ``"gd"``; `beta`: $0 \le \beta < 1$ (0 for ``"gd"``).
    - `etas`: the step sizes (a geometric sequence for a clean fit); `horizon`: $T$, an integer
      multiple of every step size.
    - `models`: model names (``hbfN``, ``steadyN``, ``rgf``, ``ks2``, ``mgf``, ``gf``) or models.
    - `rtol`, `atol`, `solver`, `max_steps`: passed to `solve_model`.
    - `solver_check`: also solve with tolerances 100× tighter to estimate the solver error.

    **Returns:** an `OrderStudy`.

    **Raises:** `ValueError` naming the parameter for bad input; `RuntimeError` naming the model
    and piece if a solve fails.
    """
    method = check_method(method)
    beta = check_beta(beta, method)
    try:
        horizon = float(horizon)
    except (TypeError, ValueError):
        raise ValueError(f"horizon must be a finite number > 0, got {horizon!r}") from None
    if not (math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"horizon must be a finite number > 0, got {horizon!r}")
    etas, nums = _check_etas(etas, horizon)
    model_list = _as_models(models)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {tol!r}")
    x0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.float64), x0)
    _check_loss(loss, x0)
    max_pieces = max(nums)

    from ._methods import iterates

    start = time.perf_counter()
    flat_iterates = []
    for eta, k in zip(etas, nums):
        us = iterates(loss, x0, method=method, beta=beta, eta=float(eta), num_steps=max_pieces)
        flat = np.asarray(jax.vmap(lambda u: ravel_pytree(u)[0])(us))[: k + 1]
        if not np.all(np.isfinite(flat)):
            bad = int(np.flatnonzero(~np.all(np.isfinite(flat), axis=1))[0])
            raise RuntimeError(
                f"the {method} iterates diverge for eta={eta:g}, beta={beta:g} (non-finite at "
                f"step {bad}); use smaller step sizes"
            )
        flat_iterates.append(flat)
    iterates_seconds = time.perf_counter() - start

    results: dict[str, ModelErrors] = {}
    warnings: list[str] = []
    for model in model_list:
        tables = [model.coefficients(method, beta, k) for k in nums]
        common = dict(method=method, beta=beta, solver=solver, max_steps=max_steps,
                      max_pieces=max_pieces)

        def run(i, rt, at, model=model, tables=tables, common=common):
            sol = solve_model(model, loss, x0, eta=float(etas[i]), num_pieces=nums[i], rtol=rt,
                              atol=at, table=tables[i], **common)
            flat = np.asarray(jax.vmap(lambda u: ravel_pytree(u)[0])(sol.us))
            return flat, sol.seconds

        first_seconds = None
        first_run = 0.0
        run_seconds = 0.0
        errors, max_err, final_err, solver_err = [], [], [], []
        for i in range(len(etas)):
            if first_seconds is None:
                _, first_seconds = run(i, rtol, atol)  # compiles
            traj, seconds = run(i, rtol, atol)
            run_seconds += seconds
            if i == 0:
                first_run = seconds
            e = np.linalg.norm(traj - flat_iterates[i], axis=1)
            errors.append(e)
            max_err.append(e.max())
            final_err.append(e[-1])
            if solver_check:
                tight, seconds = run(i, rtol / 100, atol / 100)
                run_seconds += seconds
                solver_err.append(np.linalg.norm(traj - tight, axis=1).max())
            else:
                solver_err.append(math.nan)
        max_err = np.array(max_err)
        solver_err = np.array(solver_err)
        flags = solver_err * SOLVER_MARGIN > max_err
        slope, stderr, local = fit_order(etas, max_err)
        spread = float(np.max(np.abs(local - slope))) if local.size and np.isfinite(slope) else (
            math.nan)
        name = model.name
        if flags.any():
            bad = ", ".join(f"{etas[i]:g}" for i in np.flatnonzero(flags))
            warnings.append(
                f"{name}: the solver error is not {SOLVER_MARGIN:g}x below the model error at "
                f"eta = {bad}; tighten rtol/atol or the slope is not the model's"
            )
        results[name] = ModelErrors(
            name=name,
            expected_order=model.order(method, beta),
            max_errors=max_err,
            final_errors=np.array(final_err),
            errors=tuple(errors),
            slope=slope,
            slope_stderr=stderr,
            local_slopes=local,
            slope_spread=spread,
            solver_errors=solver_err,
            solver_flags=flags,
            compile_seconds=max(first_seconds - first_run, 0.0),
            run_seconds=run_seconds,
        )

    lambdas = etas / (1 - beta) ** 2
    hessian_norm = _hessian_norm_along(loss, x0, flat_iterates[int(np.argmin(etas))])
    lambda_h = lambdas * hessian_norm
    if np.any(lambda_h > LAMBDA_SMALL):
        worst = int(np.argmax(lambda_h))
        warnings.insert(
            0,
            f"lambda*|grad^2 L| = {lambda_h[worst]:.3g} at eta = {etas[worst]:g} is not small "
            f"(> {LAMBDA_SMALL:g}; lambda = eta/(1-beta)^2 = {lambdas[worst]:.3g}): the expansions "
            "in powers of lambda*|grad^2 L| converge slowly or not at all, so measured slopes "
            "may be pre-asymptotic"
            + ("; near 1 or above, no first-order flow can follow the oscillations of the "
               "momentum iterates" if lambda_h[worst] > 0.5 else ""),
        )
    return OrderStudy(
        method=method,
        beta=beta,
        horizon=horizon,
        etas=etas,
        num_steps=tuple(nums),
        models=results,
        lambdas=lambdas,
        hessian_norm=hessian_norm,
        lambda_h=lambda_h,
        warnings=tuple(warnings),
        iterates_seconds=iterates_seconds,
    )


def _hessian_norm_along(loss: Callable, x0: PyTree, flat_iterates: np.ndarray) -> float:
    """Largest $\\|\\nabla^2 L\\|$ at a few points along the iterates (power iteration)."""
    idx = np.unique(np.linspace(0, len(flat_iterates) - 1, 5).round().astype(int))
    points = jnp.asarray(flat_iterates[idx])
    start = jax.random.normal(jax.random.key(0), points.shape, dtype=points.dtype)
    leaves, treedef = jax.tree_util.tree_flatten(x0)
    try:
        fn = _hessian_norm_fn(loss, treedef, tuple(jnp.shape(x) for x in leaves))
    except TypeError:  # unhashable loss
        fn = _hessian_norm_fn.__wrapped__(loss, treedef, tuple(jnp.shape(x) for x in leaves))
    norms = fn(points, start)
    return float(jnp.max(norms))

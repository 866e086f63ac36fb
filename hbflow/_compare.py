r"""The error comparator: how far each continuous model is from the iterates, and with what order.

For a loss, a start $u_0$, a method, $\beta$, a geometric sequence of step sizes and a fixed
horizon $T$ (docs/theory.md#errors-and-orders):

- the iterates $u_0, \dots, u_K$, $K = T/\eta$, from rest;
- each model's $u(t_k)$ at the grid times $t_k = k\eta$;
- the error $e_k = \|u(t_k) - u_k\|$ along the trajectory, its maximum and final value;
- the least-squares slope of $\log \max_k e_k$ against $\log\eta$ (the measured order), with its
  spread;
- a solver-error estimate: the same solve with tolerances 100× tighter, flagged when it is not
  far below the model error (then the slope says nothing about the model);
- $\lambda = \eta/(1-\beta)^2$ and $\lambda\|\nabla^2L\|$, with a warning when it is not small.

A run that fails (iterates that diverge, a solve that fails) does not stop the sweep: the failure
is recorded, the other step sizes and models are still computed, and `compare` then raises
`OrderStudyError` carrying the partial study (or, with ``throw=False``, returns it).

The body of `compare` has three sections, as diffrax's `diffeqsolve` does: the set-up validates
every argument once (`_set_up`), the main loop (`_loop`) runs the iterates (`_run_iterates`) and
then each model's study (`_study_model`), and the finish (`_finish`) adds the diagnostics
(`_diagnostics`: $\lambda$, the Hessian, stability warnings) and assembles the `OrderStudy`.

Compilation is shared across the sweep: the step sizes share one compilation of the iterates and
of every solve at the largest number of steps (smaller ones are masked, extra steps discarded),
unless that would waste more than `BUCKET_MIN_SAVING` steps: then a step count is padded to the
next power of two (`_padded_length`), so that widely spread step sizes are not all run for the
longest length.  The first-order B-series models (``hbfN``, ``steadyN``, ``gf``, ``rgf``)
share one solve: the field of the highest order among them, each with its own table padded by
zero columns (`hbflow._models.shared_solves`); the first of them pays the compilation.
Before anything runs, `estimate_work` estimates the cost, and a study above `WORK_LIMITS` is
refused unless ``allow_large=True``.  Each model is solved once per step size (and
once more with tighter tolerances for the solver-error estimate); its compile time is reported as
the extra time of its first call: the first call's wall time minus the number of pieces it solved
times the mean time per piece of its later calls at the same tolerances.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import equinox as eqx
import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from numpy.typing import ArrayLike

from ._custom_types import Loss, PyTree, RealScalarLike
from ._integrate import DEFAULT_ATOL, DEFAULT_RTOL, SolveError, check_solver_settings, solve_flat
from ._lazy import lazy_module
from ._methods import (
    divergence_message,
    first_non_finite,
    hessian_estimates,
    iterates,
    stability_limit,
)
from ._models import (
    AbstractContinuousModel,
    as_models,
    series_table,
    shared_solves,
)
from ._validate import (
    as_float_tree,
    check_after,
    check_beta,
    check_loss,
    check_method,
    check_nu,
    check_positive,
    check_progress,
    horizon_hint,
    require_float64,
)

if TYPE_CHECKING:
    import diffrax
else:  # imported when first used: a run whose programs are all stored needs none of it
    diffrax = lazy_module("diffrax")

__all__ = [
    "compare",
    "OrderStudy",
    "OrderStudyError",
    "ModelErrors",
    "RunFailure",
    "Progress",
    "fit_order",
    "SOLVER_MARGIN",
    "LAMBDA_SMALL",
    "WorkEstimate",
    "estimate_work",
    "WORK_LIMITS",
]

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
    - `compile_seconds`: the extra wall time of the first solve over a compiled one (see the
      module docstring); `run_seconds`: wall time of all the solves less `compile_seconds`.
    - `layer_steps`: per step size, the width of the initial layer in steps: the first $k$
      after which $e_k$ stays within twice its maximum over the final window (see
      `layer_width`); NaN where the run failed.

    With ``compare(..., after=T0)`` the max errors, slopes and solver errors are taken over
    $t_k \\ge T_0$ only; `errors` keeps the whole trajectory.
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
    layer_steps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))


class RunFailure(NamedTuple):
    """One failed run of a sweep: `model` is ``None`` when the iterates themselves failed."""

    model: str | None
    eta: float
    message: str


class Progress(NamedTuple):
    """What `compare` reports to a `progress` callable after each run.

    - `done`, `total`: runs finished and planned (one for the iterates and one per model, for
      every step size).
    - `stage`: ``"iterates"`` or the model's name; `eta`: the step size.
    - `seconds`: wall time of the run (with its compilation); `failed`: whether it failed.
    """

    done: int
    total: int
    stage: str
    eta: float
    seconds: float
    failed: bool


@dataclasses.dataclass(frozen=True)
class OrderStudy:
    """The result of `compare`: plain data, rendered by `to_json` and `to_text`.

    - `method`, `beta`, `horizon`, `etas`, `num_steps` ($K$ per step size); `nu` (ν of
      ``"qhm"``, else ``None``).
    - `models`: name → `ModelErrors`, in the order requested.
    - `lambdas`: $\\lambda = \\eta/(1-\\beta)^2$ per step size; `hessian_norm`: the largest
      $\\|\\nabla^2 L\\|$ found along the iterates (power iteration); `lambda_h` = their product.
    - `warnings`: human-readable warnings (λ‖∇²L‖ not small, step size above the stability
      limit, solver error too large).
    - `iterates_seconds`: wall time of the iterates (all step sizes, with compilation).
    - `failures`: the runs that failed (`RunFailure`); their entries are NaN.  Empty unless
      `compare` was called with ``throw=False`` (it raises `OrderStudyError` otherwise).
    - `problem`: an optional label of the problem, for titles and JSON (``None`` from
      `compare`; set it with ``dataclasses.replace(study, problem="my-loss")``).
    - `after`: $T_0$, the start of the window $t_k \\ge T_0$ over which errors are taken.
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
    failures: tuple[RunFailure, ...] = ()
    problem: str | None = None
    after: float = 0.0
    nu: float | None = None

    @property
    def complete(self) -> bool:
        """Whether every run of the sweep succeeded."""
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        return {
            **({"problem": self.problem} if self.problem is not None else {}),
            "method": self.method,
            "beta": self.beta,
            **({} if self.nu is None else {"nu": self.nu}),
            "horizon": self.horizon,
            "after": self.after,
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
                    "layer_steps": _floats(m.layer_steps),
                }
                for name, m in self.models.items()
            },
            "warnings": list(self.warnings),
            "failures": [
                {"model": f.model or "iterates", "eta": float(f.eta), "message": f.message}
                for f in self.failures
            ],
        }

    def to_text(self) -> str:
        """A table of max errors per model and step size, with fitted slopes."""
        head = (
            f"order study: method={self.method} beta={self.beta:g} "
            + ("" if self.nu is None else f"nu={self.nu:g} ")
            + f"horizon={self.horizon:g} "
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
                    *[f"{e:.3e}" if np.isfinite(e) else "failed" for e in m.max_errors],
                    _fmt(m.slope, ".2f"),
                    _fmt(m.slope_spread, ".2f"),
                    f"{np.nanmax(m.solver_errors):.1e}{flagged}"
                    if np.isfinite(m.solver_errors).any()
                    else "-",
                ]
            )
        lam_row = ["lambda", "", *[f"{x:.3g}" for x in self.lambdas], "", "", ""]
        lamh_row = ["lambda|H|", "", *[f"{x:.3g}" for x in self.lambda_h], "", "", ""]
        lines = [head, f"{_window_text(self.after, self.horizon)} against the iterates from rest:"]
        lines += aligned([header, *rows, lam_row, lamh_row])
        lines.extend(_layer_lines(self))
        lines.extend(f"warning: {w}" for w in self.warnings)
        for f in self.failures:
            lines.append(f"failed: eta={f.eta:g} {f.model or 'iterates'}: {f.message}")
        return "\n".join(lines)


def aligned(table: list[list[str]]) -> list[str]:
    """The rows of `table` as lines: first column left-aligned, the others right-aligned, and
    a rule of dashes under the first row (the header)."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for j, r in enumerate(table):
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))
            ).rstrip()
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


class OrderStudyError(RuntimeError):
    """Some runs of an order study failed; `study` holds everything that was computed.

    The message lists each failure (which step size, which model or the iterates, why, and what
    to change); `study.failures` has them as `RunFailure`s, and the failed entries of
    `study.models` are NaN.
    """

    def __init__(self, study: OrderStudy):
        super().__init__(
            failure_summary(study)
            + " (the partial study is in this exception's .study)\n"
            + "\n".join(
                f"- eta={f.eta:g}, {f.model or 'iterates'}: {f.message}" for f in study.failures
            )
        )
        self.study = study


def failure_summary(study: OrderStudy) -> str:
    """One line: how many runs of `study` failed."""
    total = len(study.etas) * (1 + len(study.models))
    return f"order study incomplete: {len(study.failures)} of {total} runs failed"


def _fmt(x: float, spec: str) -> str:
    return "nan" if not np.isfinite(x) else format(x, spec)


def _float(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _floats(xs) -> list[float | None]:
    return [_float(x) for x in np.asarray(xs).ravel()]


def fit_order(etas: ArrayLike, errors: ArrayLike) -> tuple[float, float, np.ndarray]:
    r"""Least-squares slope of $\log$ `errors` against $\log$ `etas`.

    **Arguments:**

    - `etas`: the step sizes, finite, $> 0$, distinct and sorted (decreasing, as in a sweep, or
      increasing).
    - `errors`: one error per step size.

    **Returns:** ``(slope, stderr, local_slopes)``, with `local_slopes` the slopes between
    consecutive step sizes; NaN where undefined (a zero or non-finite error; the standard
    error needs three points).

    **Raises:** `ValueError` if `etas` has fewer than two entries, is unsorted, has repeated or
    non-positive values, or `errors` does not have one entry per step size.
    """
    try:
        x = np.asarray(etas, dtype=np.float64)
        err = np.asarray(errors, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"etas and errors must be lists of numbers, got {etas!r} and {errors!r}"
        ) from None
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"etas must be a non-empty 1-D list of step sizes, got {etas!r}")
    if x.size < 2:
        raise ValueError(f"etas must hold at least two step sizes to fit an order, got {etas!r}")
    if err.shape != x.shape:
        raise ValueError(
            f"errors must have one entry per step size: {x.size} etas, errors of shape {err.shape}"
        )
    if not np.all(np.isfinite(x) & (x > 0)):
        raise ValueError(f"etas must be finite and > 0, got {x.tolist()}")
    _check_sorted(x, "etas")
    x = np.log(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(err)
        local = np.diff(y) / np.diff(x)
    if not np.all(np.isfinite(y)):
        return math.nan, math.nan, local
    xm, ym = x - x.mean(), y - y.mean()
    slope = float(xm @ ym / (xm @ xm))
    if len(x) > 2:
        resid = ym - slope * xm
        stderr = float(np.sqrt(resid @ resid / (len(x) - 2) / (xm @ xm)))
    else:
        stderr = math.nan
    return slope, stderr, local


def _check_sorted(x: np.ndarray, name: str) -> None:
    d = np.diff(x)
    if len(set(x.tolist())) != len(x):
        raise ValueError(f"{name} must be distinct, got {x.tolist()}")
    if not (np.all(d < 0) or np.all(d > 0)):
        raise ValueError(
            f"{name} must be sorted (decreasing, e.g. 0.04, 0.02, 0.01, or increasing), got "
            f"{x.tolist()}"
        )


def _check_etas(etas, horizon: float) -> tuple[np.ndarray, list[int]]:
    if isinstance(etas, (str, bytes)):
        raise ValueError(f"etas must be a list of step sizes > 0, got {etas!r}")
    try:
        etas = np.atleast_1d(np.asarray(etas, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"etas must be a list of step sizes > 0, got {etas!r}") from None
    if etas.ndim != 1 or etas.size == 0:
        raise ValueError("etas must be a non-empty list of step sizes > 0")
    for e in etas.tolist():
        if not (math.isfinite(e) and e > 0):
            raise ValueError(f"eta must be a finite number > 0, got {e!r}")
    if len(set(etas.tolist())) != len(etas):
        raise ValueError(f"etas must be distinct, got {etas.tolist()}")
    nums = []
    for e in etas.tolist():
        k = round(horizon / e)
        if k < 1 or abs(k * e - horizon) > _HORIZON_RTOL * horizon:
            hint = horizon_hint(etas.tolist(), horizon)
            raise ValueError(
                f"horizon {horizon:g} must be a positive integer multiple of every eta; "
                f"horizon/eta = {horizon / e:.6g} for eta={e:g} ({hint})"
            )
        nums.append(int(k))
    if len(etas) < 2:
        raise ValueError(
            f"etas must hold at least two step sizes to fit an order, got {etas.tolist()}"
        )
    _check_sorted(etas, "etas")
    return etas, nums


#: horizon/eta is rounded to the nearest integer when it is this close (relative) to it.
_HORIZON_RTOL = 1e-9


def _print_progress(p: Progress) -> None:
    width = len(str(p.total))
    status = "  FAILED" if p.failed else ""
    print(
        f"hbflow: [{p.done:>{width}}/{p.total}] {p.stage:<9} eta={p.eta:<10g} "
        f"{p.seconds:7.2f} s{status}",
        file=sys.stderr,
        flush=True,
    )


WORK_LIMITS: dict[str, int] = {"model_order": 8, "tree_pieces": 10**8, "memory_bytes": 2 * 2**30}
"""The limits above which `compare` refuses a study unless ``allow_large=True``.

``model_order``: the highest order of an ``hbfN``/``steadyN`` model (counter terms above the
shipped order 8 are derived on first use and cached: seconds for order 9, under a minute for
order 10, and their elementary differentials grow with the 486 and 1 205 trees);
``tree_pieces``: elementary differentials evaluated, pieces solved times the trees of the model
over all solves (the built-in study is 11 200); ``memory_bytes``: the estimated peak memory.
"""

#: A step count is run at the longest length of the sweep unless that wastes more steps than this.
BUCKET_MIN_SAVING = 2**20


def _padded_length(k: int, k_max: int) -> int:
    """The number of steps (or pieces) that `k` is compiled and run for in a sweep.

    By default every step size shares one compilation at the longest length `k_max` (extra
    steps are masked or cut): a compilation costs seconds, a masked step microseconds.  When
    that would waste more than `BUCKET_MIN_SAVING` steps, `k` is padded to the next power of
    two instead, so that widely spread step sizes are not all run for the longest length, with
    one compilation per power of two.
    """
    padded = 1 << (k - 1).bit_length()
    if padded >= k_max or k_max - padded < BUCKET_MIN_SAVING:
        return k_max
    return padded


def _tree_counts(n: int) -> list[int]:
    """The numbers of rooted trees with 1, ..., n nodes (OEIS A000081), by Cayley's recursion."""
    a = [0, 1]
    for m in range(1, n):
        total = sum(
            sum(d * a[d] for d in range(1, k + 1) if k % d == 0) * a[m - k + 1]
            for k in range(1, m + 1)
        )
        a.append(total // m)
    return a[1 : n + 1]


@dataclasses.dataclass(frozen=True)
class WorkEstimate:
    r"""What an order study will cost, before it runs (see `estimate_work`).

    - `pieces`: $\sum_\eta K(\eta)$, the steps of the iterates over all step sizes (each
      model solves as many pieces, twice with the solver check).
    - `tree_pieces`: pieces solved times the trees of the model, over all solves: the
      elementary differentials evaluated per stage of the solver.
    - `model_order`: the highest order of a heavy-ball or steady-state model (the order of the
      counter terms to derive), 1 if there is none.
    - `memory_bytes`: a rough peak of the arrays the study holds.
    """

    pieces: int
    tree_pieces: int
    model_order: int
    memory_bytes: int

    def exceeds(self) -> list[str]:
        """The limits of `WORK_LIMITS` this estimate is above, as sentences."""
        over = []
        if self.model_order > WORK_LIMITS["model_order"]:
            trees = sum(_tree_counts(self.model_order))
            over.append(
                f"model order {self.model_order} > {WORK_LIMITS['model_order']} (counter terms "
                f"over {trees:,} trees to derive if not cached)"
            )
        if self.tree_pieces > WORK_LIMITS["tree_pieces"]:
            over.append(
                f"{self.tree_pieces:.3g} tree-pieces > {WORK_LIMITS['tree_pieces']:.3g} "
                f"({self.pieces:,} pieces over all step sizes)"
            )
        if self.memory_bytes > WORK_LIMITS["memory_bytes"]:
            over.append(
                f"about {self.memory_bytes / 2**30:.3g} GiB of memory > "
                f"{WORK_LIMITS['memory_bytes'] / 2**30:g} GiB"
            )
        return over


def estimate_work(
    etas: Sequence[float] | np.ndarray,
    horizon: float,
    models: Sequence[str | AbstractContinuousModel],
    u0: PyTree,
    solver_check: bool | np.bool_ = True,
) -> WorkEstimate:
    r"""Estimate the cost of `compare` with these arguments, without running anything.

    **Arguments:** as for `compare` (`etas`, `horizon`, `models`, `u0`, `solver_check`).

    **Returns:** a `WorkEstimate`.

    **Raises:** `ValueError` for bad `etas`, `horizon` or `models`, as `compare`.
    """
    horizon = check_positive(horizon, "horizon")
    _, nums = _check_etas(etas, horizon)
    model_list = as_models(models)
    dim = int(ravel_pytree(as_float_tree(u0, "u0", float64=True))[0].size)
    orders = [int(getattr(m, "alpha", 1)) for m in model_list]
    trees = [sum(_tree_counts(a)) if hasattr(m, "alpha") else 1 for m, a in zip(model_list, orders)]
    pieces = sum(nums)
    solves = 2 if solver_check else 1
    k_max = max(nums)
    kept = dim * sum(k + 1 for k in nums)  # the iterates of every step size
    transient = 2 * dim * (k_max + 1)  # one padded run of the iterates and one solve
    tables = k_max * max(trees)  # the coefficient table of the longest run
    errors = len(model_list) * sum(k + 1 for k in nums)
    return WorkEstimate(
        pieces=pieces,
        tree_pieces=solves * pieces * sum(trees),
        model_order=max(orders),
        memory_bytes=8 * (kept + transient + tables + errors),
    )


def _check_work(estimate: WorkEstimate, allow_large: Any) -> None:
    if not isinstance(allow_large, (bool, np.bool_)):
        raise ValueError(f"allow_large must be True or False, got {allow_large!r}")
    over = estimate.exceeds()
    if over and not allow_large:
        raise ValueError(
            "this order study is too large to start without asking: "
            + "; ".join(over)
            + ". Use fewer or larger step sizes, a shorter horizon or lower-order models, or "
            "pass allow_large=True (--allow-large on the command line) to run it anyway"
        )


def compare(
    loss: Loss,
    u0: PyTree,
    *,
    method: str = "hb",
    beta: RealScalarLike = 0.5,
    nu: RealScalarLike | None = None,
    etas: Sequence[float],
    horizon: float,
    models: Sequence[str | AbstractContinuousModel] = ("hbf1", "hbf2", "hbf3", "rgf"),
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    solver: diffrax.AbstractSolver | None = None,
    max_steps: int = 4096,
    solver_check: bool = True,
    progress: bool | Callable[[Progress], Any] | None = None,
    throw: bool = True,
    allow_large: bool = False,
    after: float = 0.0,
    data: PyTree | None = None,
) -> OrderStudy:
    r"""Measure each model's distance to the iterates, and its order in the step size.

    **Arguments:**

    - `loss`: a JAX scalar loss of a pytree shaped like `u0`, finite at `u0`.
    - `u0`: the start $u_0$ (iterates from rest), finite; converted to float64.
    - `method`: ``"hb"``, ``"nag"``, ``"gd"``, ``"nesterov"`` or ``"qhm"``; `beta`:
      $0 \le \beta < 1$ (0 for ``"gd"``); `nu`: ν of ``"qhm"``, $0 \le \nu \le 1$ (only there).
    - `etas`: at least two distinct step sizes, sorted (a decreasing geometric sequence gives a
      clean fit).
    - `horizon`: $T$, an integer multiple of every step size; $T/\eta$ is rounded to the
      nearest integer when it is within $10^{-9}$ (relative) of it, and rejected otherwise.
    - `models`: model names (``hbfN``, ``steadyN``, ``shiftedN``, ``rgf``, ``ks2``, ``mgf``,
      ``gf``) or models.
    - `rtol`, `atol`, `solver`, `max_steps`: passed to `solve_model`.
    - `solver_check`: also solve with tolerances 100× tighter to estimate the solver error.
    - `progress`: ``True`` prints one line per finished run (iterates or model, per step size)
      to stderr; a callable is called with a `Progress` after each run; ``None``/``False``
      (default) is silent.
    - `throw`: if some runs fail, raise `OrderStudyError` after the sweep (default); with
      ``False``, return the partial study instead, its failures in `OrderStudy.failures`.
    - `allow_large`: run a study above the limits of `estimate_work` (`WORK_LIMITS`); by
      default such a study is refused before any work, with the estimate in the message.
    - `after`: $T_0$, $0 \le T_0 <$ `horizon` (default 0): take the errors over $t_k \ge T_0$
      only, outside the initial layer, where the shifted memoryless flows (``shiftedN``) have
      their order (docs/theory.md#initial-layer).
    - `data`: a pytree of arrays for a loss ``loss(params, data)``: the data are then traced
      arguments of the compiled programs, not constants, so one compilation serves every data
      set of the same shapes (a study per seed or per data set).  The same holds for a loss
      that is an equinox module holding its data as array fields.

    **Returns:** an `OrderStudy`.

    **Raises:** `ValueError` naming the parameter for bad input (see
    docs/troubleshooting.md), or for a study above `WORK_LIMITS` without `allow_large`;
    `OrderStudyError` (a `RuntimeError`, only if `throw`) after the sweep if some runs failed:
    iterates that diverge (with the first non-finite step and the stability limit) or a solve
    that fails (with the model, the piece and what to change); its `.study` holds the partial
    results.  `RuntimeError` if JAX is not in float64 mode.
    """
    if data is not None:
        loss = WithData(loss, as_float_tree(data, "data", float64=True))
    # Set-up: every argument is checked once, for the whole sweep.
    sweep = _set_up(
        loss,
        u0,
        method=method,
        beta=beta,
        nu=nu,
        etas=etas,
        horizon=horizon,
        models=models,
        rtol=rtol,
        atol=atol,
        solver=solver,
        max_steps=max_steps,
        solver_check=solver_check,
        progress=progress,
        allow_large=allow_large,
    )
    if not isinstance(throw, (bool, np.bool_)):
        raise ValueError(f"throw must be True or False, got {throw!r}")
    sweep = dataclasses.replace(sweep, after=check_after(after, sweep.horizon))
    # Main loop: the iterates at every step size, then each model against them.
    outcome = _loop(sweep)
    # Finish: the diagnostics, the study, and the failures.
    study = _finish(sweep, outcome)
    if throw and study.failures:
        raise OrderStudyError(study)
    return study


class WithData(eqx.Module):
    """``loss(params, data)`` as a loss of `params` alone, its data an array field.

    hbflow's compiled functions take the arrays of such a loss as arguments (see
    `hbflow._loss_cache`): losses that differ only in their data share one compilation.
    """

    loss: Callable = eqx.field(static=True)
    data: PyTree

    def __call__(self, params: PyTree) -> jax.Array:
        return self.loss(params, self.data)


@dataclasses.dataclass(frozen=True)
class _Sweep:
    """The validated arguments of `compare`."""

    loss: Loss
    u0: PyTree
    method: str
    beta: float
    nu: float | None
    etas: np.ndarray
    nums: tuple[int, ...]
    horizon: float
    models: tuple[AbstractContinuousModel, ...]
    rtol: float
    atol: float
    solver: diffrax.AbstractSolver | None  # None: the default, diffrax.Tsit5()
    max_steps: int
    solver_check: bool
    report: Callable[[Progress], Any] | None
    after: float = 0.0

    @property
    def nu_kw(self) -> dict[str, float]:
        """``{"nu": nu}`` for ``qhm``, else empty: models written for hb/nag/gd take no `nu`."""
        return {} if self.nu is None else {"nu": self.nu}

    @property
    def max_pieces(self) -> int:
        return max(self.nums)

    @property
    def total_runs(self) -> int:
        return len(self.etas) * (1 + len(self.models))


class _Outcome(NamedTuple):
    """What the main loop of `compare` computed."""

    flat_iterates: list[np.ndarray | None]
    models: dict[str, ModelErrors]
    failures: list[RunFailure]
    warnings: list[str]
    iterates_seconds: float


def _set_up(
    loss,
    u0,
    *,
    method,
    beta,
    nu,
    etas,
    horizon,
    models,
    rtol,
    atol,
    solver,
    max_steps,
    solver_check,
    progress,
    allow_large=False,
) -> _Sweep:
    require_float64("hbflow.compare")
    method = check_method(method)
    beta = check_beta(beta, method)
    nu = check_nu(nu, method)
    horizon = check_positive(horizon, "horizon")
    etas, nums = _check_etas(etas, horizon)
    model_list = as_models(models)
    rtol, atol, max_steps, solver, solver_check = check_solver_settings(
        rtol, atol, max_steps, solver, solver_check
    )
    report = check_progress(progress, _print_progress)
    u0 = as_float_tree(u0, "u0", float64=True)
    # Before anything is compiled: a huge request is refused at once.
    _check_work(estimate_work(etas, horizon, model_list, u0, solver_check), allow_large)
    check_loss(loss, u0, name="u0", float64=True)
    return _Sweep(
        loss=loss,
        u0=u0,
        method=method,
        beta=beta,
        nu=nu,
        etas=etas,
        nums=tuple(nums),
        horizon=horizon,
        models=tuple(model_list),
        rtol=rtol,
        atol=atol,
        solver=solver,
        max_steps=max_steps,
        solver_check=bool(solver_check),
        report=report,
    )


class _Ticker:
    """Counts the finished runs and reports each to the `progress` callable."""

    def __init__(self, sweep: _Sweep):
        self.done = 0
        self.total = sweep.total_runs
        self.report = sweep.report

    def __call__(self, stage: str, eta: float, seconds: float, failed: bool) -> None:
        self.done += 1
        if self.report is not None:
            self.report(Progress(self.done, self.total, stage, float(eta), seconds, failed))


def _loop(sweep: _Sweep) -> _Outcome:
    tick = _Ticker(sweep)
    start = time.perf_counter()
    flat_iterates, failures = _run_iterates(sweep, tick)
    iterates_seconds = time.perf_counter() - start
    results: dict[str, ModelErrors] = {}
    warnings: list[str] = []
    # The first-order B-series models share one compiled solve (see `shared_solves`).
    carriers = {m.name: carrier for carrier, group in shared_solves(sweep.models) for m in group}
    for model in sweep.models:
        errors, model_failures = _study_model(
            sweep, model, carriers[model.name], flat_iterates, tick
        )
        results[model.name] = errors
        failures.extend(model_failures)
        warnings.extend(_solver_warnings(sweep, errors))
        warnings.extend(_roundoff_warnings(sweep, errors, flat_iterates))
    return _Outcome(flat_iterates, results, failures, warnings, iterates_seconds)


def _flatten(us: PyTree) -> np.ndarray:
    """A pytree with a leading time axis as a ``(K+1, d)`` array of raveled parameters."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(us)]
    # As `ravel_pytree` ravels each time step (leaf by leaf, in one common dtype), on the host.
    dtype = np.result_type(*leaves)
    return np.concatenate([x.reshape(len(x), -1).astype(dtype) for x in leaves], axis=1)


def _run_iterates(sweep: _Sweep, tick: _Ticker) -> tuple[list[np.ndarray | None], list[RunFailure]]:
    """The flat iterates per step size (``None`` where they diverge), and the failures."""
    flat_iterates: list[np.ndarray | None] = []
    failures: list[RunFailure] = []
    for eta, k in zip(sweep.etas.tolist(), sweep.nums):
        t0 = time.perf_counter()
        # The same number of steps for every eta shares one compilation; extra steps are cut.
        us = iterates(
            sweep.loss,
            sweep.u0,
            method=sweep.method,
            beta=sweep.beta,
            eta=eta,
            num_steps=_padded_length(k, sweep.max_pieces),
            nu=sweep.nu,
            check_finite=False,
        )
        flat = _flatten(us)[: k + 1]
        step = first_non_finite(flat)
        if step is not None:
            message = divergence_message(
                sweep.loss, sweep.u0, sweep.method, sweep.beta, eta, step, us=us, nu=sweep.nu
            )
            failures.append(RunFailure(None, eta, message))
            flat_iterates.append(None)
        else:
            flat_iterates.append(flat)
        tick("iterates", eta, time.perf_counter() - t0, step is not None)
    return flat_iterates, failures


def _study_model(
    sweep: _Sweep,
    model: AbstractContinuousModel,
    carrier: AbstractContinuousModel,
    flat_iterates: list[np.ndarray | None],
    tick: _Ticker,
) -> tuple[ModelErrors, list[RunFailure]]:
    """One model against the iterates at every step size: errors, slope, solver errors, times.

    The model is solved as `carrier`'s field with its own table, zero-padded to the carrier's
    width (the carrier is the model itself unless it shares a solve, see `shared_solves`).
    """
    name = model.name
    # Row k of a coefficient table depends on k only: compute the longest once, slice it.
    if carrier is model:
        longest = model.coefficients(sweep.method, sweep.beta, sweep.max_pieces, **sweep.nu_kw)
    else:
        own = series_table(model, sweep.method, sweep.beta, sweep.max_pieces, nu=sweep.nu)
        width = carrier.coefficients(sweep.method, sweep.beta, 1, **sweep.nu_kw).shape[1]
        longest = np.zeros((sweep.max_pieces, width))
        longest[:, : own.shape[1]] = own
    timings: list[tuple[int, float, bool]] = []  # (pieces, wall seconds, base tolerances?)

    def run(i: int, rtol: float, atol: float) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            xs, _, _ = solve_flat(
                carrier,
                sweep.loss,
                sweep.u0,
                method=sweep.method,
                beta=sweep.beta,
                eta=float(sweep.etas[i]),
                num_pieces=sweep.nums[i],
                rtol=rtol,
                atol=atol,
                solver=sweep.solver,
                max_steps=sweep.max_steps,
                max_pieces=_padded_length(sweep.nums[i], sweep.max_pieces),
                table=longest[: sweep.nums[i]],
                name=name,
            )
        finally:
            timings.append((sweep.nums[i], time.perf_counter() - t0, rtol == sweep.rtol))
        return xs  # raveled as the iterates are (`_flatten`)

    n = len(sweep.etas)
    errors = [np.full(k + 1, math.nan) for k in sweep.nums]
    max_err, final_err, solver_err, layer = (np.full(n, math.nan) for _ in range(4))
    failures: list[RunFailure] = []
    for i, eta in enumerate(sweep.etas.tolist()):
        t0 = time.perf_counter()
        reference = flat_iterates[i]
        if reference is None:  # the iterates diverged: nothing to compare with
            tick(name, eta, 0.0, True)
            continue
        try:
            traj = run(i, sweep.rtol, sweep.atol)
            if sweep.solver_check:
                try:
                    tight = run(i, sweep.rtol / 100, sweep.atol / 100)
                except SolveError as err:
                    raise SolveError(
                        f"{err} [in the solve with 100x tighter tolerances that estimates "
                        "the solver error]",
                        model=err.model,
                        piece=err.piece,
                        eta=err.eta,
                        beta=err.beta,
                    ) from None
                window = _window(float(eta), sweep.after)
                solver_err[i] = np.linalg.norm(traj - tight, axis=1)[window:].max()
        except SolveError as err:
            failures.append(RunFailure(name, eta, str(err)))
            tick(name, eta, time.perf_counter() - t0, True)
            continue
        e = np.linalg.norm(traj - reference, axis=1)
        errors[i] = e
        max_err[i] = e[_window(float(eta), sweep.after) :].max()
        final_err[i] = e[-1]
        layer[i] = layer_width(e, float(eta), sweep.after, sweep.horizon)
        tick(name, eta, time.perf_counter() - t0, False)

    slope, stderr, local = fit_order(sweep.etas, max_err)
    spread = float(np.max(np.abs(local - slope))) if np.isfinite(slope) else math.nan
    compile_seconds = _compile_seconds(timings)
    errors_of_model = ModelErrors(
        name=name,
        expected_order=model.order(sweep.method, sweep.beta, **sweep.nu_kw),
        max_errors=max_err,
        final_errors=final_err,
        errors=tuple(errors),
        slope=slope,
        slope_stderr=stderr,
        local_slopes=local,
        slope_spread=spread,
        solver_errors=solver_err,
        solver_flags=solver_err * SOLVER_MARGIN > max_err,
        compile_seconds=compile_seconds,
        run_seconds=max(sum(t for _, t, _ in timings) - compile_seconds, 0.0),
        layer_steps=layer,
    )
    return errors_of_model, failures


def _compile_seconds(timings: list[tuple[int, float, bool]]) -> float:
    """The first call's extra time over a compiled call of the same size.

    A compiled call costs about the same per piece at given tolerances, so the first call's
    time is compared with its number of pieces times the mean time per piece of the later calls
    at the base tolerances (or, if there are none, of the tighter ones, which can only make the
    estimate smaller).  With no later call at all, the first call's whole time is returned, an
    upper bound.
    """
    if not timings:
        return 0.0
    (pieces, first, _), rest = timings[0], timings[1:]
    later = [(k, t) for k, t, base in rest if base] or [(k, t) for k, t, _ in rest]
    if not later:
        return first
    per_piece = sum(t for _, t in later) / sum(k for k, _ in later)
    return max(first - pieces * per_piece, 0.0)


def _solver_warnings(sweep: _Sweep, m: ModelErrors) -> list[str]:
    if not m.solver_flags.any():
        return []
    bad = ", ".join(f"{sweep.etas[i]:g}" for i in np.flatnonzero(m.solver_flags))
    return [
        f"{m.name}: the solver error is not {SOLVER_MARGIN:g}x below the model error at "
        f"eta = {bad}; tighten rtol/atol or the slope is not the model's"
    ]


#: Errors at most this many float64 epsilons times the size of the iterates are round-off.
ROUNDOFF_EPS = 100.0


def _roundoff_warnings(
    sweep: _Sweep, m: ModelErrors, flat_iterates: list[np.ndarray | None]
) -> list[str]:
    r"""A warning when some max errors of `m` are at round-off level.

    An error of at most ``ROUNDOFF_EPS`` float64 epsilons times $\max_k\|u_k\|$ (or exactly 0)
    measures round-off, not the model: the slope is then NaN (a zero error) or meaningless.
    """
    scales = [np.abs(f).max() if f is not None else math.nan for f in flat_iterates]
    level = ROUNDOFF_EPS * np.finfo(np.float64).eps * np.maximum(np.asarray(scales), 1.0)
    at_roundoff = np.isfinite(m.max_errors) & (m.max_errors <= level)
    if not at_roundoff.any():
        return []
    where = ", ".join(
        f"{sweep.etas[i]:g} ({m.max_errors[i]:.1e})" for i in np.flatnonzero(at_roundoff)
    )
    return [
        f"{m.name}: the errors are at round-off level at eta = {where}: the model matches the "
        "iterates to machine precision there, so the slope is nan or meaningless; use larger "
        "step sizes or a longer horizon, or compare a lower-order model"
    ]


class _Diagnostics(NamedTuple):
    lambdas: np.ndarray
    hessian_norm: float
    lambda_h: np.ndarray
    warnings: list[str]


def _diagnostics(sweep: _Sweep, flat_iterates: list[np.ndarray | None]) -> _Diagnostics:
    r"""$\lambda = \eta/(1-\beta)^2$, $\|\nabla^2 L\|$ along the iterates, and the warnings.

    The Hessian is estimated by power iteration at five points of the iterates of the smallest
    step size that did not diverge (at $u_0$ if all diverged).  Warns when
    $\lambda\|\nabla^2 L\|$ is not small, and when a step size is at or above the stability limit
    of the method on a quadratic with the largest positive dominant eigenvalue found.
    """
    etas, beta = sweep.etas, sweep.beta
    lambdas = etas / (1 - beta) ** 2
    ok = [i for i, flat in enumerate(flat_iterates) if flat is not None]
    if ok:
        path = flat_iterates[min(ok, key=lambda i: etas[i])]
        assert path is not None
        idx = np.unique(np.linspace(0, len(path) - 1, 5).round().astype(int))
        points = path[idx]
    else:
        points = np.asarray(ravel_pytree(sweep.u0)[0])[None]
    norms, dominant = hessian_estimates(sweep.loss, sweep.u0, points)
    hessian_norm = float(np.max(norms))
    lambda_h = lambdas * hessian_norm
    warnings = []
    # Only positive dominant eigenvalues bound L_max from below: no false alarms.
    curvature = float(np.max(dominant, initial=0.0))
    limit = stability_limit(sweep.method, beta, curvature, nu=sweep.nu)
    unstable = [float(e) for e in etas if e >= limit]
    if unstable:
        warnings.append(
            f"eta = {', '.join(f'{e:g}' for e in unstable)} is at or above the stability limit "
            f"{limit:.4g} of the {sweep.method} iterates on a quadratic with largest Hessian "
            f"eigenvalue {curvature:.4g} (the largest found along the path): the iterates "
            "oscillate with growing amplitude there; use smaller step sizes"
        )
    if np.any(lambda_h > LAMBDA_SMALL):
        warnings.append(_lambda_warning(etas, lambdas, lambda_h))
    return _Diagnostics(lambdas, hessian_norm, lambda_h, warnings)


def _lambda_warning(etas: np.ndarray, lambdas: np.ndarray, lambda_h: np.ndarray) -> str:
    r"""The warning for every step size with $\lambda\|\nabla^2 L\|$ above `LAMBDA_SMALL`."""
    above = np.flatnonzero(lambda_h > LAMBDA_SMALL)
    many = len(above) > 1

    def listed(values: np.ndarray, spec: str) -> str:
        return ", ".join(format(float(values[i]), spec) for i in above)

    return (
        f"lambda*|grad^2 L| = {listed(lambda_h, '.3g')} at eta = {listed(etas, 'g')} "
        f"{'are' if many else 'is'} not small (> {LAMBDA_SMALL:g}; lambda = eta/(1-beta)^2 = "
        f"{listed(lambdas, '.3g')}): the expansions in powers of lambda*|grad^2 L| converge "
        "slowly or not at all, so measured slopes may be pre-asymptotic"
        + (
            "; near 1 or above, no first-order flow can follow the oscillations of the "
            "momentum iterates"
            if np.max(lambda_h) > 0.5
            else ""
        )
    )


def _finish(sweep: _Sweep, outcome: _Outcome) -> OrderStudy:
    diagnostics = _diagnostics(sweep, outcome.flat_iterates)
    return OrderStudy(
        method=sweep.method,
        beta=sweep.beta,
        nu=sweep.nu,
        horizon=sweep.horizon,
        etas=sweep.etas,
        num_steps=sweep.nums,
        models=outcome.models,
        lambdas=diagnostics.lambdas,
        hessian_norm=diagnostics.hessian_norm,
        lambda_h=diagnostics.lambda_h,
        warnings=tuple(diagnostics.warnings + outcome.warnings),
        iterates_seconds=outcome.iterates_seconds,
        failures=tuple(outcome.failures),
        after=sweep.after,
    )


# --- the error window and the initial layer (docs/theory.md#initial-layer) ----------------------


def _window(eta: float, after: float) -> int:
    """The first $k$ with $t_k = k\\eta \\ge T_0$ (a grid time within rounding counts)."""
    return max(0, math.ceil(after / eta - 1e-9))


def _window_text(after: float, horizon: float) -> str:
    if after == 0:
        return f"max_k |u(t_k) - u_k| over all t_k in [0, {horizon:g}]"
    return f"max_k |u(t_k) - u_k| over t_k in [{after:g}, {horizon:g}] (after={after:g})"


def _final_window(after: float, horizon: float) -> float:
    # The window whose maximum sets the level of the layer: t >= after, and at least the second
    # half of the horizon, so that the layer is visible when after = 0.
    return max(after, horizon / 2)


def layer_width(errors: np.ndarray, eta: float, after: float, horizon: float) -> float:
    r"""The width of the initial layer in steps: the first $k$ after which $e_j \le 2M$ for every
    $j \ge k$, where $M$ is the maximum of $e_j$ over the final window $t_j \ge \max(T_0, T/2)$.

    **Arguments:**

    - `errors`: $e_0, \dots, e_K$; `eta`: the step size; `after`: $T_0$; `horizon`: $T$.

    **Returns:** $k$ as a float (0 when the error never rises above $2M$, as for a model whose
    error grows with $t$).
    """
    errors = np.asarray(errors, dtype=np.float64)
    level = 2 * errors[_window(eta, _final_window(after, horizon)) :].max()
    above = np.flatnonzero(errors > level)
    return float(above[-1] + 1) if above.size else 0.0


def _layer_lines(study: OrderStudy) -> list[str]:
    """Lines under the table: the initial layer of each model, in steps, per step size."""
    if not study.models:
        return []
    reference = ""
    if study.beta > 0:
        steps = [math.log(1 / e) / math.log(1 / study.beta) for e in study.etas]
        reference = "; log(1/eta)/log(1/beta) = " + ", ".join(f"{x:.1f}" for x in steps)
    lines = [
        "initial layer: first step k after which e_k stays within 2x its max over t_k >= "
        f"{_final_window(study.after, study.horizon):g} (per eta{reference}):"
    ]
    width = max(len(name) for name in study.models)
    for name, m in study.models.items():
        cells = [f"{x:.0f}" if np.isfinite(x) else "-" for x in m.layer_steps]
        lines.append(f"  {name.ljust(width)}  " + "  ".join(cells))
    return lines

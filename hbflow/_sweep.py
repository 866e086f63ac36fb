r"""Sweeps: a grid of order-study points, batched, sharded across devices, resumable on disk.

A *point* is one run of the iterates against the continuous models: a method, $\beta$, a step
size $\eta$ (given directly, or as $\lambda = \eta/(1-\beta)^2$ with $\beta$), a horizon $T$
and a data set.  The grid is the product of the values given for each axis; every point is
evaluated with every model, giving one row of the table per point and model.

How it is evaluated:

- **One compilation per model for the whole grid**, and one for all first-order B-series
  models together (``hbfN``, ``steadyN``, ``gf``, ``rgf``: the highest order's field with
  zero-padded tables).  Points (times models) are a batch axis (`jax.vmap`), not a
  Python loop.  Every point of the grid is scanned over the same number of pieces, the largest
  $K = T/\eta$ of the grid; a point with fewer pieces integrates over empty intervals beyond its
  own $K$ (they cost one masked lane), and pieces beyond the largest $K$ of a chunk are skipped
  by a `jax.lax.cond` on an unbatched count, so they cost nothing.  $\eta$, $\beta$, the
  coefficient tables (one per point, stacked), the counts, the tolerances and the data are
  traced.  The iterates are batched the same way (one compilation).
- **Chunks.**  The points, sorted by their number of pieces, are cut into chunks of
  `chunk_size`; each chunk is one batched call of the same compiled function (the last one is
  padded with copies of a real point).  A chunk is the unit of progress and of resuming.
- **Devices.**  The batch axis of a chunk is split across all JAX devices (`jax.shard_map` over a
  one-axis `Mesh`), padded to a multiple of the device count.  Each device solves its points on
  its own, so the numbers do not depend on the device count.  With several hosts, start every
  process with `jax.distributed.initialize()` first: `jax.devices()` then lists every host's
  devices, every process runs the same sweep, and process 0 writes the files.  On a CPU, XLA
  runs one program mostly on one core: start Python with
  ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` to give JAX one device per core
  (``hbflow sweep`` does this itself unless ``XLA_FLAGS`` already sets a count).
- **On disk** (`out=`): a manifest of the sweep's arguments, one file per finished chunk, and the
  table so far in ``results.csv`` and ``results.json``, each written to a temporary file and
  moved into place with `os.replace` (a reader never sees a half-written file).  Started again
  with the same arguments, a sweep loads the finished chunks and computes only the others; a
  folder holding another sweep is refused.

The errors are those of `hbflow.compare` (same definitions, same numbers to rounding):
$e_k = \|u(t_k) - u_k\|$ for $k \le K$, its maximum and final value, and the solver error, the
largest distance to the same solve with tolerances 100× tighter.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import _programs
from ._custom_types import PyTree
from ._differentials import gradient_field
from ._files import is_temporary, write_atomically
from ._integrate import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    check_solver_settings,
    solve_failure,
    solve_pieces,
)
from ._lazy import lazy_module
from ._methods import divergence_message
from ._models import (
    AbstractContinuousModel,
    as_models,
    check_method,
    series_table,
    shared_solves,
)
from ._validate import (
    as_float_tree,
    check_count,
    check_nu,
    check_progress,
    require_float64,
)

if TYPE_CHECKING:
    import diffrax
else:  # imported when first used: a run whose programs are all stored needs none of it
    diffrax = lazy_module("diffrax")

__all__ = ["sweep", "SweepResult", "SweepPoint", "SweepProgress", "COLUMNS", "load_sweep_results"]


#: The columns of the table, one row per point and model.
COLUMNS = (
    "point",
    "method",
    "beta",
    "eta",
    "lambda",
    "horizon",
    "num_steps",
    "data",
    "start",
    "model",
    "expected_order",
    "max_error",
    "final_error",
    "solver_error",
    "failure",
)

#: The solver error must be this many times below the model error for a slope to count.
SOLVER_MARGIN = 100.0
#: horizon/eta is rounded to the nearest integer when it is this close (relative) to it.
_HORIZON_RTOL = 1e-9
_FORMAT = "hbflow-sweep/2"
_AXIS = "points"


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One point of the grid: `index` in the grid's order, and its settings.

    `lam` is $\\lambda = \\eta/(1-\\beta)^2$; `num_steps` is $K = T/\\eta$; `data` the index of
    its data set (0 without data sets); `start` the index of its start in `starts` (0 with one
    start `u0`).
    """

    index: int
    method: str
    beta: float
    eta: float
    lam: float
    horizon: float
    num_steps: int
    data: int
    start: int = 0


@dataclasses.dataclass(frozen=True)
class SweepProgress:
    """Passed to a `progress` callable after each chunk.

    `done`/`total` count chunks; `points` is the number of points in this chunk; `resumed` is
    true for a chunk loaded from a previous run; `seconds` is its wall time.
    """

    done: int
    total: int
    chunk: int
    points: int
    seconds: float
    resumed: bool
    failed: int


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """The table of a sweep: one row (a dict with the keys `COLUMNS`) per point and model.

    - `rows`: in grid order, models in the order given; NaN errors for failed runs, whose
      `failure` holds the message ('' otherwise).
    - `points`: the grid; `models`: the model names.
    - `slopes`: per (method, β, horizon, data, model) with at least two step sizes, the
      least-squares slope of $\\log$ max error against $\\log\\eta$ (NaN if a run failed).
    - `computed_chunks`, `resumed_chunks`: which chunks were computed now and which were loaded
      from `out`; `compilations`: models (and the iterates) whose batched function was compiled
      (or loaded from the persistent cache) in this call; `devices`: the device count.
    - `out`: the output folder, or None; `seconds`: wall time.
    """

    rows: tuple[dict, ...]
    points: tuple[SweepPoint, ...]
    models: tuple[str, ...]
    slopes: tuple[dict, ...]
    computed_chunks: tuple[int, ...]
    resumed_chunks: tuple[int, ...]
    devices: int
    out: Path | None
    seconds: float

    def column(self, name: str) -> list:
        """The values of column `name` over all rows."""
        if name not in COLUMNS:
            raise ValueError(f"column must be one of {', '.join(COLUMNS)}; got {name!r}")
        return [r[name] for r in self.rows]

    def row(self, point: int, model: str) -> dict:
        """The row of point index `point` and model name `model`."""
        for r in self.rows:
            if r["point"] == point and r["model"] == model:
                return r
        raise ValueError(f"no row for point {point!r} and model {model!r}")

    @property
    def failures(self) -> tuple[dict, ...]:
        """The rows whose run failed."""
        return tuple(r for r in self.rows if r["failure"])


# --- the grid ------------------------------------------------------------------------------------


def _as_list(values, name: str, *, allow_none: bool = False) -> list | None:
    if values is None and allow_none:
        return None
    if isinstance(values, (str, bytes)) or values is None:
        raise ValueError(f"{name} must be a list of numbers, got {values!r}")
    if np.ndim(values) == 0:
        values = [values]
    try:
        out = [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers, got {values!r}") from None
    if not out:
        raise ValueError(f"the grid is empty: {name} holds no value")
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must be distinct, got {out}")
    return out


def _grid(methods, betas, etas, lambdas, horizons, n_data, n_starts=1) -> list[SweepPoint]:
    for b in betas:
        if not (math.isfinite(b) and 0.0 <= b < 1.0):
            raise ValueError(f"beta must lie in [0, 1), got {b!r}")
    steps = etas if etas is not None else lambdas
    name = "eta" if etas is not None else "lambda"
    for s in steps:
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {s!r}")
    for h in horizons:
        if not (math.isfinite(h) and h > 0):
            raise ValueError(f"horizon must be a finite number > 0, got {h!r}")
    points = []
    for method in methods:
        for beta in [0.0] if method == "gd" else betas:
            for s in steps:
                if etas is not None:
                    eta = s
                else:
                    eta = s * (1.0 - beta) ** 2
                lam = eta / (1.0 - beta) ** 2
                for h in horizons:
                    k = round(h / eta)
                    if k < 1 or abs(k * eta - h) > _HORIZON_RTOL * h:
                        hint = f"e.g. horizon={max(k, 1) * eta:g}" if k >= 1 else f">= {eta:g}"
                        raise ValueError(
                            f"horizon {h:g} must be a positive integer multiple of every eta; "
                            f"horizon/eta = {h / eta:.6g} for eta={eta:g} (method {method}, "
                            f"beta={beta:g}) ({hint})"
                        )
                    for d in range(n_data):
                        for s0 in range(n_starts):
                            points.append(
                                SweepPoint(len(points), method, beta, eta, lam, h, int(k), d, s0)
                            )
    return points


def _chunks(points: list[SweepPoint], chunk_size: int) -> list[list[SweepPoint]]:
    # Sorted by the number of pieces, a chunk holds points of similar length: little masking.
    order = sorted(points, key=lambda p: (-p.num_steps, p.index))
    return [order[i : i + chunk_size] for i in range(0, len(order), chunk_size)]


# --- the batched computations ---------------------------------------------------------------------


def _bind(loss: Callable, has_data: bool) -> Callable:
    return loss if has_data else (lambda params, data: loss(params))


def _select(data_all: PyTree, idx) -> PyTree:
    return jax.tree_util.tree_map(lambda a: a[idx], data_all)


@functools.lru_cache(maxsize=64)
def _batched_solver(model, loss, has_data, solver, max_steps, mesh):
    """The compiled batched solve of one model: one per (model, loss, solver, max_steps, mesh)."""
    f = _bind(loss, has_data)

    def one(u0_all, sidx, eta, beta, table, num, idx, data_all, chunk_pieces, rtol, atol):
        data, u0 = _select(data_all, idx), _select(u0_all, sidx)
        g, x0, _ = gradient_field(lambda p: f(p, data), u0)
        return solve_pieces(
            model, solver, max_steps, g, x0, eta, beta, table, num, chunk_pieces, rtol, atol
        )

    def sweep_solve(
        u0_all, sidxs, etas, betas, tables, nums, idxs, data_all, chunk_pieces, rtol, atol
    ):
        return jax.vmap(one, in_axes=(None, 0, 0, 0, 0, 0, 0, None, None, None, None))(
            u0_all, sidxs, etas, betas, tables, nums, idxs, data_all, chunk_pieces, rtol, atol
        )

    b, r = PartitionSpec(_AXIS), PartitionSpec()
    sharded = jax.shard_map(
        sweep_solve,
        mesh=mesh,
        in_specs=(r, b, b, b, b, b, b, r, r, r, r),
        out_specs=(b, b, b),
        check_vma=False,
    )
    return jax.jit(sharded)


def _step_coefficients(method: str, beta: float, nu: float | None) -> tuple[float, float, float]:
    r"""$(c_0, c_1, a)$ of `method`: $u_{k+1} = u_k + v_{k+1}$ with $v_{k+1} = \beta v_k -
    \eta[c_0\nabla L(y_k) - c_1\nabla L(y_{k-1})]$, $y_k = u_k + a v_k$ and no $c_1$ term at
    $k = 0$ (docs/theory.md#methods, #library-momentum)."""
    if method == "nesterov":
        return 1.0 + beta, beta, 0.0
    if method == "qhm":
        assert nu is not None  # checked by sweep: qhm points need nu
        return 1.0 - nu * beta, beta * (1.0 - nu), 0.0
    return 1.0, 0.0, beta if method == "nag" else 0.0


@functools.lru_cache(maxsize=64)
def _batched_iterates(loss, has_data, num_steps, mesh):
    """The compiled batched iterates $u_0, \\dots, u_K$ (flat), $K$ = `num_steps`."""
    f = _bind(loss, has_data)

    def one(u0_all, sidx, eta, beta, coeffs, idx, data_all):
        data, u0 = _select(data_all, idx), _select(u0_all, sidx)
        x0, unravel = ravel_pytree(u0)
        grad = jax.grad(lambda x: f(unravel(x), data))
        c0, c1, a = coeffs[0], coeffs[1], coeffs[2]

        # Every method of the family on the flat vector (`_step_coefficients`); for hb, nag and
        # gd (c0 = 1, c1 = 0) the same operations as hbflow.iterates, elementwise.
        def step(carry, _):
            u, v, g_prev = carry
            g = grad(u + a * v)
            v = beta * v - eta * (c0 * g - c1 * g_prev)
            u = u + v
            return (u, v, g), u

        zero = jnp.zeros_like(x0)
        _, us = jax.lax.scan(step, (x0, zero, zero), None, length=num_steps)
        return jnp.concatenate([x0[None], us])

    def sweep_iterates(u0_all, sidxs, etas, betas, coeffs, idxs, data_all):
        return jax.vmap(one, in_axes=(None, 0, 0, 0, 0, 0, None))(
            u0_all, sidxs, etas, betas, coeffs, idxs, data_all
        )

    b, r = PartitionSpec(_AXIS), PartitionSpec()
    sharded = jax.shard_map(
        sweep_iterates,
        mesh=mesh,
        in_specs=(r, b, b, b, b, b, r),
        out_specs=b,
        check_vma=False,
    )
    return jax.jit(sharded)


def _global(x: np.ndarray, sharding) -> jax.Array:
    """A global array from a host array every process holds in full (one or several hosts)."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _to_host(x: jax.Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


# --- the sweep ------------------------------------------------------------------------------------


def _fingerprint(tree: PyTree) -> str:
    h = hashlib.sha256()
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    h.update(str(treedef).encode())
    for leaf in leaves:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _label(loss: Callable) -> str:
    module = getattr(loss, "__module__", None) or "?"
    name = getattr(loss, "__qualname__", None) or type(loss).__name__
    return f"{module}:{name}"


def _print_progress(p: SweepProgress) -> None:
    width = len(str(p.total))
    what = "loaded" if p.resumed else f"{p.seconds:7.2f} s"
    failed = f"  {p.failed} FAILED" if p.failed else ""
    print(
        f"hbflow: [{p.done:>{width}}/{p.total}] chunk {p.chunk}: {p.points} points {what}{failed}",
        file=sys.stderr,
        flush=True,
    )


def sweep(
    loss: Callable,
    u0: PyTree | None = None,
    *,
    starts: Sequence[PyTree] | None = None,
    method: str | Sequence[str] = "hb",
    betas: Sequence[float],
    nu: float | None = None,
    etas: Sequence[float] | None = None,
    lambdas: Sequence[float] | None = None,
    horizon: float | Sequence[float],
    models: Sequence[str | AbstractContinuousModel] = ("hbf1", "hbf2", "hbf3", "rgf"),
    data: PyTree | None = None,
    datasets: Sequence[PyTree] | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    solver: diffrax.AbstractSolver | None = None,
    max_steps: int = 4096,
    solver_check: bool = True,
    out: str | os.PathLike | None = None,
    chunk_size: int = 64,
    label: str | None = None,
    progress: bool | Callable[[SweepProgress], Any] | None = None,
    compilation_cache: bool | None = None,
) -> SweepResult:
    r"""Evaluate every model at every point of a grid, batched, and return the tidy table.

    **Arguments:**

    - `loss`: a JAX scalar loss `loss(params)`, or `loss(params, data)` when `data` or
      `datasets` is given (the data are then traced arguments, not constants baked into the
      compiled program: one compilation serves every data set of the same shapes).
    - `u0`: the start (iterates from rest), a finite array or pytree; converted to float64.
    - `starts`: instead of `u0`, a list of starts of the same structure and shapes (a grid
      axis; the iterates and every model start from rest at each).
    - `method`: ``"hb"``, ``"nag"``, ``"gd"``, ``"nesterov"``, ``"qhm"``, or a list of them (a
      grid axis; ``"gd"`` takes $\beta = 0$ only).
    - `betas`: the momenta, each in $[0, 1)$.
    - `nu`: $\nu$ of ``"qhm"``, $0 \le \nu \le 1$: needed when the grid has ``"qhm"``, refused
      otherwise (one ν for the sweep).
    - `etas` or `lambdas` (exactly one): step sizes $\eta > 0$, or $\lambda > 0$ with
      $\eta = \lambda(1-\beta)^2$ for each β.
    - `horizon`: $T$, or a list of them; an integer multiple of every step size (to $10^{-9}$
      relative).
    - `models`: model names or models.
    - `data`: one data set (a pytree of arrays) for `loss(params, data)`; `datasets`: a list of
      data sets of the same structure and shapes (a grid axis, e.g. one per seed).
    - `rtol`, `atol`, `solver`, `max_steps`, `solver_check`: as in `hbflow.compare`.
    - `out`: a folder for the table (``results.csv``, ``results.json``), the manifest and the
      finished chunks; a sweep started again with the same arguments resumes there.
    - `chunk_size`: points per batched call (and per file on disk), an integer $\ge 1$.
    - `label`: names the loss in the manifest (default: its module and qualified name).
    - `progress`: ``True`` prints a line per chunk to stderr; a callable gets a `SweepProgress`.
    - `compilation_cache`: JAX's persistent compilation cache in hbflow's cache folder
      (``None``: on unless ``HBFLOW_COMPILATION_CACHE=0``).

    **Returns:** a `SweepResult`.  Failed runs (diverging iterates, a failed solve) do not stop
    the sweep: their rows carry the message in `failure`.

    **Raises:** `ValueError` naming the parameter for bad input: an empty grid, β outside
    $[0, 1)$, $\eta \le 0$, a horizon that is no multiple of some η, an output folder that
    cannot be written or holds another sweep.  `RuntimeError` if JAX is not in float64 mode.
    """
    start = time.perf_counter()
    require_float64("hbflow.sweep")
    from ._jax_cache import enable_compilation_cache

    enable_compilation_cache(compilation_cache)

    methods = [method] if isinstance(method, str) else list(method)
    if not methods:
        raise ValueError("the grid is empty: method names no method")
    methods = [check_method(m) for m in methods]
    if len(set(methods)) != len(methods):
        raise ValueError(f"method must be distinct, got {methods}")
    nu_value = check_nu(nu, "qhm" if "qhm" in methods else methods[0])
    betas_list = _as_list(betas, "betas")
    if (etas is None) == (lambdas is None):
        raise ValueError("give exactly one of etas and lambdas (lambda = eta/(1-beta)^2)")
    etas_list = _as_list(etas, "etas", allow_none=True)
    lambdas_list = _as_list(lambdas, "lambdas", allow_none=True)
    horizons = _as_list(horizon, "horizon")
    model_list = as_models(models, empty="the grid is empty: models names no model")
    rtol, atol, max_steps, solver, solver_check = check_solver_settings(
        rtol, atol, max_steps, solver, solver_check
    )
    chunk_size = check_count(chunk_size, "chunk_size")
    if not callable(loss):
        raise ValueError(f"loss must be a callable, got {loss!r}")
    report = check_progress(progress, _print_progress)
    start_list = _axis(u0, starts, ("u0", "starts"), "start")
    if start_list is None:
        raise ValueError("give u0 (one start) or starts (a list of starts)")
    u0_all = _stack_trees(start_list, "starts")
    has_data = data is not None or datasets is not None
    sets = _axis(data, datasets, ("data", "datasets"), "data set") or [()]
    data_all = _stack_trees(sets, "datasets")
    _check_loss(loss, start_list[0], sets[0], has_data)

    points = _grid(
        methods, betas_list, etas_list, lambdas_list, horizons, len(sets), len(start_list)
    )
    chunks = _chunks(points, chunk_size)
    names = tuple(m.name for m in model_list)
    manifest = {
        "format": _FORMAT,
        "loss": label if label is not None else _label(loss),
        "u0": _fingerprint(start_list[0]) if starts is None else None,
        "starts": None if starts is None else [_fingerprint(x) for x in start_list],
        "data": [_fingerprint(s) for s in sets] if has_data else None,
        "methods": methods,
        "betas": betas_list,
        "etas": etas_list,
        "lambdas": lambdas_list,
        "horizons": horizons,
        "models": list(names),
        "rtol": rtol,
        "atol": atol,
        "max_steps": max_steps,
        "solver": "Tsit5" if solver is None else type(solver).__name__,
        "solver_check": bool(solver_check),
        "chunk_size": chunk_size,
    }
    if nu_value is not None:  # only then: the manifests of other sweeps stay as they were
        manifest["nu"] = nu_value
    writer = jax.process_index() == 0
    store = _Store(out, manifest, writer) if out is not None else None

    devices = jax.devices()
    mesh = Mesh(np.array(devices), (_AXIS,))
    max_pieces = max(p.num_steps for p in points)
    tables = _TableCache(max_pieces, nu_value)

    # The loss's identity in the keys of stored programs (None: the store is off or cannot
    # describe the loss, see `_programs`).
    loss_key = _programs.LossKeys(_bind(loss, has_data))(start_list[0], sets[0])
    rows_by_point: dict[int, list[dict]] = {}
    computed, resumed = [], []
    for c, chunk in enumerate(chunks):
        t0 = time.perf_counter()
        loaded = store.load_chunk(c, chunk, names) if store is not None else None
        if loaded is not None:
            chunk_rows = loaded
            resumed.append(c)
        else:
            chunk_rows = _run_chunk(
                chunk,
                points_per_chunk=min(chunk_size, len(points)),
                max_pieces=max_pieces,
                mesh=mesh,
                loss=loss,
                loss_key=loss_key,
                has_data=has_data,
                starts=start_list,
                u0_all=u0_all,
                sets=sets,
                data_all=data_all,
                model_list=model_list,
                tables=tables,
                rtol=rtol,
                atol=atol,
                solver=solver,
                max_steps=max_steps,
                solver_check=bool(solver_check),
            )
            computed.append(c)
        for p in chunk:
            rows_by_point[p.index] = [r for r in chunk_rows if r["point"] == p.index]
        rows = [r for i in sorted(rows_by_point) for r in rows_by_point[i]]
        if store is not None and loaded is None:
            store.save_chunk(c, chunk, chunk_rows)
        if store is not None:
            store.save_results(rows, _slopes(rows), total=len(points))
        if report is not None:
            report(
                SweepProgress(
                    done=c + 1,
                    total=len(chunks),
                    chunk=c,
                    points=len(chunk),
                    seconds=time.perf_counter() - t0,
                    resumed=loaded is not None,
                    failed=len({r["point"] for r in chunk_rows if r["failure"]}),
                )
            )
    rows = [r for i in sorted(rows_by_point) for r in rows_by_point[i]]
    return SweepResult(
        rows=tuple(rows),
        points=tuple(points),
        models=names,
        slopes=tuple(_slopes(rows)),
        computed_chunks=tuple(computed),
        resumed_chunks=tuple(resumed),
        devices=len(devices),
        out=None if store is None else store.root,
        seconds=time.perf_counter() - start,
    )


def _axis(one, many, names: tuple[str, str], what: str) -> list[PyTree] | None:
    """A grid axis given as one pytree (`one`) or a list of them (`many`): the list, in float64
    and checked, or None if neither is given; `names` are the two parameters' names."""
    one_name, many_name = names
    if one is not None and many is not None:
        raise ValueError(f"give {one_name} (one {what}) or {many_name} (a list), not both")
    if many is None:
        return None if one is None else [as_float_tree(one, one_name, float64=True)]
    if isinstance(many, (str, bytes)) or not isinstance(many, Sequence):
        raise ValueError(f"{many_name} must be a list of pytrees, got {type(many).__name__}")
    if not many:
        raise ValueError(f"the grid is empty: {many_name} holds no {what}")
    return [as_float_tree(x, f"{many_name}[{i}]", float64=True) for i, x in enumerate(many)]


def _stack_trees(sets: list[PyTree], name: str) -> PyTree:
    """The pytrees of a grid axis (data sets, starts) stacked leaf by leaf: one batched input."""
    first = jax.tree_util.tree_structure(sets[0])
    shapes = [np.shape(x) for x in jax.tree_util.tree_leaves(sets[0])]
    for i, s in enumerate(sets[1:], 1):
        if (
            jax.tree_util.tree_structure(s) != first
            or [np.shape(x) for x in jax.tree_util.tree_leaves(s)] != shapes
        ):
            raise ValueError(
                f"{name}[{i}] must have the structure and shapes of {name}[0] "
                f"({first}, shapes {shapes})"
            )
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *sets)


def _check_loss(loss, u0, data, has_data) -> None:
    from ._validate import check_loss

    if has_data:
        check_loss(lambda p: loss(p, data), u0, name="u0")
    else:
        check_loss(loss, u0, name="u0")


class _TableCache:
    """Each model's coefficient table per (method, β), computed once for the longest run; `nu`
    is the sweep's ν, used by the ``"qhm"`` points."""

    def __init__(self, max_pieces: int, nu: float | None = None):
        self.max_pieces = max_pieces
        self.nu = nu
        self._tables: dict = {}

    def nu_of(self, method: str) -> float | None:
        return self.nu if method == "qhm" else None

    def get(self, model, method: str, beta: float, num_pieces: int | None = None) -> np.ndarray:
        num_pieces = self.max_pieces if num_pieces is None else num_pieces
        key = (model, method, beta, num_pieces)
        if key not in self._tables:
            table = series_table(model, method, beta, num_pieces, nu=self.nu_of(method))
            table = np.asarray(table, np.float64)
            if not np.all(np.isfinite(table)):
                raise ValueError(f"table of model {model.name} has non-finite entries")
            self._tables[key] = table
        return self._tables[key]


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


def _run_chunk(
    chunk,
    *,
    points_per_chunk,
    max_pieces,
    mesh,
    loss,
    loss_key,
    has_data,
    starts,
    u0_all,
    sets,
    data_all,
    model_list,
    tables,
    rtol,
    atol,
    solver,
    max_steps,
    solver_check,
) -> list[dict]:
    ndev = mesh.devices.size
    b = NamedSharding(mesh, PartitionSpec(_AXIS))
    r = NamedSharding(mesh, PartitionSpec())
    f64 = np.float64
    u0_g = jax.tree_util.tree_map(lambda x: _global(np.asarray(x), r), u0_all)
    data_g = jax.tree_util.tree_map(lambda x: _global(np.asarray(x), r), data_all)
    chunk_pieces = _global(np.array(max(p.num_steps for p in chunk), np.int64), r)

    def batched(points, lanes):  # per-lane settings, padded with copies of the first lane
        points = points + [points[0]] * (lanes - len(points))
        return points, (
            _global(np.array([p.eta for p in points], f64), b),
            _global(np.array([p.beta for p in points], f64), b),
            _global(np.array([p.num_steps for p in points], np.int64), b),
            _global(np.array([p.data for p in points], np.int64), b),
            _global(np.array([p.start for p in points], np.int64), b),
        )

    padded, (etas, betas, _, idxs, sidxs) = batched(list(chunk), _round_up(points_per_chunk, ndev))
    coeffs = np.array(
        [_step_coefficients(p.method, p.beta, tables.nu_of(p.method)) for p in padded]
    )
    run_iterates = _batched_iterates(loss, has_data, max_pieces, mesh)
    iterates = _to_host(
        _programs.run(
            run_iterates,
            (u0_g, sidxs, etas, betas, _global(coeffs, b), idxs, data_g),
            label="sweep_iterates",
            loss=loss_key,
            static=(has_data, max_pieces, mesh),
        )
    )

    diverged: dict[int, str] = {}
    for j, p in enumerate(chunk):
        bad = ~np.all(np.isfinite(iterates[j, : p.num_steps + 1]), axis=1)
        if bad.any():
            bound = (lambda q, d=sets[p.data]: loss(q, d)) if has_data else loss
            diverged[j] = divergence_message(
                bound,
                starts[p.start],
                p.method,
                p.beta,
                p.eta,
                int(np.flatnonzero(bad)[0]),
                nu=tables.nu_of(p.method),
            )

    rows: dict[tuple[int, str], dict] = {}
    for carrier, members in shared_solves(model_list):
        lanes = [(j, p, m) for j, p in enumerate(chunk) for m in members]
        size = _round_up(points_per_chunk * len(members), ndev)
        lane_points, (etas_l, betas_l, nums_l, idxs_l, sidxs_l) = batched(
            [p for _, p, _ in lanes], size
        )
        lane_models = [m for _, _, m in lanes] + [lanes[0][2]] * (size - len(lanes))
        width = tables.get(carrier, chunk[0].method, chunk[0].beta, 1).shape[1]
        stacked = np.zeros((size, max_pieces, width), dtype=f64)
        for i, (p, m) in enumerate(zip(lane_points, lane_models)):
            table = tables.get(m, p.method, p.beta)
            stacked[i, :, : table.shape[1]] = table
            stacked[i, p.num_steps :] = stacked[i, p.num_steps - 1]  # harmless beyond K
        tables_g = _global(stacked, b)
        run = _batched_solver(carrier, loss, has_data, solver, max_steps, mesh)

        def solve(
            rt, at, run=run, tables_g=tables_g, e=etas_l, be=betas_l, n=nums_l, i=idxs_l, s=sidxs_l
        ):
            xs, codes, _ = _programs.run(
                run,
                (
                    u0_g,
                    s,
                    e,
                    be,
                    tables_g,
                    n,
                    i,
                    data_g,
                    chunk_pieces,
                    _global(np.array(rt, f64), r),
                    _global(np.array(at, f64), r),
                ),
                label="sweep_solve",
                loss=loss_key,
                static=(carrier, has_data, solver, max_steps, mesh),
            )
            return _to_host(xs), _to_host(codes)

        xs, codes = solve(rtol, atol)
        tight = solve(rtol / 100, atol / 100) if solver_check else None
        for lane, (j, p, model) in enumerate(lanes):
            row = _row(p, model, tables.nu_of(p.method))
            rows[(p.index, model.name)] = row
            if j in diverged:
                row["failure"] = diverged[j]
                continue
            k = p.num_steps
            traj = xs[lane, : k + 1]
            message = _failure(model.name, p, traj, codes[lane, :k], max_steps, rtol, atol)
            if message is None and tight is not None:
                message = _failure(
                    model.name,
                    p,
                    tight[0][lane, : k + 1],
                    tight[1][lane, :k],
                    max_steps,
                    rtol,
                    atol,
                )
                if message is not None:
                    message += (
                        " [in the solve with 100x tighter tolerances that estimates the "
                        "solver error]"
                    )
            if message is not None:
                row["failure"] = message
                continue
            e = np.linalg.norm(traj - iterates[j, : k + 1], axis=1)
            row["max_error"] = float(e.max())
            row["final_error"] = float(e[-1])
            if tight is not None:
                row["solver_error"] = float(
                    np.linalg.norm(traj - tight[0][lane, : k + 1], axis=1).max()
                )
    order = sorted(chunk, key=lambda q: q.index)
    return [rows[(p.index, m.name)] for p in order for m in model_list]


@functools.lru_cache(maxsize=1024)
def _model_facts(model, method: str, beta: float, nu: float | None) -> tuple[str, int]:
    """A model's name and expected order at one point (asked once per model, method and β)."""
    return model.name, int(model.order(method, beta, **({} if nu is None else {"nu": nu})))


def _row(p: SweepPoint, model, nu: float | None) -> dict:
    """A row of the table, its errors still to be filled in; `nu` is ν for a ``"qhm"`` point."""
    name, expected = _model_facts(model, p.method, p.beta, nu)
    return {
        "point": p.index,
        "method": p.method,
        "beta": p.beta,
        "eta": p.eta,
        "lambda": p.lam,
        "horizon": p.horizon,
        "num_steps": p.num_steps,
        "data": p.data,
        "start": p.start,
        "model": name,
        "expected_order": expected,
        "max_error": math.nan,
        "final_error": math.nan,
        "solver_error": math.nan,
        "failure": "",
    }


def _failure(name, p: SweepPoint, xs, codes, max_steps, rtol, atol) -> str | None:
    """The message of a failed solve (as `hbflow.solve_model` words it), or None."""
    found = solve_failure(name, p.eta, p.beta, xs, codes, max_steps, rtol, atol)
    return None if found is None else found[0]


def _slopes(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["method"], r["beta"], r["horizon"], r["data"], r["start"], r["model"])
        groups.setdefault(key, []).append(r)
    out = []
    for (method, beta, horizon, data, start, model), rs in groups.items():
        if len(rs) < 2:
            continue
        x = np.log([r["eta"] for r in rs])
        y = np.log(np.asarray([r["max_error"] for r in rs], dtype=np.float64))
        slope = math.nan
        if np.all(np.isfinite(y)):
            xm = x - x.mean()
            slope = float(xm @ (y - y.mean()) / (xm @ xm))
        out.append(
            {
                "method": method,
                "beta": beta,
                "horizon": horizon,
                "data": data,
                "start": start,
                "model": model,
                "num_etas": len(rs),
                "slope": slope,
                "expected_order": rs[0]["expected_order"],
            }
        )
    return out


# --- on disk --------------------------------------------------------------------------------------


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _from_json_row(row: dict) -> dict:
    out = dict(row)
    for key in ("max_error", "final_error", "solver_error"):
        out[key] = math.nan if out.get(key) is None else float(out[key])
    return out


def _csv(rows: list[dict]) -> str:
    import csv

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def load_sweep_results(out: str | os.PathLike) -> dict:
    """Read a sweep's ``results.json`` from folder `out` (NaN for the errors of failed runs).

    **Returns:** the dict with keys ``manifest``, ``complete``, ``points_done``,
    ``points_total``, ``rows`` and ``slopes``.

    **Raises:** `ValueError` if the folder holds no readable sweep table.
    """
    path = Path(out) / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["rows"] = [_from_json_row(r) for r in data["rows"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"out: {path} is not a readable sweep table: {err}") from None
    return data


class _Store:
    """The output folder: manifest, finished chunks, and the table so far."""

    def __init__(self, out, manifest: dict, writer: bool):
        if not isinstance(out, (str, os.PathLike)):
            raise ValueError(f"out must be a folder path, got {out!r}")
        self.root = Path(out)
        self.writer = writer
        # Compare through JSON, the form in which a manifest is stored.
        self.manifest = json.loads(json.dumps(manifest))
        self.chunk_dir = self.root / "chunks"
        path = self.root / "manifest.json"
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"out: {self.root} exists and is not a folder")
        if path.exists():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ValueError(
                    f"out: {path} is not a readable sweep manifest ({err}); use another folder"
                ) from None
            if stored != self.manifest:
                diff = sorted(
                    k
                    for k in set(stored) | set(self.manifest)
                    if stored.get(k) != self.manifest.get(k)
                )
                raise ValueError(
                    f"out: {self.root} holds the results of a different sweep (its "
                    f"{', '.join(diff)} differ); use another folder, or the same arguments to "
                    "resume it"
                )
        elif self.root.is_dir() and any(not is_temporary(p) for p in self.root.iterdir()):
            raise ValueError(
                f"out: {self.root} is not empty and holds no sweep manifest; use an empty or "
                "new folder"
            )
        if not writer:
            return
        try:
            # The manifest first: a folder holding anything of a sweep also holds its manifest.
            self.root.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                write_atomically(path, json.dumps(self.manifest, indent=1))
            self.chunk_dir.mkdir(exist_ok=True)
        except OSError as err:
            raise ValueError(
                f"out: cannot write the sweep to {self.root}: {err.strerror or err}"
            ) from None

    def _chunk_path(self, c: int) -> Path:
        return self.chunk_dir / f"chunk-{c:06d}.json"

    def load_chunk(self, c: int, chunk: list[SweepPoint], names) -> list[dict] | None:
        path = self._chunk_path(c)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = [_from_json_row(r) for r in data["rows"]]
            want = sorted(p.index for p in chunk)
            if data["points"] != want or len(rows) != len(want) * len(names):
                return None
            if [(r["point"], r["model"]) for r in rows] != [(i, n) for i in want for n in names]:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable: compute it (again)
        return rows

    def save_chunk(self, c: int, chunk: list[SweepPoint], rows: list[dict]) -> None:
        if not self.writer:
            return
        data = {
            "chunk": c,
            "points": sorted(p.index for p in chunk),
            "rows": [{k: _jsonable(v) for k, v in r.items()} for r in rows],
        }
        write_atomically(self._chunk_path(c), json.dumps(data))

    def save_results(self, rows: list[dict], slopes: list[dict], *, total: int) -> None:
        if not self.writer:
            return
        done = len({r["point"] for r in rows})
        data = {
            "manifest": self.manifest,
            "complete": done == total,
            "points_done": done,
            "points_total": total,
            "rows": [{k: _jsonable(v) for k, v in r.items()} for r in rows],
            "slopes": [{k: _jsonable(v) for k, v in s.items()} for s in slopes],
        }
        write_atomically(self.root / "results.json", json.dumps(data, indent=1))
        write_atomically(self.root / "results.csv", _csv(rows))

r"""Piecewise integration of a continuous model with diffrax, in float64.

The model is solved piece by piece, one `diffrax.diffeqsolve` per piece $[k\eta, (k+1)\eta]$
inside a `jax.lax.scan`, and its position is returned at every grid time $t_k = k\eta$.  The
field may change at every grid time (the heavy-ball flow's does); the state is continuous.

Compilation: one compiled function per (loss, model structure, shape of $u_0$, solver,
`max_steps`, number of scanned pieces).  $\eta$, $\beta$, the coefficient table, the number of
pieces actually solved and the tolerances are traced.  A sweep over $\eta$ at a fixed horizon has
a different number of pieces $K = T/\eta$ for each $\eta$; pass ``max_pieces`` (the largest $K$
of the sweep) and every $\eta$ reuses one compiled function: pieces beyond $K$ are skipped by a
`jax.lax.cond`, so they cost nothing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _programs
from ._custom_types import PyTree, RealScalarLike
from ._differentials import gradient_field
from ._lazy import lazy_module
from ._loss_cache import PerLoss
from ._models import AbstractContinuousModel, model_from_name
from ._validate import (
    as_float_tree,
    check_beta,
    check_count,
    check_loss,
    check_method,
    check_nu,
    check_positive,
    require_float64,
)

if TYPE_CHECKING:
    import diffrax
else:  # imported when first used: a run whose programs are all stored needs none of it
    diffrax = lazy_module("diffrax")

__all__ = ["solve_model", "ModelSolution", "SolveError", "DEFAULT_RTOL", "DEFAULT_ATOL"]

DEFAULT_RTOL = 1e-12
DEFAULT_ATOL = 1e-12

# Codes for the per-piece solver outcome (kept as small ints so they can be scanned).
_OK, _MAX_STEPS, _DT_MIN, _OTHER = 0, 1, 2, 3
_MESSAGES = {
    _MAX_STEPS: "the maximum number of solver steps (max_steps={max_steps}) was reached",
    _DT_MIN: "the minimum step size was reached (the field may be stiff or blow up)",
    _OTHER: "the solver failed",
}


class SolveError(RuntimeError):
    r"""A continuous model could not be solved: which model, which piece, and what to change.

    Attributes: `model` (its name), `piece` (the first failing $k$, solving on
    $[k\eta, (k+1)\eta]$), `eta`, `beta`.
    """

    def __init__(self, message: str, *, model: str, piece: int, eta: float, beta: float):
        super().__init__(message)
        self.model = model
        self.piece = piece
        self.eta = eta
        self.beta = beta


class ModelSolution(NamedTuple):
    """The positions of a model at the grid times.

    - `us`: pytree like $u_0$ with a leading axis of length $K+1$: $u(t_0), \\dots, u(t_K)$.
    - `ts`: the grid times $k\\eta$, shape $(K+1,)$.
    - `num_steps`: accepted solver steps on each piece, shape $(K,)$.
    - `seconds`: wall time of the call (including any compilation).
    """

    us: PyTree
    ts: np.ndarray
    num_steps: np.ndarray
    seconds: float


def unravel_rows(u0: PyTree, xs: np.ndarray) -> PyTree:
    """The rows of `xs` (raveled like `u0` by `ravel_pytree`) as a pytree of `u0`'s structure,
    each leaf with a leading axis of ``len(xs)``: the inverse of ravelling, on the host."""
    leaves, treedef = jax.tree_util.tree_flatten(u0)
    parts, i = [], 0
    for leaf in leaves:
        shape, dtype = np.shape(leaf), jnp.result_type(leaf)
        size = int(np.prod(shape, dtype=np.int64))
        part = xs[:, i : i + size].reshape(len(xs), *shape).astype(dtype)
        parts.append(jax.device_put(part))  # a transfer: no program runs on the device
        i += size
    return jax.tree_util.tree_unflatten(treedef, parts)


def _result_code(result) -> Array:
    return jnp.where(
        result == diffrax.RESULTS.successful,
        _OK,
        jnp.where(
            result == diffrax.RESULTS.max_steps_reached,
            _MAX_STEPS,
            jnp.where(result == diffrax.RESULTS.dt_min_reached, _DT_MIN, _OTHER),
        ),
    )


def _solve_pieces_for(loss: Callable) -> Callable:
    """`_solve_pieces` with `loss` fixed, compiled for this loss alone.

    One `jax.jit` per loss (`loss(arrays, u)` is a weak stand-in taking the loss's own arrays
    first, see `_loss_cache`), held by `_SOLVE_PIECES` while the loss lives and released with
    it; losses that differ only in their arrays share it.  Neither a module-level
    `eqx.filter_jit` with the loss as a static argument nor one `eqx.filter_jit` per loss would
    do: both keep every loss ever solved, or the arrays its closure holds, in the compilation
    caches of JAX and equinox.  The model and solver are split into arrays (traced) and the rest
    (static, hashable), as `eqx.filter_jit` would.
    """

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def run(static_leaves, static_def, dynamic):
        static = jax.tree_util.tree_unflatten(static_def, static_leaves)
        loss_arrays, *args = eqx.combine(dynamic, static)
        return _solve_pieces(*args, loss=functools.partial(loss, loss_arrays))

    loss_keys = _programs.LossKeys(loss)

    def call(*args):
        dynamic, static = eqx.partition(args, eqx.is_array)
        # The static half holds the start's structure (a dict start gives a dict of Nones):
        # hashed as its tree structure and leaves, as `eqx.filter_jit` does.
        leaves, treedef = jax.tree_util.tree_flatten(static)
        loss_arrays, u0 = args[0], args[4]
        return _programs.run(
            run,
            (tuple(leaves), treedef, dynamic),
            label="solve_pieces",
            loss=loss_keys(loss_arrays, u0),
            num_static=2,
        )

    return call


def _diffeqsolve(*args, **kwargs):
    # diffeqsolve unwrapped from its `eqx.filter_jit`: it runs inside the jit of
    # `_solve_pieces_for` anyway, and a nested jit would file the closure of the field (the loss
    # and the arrays it closes over) in JAX's cache of traced functions, keyed by the
    # module-level diffeqsolve, which lives for ever.
    solve = getattr(diffrax.diffeqsolve, "__wrapped__", diffrax.diffeqsolve)
    return solve(*args, **kwargs)


def _solve_pieces(
    model: AbstractContinuousModel,
    solver: diffrax.AbstractSolver | None,
    max_steps: int,
    u0: PyTree,
    eta: Float[Array, ""],
    beta: Float[Array, ""],
    table: Float[Array, "kmax m"],
    num_pieces: Array,
    rtol: Float[Array, ""],
    atol: Float[Array, ""],
    *,
    loss: Callable,
):
    g, x0, _ = gradient_field(loss, u0)
    return solve_pieces(
        model, solver, max_steps, g, x0, eta, beta, table, num_pieces, num_pieces, rtol, atol
    )


def solve_pieces(
    model: AbstractContinuousModel,
    solver: diffrax.AbstractSolver | None,
    max_steps: int,
    g: Callable,
    x0: Array,
    eta: Array,
    beta: Array,
    table: Array,
    num_pieces: Array,
    scanned_pieces: Array,
    rtol: Array,
    atol: Array,
):
    r"""Solve `model` piece by piece, $[k\eta, (k+1)\eta]$ with row $k$ of `table`, from `x0`.

    The scan runs over every row of `table`.  Pieces $k \ge$ `scanned_pieces` are skipped by a
    `jax.lax.cond` and cost nothing, as long as `scanned_pieces` is not batched (under
    `jax.vmap` a batched predicate makes the cond run both branches).  Pieces
    `num_pieces` $\le k <$ `scanned_pieces` are solved over the empty interval
    $[k\eta, k\eta]$, which leaves the state unchanged: that is how points of a batch with
    different numbers of pieces share one scan.

    **Returns:** the model's positions at $t_0, \dots$ (the first is the model's own position at
    $t = 0$: a shifted start is not $u_0$), the solver's result code and its accepted steps on
    each piece.
    """
    if solver is None:  # the default, made here: only a trace needs diffrax
        solver = diffrax.Tsit5()
    # Batched from the start under vmap (adding an exact zero): vmap then batches the loops'
    # bodies once, instead of again after finding that their carries become batched.
    x0 = x0 + 0.0 * eta
    # Traced once: diffrax evaluates the field at every stage of the solver (and more).
    field = jax.jit(lambda t, y, row: model.vector_field(g, t, y, eta, beta, row))
    term = diffrax.ODETerm(field)
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    y0 = model.initial_state(g, x0, eta, beta, table[0])

    def piece(y, inputs):
        k, row = inputs

        def solve(y):
            t0 = k * eta
            sol = _diffeqsolve(
                term,
                solver,
                t0,
                jnp.where(k < num_pieces, (k + 1) * eta, t0),
                None,
                y,
                args=row,
                saveat=diffrax.SaveAt(t1=True),
                stepsize_controller=controller,
                max_steps=max_steps,
                throw=False,
            )
            y1 = jax.tree_util.tree_map(lambda a: a[-1], sol.ys)
            return y1, _result_code(sol.result), sol.stats["num_accepted_steps"]

        def skip(y):
            return y, jnp.array(_OK), jnp.array(0, dtype=jnp.int64)

        y1, code, steps = jax.lax.cond(k < scanned_pieces, solve, skip, y)
        return y1, (model.position(y1), code.astype(jnp.int32), steps.astype(jnp.int64))

    ks = jnp.arange(table.shape[0], dtype=eta.dtype)
    _, (xs, codes, steps) = jax.lax.scan(piece, y0, (ks, table))
    xs = jnp.concatenate([model.position(y0)[None], xs])
    return xs, codes, steps


_SOLVE_PIECES = PerLoss(_solve_pieces_for, compiled=True)


def solve_model(
    model: AbstractContinuousModel | str,
    loss: Callable[[PyTree], Array],
    u0: PyTree,
    *,
    method: str,
    beta: RealScalarLike,
    eta: float,
    num_pieces: int,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    solver: diffrax.AbstractSolver | None = None,
    max_steps: int = 4096,
    max_pieces: int | None = None,
    table: np.ndarray | None = None,
    nu: RealScalarLike | None = None,
) -> ModelSolution:
    r"""Solve `model` from $u(0) = u_0$ on $[0, K\eta]$ and return $u$ at every $t_k = k\eta$.

    **Arguments:**

    - `model`: the continuous model, or its name (``"hbf3"``, ``"rgf"``, …).
    - `loss`: a JAX scalar loss of a pytree shaped like `u0`.  Pass the same Python object on
      every call to reuse the compiled solver.
    - `u0`: the start (an array or a pytree of arrays), finite.
    - `method`, `beta`: the discrete method the model describes (``"hb"``, ``"nag"``, ``"gd"``,
      ``"nesterov"``, ``"qhm"``) and its momentum, $0 \le \beta < 1$ (0 for ``"gd"``).
    - `eta`: the step size $\eta > 0$.
    - `num_pieces`: $K \ge 1$, the number of pieces (steps of the iterates).
    - `rtol`, `atol`: tolerances of the adaptive step-size controller (default $10^{-12}$).
    - `solver`: a diffrax solver (default `diffrax.Tsit5()`).
    - `max_steps`: maximum number of solver steps on one piece, an integer $\ge 1$.
    - `max_pieces`: scan this many pieces (masking those beyond `num_pieces`) so that calls with
      different `num_pieces` share one compilation; default `num_pieces`.
    - `table`: the model's coefficient table, if already computed
      (`model.coefficients(method, beta, num_pieces)`).
    - `nu`: ν of ``"qhm"``, $0 \le \nu \le 1$ (only there).

    **Returns:** a `ModelSolution`.

    **Raises:** `ValueError` for out-of-range arguments, a bad `u0` or a bad loss (see
    `hbflow.compare`); `SolveError` (a `RuntimeError`) naming the model, the piece and what to
    change if the solver fails or the solution blows up; `RuntimeError` if JAX is not in float64
    mode.
    """
    require_float64("hbflow.solve_model")
    if isinstance(model, str):
        model = model_from_name(model)
    if not isinstance(model, AbstractContinuousModel):
        raise ValueError(
            f"model must be a continuous model (e.g. hbflow.HeavyBallFlow(3)) or a model name "
            f"(hbfN, steadyN, shiftedN, rgf, ks2, mgf, gf), got {model!r}"
        )
    method = check_method(method)
    beta = check_beta(beta, method)
    nu = check_nu(nu, method)
    eta = check_positive(eta, "eta")
    num_pieces = check_count(num_pieces, "num_pieces")
    max_pieces = num_pieces if max_pieces is None else check_count(max_pieces, "max_pieces")
    if max_pieces < num_pieces:
        raise ValueError(f"max_pieces ({max_pieces}) must be >= num_pieces ({num_pieces})")
    rtol, atol, max_steps, solver, _ = check_solver_settings(rtol, atol, max_steps, solver)
    u0 = as_float_tree(u0, "u0", float64=True)
    check_loss(loss, u0, name="u0", float64=True)
    if table is None:
        table = model.coefficients(method, beta, num_pieces, **({} if nu is None else {"nu": nu}))
    return _solve(
        model,
        loss,
        u0,
        method=method,
        beta=beta,
        eta=eta,
        num_pieces=num_pieces,
        rtol=rtol,
        atol=atol,
        solver=solver,
        max_steps=max_steps,
        max_pieces=max_pieces,
        table=table,
    )


def _solve(model, loss, u0, *, eta, num_pieces, **kwargs) -> ModelSolution:
    """`solve_model` with validated arguments: `solve_flat`'s rows as pytrees of `u0`'s form."""
    xs, steps, seconds = solve_flat(model, loss, u0, eta=eta, num_pieces=num_pieces, **kwargs)
    ts = np.arange(num_pieces + 1) * eta
    return ModelSolution(us=unravel_rows(u0, xs), ts=ts, num_steps=steps, seconds=seconds)


def solve_flat(
    model,
    loss,
    u0,
    *,
    method,
    beta,
    eta,
    num_pieces,
    rtol,
    atol,
    solver,
    max_steps,
    max_pieces,
    table,
    name: str | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The solve of `solve_model` with validated arguments (`hbflow.compare` checks them once
    per sweep): the states at the piece boundaries as rows raveled like `u0`
    (``(num_pieces + 1, d)``, read-only), the solver's steps per piece, and the wall seconds.

    `name` is the model named in errors, if `model` solves another's field (see
    `hbflow._models.shared_solves`).
    """
    name = model.name if name is None else name
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] != num_pieces:
        raise ValueError(
            f"table must have shape (num_pieces, m) = ({num_pieces}, m), got {table.shape}"
        )
    if not np.all(np.isfinite(table)):
        raise ValueError(f"table of model {name} has non-finite entries")
    padded = np.zeros((max_pieces, table.shape[1]), dtype=np.float64)
    padded[:num_pieces] = table
    if num_pieces < max_pieces:
        padded[num_pieces:] = table[-1]  # harmless values for the skipped pieces

    start = time.perf_counter()
    xs, codes, steps = _SOLVE_PIECES(loss)(
        model,
        solver,
        int(max_steps),
        u0,
        # Host arrays: converting on the device would run (and in a new process compile) a
        # small program per argument.
        np.asarray(eta, dtype=np.float64),
        np.asarray(beta, dtype=np.float64),
        padded,
        np.asarray(num_pieces, dtype=np.int64),
        np.asarray(rtol, dtype=np.float64),
        np.asarray(atol, dtype=np.float64),
    )
    xs = np.asarray(xs)[: num_pieces + 1]
    codes = np.asarray(codes)[:num_pieces]
    steps = np.asarray(steps)[:num_pieces]
    seconds = time.perf_counter() - start

    found = solve_failure(name, eta, beta, xs, codes, max_steps, rtol, atol)
    if found is not None:
        message, k = found
        raise SolveError(message, model=name, piece=k, eta=eta, beta=beta)
    return xs, steps, seconds


def solve_failure(
    name: str,
    eta: float,
    beta: float,
    xs: np.ndarray,
    codes: np.ndarray,
    max_steps: int,
    rtol: float,
    atol: float,
) -> tuple[str, int] | None:
    r"""What went wrong in a piecewise solve, and on which piece; None if nothing did.

    `xs` are the positions at $t_0, \dots, t_K$ (flat, one row each) and `codes` the solver's
    result code on each piece.  A piece that ends non-finite is reported before a later solver
    failure it causes.
    """
    failed = np.flatnonzero(codes != _OK)
    bad = ~np.all(np.isfinite(xs), axis=1)
    first_bad = int(np.flatnonzero(bad)[0]) - 1 if bad.any() else None
    if failed.size and (first_bad is None or int(failed[0]) <= first_bad):
        k = int(failed[0])
        reason = _MESSAGES[int(codes[k])].format(max_steps=max_steps)
        before, after = np.linalg.norm(xs[k]), np.linalg.norm(xs[k + 1])
        if not np.isfinite(after) or after > 1e3 * (1.0 + before):
            advice = (
                f"|u| grows from {before:.3g} to {after:.3g} on this piece, so the flow "
                "probably blows up in finite time: shorten the horizon, use a smaller eta, or "
                "a lower-order model"
            )
        else:
            advice = (
                f"raise max_steps (now {max_steps}), loosen rtol/atol (now {rtol:g}/{atol:g}), "
                f"or use a smaller eta (the field of {name} is large or stiff where "
                "eta*|grad^2 L|/(1-beta)^2 is not small)"
            )
        return (
            f"model {name}: the solve failed on piece k={k} (t in [{k * eta:.6g}, "
            f"{(k + 1) * eta:.6g}]) with eta={eta:g}, beta={beta:g}: {reason}. What to change: "
            f"{advice}",
            k,
        )
    if first_bad is not None:
        k = first_bad
        return (
            f"model {name}: the solution is not finite at t_{k + 1} = {(k + 1) * eta:.6g} (end "
            f"of piece k={k}); the flow blows up for eta={eta:g}, beta={beta:g}. What to "
            "change: a shorter horizon, a smaller eta, or a lower-order model (the counter "
            "terms of order N grow like (eta*|grad^2 L|/(1-beta)^2)^(N-1))",
            k,
        )
    return None


def check_solver_settings(
    rtol: Any, atol: Any, max_steps: Any, solver: Any, solver_check: Any = True
) -> tuple[float, float, int, diffrax.AbstractSolver | None, bool]:
    """The solver arguments shared by `solve_model`, `compare` and `sweep`, checked.

    The default solver stays ``None`` (`diffrax.Tsit5()` when the solve is traced).

    **Raises:** `ValueError` naming the parameter: `rtol`, `atol` not > 0, `max_steps` not an
    integer >= 1, `solver` not a diffrax solver, `solver_check` not a bool.
    """
    if not isinstance(solver_check, (bool, np.bool_)):
        raise ValueError(f"solver_check must be True or False, got {solver_check!r}")
    return (
        check_positive(rtol, "rtol"),
        check_positive(atol, "atol"),
        check_count(max_steps, "max_steps"),
        _check_solver(solver),
        bool(solver_check),
    )


def _check_solver(solver):
    if solver is None:  # diffrax.Tsit5(), made when the solve is traced (see `solve_pieces`)
        return None
    if not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be a diffrax solver (e.g. diffrax.Tsit5()), got {solver!r}")
    return solver

r"""The checks of hbflow, one home each: float64, starts, losses (and, re-exported, the scalars).

The scalar checks (method, β, ν, counts, numbers > 0, step sizes) live in `hbflow._checks`,
which needs no JAX; this module adds the checks of arrays, starts and losses and re-exports
those, so that the numerical modules import every check from one place.  Each check raises
`ValueError` with a message that names the parameter and what it must be, so that a researcher
who calls hbflow from a test suite or a long sweep learns what to change without reading a
traceback.  Checks on values are skipped when the value is traced (inside `jax.jit` or
`jax.vmap`); checks on shapes and dtypes always run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from . import _programs
from ._checks import (
    METHODS as METHODS,
    METHODS_WITH_NU as METHODS_WITH_NU,
    check_after as check_after,
    check_beta as check_beta,
    check_count as check_count,
    check_method as check_method,
    check_nu as check_nu,
    check_order as check_order,
    check_positive as check_positive,
    common_multiple as common_multiple,
    exact_step_size as exact_step_size,
    horizon_hint as horizon_hint,
    parse_beta as parse_beta,
    parse_nu as parse_nu,
)
from ._custom_types import PyTree
from ._loss_cache import PerLoss

__all__ = [
    "METHODS",
    "check_method",
    "check_beta",
    "parse_beta",
    "check_after",
    "METHODS_WITH_NU",
    "check_nu",
    "parse_nu",
    "check_count",
    "check_order",
    "check_positive",
    "exact_step_size",
    "common_multiple",
    "horizon_hint",
    "require_float64",
    "as_float_tree",
    "check_loss",
    "check_loss_structure",
    "check_loss_values",
    "check_loss_precision",
    "concrete",
    "is_traced",
]

# Errors JAX raises when a Python function inspects the values of its traced argument.
_NOT_TRACEABLE = (
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.ConcretizationTypeError,
)


def require_float64(what: str) -> None:
    """Refuse to run `what` unless JAX computes in float64.

    hbflow switches ``jax_enable_x64`` on when it is imported; this catches a later switch-off
    (``jax.config.update("jax_enable_x64", False)`` or a ``jax.enable_x64(False)`` block).

    **Raises:** `RuntimeError` with the explanation and the fix.
    """
    if jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.dtype("float64"):
        raise RuntimeError(
            f"{what} needs float64, but JAX is computing in float32 (jax_enable_x64 was "
            "switched off after hbflow was imported). In float32, round-off (about 1e-7) "
            "swamps the discretisation errors an order study measures, so errors and fitted "
            "slopes would be meaningless. Switch float64 back on with "
            "jax.config.update('jax_enable_x64', True)."
        )


def concrete(x: Any) -> np.ndarray | None:
    """`x` as a NumPy array, or ``None`` if it is a tracer (inside `jit`/`vmap`/`grad`)."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def is_traced(tree: PyTree) -> bool:
    """Whether any leaf of `tree` is a JAX tracer."""
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def _where(path) -> str:
    return jax.tree_util.keystr(path) if path else ""


def as_float_tree(tree: PyTree, name: str, *, float64: bool = False) -> PyTree:
    """`tree` with every leaf a real floating JAX array, checked to be finite where concrete.

    Integer and boolean leaves become float64; with `float64` every leaf does.  A (nested)
    Python list or tuple of numbers, such as ``[1.0, 0.7]``, is one array, as `numpy.asarray`
    reads it (JAX would see a pytree of scalars, which a loss written for an array cannot take);
    a list of arrays stays a pytree.

    **Raises:** `ValueError` naming `name` if the tree has no entries, a list of numbers is
    ragged, a leaf is not an array of real numbers (a string, ``None``, complex), or a concrete
    leaf holds NaN or Inf.
    """
    tree = _list_as_array(tree, name)
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    if not paths_leaves:
        raise ValueError(
            f"{name} must be an array (or a pytree of arrays) of real numbers, got {tree!r}"
        )
    leaves = []  # NumPy arrays stay on the host until every check is done
    for path, leaf in paths_leaves:
        where = f"{name}{_where(path)}"
        if isinstance(leaf, (str, bytes)) or leaf is None:
            raise ValueError(f"{where} must be an array of real numbers, got {_short(leaf)}")
        # A NumPy array is checked and converted on the host and then copied to the device:
        # `jnp.asarray` would compile a program for every new shape.
        on_host = isinstance(leaf, (np.ndarray, np.generic))
        try:
            arr = np.asarray(leaf) if on_host else jnp.asarray(leaf)
        except (TypeError, ValueError):
            raise ValueError(
                f"{where} must be an array of real numbers, got {_short(leaf)}"
            ) from None
        if jnp.issubdtype(arr.dtype, jnp.complexfloating):
            raise ValueError(f"{where} must be real, got dtype {arr.dtype}")
        if not jnp.issubdtype(arr.dtype, jnp.number) and arr.dtype != jnp.bool_:
            raise ValueError(f"{where} must be an array of real numbers, got dtype {arr.dtype}")
        if float64 or not jnp.issubdtype(arr.dtype, jnp.floating):
            arr = arr.astype(np.float64 if on_host else jnp.float64)
        leaves.append(arr)
    if sum(int(np.prod(x.shape)) for x in leaves) == 0:
        raise ValueError(f"{name} must have at least one entry, got only empty arrays")
    for (path, _), leaf in zip(paths_leaves, leaves):
        value = concrete(leaf)
        if value is not None and not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite; {name}{_where(path)} contains NaN or Inf")
    on_device = [jax.device_put(x) if isinstance(x, np.ndarray) else x for x in leaves]
    return jax.tree_util.tree_unflatten(treedef, on_device)


def _short(x: Any, width: int = 80) -> str:
    """``repr(x)``, cut to `width` characters (a module's docstring, a long list)."""
    text = repr(x)
    return text if len(text) <= width else text[: width - 4] + " ..."


def _numbers_only(obj: Any) -> bool:
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):  # not a NamedTuple
        return bool(obj) and all(_numbers_only(x) for x in obj)
    return isinstance(obj, (int, float, np.number)) and not isinstance(obj, bool)


def _list_as_array(tree: PyTree, name: str) -> PyTree:
    """A (nested) list or tuple of Python numbers as one float64 array; anything else as is."""
    if not (isinstance(tree, (list, tuple)) and _numbers_only(tree)):
        return tree
    try:
        return np.asarray(tree, dtype=np.float64)  # copied to the device by `as_float_tree`
    except ValueError:
        raise ValueError(
            f"{name} is a ragged list of numbers; pass a jnp.array (or a pytree of arrays), "
            f"got {tree!r}"
        ) from None


def _shapes(tree: PyTree) -> str:
    shapes = [tuple(jnp.shape(x)) for x in jax.tree_util.tree_leaves(tree)]
    return f"shape {shapes[0]}" if len(shapes) == 1 else f"leaf shapes {shapes}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def check_loss_structure(loss: Callable, example: PyTree, name: str) -> None:
    """Check, without evaluating it, that `loss` traces at `example` to a real scalar.

    `example` may hold arrays or `jax.ShapeDtypeStruct`s.

    **Raises:** `ValueError` if `loss` is not callable, cannot be traced by JAX, fails at the
    shape of `example` (a start of the wrong shape), or does not return a real float scalar.
    """
    if not callable(loss):
        raise ValueError(f"loss must be a callable returning a real scalar, got {loss!r}")
    try:
        out = jax.eval_shape(loss, example)
    except _NOT_TRACEABLE as err:
        raise ValueError(
            f"loss is not traceable by JAX ({_first_line(err)}). hbflow differentiates the "
            "loss with jax.grad, so it must be written with jax.numpy: no np.asarray or float() "
            "of its argument, and no Python if/while on its values (use jnp.where or "
            "jax.lax.cond)"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure at this shape is a bad loss or start
        raise ValueError(
            f"loss cannot be evaluated at {name} ({_shapes(example)}): {_first_line(err)}; "
            f"check that {name} has the shape the loss expects"
        ) from None
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        got = f"shape {out.shape}" if isinstance(out, jax.ShapeDtypeStruct) else repr(out)
        raise ValueError(
            f"loss must return a real scalar (shape ()), got {got}; "
            "reduce it (e.g. with jnp.sum or jnp.mean)"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"loss must return a real floating scalar, got dtype {out.dtype}")


def _checked_value_and_grad(loss: Callable) -> Callable:
    return checkify.checkify(jax.value_and_grad(loss), errors=checkify.index_checks)


def _jitted_checked_value_and_grad(loss: Callable, treedef: Any, avals: tuple) -> Callable:
    def checked(loss_arrays, u):
        return _checked_value_and_grad(functools.partial(loss, loss_arrays))(u)

    return _programs.Stored(
        jax.jit(checked), "checked_value_and_grad", loss, lambda a, u: (a, u), static=avals
    )


# Per loss, released with it (see _loss_cache); the key fixes the shapes the jit traces.
_CHECKED_VALUE_AND_GRAD = PerLoss(_jitted_checked_value_and_grad, compiled=True)


def check_loss(loss: Callable, u0: PyTree, *, name: str = "u0", float64: bool = False) -> None:
    """`check_loss_structure` at `u0`, then `check_loss_values` unless `u0` is traced.

    With `float64`, also refuse a loss that computes in a lower precision inside
    (`check_loss_precision`).

    **Raises:** `ValueError` naming `name`.
    """
    leaves, treedef = jax.tree_util.tree_flatten(u0)
    avals = tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)
    check_loss_structure_once(loss, treedef, avals, name)
    if float64:
        _PRECISION_CHECKED(loss, treedef, avals)
    if not is_traced(u0):
        check_loss_values(loss, u0, name=name)


def _check_loss_structure_once(loss: Callable, treedef: Any, avals: tuple, name: str) -> bool:
    example = jax.tree_util.tree_unflatten(
        treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals]
    )
    check_loss_structure(loss, example, name)
    return True


# A loss passes the structure check once per tree structure and shapes (failures raise and are
# not kept).
_STRUCTURE_CHECKED = PerLoss(_check_loss_structure_once)


def check_loss_structure_once(loss: Callable, treedef: Any, avals: tuple, name: str) -> None:
    """`check_loss_structure` at the leaf shapes and dtypes `avals`, once per loss and shapes."""
    _STRUCTURE_CHECKED(loss, treedef, avals, name)


def _low_precision_dtypes(jaxpr: Any) -> set[str]:
    """The floating dtypes narrower than float64 that the equations of `jaxpr` produce."""
    found: set[str] = set()
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            dtype = getattr(var.aval, "dtype", None)
            if (
                dtype is not None
                and jnp.issubdtype(dtype, jnp.floating)
                and jnp.finfo(dtype).bits < 64
            ):
                found.add(str(dtype))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr or a Jaxpr
                if hasattr(inner, "eqns"):
                    found |= _low_precision_dtypes(inner)
    return found


def check_loss_precision(loss: Callable, example: PyTree) -> None:
    """Refuse a loss that computes in float32 (or lower) somewhere inside.

    Such a loss has a gradient accurate to about $10^{-7}$ only: an adaptive solver at the
    default tolerances ($10^{-12}$) cannot meet them and runs out of steps, and errors below
    $10^{-7}$ are noise.

    **Raises:** `ValueError` naming the dtypes found.
    """
    jaxpr = jax.make_jaxpr(loss)(example)
    low = _low_precision_dtypes(jaxpr.jaxpr)
    if low:
        raise ValueError(
            f"the loss computes in {', '.join(sorted(low))} inside (e.g. an .astype(jnp.float32) "
            "or float32 data it closes over); its gradient is then accurate to about 1e-7 only, "
            "far above the solver tolerances and the errors an order study measures (a solve "
            "would end with 'max_steps was reached'). Compute the loss in float64: keep its "
            "data and arithmetic in float64"
        )


def _check_precision_once(loss: Callable, treedef: Any, avals: tuple) -> bool:
    example = jax.tree_util.tree_unflatten(
        treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals]
    )
    check_loss_precision(loss, example)
    return True


_PRECISION_CHECKED = PerLoss(_check_precision_once)


def check_loss_values(loss: Callable, u0: PyTree, *, name: str = "u0") -> None:
    r"""Check that $L(u_0)$ and $\nabla L(u_0)$ are finite and that `loss` stays inside `u0`.

    Evaluates $L$ and $\nabla L$ once at the concrete `u0`, with JAX's out-of-bounds index
    checks on: JAX clamps out-of-range indices silently, so a loss that reads ``u[2]`` of a
    start of length 2 would otherwise run.  Compiled once per (loss, tree structure, shapes)
    when `loss` is hashable.

    **Raises:** `ValueError` naming `name`.
    """
    leaves, treedef = jax.tree_util.tree_flatten(u0)
    avals = tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)
    fn = _CHECKED_VALUE_AND_GRAD(loss, treedef, avals)
    with jax.ensure_compile_time_eval():
        err, (value, grad) = fn(u0)
    message = err.get()
    if message:
        raise ValueError(
            f"loss indexes outside {name} ({_shapes(u0)}): {message.splitlines()[0].strip()} "
            f"Check that {name} has the shape the loss expects"
        )
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"loss must be finite at {name}, got {value}")
    flat = np.concatenate([np.ravel(np.asarray(g)) for g in jax.tree_util.tree_leaves(grad)])
    if not np.all(np.isfinite(flat)):
        raise ValueError(f"the gradient of the loss must be finite at {name}, got NaN or Inf")


def check_progress(progress: Any, printer: Callable) -> Callable | None:
    """The callable that `progress=` asks for: `printer` for True, none for False or None.

    **Raises:** `ValueError` if `progress` is neither a bool, None nor a callable.
    """
    if progress is None or progress is False:
        return None
    if progress is True:
        return printer
    if callable(progress):
        return progress
    raise ValueError(f"progress must be a bool or a callable, got {progress!r}")

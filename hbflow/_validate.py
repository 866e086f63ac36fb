r"""The checks of hbflow, one home each: method, β, counts, numbers > 0, float64, starts, losses.

Every entry point (the library functions, the command line, the derivation) validates its
arguments with these functions, so that a rule such as "an integer $\ge 1$" or
"$0 \le \beta < 1$, and $\beta = 0$ for gradient descent" is written once.  Each check raises
`ValueError` with a message that names the parameter and what it must be, so that a researcher
who calls hbflow from a test suite or a long sweep learns what to change without reading a
traceback.  Checks on values are skipped when the value is traced (inside `jax.jit` or
`jax.vmap`); checks on shapes and dtypes always run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

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

#: The methods of docs/theory.md#methods: heavy ball, Nesterov's method, gradient descent, and
#: the library rules of docs/theory.md#library-momentum: Nesterov momentum as optax and PyTorch
#: run it, and quasi-hyperbolic momentum.
METHODS = ("hb", "nag", "gd", "nesterov", "qhm")

#: The methods that take the parameter ν (``nu``).
METHODS_WITH_NU = ("qhm",)


def check_method(method: str) -> str:
    """`method` if it is one of `METHODS`, else a `ValueError` listing them."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _check_beta_range(value: float | Fraction, given: Any, method: str | None, name: str) -> None:
    """The one rule for β: $0 \\le \\beta < 1$, and $\\beta = 0$ for gradient descent."""
    if not (0 <= value < 1):
        raise ValueError(f"{name} must be in [0, 1), got {given!r}")
    if method == "gd" and value != 0:
        raise ValueError(
            f"method 'gd' is the case beta = 0, got {name}={given!r}; pass {name}=0 with 'gd', "
            "or use method 'hb', 'nag', 'nesterov' or 'qhm' for momentum"
        )


def check_beta(beta: Any, method: str | None = None, *, name: str = "beta") -> float:
    """β as a float in $[0, 1)$ (and 0 for ``gd``), else a `ValueError` naming `name`.

    Numbers and numeric strings are accepted (the command line passes its text); ``None`` and
    bools are refused.
    """
    if beta is None or isinstance(beta, (bool, np.bool_, bytes)) or _is_bool_array(beta):
        raise ValueError(f"{name} must be a number in [0, 1), got {beta!r}")
    try:
        value = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1), got {beta!r}") from None
    _check_beta_range(value, value, method, name)
    return value


def _is_bool_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, jax.Array)) and x.dtype == np.bool_


def parse_beta(beta: Any, method: str | None = None, *, name: str = "beta") -> Fraction | None:
    """Read β exactly: ``None`` stays symbolic; a float is read as the decimal it prints as.

    ``0.9`` means $9/10$ (its ``repr``), not the binary double nearest to it; pass a
    ``Fraction`` or a string such as ``"9/10"`` to be explicit.  The range rule is the one of
    `check_beta`.

    **Raises:** `ValueError` naming `name` unless $0 \\le \\beta < 1$ (and 0 for ``gd``).
    """
    if beta is None:
        return None
    try:
        if isinstance(beta, bool):
            raise TypeError
        if isinstance(beta, float):
            value = Fraction(repr(beta))
        elif isinstance(beta, str):
            value = Fraction(beta.strip())
        elif hasattr(beta, "p") and hasattr(beta, "q"):  # a sympy Rational
            value = Fraction(int(beta.p), int(beta.q))
        else:
            value = Fraction(beta)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{name} must be a number in [0, 1), got {beta!r}") from None
    _check_beta_range(value, beta, method, name)
    return value


def _nu_required(method: str | None, nu: Any, name: str) -> bool:
    """Whether `method` takes ν; a `ValueError` if ν is given to one without, or missing."""
    if method in METHODS_WITH_NU:
        if nu is None:
            raise ValueError(
                f"method {method!r} needs {name}, a number in [0, 1] (e.g. 0.7, the value "
                "recommended by Ma & Yarats)"
            )
        return True
    if nu is not None:
        raise ValueError(
            f"{name} is the parameter of quasi-hyperbolic momentum (method 'qhm'); method "
            f"{method!r} has no {name}, got {name}={nu!r}"
        )
    return False


def check_nu(nu: Any, method: str | None, *, name: str = "nu") -> float | None:
    """ν as a float in $[0, 1]$ for ``qhm``, ``None`` for the other methods.

    **Raises:** `ValueError` naming `name` if ν is outside $[0, 1]$, missing for ``qhm``, or
    given to a method without it.
    """
    if not _nu_required(method, nu, name):
        return None
    if isinstance(nu, (bool, bytes)):
        raise ValueError(f"{name} must be a number in [0, 1], got {nu!r}")
    try:
        value = float(nu)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {nu!r}") from None
    if not (0 <= value <= 1):
        raise ValueError(f"{name} must be in [0, 1], got {nu!r}")
    return value


def parse_nu(nu: Any, method: str | None, *, name: str = "nu") -> Fraction | None:
    """ν read exactly, like `parse_beta` reads β (``0.7`` is $7/10$); ``None`` unless ``qhm``.

    **Raises:** `ValueError` naming `name` as `check_nu`.
    """
    if not _nu_required(method, nu, name):
        return None
    try:
        if isinstance(nu, bool):
            raise TypeError
        if isinstance(nu, float):
            value = Fraction(repr(nu))
        elif isinstance(nu, str):
            value = Fraction(nu.strip())
        elif hasattr(nu, "p") and hasattr(nu, "q"):  # a sympy Rational
            value = Fraction(int(nu.p), int(nu.q))
        else:
            value = Fraction(nu)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{name} must be a number in [0, 1], got {nu!r}") from None
    if not (0 <= value <= 1):
        raise ValueError(f"{name} must be in [0, 1], got {nu!r}")
    return value


def check_positive(x, name: str) -> float:
    """`x` as a finite float > 0, else a `ValueError` naming `name` (strings and bools refused)."""
    if isinstance(x, (bool, str, bytes)):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    return value


def exact_step_size(eta: Any) -> Fraction:
    """A step size as the exact rational its decimal reads: ``0.03`` is $3/100$.

    A float is read through its ``repr`` (the shortest decimal that round-trips), not as the
    binary double nearest to it; a string (the command line's text) is read as written;
    fractions and integers are exact already.
    """
    if isinstance(eta, Fraction):
        return eta
    if isinstance(eta, str):
        return Fraction(eta.strip())
    return Fraction(repr(float(eta)))


def common_multiple(etas: Any) -> Fraction:
    r"""The least common multiple of the step sizes, as exact rationals.

    For fractions in lowest terms,
    $\operatorname{lcm}(p_1/q_1, p_2/q_2) = \operatorname{lcm}(p_1, p_2)/\gcd(q_1, q_2)$: the
    smallest $T > 0$ with every $T/\eta_i$ an integer.  Each step size is read by
    `exact_step_size`.
    """
    exact = [exact_step_size(e) for e in etas]
    numerator, denominator = exact[0].numerator, exact[0].denominator
    for f in exact[1:]:
        numerator = math.lcm(numerator, f.numerator)
        denominator = math.gcd(denominator, f.denominator)
    return Fraction(numerator, denominator)


def _decimal(x: Fraction) -> str:
    return f"{float(x):.12g}"


def horizon_hint(etas: Any, horizon: float) -> str:
    r"""What to do when `horizon` is not a multiple of every step size: a sentence.

    Offers the multiples of the least common multiple $L$ of the step sizes (`common_multiple`,
    read exactly from their decimals) on either side of `horizon`, when the nearer one is within a
    factor 2 of it.  Otherwise the step sizes have no common multiple near the horizon, and the
    hint offers step sizes that nest: the largest one and its halves
    $\eta_1, \eta_1/2, \eta_1/4, \dots$, whose common multiples are those of $\eta_1$, with the
    multiples of $\eta_1$ nearest to `horizon`.
    """
    exact = [exact_step_size(e) for e in etas]
    target = exact_step_size(horizon)
    lcm = common_multiple(exact)
    multiples = _nearest_multiples(lcm, target)
    if multiples[0] <= 2 * target:
        return (
            f"e.g. {_or(multiples)}: multiples of {_decimal(lcm)}, the least common multiple of "
            "the step sizes, each read exactly as its decimal"
        )
    largest = max(exact)
    nested = ",".join(_decimal(largest / 2**j) for j in range(max(len(exact), 2)))
    return (
        f"the step sizes have no common multiple near {_decimal(target)} (their least common "
        f"multiple, read exactly from their decimals, is {_decimal(lcm)}); use step sizes that "
        f"nest, each half the one before, e.g. etas={nested} with "
        f"{_or(_nearest_multiples(largest, target))}"
    )


def _nearest_multiples(step: Fraction, target: Fraction) -> list[Fraction]:
    """The positive multiples of `step` next to `target`: below and above it, or the smallest."""
    below = step * math.floor(target / step)
    return [below, below + step] if below > 0 else [step]


def _or(horizons: list[Fraction]) -> str:
    return " or ".join(f"horizon={_decimal(m)}" for m in horizons)


def check_after(after: Any, horizon: float, *, name: str = "after") -> float:
    """The start $T_0$ of the error window: a finite number with $0 \\le T_0 <$ `horizon`."""
    message = f"{name} must be a finite number with 0 <= {name} < horizon = {horizon:g}"
    if isinstance(after, (bool, str, bytes)):
        raise ValueError(f"{message}, got {after!r}")
    try:
        value = float(after)
    except (TypeError, ValueError):
        raise ValueError(f"{message}, got {after!r}") from None
    if not (math.isfinite(value) and 0 <= value < horizon):
        raise ValueError(f"{message}, got {after!r}")
    return value


def check_count(n: Any, name: str, *, minimum: int = 1) -> int:
    """`n` as an int $\\ge$ `minimum` (default 1), else a `ValueError` naming `name`.

    Python and NumPy integers are accepted; bools, floats (even integral ones) and strings are
    refused.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def check_order(order: Any) -> int:
    """A tree order or truncation order: an integer $\\ge 1$."""
    return check_count(order, "order")


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
    leaves = []
    for path, leaf in paths_leaves:
        where = f"{name}{_where(path)}"
        if isinstance(leaf, (str, bytes)) or leaf is None:
            raise ValueError(f"{where} must be an array of real numbers, got {_short(leaf)}")
        try:
            arr = jnp.asarray(leaf)
        except (TypeError, ValueError):
            raise ValueError(
                f"{where} must be an array of real numbers, got {_short(leaf)}"
            ) from None
        if jnp.issubdtype(arr.dtype, jnp.complexfloating):
            raise ValueError(f"{where} must be real, got dtype {arr.dtype}")
        if not jnp.issubdtype(arr.dtype, jnp.number) and arr.dtype != jnp.bool_:
            raise ValueError(f"{where} must be an array of real numbers, got dtype {arr.dtype}")
        if float64 or not jnp.issubdtype(arr.dtype, jnp.floating):
            arr = arr.astype(jnp.float64)
        leaves.append(arr)
    if sum(int(np.prod(x.shape)) for x in leaves) == 0:
        raise ValueError(f"{name} must have at least one entry, got only empty arrays")
    for (path, _), leaf in zip(paths_leaves, leaves):
        value = concrete(leaf)
        if value is not None and not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite; {name}{_where(path)} contains NaN or Inf")
    return jax.tree_util.tree_unflatten(treedef, leaves)


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
        return jnp.asarray(np.asarray(tree, dtype=np.float64))
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

    return jax.jit(checked)


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

r"""The checks of scalar arguments, one home each: method, β, ν, counts, numbers > 0, step sizes.

A rule such as "an integer $\ge 1$" or "$0 \le \beta < 1$, and $\beta = 0$ for gradient
descent" is written once, here, and every entry point (the library functions, the command line,
the derivation) calls it.  Each check raises `ValueError` with a message that names the parameter
and what it must be.  This module needs neither JAX nor sympy, so that the exact derivation and
``hbflow derive`` run without them; the checks of arrays and losses are in `hbflow._validate`,
which re-exports these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "METHODS",
    "METHODS_WITH_NU",
    "check_method",
    "check_beta",
    "parse_beta",
    "check_nu",
    "parse_nu",
    "check_positive",
    "exact_step_size",
    "common_multiple",
    "horizon_hint",
    "check_after",
    "check_count",
    "check_order",
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
    # NumPy and JAX arrays alike, without importing JAX (the exact side runs without it).
    dtype = getattr(x, "dtype", None)
    return dtype is not None and hasattr(x, "shape") and np.dtype(dtype) == np.bool_


def _read_exact(x: Any) -> Fraction:
    """A number as an exact rational: a float through its ``repr`` (``0.7`` is $7/10$), a string
    as written, a sympy ``Rational`` or anything ``Fraction`` takes as it is; bools refused
    (`TypeError`)."""
    if isinstance(x, bool):
        raise TypeError(f"a bool is not a number here, got {x!r}")
    if isinstance(x, float):
        return Fraction(repr(x))
    if isinstance(x, str):
        return Fraction(x.strip())
    if hasattr(x, "p") and hasattr(x, "q"):  # a sympy Rational
        return Fraction(int(x.p), int(x.q))
    return Fraction(x)


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
        value = _read_exact(beta)
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
        value = _read_exact(nu)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{name} must be a number in [0, 1], got {nu!r}") from None
    if not (0 <= value <= 1):
        raise ValueError(f"{name} must be in [0, 1], got {nu!r}")
    return value


def _finite_float(x: Any, message: str, accept: Callable[[float], bool]) -> float:
    """`x` as a finite float that `accept`s, else ``ValueError(f"{message}, got {x!r}")``;
    strings and bools are refused even where ``float`` would take them."""
    if isinstance(x, (bool, str, bytes)):
        raise ValueError(f"{message}, got {x!r}")
    try:
        value = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{message}, got {x!r}") from None
    if not (math.isfinite(value) and accept(value)):
        raise ValueError(f"{message}, got {x!r}")
    return value


def check_positive(x, name: str) -> float:
    """`x` as a finite float > 0, else a `ValueError` naming `name` (strings and bools refused)."""
    return _finite_float(x, f"{name} must be a finite number > 0", lambda v: v > 0)


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
    return _finite_float(after, message, lambda v: 0 <= v < horizon)


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

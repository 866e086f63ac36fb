"""Type aliases shared by the modules of hbflow (one definition each)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxtyping import Array, ArrayLike, Float

__all__ = ["PyTree", "Loss", "FlatVector", "RealScalarLike"]

#: Any pytree of arrays: a start, a state of a model, the iterates with a leading time axis.
#: Left as ``Any`` (not jaxtyping's ``PyTree``), so that the runtime type checker does not walk
#: every leaf of large parameter trees on every call.
PyTree = Any

#: A scalar loss of a pytree, written with jax.numpy so that JAX can trace and differentiate it.
#: Its value is checked at run time (`hbflow._validate.check_loss`) to be a real float scalar.
Loss = Callable[[PyTree], Any]

#: A flat float vector of the raveled parameters.
FlatVector = Float[Array, " d"]

#: A real scalar: a Python number or a 0-d array (possibly traced).
RealScalarLike = float | int | ArrayLike

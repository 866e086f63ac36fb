r"""Mini-batch iterates of the momentum family, many independent paths at once.

One recursion covers the methods (``hb``, ``nag``, ``gd``) and leaves room for the optimisers
written with a gradient buffer:

$$u_{k+1} = u_k + \beta(u_k - u_{k-1})
    - \eta\big[c_0\,\hat g_k(u_k + a(u_k - u_{k-1})) - c_1\,\hat g_{k-1}\big],$$

with $\hat g_k(w) = \frac1B\sum_{i\in I_k}\nabla\ell_i(w)$ the mini-batch gradient of step $k$,
$a = $ `lookahead` $\cdot\,\beta$, the $c_1$ term absent at $k = 0$ (the buffer starts at zero)
and $u_{-1} = u_0$ (from rest).  A method is its `MethodCoefficients` $(c_0, c_1,
\text{lookahead})$: HB $(1, 0, 0)$, NAG $(1, 0, 1)$, GD $(1, 0, 0)$ with $\beta = 0$.

Sampling: ``"with-replacement"`` (default; $I_k$ are $B$ i.i.d. uniform indices, the case the
theory covers) or ``"reshuffling"`` (each epoch a fresh permutation cut into $\lfloor n/B\rfloor$
batches; the last $n \bmod B$ samples of the permutation are dropped).

Randomness: path $p$ uses the key ``fold_in(key, p)`` and step $k$ of it
``fold_in(path_key, k)`` (with replacement) or epoch $e$ ``fold_in(path_key, e)``
(reshuffling), so a path does not depend on how many paths are run, how they are chunked, or on
how many devices share them.  With more than one device the path axis is sharded over a
`jax.sharding.Mesh` of all devices.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._custom_types import PyTree
from .._validate import check_beta, check_count, check_method, check_positive, require_float64
from ._problems import FiniteSumProblem, check_batch_size

__all__ = [
    "MethodCoefficients",
    "METHOD_COEFFICIENTS",
    "SAMPLINGS",
    "stochastic_iterates",
    "as_key",
    "path_keys",
    "shard_paths",
    "PathStatistics",
]


class MethodCoefficients(NamedTuple):
    r"""A method of the family: $c_0$, $c_1$ and the look-ahead $a/\beta$."""

    c0: float
    c1: float
    lookahead: float


#: The methods built in (docs/theory.md#methods): c1 = 0 for all three.
METHOD_COEFFICIENTS = {
    "hb": MethodCoefficients(1.0, 0.0, 0.0),
    "nag": MethodCoefficients(1.0, 0.0, 1.0),
    "gd": MethodCoefficients(1.0, 0.0, 0.0),
}

SAMPLINGS = ("with-replacement", "reshuffling")


def method_coefficients(method) -> MethodCoefficients:
    """`method` as `MethodCoefficients`: a name of `METHOD_COEFFICIENTS` or a triple."""
    if isinstance(method, str):
        return METHOD_COEFFICIENTS[check_method(method)]
    if isinstance(method, tuple) and len(method) == 3:
        try:
            coeffs = MethodCoefficients(*(float(c) for c in method))
        except (TypeError, ValueError):
            coeffs = None
        if coeffs is not None and all(math.isfinite(c) for c in coeffs):
            return coeffs
    raise ValueError(
        f"method must be one of {', '.join(METHOD_COEFFICIENTS)} or MethodCoefficients(c0, c1, "
        f"lookahead) of finite numbers, got {method!r}"
    )


def check_sampling(sampling) -> str:
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    return sampling


def as_key(key) -> jax.Array:
    """A `jax.random` key from a key or an integer seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    if isinstance(key, jax.Array) and (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape == (2,)
    ):
        return key
    raise ValueError(f"key must be a jax.random key or an integer seed, got {key!r}")


def path_keys(key: jax.Array, start: int, count: int) -> jax.Array:
    """The keys of paths ``start, ..., start + count - 1``."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(start, start + count))


def _mesh() -> Mesh | None:
    devices = jax.devices()
    if len(devices) == 1:
        return None
    return Mesh(np.array(devices), ("paths",))


def shard_paths(x: jax.Array) -> jax.Array:
    """`x` with its leading (path) axis sharded over all devices (unchanged on one device)."""
    mesh = _mesh()
    if mesh is None:
        return x
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec("paths")))


def chunk_size_for(num_paths: int, chunk_size: int | None) -> int:
    """A chunk size that is a multiple of the device count, at most about `chunk_size`."""
    ndev = jax.device_count()
    size = min(num_paths, chunk_size or num_paths)
    return max(ndev, math.ceil(size / ndev) * ndev)


def _indices(key, k, n: int, batch_size: int, sampling: str) -> jax.Array:
    if sampling == "with-replacement":
        return jax.random.randint(jax.random.fold_in(key, k), (batch_size,), 0, n)
    per_epoch = n // batch_size
    epoch, j = k // per_epoch, k % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    return jax.lax.dynamic_slice(perm, (j * batch_size,), (batch_size,))


def _path(
    problem: FiniteSumProblem,
    coeffs: MethodCoefficients,
    batch_size: int,
    sampling: str,
    num_steps: int,
    record: Callable[[jax.Array], PyTree],
    key: jax.Array,
    x0: jax.Array,
    beta,
    eta,
) -> PyTree:
    """`record(u_k)` for k = 0..num_steps along one path (stacked on a leading axis)."""
    c0, c1, lookahead = coeffs
    a = lookahead * beta

    def step(carry, k):
        u, u_prev, g_prev = carry
        idx = _indices(key, k, problem.n, batch_size, sampling)
        g = problem.batch_grad(u + a * (u - u_prev), idx)
        u_next = u + beta * (u - u_prev) - eta * (c0 * g - c1 * g_prev)
        return (u_next, u, g), record(u_next)

    carry = (x0, x0, jnp.zeros_like(x0))
    _, out = jax.lax.scan(step, carry, jnp.arange(num_steps))
    first = record(x0)
    return jax.tree_util.tree_map(lambda f, r: jnp.concatenate([f[None], r]), first, out)


@functools.lru_cache(maxsize=64)
def _compiled_paths(problem, coeffs, batch_size, sampling, num_steps, record):
    fn = functools.partial(_path, problem, coeffs, batch_size, sampling, num_steps, record)
    return jax.jit(jax.vmap(fn, in_axes=(0, None, None, None)))


def _identity(x):
    return x


def _checked(problem, method, beta, eta, num_steps, batch_size, sampling):
    if not isinstance(problem, FiniteSumProblem):
        raise ValueError(f"problem must be a FiniteSumProblem, got {problem!r}")
    coeffs = method_coefficients(method)
    if isinstance(method, str):
        beta = check_beta(beta, method)
    else:
        beta = check_beta(beta)
    eta = check_positive(eta, "eta")
    num_steps = check_count(num_steps, "num_steps")
    batch_size = check_batch_size(batch_size, problem.n)
    sampling = check_sampling(sampling)
    return coeffs, beta, eta, num_steps, batch_size, sampling


def stochastic_iterates(
    problem: FiniteSumProblem,
    *,
    method="hb",
    beta: float = 0.5,
    eta: float,
    num_steps: int,
    batch_size: int,
    key=0,
    num_paths: int = 1,
    sampling: str = "with-replacement",
    first_path: int = 0,
) -> PyTree:
    r"""Mini-batch iterates $u_0, \dots, u_K$ from rest, for `num_paths` independent paths.

    **Arguments:**

    - `problem`: a `FiniteSumProblem` (start: its `x0`).
    - `method`: ``"hb"``, ``"nag"``, ``"gd"`` or `MethodCoefficients` $(c_0, c_1,$ lookahead$)$.
    - `beta`: $0\le\beta<1$ (0 for ``"gd"``); `eta`: $\eta > 0$; `num_steps`: $K \ge 1$.
    - `batch_size`: $1 \le B \le n$.
    - `key`: a ``jax.random`` key or an integer seed.
    - `num_paths`: paths $p = $ `first_path`, …, `first_path` + `num_paths` − 1.
    - `sampling`: ``"with-replacement"`` (default) or ``"reshuffling"``.

    **Returns:** the parameters pytree with two leading axes ``(num_paths, K + 1)``.  Equal
    arguments give equal paths, bit for bit.

    **Raises:** `ValueError` naming the parameter for bad input.
    """
    require_float64("hbflow stochastic iterates")
    coeffs, beta, eta, num_steps, batch_size, sampling = _checked(
        problem, method, beta, eta, num_steps, batch_size, sampling
    )
    num_paths = check_count(num_paths, "num_paths")
    key = as_key(key)
    fn = _compiled_paths(problem, coeffs, batch_size, sampling, num_steps, _identity)
    keys = path_keys(key, int(first_path), num_paths)
    flat = fn(keys, problem.flat_x0, beta, eta)
    return jax.vmap(jax.vmap(problem.unravel))(flat)


class PathStatistics(NamedTuple):
    """Mean and variance over paths of recorded values (per step), and the path count."""

    mean: PyTree
    var: PyTree
    count: int


def _combine(acc, chunk_mean, chunk_m2, c):
    """Chan et al.'s pairwise update of (count, mean, M2)."""
    if acc is None:
        return (c, chunk_mean, chunk_m2)
    n, mean, m2 = acc
    total = n + c

    def upd_mean(m, cm):
        return m + (cm - m) * (c / total)

    def upd_m2(m2a, m2b, m, cm):
        return m2a + m2b + (cm - m) ** 2 * (n * c / total)

    new_mean = jax.tree_util.tree_map(upd_mean, mean, chunk_mean)
    new_m2 = jax.tree_util.tree_map(upd_m2, m2, chunk_m2, mean, chunk_mean)
    return (total, new_mean, new_m2)


@jax.jit
def _chunk_moments(values, weights):
    """Weighted mean and M2 over the leading axis (weights 0/1 mask the padding paths)."""
    c = jnp.sum(weights)

    def moments(v):
        w = weights.reshape((-1,) + (1,) * (v.ndim - 1))
        mean = jnp.sum(w * v, axis=0) / c
        m2 = jnp.sum(w * (v - mean) ** 2, axis=0)
        return mean, m2

    out = jax.tree_util.tree_map(moments, values)
    means = jax.tree_util.tree_map(lambda _, m: m[0], values, out)
    m2s = jax.tree_util.tree_map(lambda _, m: m[1], values, out)
    return means, m2s


def accumulate_paths(run_chunk: Callable[[jax.Array], PyTree], key, num_paths, chunk_size):
    """Mean and variance over `num_paths` paths of ``run_chunk(keys)`` (values per path on the
    leading axis), computed chunk by chunk with the path axis sharded over the devices."""
    key = as_key(key)
    chunk = chunk_size_for(num_paths, chunk_size)
    acc = None
    for start in range(0, num_paths, chunk):
        count = min(chunk, num_paths - start)
        keys = shard_paths(path_keys(key, start, chunk))
        values = run_chunk(keys)
        weights = shard_paths(jnp.asarray(np.arange(chunk) < count, dtype=jnp.float64))
        mean, m2 = _chunk_moments(values, weights)
        mean = jax.tree_util.tree_map(np.asarray, mean)
        m2 = jax.tree_util.tree_map(np.asarray, m2)
        acc = _combine(acc, mean, m2, count)
    assert acc is not None  # num_paths >= 2, so at least one chunk ran
    n, mean, m2 = acc
    var = jax.tree_util.tree_map(lambda m: m / (n - 1), m2)
    return PathStatistics(mean, var, n)


def iterate_statistics(
    problem: FiniteSumProblem,
    record: Callable[[jax.Array], PyTree],
    *,
    method="hb",
    beta: float,
    eta: float,
    num_steps: int,
    batch_size: int,
    key,
    num_paths: int,
    sampling: str = "with-replacement",
    chunk_size: int | None = 1024,
) -> PathStatistics:
    """Mean and variance over paths of ``record(u_k)`` (flat `u_k`), k = 0..num_steps."""
    coeffs, beta, eta, num_steps, batch_size, sampling = _checked(
        problem, method, beta, eta, num_steps, batch_size, sampling
    )
    fn = _compiled_paths(problem, coeffs, batch_size, sampling, num_steps, record)
    x0 = problem.flat_x0
    return accumulate_paths(lambda keys: fn(keys, x0, beta, eta), key, num_paths, chunk_size)

r"""The discrete methods: gradient descent, Polyak's heavy ball and Nesterov's method.

One recursion covers all three (``../shared/MATH.md`` §1):

$$u_{k+1} = u_k + \beta\,(u_k - u_{k-1}) - \eta\,\nabla L\big(u_k + a\,(u_k - u_{k-1})\big),$$

with $a = 0$ for the heavy ball (``"hb"``, also called momentum gradient descent), $a = \beta$ for
Nesterov's method (``"nag"``) and $\beta = 0$ for gradient descent (``"gd"``).  The continuous
time attached to iterate $k$ is $t_k = k\eta$.

References:

```bibtex
@article{polyak1964some,
  author  = {Polyak, Boris T.},
  title   = {Some methods of speeding up the convergence of iteration methods},
  journal = {USSR Computational Mathematics and Mathematical Physics},
  volume  = {4}, number = {5}, pages = {1--17}, year = {1964}
}
@article{nesterov1983method,
  author  = {Nesterov, Yurii},
  title   = {A method for solving the convex programming problem with convergence rate
             {$O(1/k^2)$}},
  journal = {Soviet Mathematics Doklady},
  volume  = {27}, number = {2}, pages = {372--376}, year = {1983}
}
```
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["iterates", "METHODS"]

PyTree = Any

# The gradient is taken at u_k + a (u_k - u_{k-1}); `a` as a multiple of beta.
_LOOKAHEAD = {"gd": 0.0, "hb": 0.0, "nag": 1.0}
METHODS: tuple[str, ...] = tuple(_LOOKAHEAD)


def _concrete(x: Any) -> np.ndarray | None:
    """`x` as a NumPy array, or ``None`` if it is a tracer (inside `jit`/`vmap`/`grad`)."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _check_scalar(x: Any, name: str) -> float | None:
    if jnp.ndim(x) != 0:
        raise ValueError(f"{name} must be a real scalar, got an array of shape {jnp.shape(x)}")
    if not (jnp.issubdtype(jnp.result_type(x), jnp.floating)
            or jnp.issubdtype(jnp.result_type(x), jnp.integer)):
        raise ValueError(f"{name} must be a real scalar, got dtype {jnp.result_type(x)}")
    value = _concrete(x)
    return None if value is None else float(value)


def _check_finite_tree(tree: PyTree, name: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        value = _concrete(leaf)
        if value is not None and not np.all(np.isfinite(value)):
            where = jax.tree_util.keystr(path) or "(array)"
            raise ValueError(f"{name} must be finite; {name}{where} contains NaN or Inf")


def _as_float_leaf(leaf: Any) -> jax.Array:
    leaf = jnp.asarray(leaf)
    if not jnp.issubdtype(leaf.dtype, jnp.inexact):
        leaf = leaf.astype(jnp.float64)
    if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
        raise ValueError(f"u0 must be real, got a leaf of dtype {leaf.dtype}")
    return leaf


@functools.lru_cache(maxsize=256)
def _compiled_cached(loss: Callable, method: str, treedef: Any, avals: tuple) -> Callable:
    return _compiled(loss, method, treedef, avals)


def _compiled(loss: Callable, method: str, treedef: Any, avals: tuple) -> Callable:
    """The jitted iteration for one (loss, method, tree structure, leaf shapes and dtypes).

    Checks once, with `jax.eval_shape`, that `loss` is real-scalar-valued; the cache makes the
    check (and the trace) happen once, so sweeps over `eta` and `beta` never retrace.
    """
    example = jax.tree_util.tree_unflatten(
        treedef, [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals]
    )
    out = jax.eval_shape(loss, example)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        got = f"shape {out.shape}" if isinstance(out, jax.ShapeDtypeStruct) else repr(out)
        raise ValueError(
            f"loss must return a real scalar (shape ()), got {got}; "
            "reduce it (e.g. with jnp.sum or jnp.mean)"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"loss must return a real floating scalar, got dtype {out.dtype}")

    grad = jax.grad(loss)
    lookahead = _LOOKAHEAD[method]
    gd = method == "gd"

    def run(u0: PyTree, v0: PyTree, beta: jax.Array, eta: jax.Array, num_steps: int):
        if gd:
            beta = jnp.zeros_like(beta)
        a = lookahead * beta

        def step(carry, _):
            u, v = carry
            y = jax.tree_util.tree_map(lambda ui, vi: ui + (a * vi).astype(ui.dtype), u, v)
            g = grad(y)
            v_new = jax.tree_util.tree_map(
                lambda vi, gi: (beta * vi - eta * gi).astype(vi.dtype), v, g
            )
            u_new = jax.tree_util.tree_map(operator.add, u, v_new)
            return (u_new, v_new), u_new

        _, us = jax.lax.scan(step, (u0, v0), None, length=num_steps)
        return jax.tree_util.tree_map(lambda x0, xs: jnp.concatenate([x0[None], xs]), u0, us)

    return jax.jit(run, static_argnames="num_steps")


def iterates(
    loss: Callable[[PyTree], jax.Array],
    u0: PyTree,
    *,
    method: str,
    beta: float | jax.Array,
    eta: float | jax.Array,
    num_steps: int,
    v0: PyTree | None = None,
) -> PyTree:
    r"""The iterates $u_0, u_1, \dots, u_K$ of gradient descent, heavy ball or Nesterov.

    Runs, for $k = 0, \dots, K-1$,

    $$u_{k+1} = u_k + \beta\,(u_k - u_{k-1}) - \eta\,\nabla L\big(u_k + a\,(u_k - u_{k-1})\big)$$

    with $a = 0$ for ``"hb"`` (Polyak 1964), $a = \beta$ for ``"nag"`` (Nesterov 1983), and
    $\beta = 0$ for ``"gd"``.  The start is from rest, $u_{-1} = u_0$, unless an initial velocity
    $v_0 = u_0 - u_{-1}$ is given.  Iterate $k$ belongs to the time $t_k = k\eta$.

    The iteration is a `jax.lax.scan`, compiled once per `(loss, method, tree structure, leaf
    shapes and dtypes, num_steps)`: `eta`, `beta`, `u0` and `v0` are traced, so a sweep over the
    step size does not recompile.  Values are only checked when they are concrete; inside
    `jax.vmap` or `jax.jit` (e.g. a vmap over `eta`) the range checks are skipped.

    **Arguments:**

    - `loss`: a JAX function of the parameters returning a real scalar $L(u)$.  The same Python
      object should be passed on every call to reuse the compiled iteration.
    - `u0`: the initial parameters, an array or any pytree of arrays (integer leaves are cast to
      float64).
    - `method`: ``"gd"``, ``"hb"`` or ``"nag"``.
    - `beta`: the momentum parameter, $0 \le \beta < 1$.  For ``"gd"`` it must be 0.
    - `eta`: the step size (learning rate), finite and $> 0$.
    - `num_steps`: the number $K \ge 1$ of steps.
    - `v0`: the initial velocity $u_0 - u_{-1}$, a pytree like `u0`; ``None`` (default) means
      from rest.  With ``"gd"`` ($\beta = 0$) it has no effect.

    **Returns:**

    A pytree like `u0` whose leaves have a leading axis of length `num_steps + 1`, holding
    $u_0, \dots, u_K$.

    **Raises:**

    `ValueError` if `method` is unknown, `beta` is outside $[0, 1)$ (or nonzero for ``"gd"``),
    `eta` is not finite and positive, `num_steps` is not a positive int, `u0` or `v0` has NaN or
    Inf, `v0` does not match `u0`, or `loss` is not real-scalar-valued.
    """
    if not isinstance(method, str) or method not in _LOOKAHEAD:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")

    beta_value = _check_scalar(beta, "beta")
    if beta_value is not None:
        if not (0.0 <= beta_value < 1.0):
            raise ValueError(f"beta must lie in [0, 1), got {beta_value!r}")
        if method == "gd" and beta_value != 0.0:
            raise ValueError(
                f"method 'gd' is the case beta = 0, got beta={beta_value!r}; "
                "use method='hb' or method='nag' for momentum"
            )
    eta_value = _check_scalar(eta, "eta")
    if eta_value is not None and not (math.isfinite(eta_value) and eta_value > 0.0):
        raise ValueError(f"eta must be finite and > 0, got {eta_value!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)):
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    num_steps = int(num_steps)
    if num_steps < 1:
        raise ValueError(f"num_steps must be a positive int (>= 1), got {num_steps}")

    leaves, treedef = jax.tree_util.tree_flatten(u0)
    if not leaves:
        raise ValueError("u0 must contain at least one array")
    leaves = [_as_float_leaf(x) for x in leaves]
    u0 = jax.tree_util.tree_unflatten(treedef, leaves)
    _check_finite_tree(u0, "u0")

    if v0 is None:
        v0 = jax.tree_util.tree_map(jnp.zeros_like, u0)
    else:
        v_leaves, v_treedef = jax.tree_util.tree_flatten(v0)
        if v_treedef != treedef:
            raise ValueError(f"v0 must have the tree structure of u0 ({treedef}), got {v_treedef}")
        v_leaves = [jnp.asarray(v, dtype=u.dtype) for v, u in zip(v_leaves, leaves)]
        for v, u in zip(v_leaves, leaves):
            if v.shape != u.shape:
                raise ValueError(
                    f"v0 must have the shapes of u0: got {v.shape}, expected {u.shape}"
                )
        v0 = jax.tree_util.tree_unflatten(treedef, v_leaves)
        _check_finite_tree(v0, "v0")

    dtype = jnp.result_type(*leaves)
    avals = tuple((x.shape, x.dtype) for x in leaves)
    try:
        hash(loss)
    except TypeError:  # an unhashable callable cannot be cached: compile for this call only
        run = _compiled(loss, method, treedef, avals)
    else:
        run = _compiled_cached(loss, method, treedef, avals)
    return run(
        u0,
        v0,
        jnp.asarray(beta, dtype=dtype),
        jnp.asarray(eta, dtype=dtype),
        num_steps=num_steps,
    )

r"""Elementary differentials of $g = -\nabla L$, evaluated with forward-mode autodiff.

Convention (docs/theory.md#trees-and-b-series): $F(\bullet)(u) = g(u)$ and
$F([\tau_1,\dots,\tau_m])(u) = g^{(m)}(u)[F(\tau_1)(u),\dots,F(\tau_m)(u)]$.

$g^{(m)}(u)[v_1,\dots,v_m]$ is the $m$-fold nested directional derivative of $g$, computed with
nested `jax.jvp`.  Within one evaluation every distinct subtree is evaluated once: values are
memoised by tree (trees are interned), and the derivatives that share a prefix of directions
share one `jax.linearize`, so for example $F([\bullet])$, $F([[\bullet]])$, $F([[[\bullet]]])$ are
repeated applications of the same linear map $g'(u)$.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from ._custom_types import PyTree
from ._trees import Tree

__all__ = ["gradient_field", "elementary_differentials", "combine_differentials"]


def gradient_field(loss: Callable[[PyTree], Array], u0: PyTree) -> tuple[Callable, Array, Callable]:
    r"""The field $g = -\nabla L$ on the flattened parameters.

    **Arguments:**

    - `loss`: scalar loss $L$ of a pytree shaped like `u0`.
    - `u0`: a point, fixing the pytree structure.

    **Returns:** `(g, x0, unravel)` with `g(x) = -ravel(∇L(unravel(x)))` on flat float64 vectors,
    `x0 = ravel(u0)` and `unravel` the inverse of the flattening.
    """
    x0, unravel = ravel_pytree(u0)

    def g(x: Float[Array, " d"]) -> Float[Array, " d"]:
        grad = jax.grad(lambda y: loss(unravel(y)))(x)
        return -grad

    return g, x0, unravel


def _nested_derivative(g: Callable, directions: Sequence[Array]) -> Callable:
    r"""$x \mapsto g^{(m)}(x)[v_1, \dots, v_m]$ by nested `jax.jvp`."""
    fn = g
    for v in directions:
        fn = _jvp_in_direction(fn, v)
    return fn


def _jvp_in_direction(fn: Callable, v: Array) -> Callable:
    def deriv(x):
        return jax.jvp(fn, (x,), (v,))[1]

    return deriv


def elementary_differentials(
    g: Callable[[Array], Array], trees: Sequence[Tree], u: Float[Array, " d"]
) -> dict[Tree, Float[Array, " d"]]:
    r"""$F(\tau)(u)$ for every $\tau$ in `trees` (and, as a by-product, their subtrees).

    **Arguments:**

    - `g`: the vector field $g$ on flat vectors (e.g. from `gradient_field`).
    - `trees`: the trees wanted.
    - `u`: the point, a flat vector.

    **Returns:** a dict from tree to $F(\tau)(u)$.

    Each tree $[\tau_1,\dots,\tau_m]$ (children in canonical order) is evaluated as the linear map
    $v \mapsto g^{(m)}(u)[F(\tau_1),\dots,F(\tau_{m-1}), v]$ applied to $F(\tau_m)$; that linear
    map is built once per distinct prefix $(\tau_1,\dots,\tau_{m-1})$ with `jax.linearize`, whose
    primal output is $F([\tau_1,\dots,\tau_{m-1}])$ itself.
    """
    values: dict[Tree, Array] = {}
    # prefix (tuple of child trees) -> linear map v ↦ g^{(|p|+1)}(u)[F(p_1), ..., F(p_k), v]
    linear_maps: dict[tuple[Tree, ...], Callable] = {}

    def linear_map(prefix: tuple[Tree, ...]) -> Callable:
        if prefix not in linear_maps:
            directions = [value(c) for c in prefix]
            primal, lin = jax.linearize(_nested_derivative(g, directions), u)
            # The primal of the prefix's function is F([prefix]); keep it.
            values.setdefault(Tree.join(prefix), primal)
            linear_maps[prefix] = lin
        return linear_maps[prefix]

    def value(tree: Tree) -> Array:
        if tree not in values:
            if not tree.children:
                linear_map(())  # g(u) is the primal of the linearisation of g
            else:
                *prefix, last = tree.children
                values[tree] = linear_map(tuple(prefix))(value(last))
        return values[tree]

    for tree in trees:
        value(tree)
    return values


def combine_differentials(
    g: Callable[[Array], Array],
    trees: Sequence[Tree],
    weights: Float[Array, " n"],
    u: Float[Array, " d"],
) -> Float[Array, " d"]:
    r"""$\sum_i w_i F(\tau_i)(u)$: a B-series vector field with weights already including
    $\eta^{|\tau|-1}/\sigma(\tau)$."""
    values = elementary_differentials(g, trees, u)
    out = jnp.zeros_like(u)
    for i, tree in enumerate(trees):
        out = out + weights[i] * values[tree]
    return out

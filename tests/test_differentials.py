"""Elementary differentials by nested jvp against dense derivative tensors and hand formulas."""

import string

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hbflow import Tree, trees_up_to
from hbflow._differentials import combine_differentials, elementary_differentials, gradient_field


def loss3(u):
    # Non-polynomial, with all derivatives coupled, so no tree's differential vanishes.
    return jnp.sum(jnp.log(jnp.cosh(u))) + 0.3 * u[0] * u[1] * u[2] + 0.1 * jnp.sin(u @ u)


U = jnp.array([0.3, -0.7, 0.5])


def dense_reference(loss, u, trees):
    """F(τ) from explicit derivative tensors g^{(m)} contracted with einsum (no jvp sharing)."""
    g = lambda x: -jax.grad(loss)(x)  # noqa: E731
    tensors = [g]
    for _ in range(max(len(t.children) for t in trees)):
        tensors.append(jax.jacfwd(tensors[-1]))
    out = {}

    def value(tree):
        if tree not in out:
            m = len(tree.children)
            tensor = tensors[m](u)
            letters = string.ascii_lowercase[1 : m + 1]
            spec = "a" + letters + "," + ",".join(letters) + "->a" if m else "a->a"
            out[tree] = jnp.einsum(spec, tensor, *[value(c) for c in tree.children])
        return out[tree]

    for t in trees:
        value(t)
    return out


def test_matches_dense_tensors_up_to_order_5():
    trees = trees_up_to(5)
    g, x, _ = gradient_field(loss3, U)
    got = elementary_differentials(g, trees, x)
    want = dense_reference(loss3, U, trees)
    for t in trees:
        np.testing.assert_allclose(got[t], want[t], rtol=1e-12, atol=1e-13, err_msg=repr(t))
        assert float(jnp.linalg.norm(want[t])) > 1e-3  # every tree is exercised


def test_hand_formulas_one_dimensional():
    # L = x^4/4: g = -x^3, g' = -3x^2, g'' = -6x (docs/theory.md#trees-and-b-series, loss language).
    x = 0.8
    g, x0, _ = gradient_field(lambda u: u[0] ** 4 / 4, jnp.array([x]))
    F = elementary_differentials(g, trees_up_to(3), x0)
    s = Tree.from_level_sequence
    np.testing.assert_allclose(F[s([1])], [-(x**3)], rtol=1e-14)
    np.testing.assert_allclose(F[s([1, 2])], [3 * x**5], rtol=1e-14)  # g'g = H∇L
    np.testing.assert_allclose(F[s([1, 2, 2])], [-6 * x**7], rtol=1e-14)  # g''(g,g)
    np.testing.assert_allclose(F[s([1, 2, 3])], [-9 * x**7], rtol=1e-14)  # g'g'g = -HH∇L


def test_quadratic_tall_trees_and_vanishing_branches():
    Q = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    u = jnp.array([1.0, -0.4])
    g, x, _ = gradient_field(lambda v: 0.5 * v @ Q @ v, u)
    F = elementary_differentials(g, trees_up_to(5), x)
    for t in trees_up_to(5):
        tall = t.level_sequence == tuple(range(1, t.order + 1))
        want = np.linalg.matrix_power(-np.asarray(Q), t.order) @ np.asarray(u) if tall else 0
        np.testing.assert_allclose(F[t], want * np.ones(2), rtol=1e-13, atol=1e-14)


def test_pytree_parameters_agree_with_flat():
    def loss_tree(p):
        return loss3(jnp.concatenate([p["a"], p["b"]]))

    params = {"a": U[:1], "b": U[1:]}
    g, x, unravel = gradient_field(loss_tree, params)
    got = elementary_differentials(g, trees_up_to(4), x)
    g_flat, x_flat, _ = gradient_field(loss3, U)
    want = elementary_differentials(g_flat, trees_up_to(4), x_flat)
    for t in trees_up_to(4):
        np.testing.assert_allclose(got[t], want[t], rtol=1e-13)
    assert set(unravel(got[Tree.leaf()])) == {"a", "b"}


def test_each_distinct_subtree_evaluated_once():
    trees = trees_up_to(5)
    calls = []

    def g(x):
        calls.append(1)
        return -jax.grad(loss3)(x)

    jax.make_jaxpr(lambda x: elementary_differentials(g, trees, x))(U)
    # One traced evaluation of g per distinct linearisation prefix, which is at most one per tree;
    # recomputing subtrees would give far more (e.g. 57 for the trees of order <= 5).
    prefixes = {(), *{t.children[:-1] for t in trees if len(t.children) >= 2}}
    assert len(calls) == len(prefixes) <= len(trees)
    calls.clear()
    jax.make_jaxpr(lambda x: elementary_differentials(g, trees + trees, x))(U)
    assert len(calls) == len(prefixes)


def test_combine_is_the_weighted_sum():
    trees = trees_up_to(3)
    g, x, _ = gradient_field(loss3, U)
    w = jnp.array([1.0, -0.5, 0.25, 2.0])
    F = elementary_differentials(g, trees, x)
    want = sum(wi * F[t] for wi, t in zip(w, trees))
    np.testing.assert_allclose(combine_differentials(g, trees, w, x), want, rtol=1e-14)


@pytest.mark.parametrize("order", [1, 3, 5])
def test_jit_compatible(order):
    trees = trees_up_to(order)
    g, x, _ = gradient_field(loss3, U)
    w = jnp.ones(len(trees))
    f = jax.jit(lambda y: combine_differentials(g, trees, w, y))
    np.testing.assert_allclose(f(x), combine_differentials(g, trees, w, x), rtol=1e-13)

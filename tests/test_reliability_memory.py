"""Memory stays flat over many losses: hbflow's compiled-function caches release dropped losses.

Each loss closes over an 8 MB array, as a loss per seed or per λ closes over its data.  After
the loss is dropped, neither the loss nor its array may stay alive.
"""

import gc
import weakref

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import hbflow
from hbflow._loss_cache import PerLoss, weak_loss

BIG = 1_000_000  # float64 entries: 8 MB


def _make_loss(seed: int):
    data = jnp.asarray(np.random.default_rng(seed).standard_normal(BIG))

    def loss(u):
        return 0.5 * jnp.sum(u**2) + 1e-12 * data[seed] * u[0]

    return loss


def _big_arrays() -> int:
    gc.collect()
    return sum(1 for a in jax.live_arrays() if a.nbytes >= 8 * BIG)


def test_eight_losses_through_iterates_are_released():
    before = _big_arrays()
    u0 = jnp.array([1.0, 0.5])
    refs = []
    for seed in range(8):
        loss = _make_loss(seed)
        refs.append(weakref.ref(loss))
        us = hbflow.iterates(loss, u0, method="hb", beta=0.5, eta=0.1, num_steps=3)
        assert np.all(np.isfinite(np.asarray(us)))
        del loss
        # Never more than the one loss being used is alive.
        assert _big_arrays() <= before
    assert [r() for r in refs] == [None] * 8
    assert _big_arrays() <= before


def test_compare_and_solve_release_their_losses():
    before = _big_arrays()
    u0 = jnp.array([1.0, 0.5])
    refs = []
    for seed in range(2):
        loss = _make_loss(seed)
        refs.append(weakref.ref(loss))
        study = hbflow.compare(loss, u0, etas=[0.2, 0.1], horizon=0.4, models=["gf"])
        assert study.complete
        hbflow.solve_model("hbf2", loss, u0, method="hb", beta=0.5, eta=0.1, num_pieces=2)
        del loss, study
    assert [r() for r in refs] == [None, None]
    assert _big_arrays() <= before


def test_a_loss_that_is_alive_is_compiled_once():
    built = []
    cache = PerLoss(lambda loss, key: built.append(key) or key)

    def loss(u):
        return u

    assert cache(loss, 1) == 1 and cache(loss, 1) == 1 and cache(loss, 2) == 2
    assert built == [1, 2]
    assert len(cache) == 1
    del loss
    gc.collect()
    assert len(cache) == 0


def test_bound_methods_share_their_instance_entry_and_release_it():
    built = []
    cache = PerLoss(lambda loss, key: built.append(key) or key)

    class Model:
        def loss(self, u):
            return u

    model = Model()
    cache(model.loss, 0)
    cache(model.loss, 0)  # a new bound-method object, the same loss
    assert built == [0]
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None and len(cache) == 0


def test_unhashable_loss_is_built_per_call_and_not_kept():
    built = []
    cache = PerLoss(lambda loss, key: built.append(key) or key)

    class Unhashable:
        __hash__ = None

        def __call__(self, u):
            return u

    loss = Unhashable()
    cache(loss, 0)
    cache(loss, 0)
    assert built == [0, 0] and len(cache) == 0


def test_weak_stand_in_calls_the_loss_and_does_not_keep_it():
    def loss(u):
        return 2 * u

    stand_in = weak_loss(loss)
    assert stand_in(3) == 6
    del loss
    gc.collect()
    try:
        stand_in(3)
    except ReferenceError:
        pass
    else:
        raise AssertionError("the stand-in kept the loss alive")


class _ModuleLoss(eqx.Module):
    # A loss that is a pytree holding arrays, as a notebook writes one per kappa or per seed.
    q: jax.Array

    def __call__(self, u):
        return 0.5 * jnp.sum(self.q * u * u)


def test_module_losses_share_one_compilation_and_use_their_own_arrays():
    built = []

    def build(loss, key):
        built.append(key)
        return jax.jit(lambda arrays, u: jax.grad(lambda x: loss(arrays, x))(u))

    cache = PerLoss(build, compiled=True)
    u = jnp.array([1.0, 1.0])
    for q in ([1.0, 2.0], [3.0, 5.0], [7.0, 11.0]):
        grad = cache(_ModuleLoss(jnp.array(q)), "shape")
        np.testing.assert_array_equal(np.asarray(grad(u)), q)  # the arrays of this loss
    assert built == ["shape"]
    # Another class, or arrays of another shape, is another entry.
    cache(_ModuleLoss(jnp.ones(3)), "shape")
    assert built == ["shape", "shape"]


def test_iterates_of_module_losses_follow_each_loss():
    # Heavy ball on L = q u^2 / 2 per coordinate: u_{k+1} = (1 + beta - eta q) u_k - beta u_{k-1}.
    u0 = jnp.array([1.0, -0.5])
    for q in ([1.0, 4.0], [2.0, 9.0]):
        us = np.asarray(
            hbflow.iterates(_ModuleLoss(jnp.array(q)), u0, beta=0.5, eta=0.1, num_steps=6)
        )
        expected = [np.asarray(u0), np.asarray(u0) * (1 - 0.1 * np.array(q))]
        for _ in range(5):
            expected.append((1.5 - 0.1 * np.array(q)) * expected[-1] - 0.5 * expected[-2])
        np.testing.assert_allclose(us, np.array(expected), rtol=1e-14, atol=1e-15)


def test_module_losses_are_released():
    before = _big_arrays()
    u0 = jnp.array([1.0, 0.5])
    refs = []
    for seed in range(3):
        data = jnp.asarray(np.random.default_rng(seed).standard_normal(BIG))
        loss = _BigModuleLoss(data)
        refs.append(weakref.ref(data))
        study = hbflow.compare(loss, u0, etas=[0.2, 0.1], horizon=0.4, models=["gf", "hbf2"])
        assert study.complete
        del loss, data, study
    gc.collect()
    assert [r() for r in refs] == [None] * 3
    assert _big_arrays() <= before


class _BigModuleLoss(eqx.Module):
    data: jax.Array

    def __call__(self, u):
        return 0.5 * jnp.sum(u**2) + 1e-12 * self.data[0] * u[0]

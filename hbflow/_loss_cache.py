r"""Caches of functions compiled for one loss, released when the user drops the loss.

hbflow compiles its iterations, solvers and checks once per loss and reuses them across a sweep.
A cache keyed by the loss itself (`functools.lru_cache`) would keep every loss alive — and with
it its closure, e.g. a data set or the weights of a network — for as long as the cache holds it:
a notebook that builds one loss per seed or per $\lambda$ would grow without bound.  `PerLoss`
keys its entries by a weak reference to the loss: an entry lives exactly as long as the loss.

For that, the cached value must not reference the loss strongly (it would keep its own key
alive).  The builder receives a stand-in, `weak_loss(loss)`, which calls the loss through a
weak reference; the real loss is alive whenever the stand-in is traced or called, because the
caller holds it.

A bound method is keyed by its instance (a new bound-method object is made at every attribute
access) and its function.

A loss that is a pytree holding arrays (an equinox module with an array field, say) is split
as `eqx.filter_jit` splits its arguments: its arrays are inputs of the compiled functions, and
the entry is keyed by the rest (its structure and non-array fields) and the arrays' shapes and
dtypes.  Every loss of one such class and shape then shares one compilation — a sweep over
$\kappa$ or over seeds compiles once — and no entry holds the arrays.  These entries, and those
of hashable losses that cannot be weakly referenced, are kept in a small least-recently-used
table (`STRONG_SIZE` entries).  Any other unhashable loss is not cached at all: the function is
built for the call and dropped after it.

A *compiled* cache (``PerLoss(build, compiled=True)``) has builders whose result takes the
loss's arrays as its first argument (``None`` for a loss without them), and whose stand-in
takes them first too: ``stand_in(arrays, u)`` is $L(u)$.  The cache hands back the result
with the arrays of the loss at hand already bound.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["PerLoss", "weak_loss", "STRONG_SIZE"]

#: How many losses that cannot be weakly referenced each cache keeps (least recently used out).
STRONG_SIZE = 8


def _owner(loss: Callable) -> tuple[Any, Any]:
    """The object whose lifetime bounds the entry, and what else identifies the loss."""
    if inspect.ismethod(loss):
        return loss.__self__, loss.__func__
    return loss, None


def weak_loss(loss: Callable) -> Callable:
    """A callable that calls `loss` through a weak reference (a bound method: its instance).

    **Raises:** `TypeError` if `loss` cannot be weakly referenced.
    """
    ref: Callable[[], Any]
    ref = weakref.WeakMethod(loss) if inspect.ismethod(loss) else weakref.ref(loss)

    def call(*args, **kwargs):
        target = ref()
        if target is None:  # only reachable if a compiled function outlives its loss
            raise ReferenceError("the loss this function was compiled for no longer exists")
        return target(*args, **kwargs)

    return call


class PerLoss:
    """``cache(loss, *key)``: ``build(stand_in, *key)`` computed once per loss and key.

    `build` gets a stand-in for `loss` (see `weak_loss`) and the hashable `key`; its result is
    kept while `loss` is alive and dropped with it.  With ``compiled=True`` the stand-in and the
    result take the loss's arrays first, and the cache returns the result with them bound (see
    the module's docstring).
    """

    def __init__(self, build: Callable[..., Any], *, compiled: bool = False):
        self._build = build
        self._compiled = compiled
        # id(owner) -> (weak reference to owner, {(func, key): value})
        self._weak: dict[int, tuple[weakref.ref, dict[Hashable, Any]]] = {}
        self._strong: OrderedDict[tuple[Any, tuple], Any] = OrderedDict()
        self._lock = threading.RLock()

    def __call__(self, loss: Callable, *key: Hashable) -> Any:
        try:
            hash(loss)
        except TypeError:  # unhashable: may change while equal to itself
            return self._split_entry(loss, key)
        owner, func = _owner(loss)
        try:
            stand_in = weak_loss(loss)
        except TypeError:
            return self._bind(self._strong_entry((loss, key), self._with_arrays(loss), key), None)
        with self._lock:
            entry = self._weak.get(id(owner))
            if entry is not None and entry[0]() is owner:
                table = entry[1]
            else:
                table = {}
                self._weak[id(owner)] = (weakref.ref(owner, self._dropper(id(owner))), table)
            if (func, key) in table:
                return self._bind(table[(func, key)], None)
        value = self._build(self._with_arrays(stand_in), *key)
        with self._lock:
            return self._bind(table.setdefault((func, key), value), None)

    def _with_arrays(self, call: Callable) -> Callable:
        """The stand-in as the builder expects it: taking the (here absent) arrays first."""
        if not self._compiled:
            return call
        return lambda arrays, *args, **kwargs: call(*args, **kwargs)

    def _bind(self, value: Any, arrays: Any) -> Any:
        return functools.partial(value, arrays) if self._compiled else value

    def _split_entry(self, loss: Callable, key: tuple) -> Any:
        """An unhashable loss: split into arrays and a hashable rest, or built for this call."""
        import equinox as eqx
        import jax

        arrays, rest = eqx.partition(loss, eqx.is_array)
        leaves, treedef = jax.tree_util.tree_flatten(arrays)
        # The rest is keyed by its structure (static fields included) and its non-array leaves:
        # a module holding a dict of arrays is unhashable, its structure is not.
        rest_leaves, rest_def = jax.tree_util.tree_flatten(rest)
        rest_key: Any = (rest_def, tuple(rest_leaves))
        try:
            hash(rest_key)
        except TypeError:
            rest_key = None
        if not leaves or rest_key is None:  # nothing to split off, or the rest is unhashable
            if self._compiled:
                return functools.partial(self._build(lambda _, *a, **k: loss(*a, **k), *key), None)
            return self._build(loss, *key)
        shapes = tuple((getattr(x, "shape", ()), str(getattr(x, "dtype", type(x)))) for x in leaves)
        full = (("split", rest_key, treedef, shapes), key)
        if self._compiled:

            def stand_in(arrays: Any, *args: Any, **kwargs: Any) -> Any:
                return eqx.combine(arrays, rest)(*args, **kwargs)

            return self._bind(self._strong_entry(full, stand_in, key), arrays)
        return self._strong_entry(full, loss, key)

    def _dropper(self, ident: int) -> Callable[[weakref.ref], None]:
        # A weak reference to the cache too: a dropped cache must not be kept by its losses.
        cache_ref = weakref.ref(self)

        def drop(dead: weakref.ref) -> None:
            cache = cache_ref()
            if cache is None:
                return
            with cache._lock:
                entry = cache._weak.get(ident)
                if entry is not None and entry[0] is dead:
                    del cache._weak[ident]

        return drop

    def _strong_entry(self, full: tuple, stand_in: Callable, key: tuple) -> Any:
        with self._lock:
            if full in self._strong:
                self._strong.move_to_end(full)
                return self._strong[full]
        value = self._build(stand_in, *key)
        with self._lock:
            self._strong[full] = value
            while len(self._strong) > STRONG_SIZE:
                self._strong.popitem(last=False)
        return value

    def __len__(self) -> int:
        """The number of losses with entries (live ones and the strongly kept ones)."""
        with self._lock:
            return sum(1 for ref, _ in self._weak.values() if ref() is not None) + len(
                {owner for owner, _ in self._strong}
            )

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._weak.clear()
            self._strong.clear()

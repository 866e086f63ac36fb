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
access) and its function.  A hashable loss that cannot be weakly referenced is kept in a small
least-recently-used table (`STRONG_SIZE` entries); an unhashable one (an equinox module holding
arrays, say) is not cached at all: the function is built for the call and dropped after it.
"""

from __future__ import annotations

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
    kept while `loss` is alive and dropped with it.
    """

    def __init__(self, build: Callable[..., Any]):
        self._build = build
        # id(owner) -> (weak reference to owner, {(func, key): value})
        self._weak: dict[int, tuple[weakref.ref, dict[Hashable, Any]]] = {}
        self._strong: OrderedDict[tuple[Any, tuple], Any] = OrderedDict()
        self._lock = threading.RLock()

    def __call__(self, loss: Callable, *key: Hashable) -> Any:
        try:
            hash(loss)
        except TypeError:  # unhashable: may change while equal to itself; never cache
            return self._build(loss, *key)
        owner, func = _owner(loss)
        try:
            stand_in = weak_loss(loss)
        except TypeError:
            return self._strong_entry(loss, key)
        with self._lock:
            entry = self._weak.get(id(owner))
            if entry is not None and entry[0]() is owner:
                table = entry[1]
            else:
                table = {}
                self._weak[id(owner)] = (weakref.ref(owner, self._dropper(id(owner))), table)
            if (func, key) in table:
                return table[(func, key)]
        value = self._build(stand_in, *key)
        with self._lock:
            return table.setdefault((func, key), value)

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

    def _strong_entry(self, loss: Callable, key: tuple) -> Any:
        full = (loss, key)
        with self._lock:
            if full in self._strong:
                self._strong.move_to_end(full)
                return self._strong[full]
        value = self._build(loss, *key)
        with self._lock:
            self._strong[full] = value
            while len(self._strong) > STRONG_SIZE:
                self._strong.popitem(last=False)
        return value

    def __len__(self) -> int:
        """The number of losses with entries (live ones and the strongly kept ones)."""
        with self._lock:
            return sum(1 for ref, _ in self._weak.values() if ref() is not None) + len(
                {loss for loss, _ in self._strong}
            )

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._weak.clear()
            self._strong.clear()

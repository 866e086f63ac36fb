r"""Exact Butcher-group algebra on B-series characters.

Normalisation (docs/theory.md#trees-and-b-series): a character $c$ defines
$B(c, u) = c(\emptyset)\,u + \sum_\tau \frac{\eta^{|\tau|}}{\sigma(\tau)} c(\tau) F(\tau)(u)$,
and the product is composition, $B(c_2, B(c_1, u)) = B(c_1 \cdot c_2, u)$ (first $c_1$, then
$c_2$).  With this normalisation the product is the Connes–Kreimer convolution over admissible
cuts of one labelled representative of each tree,

$$(c_1\cdot c_2)(\tau) = c_1(\tau)\,c_2(\emptyset) + \sum_{\text{cuts}} c_1(P)\,c_2(R),$$

where $R$ is the part that keeps the root, $P$ the forest cut off, and $c_1$ is multiplicative on
forests (Hairer, Lubich & Wanner, *Geometric Numerical Integration*, §III.1.4; Chartier, Hairer &
Vilmart, FoCM 10 (2010) 407–427).

Coefficients may live in any exact commutative ring whose elements support ``+ - *`` and division
by a Python ``int``: Python ``Fraction``, sympy's ``QQ``, rational functions of β from
``QQ.frac_field(beta)``, or polynomials over those (the exponential polynomials of
`hbflow._exppoly`).  Nothing here ever touches a float.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._trees import Tree, trees_up_to

__all__ = ["Character", "compose", "inverse", "exp", "log", "exact_flow"]

Coeff = Any


@functools.cache
def root_cuts(tree: Tree) -> tuple[tuple[tuple[Tree, ...], Tree, int], ...]:
    """Admissible cuts of `tree` that keep its root, as ``(P, R, multiplicity)``.

    ``P`` is the forest cut off (a sorted tuple, empty for the empty cut) and ``R`` the part that
    keeps the root.  Cuts are counted on one labelled representative, so two identical subtrees
    give two cuts, which the multiplicity records.
    """
    per_child = []
    for child in tree.children:
        options = [((child,), None)]  # cut the edge to this child
        options += [(p, r) for p, r, m in root_cuts(child) for _ in range(m)]
        per_child.append(options)
    counts: Counter = Counter()
    for choice in itertools.product(*per_child):
        forest = tuple(sorted(t for p, _ in choice for t in p))
        kept = Tree(r for _, r in choice if r is not None)
        counts[(forest, kept)] += 1
    return tuple(
        (p, r, m) for (p, r), m in sorted(counts.items(), key=lambda x: (x[0][1], x[0][0]))
    )


class Character:
    r"""A B-series character truncated at trees of order $\le$ ``order``.

    **Arguments:**

    - `values`: mapping from every tree of order $\le$ `order` to its coefficient.
    - `empty`: the coefficient of $\emptyset$; 1 for a map $u \mapsto B(c,u)$, 0 for a vector field.
    - `one`: the unit of the coefficient ring (sets the ring).

    **Raises:** `ValueError` if a tree is missing or `empty` is not 0 or 1.
    """

    __slots__ = ("values", "empty", "order", "one")

    def __init__(self, values: Mapping[Tree, Coeff], order: int, empty: int, one: Coeff):
        if empty not in (0, 1):
            raise ValueError(f"empty must be 0 (a vector field) or 1 (a map), got {empty!r}")
        trees = trees_up_to(order)
        missing = [t for t in trees if t not in values]
        if missing:
            raise ValueError(f"character of order {order} has no value on {missing[:3]}")
        self.values = {t: values[t] for t in trees}
        self.order = order
        self.empty = empty
        self.one = one

    def __getitem__(self, tree: Tree) -> Coeff:
        return self.values[tree]

    def __iter__(self):
        return iter(self.values)

    def items(self):
        return self.values.items()

    def map(self, fn: Callable[[Coeff], Coeff], one: Coeff | None = None) -> Character:
        """Apply `fn` to every coefficient (e.g. substitute a value of β)."""
        new_one = fn(self.one) if one is None else one
        return Character(
            {t: fn(c) for t, c in self.values.items()}, self.order, self.empty, new_one
        )

    def __repr__(self) -> str:
        body = ", ".join(f"{t.bracket()}: {c}" for t, c in self.values.items())
        return f"Character(empty={self.empty}, {{{body}}})"

    @classmethod
    def identity(cls, order: int, one: Coeff) -> Character:
        """The unit of the Butcher group: $u \\mapsto u$."""
        zero = one - one
        return cls({t: zero for t in trees_up_to(order)}, order, 1, one)

    @classmethod
    def from_function(cls, fn: Callable[[Tree], Coeff], order: int, empty: int, one: Coeff):
        return cls({t: fn(t) for t in trees_up_to(order)}, order, empty, one)


def _forest_value(c: Character | Mapping[Tree, Coeff], forest: Iterable[Tree], one: Coeff) -> Coeff:
    out = one
    for t in forest:
        out = out * c[t]
    return out


def _common_order(*chars: Character) -> int:
    return min(c.order for c in chars)


def compose(c1: Character, c2: Character) -> Character:
    r"""The product $c_1\cdot c_2$: the B-series of $u \mapsto B(c_2, B(c_1, u))$.

    $c_1$ must be a map ($c_1(\emptyset)=1$); $c_2$ may be a map or a field, and the result is
    of the same kind as $c_2$.
    """
    if c1.empty != 1:
        raise ValueError("compose(c1, c2): c1 must be a map (c1(empty) = 1)")
    order = _common_order(c1, c2)
    one = c1.one
    values = {tree: compose_at(c1, c2, c2.empty, tree, one) for tree in trees_up_to(order)}
    return Character(values, order, c2.empty, one)


def compose_at(
    c1: Character | Mapping[Tree, Coeff],
    c2: Character | Mapping[Tree, Coeff],
    empty2: int,
    tree: Tree,
    one: Coeff,
) -> Coeff:
    r"""$(c_1\cdot c_2)(\tau)$ for one tree, from the values of $c_1$ and $c_2$ (mappings that
    hold at least $\tau$ and its subtrees); `empty2` is $c_2(\emptyset)$."""
    terms = [c1[tree]] if empty2 == 1 else []
    for forest, kept, mult in root_cuts(tree):
        term = _forest_value(c1, forest, one) * c2[kept]
        terms.append(term if mult == 1 else term * mult)
    return _sum(terms, one - one)


def inverse(c: Character) -> Character:
    r"""The group inverse $c^{-1}$: $B(c^{-1}, B(c, u)) = u$."""
    if c.empty != 1:
        raise ValueError("only a map (empty = 1) has a group inverse")
    inv: dict[Tree, Coeff] = {}
    for tree in trees_up_to(c.order):
        inv[tree] = inverse_at(inv, c, tree, c.one)
    return Character(inv, c.order, 1, c.one)


def inverse_at(
    inv: Mapping[Tree, Coeff], c: Character | Mapping[Tree, Coeff], tree: Tree, one: Coeff
) -> Coeff:
    r"""$c^{-1}(\tau)$ given $c^{-1}$ on the trees smaller than $\tau$ (`inv`) and $c$."""
    # (inv . c)(tree) = inv(tree) + sum over root cuts inv(P) c(R) = 0
    terms = []
    for forest, kept, mult in root_cuts(tree):
        term = _forest_value(inv, forest, one) * c[kept]
        terms.append(term if mult == 1 else term * mult)
    return -_sum(terms, one - one)


def _sum(terms: list, zero: Coeff) -> Coeff:
    """The sum of `terms`, by the ring's own many-term sum where it has one (`FExpPoly`
    brings all terms to one denominator at once)."""
    add_all = getattr(type(zero), "sum_of", None)
    if add_all is not None:
        return add_all(terms, zero)
    acc = zero
    for t in terms:
        acc = acc + t
    return acc


# Polynomials in the flow time s, as coefficient lists [p0, p1, ...].
def _smul(p: list, q: list, zero: Coeff) -> list:
    products: list[list] = [[] for _ in range(len(p) + len(q) - 1)]
    for i, a in enumerate(p):
        for j, b in enumerate(q):
            products[i + j].append(a * b)
    return [_sum(terms, zero) for terms in products]


def _sadd(p: list, q: list) -> list:
    if len(p) < len(q):
        p, q = q, p
    return [a + q[i] if i < len(q) else a for i, a in enumerate(p)]


def _sint(p: list, zero: Coeff) -> list:
    return [zero] + [a / (i + 1) for i, a in enumerate(p)]


def _flow(b: Character | None, m: Character | None, order: int, one: Coeff):
    """Shared recursion of `exp` and `log`.

    $c(s) = \\exp(s\\,b)$ solves $dc/ds = c(s)\\cdot b$, $c(0) = e$, and $c(s)(\\tau)$ is a
    polynomial in $s$ of degree $|\\tau|$ whose top tree enters only as $s\\,b(\\tau)$.  Given
    $b$, return $c(1)$; given $m$, fix each $b(\\tau)$ so that $c(1)(\\tau) = m(\\tau)$.
    """
    cs: dict[Tree, list] = {}
    field: dict[Tree, Coeff] = {}
    for tree in trees_up_to(order):
        b_value = None if b is None else b[tree]
        flow_at(tree, cs, field, b_value, None if m is None else m[tree], one)
    return cs, field


def flow_at(tree: Tree, cs: dict, field: dict, b_value, m_value, one: Coeff) -> None:
    r"""One step of `_flow`: set ``cs[tree]`` and ``field[tree]`` from their values on the
    smaller trees, given $b(\tau)$ (`b_value`) or else $m(\tau)$ (`m_value`)."""
    zero = one - one
    parts = []  # polynomials in s to add up
    for forest, kept, mult in root_cuts(tree):
        if not forest:
            continue  # the empty cut is s * b(tree), handled below
        poly = [one]
        for t in forest:
            poly = _smul(poly, cs[t], zero)
        coeff = field[kept] if mult == 1 else field[kept] * mult
        parts.append([a * coeff for a in poly])
    width = max((len(p) for p in parts), default=1)
    rest = [_sum([p[i] for p in parts if i < len(p)], zero) for i in range(width)]
    rest = _sint(rest, zero)
    if b_value is not None:
        field[tree] = b_value
    else:
        assert m_value is not None  # exactly one of b and m is given
        field[tree] = m_value - _sum(rest, zero)
    cs[tree] = _sadd(rest, [zero, field[tree]])


def exp(b: Character) -> Character:
    r"""The time-$\eta$ flow of the field
    $\sum_\tau \eta^{|\tau|-1} b(\tau)/\sigma(\tau)\,F(\tau)$."""
    if b.empty != 0:
        raise ValueError("exp takes a vector field (empty = 0)")
    cs, _ = _flow(b, None, b.order, b.one)
    zero = b.one - b.one
    values = {}
    for tree, poly in cs.items():
        acc = zero
        for a in poly:
            acc = acc + a
        values[tree] = acc
    return Character(values, b.order, 1, b.one)


def log(m: Character) -> Character:
    r"""The modified field of a map: the $b$ with $\exp(b) = m$ (HLW §IX.9)."""
    if m.empty != 1:
        raise ValueError("log takes a map (empty = 1)")
    _, field = _flow(None, m, m.order, m.one)
    return Character(field, m.order, 0, m.one)


def exact_flow(order: int, one: Coeff) -> Character:
    r"""The exact time-$\eta$ flow of $\dot u = g(u)$: $e(\tau) = 1/\tau!$, exactly."""
    return Character.from_function(lambda t: one / t.factorial, order, 1, one)

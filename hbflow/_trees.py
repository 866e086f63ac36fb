r"""Rooted trees: the index set of B-series.

A tree is stored in one canonical form: its subtrees sorted so that its level sequence (root at
level 1, depth first) is the lexicographically largest among all orderings of its subtrees.
Trees are interned, so equal trees are the same object and hashing is cheap.

Conventions (docs/theory.md#trees-and-b-series): $|\tau|$ is the number of nodes, $\sigma(\tau)$ the
symmetry factor, and for $g = -\nabla L$ the elementary differentials are $F(\bullet) = g$,
$F([\tau_1,\dots,\tau_m]) = g^{(m)}[F(\tau_1),\dots,F(\tau_m)]$.  Each node contributes one factor
$-1$, so $F(\tau) = (-1)^{|\tau|} E(\tau)$ with $E(\bullet) = \nabla L$ and
$E([\tau_1,\dots,\tau_m]) = \nabla^{m+1}L[E(\tau_1),\dots,E(\tau_m)]$ (*loss notation*).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Sequence

from ._checks import check_order

__all__ = ["Tree", "trees_of_order", "trees_up_to"]


class Tree:
    r"""A rooted tree $[\tau_1, \dots, \tau_m]$ in canonical form.

    Build one with `Tree.leaf()`, `Tree.join(children)` or `Tree.from_level_sequence(seq)`; every
    constructor returns the unique interned instance.
    """

    __slots__ = ("children", "order", "level_sequence", "_hash")
    _interned: dict[tuple, Tree] = {}

    children: tuple[Tree, ...]
    order: int
    level_sequence: tuple[int, ...]

    def __new__(cls, children: Iterable[Tree] = ()) -> Tree:
        kids = tuple(sorted(children, key=lambda t: t.level_sequence, reverse=True))
        key = tuple(id(c) for c in kids)
        self = cls._interned.get(key)
        if self is None:
            self = object.__new__(cls)
            self.children = kids
            self.order = 1 + sum(c.order for c in kids)
            self.level_sequence = (1,) + tuple(lvl + 1 for c in kids for lvl in c.level_sequence)
            self._hash = hash(self.level_sequence)
            cls._interned[key] = self
        return self

    # Interned: identity is equality.
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: Tree) -> bool:
        return (self.order, self.level_sequence) < (other.order, other.level_sequence)

    def __reduce__(self):
        return (Tree.from_level_sequence, (self.level_sequence,))

    @staticmethod
    def leaf() -> Tree:
        r"""The single node $\bullet$."""
        return Tree(())

    @staticmethod
    def join(children: Iterable[Tree]) -> Tree:
        r"""$[\tau_1, \dots, \tau_m]$: graft the given trees onto a new root."""
        return Tree(children)

    @staticmethod
    def from_level_sequence(seq: Sequence[int]) -> Tree:
        """Parse a level sequence (root at level 1, depth first) in any subtree order.

        **Raises:** `ValueError` if `seq` is not a valid level sequence.
        """
        try:
            seq = [int(s) for s in seq]
        except (TypeError, ValueError):
            raise ValueError(
                f"level sequence must be a sequence of integers such as [1, 2, 2], got {seq!r}"
            ) from None
        if not seq or seq[0] != 1 or any(s < 2 for s in seq[1:]):
            raise ValueError(
                f"level sequence {list(seq)} is invalid: it must start with the root at level 1 "
                "and every other node must be at level >= 2"
            )
        for prev, cur in zip(seq, seq[1:]):
            if cur > prev + 1:
                raise ValueError(
                    f"level sequence {list(seq)} is invalid: a node at level {cur} follows one at "
                    f"level {prev} (a child is exactly one level below its parent)"
                )

        def build(start: int) -> tuple[Tree, int]:
            level = seq[start]
            kids = []
            i = start + 1
            while i < len(seq) and seq[i] > level:
                kid, i = build(i)
                kids.append(kid)
            return Tree(kids), i

        tree, end = build(0)
        if end != len(seq):
            raise ValueError(f"level sequence {list(seq)} has more than one root")
        return tree

    @property
    def sigma(self) -> int:
        r"""Symmetry factor,
        $\sigma([\tau_1^{m_1}\cdots\tau_r^{m_r}]) = \prod m_i!\,\sigma(\tau_i)^{m_i}$."""
        return _sigma(self)

    @property
    def factorial(self) -> int:
        r"""Tree factorial $\tau! = |\tau| \prod \tau_i!$; exact flow: $e(\tau) = 1/\tau!$."""
        return _factorial(self)

    def __repr__(self) -> str:
        return f"Tree({list(self.level_sequence)})"

    def bracket(self) -> str:
        r"""Bracket notation: ``•``, ``[•]``, ``[[•],•]``, …"""
        if not self.children:
            return "•"
        return "[" + ",".join(c.bracket() for c in self.children) + "]"

    def loss_notation(self, latex: bool = False) -> str:
        r"""$E(\tau)$ in loss notation, so that $F(\tau) = (-1)^{|\tau|} E(\tau)$ for $g=-\nabla L$.

        Chains of Hessians are collapsed into powers: ``H²∇L`` for $[[\bullet]]$.
        """
        return _loss_notation(self, latex)

    @property
    def sign(self) -> int:
        r"""$(-1)^{|\tau|}$: the sign relating $F(\tau)$ (for $g=-\nabla L$) to $E(\tau)$."""
        return -1 if self.order % 2 else 1


@functools.cache
def _sigma(tree: Tree) -> int:
    out = 1
    for child, mult in Counter(tree.children).items():
        out *= math.factorial(mult) * _sigma(child) ** mult
    return out


@functools.cache
def _factorial(tree: Tree) -> int:
    out = tree.order
    for child in tree.children:
        out *= _factorial(child)
    return out


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@functools.cache
def _loss_notation(tree: Tree, latex: bool) -> str:
    grad = r"\nabla L" if latex else "∇L"
    if not tree.children:
        return grad
    # Collapse a chain of single children H(H(...(X))) into H^n X.
    power, node = 0, tree
    while len(node.children) == 1:
        power += 1
        node = node.children[0]
    if power:
        inner = _loss_notation(node, latex)
        if latex:
            hess = "H" if power == 1 else f"H^{{{power}}}"
            return f"{hess}\\,{inner}"
        hess = "H" if power == 1 else "H" + str(power).translate(_SUPERSCRIPT)
        return f"{hess}{inner}"
    m = len(tree.children) + 1
    args = ",".join(_loss_notation(c, latex) for c in tree.children)
    if latex:
        return f"\\nabla^{{{m}}}L[{args}]"
    return f"∇{str(m).translate(_SUPERSCRIPT)}L[{args}]"


@functools.cache
def trees_of_order(n: int) -> tuple[Tree, ...]:
    """All rooted trees with `n` nodes, sorted by level sequence.

    **Raises:** `ValueError` if `n < 1`.
    """
    check_order(n)
    if n == 1:
        return (Tree.leaf(),)
    found = set()
    for tree in trees_of_order(n - 1):
        found.update(_graft_leaf_everywhere(tree))
    return tuple(sorted(found))


def _graft_leaf_everywhere(tree: Tree) -> list[Tree]:
    out = [Tree(tree.children + (Tree.leaf(),))]
    for i, child in enumerate(tree.children):
        rest = tree.children[:i] + tree.children[i + 1 :]
        out.extend(Tree(rest + (new,)) for new in _graft_leaf_everywhere(child))
    return out


def trees_up_to(n: int) -> tuple[Tree, ...]:
    """All rooted trees with at most `n` nodes, by order then level sequence."""
    check_order(n)
    return tuple(t for m in range(1, n + 1) for t in trees_of_order(m))

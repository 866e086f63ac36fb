"""Rooted trees: counts, symmetry, canonical form, loss notation."""

import math

import pytest

from hbflow import Tree, trees_of_order, trees_up_to

T = Tree.from_level_sequence


def test_counts_follow_oeis_a000081():
    # OEIS A000081: number of unlabelled rooted trees with n nodes.
    assert [len(trees_of_order(n)) for n in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]


@pytest.mark.parametrize("n", range(1, 9))
def test_labelled_count_is_cayley(n):
    # Each unlabelled tree has n!/sigma labellings, and there are n^(n-1) labelled rooted trees
    # (Cayley); this checks sigma on every tree independently of its definition.
    assert sum(math.factorial(n) // t.sigma for t in trees_of_order(n)) == n ** (n - 1)


@pytest.mark.parametrize(
    "levels, sigma",
    [
        ([1], 1),
        ([1, 2], 1),
        ([1, 2, 2], 2),
        ([1, 2, 3], 1),
        ([1, 2, 2, 2], 6),
        ([1, 2, 3, 2], 1),
        ([1, 2, 3, 3], 2),
        ([1, 2, 2, 2, 2], 24),
        ([1, 2, 3, 3, 2, 3, 3], 8),  # [[•,•],[•,•]]: 2! * sigma([•,•])^2
        ([1, 2, 3, 2, 3, 2, 3], 6),  # [[•],[•],[•]]: 3!
        ([1, 2, 3, 2, 3, 2], 2),  # [[•],[•],•]: 2!
    ],
)
def test_sigma_hand_computed(levels, sigma):
    assert T(levels).sigma == sigma


def test_canonical_form_and_interning():
    assert T([1, 2, 2, 3]) is T([1, 2, 3, 2])
    assert T([1, 2, 3, 2]).level_sequence == (1, 2, 3, 2)
    assert Tree.join([Tree.leaf(), Tree.join([Tree.leaf()])]) is T([1, 2, 2, 3])
    assert len(set(trees_up_to(6))) == 1 + 1 + 2 + 4 + 9 + 20


@pytest.mark.parametrize("bad", [[], [2], [1, 3], [1, 2, 1], [1, 1], "x", [1, "a"], 5])
def test_bad_level_sequences(bad):
    with pytest.raises(ValueError, match="level sequence"):
        T(bad)


def test_order_must_be_positive():
    with pytest.raises(ValueError, match="order must be an integer >= 1"):
        trees_of_order(0)


def test_loss_notation_and_sign():
    # F(tau) = (-1)^|tau| E(tau) for g = -grad L (docs/theory.md#trees-and-b-series)
    assert T([1]).loss_notation() == "∇L" and T([1]).sign == -1
    assert T([1, 2]).loss_notation() == "H∇L" and T([1, 2]).sign == 1
    assert T([1, 2, 3]).loss_notation() == "H²∇L" and T([1, 2, 3]).sign == -1
    assert T([1, 2, 2]).loss_notation() == "∇³L[∇L,∇L]"
    assert T([1, 2, 3, 2]).loss_notation() == "∇³L[H∇L,∇L]"
    assert T([1, 2, 3, 3]).loss_notation(latex=True) == r"H\,\nabla^{3}L[\nabla L,\nabla L]"

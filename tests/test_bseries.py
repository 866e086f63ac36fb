"""Butcher-group algebra: group laws and an independent check of composition on a scalar ODE."""

import random
from fractions import Fraction

import pytest
import sympy

from hbflow import Character, Tree, compose, exact_flow, exp, inverse, log, trees_up_to

ORDER = 5
ONE = Fraction(1)


def random_character(rng, empty):
    return Character.from_function(
        lambda t: Fraction(rng.randint(-9, 9), rng.randint(1, 9)), ORDER, empty, ONE
    )


@pytest.fixture(params=range(3))
def rng(request):
    return random.Random(request.param)


def test_inverse(rng):
    c = random_character(rng, 1)
    e = Character.identity(ORDER, ONE)
    assert compose(c, inverse(c)).values == e.values
    assert compose(inverse(c), c).values == e.values


def test_associativity(rng):
    a, b, c = (random_character(rng, 1) for _ in range(3))
    assert compose(compose(a, b), c).values == compose(a, compose(b, c)).values


def test_exp_log_are_inverse(rng):
    m = random_character(rng, 1)
    assert exp(log(m)).values == m.values
    f = random_character(rng, 0)
    assert log(exp(f)).values == f.values


def test_exact_flow_is_exp_of_the_field():
    # The time-eta flow of du/dt = g has character 1/tau! (Butcher; HLW III.1).
    g = Character.from_function(lambda t: ONE if t.order == 1 else 0 * ONE, ORDER, 0, ONE)
    assert exp(g).values == exact_flow(ORDER, ONE).values


def _scalar_differentials(f, u, trees):
    out = {}
    for t in trees:
        value = sympy.diff(f, u, len(t.children))
        for c in t.children:
            value *= out[c]
        out[t] = sympy.expand(value)
    return out


# Truncated power series in h, as lists [c_0, ..., c_ORDER] of polynomials in u.
def _mul(p, q):
    out = [sympy.Integer(0)] * (ORDER + 1)
    for i, a in enumerate(p):
        for j, b in enumerate(q[: ORDER + 1 - i]):
            out[i + j] += a * b
    return [sympy.expand(c) for c in out]


def _bseries(c, F):
    series = [sympy.Integer(0)] * (ORDER + 1)
    for t in trees_up_to(c.order):
        series[t.order] += sympy.Rational(c[t].numerator, c[t].denominator) / t.sigma * F[t]
    return series


def _at(expr, u, delta):
    """expr(u + delta) for a polynomial expr, delta a series without constant term."""
    out = [sympy.Integer(0)] * (ORDER + 1)
    power = [sympy.Integer(1)] + [sympy.Integer(0)] * ORDER
    for n in range(ORDER + 1):
        coeff = sympy.diff(expr, u, n) / sympy.factorial(n)
        out = [a + coeff * b for a, b in zip(out, power)]
        power = _mul(power, delta)
    return [sympy.expand(c) for c in out]


def test_composition_against_a_scalar_ode(rng):
    # Second construction: B(c2, B(c1, u)) computed by Taylor expansion in h for a concrete
    # nonlinear scalar field must equal B(c1 . c2, u) up to O(h^(ORDER+1)).
    u = sympy.Symbol("u")
    f = u**4 / 4 - u**2 + 1  # every derivative up to order 4 is non-zero
    trees = trees_up_to(ORDER)
    F = _scalar_differentials(f, u, trees)
    c1, c2 = random_character(rng, 1), random_character(rng, 1)
    delta = _bseries(c1, F)  # B(c1, u) - u
    lhs = list(delta)
    for t in trees:
        shifted = _at(F[t], u, delta)
        weight = sympy.Rational(c2[t].numerator, c2[t].denominator) / t.sigma
        for i in range(ORDER + 1 - t.order):
            lhs[i + t.order] += weight * shifted[i]
    rhs = _bseries(compose(c1, c2), F)
    assert all(sympy.expand(a - b) == 0 for a, b in zip(lhs, rhs))


def test_compose_rejects_field_first():
    f = Character.from_function(lambda t: ONE, 2, 0, ONE)
    with pytest.raises(ValueError, match="c1 must be a map"):
        compose(f, f)


def test_character_needs_all_trees():
    with pytest.raises(ValueError, match="has no value"):
        Character({Tree.leaf(): ONE}, 2, 1, ONE)

"""The factored-denominator arithmetic of the derivation against the plain `QBeta` arithmetic.

`FExpPoly` keeps one numerator over a product of powers of beta and cyclotomic polynomials and
never takes a gcd; `ExpPoly` reduces every coefficient.  On random exponential polynomials (with
such denominators, as the derivation makes) every operation must give the same exact values.
"""

import random
from fractions import Fraction

import pytest
from flint import fmpz_poly

from hbflow._exppoly import ExpPoly, ExpPolyRing, QBeta
from hbflow._qfactored import FExpPoly, FExpPolyRing, _factor_den

FACTORS = [fmpz_poly([0, 1])] + [fmpz_poly.cyclotomic(d) for d in range(1, 7)]


def _random_qbeta(rng: random.Random) -> QBeta:
    num = fmpz_poly([rng.randint(-9, 9) for _ in range(rng.randint(1, 5))])
    den = fmpz_poly([rng.choice([1, 2, 3, 6])])
    for _ in range(rng.randint(0, 4)):
        den = den * rng.choice(FACTORS)
    if rng.random() < 0.3:  # a numerator sharing a factor with the denominator
        num = num * rng.choice(FACTORS)
    return QBeta(num, den)


def _random_exppoly(rng: random.Random) -> ExpPoly:
    terms = {}
    for _ in range(rng.randint(0, 5)):
        c = _random_qbeta(rng)
        if c:
            terms[(rng.randint(0, 3), rng.randint(0, 3))] = c
    return ExpPoly(terms)


def _pair(rng):
    p = _random_exppoly(rng)
    return p, FExpPoly.from_exppoly(p)


SEEDS = range(40)


@pytest.mark.parametrize("seed", SEEDS)
def test_round_trip(seed):
    p, f = _pair(random.Random(seed))
    assert f.to_exppoly() == p
    assert f.reduced().to_exppoly() == p


@pytest.mark.parametrize("seed", SEEDS)
def test_ring_operations_agree(seed):
    rng = random.Random(f"ops {seed}")
    (p, f), (q, g) = _pair(rng), _pair(rng)
    n = rng.choice([-3, 2, 5])
    assert (f + g).to_exppoly() == p + q
    assert (f - g).to_exppoly() == p - q
    assert (f * g).to_exppoly() == p * q
    assert (-f).to_exppoly() == -p
    assert (f * n).to_exppoly() == p * n
    assert (n * f).to_exppoly() == p * n
    assert (f / n).to_exppoly() == p / n
    assert (f + n).to_exppoly() == p + n
    assert (n - f).to_exppoly() == n - p
    assert (f * Fraction(2, 7)).to_exppoly() == p * QBeta.of(Fraction(2, 7))
    assert (f - f).to_exppoly() == ExpPoly({})
    assert not (f - f)
    assert bool(f) == bool(p.terms)
    assert f + g == g + f
    assert (f == g) == (p == q)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("s", [-2, -1, 1, 2])
def test_shift_agrees(seed, s):
    p, f = _pair(random.Random(f"shift {seed}"))
    assert FExpPolyRing.shift(f, s).to_exppoly() == ExpPolyRing().shift(p, s)


@pytest.mark.parametrize("seed", SEEDS)
def test_solve_recurrence_agrees(seed):
    rng = random.Random(f"solve {seed}")
    forcing, f = _pair(rng)
    a0, a1 = _random_qbeta(rng), _random_qbeta(rng)
    expected = ExpPolyRing().solve_recurrence(forcing, a0, a1)
    fa0 = FExpPoly.from_exppoly(ExpPoly.constant(a0))
    fa1 = FExpPoly.from_exppoly(ExpPoly.constant(a1))
    got = FExpPolyRing().solve_recurrence(f, fa0, fa1)
    assert got.to_exppoly() == expected


@pytest.mark.parametrize("seed", SEEDS)
def test_by_exponent_is_canonical(seed):
    p, f = _pair(random.Random(f"split {seed}"))
    split = FExpPolyRing.by_exponent(f * FExpPoly.from_exppoly(ExpPoly.constant(1)))
    assert split == ExpPolyRing().by_exponent(p)
    assert all(type(j) is int and all(type(m) is int for m in by_m) for j, by_m in split.items())
    for by_m in split.values():
        for c in by_m.values():
            assert c.num.gcd(c.den) == 1 and c.den[c.den.degree()] > 0


def test_reduced_cancels_common_factors():
    beta = FExpPolyRing().beta
    one_minus = 1 - beta  # -Phi_1
    x = FExpPoly.from_exppoly(ExpPoly({(1, 2): QBeta(fmpz_poly([1, 2]), fmpz_poly([1, 1]))}))
    y = x * one_minus * beta
    z = FExpPoly(y.num, {**y.den, 1: y.den.get(1, 0) + 1, 0: y.den.get(0, 0) + 1})
    assert z.reduced().den == x.den
    assert z.reduced().to_exppoly() == -x.to_exppoly()


def test_factor_den_refuses_other_denominators():
    assert _factor_den(fmpz_poly([0, 0, 1]) * fmpz_poly.cyclotomic(6) * 3) == {0: 2, 6: 1}
    assert _factor_den(fmpz_poly.cyclotomic(30) ** 2) == {30: 2}  # degree 8, d = 30
    with pytest.raises(ValueError):
        _factor_den(fmpz_poly([1, 0, 1, 1]))

r"""Exponential polynomials with a factored common denominator: the fast arithmetic of `derive`.

`hbflow._exppoly.ExpPoly` stores $\sum_{j,m} c_{j,m}(\beta)\,k^m B^j$ ($B = \beta^k$) as a dict of
`QBeta` coefficients, each reduced by a gcd after every operation.  The derivation only ever
divides by $\beta$, by integers and by the diagonals of the recurrence solves,
$(1-\beta^{j-1})(1-\beta^j)$ and $(1-\beta)$ — products of cyclotomic polynomials
$\Phi_d(\beta)$.  `FExpPoly` therefore keeps one numerator $P \in \mathbb{Q}[k, B, \beta]$ (a FLINT
``fmpq_mpoly``) over one denominator $\beta^{e_0}\prod_{d\ge1}\Phi_d(\beta)^{e_d}$ held as its
exponents ``{d: e_d}``:

- a product multiplies the numerators and adds the exponents;
- a sum brings both to the exponentwise maximum (the lcm: distinct $\Phi_d$ and $\beta$ are
  coprime irreducibles) and adds the numerators;
- no gcd is ever taken; `FExpPoly.reduced` divides out the factors that the numerator contains
  (exact trial division by the few $\Phi_d$ present), and the canonical `QBeta` of each
  coefficient is formed once, at the end (`FExpPolyRing.by_exponent`).

Every operation is exact; the values equal those of the `ExpPoly` arithmetic (tests compare
the two on random inputs).  `FExpPolyRing` has the interface of `hbflow._exppoly.ExpPolyRing`
that `hbflow._derive.closed_form_iterates` uses.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

from flint import fmpq, fmpq_mpoly, fmpq_mpoly_ctx, fmpq_poly, fmpz_poly

from ._exppoly import ExpPoly, QBeta

__all__ = ["FExpPoly", "FExpPolyRing"]

#: Variables: the step index k, B = beta^k, and beta.
_CTX = fmpq_mpoly_ctx.get(("k", "B", "b"), "lex")
_K, _B, _BETA = _CTX.gens()
_ZERO = _CTX.constant(0)
_ONE = _CTX.constant(1)

Den = dict[int, int]  # {d: e}: beta^e for d = 0, Phi_d(beta)^e for d >= 1; no zero exponents


@functools.cache
def _factor_fmpz(d: int) -> fmpz_poly:
    return fmpz_poly([0, 1]) if d == 0 else fmpz_poly.cyclotomic(d)


@functools.cache
def _factor_power(d: int, e: int) -> fmpq_mpoly:
    r"""$\beta^e$ (d = 0) or $\Phi_d(\beta)^e$ as a polynomial of the context."""
    if d == 0:
        return _BETA**e
    coeffs = _factor_fmpz(d).coeffs()
    return _CTX.from_dict({(0, 0, i): int(c) for i, c in enumerate(coeffs) if c}) ** e


def _den_poly(den: Den) -> fmpq_mpoly:
    out = _ONE
    for d, e in den.items():
        out = out * _factor_power(d, e)
    return out


def _den_fmpz(den: Den) -> fmpz_poly:
    out = fmpz_poly([1])
    for d, e in sorted(den.items()):
        out = out * _factor_fmpz(d) ** e
    return out


def _scale_to(num: fmpq_mpoly, den: Den, target: Den) -> fmpq_mpoly:
    """`num` multiplied by ``target / den`` (``den`` divides ``target``), in one product."""
    missing = tuple((d, e - den.get(d, 0)) for d, e in sorted(target.items()) if e != den.get(d, 0))
    return num * _multiplier(missing) if missing else num


@functools.lru_cache(maxsize=4096)
def _multiplier(missing: tuple[tuple[int, int], ...]) -> fmpq_mpoly:
    return _den_poly(dict(missing))


def _add_all(nums: list[fmpq_mpoly]) -> fmpq_mpoly:
    if len(nums) == 1:
        return nums[0]
    out = nums[0] + nums[1]
    for n in nums[2:]:
        out += n
    return out


def _lcm(d1: Den, d2: Den) -> Den:
    out = dict(d1)
    for d, e in d2.items():
        if e > out.get(d, 0):
            out[d] = e
    return out


def _den_mul(d1: Den, d2: Den) -> Den:
    if not d1:
        return d2
    if not d2:
        return d1
    out = dict(d1)
    for d, e in d2.items():
        out[d] = out.get(d, 0) + e
    return out


def _scalar(x) -> fmpq | int | None:
    if isinstance(x, int):
        return x
    if isinstance(x, Fraction):
        return fmpq(x.numerator, x.denominator)
    if isinstance(x, fmpq):
        return x
    return None


class FExpPoly:
    r"""$P(k, \beta^k, \beta) / (\beta^{e_0}\prod_d \Phi_d(\beta)^{e_d})$; see the module docstring.

    The denominator dict is never mutated after construction (results share it freely)."""

    __slots__ = ("num", "den")

    def __init__(self, num: fmpq_mpoly, den: Den | None = None):
        self.num = num
        self.den = {} if den is None or num.is_zero() else den

    @staticmethod
    def constant(c) -> FExpPoly:
        if isinstance(c, FExpPoly):
            return c
        s = _scalar(c)
        if s is None:
            raise TypeError(f"cannot convert {type(c).__name__} to FExpPoly")
        return FExpPoly(_CTX.constant(s))

    def __add__(self, other):
        if not isinstance(other, FExpPoly):
            s = _scalar(other)
            if s is None:
                return NotImplemented
            if not s:
                return self
            other = FExpPoly(_CTX.constant(s))
        if not other.num:
            return self
        if not self.num:
            return other
        if self.den == other.den:
            return FExpPoly(self.num + other.num, self.den)
        den = _lcm(self.den, other.den)
        return FExpPoly(
            _scale_to(self.num, self.den, den) + _scale_to(other.num, other.den, den), den
        )

    __radd__ = __add__

    def __neg__(self):
        return FExpPoly(-self.num, self.den)

    def __sub__(self, other):
        if not isinstance(other, FExpPoly):
            s = _scalar(other)
            if s is None:
                return NotImplemented
            return self + (-s)
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if isinstance(other, FExpPoly):
            if not self.num or not other.num:
                return FExpPoly(_ZERO)
            return FExpPoly(self.num * other.num, _den_mul(self.den, other.den))
        s = _scalar(other)
        if s is None:
            return NotImplemented
        if not s:
            return FExpPoly(_ZERO)
        return FExpPoly(self.num * s, self.den)

    __rmul__ = __mul__

    def __truediv__(self, n):
        s = _scalar(n)
        if s is None:
            return NotImplemented
        if not s:
            raise ZeroDivisionError("division by zero in FExpPoly")
        return FExpPoly(self.num * (1 / fmpq(s)), self.den)

    @staticmethod
    def sum_of(terms: list, zero=None) -> FExpPoly:
        """The sum of many terms: those with equal denominators first, then each group
        brought to the common denominator once (instead of once per partial sum)."""
        groups: dict[tuple, list] = {}
        for t in terms:
            if not isinstance(t, FExpPoly):
                t = FExpPoly.constant(t)
            if t.num:
                key = tuple(sorted(t.den.items()))
                groups.setdefault(key, []).append(t.num)
        if not groups:
            return FExpPoly(_ZERO)
        if len(groups) == 1:
            ((key, nums),) = groups.items()
            return FExpPoly(_add_all(nums), dict(key))
        den: Den = {}
        for key in groups:
            for d, e in key:
                if e > den.get(d, 0):
                    den[d] = e
        return FExpPoly(
            _add_all([_scale_to(_add_all(nums), dict(key), den) for key, nums in groups.items()]),
            den,
        )

    def __bool__(self) -> bool:
        return not self.num.is_zero()

    def __eq__(self, other) -> bool:
        if not isinstance(other, FExpPoly):
            s = _scalar(other)
            if s is None:
                return False
            other = FExpPoly(_CTX.constant(s))
        den = _lcm(self.den, other.den)
        return _scale_to(self.num, self.den, den) == _scale_to(other.num, other.den, den)

    __hash__ = None  # type: ignore[assignment]

    def reduced(self) -> FExpPoly:
        """The same value with every factor of the denominator that divides the numerator
        cancelled (exact trial division)."""
        if not self.den:
            return self
        num = self.num
        den = dict(self.den)
        if den.get(0):
            low = int(num.term_content().degrees()[2])
            cut = min(low, den[0])
            if cut:
                num = num / _factor_power(0, cut)
                den[0] -= cut
        for d in list(den):
            if d == 0:
                continue
            phi = _factor_power(d, 1)
            while den[d]:
                q, r = divmod(num, phi)
                if not r.is_zero():
                    break
                num = q
                den[d] -= 1
        return FExpPoly(num, {d: e for d, e in den.items() if e})

    # --- conversions to and from the dict representation of `ExpPoly` --------------------------

    def to_exppoly(self) -> ExpPoly:
        """The `ExpPoly` of the same value (each coefficient a reduced `QBeta`)."""
        return ExpPoly(
            {(m, j): c for j, by_m in _coefficients(self).items() for m, c in by_m.items()}
        )

    @staticmethod
    def from_exppoly(p: ExpPoly) -> FExpPoly:
        r"""From an `ExpPoly` whose denominators are products of $\beta$ and cyclotomic
        polynomials (and integers); **raises** `ValueError` for another denominator."""
        out = FExpPoly(_ZERO)
        for (m, j), c in p.terms.items():
            den = _factor_den(c.den)
            num = _CTX.from_dict({(m, j, i): int(a) for i, a in enumerate(c.num.coeffs()) if a})
            unit = c.den
            for d, e in den.items():
                unit = unit // _factor_fmpz(d) ** e
            out = out + FExpPoly(num * fmpq(1, int(unit[0])), den)
        return out

    def __repr__(self) -> str:
        return f"FExpPoly(({self.num}) / {self.den})"


def _factor_den(q: fmpz_poly) -> Den:
    """Exponents of β and of the cyclotomic polynomials in `q` (up to an integer)."""
    out: Den = {}
    rest = q
    for d in range(0, 2 * q.degree() ** 2 + 3):  # phi(d) >= sqrt(d / 2): larger d cannot divide
        if rest.degree() == 0:
            break
        f = _factor_fmpz(d)
        e = 0
        while rest.degree() > 0:
            quo, rem = divmod(rest, f)
            if rem:
                break
            rest, e = quo, e + 1
        if e:
            out[d] = e
    if rest.degree() != 0:
        raise ValueError(f"denominator {q} is not a product of beta and cyclotomic polynomials")
    return out


def _coefficients(p: FExpPoly) -> dict[int, dict[int, QBeta]]:
    r"""``{j: {m: c_{j,m}}}`` with each $c_{j,m}$ the canonical `QBeta`."""
    buckets: dict[tuple[int, int], dict[int, fmpq]] = {}
    for (m, j, i), c in p.num.terms():  # FLINT's exponents are fmpz: keys must be ints
        buckets.setdefault((int(j), int(m)), {})[int(i)] = c
    den = _den_fmpz(p.den)
    out: dict[int, dict[int, QBeta]] = {}
    for (j, m), coeffs in sorted(buckets.items()):
        top = max(coeffs)
        poly = fmpq_poly([coeffs.get(i, 0) for i in range(top + 1)])
        out.setdefault(j, {})[m] = QBeta(poly.numer(), den * poly.denom())
    return out


@functools.cache
def _divisor_factors(n: int) -> Den:
    r"""$\beta^n - 1 = \prod_{d \mid n}\Phi_d(\beta)$."""
    return {d: 1 for d in range(1, n + 1) if n % d == 0}


@functools.cache
def _operator_entry(j: int, i: int, row: int) -> fmpq_mpoly:
    r"""$\beta^{t}$ times the coefficient of $k^{row}$ in $L_j[k^i]$, $t = \max(j-1, 0)$, where
    $L_j[P](k) = \beta^j P(k+1) - (1+\beta) P(k) + \beta^{1-j} P(k-1)$ (see
    `hbflow._exppoly.ExpPolyRing._operator_entry`); the factor makes it a polynomial."""
    t = max(j - 1, 0)
    binom = math.comb(i, row)
    out = _BETA ** (j + t) * binom + _BETA ** (1 - j + t) * (binom * (-1) ** (i - row))
    if i == row:
        out = out - (1 + _BETA) * _BETA**t
    return out


@functools.cache
def _diagonal(j: int) -> tuple[Den, fmpq_mpoly, int]:
    r"""``(Δ, Δ as a polynomial, r)``: the diagonal entries of the triangular solve for
    $\beta^{jk}$ forcing are $c_{row}\,Δ$ with rational $c_{row}$; $r = 1$ when resonant
    ($j \in \{0, 1\}$: the unknown of row $m$ is the coefficient of $k^{m+1}$), else 0."""
    if j in (0, 1):
        den: Den = {1: 1}
        shift = 1
    else:
        den = _den_mul(_divisor_factors(j - 1), _divisor_factors(j))
        shift = 0
    return den, _den_poly(den), shift


@functools.cache
def _diagonal_scale(j: int, row: int) -> fmpq:
    den, poly, shift = _diagonal(j)
    q, r = divmod(_operator_entry(j, row + shift, row), poly)
    if not r.is_zero() or not q.is_constant():
        raise AssertionError(f"diagonal of L_{j} at row {row} is not a constant times {den}")
    c = fmpq(q.leading_coefficient())
    if not c:
        raise AssertionError(f"zero diagonal of L_{j} at row {row}")
    return c


class _Field:
    """Constants 0 and 1 of the ring, as `closed_form_iterates` reads them."""

    zero = FExpPoly(_ZERO)
    one = FExpPoly(_ONE)


class FExpPolyRing:
    r"""Exponential polynomials in $k$ over $\mathbb{Q}(\beta)$ as `FExpPoly`; the interface of
    `hbflow._exppoly.ExpPolyRing` that the closed-form derivation uses."""

    def __init__(self):
        self.field = _Field()
        self.beta = FExpPoly(_BETA)
        self.one = FExpPoly(_ONE)
        self.B = FExpPoly(_B)

    @staticmethod
    def shift(p: FExpPoly, s: int) -> FExpPoly:
        r"""$p(k) \mapsto p(k+s)$: $k \mapsto k+s$, $B \mapsto \beta^s B$."""
        if not p:
            return p
        if s >= 0:
            return FExpPoly(p.num.compose(_K + s, _B * _BETA**s, _BETA), p.den)
        # beta^(-|s| j): multiply through by beta^(|s| deg_B).
        t = -s
        top = int(p.num.degrees()[1])
        num = _CTX.from_dict({(m, j, i + t * (top - j)): c for (m, j, i), c in p.num.terms()})
        return FExpPoly(num.compose(_K + s, _B, _BETA), _den_mul(p.den, {0: t * top}))

    @staticmethod
    def by_exponent(p: FExpPoly) -> dict[int, dict[int, QBeta]]:
        """Split into ``{j: {m: c_{j,m}}}``, each coefficient a canonical `QBeta`."""
        return _coefficients(p)

    def solve_recurrence(self, forcing: FExpPoly, a0, a1) -> FExpPoly:
        r"""As `hbflow._exppoly.ExpPolyRing.solve_recurrence`: $a_k$ with $a_0$, $a_1$ given and
        $a_{k+1} - (1+\beta) a_k + \beta a_{k-1} = f_k$, by back substitution on numerators.

        With $f_k = \sum_{j,m} F_{j,m}(\beta) k^m\beta^{jk} / D$ and the diagonal $c_m Δ_j$ of
        the solve for $\beta^{jk}$, the unknown of row $m$ is $Q_m / (D Δ_j^{top-m+1})$ and
        $c_m Q_m = \beta^t F_{j,m} Δ_j^{top-m} - \sum_{m' > m} Q_{m'}\, L'_j(m', m)\, Δ_j^{m'-m-1}$.
        """
        buckets: dict[int, dict[int, dict[tuple[int, int, int], fmpq]]] = {}
        for (m, j, i), c in forcing.num.terms():
            buckets.setdefault(int(j), {}).setdefault(int(m), {})[(0, 0, int(i))] = c
        particular = FExpPoly(_ZERO)
        for j, by_m in buckets.items():
            top = max(by_m)
            den, delta, r = _diagonal(j)
            t = max(j - 1, 0)
            powers = [_ONE]
            for _ in range(top + 1):
                powers.append(powers[-1] * delta)
            q: dict[int, fmpq_mpoly] = {}
            for row in range(top, -1, -1):
                f = _CTX.from_dict(by_m[row]) if row in by_m else _ZERO
                acc = f * _BETA**t * powers[top - row] if f else _ZERO
                for later in range(row + 1, top + 1):
                    if q[later]:
                        entry = _operator_entry(j, later + r, row)
                        acc = acc - q[later] * entry * powers[later - row - 1]
                q[row] = acc * (1 / _diagonal_scale(j, row))
            num = _ZERO
            for row, value in q.items():
                if value:
                    num = num + value * powers[row] * _K ** (row + r) * _B**j
            part_den = _den_mul(forcing.den, {d: e * (top + 1) for d, e in den.items()})
            particular = particular + FExpPoly(num, part_den)
        particular = particular.reduced()
        # Homogeneous part A + C beta^k fitted to a_0 and a_1.
        p0 = FExpPoly(particular.num.compose(_ZERO, _ONE, _BETA), particular.den)
        p1 = FExpPoly(particular.num.compose(_ONE, _BETA, _BETA), particular.den)
        r0 = FExpPoly.constant(a0) - p0
        r1 = FExpPoly.constant(a1) - p1
        c_hom = FExpPoly(-(r0 - r1).num, _den_mul((r0 - r1).den, {1: 1}))  # / (1 - beta)
        return (particular + (r0 - c_hom) + self.B * c_hom).reduced()

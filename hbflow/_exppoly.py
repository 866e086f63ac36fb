r"""Exponential polynomials in the step index $k$ and their linear recurrences.

An exponential polynomial is a finite sum $\sum_{j,m} c_{j,m}\, k^m \beta^{jk}$ with coefficients
$c_{j,m} \in \mathbb{Q}(\beta)$.  It is stored as a polynomial in $k$ and $B = \beta^k$, a dict
``{(m, j): c_{j,m}}``, so that sums and products are polynomial arithmetic and the shift
$k \mapsto k+s$ is the substitution $k \mapsto k+s$, $B \mapsto \beta^s B$.

The coefficients are `QBeta` elements of $\mathbb{Q}(\beta)$: coprime integer polynomials
$p/q$ held by FLINT (``python-flint``), whose gcds are a few microseconds, against about a
millisecond for an addition in sympy's own fraction field.  Every result is exact and canonical
(lowest terms, denominator with positive leading coefficient).

$\mathbb{Q}(\beta)$ has three representations in hbflow, each for one job: `QBeta` here is the
canonical form of each derived coefficient (the derivation itself runs in the factored
denominators of `hbflow._qfactored`, which the tests compare with `ExpPoly`);
`hbflow.RationalFunction` is the result as plain data (integer coefficient tuples: hashable,
JSON-serialisable, evaluable at a ``Fraction`` or an ``mpmath`` number without FLINT); and
sympy's ``QQ.frac_field(beta)`` runs the recurrence of `hbflow.coefficients_at`, the second
construction, on purpose in an arithmetic independent of `QBeta`, so that the two constructions
check each other.

The heavy-ball recurrences of docs/theory.md#iterates-as-b-series have the characteristic polynomial
$(x-1)(x-\beta)$; `ExpPolyRing.solve_recurrence` solves them by undetermined coefficients, with
resonance at $j=0$ (root 1) and $j=1$ (root β).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import TYPE_CHECKING

from flint import fmpz_poly

if TYPE_CHECKING:
    import sympy

__all__ = ["beta_symbol", "QBeta", "ExpPoly", "ExpPolyRing"]


def beta_symbol() -> sympy.Symbol:
    """The symbol β of the sympy expressions (sympy is imported when one is asked for)."""
    import sympy

    return sympy.Symbol("beta")


def __getattr__(name: str):
    # ``BETA``, the symbol β, without importing sympy with this module: the exact arithmetic
    # and its output (``hbflow derive``) run on FLINT alone.
    if name == "BETA":
        return beta_symbol()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_ONE = fmpz_poly([1])


class QBeta:
    r"""An element $p(\beta)/q(\beta)$ of $\mathbb{Q}(\beta)$, $p, q \in \mathbb{Z}[\beta]$ coprime,
    $q$ with positive leading coefficient.  Integers and ``Fraction``\ s mix in."""

    __slots__ = ("num", "den")

    def __init__(self, num: fmpz_poly, den: fmpz_poly = _ONE, *, reduced: bool = False):
        if not reduced:
            if not den:
                raise ZeroDivisionError("division by zero in Q(beta)")
            g = num.gcd(den)
            if g != _ONE:
                num, den = num // g, den // g
            if den[den.degree()] < 0:
                num, den = -num, -den
        self.num = num
        self.den = den

    @classmethod
    def of(cls, x) -> QBeta:
        if isinstance(x, QBeta):
            return x
        if isinstance(x, int):
            return cls(fmpz_poly([x]), _ONE, reduced=True)
        if isinstance(x, Fraction):
            return cls(fmpz_poly([x.numerator]), fmpz_poly([x.denominator]), reduced=True)
        return NotImplemented

    def __add__(self, other):
        other = QBeta.of(other)
        if other is NotImplemented:
            return other
        if self.den == other.den:
            return QBeta(self.num + other.num, self.den)
        return QBeta(self.num * other.den + other.num * self.den, self.den * other.den)

    __radd__ = __add__

    def __neg__(self):
        return QBeta(-self.num, self.den, reduced=True)

    def __sub__(self, other):
        other = QBeta.of(other)
        if other is NotImplemented:
            return other
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if isinstance(other, int):
            return QBeta(self.num * other, self.den)
        other = QBeta.of(other)
        if other is NotImplemented:
            return other
        return QBeta(self.num * other.num, self.den * other.den)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, int):
            return QBeta(self.num, self.den * other)
        other = QBeta.of(other)
        if other is NotImplemented:
            return other
        return QBeta(self.num * other.den, self.den * other.num)

    def __rtruediv__(self, other):
        return QBeta.of(other) / self

    def __pow__(self, e: int):
        if e < 0:
            return QBeta(self.den**-e, self.num**-e)
        return QBeta(self.num**e, self.den**e, reduced=True)

    def __eq__(self, other) -> bool:
        other = QBeta.of(other)
        if other is NotImplemented:
            return False
        return self.num == other.num and self.den == other.den

    def __bool__(self) -> bool:
        return bool(self.num)

    def coefficients(self) -> tuple[list[int], list[int]]:
        """Ascending integer coefficients of numerator and denominator."""
        return [int(c) for c in self.num.coeffs()] or [0], [int(c) for c in self.den.coeffs()]

    def to_sympy(self) -> sympy.Expr:
        import sympy

        num, den = self.coefficients()
        zero, beta = sympy.Integer(0), beta_symbol()
        return sum((c * beta**i for i, c in enumerate(num)), zero) / sum(
            (c * beta**i for i, c in enumerate(den)), zero
        )

    def __repr__(self) -> str:
        return f"QBeta({self.to_sympy()})"


_Q_ZERO = QBeta(fmpz_poly([]), _ONE, reduced=True)
_Q_ONE = QBeta(_ONE, _ONE, reduced=True)


class ExpPoly:
    r"""$\sum c_{j,m} k^m B^j$ with $B = \beta^k$, as a dict ``{(m, j): c}`` without zeros."""

    __slots__ = ("terms",)

    def __init__(self, terms: dict[tuple[int, int], QBeta]):
        self.terms = terms

    def __add__(self, other):
        if not isinstance(other, ExpPoly):
            other = ExpPoly.constant(other)
        out = dict(self.terms)
        for key, c in other.terms.items():
            s = out[key] + c if key in out else c
            if s:
                out[key] = s
            else:
                out.pop(key, None)
        return ExpPoly(out)

    __radd__ = __add__

    def __neg__(self):
        return ExpPoly({key: -c for key, c in self.terms.items()})

    def __sub__(self, other):
        if not isinstance(other, ExpPoly):
            other = ExpPoly.constant(other)
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if not isinstance(other, ExpPoly):
            if not other:
                return ExpPoly({})
            return ExpPoly({key: c * other for key, c in self.terms.items()})
        out: dict[tuple[int, int], QBeta] = {}
        for (m1, j1), c1 in self.terms.items():
            for (m2, j2), c2 in other.terms.items():
                key = (m1 + m2, j1 + j2)
                out[key] = out[key] + c1 * c2 if key in out else c1 * c2
        return ExpPoly({key: c for key, c in out.items() if c})

    __rmul__ = __mul__

    def __truediv__(self, n: int):
        return ExpPoly({key: c / n for key, c in self.terms.items()})

    def __eq__(self, other) -> bool:
        if not isinstance(other, ExpPoly):
            other = ExpPoly.constant(other)
        return self.terms.keys() == other.terms.keys() and all(
            c == other.terms[key] for key, c in self.terms.items()
        )

    @staticmethod
    def constant(c) -> ExpPoly:
        c = QBeta.of(c)
        return ExpPoly({(0, 0): c} if c else {})

    def __repr__(self) -> str:
        return (
            " + ".join(f"({c.to_sympy()})*k^{m}*B^{j}" for (m, j), c in self.terms.items()) or "0"
        )


@functools.lru_cache(maxsize=1024)
def _binomial_shift(m: int, s: int) -> tuple[tuple[int, int], ...]:
    # (k + s)^m = sum_i C(m, i) s^(m-i) k^i; a module-level cache keeps no ring alive.
    return tuple((i, math.comb(m, i) * s ** (m - i)) for i in range(m + 1))


class ExpPolyRing:
    r"""Exponential polynomials in $k$ over $\mathbb{Q}(\beta)$, symbolic β."""

    def __init__(self):
        self.field = _Field()
        self.beta = QBeta(fmpz_poly([0, 1]), _ONE, reduced=True)
        self.one = ExpPoly({(0, 0): _Q_ONE})
        self.B = ExpPoly({(0, 1): _Q_ONE})

    def shift(self, p: ExpPoly, s: int) -> ExpPoly:
        r"""$p(k) \mapsto p(k+s)$, i.e. $k^m \beta^{jk} \mapsto (k+s)^m \beta^{js}\beta^{jk}$."""
        out: dict[tuple[int, int], QBeta] = {}
        for (m, j), c in p.terms.items():
            scale = c * self.beta ** (j * s) if j else c
            for i, binom in _binomial_shift(m, s):
                if binom:
                    key = (i, j)
                    term = scale * binom
                    out[key] = out[key] + term if key in out else term
        return ExpPoly({key: c for key, c in out.items() if c})

    def at(self, p: ExpPoly, k: int) -> QBeta:
        """The value at an integer ``k >= 0`` (with $\\beta^{0} = 1$)."""
        out = _Q_ZERO
        for (m, j), c in p.terms.items():
            out = out + c * (k**m) * self.beta ** (j * k)
        return out

    def by_exponent(self, p: ExpPoly) -> dict[int, dict[int, QBeta]]:
        """Split into ``{j: {m: c_{j,m}}}``."""
        out: dict[int, dict[int, QBeta]] = {}
        for (m, j), c in p.terms.items():
            out.setdefault(j, {})[m] = c
        return out

    def _operator_entry(self, j: int, i: int, row: int) -> QBeta:
        # Coefficient of k^row in L_j[k^i], where the recurrence
        # a_{k+1} - (1+beta) a_k + beta a_{k-1} acting on beta^{jk} P(k) equals beta^{jk} L_j[P](k),
        # L_j[P](k) = beta^j P(k+1) - (1+beta) P(k) + beta^(1-j) P(k-1).
        b = self.beta
        binom = math.comb(i, row)
        out = b**j * binom + b ** (1 - j) * (binom * (-1) ** (i - row))
        if i == row:
            out = out - (1 + b)
        return out

    def solve_recurrence(self, forcing: ExpPoly, a0, a1) -> ExpPoly:
        r"""The exponential polynomial $a_k$ with $a_0$, $a_1$ given and, for all $k$,
        $a_{k+1} - (1+\beta) a_k + \beta a_{k-1} = f_k$.

        The characteristic roots are 1 and β, so $\beta^{jk}k^m$ forcing is resonant for $j \in
        \{0, 1\}$ (the particular solution gains a factor $k$) and not for $j \ge 2$, where the
        diagonal of the triangular system is $\beta^{1-j}(1-\beta^{j-1})(1-\beta^j) \ne 0$.
        """
        particular: dict[tuple[int, int], QBeta] = {}
        for j, coeffs in self.by_exponent(forcing).items():
            top = max(coeffs)
            f = [coeffs.get(m, _Q_ZERO) for m in range(top + 1)]
            resonant = j in (0, 1)
            p: dict[int, QBeta] = {}
            if resonant:
                for row in range(top, -1, -1):
                    rhs = f[row]
                    for i in range(row + 2, top + 2):
                        rhs = rhs - p[i] * self._operator_entry(j, i, row)
                    p[row + 1] = rhs / self._operator_entry(j, row + 1, row)
            else:
                for row in range(top, -1, -1):
                    rhs = f[row]
                    for i in range(row + 1, top + 1):
                        rhs = rhs - p[i] * self._operator_entry(j, i, row)
                    p[row] = rhs / self._operator_entry(j, row, row)
            for i, c in p.items():
                if c:
                    particular[(i, j)] = c
        particular_poly = ExpPoly(particular)
        # Homogeneous part A + C beta^k fitted to a_0 and a_1.
        r0 = QBeta.of(a0) - self.at(particular_poly, 0)
        r1 = QBeta.of(a1) - self.at(particular_poly, 1)
        c_hom = (r0 - r1) / (1 - self.beta)
        return particular_poly + ExpPoly.constant(r0 - c_hom) + self.B * c_hom


class _Field:
    """The coefficient field Q(beta), as far as the derivation needs it."""

    zero = _Q_ZERO
    one = _Q_ONE

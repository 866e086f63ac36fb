r"""Exponential polynomials in the step index $k$ and their linear recurrences.

An exponential polynomial is a finite sum $\sum_{j,m} c_{j,m}\, k^m \beta^{jk}$ with coefficients
$c_{j,m}$ in a field $\mathbb{F}$ that contains $\beta$: the rational functions $\mathbb{Q}(\beta)$
(symbolic β) or $\mathbb{Q}$ (a given rational β).  It is stored as a sympy polynomial in two
variables, ``k`` and ``B`` $=\beta^k$, over $\mathbb{F}$, so that sums and products are polynomial
arithmetic and the shift $k \mapsto k+s$ is the substitution $k \mapsto k+s$, $B \mapsto \beta^s B$.

The heavy-ball recurrences of ``../shared/MATH.md`` §3 have the characteristic polynomial
$(x-1)(x-\beta)$; `solve_recurrence` solves them by undetermined coefficients, with resonance at
$j=0$ (root 1) and $j=1$ (root β).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import sympy
from sympy.polys.domains import QQ
from sympy.polys.rings import PolyElement, ring

__all__ = ["BETA", "ExpPolyRing"]

BETA = sympy.Symbol("beta")


class ExpPolyRing:
    r"""Exponential polynomials in $k$ over $\mathbb{Q}(\beta)$, or over $\mathbb{Q}$ for a given β.

    **Arguments:**

    - `beta`: ``None`` for a symbolic β, or a rational number with $0 < \beta < 1$.
    """

    def __init__(self, beta: Fraction | None = None):
        if beta is None:
            self.field = QQ.frac_field(BETA)
            self.beta = self.field.convert(BETA)
        else:
            beta = Fraction(beta)
            if not 0 < beta < 1:
                raise ValueError(f"beta must satisfy 0 < beta < 1 here, got {beta}")
            self.field = QQ
            self.beta = QQ(beta.numerator, beta.denominator)
        self.ring, self.k, self.B = ring("k,B", self.field)
        self.one = self.ring.one
        self.zero = self.ring.zero

    def const(self, c) -> PolyElement:
        return self.ring.ground_new(c)

    @functools.cache
    def _binomial_shift(self, m: int, s: int) -> PolyElement:
        return (self.k + s) ** m

    def shift(self, p: PolyElement, s: int) -> PolyElement:
        r"""$p(k) \mapsto p(k+s)$, i.e. $k^m \beta^{jk} \mapsto (k+s)^m \beta^{js}\beta^{jk}$."""
        out = self.zero
        for (m, j), c in p.terms():
            scale = c * self.beta ** (j * s) if j else c
            out += self._binomial_shift(m, s) * self.B**j * scale
        return out

    def at(self, p: PolyElement, k: int):
        """The value at an integer ``k >= 0`` (with $\\beta^{0} = 1$), in the coefficient field."""
        out = self.field.zero
        for (m, j), c in p.terms():
            out += c * k**m * self.beta ** (j * k)
        return out

    def by_exponent(self, p: PolyElement) -> dict[int, dict[int, object]]:
        """Split into ``{j: {m: c_{j,m}}}``."""
        out: dict[int, dict[int, object]] = {}
        for (m, j), c in p.terms():
            out.setdefault(j, {})[m] = c
        return out

    def _operator_entry(self, j: int, i: int, row: int):
        # Coefficient of k^row in L_j[k^i], where the recurrence
        # a_{k+1} - (1+beta) a_k + beta a_{k-1} acting on beta^{jk} P(k) equals beta^{jk} L_j[P](k),
        # L_j[P](k) = beta^j P(k+1) - (1+beta) P(k) + beta^(1-j) P(k-1).
        b = self.beta
        binom = sympy.binomial(i, row)
        out = b**j * binom + (b ** (1 - j) if j <= 1 else self.field.one / b ** (j - 1)) * binom * (
            -1
        ) ** (i - row)
        if i == row:
            out -= 1 + b
        return out

    def solve_recurrence(self, forcing: PolyElement, a0, a1) -> PolyElement:
        r"""The exponential polynomial $a_k$ with $a_0$, $a_1$ given and, for all $k$,
        $a_{k+1} - (1+\beta) a_k + \beta a_{k-1} = f_k$.

        The characteristic roots are 1 and β, so $\beta^{jk}k^m$ forcing is resonant for $j \in
        \{0, 1\}$ (the particular solution gains a factor $k$) and not for $j \ge 2$, where the
        diagonal of the triangular system is $\beta^{1-j}(1-\beta^{j-1})(1-\beta^j) \ne 0$.
        """
        particular = self.zero
        for j, coeffs in self.by_exponent(forcing).items():
            top = max(coeffs)
            f = [coeffs.get(m, self.field.zero) for m in range(top + 1)]
            resonant = j in (0, 1)
            p = {}
            if resonant:
                for row in range(top, -1, -1):
                    rhs = f[row]
                    for i in range(row + 2, top + 2):
                        rhs -= p[i] * self._operator_entry(j, i, row)
                    p[row + 1] = rhs / self._operator_entry(j, row + 1, row)
            else:
                for row in range(top, -1, -1):
                    rhs = f[row]
                    for i in range(row + 1, top + 1):
                        rhs -= p[i] * self._operator_entry(j, i, row)
                    p[row] = rhs / self._operator_entry(j, row, row)
            for i, c in p.items():
                particular += self.k**i * self.B**j * c
        # Homogeneous part A + C beta^k fitted to a_0 and a_1.
        r0 = a0 - self.at(particular, 0)
        r1 = a1 - self.at(particular, 1)
        c_hom = (r0 - r1) / (1 - self.beta)
        return particular + self.const(r0 - c_hom) + self.B * c_hom

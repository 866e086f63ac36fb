r"""Rendering counter terms: the HBF field as a researcher writes it (text, LaTeX) and JSON.

Coefficients shown in text and LaTeX are those in front of the loss-notation differentials:
$\eta^{|\tau|-1}\,(-1)^{|\tau|}\,b_k(\tau)/\sigma(\tau)$ multiplies $E(\tau)$ (``∇L``, ``H∇L``,
``∇³L[∇L,∇L]``, …), because $F(\tau) = (-1)^{|\tau|}E(\tau)$ for $g = -\nabla L$.

Everything is printed straight from the exact integer polynomials (FLINT factors them), without
building computer-algebra expressions: numerators and denominators are factored over
$\mathbb{Z}$, $\beta - 1$ is written $1 - \beta$ (positive for $0 \le \beta < 1$, as in the
literature), and a coefficient that depends on $k$ is written as a polynomial in $k$ over a common
denominator, each power of $k$ with a factored coefficient.  Every string reads back with
``sympy.sympify`` (after the substitutions listed in `to_json_data`) to the exact coefficient.
"""

from __future__ import annotations

import math
import re
import sys
import time
from fractions import Fraction

from flint import fmpq, fmpz_poly

from . import _counter_terms
from ._checks import check_count
from ._counter_terms import CONVENTION, CounterTerms, _stderr_is_terminal
from ._derive import RationalFunction, parse_beta

__all__ = [
    "field_text",
    "field_latex",
    "to_json_data",
    "shift_text",
    "shift_latex",
    "shift_json_data",
]

_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
_X = fmpz_poly([0, 1])
_X_MINUS_ONE = fmpz_poly([-1, 1])
_HALF = fmpq(1, 2)


# --- an exact, factored product -------------------------------------------------------------


class _Product:
    r"""$\pm\frac{p}{q}\,\beta^{a}(1-\beta)^{b}k^{m}\prod_i P_i^{e_i} \big/ \big(\beta^{a'}
    (1-\beta)^{b'}\prod_i Q_i^{f_i}\big)$, with optionally one inner sum over powers of $k$.

    Factors are ``(kind, value, exponent)``: kind ``"beta"``, ``"omb"`` ($1-\beta$), ``"k"``,
    ``"poly"`` (an irreducible integer polynomial in β), ``"kpoly"`` (integer polynomial in k)
    or ``"ksum"`` (a list of ``(m, _Product)``, the terms of a polynomial in k).
    """

    __slots__ = ("sign", "p", "q", "num", "den")

    def __init__(self, sign: int, p: int, q: int, num: list, den: list):
        self.sign, self.p, self.q, self.num, self.den = sign, p, q, num, den

    @property
    def is_zero(self) -> bool:
        return self.p == 0


_FACTOR_CACHE: dict[tuple, tuple] = {}


def _factor(poly: fmpz_poly, one_minus: bool = True) -> tuple[int, list]:
    """``(content, [(kind, value, exponent)])``, the β - 1 factors written 1 - β if asked."""
    key = (one_minus, *(int(c) for c in poly.coeffs()))
    hit = _FACTOR_CACHE.get(key)
    if hit is not None:
        return hit
    content, factors = poly.factor()
    content = int(content)
    out = []
    for f, e in factors:
        e = int(e)
        if f == _X:
            out.append(("beta", None, e))
        elif f == _X_MINUS_ONE and one_minus:
            out.append(("omb", None, e))
            content *= (-1) ** e
        else:
            out.append(("poly", f, e))
    if len(_FACTOR_CACHE) < 100_000:
        _FACTOR_CACHE[key] = (content, out)
    return content, out


def _factored(num: fmpz_poly, den: fmpz_poly, one_minus: bool = True) -> _Product:
    """The factored form of ``num/den`` (integer polynomials in β, den nonzero)."""
    if num == 0:
        return _Product(1, 0, 1, [], [])
    cn, fn = _factor(num, one_minus)
    cd, fd = _factor(den, one_minus)
    value = Fraction(cn, cd)
    return _Product(1 if value > 0 else -1, abs(value.numerator), value.denominator, fn, fd)


def _number(value: Fraction) -> _Product:
    return _Product(1 if value >= 0 else -1, abs(value.numerator), value.denominator, [], [])


def _polys(c: RationalFunction) -> tuple[fmpz_poly, fmpz_poly]:
    return fmpz_poly(list(c.num)), fmpz_poly(list(c.den))


def _at_half(poly: fmpz_poly) -> fmpq:
    return poly(_HALF)


def _k_polynomial(coeffs: dict[int, tuple[fmpz_poly, fmpz_poly]]) -> _Product:
    r"""$\sum_m c_m(\beta) k^m$ over a common denominator, each $c_m$ factored.

    The sign is chosen so that the leading coefficient in the sum is positive at $\beta = 1/2$,
    and the factors common to every $c_m$ (content, powers of β, …) are taken out of the sum.
    """
    coeffs = {m: c for m, c in coeffs.items() if c[0] != 0}
    if not coeffs:
        return _Product(1, 0, 1, [], [])
    if set(coeffs) == {0}:
        return _factored(*coeffs[0])
    den = fmpz_poly([1])
    for _, d in coeffs.values():
        den = den * d // den.gcd(d)  # lcm
    if _at_half(den) < 0:
        den = -den
    nums = {m: n * (den // d) for m, (n, d) in coeffs.items()}
    top = max(nums)
    sign = 1 if _at_half(nums[top]) > 0 else -1
    common = fmpz_poly([0])
    for n in nums.values():
        common = common.gcd(n)
    if _at_half(common) < 0:
        common = -common
    terms = []
    for m in sorted(nums, reverse=True):
        inner = _factored(sign * nums[m] // common, fmpz_poly([1]))
        terms.append((m, inner))
    out = _factored(sign * common, den)
    out.num = out.num + [("ksum", terms, 1)]
    return out


def _rational_k_polynomial(coeffs: dict[int, Fraction]) -> _Product:
    """A polynomial in k with rational coefficients: content times a primitive polynomial."""
    coeffs = {m: c for m, c in coeffs.items() if c}
    if not coeffs:
        return _Product(1, 0, 1, [], [])
    if set(coeffs) == {0}:
        return _number(coeffs[0])
    top = max(coeffs)
    lcm = 1
    for c in coeffs.values():
        lcm = lcm * c.denominator // math.gcd(lcm, c.denominator)
    ints = {m: int(c * lcm) for m, c in coeffs.items()}
    g = 0
    for v in ints.values():
        g = math.gcd(g, v)
    if ints[top] < 0:
        g = -g
    poly = fmpz_poly([ints.get(m, 0) // g for m in range(top + 1)])
    content = Fraction(g, lcm)
    out = _number(content)
    out.num = [("kpoly", poly, 1)]
    return out


# --- printers ---------------------------------------------------------------------------------


class _Style:
    """How one output format writes products, powers, β, 1 - β and k."""

    def __init__(self, name: str):
        self.name = name
        self.latex = name == "latex"
        self.mul = {"text": "·", "json": "*", "latex": " "}[name]
        self.beta = {"text": "β", "json": "beta", "latex": r"\beta"}[name]
        self.omb = {"text": "(1 - β)", "json": "(1 - beta)", "latex": r"(1 - \beta)"}[name]

    def power(self, base: str, e: int) -> str:
        if e == 1:
            return base
        if self.latex:
            return f"{base}^{{{e}}}"
        return f"{base}^{e}" if self.name == "text" else f"{base}**{e}"

    def paren(self, s: str) -> str:
        return rf"\left({s}\right)" if self.latex else f"({s})"

    def frac(self, num: str, den: str) -> str:
        if self.latex:
            return rf"\frac{{{num}}}{{{den}}}"
        return f"{num}/{den}"

    def polynomial(self, poly: fmpz_poly, var: str) -> str:
        """Descending powers: ``3·β^2 - 5·β + 1``."""
        parts = []
        for i in range(poly.degree(), -1, -1):
            c = int(poly[i])
            if not c:
                continue
            mag = abs(c)
            if i == 0:
                body = str(mag)
            else:
                x = self.power(var, i)
                body = x if mag == 1 else f"{mag}{self.mul}{x}"
            if not parts:
                parts.append(("-" if self.latex is False else "- ") + body if c < 0 else body)
            else:
                parts.append(f"{'-' if c < 0 else '+'} {body}")
        return " ".join(parts) if parts else "0"

    def factor(self, kind: str, value, e: int) -> tuple[str, bool]:
        """``(string, is_sum)``: the factor raised to its exponent."""
        if kind == "beta":
            return self.power(self.beta, e), False
        if kind == "omb":
            return self.power(self.omb, e), False
        if kind == "k":
            return self.power("k", e), False
        if kind == "poly":
            terms = sum(1 for c in value.coeffs() if c)
            s = self.polynomial(value, self.beta)
            return (self.power(self.paren(s), e) if terms > 1 else self.power(s, e)), terms > 1
        if kind == "kpoly":
            s = self.polynomial(value, "k")
            terms = sum(1 for c in value.coeffs() if c)
            return (self.power(self.paren(s), e) if terms > 1 else s), terms > 1
        if kind == "ksum":
            return self.paren(self.k_sum(value)), True
        raise AssertionError(kind)

    def k_sum(self, terms: list) -> str:
        parts = []
        for m, c in terms:
            body, negative = self.term(c, m)
            if not parts:
                parts.append(("- " if self.latex else "-") + body if negative else body)
            else:
                parts.append(f"{'-' if negative else '+'} {body}")
        return " ".join(parts)

    def term(self, c: _Product, m: int) -> tuple[str, bool]:
        """``c·k^m`` inside a sum, as ``(magnitude string, negative)``; a coefficient of k^0
        that is an integer times one polynomial is written out, its terms joining the sum."""
        num = list(c.num) + ([("k", None, m)] if m else [])
        if (
            not m
            and c.q == 1
            and not c.den
            and len(num) == 1
            and num[0][0] == "poly"
            and num[0][2] == 1
        ):
            s = self.polynomial(c.sign * c.p * num[0][1], self.beta)
            negative = s.startswith("-")
            return (s.lstrip("- ") if negative else s), negative
        return self.magnitude(_Product(1, c.p, c.q, num, c.den)), c.sign < 0

    def _ordered(self, factors: list) -> list:
        rank = {"beta": 0, "omb": 1, "k": 2, "poly": 3, "kpoly": 3, "ksum": 4}

        def key(f):
            kind, value, e = f
            if kind in ("poly", "kpoly"):
                coeffs = [int(c) for c in reversed(value.coeffs()) if c]
                size = (len(coeffs), value.degree(), [abs(c) for c in coeffs], coeffs)
                return (rank[kind], *size, e)
            return (rank[kind], 0, 0, [], [], e)

        return sorted(factors, key=key)

    def product(self, p: int, factors: list) -> str:
        parts = [self.factor(*f)[0] for f in self._ordered(factors)]
        if p != 1 or not parts:
            parts.insert(0, str(p))
        return self.mul.join(parts)

    def magnitude(self, c: _Product) -> str:
        """|c| as a product over a product."""
        num = self.product(c.p, c.num)
        if self.latex and c.p == 1 and len(c.num) == 1 and c.num[0][2] == 1:
            kind, value, _ = c.num[0]
            if kind in ("poly", "kpoly"):  # a fraction bar needs no parentheses
                num = self.polynomial(value, self.beta if kind == "poly" else "k")
        if c.q == 1 and not c.den:
            return num
        den = self.product(c.q, c.den)
        several = (c.q != 1) + len(c.den) > 1
        if self.latex:
            return self.frac(num, den)
        return self.frac(num, f"({den})" if several else den)

    def expression(self, c: _Product) -> str:
        """The signed expression; a sign times a single polynomial is written out."""
        if c.is_zero:
            return "0"
        if c.p == 1 and c.q == 1 and not c.den and len(c.num) == 1:
            kind, value, e = c.num[0]
            if kind == "poly" and e == 1:
                return self.polynomial(c.sign * value, self.beta)
            if kind == "kpoly" and e == 1:
                return self.polynomial(c.sign * value, "k")
        body = self.magnitude(c)
        if c.sign > 0:
            return body
        return ("- " if self.latex and not body.isdigit() else "-") + body


_TEXT, _JSON, _LATEX = _Style("text"), _Style("json"), _Style("latex")


# --- the displayed coefficients ---------------------------------------------------------------


def _scale(tree) -> Fraction:
    return Fraction(tree.sign, tree.sigma)


def _rf_scaled(c: RationalFunction, scale: Fraction) -> tuple[fmpz_poly, fmpz_poly]:
    num, den = _polys(c)
    return num * scale.numerator, den * scale.denominator


def _shown(ct: CounterTerms, tree, *, k, beta, steady_state: bool) -> list[tuple[int, _Product]]:
    r"""The displayed coefficient $(-1)^{|\tau|} b(\tau)/\sigma(\tau)$ as ``[(j, P_j)]``.

    In closed form it is $\sum_j \beta^{jk} P_j(k)$, each $P_j$ a polynomial in $k$; at a given
    $k$ or in the steady state it is a single ``(0, value)``.
    """
    scale = _scale(tree)
    value = parse_beta(beta)
    terms = ct.exponential_terms(tree)
    if steady_state or k is not None:
        if steady_state:
            c = terms.get((0, 0))
            exact = c if c is not None else RationalFunction((0,), (1,))
        else:
            exact = _exact_at(terms, k, value)
        if value is None:
            return [(0, _factored(*_rf_scaled(exact, scale)))]
        return [(0, _number(scale * exact(value)))]
    groups: dict[int, dict[int, RationalFunction]] = {}
    for (j, m), c in terms.items():
        groups.setdefault(j, {})[m] = c
    out = []
    for j in sorted(groups):
        if value is None:
            shown = _k_polynomial({m: _rf_scaled(c, scale) for m, c in groups[j].items()})
        else:
            shown = _rational_k_polynomial({m: scale * c(value) for m, c in groups[j].items()})
        if not shown.is_zero:
            out.append((j, shown))
    return out


def _exact_at(terms: dict, k: int, value: Fraction | None) -> RationalFunction:
    r"""$b_k$ at an integer $k$, exactly, as a `RationalFunction` of β (or a constant)."""
    num, den = fmpz_poly([0]), fmpz_poly([1])
    for (j, m), c in terms.items():
        cn, cd = _polys(c)
        cn = cn * (k**m) * _X ** (j * k)
        num, den = num * cd + cn * den, den * cd
        g = num.gcd(den)
        num, den = num // g, den // g
    if value is not None:
        v = Fraction(*_fraction(num(fmpq(value.numerator, value.denominator))))
        v = v / Fraction(*_fraction(den(fmpq(value.numerator, value.denominator))))
        return RationalFunction((v.numerator,), (v.denominator,))
    if den[den.degree()] < 0:
        num, den = -num, -den
    return RationalFunction(
        tuple(int(c) for c in num.coeffs()) or (0,), tuple(int(c) for c in den.coeffs())
    )


def _fraction(x: fmpq) -> tuple[int, int]:
    return int(x.p), int(x.q)


def _check_counter_terms(ct) -> None:
    if not isinstance(ct, CounterTerms):
        raise ValueError(
            f"expected the CounterTerms of hbflow.counter_terms(order, method), got {ct!r}"
        )


class _Progress:
    """Progress lines on stderr once a rendering has run for a second, when it is a terminal."""

    def __init__(self, what: str, total: int, enabled: bool | None):
        self.what, self.total, self.start = what, total, time.perf_counter()
        self.enabled = _stderr_is_terminal() if enabled is None else enabled
        self.last = self.start

    def step(self, done: int, label: str) -> None:
        now = time.perf_counter()
        if (
            not self.enabled
            or now - self.start < _counter_terms.PROGRESS_AFTER_S
            or (now - self.last < 0.5 and done < self.total)
        ):
            return
        self.last = now
        print(
            f"hbflow: {self.what} [{done}/{self.total}] {label} {now - self.start:6.1f} s",
            file=sys.stderr,
            flush=True,
        )


def _views(ct, k, beta, steady_state, progress=None):
    _check_counter_terms(ct)
    if k is not None and steady_state:
        raise ValueError("give either k or steady_state, not both")
    if k is not None:
        k = check_count(k, "k", minimum=0)
    value = parse_beta(beta)
    by_order: dict[int, list] = {}
    report = _Progress("formatting", len(ct.trees), progress)
    for done, tree in enumerate(ct.trees, 1):
        groups = _shown(ct, tree, k=k, beta=beta, steady_state=steady_state)
        by_order.setdefault(tree.order, []).append((tree, groups))
        report.step(done, f"tree {tree.bracket()}")
    return by_order, value


#: The methods as the titles name them.
METHOD_NAMES = {
    "hb": "heavy ball",
    "nag": "Nesterov",
    "gd": "gradient descent",
    "nesterov": "optax/PyTorch Nesterov momentum",
    "qhm": "quasi-hyperbolic momentum",
}


def _title(ct, k, beta, steady_state) -> str:
    where = (
        "steady state (k → ∞)"
        if steady_state
        else (f"piece k = {k}" if k is not None else "piece k")
    )
    value = "" if ct.nu is None else f", ν = {ct.nu}"
    value += "" if beta is None else f", β = {parse_beta(beta)}"
    name = METHOD_NAMES[ct.method]
    return f"HBF field of {name} ({ct.method}{value}), order {ct.order}, {where}"


def _base(style: _Style, value: Fraction | None, j: int) -> str:
    """β^k, β^(2k), (9/10)^k, … in the style."""
    if value is None:
        b = style.beta
    else:
        b = _number(value)
        b = style.paren(style.magnitude(b)) if value.denominator != 1 else str(value.numerator)
    exponent = "k" if j == 1 else f"{j}k"
    if style.latex:
        return f"{b}^{{{exponent}}}"
    if style.name == "text":
        return f"{b}^k" if j == 1 else f"{b}^({j}k)"
    return f"{b}**k" if j == 1 else f"{b}**({j}*k)"


def _text_groups(groups, value) -> str:
    parts = []
    for j, p in groups:
        body = _TEXT.expression(p)
        parts.append(f"{_base(_TEXT, value, j)}·({body})" if j else body)
    return " + ".join(parts).replace("+ -", "- ")


def field_text(
    ct: CounterTerms, *, k=None, beta=None, steady_state: bool = False, progress=None
) -> str:
    r"""The field $f_k$ grouped by powers of η, in loss notation, one line per power of η.

    Each coefficient is written $P_0 + \beta^k P_1(k) + \beta^{2k} P_2(k) + \dots$: the steady
    state $P_0$ first, then the transient terms, each factored.

    **Arguments:** `ct` from `counter_terms`; `k` (a piece) or `steady_state`; `beta` (a value,
    or ``None`` for the symbol); `progress`: progress on stderr (``None``: when a terminal).

    **Returns:** the text.

    **Raises:** `ValueError` for both `k` and `steady_state`, or a bad β.
    """
    by_order, value = _views(ct, k, beta, steady_state, progress)
    lines = [_title(ct, k, beta, steady_state), ""]
    first = True
    for order, items in by_order.items():
        eta = (
            ""
            if order == 1
            else ("η" if order == 2 else "η" + str(order - 1).translate(_SUPERSCRIPT))
        )
        parts = [f"[{_text_groups(g, value)}] {tree.loss_notation()}" for tree, g in items if g]
        if not parts:
            continue
        body = ("\n" + " " * 14 + "+ ").join(parts)
        prefix = "du/dt =   " if first else "        + "
        lines.append(f"{prefix}{eta}{' · { ' if eta else ''}{body}{' }' if eta else ''}")
        first = False
    if first:
        lines.append("du/dt = 0")
    lines += [
        "",
        "∇L, H = ∇²L and ∇ᵐL[…] at u(t); "
        + ("t ≥ 0" if steady_state else "t ∈ [kη, (k+1)η]; f_k = Σ η^(|τ|-1) b_k(τ)/σ(τ) F(τ)"),
    ]
    return "\n".join(lines)


def _latex_group(j: int, p: _Product, value) -> str:
    body = _LATEX.expression(p)
    return rf"{_base(_LATEX, value, j)}\left({body}\right)" if j else body


def _latex_tree(groups, value, loss: str) -> list[str]:
    r"""One tree's term: ``\Big[ … \Big] E(τ)``, one $\beta^{jk}$ group per line when long."""
    pieces = [_latex_group(j, p, value) for j, p in groups]
    if sum(_width(p) for p in pieces) <= _LATEX_LINE or len(pieces) == 1:
        return [rf"\Big[{' + '.join(pieces)}\Big] {loss}".replace("+ -", "-")]
    lines = [rf"\Big[{pieces[0]}"]
    lines += [(rf"- {p[1:].lstrip()}" if p.startswith("-") else rf"+ {p}") for p in pieces[1:]]
    lines[-1] += rf"\Big] {loss}"
    return lines


#: About how many typeset characters fit on one line of a paper's display before a break.
_LATEX_LINE = 80


def _width(latex: str) -> int:
    """A rough typeset width: commands count as one character, braces and sizes as none."""
    latex = re.sub(r"\\(left|right|Big)", "", latex)
    latex = re.sub(r"\\frac", "", latex)
    latex = re.sub(r"\\[a-zA-Z]+", "x", latex)
    return len(re.sub(r"[{}^ ]", "", latex))


def field_latex(
    ct: CounterTerms, *, k=None, beta=None, steady_state: bool = False, progress=None
) -> str:
    r"""The field as a LaTeX ``align*`` environment, one tree per line, grouped by powers of
    $\eta$; a long coefficient continues on further lines, one $\beta^{jk}$ group per line.

    Arguments as `field_text`.
    """
    by_order, value = _views(ct, k, beta, steady_state, progress)
    piece = "k" if k is None else str(k)
    lhs = r"\dot u" if steady_state else rf"\dot u = f_{{{piece}}}(u)"
    lines: list[str] = []
    for order, items in by_order.items():
        eta = "" if order == 1 else (r"\eta" if order == 2 else rf"\eta^{{{order - 1}}}")
        trees = [(tree, g) for tree, g in items if g]
        for index, (tree, groups) in enumerate(trees):
            tree_lines = _latex_tree(groups, value, tree.loss_notation(latex=True))
            opening = index == 0
            closing = index == len(trees) - 1
            for n, text in enumerate(tree_lines):
                if n == 0 and opening:
                    lead = "" if not lines else "+ "
                    text = (rf"{lead}{eta}\Big\{{ " if eta else lead) + text
                elif n == 0:
                    text = "+ " + text
                if n == len(tree_lines) - 1 and closing and eta:
                    text += r" \Big\}"
                indent = (
                    r"&\quad "
                    if n == 0 and opening
                    else (r"&\qquad " if n == 0 else r"&\qquad\quad ")
                )
                lines.append(indent + text)
    if not lines:
        lines = [r"&0"]
    first = lines[0]
    first = first.removeprefix(r"&\quad ")
    out = [r"\begin{align*}", rf"{lhs} &= {first}" + (r" \\" if len(lines) > 1 else "")]
    out += [line + r" \\" for line in lines[1:-1]]
    if len(lines) > 1:
        out.append(lines[-1])
    out.append(r"\end{align*}")
    return "\n".join(out)


# --- JSON -------------------------------------------------------------------------------------


def _json_closed_form(terms: dict, value: Fraction | None) -> str:
    """``Σ c_{j,m} k^m β^{jk}`` term by term, in ascending (j, m): the steady state first."""
    parts = []
    for (j, m), c in sorted(terms.items()):
        if value is None:
            coeff = _factored(*_polys(c), one_minus=False)
        else:
            coeff = _number(c(value))
        if coeff.is_zero:
            continue
        extra = ([("k", None, m)] if m else []) + ([("base", j, 1)] if j else [])
        parts.append(_json_term(coeff, extra, value))
    if not parts:
        return "0"
    out = parts[0]
    for p in parts[1:]:
        out += f" - {p[1:]}" if p.startswith("-") else f" + {p}"
    return out


def _json_term(coeff: _Product, extra: list, value) -> str:
    more = []
    for kind, j, e in extra:
        if kind == "k":
            more.append(_JSON.power("k", e))
        else:
            more.append(_base(_JSON, value, j))
    if not more:
        return _JSON.expression(coeff)
    if coeff.p == 1 and coeff.q == 1 and not coeff.den and not coeff.num:
        body = "*".join(more)
    else:
        coefficient = _JSON.magnitude(_Product(1, coeff.p, coeff.q, coeff.num, coeff.den))
        if coeff.q != 1 or coeff.den:
            coefficient = f"({coefficient})"
        body = coefficient + "*" + "*".join(more)
    return ("-" + body) if coeff.sign < 0 else body


def _json_value(c: RationalFunction, value: Fraction | None) -> str:
    if value is None:
        return _JSON.expression(_factored(*_polys(c), one_minus=False))
    return _JSON.expression(_number(c(value)))


def to_json_data(
    ct: CounterTerms, *, k=None, beta=None, steady_state: bool = False, progress=None
) -> dict:
    """The JSON object of ``hbflow derive --format json``.

    Coefficient strings read back with
    ``sympy.sympify(s, locals={"beta": sympy.Symbol("beta"), "k": sympy.Symbol("k")})``; without
    `locals`, sympify reads ``beta`` as the Beta function.
    """
    _check_counter_terms(ct)
    if k is not None and steady_state:
        raise ValueError("give either k or steady_state, not both")
    if k is not None:
        k = check_count(k, "k", minimum=0)
    value = parse_beta(beta)
    report = _Progress("formatting", len(ct.trees), progress)
    zero = RationalFunction((0,), (1,))
    terms = []
    for done, tree in enumerate(ct.trees, 1):
        exact = ct.exponential_terms(tree)
        steady = _json_value(exact.get((0, 0), zero), value)
        if steady_state:
            coefficient = steady
        elif k is not None:
            coefficient = _json_value(_exact_at(exact, k, None), value)
        else:
            coefficient = _json_closed_form(exact, value)
        terms.append(
            {
                "tree": list(tree.level_sequence),
                "order": tree.order,
                "sigma": tree.sigma,
                "loss_notation": tree.loss_notation(),
                "coefficient": coefficient,
                "steady_state": steady,
            }
        )
        report.step(done, f"tree {tree.bracket()}")
    return {
        "method": ct.method,
        **({} if ct.nu is None else {"nu": str(ct.nu)}),
        "order": ct.order,
        "beta": None if value is None else str(value),
        "k": k,
        "steady_state_only": steady_state,
        "convention": CONVENTION,
        "symbols": "coefficient strings use the symbols beta and k; read them with "
        "sympy.sympify(s, locals={'beta': Symbol('beta'), 'k': Symbol('k')})",
        "terms": terms,
    }


# --- the shifted start (docs/theory.md#shifted-start) -------------------------------------------


def _shift_shown(start, tree, value: Fraction | None, style: _Style) -> str | None:
    r"""$(-1)^{|\tau|}\psi(\tau)/\sigma(\tau)$ in `style`, or ``None`` where it is zero."""
    c = start[tree]
    if not any(c.num):
        return None
    scale = _scale(tree)
    if value is None:
        product = _factored(*_rf_scaled(c, scale), one_minus=style is not _JSON)
    else:
        product = _number(c(value) * scale)
    return style.expression(product)


def _shift_title(start, value: Fraction | None) -> str:
    where = "" if value is None else f", β = {value}"
    return (
        f"Shifted start of the steady-state flow of {METHOD_NAMES[start.method]} "
        f"({start.method}{where}), order {start.order}"
    )


def _shift_groups(start, value: Fraction | None, style):
    """Per power $\\eta^n$ with a non-zero term: ``(n, [(shown coefficient, tree), ...])``."""
    for n in range(1, start.order + 1):
        shown = [(_shift_shown(start, t, value, style), t) for t in start.trees if t.order == n]
        shown = [(c, t) for c, t in shown if c is not None]
        if shown:
            yield n, shown


def shift_text(start, *, beta=None) -> str:
    r"""The shifted start $u_0' = B(\psi, u_0)$ as a paper writes it, one line per power of η:
    ``u0 + η · [β/(1 - β)^2] ∇L + η² · [β·(β + 2)/(1 - β)^4] H∇L + …`` in loss notation.

    **Arguments:** `start` from `hbflow.shifted_start`; `beta` (a value, or ``None`` for the
    symbol).

    **Returns:** the text.
    """
    value = parse_beta(beta, start.method)
    lines = [_shift_title(start, value), "", "u0' = u0"]
    for n, shown in _shift_groups(start, value, _TEXT):
        parts = [f"[{c}] {tree.loss_notation()}" for c, tree in shown]
        eta = "η" if n == 1 else "η" + str(n).translate(_SUPERSCRIPT)
        if len(parts) == 1:
            lines.append(f"    + {eta} · {parts[0]}")
        else:
            lines.append(f"    + {eta} · {{ " + ("\n" + " " * 10 + "+ ").join(parts) + " }")
    lines += [
        "",
        "∇L, H = ∇²L and ∇ᵐL[…] at u0; u0' = B(ψ, u0) = u0 + Σ η^|τ| ψ(τ)/σ(τ) F(τ)(u0), "
        "ψ = lim_k a_k · exp(-k b_∞); the steady-state flow starts at u0'",
    ]
    return "\n".join(lines)


def shift_latex(start, *, beta=None) -> str:
    r"""The shifted start as a LaTeX ``align*`` environment, grouped by powers of $\eta$."""
    value = parse_beta(beta, start.method)
    rows = []
    for n, shown in _shift_groups(start, value, _LATEX):
        parts = [rf"\Big[{c}\Big] {tree.loss_notation(latex=True)}" for c, tree in shown]
        eta = r"\eta" if n == 1 else rf"\eta^{{{n}}}"
        rows.append(rf"{eta}\Big\{{ " + r" \\ &\qquad + ".join(parts) + r" \Big\}")
    out = [r"\begin{align*}", r"u_0' &= u_0 \\"]
    out += [rf"&\quad + {row} \\" for row in rows]
    out[-1] = out[-1].rstrip(" \\")
    out.append(r"\end{align*}")
    return "\n".join(out)


def shift_json_data(start, *, beta=None) -> dict:
    """The JSON object of ``hbflow derive --shift --format json``: the term layout of
    `to_json_data`, with ``coefficient`` $= \\psi(\\tau)$ (read back with
    ``sympy.sympify(s, locals={"beta": sympy.Symbol("beta")})``)."""
    value = parse_beta(beta, start.method)
    zero = RationalFunction((0,), (1,))
    terms = []
    for tree in start.trees:
        c = start[tree]
        terms.append(
            {
                "tree": list(tree.level_sequence),
                "order": tree.order,
                "sigma": tree.sigma,
                "loss_notation": tree.loss_notation(),
                "coefficient": _json_value(c if any(c.num) else zero, value),
            }
        )
    return {
        "method": start.method,
        "order": start.order,
        "beta": None if value is None else str(value),
        "k": None,
        "steady_state_only": False,
        "shift": True,
        "convention": "shifted start u0' = B(psi, u0) = u0 + sum over trees tau of "
        "eta^|tau| * psi(tau)/sigma(tau) * F(tau)(u0), F(•) = g = -∇L, "
        "F([t1,...,tm]) = g^(m)[F(t1),...,F(tm)]; psi = lim_k a_k · exp(-k b_inf), "
        "u_k = B(a_k, u_0) from rest",
        "symbols": "coefficient strings use the symbol beta; read them with "
        "sympy.sympify(s, locals={'beta': Symbol('beta')})",
        "terms": terms,
    }

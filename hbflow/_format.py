r"""Rendering counter terms: the HBF field as a researcher writes it (text, LaTeX) and JSON.

Coefficients shown in text and LaTeX are those in front of the loss-notation differentials:
$\eta^{|\tau|-1}\,(-1)^{|\tau|}\,b_k(\tau)/\sigma(\tau)$ multiplies $E(\tau)$ (``∇L``, ``H∇L``,
``∇³L[∇L,∇L]``, …), because $F(\tau) = (-1)^{|\tau|}E(\tau)$ for $g = -\nabla L$.
"""

from __future__ import annotations

from typing import cast

import sympy

from ._counter_terms import CONVENTION, CounterTerms
from ._derive import K, parse_beta
from ._exppoly import BETA

__all__ = ["field_text", "field_latex", "to_json_data"]

# Denominators are written with (1 - beta) > 0, as in the literature: factor() gives (beta - 1),
# which is renamed to -ONE_MINUS_BETA after factoring (sympy would undo -(1 - beta) itself).
ONE_MINUS_BETA = sympy.Symbol("ONE_MINUS_BETA", positive=True)


def _pretty(expr: sympy.Expr) -> sympy.Expr:
    # sympy's annotations give factor() the return type Basic; of an Expr it is an Expr.
    return cast(sympy.Expr, sympy.factor(expr).xreplace({BETA - 1: -ONE_MINUS_BETA}))


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _shown(ct: CounterTerms, tree, *, k, beta, steady_state: bool) -> list[tuple[int, sympy.Expr]]:
    r"""The displayed coefficient $(-1)^{|\tau|} b(\tau)/\sigma(\tau)$ as ``[(j, P_j)]``.

    In closed form it is $\sum_j \beta^{jk} P_j(k)$, each $P_j$ a factored polynomial in $k$;
    at a given $k$ or in the steady state it is a single ``(0, value)``.
    """
    scale = sympy.Rational(tree.sign, tree.sigma)
    if steady_state:
        return [(0, _pretty(scale * ct.steady_state(tree, beta)))]
    if k is not None:
        return [(0, _pretty(scale * ct.at(k, beta)[tree]))]
    value = parse_beta(beta)
    b = BETA if value is None else sympy.Rational(value.numerator, value.denominator)
    groups: dict[int, sympy.Expr] = {}
    for (j, m), c in ct.exponential_terms(tree).items():
        groups[j] = groups.get(j, sympy.Integer(0)) + scale * c.to_sympy(b) * K**m
    return [(j, _collect_k(p)) for j, p in sorted(groups.items()) if p != 0]


def _check_counter_terms(ct) -> None:
    if not isinstance(ct, CounterTerms):
        raise ValueError(
            f"expected the CounterTerms of hbflow.counter_terms(order, method), got {ct!r}"
        )


def _collect_k(p: sympy.Expr) -> sympy.Expr:
    """A polynomial in k over a common denominator, each power of k with a factored coefficient,
    the leading one positive (for 0 < β < 1)."""
    num, den = sympy.fraction(sympy.factor(sympy.together(p)))
    poly = sympy.Poly(sympy.expand(num), K)
    if poly.degree() < 1:
        return _pretty(p)
    sign = -1 if poly.LC().subs(BETA, sympy.Rational(1, 2)) < 0 else 1
    collected = sum(_pretty(sign * c) * K**m for (m,), c in poly.terms())
    return sign * sympy.factor_terms(collected, sign=False) / _pretty(den)


def _views(ct, k, beta, steady_state):
    _check_counter_terms(ct)
    if k is not None and steady_state:
        raise ValueError("give either k or steady_state, not both")
    value = parse_beta(beta)
    base = BETA if value is None else sympy.Rational(value.numerator, value.denominator)
    by_order: dict[int, list] = {}
    for tree in ct.trees:
        groups = _shown(ct, tree, k=k, beta=beta, steady_state=steady_state)
        by_order.setdefault(tree.order, []).append((tree, groups))
    return by_order, base


def _title(ct, k, beta, steady_state) -> str:
    names = {"hb": "heavy ball", "nag": "Nesterov", "gd": "gradient descent"}
    where = (
        "steady state (k → ∞)"
        if steady_state
        else (f"piece k = {k}" if k is not None else "piece k")
    )
    value = "" if beta is None else f", β = {parse_beta(beta)}"
    return f"HBF field of {names[ct.method]} ({ct.method}{value}), order {ct.order}, {where}"


def _text_expr(expr: sympy.Expr) -> str:
    s = sympy.sstr(expr)
    s = s.replace("ONE_MINUS_BETA", "(1 - β)").replace("beta", "β")
    return s.replace("**", "^").replace("*", "·")


def _text_groups(groups, base) -> str:
    parts = []
    for j, p in groups:
        power = (
            "" if j == 0 else (f"{_text_expr(base)}^k" if j == 1 else f"{_text_expr(base)}^({j}k)")
        )
        if base != BETA and j:
            power = f"({_text_expr(base)})^k" if j == 1 else f"({_text_expr(base)})^({j}k)"
        parts.append(f"{power}·({_text_expr(p)})" if power else f"{_text_expr(p)}")
    return " + ".join(parts).replace("+ -", "- ")


def field_text(ct: CounterTerms, *, k=None, beta=None, steady_state: bool = False) -> str:
    r"""The field $f_k$ grouped by powers of η, in loss notation, one line per power of η.

    Each coefficient is written $P_0 + \beta^k P_1(k) + \beta^{2k} P_2(k) + \dots$: the steady
    state $P_0$ first, then the transient terms, each factored.
    """
    by_order, base = _views(ct, k, beta, steady_state)
    lines = [_title(ct, k, beta, steady_state), ""]
    first = True
    for order, items in by_order.items():
        eta = (
            ""
            if order == 1
            else ("η" if order == 2 else "η" + str(order - 1).translate(_SUPERSCRIPT))
        )
        parts = [f"[{_text_groups(g, base)}] {tree.loss_notation()}" for tree, g in items if g]
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


def _latex_groups(groups, base) -> str:
    names = {BETA: r"\beta", ONE_MINUS_BETA: r"(1 - \beta)"}
    parts = []
    for j, p in groups:
        b = sympy.latex(base, symbol_names=names)
        b = b if base == BETA else rf"\left({b}\right)"
        power = "" if j == 0 else (rf"{b}^{{k}}" if j == 1 else rf"{b}^{{{j}k}}")
        body = sympy.latex(p, symbol_names=names)
        parts.append(rf"{power}\left({body}\right)" if power else body)
    return " + ".join(parts)


def field_latex(ct: CounterTerms, *, k=None, beta=None, steady_state: bool = False) -> str:
    r"""The field as a LaTeX ``align*`` environment, grouped by powers of $\eta$."""
    by_order, base = _views(ct, k, beta, steady_state)
    rows = []
    for order, items in by_order.items():
        eta = "" if order == 1 else (r"\eta" if order == 2 else rf"\eta^{{{order - 1}}}")
        parts = [
            rf"\Big[{_latex_groups(g, base)}\Big] {tree.loss_notation(latex=True)}"
            for tree, g in items
            if g
        ]
        if parts:
            body = r" \\ &\qquad + ".join(parts)
            rows.append(rf"{eta}\Big\{{ {body} \Big\}}" if eta else body)
    piece = "k" if k is None else str(k)
    lhs = r"\dot u" if steady_state else rf"\dot u = f_{{{piece}}}(u)"
    if not rows:
        rows = ["0"]
    out = [r"\begin{align*}", rf"{lhs} &= {rows[0]} \\"]
    out += [rf"&\quad + {row} \\" for row in rows[1:]]
    out[-1] = out[-1].rstrip(" \\")
    out.append(r"\end{align*}")
    return "\n".join(out)


def to_json_data(ct: CounterTerms, *, k=None, beta=None, steady_state: bool = False) -> dict:
    """The JSON object of ``hbflow derive --format json``.

    Coefficient strings read back with
    ``sympy.sympify(s, locals={"beta": sympy.Symbol("beta"), "k": sympy.Symbol("k")})``; without
    `locals`, sympify reads ``beta`` as the Beta function.
    """
    _check_counter_terms(ct)
    if k is not None and steady_state:
        raise ValueError("give either k or steady_state, not both")
    value = parse_beta(beta)
    terms = []
    for tree in ct.trees:
        if steady_state:
            coefficient = ct.steady_state(tree, beta)
        elif k is not None:
            coefficient = ct.at(k, beta)[tree]
        else:
            coefficient = ct.closed_form(tree, beta)
        terms.append(
            {
                "tree": list(tree.level_sequence),
                "order": tree.order,
                "sigma": tree.sigma,
                "loss_notation": tree.loss_notation(),
                "coefficient": str(coefficient),
                "steady_state": str(ct.steady_state(tree, beta)),
            }
        )
    return {
        "method": ct.method,
        "order": ct.order,
        "beta": None if value is None else str(value),
        "k": k,
        "steady_state_only": steady_state,
        "convention": CONVENTION,
        "symbols": "coefficient strings use the symbols beta and k; read them with "
        "sympy.sympify(s, locals={'beta': Symbol('beta'), 'k': Symbol('k')})",
        "terms": terms,
    }

r"""The rendered fields, text and LaTeX, read back and compared with the exact coefficients.

Both renderings write the field in loss notation: each node of a tree is one derivative of
g = -grad L, so F(tau) = (-1)^|tau| E(tau) with E(tau) the loss-notation differential (grad L,
H grad L, ...), and the coefficient printed in front of E(tau) must be
eta^(|tau|-1) (-1)^|tau| b(tau)/sigma(tau), sign included.  The strings are parsed here with a
small parser of their own (no sympy LaTeX parser, which needs antlr), so a wrong sign, a missing
term or a term under the wrong power of eta fails.
"""

import re

import pytest
import sympy
from sympy.parsing.sympy_parser import (
    implicit_multiplication,
    parse_expr,
    standard_transformations,
)

import hbflow
from hbflow import counter_terms
from hbflow._cli import main

BETA, K = sympy.symbols("beta k")
LOCALS = {"beta": BETA, "k": K}
SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")


def text_to_sympy(s: str) -> sympy.Expr:
    s = s.replace("β", "beta").replace("·", "*").replace("^", "**")
    s = re.sub(r"(\d)k\b", r"\1*k", s)  # β^(2k)
    return sympy.sympify(s, locals=LOCALS)


def parse_text(out: str) -> dict[str, tuple[int, sympy.Expr]]:
    """{loss notation: (power of eta, coefficient)} from the text rendering."""
    body = out.split("\n\n")[1]
    assert body.startswith("du/dt =")
    pattern = re.compile(r"(?P<eta>η[⁰¹²³⁴⁵⁶⁷⁸⁹]*) · \{|\[(?P<coef>[^\[\]]*)\] (?P<notation>\S+)")
    terms, power = {}, 0
    for m in pattern.finditer(body):
        if m["eta"]:
            power = int(m["eta"][1:].translate(SUPERSCRIPTS) or 1)
        else:
            assert m["notation"] not in terms
            terms[m["notation"]] = (power, text_to_sympy(m["coef"]))
    return terms


def _braced(s: str, i: int) -> tuple[str, int]:
    """The contents of the group ``{...}`` that opens at s[i], and the index after it."""
    assert s[i] == "{", s[i:]
    depth = 0
    for j in range(i, len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return s[i + 1 : j], j + 1
    raise AssertionError(f"unbalanced braces in {s!r}")


def latex_to_sympy(s: str) -> sympy.Expr:
    s = s.replace(r"\left(", "(").replace(r"\right)", ")").replace(r"\beta", " beta ")
    while r"\frac" in s:
        i = s.index(r"\frac")
        num, j = _braced(s, i + len(r"\frac"))
        den, j = _braced(s, j)
        s = f"{s[:i]} (({num})/({den})) {s[j:]}"
    assert "\\" not in s, s
    s = s.replace("^", "**").replace("{", "(").replace("}", ")")
    transformations = standard_transformations + (implicit_multiplication,)
    return parse_expr(s, local_dict=dict(LOCALS), transformations=transformations)


def parse_latex(out: str) -> dict[str, tuple[int, sympy.Expr]]:
    """{loss notation: (power of eta, coefficient)} from the LaTeX rendering."""
    assert out.startswith(r"\begin{align*}") and out.rstrip().endswith(r"\end{align*}")
    pattern = re.compile(
        r"(?P<eta>\\eta(?:\^\{(?P<p>\d+)\})?\\Big\\\{)"
        r"|\\Big\[(?P<coef>.*?)\\Big\] (?P<notation>.*?)(?= \\\\| \\Big\\\}|$)",
        re.M,
    )
    terms, power = {}, 0
    for m in pattern.finditer(out):
        if m["eta"]:
            power = int(m["p"] or 1)
        else:
            assert m["notation"] not in terms
            terms[m["notation"]] = (power, latex_to_sympy(m["coef"]))
    return terms


def expected(ct, tree, *, k, beta, steady_state):
    """(-1)^|tau| b(tau)/sigma(tau) from the exact counter terms."""
    if steady_state:
        b = ct.steady_state(tree, beta)
    elif k is not None:
        b = ct.at(k, beta)[tree]
    else:
        b = ct.closed_form(tree, beta)
    return (-1) ** tree.order * b / tree.sigma


def check(terms, ct, *, latex, k=None, beta=None, steady_state=False):
    by_notation = {t.loss_notation(latex=latex): t for t in ct.trees}
    assert len(by_notation) == len(ct.trees)
    assert set(terms) <= set(by_notation)
    for notation in set(by_notation) - set(terms):  # only zero terms may be left out
        assert expected(ct, by_notation[notation], k=k, beta=beta, steady_state=steady_state) == 0
    for notation, (power, shown) in terms.items():
        tree = by_notation[notation]
        assert power == tree.order - 1, notation
        want = expected(ct, tree, k=k, beta=beta, steady_state=steady_state)
        assert shown.free_symbols <= want.free_symbols | {K, BETA}
        # exact comparison at sample points (the rendering is refactored, not simplified back)
        for kk in (0, 5):
            for bb in (sympy.Rational(1, 3), sympy.Rational(9, 10)):
                point = {K: kk, BETA: bb}
                assert shown.subs(point) == want.subs(point), (notation, point, shown, want)


CASES = [
    dict(method="hb", order=3),
    dict(method="nag", order=3),
    dict(method="hb", order=3, beta="9/10"),
    dict(method="nag", order=4, k=3, beta="1/2"),
    dict(method="hb", order=3, k=0),
    dict(method="hb", order=4, steady_state=True),
    dict(method="nag", order=3, steady_state=True, beta="7/9"),
    dict(method="gd", order=4),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
@pytest.mark.parametrize("latex", [False, True], ids=["text", "latex"])
def test_rendered_coefficients_read_back_exactly(case, latex):
    case = dict(case)
    ct = counter_terms(case.pop("order"), case.pop("method"))
    render = hbflow.field_latex if latex else hbflow.field_text
    out = render(ct, **case)
    terms = (parse_latex if latex else parse_text)(out)
    check(terms, ct, latex=latex, **case)


def test_cli_piece_zero_is_one_euler_step(capsys):
    # Piece 0 of heavy ball from rest is one explicit Euler step; its modified field is
    # f = g - (eta/2) g'g + ... = -grad L - (eta/2) H grad L + ... (HLW IX.1, g = -grad L).
    assert main(["derive", "--order", "2", "--k", "0"]) == 0
    terms = parse_text(capsys.readouterr().out)
    assert terms == {"∇L": (0, -1), "H∇L": (1, sympy.Rational(-1, 2))}
    assert main(["derive", "--order", "2", "--k", "0", "--format", "latex"]) == 0
    terms = parse_latex(capsys.readouterr().out)
    assert terms == {r"\nabla L": (0, -1), r"H\,\nabla L": (1, sympy.Rational(-1, 2))}


@pytest.mark.parametrize("fmt", ["text", "latex"])
def test_cli_steady_state_is_the_gradient_norm_penalty(capsys, fmt):
    # du/dt = -grad L~/(1-beta), L~ = L + eta (1+beta)/(4(1-beta)^2) |grad L|^2 (docs/theory.md#heavy-ball-flow):
    # -1/(1-beta) on grad L and -(1+beta)/(2(1-beta)^3) on H grad L (grad |grad L|^2 = 2 H grad L).
    argv = ["derive", "--order", "2", "--steady-state", "--format", fmt]
    assert main(argv) == 0
    out = capsys.readouterr().out
    terms = (parse_latex if fmt == "latex" else parse_text)(out)
    want = {
        hbflow.Tree.from_level_sequence([1]): (0, -1 / (1 - BETA)),
        hbflow.Tree.from_level_sequence([1, 2]): (1, -(1 + BETA) / (2 * (1 - BETA) ** 3)),
    }
    assert len(terms) == 2
    for tree, (power, value) in want.items():
        shown_power, shown = terms[tree.loss_notation(latex=fmt == "latex")]
        assert shown_power == power and sympy.simplify(shown - value) == 0

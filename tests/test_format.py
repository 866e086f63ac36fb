"""The printed coefficients (JSON, text, LaTeX) read back to the exact counter terms.

The strings are printed from the exact integer polynomials without sympy; every one must read
back (sympy's `sympify`, or its LaTeX parser) to the expression of the sympy path
(`CounterTerms.closed_form`, `.steady_state`, `.at`), for every tree up to order 6.
"""

import functools
from fractions import Fraction

import pytest
import sympy

from hbflow import counter_terms
from hbflow._format import _LATEX, _TEXT, _shown, field_latex, to_json_data

beta, k = sympy.symbols("beta k")
LOCALS = {"beta": beta, "k": k}
# Exact samples at two values of beta and spread pieces k (the expressions are exponential
# polynomials k^m beta^(jk) with rational-function coefficients; a wrong sign, power or factor
# changes the value at almost every sample).
BETAS = (sympy.Rational(3, 7), sympy.Rational(9, 10))
KS = (0, 1, 2, 3, 5, 8, 13, 21, 34)


def _values(expr, ks=KS, betas=BETAS):
    expr = sympy.sympify(expr)
    return [expr.xreplace({beta: b, k: sympy.Integer(kk)}) for b in betas for kk in ks]


def _same(new, old, ks=KS, betas=BETAS):
    """Equal as exact numbers at every (beta, k) sample."""
    return _values(new, ks, betas) == _values(old, ks, betas)


@functools.cache
def _sympy_path(method: str, tree, view: str, beta_value=None):
    """Today's sympy expressions, computed once per module run (they are slow)."""
    ct = counter_terms(6, method)
    if view == "closed":
        return ct.closed_form(tree, beta_value)
    if view == "steady":
        return ct.steady_state(tree)
    return _sympy_at(method, int(view), beta_value)[tree]


@functools.cache
def _sympy_at(method: str, k_value: int, beta_value=None):
    """`CounterTerms.at` for every tree at once (one call costs seconds)."""
    return counter_terms(6, method).at(k_value, beta_value)


@pytest.fixture(scope="module", params=["hb", "nag", "gd"])
def ct6(request):
    return counter_terms(6, request.param)


def test_json_strings_are_the_sympy_path_expressions(ct6):
    closed = to_json_data(ct6)["terms"]
    per_k = to_json_data(ct6, k=4)["terms"]
    steady = to_json_data(ct6, steady_state=True)["terms"]
    for i, tree in enumerate(ct6.trees):
        new_closed = sympy.sympify(closed[i]["coefficient"], locals=LOCALS)
        assert _same(new_closed, _sympy_path(ct6.method, tree, "closed")), tree
        new_at = sympy.sympify(per_k[i]["coefficient"], locals=LOCALS)
        assert sympy.cancel(new_at - _sympy_path(ct6.method, tree, "4")) == 0, tree
        for entry in (closed[i], steady[i]):
            new_steady = sympy.sympify(entry["steady_state"], locals=LOCALS)
            assert sympy.cancel(new_steady - _sympy_path(ct6.method, tree, "steady")) == 0
        assert steady[i]["coefficient"] == steady[i]["steady_state"]


def test_json_strings_at_a_rational_beta(ct6):
    b = sympy.Rational(9, 10) if ct6.method != "gd" else None
    closed = to_json_data(ct6, beta=b)["terms"]
    at = to_json_data(ct6, beta=b, k=7)["terms"]
    for i, tree in enumerate(ct6.trees):
        new = sympy.sympify(closed[i]["coefficient"], locals=LOCALS)
        assert new.free_symbols <= {k}
        assert _same(new, _sympy_path(ct6.method, tree, "closed", b)), tree
        assert sympy.Rational(at[i]["coefficient"]) == _sympy_path(ct6.method, tree, "7", b)


def _text_to_sympy(s: str) -> sympy.Expr:
    s = s.replace("·", "*").replace("^", "**").replace("β", "beta")
    return sympy.sympify(s, locals=LOCALS)


def _displayed(groups, to_sympy, style, base=beta):
    return sum((base ** (j * k) if j else 1) * to_sympy(style.expression(p)) for j, p in groups)


def _latex_to_sympy(s: str) -> sympy.Expr:
    from sympy.core.function import AppliedUndef
    from sympy.parsing.latex import parse_latex

    expr = parse_latex(s)
    # The LaTeX parser reads "\beta \left(x\right)" as a function beta applied to x.
    symbols = {"beta": beta, "k": k}
    return expr.replace(
        lambda e: isinstance(e, AppliedUndef) and e.func.__name__ in symbols,
        lambda e: symbols[e.func.__name__] * e.args[0],
    ).xreplace({sympy.Symbol("beta"): beta, sympy.Symbol("k"): k})


@pytest.mark.parametrize("view", ["closed", "per_k", "steady"])
def test_text_groups_are_the_exact_coefficients(ct6, view):
    kw = {"closed": {}, "per_k": {"k": 4}, "steady": {"steady_state": True}}[view]
    for tree in ct6.trees:
        groups = _shown(ct6, tree, k=kw.get("k"), beta=None, steady_state=view == "steady")
        shown = _displayed(groups, _text_to_sympy, _TEXT)
        expected = _sympy_path(ct6.method, tree, {"per_k": "4"}.get(view, view))
        assert _same(shown, tree.sign * expected / tree.sigma), (tree, view)


def test_text_groups_at_a_rational_beta(ct6):
    b = None if ct6.method == "gd" else sympy.Rational(9, 10)
    for tree in ct6.trees:
        groups = _shown(ct6, tree, k=None, beta=b, steady_state=False)
        shown = _displayed(groups, _text_to_sympy, _TEXT, base=b if b is not None else beta)
        expected = _sympy_path(ct6.method, tree, "closed", b)
        assert _same(shown, tree.sign * expected / tree.sigma), tree


@pytest.mark.parametrize("method", ["hb"])
def test_latex_terms_parse_back_to_the_exact_coefficients(method):
    pytest.importorskip("antlr4")
    ct = counter_terms(4, method)
    for tree in ct.trees:
        groups = _shown(ct, tree, k=None, beta=None, steady_state=False)
        shown = _displayed(groups, _latex_to_sympy, _LATEX)
        assert _same(shown, tree.sign * ct.closed_form(tree) / tree.sigma, ks=(0, 1, 2, 9)), tree


def test_latex_breaks_long_fields_over_lines():
    out = field_latex(counter_terms(3, "nag"))
    lines = out.splitlines()
    assert lines[0] == r"\begin{align*}" and lines[-1] == r"\end{align*}"
    body = lines[1:-1]
    # one tree or one beta^(jk) group per line: no line holds two trees' differentials
    assert all(line.count(r"\nabla") <= 3 for line in body)
    assert any(line.startswith("&") and r"+ \beta^{2k}\left(" in line for line in body)
    assert all(line.endswith(r" \\") for line in body[:-1]) and not body[-1].endswith(r"\\")
    # every line of an align* row has one alignment point, and the braces balance per field
    assert all(line.count("&") == 1 for line in body)
    assert out.count(r"\Big[") == out.count(r"\Big]") == len(counter_terms(3, "nag").trees)
    assert out.count(r"\left(") == out.count(r"\right)")
    for line in body:  # \left( … \right) never spans a line break
        assert line.count(r"\left(") == line.count(r"\right)"), line


def test_no_sympy_objects_are_built_for_json(monkeypatch):
    # The JSON/text/LaTeX path must not go through sympy: make sympy's factor unusable.
    import hbflow._derive as derive

    def refuse(*args, **kwargs):
        raise AssertionError("sympy used on the formatting path")

    monkeypatch.setattr(sympy, "factor", refuse)
    monkeypatch.setattr(derive.RationalFunction, "to_sympy", refuse)
    ct = counter_terms(4, "hb")
    to_json_data(ct)
    to_json_data(ct, k=3, beta=Fraction(1, 2))
    field_latex(ct, steady_state=True)

"""`hbflow derive`: JSON, text and LaTeX output, and errors on stderr."""

import json
import subprocess
import sys

import pytest
import sympy
from cli_runner import run_cli

from hbflow import Tree, counter_terms

LOCALS = {"beta": sympy.Symbol("beta"), "k": sympy.Symbol("k")}


run = run_cli


def test_json_order_four(capsys):
    code, out, err = run(capsys, "derive", "--order", "4", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["method"] == "hb" and data["order"] == 4 and "sigma" in data["convention"]
    assert len(data["terms"]) == 8
    ct = counter_terms(4, "hb")
    for term in data["terms"]:
        tree = Tree.from_level_sequence(term["tree"])
        assert term["tree"][0] == 1 and term["order"] == tree.order and term["sigma"] == tree.sigma
        closed = sympy.sympify(term["coefficient"], locals=LOCALS)
        steady = sympy.sympify(term["steady_state"], locals=LOCALS)
        assert closed.free_symbols == {LOCALS["beta"], LOCALS["k"]}
        # round trip: the string is the exact closed form (checked exactly at sample points)
        for kk in (0, 1, 7):
            for b in (sympy.Rational(1, 3), sympy.Rational(9, 10)):
                value = closed.subs({LOCALS["k"]: kk, LOCALS["beta"]: b})
                assert value == ct.at(kk, beta=b)[tree]
        assert sympy.simplify(steady - ct.steady_state(tree)) == 0


def test_json_with_beta_and_k_gives_numbers(capsys):
    code, out, _ = run(
        capsys, "derive", "--order", "3", "--beta", "0.9", "--k", "2", "--format", "json"
    )
    data = json.loads(out)
    assert code == 0 and data["beta"] == "9/10" and data["k"] == 2
    first = sympy.Rational(data["terms"][0]["coefficient"])
    assert first == (1 - sympy.Rational(9, 10) ** 3) / (1 - sympy.Rational(9, 10))


def test_text_reads_like_an_equation(capsys):
    code, out, _ = run(capsys, "derive", "--order", "3", "--format", "text")
    assert code == 0
    lines = out.splitlines()
    assert lines[2].startswith("du/dt =") and "∇L" in lines[2]
    assert any(line.lstrip().startswith("+ η ·") and "H∇L" in line for line in lines)
    assert "η² · {" in out and "∇³L[∇L,∇L]" in out and "H²∇L" in out
    assert "(1 - β)" in out and "β^k" in out


def test_latex_steady_state(capsys):
    code, out, _ = run(capsys, "derive", "--order", "2", "--steady-state", "--format", "latex")
    assert code == 0 and out.startswith(r"\begin{align*}") and r"H\,\nabla L" in out
    # -(1+beta)/(2(1-beta)^3) on H grad L: the gradient-norm penalty, sign included
    assert r"\Big[- \frac{\beta + 1}{2 (1 - \beta)^{3}}\Big] H\,\nabla L" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--order", "0"], "order must be an integer >= 1"),
        (["--order", "2", "--beta", "1"], "beta must be in [0, 1)"),
        (["--order", "2", "--beta", "abc"], "beta must be a number in [0, 1)"),
        (["--order", "2", "--method", "adam"], "method must be one of hb, nag, gd, nesterov, qhm"),
        (["--order", "2", "--format", "xml"], "format must be one of text, latex, json"),
        (["--order", "2", "--k", "-1"], "k must be an integer >= 0"),
        (["--order", "2", "--method", "gd", "--beta", "0.5"], "method 'gd' is the case beta = 0"),
        (["--order", "two"], "invalid int value"),
        (["--order", "2", "--k", "1", "--steady-state"], "not allowed with argument"),
    ],
)
def test_errors_go_to_stderr(capsys, argv, message):
    code, out, err = run(capsys, "derive", *argv)
    assert code == 2 and out == "" and message in err and "Traceback" not in err


def test_console_entry_point_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "hbflow._cli", "derive", "--order", "1", "--beta", "2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "beta must be in [0, 1)" in proc.stderr and "Traceback" not in proc.stderr


def test_latex_names_the_piece(capsys):
    code, out, _ = run(capsys, "derive", "--order", "2", "--k", "0", "--format", "latex")
    # piece 0 of heavy ball is one explicit Euler step: -∇L - (η/2) H∇L  (HLW IX.1)
    assert code == 0 and r"\dot u = f_{0}(u)" in out
    assert r"\Big[-1\Big] \nabla L" in out and r"\Big[- \frac{1}{2}\Big] H\,\nabla L" in out


@pytest.mark.parametrize("method", ["hb", "nag"])
def test_displayed_coefficients_are_exact(method):
    # The text/LaTeX view regroups and refactors each coefficient (powers of beta^k, powers of k,
    # (1 - beta) denominators); it must still be exactly (-1)^|tau| b_k(tau) / sigma(tau).
    from hbflow._format import _TEXT, _shown

    beta, k = LOCALS["beta"], LOCALS["k"]
    ct = counter_terms(4, method)
    for tree in ct.trees:
        groups = _shown(ct, tree, k=None, beta=None, steady_state=False)
        shown = sum(
            (beta ** (j * k) if j else 1)
            * sympy.sympify(
                _TEXT.expression(p).replace("·", "*").replace("^", "**").replace("β", "beta"),
                locals=LOCALS,
            )
            for j, p in groups
        )
        for kk in (0, 1, 5):
            expected = tree.sign * ct.at(kk)[tree] / tree.sigma
            assert sympy.simplify(shown.subs(k, kk) - expected) == 0


@pytest.mark.parametrize("beta", ["0", "0.0", "0/1", "0.00"])
def test_gd_accepts_beta_zero_written_any_way(capsys, beta):
    # beta is compared as a number: every spelling of 0 is gradient descent's beta.
    code, out, err = run(capsys, "derive", "--order", "2", "--method", "gd", "--beta", beta)
    assert code == 0 and err == ""
    code_plain, out_plain, _ = run(capsys, "derive", "--order", "2", "--method", "gd")
    assert code_plain == 0 and out.splitlines()[1:] == out_plain.splitlines()[1:]


def test_a_broken_order_subcommand_fails_loudly(monkeypatch):
    # If the order subcommand cannot be imported, the CLI must fail, not silently lose it.
    import importlib

    import hbflow._cli

    monkeypatch.setitem(sys.modules, "hbflow._cli_order", None)
    try:
        with pytest.raises(ImportError):
            importlib.reload(hbflow._cli)
            hbflow._cli.build_parser()
    finally:
        monkeypatch.undo()
        importlib.reload(hbflow._cli)
    assert "order" in hbflow._cli.build_parser().format_help()


def test_derivation_progress_goes_to_stderr(monkeypatch, capsys):
    from hbflow import _counter_terms

    monkeypatch.setattr(_counter_terms, "PROGRESS_AFTER_S", 0.0)
    _counter_terms.derive_counter_terms(3, "nag", progress=True)
    err = capsys.readouterr().err
    assert "hbflow: deriving nag order 3: recurrences for the trees of order 3" in err
    assert "its logarithm b_k" in err and err.rstrip().endswith("s)")
    _counter_terms.derive_counter_terms(3, "nag", progress=False)
    assert capsys.readouterr().err == ""


def test_quick_derivation_is_silent(capsys):
    from hbflow import _counter_terms

    _counter_terms.derive_counter_terms(2, "hb", progress=True)  # well under a second
    assert capsys.readouterr().err == ""


def test_formatting_progress_goes_to_stderr(monkeypatch, capsys):
    from hbflow import _counter_terms
    from hbflow._format import field_text, to_json_data

    monkeypatch.setattr(_counter_terms, "PROGRESS_AFTER_S", 0.0)
    ct = counter_terms(3, "hb")
    field_text(ct, progress=True)
    err = capsys.readouterr().err
    assert "hbflow: formatting [4/4] tree [[•]]" in err
    to_json_data(ct, progress=False)
    assert capsys.readouterr().err == ""
    code, out, err = run(capsys, "derive", "--order", "3")  # stderr is not a terminal here
    assert code == 0 and err == ""

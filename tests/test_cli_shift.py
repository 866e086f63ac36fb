"""``hbflow derive --shift`` and ``hbflow order --after``: output and bad input."""

import json

import pytest
import sympy
from cli_runner import run_cli

BETA = sympy.Symbol("beta")


run = run_cli


def test_shift_text_reads_like_a_paper(capsys):
    code, out, err = run(capsys, "derive", "--order", "2", "--shift")
    assert code == 0, err
    lines = out.splitlines()
    assert "u0' = u0" in lines
    # u0 + η β/(1-β)² ∇L + η² β(β+2)/(1-β)⁴ H∇L: signs in loss notation, F(•) = -∇L.
    assert "    + η · [β/(1 - β)^2] ∇L" in lines
    assert "    + η² · [β·(β + 2)/(1 - β)^4] H∇L" in lines


def test_shift_json_has_psi_as_coefficient(capsys):
    code, out, err = run(
        capsys, "derive", "--order", "3", "--method", "nag", "--shift", "--format", "json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["shift"] is True and data["method"] == "nag" and data["order"] == 3
    terms = {tuple(t["tree"]): t for t in data["terms"]}
    assert len(terms) == 4
    psi = {k: sympy.sympify(t["coefficient"], locals={"beta": BETA}) for k, t in terms.items()}
    assert sympy.simplify(psi[(1,)] + BETA / (1 - BETA) ** 2) == 0
    assert sympy.simplify(psi[(1, 2)] - BETA * (1 + BETA + BETA**2) / (1 - BETA) ** 4) == 0


def test_shift_at_a_beta_and_in_latex(capsys):
    code, out, _ = run(capsys, "derive", "--order", "2", "--shift", "--beta", "1/2")
    assert code == 0 and "[2] ∇L" in out  # β/(1-β)² = 2 at β = 1/2
    assert "[20] H∇L" in out  # β(β+2)/(1-β)⁴ = (5/4)·16 = 20
    code, out, _ = run(capsys, "derive", "--order", "2", "--shift", "--format", "latex")
    assert code == 0 and out.startswith(r"\begin{align*}") and r"u_0' &= u_0" in out
    code, out, _ = run(capsys, "derive", "--order", "3", "--shift", "--method", "gd")
    assert code == 0 and "u0' = u0" in out and "∇L" not in out.split("u0' = u0")[1].split("\n\n")[0]


def test_shift_of_library_nesterov_and_qhm_refused(capsys):
    # psi(•) = -β²/(1-β)² for optax's Nesterov, shown in loss notation as +β²/(1-β)² ∇L.
    code, out, err = run(capsys, "derive", "--order", "2", "--shift", "--method", "nesterov")
    assert code == 0, err
    assert out.startswith("Shifted start of the steady-state flow of optax/PyTorch Nesterov")
    assert "    + η · [β^2/(1 - β)^2] ∇L" in out.splitlines()
    code, out, err = run(
        capsys, "derive", "--order", "2", "--shift", "--method", "qhm", "--nu", "0.7"
    )
    assert code == 2 and out == "" and "not 'qhm'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv,match",
    [
        (
            ["derive", "--order", "2", "--shift", "--k", "3"],
            "not allowed with argument --(shift|k)",
        ),
        (
            ["derive", "--order", "2", "--shift", "--steady-state"],
            "not allowed with argument --(shift|steady-state)",
        ),
        (
            ["order", "--after", "-0.5"],
            r"--after must be a finite number with 0 <= --after < horizon",
        ),
        (["order", "--after", "2", "--horizon", "2"], r"--after .* < horizon = 2"),
        (["order", "--after", "later"], r"--after must be a number"),
        (["order", "--after", "inf"], r"--after must be finite"),
    ],
)
def test_bad_input_exits_2(capsys, argv, match):
    import re

    code, out, err = run(capsys, *argv)
    assert code == 2, (code, err)
    assert out == "" and "Traceback" not in err
    assert re.search(match, err), err

"""``hbflow order --batch-size``: the stochastic study on the command line."""

import json

import pytest
from cli_runner import run_cli


def run(capsys, *argv):
    return run_cli(capsys, "order", *argv)


def test_exact_study_as_json(capsys, tmp_path):
    plot = tmp_path / "weak.png"
    code, out, err = run(
        capsys,
        "--batch-size",
        "4",
        "--paths",
        "exact",
        "--method",
        "gd",
        "--etas",
        "0.02,0.01,0.005",
        "--horizon",
        "1",
        "--models",
        "sme1,sme-steady2",
        "--phi",
        "second-moment,loss",
        "--format",
        "json",
        "--plot",
        str(plot),
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["problem"] == "least-squares" and data["paths"] == "exact"
    assert data["batch_size"] == 4 and data["phi"] == "second-moment"
    assert abs(data["models"]["sme1"]["slope"] - 1) < 0.3
    assert abs(data["by_phi"]["loss"]["sme-steady2"]["slope"] - 2) < 0.3
    assert data["models"]["sme1"]["max_errors_stderr"] == [0.0, 0.0, 0.0]
    assert plot.stat().st_size > 0


def test_default_models_and_text(capsys):
    code, out, err = run(capsys, "--batch-size", "2", "--etas", "0.02,0.01", "--horizon", "0.2")
    assert code == 0, err
    assert "problem: least-squares" in out and "exact moments" in out
    assert "sme1" in out and "sme-hbf2" in out and "measured" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
        (["--batch-size", "33"], "--batch-size must be in [1, n = 32]"),
        (["--batch-size", "2", "--paths", "1"], "--paths must be an integer >= 2"),
        (["--batch-size", "2", "--loss", "m:f"], "--loss cannot be combined"),
        (["--batch-size", "2", "--problem", "double-well"], "has no mini-batch version"),
        (["--batch-size", "2", "--models", "hbf2"], "unknown SDE model"),
        (["--batch-size", "2", "--phi", "var"], "unknown test function"),
        (
            ["--batch-size", "2", "--problem", "logistic-regression", "--paths", "exact"],
            "least-squares problem",
        ),
    ],
)
def test_bad_input_exits_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err

"""The ``hbflow order`` command: default study, JSON, user losses, plots and error messages."""

import json
import re
import subprocess
import sys
import textwrap

import pytest
from cli_runner import run_cli


def run(capsys, *argv):
    return run_cli(capsys, "order", *argv)


def test_default_study(capsys):
    code, out, err = run(capsys)
    assert code == 0, err
    assert "himmelblau-scaled" in out and "slope" in out
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line[:3] in ("hbf", "rgf")
    }
    assert set(rows) == {"hbf1", "hbf2", "hbf3", "hbf4", "rgf"}
    for name in ("hbf1", "hbf2", "hbf3", "hbf4"):
        slope = float(rows[name][5])  # name, expected order, three errors, slope
        assert abs(slope - int(name[3:])) <= 0.3, rows[name]


def test_json_output(capsys):
    code, out, _ = run(
        capsys,
        "--problem",
        "double-well",
        "--etas",
        "0.02,0.01",
        "--horizon",
        "0.5",
        "--models",
        "hbf2,rgf,ks2,mgf,gf",
        "--format",
        "json",
        "--method",
        "nag",
        "--beta",
        "0.3",
    )
    assert code == 0
    data = json.loads(out)
    assert data["method"] == "nag" and data["beta"] == 0.3 and data["horizon"] == 0.5
    assert data["etas"] == [0.02, 0.01]
    assert list(data["models"]) == ["hbf2", "rgf", "ks2", "mgf", "gf"]
    for m in data["models"].values():
        assert set(m) >= {"expected_order", "max_errors", "final_errors", "slope", "solver_error"}
        assert len(m["max_errors"]) == 2 and len(m["solver_error"]) == 2
    assert data["models"]["gf"]["expected_order"] == 0
    assert abs(data["models"]["hbf2"]["slope"] - 2) < 0.3


def test_user_loss_and_plot(capsys, tmp_path, monkeypatch):
    (tmp_path / "myloss.py").write_text(
        textwrap.dedent("""
        import jax.numpy as jnp

        def loss(u):
            return 0.25 * (u[0] ** 2 - 1) ** 2 + 0.5 * u[1] ** 2 + 0.1 * jnp.sin(u[0] * u[1])
    """)
    )
    monkeypatch.chdir(tmp_path)
    png = tmp_path / "out" / "order.png"
    code, out, err = run(
        capsys,
        "--loss",
        "myloss:loss",
        "--x0",
        "0.5,0.7",
        "--method",
        "gd",
        "--etas",
        "0.04,0.02,0.01",
        "--horizon",
        "0.4",
        "--models",
        "hbf1,hbf3,steady2",
        "--plot",
        str(png),
    )
    assert code == 0, err
    assert "myloss:loss" in out and "plot written" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--beta", "1.0"], r"--beta must be in \[0, 1\)"),
        (["--beta", "abc"], r"--beta must be a number"),
        (["--etas", "0.04,0"], r"--etas: every step size must be a finite number > 0"),
        (["--etas", "0.03", "--horizon", "1"], r"horizon 1 must be a positive integer multiple"),
        (["--models", "hbf2,foo"], r"unknown model 'foo'; valid models are hbfN and steadyN"),
        (["--method", "sgd"], r"method must be one of hb, nag, gd, nesterov, qhm"),
        (["--method", "gd", "--beta", "0.5"], r"method 'gd' is the case beta = 0"),
        (["--problem", "nope"], r"--problem must be one of .*himmelblau.*, got 'nope'"),
        (["--format", "xml"], r"--format must be one of text, json, got 'xml'"),
        (["--loss", "nploss.py:loss", "--x0", "1,2"], r"drop the \.py, e\.g\. --loss nploss:loss"),
        (["--loss", "no_such_module:f", "--x0", "1,2"], r"--loss: cannot import module"),
        (["--loss", "json:loads"], r"--x0 is required with --loss"),
        (["--x0", "no_such_file.npz"], r"--x0: no file 'no_such_file\.npz'"),
        (["--x0", "json:no_such_name"], r"--x0: module 'json' has no attribute 'no_such_name'"),
        (["--x0", "no_such_module:x"], r"--x0: cannot import module 'no_such_module'"),
        (["--x0", "json:__doc__"], r"--x0 must be an array of real numbers"),
        (["--x0", "1,nan"], r"--x0 must be finite"),
    ],
)
def test_errors_name_the_parameter(capsys, argv, match):
    code, out, err = run(capsys, *argv)
    assert code != 0
    assert out == ""
    assert "Traceback" not in err
    assert re.search(match, err), err


def test_non_scalar_user_loss(capsys, tmp_path, monkeypatch):
    (tmp_path / "badloss.py").write_text("def loss(u):\n    return u * 2\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "--loss", "badloss:loss", "--x0", "1,2")
    assert code != 0 and "loss must return a real scalar" in err and "Traceback" not in err


def test_subprocess_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "hbflow._cli", "order", "--etas", "-0.1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "--etas" in proc.stderr and "Traceback" not in proc.stderr

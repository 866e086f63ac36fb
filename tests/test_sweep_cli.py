"""hbflow sweep: bad input, the command line, data as arguments, plots, the compilation cache."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli

import hbflow
from hbflow._sweep import load_sweep_results

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = hbflow.get_problem("himmelblau-scaled")
SMALL = dict(betas=[0.5], etas=[0.04, 0.02], horizon=0.4, models=["rgf"])


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"betas": []}, "grid is empty: betas"),
        ({"etas": []}, "grid is empty: etas"),
        ({"models": []}, "grid is empty: models"),
        ({"method": []}, "grid is empty: method"),
        ({"betas": [0.5, 1.0]}, r"beta must lie in \[0, 1\), got 1.0"),
        ({"betas": [-0.1]}, r"beta must lie in \[0, 1\)"),
        ({"etas": [0.04, 0.0]}, "eta must be a finite number > 0, got 0.0"),
        ({"etas": [-0.02]}, "eta must be a finite number > 0"),
        ({"etas": None, "lambdas": [0.0]}, "lambda must be a finite number > 0"),
        ({"lambdas": [0.1]}, "exactly one of etas and lambdas"),
        ({"horizon": 0.5}, r"horizon 0.5 must be a positive integer multiple.*eta=0.04"),
        ({"horizon": 0.0}, "horizon must be a finite number > 0"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"method": "sgd"}, "method must be one of"),
        ({"method": "qhm"}, "method 'qhm' needs nu"),
        ({"method": ["hb", "qhm"], "nu": 1.5}, r"nu must be in \[0, 1\]"),
        ({"nu": 0.7}, "method 'hb' has no nu"),
        ({"data": {}, "datasets": [{}]}, r"give data \(one data set\) or datasets .*not both"),
        ({"datasets": []}, "the grid is empty: datasets holds no data set"),
        ({"datasets": "seeds"}, "datasets must be a list of pytrees, got str"),
        ({"datasets": [{"a": np.ones(2)}, {"a": np.ones(3)}]}, r"datasets\[1\] must have"),
    ],
)
def test_bad_grids_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        hbflow.sweep(PROBLEM.loss, PROBLEM.x0, **{**SMALL, **change})


def test_unwritable_or_foreign_output_folders_are_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out: cannot write the sweep to"):
        hbflow.sweep(PROBLEM.loss, PROBLEM.x0, out=blocker / "sub", **SMALL)
    with pytest.raises(ValueError, match="exists and is not a folder"):
        hbflow.sweep(PROBLEM.loss, PROBLEM.x0, out=blocker, **SMALL)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no sweep manifest"):
        hbflow.sweep(PROBLEM.loss, PROBLEM.x0, out=tmp_path / "busy", **SMALL)


def test_a_folder_with_only_a_killed_write_is_taken(tmp_path):
    from hbflow._sweep import _Store

    out = tmp_path / "o"
    out.mkdir()
    (out / ".manifest.json.abc.tmp").write_text('{"half')
    _Store(out, {"format": "x", "betas": [0.5]}, True)
    assert json.loads((out / "manifest.json").read_text()) == {"format": "x", "betas": [0.5]}
    assert (out / "chunks").is_dir()
    with pytest.raises(ValueError, match="different sweep.*betas"):
        _Store(out, {"format": "x", "betas": [0.6]}, True)


def _cli(capsys, *argv):
    return run_cli(capsys, "sweep", *argv)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--betas", "0.5,1.0"], r"--betas: every beta must be in \[0, 1\)"),
        (["--etas", "0.04,0"], "--etas: every value must be > 0"),
        (["--etas", ","], "--etas must be a comma-separated list"),
        (["--lambdas", "-1"], "--lambdas: every value must be > 0"),
        (["--horizon", "0.5"], "horizon 0.5 must be a positive integer multiple"),
        (["--seeds", "1,2"], "has no seed"),
        (["--models", "hbf0"], "hbf"),
        (["--chunk-size", "0"], "--chunk-size must be an integer >= 1"),
        (["--method", "qhm"], "method 'qhm' needs --nu"),
        (["--nu", "0.7"], "method 'hb' has no --nu"),
        (["--x0", "1,2;3"], "--x0 must have 2 numbers"),
        (["--x0", ";"], "--x0 must be a comma-separated list"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(capsys, tmp_path, argv, match):
    code, out, err = _cli(capsys, "--out", str(tmp_path / "o"), *argv)
    assert code == 2
    assert err.startswith("hbflow: error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(match, err), err


def test_cli_refuses_an_output_folder_of_another_sweep(capsys, tmp_path):
    out = str(tmp_path / "o")
    args = ["--betas", "0.5", "--etas", "0.04,0.02", "--horizon", "0.4", "--models", "rgf"]
    assert _cli(capsys, "--out", out, *args, "--no-compilation-cache")[0] == 0
    code, _, err = _cli(capsys, "--out", out, *args[:-1], "hbf1", "--no-compilation-cache")
    assert code == 2 and "different sweep" in err and "models" in err


def test_cli_unwritable_output_exits_2(capsys, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    code, _, err = _cli(
        capsys, "--out", str(blocker / "sub"), *"--etas 0.04,0.02 --horizon 0.4".split()
    )
    assert code == 2 and "cannot write" in err and "Traceback" not in err


# --- the command line runs the API's sweep -------------------------------------------------------


def test_cli_table_and_plots_match_the_api(capsys, tmp_path):
    out = tmp_path / "o"
    code, stdout, err = _cli(
        capsys,
        *"--betas 0.5,0.7 --etas 0.04,0.02 --horizon 0.4 --models rgf,hbf1".split(),
        "--out",
        str(out),
        "--plot",
        "--no-compilation-cache",
    )
    assert code == 0, err
    assert err == ""  # stderr is no terminal here: no progress lines
    assert "slopes" in stdout
    api = hbflow.sweep(
        PROBLEM.loss,
        PROBLEM.x0,
        betas=[0.5, 0.7],
        etas=[0.04, 0.02],
        horizon=0.4,
        models=["rgf", "hbf1"],
        compilation_cache=False,
    )
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(api.rows) == 8
    for r, a in zip(rows, api.rows):
        assert (float(r["beta"]), float(r["eta"]), r["model"]) == (a["beta"], a["eta"], a["model"])
        assert abs(float(r["max_error"]) - a["max_error"]) < 1e-12
    assert load_sweep_results(out)["manifest"]["loss"] == "himmelblau-scaled"
    for name in ("heatmap.png", "lambda.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_refuse_an_empty_table(tmp_path):
    from hbflow._plot_sweep import plot_lambda_collapse, plot_sweep_heatmap

    for plot in (plot_sweep_heatmap, plot_lambda_collapse):
        with pytest.raises(ValueError, match="non-empty sweep table"):
            plot([], tmp_path / "x.png")
        with pytest.raises(ValueError, match="suffix"):
            plot([{"a": 1}], tmp_path / "x")


def test_progress_reports_every_chunk():
    seen = []
    hbflow.sweep(
        PROBLEM.loss,
        PROBLEM.x0,
        **{**SMALL, "betas": [0.5, 0.6, 0.7]},
        chunk_size=2,
        progress=seen.append,
        compilation_cache=False,
    )
    assert [(p.done, p.total, p.chunk, p.points, p.resumed) for p in seen] == [
        (1, 3, 0, 2, False),
        (2, 3, 1, 2, False),
        (3, 3, 2, 2, False),
    ]


# --- data as arguments ---------------------------------------------------------------------------


def _network(seed):
    return hbflow.diagonal_linear_network(n=8, d=5, sparsity=2, seed=seed)


def test_network_problems_give_their_data_separately():
    for problem in (_network(0), hbflow.deep_linear_network(depth=2, width=3, n=6, seed=1)):
        assert problem.data_loss is not None
        assert float(problem.data_loss(problem.x0, problem.loss_data)) == float(
            problem.loss(problem.x0)
        )
    with pytest.raises(ValueError, match="both data_loss and loss_data"):
        hbflow.Problem("p", PROBLEM.loss, PROBLEM.x0, "", "", data_loss=PROBLEM.loss)


def test_a_sweep_over_seeds_equals_compare_per_seed_with_one_compilation():
    from test_sweep import _count_compilations

    grid = dict(betas=[0.5], etas=[0.04, 0.02], horizon=0.2, models=["rgf"])
    loss = _network(0).data_loss
    first = hbflow.sweep(
        loss,
        _network(0).x0,
        datasets=[_network(s).loss_data for s in (0, 1)],
        **grid,
        compilation_cache=False,
    )
    box = {}
    counts = _count_compilations(
        lambda: box.setdefault(
            "r",
            hbflow.sweep(
                loss,
                _network(0).x0,
                datasets=[_network(s).loss_data for s in (2, 3)],
                **grid,
                compilation_cache=False,
            ),
        )
    )
    assert counts == {"solve": 0, "iterates": 0}  # new data, same shapes: nothing compiled
    # One seed per sweep against compare (each compare compiles anew: its loss holds the data).
    for result, seeds in ((first, (0, 1)), (box["r"], (2, 3))):
        errors = [[r["max_error"] for r in result.rows if r["data"] == i] for i in (0, 1)]
        assert errors[0] != errors[1]  # the data sets differ, so do the paths
        for i, seed in list(enumerate(seeds))[1:]:
            p = _network(seed)
            study = hbflow.compare(
                p.loss, p.x0, beta=0.5, etas=[0.04, 0.02], horizon=0.2, models=["rgf"]
            )
            rows = [r for r in result.rows if r["data"] == i]
            got = [r["max_error"] for r in sorted(rows, key=lambda r: -r["eta"])]
            np.testing.assert_allclose(got, study.models["rgf"].max_errors, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match=r"datasets\[1\] must have the structure and shapes"):
        hbflow.sweep(
            loss, _network(0).x0, datasets=[_network(0).loss_data, {"X": 1.0, "y": 2.0}], **grid
        )


# --- the persistent compilation cache (stored programs: test_programs.py) -------------------------


def test_the_cache_switch_is_checked(monkeypatch):
    from hbflow._jax_cache import enable_compilation_cache

    monkeypatch.setenv("HBFLOW_COMPILATION_CACHE", "maybe")
    with pytest.raises(ValueError, match="HBFLOW_COMPILATION_CACHE must be 0 or 1"):
        enable_compilation_cache()
    with pytest.raises(ValueError, match="compilation_cache must be True, False or None"):
        enable_compilation_cache("yes")


def test_the_grid_of_lambdas_and_methods():
    from hbflow._sweep import _grid

    points = _grid(["hb", "gd"], [0.5, 0.75], None, [0.16, 0.08], [0.8], 2)
    hb = [(p.beta, p.eta, p.lam, p.num_steps, p.data) for p in points if p.method == "hb"]
    assert hb == [
        (0.5, 0.04, 0.16, 20, 0),
        (0.5, 0.04, 0.16, 20, 1),
        (0.5, 0.02, 0.08, 40, 0),
        (0.5, 0.02, 0.08, 40, 1),
        (0.75, 0.01, 0.16, 80, 0),
        (0.75, 0.01, 0.16, 80, 1),
        (0.75, 0.005, 0.08, 160, 0),
        (0.75, 0.005, 0.08, 160, 1),
    ]
    # gradient descent has beta = 0 only: eta = lambda.
    gd = [(p.beta, p.eta, p.num_steps) for p in points if p.method == "gd"]
    assert gd == [(0.0, 0.16, 5), (0.0, 0.16, 5), (0.0, 0.08, 10), (0.0, 0.08, 10)]
    assert [p.index for p in points] == list(range(len(points)))


@pytest.mark.parametrize(("method", "nu"), [("nesterov", None), ("qhm", 0.7)])
def test_the_library_rules_sweep_as_compare_runs_them(method, nu):
    # Their iterates take the gradient of the step before (c1 != 0) and qhm's tables need nu.
    grid = dict(etas=[0.04, 0.02], horizon=0.4, models=["hbf2", "rgf", "ks2"])
    r = hbflow.sweep(PROBLEM.loss, PROBLEM.x0, method=method, betas=[0.5], nu=nu, **grid)
    study = hbflow.compare(PROBLEM.loss, PROBLEM.x0, method=method, beta=0.5, nu=nu, **grid)
    assert len(r.rows) == 6
    for row in r.rows:
        m = study.models[row["model"]]
        i = grid["etas"].index(row["eta"])
        assert row["method"] == method and row["failure"] == ""
        assert row["expected_order"] == m.expected_order
        assert abs(row["max_error"] - m.max_errors[i]) < 1e-12
        assert abs(row["final_error"] - m.final_errors[i]) < 1e-12


def test_cli_semicolons_give_starts_as_a_grid_axis(capsys, tmp_path):
    out = tmp_path / "o"
    code, stdout, err = _cli(
        capsys,
        *"--betas 0.5 --etas 0.04,0.02 --horizon 0.4 --models rgf".split(),
        "--x0",
        "0.5,0.7;-0.4,0.3",
        "--out",
        str(out),
        "--no-compilation-cache",
    )
    assert code == 0, err
    starts = [np.array([0.5, 0.7]), np.array([-0.4, 0.3])]
    api = hbflow.sweep(PROBLEM.loss, starts=starts, compilation_cache=False, **SMALL)
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["start"]) for r in rows] == [a["start"] for a in api.rows]
    assert sorted({a["start"] for a in api.rows}) == [0, 1]
    for r, a in zip(rows, api.rows):
        assert abs(float(r["max_error"]) - a["max_error"]) < 1e-12
    assert load_sweep_results(out)["manifest"]["starts"] is not None

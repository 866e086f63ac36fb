"""hbflow.sweep: every point equals its own compare run, on 1 and 4 devices; one compilation."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from jax_log import compilations

import hbflow
from hbflow._sweep import load_sweep_results

ROOT = Path(__file__).resolve().parents[1]
PROBLEM = hbflow.get_problem("himmelblau-scaled")
MODELS = ("hbf1", "hbf2", "rgf")
GRID = dict(
    method=["hb", "nag"],
    betas=[0.5, 0.7],
    etas=[0.04, 0.02],
    horizon=0.4,
    models=MODELS,
    chunk_size=3,  # 8 points: chunks of 3, 3, 2; the last is padded
    compilation_cache=False,
)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    return hbflow.sweep(PROBLEM.loss, PROBLEM.x0, out=out, **GRID)


@pytest.fixture(scope="module")
def studies():
    return {
        (m, b): hbflow.compare(
            PROBLEM.loss,
            PROBLEM.x0,
            method=m,
            beta=b,
            etas=GRID["etas"],
            horizon=GRID["horizon"],
            models=MODELS,
        )
        for m in GRID["method"]
        for b in GRID["betas"]
    }


def _check_against_compare(rows, studies):
    assert len(rows) == 8 * len(MODELS)
    for r in rows:
        study = studies[(r["method"], r["beta"])]
        i = list(study.etas).index(r["eta"])
        m = study.models[r["model"]]
        assert r["failure"] == ""
        assert r["num_steps"] == study.num_steps[i]
        assert r["expected_order"] == m.expected_order
        assert abs(r["max_error"] - m.max_errors[i]) < 1e-12
        assert abs(r["final_error"] - m.final_errors[i]) < 1e-12
        assert abs(r["solver_error"] - m.solver_errors[i]) < 1e-12


def test_every_point_equals_its_compare_run(swept, studies):
    assert swept.devices == jax.device_count()
    _check_against_compare(swept.rows, studies)
    for r in swept.rows:
        assert r["lambda"] == pytest.approx(r["eta"] / (1 - r["beta"]) ** 2, rel=1e-15)


def test_every_point_equals_its_compare_run_on_four_devices(studies, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, sys
        import hbflow
        p = hbflow.get_problem("himmelblau-scaled")
        r = hbflow.sweep(p.loss, p.x0, **{GRID!r})
        json.dump({{"devices": r.devices, "rows": list(r.rows)}}, sys.stdout)
        """
    )
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        PYTHONPATH=str(ROOT),
        JAX_PLATFORMS="cpu",
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data["devices"] == 4
    _check_against_compare(data["rows"], studies)


def test_table_on_disk_is_the_result(swept):
    data = load_sweep_results(swept.out)
    assert data["complete"] and data["points_done"] == data["points_total"] == 8
    assert data["rows"] == list(swept.rows)
    import csv

    with open(swept.out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["point"]), r["model"]) for r in rows] == [
        (r["point"], r["model"]) for r in swept.rows
    ]
    assert [float(r["max_error"]) for r in rows] == swept.column("max_error")


def test_slopes_are_least_squares_over_eta(swept):
    for s in swept.slopes:
        rs = [
            r
            for r in swept.rows
            if (r["method"], r["beta"], r["model"]) == (s["method"], s["beta"], s["model"])
        ]
        e = sorted((r["eta"], r["max_error"]) for r in rs)
        expected = np.polyfit(np.log([x for x, _ in e]), np.log([y for _, y in e]), 1)[0]
        assert s["slope"] == pytest.approx(expected, rel=1e-10)
    assert len(swept.slopes) == 4 * len(MODELS)


def test_same_arguments_resume_without_recomputing(swept):
    again = hbflow.sweep(PROBLEM.loss, PROBLEM.x0, out=swept.out, **GRID)
    assert again.computed_chunks == ()
    assert again.resumed_chunks == (0, 1, 2)
    assert again.rows == swept.rows


def test_an_output_folder_of_another_sweep_is_refused(swept):
    other = dict(GRID, betas=[0.5, 0.8])
    with pytest.raises(ValueError, match="different sweep.*betas"):
        hbflow.sweep(PROBLEM.loss, PROBLEM.x0, out=swept.out, **other)


def _count_compilations(run):
    with compilations() as names:
        run()
    return {
        "solve": sum("sweep_solve" in n for n in names),
        "iterates": sum("sweep_iterates" in n for n in names),
    }


def test_one_compilation_per_model_group_whatever_the_grid_size():
    # rgf and hbf1 are first-order B-series fields and share one solve; ks2 has its own.
    models = ["rgf", "hbf1", "ks2"]

    def loss(u):  # a fresh loss: nothing compiled for it yet
        return PROBLEM.loss(u)

    common = dict(etas=[0.04, 0.02], horizon=0.4, chunk_size=2, compilation_cache=False)
    small = _count_compilations(
        lambda: hbflow.sweep(loss, PROBLEM.x0, betas=[0.5], models=models, **common)
    )
    assert small == {"solve": 2, "iterates": 1}

    def loss2(u):
        return PROBLEM.loss(u)

    # Five times the points, in five chunks: still one compilation per group.
    big = _count_compilations(
        lambda: hbflow.sweep(
            loss2, PROBLEM.x0, betas=[0.1, 0.3, 0.5, 0.6, 0.7], models=models, **common
        )
    )
    assert big == {"solve": 2, "iterates": 1}
    # Another grid of the same chunk shape reuses them all.
    again = _count_compilations(
        lambda: hbflow.sweep(loss2, PROBLEM.x0, betas=[0.2, 0.4, 0.8], models=models, **common)
    )
    assert again == {"solve": 0, "iterates": 0}


def test_starts_are_a_grid_axis_each_equal_to_its_compare_run():
    # Two starts, one batch: each row equals the compare run from its own start, and the
    # starts share one compilation of the solve and one of the iterates.
    starts = [PROBLEM.x0, PROBLEM.x0 + jax.numpy.array([0.3, -0.2])]

    def loss(u):  # a fresh loss: nothing compiled for it yet
        return PROBLEM.loss(u)

    common = dict(betas=[0.5], etas=[0.04, 0.02], horizon=0.4, models=["hbf2", "rgf"], chunk_size=4)
    results = {}
    counts = _count_compilations(
        lambda: results.setdefault(
            "r", hbflow.sweep(loss, starts=starts, compilation_cache=False, **common)
        )
    )
    assert counts == {"solve": 1, "iterates": 1}
    result = results["r"]
    assert sorted({r["start"] for r in result.rows}) == [0, 1]
    assert len(result.rows) == 2 * 2 * 2
    for s, u0 in enumerate(starts):
        study = hbflow.compare(
            PROBLEM.loss, u0, beta=0.5, etas=[0.04, 0.02], horizon=0.4, models=["hbf2", "rgf"]
        )
        rows = [r for r in result.rows if r["start"] == s]
        for r in rows:
            i = list(study.etas).index(r["eta"])
            assert abs(r["max_error"] - study.models[r["model"]].max_errors[i]) < 1e-12
            assert abs(r["solver_error"] - study.models[r["model"]].solver_errors[i]) < 1e-12
    # the starts are different problems: their errors differ
    e = {s: [r["max_error"] for r in result.rows if r["start"] == s] for s in (0, 1)}
    assert all(abs(a - b) > 1e-8 for a, b in zip(e[0], e[1]))
    assert {(s["start"], s["model"]) for s in result.slopes} == {
        (s, m) for s in (0, 1) for m in ("hbf2", "rgf")
    }


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(u0=PROBLEM.x0, starts=[PROBLEM.x0]), r"give u0 \(one start\) or starts .*not both"),
        (dict(), r"give u0 \(one start\) or starts \(a list of starts\)$"),
        (dict(starts=[]), "the grid is empty: starts holds no start"),
        (dict(starts=PROBLEM.x0), "starts must be a list of pytrees"),
        (dict(starts=[PROBLEM.x0, np.zeros(3)]), r"starts\[1\] must have the structure"),
        (dict(starts=[PROBLEM.x0, np.array([np.nan, 0.0])]), r"starts\[1\]"),
    ],
)
def test_bad_starts_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hbflow.sweep(PROBLEM.loss, betas=[0.5], etas=[0.1], horizon=0.2, **kwargs)

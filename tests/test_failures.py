"""Failures during a run are reported, not hidden, and partial results are kept; progress.

- Diverging iterates: the first non-finite step, and the stability limit on a quadratic.
- A failed solve: the model, the piece k and what to change.
- `compare` finishes the sweep, then raises `OrderStudyError` carrying the partial study; the
  CLI prints the partial table or JSON, the failures on stderr, and exits 1.
- Progress: a callable gets one event per run; the CLI prints it on a terminal only, never with
  ``--format json``.
"""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow import DivergenceError, OrderStudyError, SolveError, stability_limit
from hbflow._cli import main


def quadratic(u):
    return 0.5 * jnp.sum(u**2)  # Hessian I: L_max = 1


def quartic(u):  # |grad^2 L| = 3u^2 + 1 = 13 at u = 2; HB from 2 with eta = 0.5 overflows fast
    return 0.25 * jnp.sum(u**4) + 0.5 * jnp.sum(u**2)


def blow_up(u):  # rgf: u' = 2u^3 from u = 1 blows up at t = 1/4; gf: u' = u^3 at t = 1/2
    return -0.25 * jnp.sum(u**4)


def first_non_finite_numpy(method, beta, eta, lam, num_steps):
    a = beta if method == "nag" else 0.0
    u_prev = u = 1.0
    with np.errstate(all="ignore"):
        for k in range(1, num_steps + 1):
            u_prev, u = u, u + beta * (u - u_prev) - eta * lam * (u + a * (u - u_prev))
            if not np.isfinite(u):
                return k
    return None


@pytest.mark.parametrize(
    "method,beta,limit", [("hb", 0.5, 3.0), ("nag", 0.5, 1.5), ("gd", 0.0, 2.0)]
)
def test_diverging_iterates_name_the_step_and_the_stability_limit(method, beta, limit):
    u0 = jnp.array([1.0, 1.0])
    with pytest.raises(DivergenceError) as info:
        hbflow.iterates(quadratic, u0, method=method, beta=beta, eta=10.0, num_steps=2000)
    step = first_non_finite_numpy(method, beta, 10.0, 1.0, 2000)
    assert step is not None and info.value.step == step
    message = str(info.value)
    assert f"u_{step} is the first iterate with NaN or Inf" in message
    assert f"for eta=10, beta={beta:g}" in message
    assert "stable only for eta < " in message and f"= {limit:.4g} here" in message
    assert f"Use eta < {limit:.4g}." in message
    # check_finite=False hands the non-finite iterates back
    us = hbflow.iterates(
        quadratic, u0, method=method, beta=beta, eta=10.0, num_steps=2000, check_finite=False
    )
    assert not np.isfinite(np.asarray(us[-1])).all()


@pytest.mark.parametrize(
    "method,beta", [("gd", 0.0), *[(m, b) for m in ("hb", "nag") for b in (0.0, 0.3, 0.9)]]
)
def test_stability_limit_is_where_the_spectral_radius_crosses_one(method, beta):
    a = beta if method == "nag" else 0.0
    limit = stability_limit(method, beta, 1.0)

    def radius(h):  # companion matrix of u_{k+1} = (1+β)u_k - βu_{k-1} - h(u_k + a(u_k - u_{k-1}))
        companion = np.array([[1 + beta - h * (1 + a), -beta + h * a], [1.0, 0.0]])
        return np.abs(np.linalg.eigvals(companion)).max()

    assert radius(0.999 * limit) < 1 < radius(1.001 * limit)
    assert stability_limit(method, beta, 4.0) == pytest.approx(limit / 4)


# eta = 0.5 is above the stability limit of hb at u = 2 on `quartic`; eta = 0.01 is below it.
DIVERGING = dict(method="hb", beta=0.5, etas=[0.5, 0.01], horizon=5.0, models=["rgf"])


def test_compare_keeps_partial_results_when_the_iterates_diverge():
    with pytest.raises(OrderStudyError) as info:
        hbflow.compare(quartic, jnp.array([2.0]), **DIVERGING)
    study = info.value.study
    assert not study.complete and len(study.failures) == 1
    failure = study.failures[0]
    assert failure.model is None and failure.eta == 0.5
    assert "the hb iterates diverge for eta=0.5" in failure.message
    assert "stable only for eta < 2(1+beta)/L_max = 0.2308" in failure.message
    errors = study.models["rgf"].max_errors
    assert np.isnan(errors[0]) and 0 < errors[1] < 1  # the stable step size was still computed
    assert np.isnan(study.models["rgf"].slope)
    assert any("stability limit" in w for w in study.warnings)
    assert "eta=0.5, iterates: the hb iterates diverge" in str(info.value)
    assert "failed" in study.to_text()
    assert study.to_json()["failures"][0]["model"] == "iterates"

    # throw=False returns the same partial study instead of raising
    returned = hbflow.compare(quartic, jnp.array([2.0]), **DIVERGING, throw=False)
    assert returned.failures == study.failures and not returned.complete
    np.testing.assert_array_equal(returned.models["rgf"].max_errors, errors)
    assert returned.warnings == study.warnings


def test_compare_keeps_partial_results_when_a_solve_fails():
    progress = []
    with pytest.raises(OrderStudyError) as info:
        hbflow.compare(
            blow_up,
            jnp.array([1.0]),
            method="hb",
            beta=0.5,
            etas=[0.1, 0.05],
            horizon=0.4,
            models=["gf", "rgf"],
            progress=progress.append,
        )
    study = info.value.study
    assert {(f.model, f.eta) for f in study.failures} == {("rgf", 0.1), ("rgf", 0.05)}
    for f in study.failures:
        assert f"model rgf: the solve failed on piece k={round(0.2 / f.eta)}" in f.message
        assert "What to change" in f.message and "blows up" in f.message
    assert np.all(np.isfinite(study.models["gf"].max_errors))  # gf was computed
    assert np.all(np.isnan(study.models["rgf"].max_errors))
    # one progress event per run, in order, with the failures marked
    assert [p.done for p in progress] == list(range(1, 7)) and progress[-1].total == 6
    assert [(p.stage, p.eta, p.failed) for p in progress] == [
        ("iterates", 0.1, False),
        ("iterates", 0.05, False),
        ("gf", 0.1, False),
        ("gf", 0.05, False),
        ("rgf", 0.1, True),
        ("rgf", 0.05, True),
    ]


def test_solve_failure_says_what_to_change():
    with pytest.raises(SolveError) as info:
        hbflow.solve_model(
            hbflow.HeavyBallFlow(2),
            quadratic,
            jnp.array([1.0, 0.5]),
            method="hb",
            beta=0.5,
            eta=0.05,
            num_pieces=3,
            max_steps=1,
            rtol=1e-14,
            atol=1e-14,
        )
    err = info.value
    assert (err.model, err.piece, err.eta) == ("hbf2", 0, 0.05)
    message = str(err)
    assert "model hbf2: the solve failed on piece k=0" in message
    assert (
        "raise max_steps (now 1), loosen rtol/atol (now 1e-14/1e-14), or use a smaller eta"
        in message
    )


def test_progress_printed_by_compare(capsys):
    hbflow.compare(
        quadratic,
        jnp.array([1.0, 0.5]),
        etas=[0.1, 0.05],
        horizon=0.5,
        models=["rgf"],
        solver_check=False,
        progress=True,
    )
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4
    assert err[0].startswith("hbflow: [1/4] iterates") and "eta=0.1" in err[0]
    assert err[3].startswith("hbflow: [4/4] rgf") and "eta=0.05" in err[3]


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def blow_up_module(tmp_path, monkeypatch):
    (tmp_path / "hbflow_blow_up.py").write_text(
        "import jax.numpy as jnp\n\ndef loss(u):\n    return -0.25 * jnp.sum(u ** 4)\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


ARGS = [
    "order",
    "--loss",
    "hbflow_blow_up:loss",
    "--x0",
    "1",
    "--etas",
    "0.1,0.05",
    "--horizon",
    "0.4",
    "--models",
    "gf,rgf",
]


def test_cli_writes_partial_json_and_exits_1(capsys, blow_up_module):
    png = blow_up_module / "partial.png"
    code = main([*ARGS, "--format", "json", "--plot", str(png)])
    out, err = capsys.readouterr()
    assert code == 1
    data = json.loads(out)
    assert all(e is not None for e in data["models"]["gf"]["max_errors"])
    assert data["models"]["rgf"]["max_errors"] == [None, None]
    assert [f["model"] for f in data["failures"]] == ["rgf", "rgf"]
    assert "hbflow: error: order study incomplete: 2 of 6 runs failed" in err
    assert "model rgf: the solve failed on piece k=2" in err and "Traceback" not in err
    assert "hbflow: [" not in err  # no progress with --format json
    assert png.stat().st_size > 10_000  # the partial plot is written too


def test_cli_partial_text_table_and_progress_on_a_terminal(capsys, blow_up_module, monkeypatch):
    monkeypatch.setattr("hbflow._cli_order._stderr_is_terminal", lambda: True)
    code = main(ARGS)
    out, err = capsys.readouterr()
    assert code == 1
    rows = {
        line.split()[0]: line.split() for line in out.splitlines() if line[:3] in ("gf ", "rgf")
    }
    assert rows["rgf"][2:4] == ["failed", "failed"]
    assert "failed" not in rows["gf"]
    progress = [line for line in err.splitlines() if line.startswith("hbflow: [")]
    assert len(progress) == 6 and progress[-1].startswith("hbflow: [6/6] rgf")
    assert "FAILED" in progress[-1]
    assert "hbflow: error: order study incomplete" in err


def test_cli_progress_silent_when_not_a_terminal_or_json(capsys, monkeypatch):
    argv = [
        "order",
        "--problem",
        "ks-quadratic-5",
        "--etas",
        "0.01,0.005",
        "--horizon",
        "0.1",
        "--models",
        "rgf",
    ]
    assert main(argv) == 0  # capsys: stderr is not a terminal
    assert "hbflow: [" not in capsys.readouterr().err
    monkeypatch.setattr("hbflow._cli_order._stderr_is_terminal", lambda: True)
    assert main([*argv, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "hbflow: [" not in err and json.loads(out)["failures"] == []
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("hbflow: [") == 4 and "hbflow: [4/4] rgf" in err

"""Huge requests are estimated and refused before any work; spread step sizes are bucketed."""

import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow import _compare
from hbflow._cli import main
from hbflow._compare import WORK_LIMITS, _padded_length, _tree_counts, estimate_work


def _quadratic(u):
    return 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * u**2)


U0 = jnp.array([1.0, -0.5])


def test_tree_counts_are_the_rooted_tree_numbers():
    # OEIS A000081, and the enumeration of hbflow's trees.
    assert _tree_counts(10) == [1, 1, 2, 4, 9, 20, 48, 115, 286, 719]
    assert [len(hbflow.trees_of_order(n)) for n in range(1, 8)] == _tree_counts(7)


def test_estimate_counts_pieces_trees_and_order():
    est = estimate_work([0.04, 0.02, 0.01], 2.0, ["hbf3", "rgf"], U0, solver_check=True)
    assert est.pieces == 50 + 100 + 200
    # hbf3 evaluates the 4 trees of order <= 3, rgf one field; each model is solved twice.
    assert est.tree_pieces == 2 * 350 * (4 + 1)
    assert est.model_order == 3
    assert est.exceeds() == []
    once = estimate_work([0.04, 0.02, 0.01], 2.0, ["hbf3", "rgf"], U0, solver_check=False)
    assert once.tree_pieces * 2 == est.tree_pieces


def test_a_high_order_model_is_refused_at_once_on_the_command_line(capsys):
    code = main(["order", "--models", "hbf30"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "model order 30" in err and "--allow-large" in err
    assert "Traceback" not in err


def test_many_halving_step_sizes_are_refused_with_the_estimate():
    etas = [0.04 / 2**j for j in range(20)]
    with pytest.raises(ValueError, match="allow_large") as info:
        hbflow.compare(_quadratic, U0, etas=etas, horizon=2.0, models=["hbf1"])
    message = str(info.value)
    expected_pieces = sum(round(2.0 / e) for e in etas)
    assert f"{expected_pieces:,} pieces" in message and "GiB" in message


@pytest.mark.usefixtures("without_runtime_type_checks")
def test_allow_large_runs_a_study_above_the_limits(monkeypatch):
    monkeypatch.setitem(WORK_LIMITS, "tree_pieces", 10)
    args = dict(etas=[0.2, 0.1], horizon=0.4, models=["gf"])
    with pytest.raises(ValueError, match="tree-pieces"):
        hbflow.compare(_quadratic, U0, **args)
    with pytest.raises(ValueError, match="allow_large must be True or False"):
        hbflow.compare(_quadratic, U0, allow_large="yes", **args)
    study = hbflow.compare(_quadratic, U0, allow_large=True, **args)
    assert study.complete


@pytest.mark.parametrize("k_max", [1, 7, 200, 6400, 2**22 + 3])
def test_padded_lengths_cover_each_length_with_few_compilations(k_max):
    lengths = {k: _padded_length(k, k_max) for k in range(1, k_max + 1, max(1, k_max // 997))}
    for k, padded in lengths.items():
        assert k <= padded <= k_max
        # Shared at the longest, or a power of two less than twice k that saves many steps.
        assert padded == k_max or (
            padded & (padded - 1) == 0
            and padded < 2 * k
            and k_max - padded >= _compare.BUCKET_MIN_SAVING
        )
    assert len(set(lengths.values())) <= int(np.log2(k_max)) + 2
    if k_max < _compare.BUCKET_MIN_SAVING:  # short sweeps: one compilation
        assert set(lengths.values()) == {k_max}


def test_bucketed_sweep_gives_the_same_errors(monkeypatch):
    # horizon/eta = 2, 4, 8, 16, 32: with buckets for any saving, the shorter ones get their own.
    args = dict(etas=[0.4, 0.2, 0.1, 0.05, 0.025], horizon=0.8, models=["gf"], solver_check=False)
    monkeypatch.setattr(_compare, "BUCKET_MIN_SAVING", 1)
    assert [_padded_length(k, 32) for k in (2, 4, 8, 16, 32)] == [2, 4, 8, 16, 32]
    bucketed = hbflow.compare(_quadratic, U0, **args)
    monkeypatch.setattr(_compare, "BUCKET_MIN_SAVING", 10**12)  # all at the longest
    assert {_padded_length(k, 32) for k in (2, 4, 8, 16, 32)} == {32}
    padded = hbflow.compare(_quadratic, U0, **args)
    np.testing.assert_allclose(
        bucketed.models["gf"].max_errors, padded.models["gf"].max_errors, rtol=1e-10
    )
    assert bucketed.num_steps == padded.num_steps == (2, 4, 8, 16, 32)

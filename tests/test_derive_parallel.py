"""The derivation shared among worker processes equals the one in a single process."""

import pytest

from hbflow._counter_terms import derive_counter_terms
from hbflow._derive import _shares, closed_form_characters
from hbflow._parallel import PARALLEL_FROM_ORDER, derive_workers
from hbflow._trees import trees_of_order


def test_workers_give_the_same_coefficients():
    # Order 5 in three processes: the parent's share and two workers (fresh interpreters).
    alone = closed_form_characters(5, "nag", workers=1)
    shared = closed_form_characters(5, "nag", workers=3)
    assert list(shared) == list(alone)
    assert shared == alone


def test_workers_through_derive_counter_terms():
    alone = derive_counter_terms(4, "nesterov", workers=1)
    shared = derive_counter_terms(4, "nesterov", workers=2)
    assert all(alone.exponential_terms(t) == shared.exponential_terms(t) for t in alone.trees)


@pytest.mark.parametrize("workers", [1, 2, 3, 7, 100])
def test_shares_cover_the_top_order_once(workers):
    top = list(trees_of_order(6))
    shares = _shares(top, workers)
    assert 1 <= len(shares) <= min(workers, len(top))
    assert sorted(t for share in shares for t in share) == sorted(top)


def test_worker_count(monkeypatch):
    monkeypatch.delenv("HBFLOW_DERIVE_WORKERS", raising=False)
    assert derive_workers(PARALLEL_FROM_ORDER - 1) == 1
    assert derive_workers(PARALLEL_FROM_ORDER) >= 1
    assert derive_workers(3, 4) == 4
    monkeypatch.setenv("HBFLOW_DERIVE_WORKERS", "2")
    assert derive_workers(3) == 2
    assert derive_workers(12, 1) == 1
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("HBFLOW_DERIVE_WORKERS", bad)
        with pytest.raises(ValueError, match="HBFLOW_DERIVE_WORKERS|workers"):
            derive_workers(3)
    monkeypatch.delenv("HBFLOW_DERIVE_WORKERS")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            derive_workers(3, bad)


def test_a_failing_worker_raises():
    # A worker that cannot derive (here: its share lacks the smaller trees' order) reports the
    # error of the worker process.
    from hbflow import _parallel

    job = _parallel.start_worker((2, "hb", None, list(trees_of_order(3))))
    with pytest.raises(RuntimeError, match="(?s)worker failed.*KeyError"):
        job.result()

"""Coefficient tables kept on disk beside the stored programs (`hbflow._tables`).

A kept table must be the table computed afresh, for every argument it depends on; a process that
finds it must not need the counter terms; and anything unreadable is computed again.
"""

from fractions import Fraction

import numpy as np
import pytest

from hbflow import _counter_terms, _programs, _tables
from hbflow._models import HeavyBallFlow, ShiftedSteadyStateFlow, SteadyStateFlow


@pytest.fixture
def store(tmp_path):
    """The store on, in a fresh folder; off again afterwards."""
    _programs.set_directory(tmp_path / "programs")
    try:
        yield tmp_path / "tables"
    finally:
        _programs.set_directory(None)


@pytest.fixture
def counted(monkeypatch):
    """Counts the counter terms asked for (each is a table computed, not read)."""
    calls = []
    real = _counter_terms.counter_terms

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_counter_terms, "counter_terms", counting)
    return calls


# (model, method, beta, pieces, nu): each differs from the first in one thing the table depends on
CASES = [
    (HeavyBallFlow(3), "hb", 0.9, 40, None),
    (HeavyBallFlow(3), "hb", float(np.nextafter(0.9, 1.0)), 40, None),  # one ulp of beta
    (HeavyBallFlow(3), "hb", 0.9, 41, None),
    (HeavyBallFlow(2), "hb", 0.9, 40, None),
    (HeavyBallFlow(3), "nag", 0.9, 40, None),
    (HeavyBallFlow(2), "qhm", 0.9, 40, 0.7),
    (HeavyBallFlow(2), "qhm", 0.9, 40, 0.5),
    (SteadyStateFlow(3), "hb", 0.9, 40, None),
    (SteadyStateFlow(3), "hb", 0.5, 40, None),
    (ShiftedSteadyStateFlow(2), "hb", 0.9, 40, None),
    (ShiftedSteadyStateFlow(2), "nag", 0.9, 40, None),
]


def _table(case):
    model, method, beta, pieces, nu = case
    return model.coefficients(method, beta, pieces, **({} if nu is None else {"nu": nu}))


def test_a_kept_table_is_the_table_computed_afresh(store, counted):
    fresh = []
    _programs.set_directory(None)  # off: computed, nothing kept
    for case in CASES:
        fresh.append(_table(case))
    assert not store.exists()
    _programs.set_directory(store.parent / "programs")
    for case, expected in zip(CASES, fresh):
        np.testing.assert_array_equal(_table(case), expected)  # computed and kept
    assert len(list(store.iterdir())) == len(CASES)  # one file each: no two share a key
    asked = len(counted)
    for case, expected in zip(CASES, fresh):
        got = _table(case)  # read back: a key missing any argument would give another table
        np.testing.assert_array_equal(got, expected)
        got[...] = 0.0  # the caller's own copy
    assert len(counted) == asked  # nothing computed
    for case, expected in zip(CASES, fresh):
        np.testing.assert_array_equal(_table(case), expected)


def test_a_kept_table_needs_no_counter_terms(store, monkeypatch):
    expected = _table(CASES[0])

    def refuse(*args, **kwargs):
        raise AssertionError("the counter terms were asked for")

    monkeypatch.setattr(_counter_terms, "counter_terms", refuse)
    np.testing.assert_array_equal(_table(CASES[0]), expected)
    with pytest.raises(AssertionError, match="asked for"):
        _table(CASES[1])  # not kept: computed


def test_other_code_keeps_other_tables(store, counted, monkeypatch):
    expected = _table(CASES[0])
    monkeypatch.setattr(_tables, "package_digest", lambda: "another version of hbflow")
    asked = len(counted)
    np.testing.assert_array_equal(_table(CASES[0]), expected)
    assert len(counted) == asked + 1
    assert len(list(store.iterdir())) == 2


@pytest.mark.parametrize("damage", [b"", b"not a table", "wrong shape", "wrong type"])
def test_an_unreadable_table_is_computed_again_and_replaced(store, counted, damage):
    expected = _table(CASES[0])
    (path,) = store.iterdir()
    if damage == "wrong shape":
        np.save(path, np.zeros((3, 3)))
    elif damage == "wrong type":
        np.save(path, expected.astype(np.float32))
    else:
        path.write_bytes(damage)
    asked = len(counted)
    np.testing.assert_array_equal(_table(CASES[0]), expected)
    assert len(counted) == asked + 1
    np.testing.assert_array_equal(np.load(path), expected)  # replaced


def test_the_key_is_exact():
    # beta as the rational value of its float64, nu as the counter terms read it (0.7 is 7/10)
    from hbflow._models import _key

    assert _key(3, "hb", 0.9, None) == (3, "hb", Fraction(0.9), None)
    assert _key(2, "qhm", 0.9, 0.7) == (2, "qhm", Fraction(0.9), Fraction(7, 10))
    assert _key(2, "qhm", 0.9, 0.7) != _key(2, "qhm", 0.9, 0.7000000000000001)


def test_an_unwritable_folder_only_costs_time(store, counted):
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text("a file where the folder should be")
    expected = _table(CASES[0])
    np.testing.assert_array_equal(_table(CASES[0]), expected)
    assert len(counted) == 2  # computed each time

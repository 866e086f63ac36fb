"""The versioned cache of derived counter terms: shipped files, stale and damaged files."""

import json

import pytest
import sympy

from hbflow import _counter_terms as cache
from hbflow import counter_terms


def test_shipped_files_are_current():
    # Every data file shipped with the package must have been written by this code; otherwise
    # the package would silently re-derive (slowly) on every fresh install.
    shipped = sorted(cache._PACKAGE_DATA.glob("counter_terms_*.json"))
    assert {p.name.split("_")[2] for p in shipped} == {"hb", "nag", "gd", "nesterov", "qhm"}
    for path in shipped:
        ct = cache.CounterTerms.from_data(json.loads(path.read_text()))  # raises if stale
        assert path.name == cache.cache_filename(ct.method, ct.order, ct.nu)


def test_shipped_file_equals_fresh_derivation():
    shipped = json.loads((cache._PACKAGE_DATA / "counter_terms_hb_order8.json").read_text())
    loaded = cache.CounterTerms.from_data(shipped).truncate(4)
    fresh = cache.derive_counter_terms(4, "hb")
    for t in fresh.trees:
        assert loaded.exponential_terms(t) == fresh.exponential_terms(t)


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "cache_dirs", lambda: [tmp_path / "none", tmp_path])
    cache._counter_terms.cache_clear()
    yield tmp_path
    cache._counter_terms.cache_clear()


def test_written_then_loaded(user_cache):
    ct = counter_terms(3, "nag")
    path = user_cache / cache.cache_filename("nag", 3)
    assert path.exists()
    cache._counter_terms.cache_clear()
    again = counter_terms(3, "nag")
    assert all(again.exponential_terms(t) == ct.exponential_terms(t) for t in ct.trees)


def test_higher_order_file_serves_lower_order(user_cache):
    counter_terms(3, "hb")
    cache._counter_terms.cache_clear()
    two = counter_terms(2, "hb")
    assert two.order == 2 and not (user_cache / cache.cache_filename("hb", 2)).exists()


def test_stale_version_is_regenerated_with_a_warning(user_cache):
    counter_terms(2, "hb")
    path = user_cache / cache.cache_filename("hb", 2)
    data = json.loads(path.read_text())
    data["derivation_version"] = "0000000000000000"
    path.write_text(json.dumps(data))
    cache._counter_terms.cache_clear()
    with pytest.warns(RuntimeWarning, match="derivation version"):
        ct = counter_terms(2, "hb")
    assert ct.order == 2
    assert json.loads(path.read_text())["derivation_version"] == cache.DERIVATION_VERSION


@pytest.mark.parametrize("damage", ["{not json", '{"format": "something else"}', ""])
def test_damaged_file_is_regenerated_with_a_warning(user_cache, damage):
    path = user_cache / cache.cache_filename("gd", 3)
    path.write_text(damage)
    with pytest.warns(RuntimeWarning, match="ignoring counter-terms cache"):
        ct = counter_terms(3, "gd")
    assert ct.steady_state(ct.trees[1]) == sympy.Rational(-1, 2)  # Euler: -h/2 f'f
    assert json.loads(path.read_text())["derivation_version"] == cache.DERIVATION_VERSION

"""The versioned cache of derived counter terms: shipped files, stale and damaged files."""

import json
import tempfile
from pathlib import Path

import pytest
import sympy

from hbflow import _counter_terms as cache, counter_terms


def test_shipped_files_are_current():
    # Every data file shipped with the package must have been written by this code; otherwise
    # the package would silently re-derive (slowly) on every fresh install.
    shipped = sorted(cache._PACKAGE_DATA.glob("counter_terms_*.json*"))
    assert {p.name.split("_")[2] for p in shipped} == {"hb", "nag", "gd", "nesterov", "qhm"}
    for path in shipped:
        ct = cache.read_cache(path)  # raises if stale, edited or damaged
        compressed = path.name.endswith(".gz")
        assert path.name == cache.cache_filename(ct.method, ct.order, ct.nu, compressed=compressed)


def test_shipped_file_equals_fresh_derivation():
    shipped = json.loads((cache._PACKAGE_DATA / "counter_terms_hb_order8.json").read_text())
    loaded = cache.CounterTerms.from_data(shipped).truncate(4)
    fresh = cache.derive_counter_terms(4, "hb")
    for t in fresh.trees:
        assert loaded.exponential_terms(t) == fresh.exponential_terms(t)


def test_the_derivation_version_is_remembered_by_the_bytes_of_its_files(tmp_path, monkeypatch):
    import hashlib

    modules = (cache._trees, cache._bseries, cache._exppoly, cache._derive, cache._qfactored)
    paths = [Path(m.__file__) for m in (*modules, cache._parallel)]
    # Computed directly: the code of each module, docstrings dropped, hashed in order.
    digest = hashlib.sha256()
    for path in paths:
        digest.update(cache._code_of(path.read_text(encoding="utf-8")).encode())
    assert cache.DERIVATION_VERSION == digest.hexdigest()[:16]
    monkeypatch.setenv("HBFLOW_CACHE_DIR", str(tmp_path))
    assert cache.code_version(paths) == cache.DERIVATION_VERSION  # parsed, then remembered
    assert (tmp_path / "code_versions.json").exists()

    def no_parsing(source):
        raise AssertionError("parsed again")

    original = cache._code_of
    monkeypatch.setattr(cache, "_code_of", no_parsing)
    assert cache.code_version(paths) == cache.DERIVATION_VERSION  # from the memo
    with pytest.raises(AssertionError, match="parsed again"):
        cache.code_version(paths, salt="x")  # another key: parsed
    # A damaged memo is only slower.
    (tmp_path / "code_versions.json").write_text("{not json")
    monkeypatch.setattr(cache, "_code_of", original)
    assert cache.code_version(paths) == cache.DERIVATION_VERSION
    # Changed bytes are another key: an edited file is parsed again.
    edited = tmp_path / "edited.py"
    edited.write_text(paths[0].read_text(encoding="utf-8") + "\nx = 1\n")
    assert cache.code_version([edited, *paths[1:]]) != cache.DERIVATION_VERSION


def test_reading_one_order_of_a_file_builds_only_its_trees():
    path = cache._PACKAGE_DATA / "counter_terms_hb_order8.json"
    whole = cache.read_cache(path)
    for order in (1, 3, 8):
        part = cache.read_cache(path, order)
        assert part.order == order and part.trees == whole.truncate(order).trees
        assert all(part.exponential_terms(t) == whole.exponential_terms(t) for t in part.trees)
    with pytest.raises(ValueError, match="order must be between 1 and 8"):
        cache.read_cache(path, 9)
    with pytest.raises(ValueError, match="file name and contents disagree"):
        cache.read_cache(path, 3, file_order=7)


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


def _gd3_file(directory):
    return directory / cache.cache_filename("gd", 3)


def _check_gd3(ct):
    # Explicit Euler's modified field (HLW IX.1): b(•) = 1, b([•]) = -1/2.
    assert ct.steady_state(ct.trees[0]) == 1
    assert ct.steady_state(ct.trees[1]) == sympy.Rational(-1, 2)


def _flip_leading_sign(path):
    data = json.loads(path.read_text())
    assert data["trees"][0]["terms"][0][2] == ["1"]
    data["trees"][0]["terms"][0][2] = ["-1"]  # b(•) = -1: still valid JSON, wrong content
    path.write_text(json.dumps(data))


def test_an_edited_number_is_detected_and_rederived(user_cache):
    counter_terms(3, "gd")
    path = _gd3_file(user_cache)
    _flip_leading_sign(path)
    cache._counter_terms.cache_clear()
    with pytest.warns(RuntimeWarning, match="checksum"):
        ct = counter_terms(3, "gd")
    _check_gd3(ct)
    cache.read_cache(path)  # rewritten, and valid again


def test_an_edited_shipped_file_is_detected(tmp_path, monkeypatch):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    cache.write_cache(cache.derive_counter_terms(3, "gd"), shipped)
    _flip_leading_sign(_gd3_file(shipped))
    monkeypatch.setattr(cache, "_PACKAGE_DATA", shipped)
    monkeypatch.setenv("HBFLOW_CACHE_DIR", str(user))
    cache._counter_terms.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="checksum"):
            ct = counter_terms(3, "gd")
    finally:
        cache._counter_terms.cache_clear()
    _check_gd3(ct)
    assert _gd3_file(shipped).exists()  # shipped files are never deleted


def test_compressed_file_round_trip(tmp_path):
    ct = cache.derive_counter_terms(3, "nag")
    path = cache.write_cache(ct, tmp_path, compressed=True)
    assert path.name.endswith(".json.gz")
    again = cache.read_cache(path)
    assert all(again.exponential_terms(t) == ct.exponential_terms(t) for t in ct.trees)


@pytest.mark.parametrize("content", ["[]", "null", "42", '"text"', '{"format": 1}'])
def test_wrong_shape_is_ignored_with_a_warning(user_cache, content):
    _gd3_file(user_cache).write_text(content)
    with pytest.warns(RuntimeWarning, match="ignoring counter-terms cache"):
        ct = counter_terms(3, "gd")
    _check_gd3(ct)


@pytest.fixture
def read_only_cache(user_cache, monkeypatch):
    """`user_cache`, unwritable: chmod, and (as root ignores modes) refusals at the calls."""
    real_unlink, real_mkstemp = Path.unlink, tempfile.mkstemp

    def refuse(path):
        if Path(path).resolve().parent == user_cache.resolve():
            raise PermissionError(13, "Permission denied", str(path))

    def unlink(self, *args, **kwargs):
        refuse(self)
        return real_unlink(self, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):
        refuse(Path(dir) / "x")
        return real_mkstemp(*args, dir=dir, **kwargs)

    def write_text(self, *args, **kwargs):
        refuse(self)
        raise AssertionError("unreachable")

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    user_cache.chmod(0o555)
    yield user_cache
    user_cache.chmod(0o755)


def test_damaged_file_in_a_read_only_cache_derives_in_memory(read_only_cache):
    _gd3_file(read_only_cache).write_bytes(b"{damaged")
    with pytest.warns(RuntimeWarning) as record:
        ct = counter_terms(3, "gd")
    _check_gd3(ct)
    messages = " ".join(str(w.message) for w in record)
    assert "could not remove it" in messages and "could not write" in messages
    assert _gd3_file(read_only_cache).read_bytes() == b"{damaged"


def test_concurrent_writers_do_not_collide(user_cache, monkeypatch):
    # Two writers of the same file, each pausing between writing and renaming: with one shared
    # temporary name the second rename finds nothing to rename.
    import threading
    import time

    from hbflow import _files

    real_replace = _files.os.replace

    def slow_replace(src, dst):
        time.sleep(0.02)
        real_replace(src, dst)

    monkeypatch.setattr(_files.os, "replace", slow_replace)  # the writer of every cache file
    ct = cache.derive_counter_terms(2, "hb")
    errors = []

    def writer():
        for _ in range(3):
            try:
                cache.write_cache(ct, user_cache)
            except OSError as err:
                errors.append(err)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.read_cache(user_cache / cache.cache_filename("hb", 2)).order == 2
    assert not list(user_cache.glob("*.tmp"))


def test_empty_cache_dir_variable_means_unset(monkeypatch):
    monkeypatch.setenv("HBFLOW_CACHE_DIR", "")
    assert cache.cache_dirs()[-1] == Path.home() / ".cache" / "hbflow"
    monkeypatch.setenv("HBFLOW_CACHE_DIR", "/some/where")
    assert cache.cache_dirs()[-1] == Path("/some/where")

"""The folders of stored programs and tables stay under ``$HBFLOW_CACHE_MAX_MB``.

Each file written there is followed by a trim that deletes the least recently used files, by
modification time; reading a program or a table sets its time to now.
"""

import os
import time

import jax.numpy as jnp
import numpy as np
import pytest

import hbflow
from hbflow import _files, _programs
from hbflow._cli import main
from hbflow._models import HeavyBallFlow


def _file(folder, name, size, age):
    path = folder / name
    path.write_bytes(b"x" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def _names(folder):
    return {p.name for p in folder.iterdir()}


def test_trim_deletes_the_least_recently_used_files_first(tmp_path):
    # a is the oldest, e the newest; 100 bytes each
    for i, name in enumerate("abcde"):
        _file(tmp_path, f"{name}.program", 100, age=500 - 100 * i)
    _file(tmp_path, "notes.txt", 1000, age=10_000)  # another kind of file: not counted
    _file(tmp_path, ".e.program.1.tmp", 100, age=10)  # a writer at work: left alone
    _file(tmp_path, ".d.program.2.tmp", 100, age=7200)  # left by a killed writer
    _files.trim(tmp_path, ".program", 200, keep=tmp_path / "e.program")
    # exactly at the bound: d and e (200 bytes) stay, a, b and c go, oldest first
    assert _names(tmp_path) == {"d.program", "e.program", "notes.txt", ".e.program.1.tmp"}


def test_trim_never_deletes_the_file_just_written(tmp_path):
    for i, name in enumerate("abc"):
        _file(tmp_path, f"{name}.npy", 100, age=300 - 100 * i)
    _files.trim(tmp_path, ".npy", 150, keep=tmp_path / "a.npy")  # the oldest, yet kept
    assert _names(tmp_path) == {"a.npy"}
    _files.trim(tmp_path, ".npy", 10, keep=tmp_path / "a.npy")  # larger than the bound alone
    assert _names(tmp_path) == {"a.npy"}
    _files.trim(tmp_path / "missing", ".npy", 10, keep=tmp_path / "a.npy")  # nothing to do


@pytest.mark.parametrize("value", ["lots", "0", "-5", "nan", "inf", "1e400"])
def test_the_bound_is_checked(monkeypatch, value):
    monkeypatch.setenv("HBFLOW_CACHE_MAX_MB", value)
    with pytest.raises(ValueError, match=r"HBFLOW_CACHE_MAX_MB must be a number of megabytes > 0"):
        _files.cache_limit()


def test_the_bound_in_megabytes(monkeypatch):
    monkeypatch.delenv("HBFLOW_CACHE_MAX_MB", raising=False)
    assert _files.cache_limit() == 1024 * 2**20
    monkeypatch.setenv("HBFLOW_CACHE_MAX_MB", " 0.5 ")
    assert _files.cache_limit() == 2**19


def test_the_command_refuses_a_bad_bound_before_running(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HBFLOW_COMPILATION_CACHE", "1")
    monkeypatch.setenv("HBFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HBFLOW_CACHE_MAX_MB", "-1")
    try:
        code = main(["order", "--models", "hbf1", "--etas", "0.04"])
    finally:
        _programs.set_directory(None)
    captured = capsys.readouterr()
    assert code != 0
    assert "HBFLOW_CACHE_MAX_MB must be a number of megabytes > 0, got '-1'" in captured.err
    assert captured.out == ""
    assert not (tmp_path / "programs").exists()


def _iterate(c):
    scale = np.array([c, 2.0 * c])  # closed over: each c has its own programs

    def loss(u):
        return 0.5 * jnp.sum(scale * u**2)

    return hbflow.iterates(loss, jnp.array([1.0, -0.5]), method="gd", beta=0, eta=0.1, num_steps=6)


def _age(paths, seconds):
    stamp = time.time() - seconds
    for path in paths:
        os.utime(path, (stamp, stamp))


def test_a_program_read_is_kept_before_one_not_read(tmp_path, monkeypatch):
    store = tmp_path / "programs"
    _programs.set_directory(store)
    try:
        _iterate(1.0)
        first = {p for p in store.iterdir()}
        _iterate(3.0)
        second = {p for p in store.iterdir()} - first
        assert first and second
        _age(first, 200)  # the first loss's programs are the older ones
        _age(second, 100)
        _programs.set_directory(None)  # a new process: it reads the first loss's programs
        _programs.set_directory(store)
        np.testing.assert_allclose(_iterate(1.0)[1], [0.9, -0.5 * 0.8], rtol=1e-14)
        assert {p for p in store.iterdir()} == first | second  # read, not compiled again
        room = sum(p.stat().st_size for p in first | second) + 1
        monkeypatch.setenv("HBFLOW_CACHE_MAX_MB", str(room / 2**20))
        _iterate(5.0)  # a third loss: its programs push the folder over the bound
    finally:
        _programs.set_directory(None)
    left = {p for p in store.iterdir()}
    assert first <= left  # read last: kept
    assert second - left  # never read since they were written: deleted first
    assert sum(p.stat().st_size for p in left) <= room


def test_a_table_read_is_kept_before_one_not_read(tmp_path, monkeypatch):
    _programs.set_directory(tmp_path / "programs")
    tables = tmp_path / "tables"
    model = HeavyBallFlow(2)
    try:
        a = model.coefficients("hb", 0.5, 30)
        (first,) = tables.iterdir()
        b = model.coefficients("hb", 0.6, 30)
        (second,) = set(tables.iterdir()) - {first}
        _age([first], 200)
        _age([second], 100)
        np.testing.assert_array_equal(model.coefficients("hb", 0.5, 30), a)  # read: now used
        room = first.stat().st_size + second.stat().st_size + 1
        monkeypatch.setenv("HBFLOW_CACHE_MAX_MB", str(room / 2**20))
        model.coefficients("hb", 0.7, 30)
        assert first.exists() and not second.exists()
        assert len(list(tables.iterdir())) == 2
        np.testing.assert_array_equal(model.coefficients("hb", 0.6, 30), b)  # computed again
    finally:
        _programs.set_directory(None)

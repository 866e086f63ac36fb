"""Coefficient tables kept on disk, beside the stored programs (`_programs`).

A model's coefficient table is a pure function of hbflow's code and of (method, ν, order, β,
number of pieces): the counter terms it rounds are exact, and the same whether they come from a
shipped file, the user cache or a fresh derivation (a file of another derivation version, or one
whose checksum fails, is never used), and each entry is rounded once.  A table is therefore filed
under the digest of hbflow's source files and those arguments, and a process that finds it
neither parses the counter terms nor imports FLINT: about 0.2 s of a warm ``hbflow order``.

The tables follow the store's switch (`hbflow.enable_compilation_cache`): kept in ``tables``
beside ``programs`` while it is on, computed afresh in every process while it is off.  A file
that cannot be read, or holds another shape or type, is computed again and replaced.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._files import cache_limit, mark_used, package_digest, trim, write_atomically

__all__ = ["kept"]


def folder() -> Path | None:
    """Where tables are kept, or ``None`` while the store of programs is off."""
    from . import _programs

    programs = _programs.directory()
    return None if programs is None else programs.parent / "tables"


def kept(
    kind: str, parts: tuple, shape: tuple[int, ...], compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """The float64 array `compute()` of `shape`, read from disk when kept there before.

    `kind` and `parts` (plain values with an exact ``repr``: strings, integers, fractions) are
    everything the result depends on besides hbflow's code.  The result is the caller's own.
    """
    where = folder()
    if where is None:
        return compute()
    digest = hashlib.sha256(package_digest().encode())
    digest.update(repr((kind, parts, shape)).encode())
    path = where / f"{digest.hexdigest()}.npy"
    table = _read(path, shape)
    if table is not None:
        mark_used(path)
        return table
    table = compute()
    array = np.asarray(table)
    if array.dtype == np.float64 and array.shape == shape:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        try:
            write_atomically(path, buffer.getvalue(), mode=0o644)  # plain data
        except OSError:
            pass  # a read-only cache only makes the next process slower
        else:
            trim(where, ".npy", cache_limit(), path)
    return table


def _read(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(table, np.ndarray) or table.dtype != np.float64 or table.shape != shape:
        return None
    return table

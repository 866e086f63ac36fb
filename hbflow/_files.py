"""Files written whole or not at all, the user cache folder, and the digest of hbflow's own
source files.

The caches (counter terms, shifted starts, stored programs, coefficient tables, the
derivation's version) and a sweep's table are read by other processes, some of them while this
one writes: every file is written to a temporary file in its own folder and renamed over the
target, so a reader sees the old file or the new one, never half of one, and concurrent writers
never clobber one another's partial files.

The folders of stored programs and coefficient tables are bounded: after each file written
there, the least recently used files (by modification time, which a read sets to now) are
deleted until the folder holds at most ``$HBFLOW_CACHE_MAX_MB`` megabytes (default 1024).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import stat
import tempfile
import time
from pathlib import Path

__all__ = [
    "write_atomically",
    "is_temporary",
    "user_cache",
    "package_digest",
    "cache_limit",
    "mark_used",
    "trim",
    "LIMIT_VAR",
]

#: Environment variable bounding each folder of stored programs and tables, in megabytes.
LIMIT_VAR = "HBFLOW_CACHE_MAX_MB"
_DEFAULT_LIMIT_MB = 1024
#: A temporary file older than this (seconds) was left by a writer that was killed.
_STALE = 3600.0


def write_atomically(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Write `data` (text as UTF-8, no newline translation) to `path`, atomically.

    The folder is made if missing.  `mode` sets the file's permissions (``0o644`` for ordinary
    data); ``None`` keeps the temporary file's, readable by its owner only.

    **Raises:** `OSError` if the folder or the file cannot be written (the temporary file is
    removed).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_temporary(path: Path) -> bool:
    """A file `write_atomically` left behind when it was killed before moving it into place."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def user_cache() -> Path:
    """The user cache folder: ``$HBFLOW_CACHE_DIR``, or ``~/.cache/hbflow`` if unset or empty."""
    return Path(os.environ.get("HBFLOW_CACHE_DIR") or Path.home() / ".cache" / "hbflow")


@functools.cache
def package_digest() -> str:
    """SHA-256 of hbflow's source files, names and bytes: the code the stored programs and
    tables were made by (fixed for the life of a process)."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_limit() -> int:
    """The bytes each folder of stored programs and tables may hold: ``$HBFLOW_CACHE_MAX_MB``
    megabytes (default 1024; one megabyte is 2**20 bytes).

    **Raises:** `ValueError` if the variable is set to anything but a finite number > 0.
    """
    text = os.environ.get(LIMIT_VAR, "").strip()
    if not text:
        return _DEFAULT_LIMIT_MB << 20
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes > 0):
        raise ValueError(
            f"environment variable {LIMIT_VAR} must be a number of megabytes > 0, got "
            f"{os.environ[LIMIT_VAR]!r}"
        )
    return max(1, int(megabytes * (1 << 20)))


def mark_used(path: Path) -> None:
    """Set `path`'s modification time to now: `trim` deletes the least recently used first."""
    try:
        os.utime(path)
    except OSError:  # a read-only cache, or a file another process just deleted
        pass


def trim(folder: Path, suffix: str, limit: int, keep: Path) -> None:
    """Delete the least recently used files named ``*suffix`` in `folder` until those left hold
    at most `limit` bytes; `keep` (the file just written) is never deleted.

    Temporary files of `write_atomically` older than an hour (left by a writer that was killed)
    are deleted too; younger ones are another writer's, and are left alone.  Files deleted by
    another process meanwhile are skipped; a folder that cannot be read or written is left as it
    is (a cache that cannot be trimmed only takes more room).
    """
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    total = 0
    candidates = []
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        path = Path(entry.path)
        if is_temporary(path):
            if now - info.st_mtime > _STALE:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass
            continue
        if not entry.name.endswith(suffix):
            continue
        total += info.st_size
        if entry.name != keep.name:
            candidates.append((info.st_mtime_ns, entry.name, info.st_size, path))
    candidates.sort()
    for _, _, size, path in candidates:
        if total <= limit:
            return
        try:
            path.unlink()
        except FileNotFoundError:  # deleted by another process: its bytes are gone too
            pass
        except OSError:
            return
        total -= size

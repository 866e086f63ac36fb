"""Files written whole or not at all, the user cache folder, and the digest of hbflow's own
source files.

The caches (counter terms, shifted starts, stored programs, coefficient tables, the
derivation's version) and a sweep's table are read by other processes, some of them while this
one writes: every file is written to a temporary file in its own folder and renamed over the
target, so a reader sees the old file or the new one, never half of one, and concurrent writers
never clobber one another's partial files.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically", "is_temporary", "user_cache", "package_digest"]


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

"""Files written whole or not at all.

The caches (counter terms, shifted starts, stored programs) and a sweep's table are read by
other processes, some of them while this one writes: every file is written to a temporary file
in its own folder and renamed over the target, so a reader sees the old file or the new one,
never half of one, and concurrent writers never clobber one another's partial files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically", "is_temporary"]


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

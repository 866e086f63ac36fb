r"""JAX's persistent compilation cache under hbflow's cache directory.

A new process that runs ``hbflow order`` or ``hbflow sweep`` again compiles the same XLA
programs again: most of a small study's wall time.  JAX can keep compiled programs on disk
(``jax_compilation_cache_dir``); hbflow turns that on, in the folder ``jax`` under its user
cache directory (``$HBFLOW_CACHE_DIR``, default ``~/.cache/hbflow``), for every program,
however fast it compiled and however small it is (JAX's defaults keep only programs that took
over a second to compile, which leaves out most of a study's).

With it, hbflow keeps the compiled solves, iterates and checks themselves in the folder
``programs`` beside it (`hbflow._programs`): JAX's cache is keyed by the lowered program, so a
new process would still trace and lower each of them before finding it; a stored program is
loaded without either.  The models' coefficient tables are kept in ``tables`` (`hbflow._tables`).

Turn all three off with the environment variable ``HBFLOW_COMPILATION_CACHE=0`` (or ``false``,
``off``, ``no``), with ``hbflow sweep --no-compilation-cache``, or with
``hbflow.sweep(..., compilation_cache=False)``.  A cache directory the user has already set
with ``jax.config.update("jax_compilation_cache_dir", ...)`` (or ``JAX_COMPILATION_CACHE_DIR``)
is left alone.  ``programs`` and ``tables`` are each kept under ``$HBFLOW_CACHE_MAX_MB``
megabytes (default 1024) by deleting their least recently used files; ``jax`` is JAX's own,
bounded only if you set ``jax_compilation_cache_max_size``.  ``jax`` and ``programs`` hold
code that is run: do not share them with users you do not trust (JAX's warning; stored
programs are read with `pickle`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["enable_compilation_cache", "compilation_cache_dir", "ENV_VAR"]

#: Environment variable that turns the persistent compilation cache off (``0``).
ENV_VAR = "HBFLOW_COMPILATION_CACHE"

_OFF = ("0", "false", "off", "no")
_ON = ("", "1", "true", "on", "yes")


def compilation_cache_dir() -> Path:
    """The folder of hbflow's persistent compilation cache: ``jax`` in the user cache dir."""
    from ._files import user_cache

    return user_cache() / "jax"


def _enabled_by_environment() -> bool:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise ValueError(
        f"environment variable {ENV_VAR} must be 0 or 1 (also false/true, off/on), got "
        f"{os.environ[ENV_VAR]!r}"
    )


def enable_compilation_cache(enabled: bool | None = None) -> Path | None:
    """Switch on JAX's persistent compilation cache in hbflow's cache directory.

    hbflow's store of compiled programs (the folder ``programs`` beside it) and its kept
    coefficient tables (``tables``) follow the same switch: on with the cache, off (and the
    programs emptied from memory) without it.

    **Arguments:**

    - `enabled`: ``True`` or ``False``; ``None`` (default) follows the environment variable
      ``HBFLOW_COMPILATION_CACHE`` (on unless it is ``0``, ``false``, ``off`` or ``no``).

    **Returns:** the cache folder in use, or ``None`` when the cache stays off (or could not be
    created: then compilation works as without a cache).

    **Raises:** `ValueError` if `enabled` is not a bool or None, if the environment variable has
    another value, or if ``HBFLOW_CACHE_MAX_MB`` (the bound on each of the folders ``programs``
    and ``tables``, default 1024) is set to anything but a number > 0.
    """
    if enabled is not None and not isinstance(enabled, bool):
        raise ValueError(f"compilation_cache must be True, False or None, got {enabled!r}")
    from . import _programs

    env_on = _enabled_by_environment()
    if enabled is False or (enabled is None and not env_on):
        _programs.set_directory(None)
        return None
    from ._files import cache_limit

    cache_limit()  # checked now, not when the first program is stored
    import jax

    # jax sets its options as dynamic attributes of Config, which its stubs do not declare
    current = jax.config.jax_compilation_cache_dir  # pyright: ignore[reportAttributeAccessIssue]
    programs = compilation_cache_dir().parent / "programs"
    if current:  # the user's own choice wins
        _programs.set_directory(programs)
        return Path(current)
    directory = compilation_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        _programs.set_directory(None)
        return None
    _programs.set_directory(programs)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    # Every program: a study's programs compile in well under JAX's default threshold of 1 s.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return directory

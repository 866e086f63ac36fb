"""Test configuration: float64 everywhere, and a private cache folder for derived counter terms.

The annotations of hbflow are checked at run time in the whole suite (jaxtyping with beartype,
switched on by ``--jaxtyping-packages`` in pyproject.toml).  Tests that pass arguments of the
wrong type on purpose, to check hbflow's own `ValueError` messages for callers who run no type
checker, use the `without_runtime_type_checks` fixture.
"""

import os
import tempfile

import jax
import jaxtyping
import pytest

jax.config.update("jax_enable_x64", True)

# Derivations the tests trigger go to a throw-away folder, never to the user's cache.
os.environ["HBFLOW_CACHE_DIR"] = tempfile.mkdtemp(prefix="hbflow-test-cache-")
# No persistent compilation cache or stored programs unless a test asks for them: a program one
# test stored would be loaded, not traced, by the next, and tests count traces.
os.environ["HBFLOW_COMPILATION_CACHE"] = "0"


@pytest.fixture
def without_runtime_type_checks():
    """Switch jaxtyping's runtime checks off for one test (they would raise before hbflow's own)."""
    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", before)


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    """The counter terms' cache in a fresh folder only (nothing shipped, nothing from before)."""
    from hbflow import _counter_terms as cache

    monkeypatch.setattr(cache, "cache_dirs", lambda: [tmp_path / "none", tmp_path])
    cache._counter_terms.cache_clear()
    yield tmp_path
    cache._counter_terms.cache_clear()

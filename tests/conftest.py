"""Test configuration: float64 everywhere, and a private cache folder for derived counter terms."""

import os
import tempfile

import jax

jax.config.update("jax_enable_x64", True)

# Derivations the tests trigger go to a throw-away folder, never to the user's cache.
os.environ["HBFLOW_CACHE_DIR"] = tempfile.mkdtemp(prefix="hbflow-test-cache-")

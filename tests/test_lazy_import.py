"""`import hbflow` and `hbflow derive` run without JAX; float64 holds wherever JAX runs."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hbflow

ROOT = Path(__file__).resolve().parent.parent
NUMERICAL = ("jax", "diffrax", "equinox", "optax", "sympy")


def _python(code: str, **env_changes) -> str:
    env = dict(os.environ)
    env.pop("JAX_ENABLE_X64", None)
    env.update(env_changes)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_import_hbflow_loads_no_numerical_library():
    out = _python(f"import sys, hbflow; print(sorted(set({NUMERICAL!r}) & set(sys.modules)))")
    assert out.strip() == "[]"


@pytest.mark.parametrize("fmt", ["text", "latex", "json"])
def test_derive_runs_on_flint_alone(fmt):
    # The exact side end to end, from the shipped data: no JAX, diffrax, equinox or sympy.
    code = (
        "import contextlib, io, sys\n"
        "from hbflow._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    code = main(['derive', '--order', '4', '--method', 'nag', '--format', '{fmt}'])\n"
        "assert code == 0 and len(out.getvalue()) > 1000, out.getvalue()\n"
        f"print(sorted(set({NUMERICAL!r}) & set(sys.modules)))\n"
    )
    assert _python(code).strip() == "[]"


@pytest.mark.parametrize("jax_first", [False, True])
def test_jax_computes_in_float64_whichever_is_imported_first(jax_first):
    # The caller's own arrays must be float64 once hbflow is imported, before any hbflow
    # function has run: a float32 start would silently lose the digits a study measures.
    imports = "import jax, hbflow" if jax_first else "import hbflow, jax"
    code = f"{imports}\nimport jax.numpy as jnp\nprint(jnp.asarray(0.1).dtype, jnp.zeros(2).dtype)"
    assert _python(code).split() == ["float64", "float64"]


def test_jax_imported_first_with_float64_off_is_switched_on():
    code = (
        "import jax\n"
        "jax.config.update('jax_enable_x64', False)\n"
        "import hbflow\n"
        "print(jax.config.jax_enable_x64)"
    )
    assert _python(code, JAX_ENABLE_X64="0").strip() == "True"


def test_every_public_name_resolves_and_is_listed():
    for name in hbflow.__all__:
        assert getattr(hbflow, name) is not None, name
    assert set(hbflow.__all__) <= set(dir(hbflow))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        hbflow.nonexistent  # noqa: B018


def test_type_checking_imports_match_the_lazy_table():
    # The static imports (read by type checkers and the API docs) and the table that loads
    # names at run time must list the same names from the same modules.
    tree = ast.parse((ROOT / "hbflow" / "__init__.py").read_text())
    static = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                for alias in imp.names:
                    static[alias.asname or alias.name] = (imp.module or "").lstrip(".")
    assert static and static == hbflow._EXPORTS

"""Static type checking: pyright finds no error in the package (settings in pyproject.toml).

Runtime checking of the annotations (jaxtyping with beartype) is switched on for the whole test
suite by the ``--jaxtyping-packages`` option in pyproject.toml.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("pyright") is None, reason="pyright is not installed")
def test_pyright_finds_no_errors():
    result = subprocess.run(
        ["pyright", "--outputjson", "hbflow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = json.loads(result.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert not errors, "\n".join(
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}" for d in errors
    )
    assert report["summary"]["filesAnalyzed"] >= 19  # every module of the package was read

"""Execute every research notebook top to bottom; each ends with assertions on its claims."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_found():
    # An empty parameter list would make the test below a silent skip.
    assert len(NOTEBOOKS) >= 5, NOTEBOOKS


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_its_claims_hold(path):
    # nbformat and nbclient come with the test extras (pip install ".[test]"): a missing one fails
    # here instead of skipping.  They are imported in the test, not at module level, so that
    # `pytest -m "not notebook"` still collects this file without them.
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the failing cell, if an assertion fails

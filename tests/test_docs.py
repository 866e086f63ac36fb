"""The documentation site: it builds with ``mkdocs build --strict``, and what it promises holds.

The build renders the executed notebooks without running them and the API reference from the
docstrings, so a broken link, a missing anchor or a docstring that no longer resolves fails here.
"""

import argparse
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

for _module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material"):
    pytest.importorskip(_module)
pytest.importorskip("mkdocs_jupyter")

import hbflow  # noqa: E402
import hbflow.testing  # noqa: E402
from hbflow._cli import build_parser  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# A citation of a theory section: the theory document's file name, "#", the section's anchor.
THEORY_CITATION = re.compile(r"theory\.md#([A-Za-z0-9_-]+)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"]
        + ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-6000:]}"
    return out


def _ids(page: Path) -> set[str]:
    return {html.unescape(m) for m in re.findall(r'\bid="([^"]+)"', page.read_text())}


def _public_names() -> list[str]:
    names = [name for name in hbflow.__all__ if not name.startswith("_")]
    return sorted(names) + [f"testing.{name}" for name in hbflow.testing.__all__]


def test_public_names_are_known():
    # guards the next test against an empty list
    assert {"compare", "counter_terms", "HeavyBallFlow", "testing.assert_error_order"} <= set(
        _public_names()
    )


def test_every_public_name_has_an_api_entry(site):
    documented = set()
    for page in (site / "api").rglob("index.html"):
        documented |= _ids(page)
    missing = [name for name in _public_names() if f"hbflow.{name}" not in documented]
    assert not missing, f"public names without an entry in docs/api/*.md: {missing}"


def _citing_texts():
    for path in sorted((ROOT / "hbflow").rglob("*.py")) + sorted((ROOT / "tests").glob("*.py")):
        yield path, path.read_text()
    for path in sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]:
        yield path, path.read_text()
    for path in NOTEBOOKS:
        yield path, path.read_text()  # sources and saved outputs alike


def test_cited_theory_sections_exist(site):
    anchors = _ids(site / "theory" / "index.html")
    cited = {
        (path.relative_to(ROOT).as_posix(), anchor)
        for path, text in _citing_texts()
        for anchor in THEORY_CITATION.findall(text)
    }
    assert len({anchor for _, anchor in cited}) >= 5  # the package does cite the theory
    broken = sorted((where, a) for where, a in cited if a not in anchors)
    assert not broken, f"citations of theory sections that do not exist: {broken}"


def test_nothing_cites_a_document_outside_the_repository():
    outside = re.compile("shared" + "/|MATH" + r"\.md")
    hits = [
        path.relative_to(ROOT).as_posix()
        for path, text in _citing_texts()
        if path.name != Path(__file__).name and outside.search(text)
    ]
    assert not hits, f"references to a document outside the repository in {hits}"


def _text_outputs(cell) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        text = output.get("text") or output.get("data", {}).get("text/plain") or ""
        texts.append(text if isinstance(text, str) else "".join(text))
    return [t for t in texts if t.strip()]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_rendered_with_their_outputs(site, notebook):
    # rendered as saved, not executed: the page shows the saved outputs, figures included
    page = html.unescape((site / "notebooks" / notebook.stem / "index.html").read_text())
    cells = json.loads(notebook.read_text())["cells"]
    outputs = [
        text for cell in cells if cell["cell_type"] == "code" for text in _text_outputs(cell)
    ]
    assert outputs, f"{notebook.name} has no saved outputs: was it saved executed?"
    lines = [line.strip() for line in outputs[-1].splitlines() if len(line.strip()) > 8]
    assert lines and all(line in page for line in lines[:3])
    images = sum(
        "image/png" in output.get("data", {})
        for cell in cells
        for output in cell.get("outputs", [])
    )
    assert page.count("data:image/png;base64") >= images


def _subcommands():
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_command_line_page_documents_every_subcommand_and_option():
    page = (ROOT / "docs" / "cli.md").read_text()
    headings = set(re.findall(r"^## (.+)$", page, flags=re.M))
    missing = []
    for name, subparser in _subcommands().items():
        if f"hbflow {name}" not in headings:
            missing.append(f"hbflow {name} (section)")
        for action in subparser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and f"`{option}" not in page:
                    missing.append(f"hbflow {name} {option}")
    assert not missing, f"not documented in docs/cli.md: {missing}"

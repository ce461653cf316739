"""The Markdown write-ups render as GitHub renders them: every formula typeset,
every mermaid diagram drawn.

tests/render/render.mjs renders each generated/*.md in headless Chromium with a
CommonMark renderer (markdown-it) taught GitHub's math syntax, MathJax 3 and
mermaid (all from tests/render/node_modules, no network), and reports per page:
MathJax errors, the Markdown hazards of GitHub's math (a backslash escape such
as ``\\\\`` or ``\\{`` inside ``$...$``/``$$...$$``, which GitHub's Markdown takes
before MathJax sees it; a ``$`` pairing across a code span) and the mermaid
blocks drawn. Asserted:

- every generated page: no MathJax error, no hazard, at least one formula, and
  one drawn svg per ```mermaid block of the file, at 0.55 of its natural size
  or more in a 980 px column (the three steps side by side, left to right,
  were drawn at 0.12: no label could be read);
- tests/render/canary.md, a page broken in each of those ways, is reported
  broken in each of them (so a clean report is not the checker seeing nothing).

Needs node, chromium and ``npm ci`` in tests/render (.ci/run installs all three).
Without them the test skips and says which is missing, unless DERIVE_RENDER_REQUIRED
is set (CI sets it), where it fails.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RENDER = ROOT / "tests" / "render"
PAGES = sorted((ROOT / "generated").glob("*.md"))
CANARY = RENDER / "canary.md"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if shutil.which(os.environ.get("CHROMIUM", "chromium")) is None:
        return "chromium is not installed (apt-get install chromium)"
    for package in ("markdown-it", "mathjax", "mermaid"):
        if not (RENDER / "node_modules" / package).is_dir():
            return f"tests/render/node_modules/{package} is missing (run: cd tests/render && npm ci)"
    return None


@functools.lru_cache(maxsize=1)
def _report() -> dict[str, dict]:
    reason = _missing()
    if reason:
        if os.environ.get("DERIVE_RENDER_REQUIRED"):
            pytest.fail(f"the render check cannot run: {reason}")
        pytest.skip(f"the render check cannot run: {reason}")
    proc = subprocess.run(["node", str(RENDER / "render.mjs"), *map(str, PAGES), str(CANARY)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {Path(p["file"]).name: p for p in json.loads(proc.stdout)["pages"]}


def test_there_are_pages_to_render():
    assert len(PAGES) >= 10


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_renders_as_on_github(page):
    report = _report()[page.name]
    assert report["mathErrors"] == [], f"{page.name}: MathJax errors"
    assert report["hazards"] == [], f"{page.name}: math that GitHub's Markdown would change"
    assert report["math"] > 50
    blocks = page.read_text("utf-8").count("```mermaid\n")
    assert blocks >= 1
    assert report["mermaidBlocks"] == blocks
    assert report["mermaidDrawn"] == blocks, report["mermaidErrors"]
    # drawn at a readable size: a diagram wider than the page is shrunk, labels and all
    assert report["mermaidScale"] >= 0.55, f"{page.name}: the diagram is drawn at {report['mermaidScale']:.2f} of its size"


def test_the_checker_sees_what_is_broken():
    report = _report()[CANARY.name]
    problems = " | ".join(h["problem"] for h in report["hazards"])
    assert r"takes the backslash of \{ in $...$" in problems
    assert r"takes the backslash of \\ in $$...$$" in problems
    assert "across a code span" in problems
    assert [e["error"] for e in report["mathErrors"]] == [r"Undefined control sequence \notamacro"]
    assert report["mermaidBlocks"] == 2 and report["mermaidDrawn"] == 1
    assert len(report["mermaidErrors"]) == 1 and "Parse error" in report["mermaidErrors"][0]["error"]
    # the safe forms of the same math, $`...`$ and ```math, are typeset without error
    assert report["math"] == 5

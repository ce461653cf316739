"""The PDF's unrolled graph is readable, and it leaves no page half blank.

Compiled with pdflatex (two passes) and read back with poppler (pdfinfo,
pdftotext -bbox, pdftoppm), for the LSTM of the course and Graves' (the widest
graphs):

- the figure is alone on a landscape page (rotated 90 degrees for the viewer);
- its labels are printed near body size: the word "step" above each block is
  at least 0.65 of the height of the same word in the caption (a figure shrunk
  to the line as a whole printed it at about 0.5);
- the portrait page before the landscape page is filled with text to within
  15 % of its bottom (the landscape page used to start right after the section
  heading and leave the page before it two-thirds blank).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import derive
from derive.writeup.document import render_tex
from derive.writeup.pdf import compile_pdf

TOOLS = ("pdflatex", "pdfinfo", "pdftotext", "pdftoppm")


@pytest.fixture(scope="module", params=["coursera", "graves"])
def pdf(request, tmp_path_factory) -> Path:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install texlive-latex-base poppler-utils)")
    tex = tmp_path_factory.mktemp(request.param) / f"{request.param}.tex"
    tex.write_text(render_tex(derive.derive(request.param)), encoding="utf-8")
    return compile_pdf(tex)


def _rotations(pdf: Path) -> list[int]:
    out = subprocess.run(["pdfinfo", "-f", "1", "-l", "999", str(pdf)], capture_output=True, text=True).stdout
    return [int(m.group(1)) for m in re.finditer(r"^Page\s+\d+ rot:\s+(\d+)", out, flags=re.M)]


def _words(pdf: Path, page: int) -> list[tuple[str, float]]:
    out = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), "-bbox", str(pdf), "-"],
                         capture_output=True, text=True).stdout
    return [(m.group(3), float(m.group(2)) - float(m.group(1)))
            for m in re.finditer(r'yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)</word>', out)]


def _landscape_page(pdf: Path) -> int:
    rotated = [i + 1 for i, r in enumerate(_rotations(pdf)) if r in (90, 270)]
    assert len(rotated) == 1, rotated
    return rotated[0]


def test_the_figure_has_a_landscape_page_of_its_own(pdf):
    page = _landscape_page(pdf)
    text = " ".join(w for w, _ in _words(pdf, page))
    assert text.count("step") >= 3 and "Figure 1: The cell unrolled" in text
    assert "Backpropagation through time" not in text  # no section text on it


def test_labels_are_near_body_size(pdf):
    heights = [h for w, h in _words(pdf, _landscape_page(pdf)) if w == "step"]
    label, caption = min(heights), max(heights)  # the blocks' "step", the caption's
    assert label >= 0.65 * caption, (label, caption)


def test_the_page_before_the_figure_is_full(pdf, tmp_path):
    page = _landscape_page(pdf) - 1
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", str(page), "-l", str(page), str(pdf),
                    str(tmp_path / "p")], check=True)
    from PIL import Image  # matplotlib's dependency, in the test extra
    import numpy as np

    png = next(tmp_path.glob("p*.png"))
    ink = np.asarray(Image.open(png).convert("L")) < 200
    rows = np.where(ink.any(axis=1))[0]
    height = ink.shape[0]
    text_rows = rows[rows < 0.95 * height]  # the page number sits below 0.95
    assert text_rows.max() > 0.75 * height, f"page {page} ends at {text_rows.max() / height:.0%} of its height"

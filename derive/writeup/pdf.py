"""Compile a write-up's LaTeX to PDF with pdflatex, and report its first error."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path




class LatexNotFound(RuntimeError):
    pass


def compile_pdf(tex_path: Path, runs: int = 2, timeout: float = 120) -> Path:
    """Run pdflatex on ``tex_path`` (``runs`` times, for the references) in a
    temporary folder and leave ``<stem>.pdf`` beside it. Raises
    :class:`LatexNotFound` without pdflatex and ``RuntimeError`` with the log's
    first error when the run fails."""
    exe = shutil.which("pdflatex")
    if exe is None:
        raise LatexNotFound("pdflatex is not installed (Debian/Ubuntu: apt-get install texlive-latex-base "
                            "texlive-latex-recommended texlive-pictures)")
    tex_path = Path(tex_path).resolve()
    with tempfile.TemporaryDirectory(prefix="lstm-derive-") as tmp:
        log = ""
        for _ in range(runs):
            proc = subprocess.run(
                [exe, "-interaction=nonstopmode", "-halt-on-error", "-file-line-error", f"-output-directory={tmp}",
                 str(tex_path)],
                cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                env={**os.environ, "SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1"},
            )
            log = proc.stdout.decode("utf-8", "replace")
            if proc.returncode != 0:
                raise RuntimeError(f"pdflatex failed on {tex_path}:\n{first_error(log)}")
        out = tex_path.with_suffix(".pdf")
        shutil.copyfile(Path(tmp) / (tex_path.stem + ".pdf"), out)
    return out


def first_error(log: str) -> str:
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("!") or (".tex:" in line and "error" in line.lower()) or "Error" in line:
            return "\n".join(lines[i:i + 8])
    return "\n".join(lines[-20:])

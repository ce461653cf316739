"""Compile a write-up's LaTeX to PDF with pdflatex, and report its first error.

pdflatex runs with ``-no-shell-escape`` and paranoid file access
(``openin_any=p``, ``openout_any=p``) on a copy of the file in a temporary
folder; the spec's LaTeX is whitelisted before it gets there
(:mod:`derive.spec.texsafe`), this is the second wall.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path




# Environment of every pdflatex run: reproducible dates, paranoid file access.
SAFE_TEX_ENV = {"SOURCE_DATE_EPOCH": "0", "FORCE_SOURCE_DATE": "1", "openin_any": "p", "openout_any": "p",
                "shell_escape": "f"}


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
        # pdflatex reads a copy in the temporary folder by a relative name: with
        # paranoid file access it may open nothing else but TeX's own files,
        # write nothing outside that folder, and run no shell command.
        shutil.copyfile(tex_path, Path(tmp) / "writeup.tex")
        log = ""
        for _ in range(runs):
            proc = subprocess.run(
                [exe, "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
                 "writeup.tex"],
                cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                env={**os.environ, **SAFE_TEX_ENV, "TEXMFOUTPUT": tmp},
            )
            log = proc.stdout.decode("utf-8", "replace")
            if proc.returncode != 0:
                raise RuntimeError(f"pdflatex failed on {tex_path}:\n{first_error(log)}")
        out = tex_path.with_suffix(".pdf")
        shutil.copyfile(Path(tmp) / "writeup.pdf", out)
    return out


def first_error(log: str) -> str:
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("!") or (".tex:" in line and "error" in line.lower()) or "Error" in line:
            return "\n".join(lines[i:i + 8])
    return "\n".join(lines[-20:])

"""``lstm-derive build``: (re)generate everything in generated/, or check it.

Contract. :data:`ARTIFACTS` maps a file suffix to a renderer ``derivation ->
text`` (None: the cell has no such file; the compiled twin ``<name>_numba.py``
is written for the presets whose module is fused, a user's spec gets it from
``lstm-derive numpy SPEC --backend numba``); :func:`render_all` renders every artifact of every preset in memory.
:func:`build` writes them into a folder (each file written to a temporary
name and renamed, so an interrupted build leaves no half-written file) or,
with ``check=True``, compares them with what is there and returns the unified
diff of every stale file. Output is byte-identical on every run and machine.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from derive.codegen.render import render_module, render_numba_module
from derive.derivation import Derivation, derive, is_preset, presets
from derive.writeup.listing import render_listing
from derive.writeup.document import render_markdown, render_tex

ARTIFACTS: dict[str, Callable[[Derivation], str | None]] = {
    ".txt": render_listing,
    ".py": render_module,
    "_numba.py": lambda d: render_numba_module(d) if is_preset(d.cell) else None,  # a preset's compiled twin
    ".tex": render_tex,
    ".md": render_markdown,
}


def render_all(names: Iterable[str] | None = None) -> dict[str, str]:
    """{file name: text} for every artifact of every named preset (all by default)."""
    out = {}
    for name in names if names is not None else presets():
        derivation = derive(name)
        stem = derivation.name
        for suffix, renderer in ARTIFACTS.items():
            text = renderer(derivation)
            if text is not None:
                out[stem + suffix] = text
    return out


def stale(files: dict[str, str], folder: Path) -> list[str]:
    """Unified diffs of the files whose committed text differs (or is missing)."""
    diffs = []
    for name, text in sorted(files.items()):
        path = folder / name
        old = path.read_text("utf-8") if path.exists() else ""
        if old != text:
            diffs.append("".join(difflib.unified_diff(
                old.splitlines(True), text.splitlines(True), f"a/{path}", f"b/{path}")))
    return diffs


def write(files: dict[str, str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(files.items()):
        path = folder / name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; generated files are for everyone to read
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written

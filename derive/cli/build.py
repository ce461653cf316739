"""``lstm-derive build``: (re)generate everything in generated/, or check it.

Contract. :data:`ARTIFACTS` maps a file suffix to a renderer ``derivation ->
text``; :func:`render_all` renders every artifact of every preset in memory.
:func:`write` puts them into a folder all or nothing (the files of one build
are replaced together; an error or a signal leaves the old set) or,
with ``check=True``, compares them with what is there and returns the unified
diff of every stale file. Output is byte-identical on every run and machine.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Iterable

from derive.cli.files import write_files
from derive.codegen.render import render_module
from derive.derivation import Derivation, derive, presets
from derive.writeup.listing import render_listing
from derive.writeup.document import render_markdown, render_tex

ARTIFACTS: dict[str, Callable[[Derivation], str]] = {
    ".txt": render_listing,
    ".py": render_module,
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
            out[stem + suffix] = renderer(derivation)
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
    """Replace the files of one build together (see :mod:`derive.cli.files`)."""
    return write_files(files, folder)

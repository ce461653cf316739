"""``lstm-derive build``: (re)generate everything in generated/, or check it.

Contract. :data:`ARTIFACTS` maps a file suffix to a renderer ``(derivation,
regenerate) -> text`` (None: the cell has no such file; the compiled twin
``<name>_numba.py`` is written for the presets whose module is fused, a user's
spec gets it from ``lstm-derive numpy SPEC --backend numba``); :func:`render_one` renders the four artifacts of one cell,
:func:`render_all` those of every named cell (all presets by default), in
worker processes when ``jobs > 1`` (the cells are independent, and a preset's
write-up measures its own checks, which is most of the time; what they share,
the compiled templates and every preset's derivation, is made once before
they fork), reporting each
finished cell to ``progress``. The files' headers name the command that
regenerates them into ``out``. :func:`changed` lists the files whose text
differs from what is on disk; :func:`write` writes only those (all or
nothing, :mod:`derive.cli.files`), and :func:`stale` returns the unified diff of every stale file. Output is byte-identical on every run, machine and number of jobs.

"""

from __future__ import annotations

import difflib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable

from derive.cli.files import write_files
from derive.codegen.render import render_module, render_numba_module
from derive.errors import DeriveError
from derive.derivation import Derivation, derive, load_cell, presets, regenerate_command
from derive.writeup.listing import render_listing
from derive.writeup.document import render_markdown, render_tex

ARTIFACTS: dict[str, Callable[..., str | None]] = {
    ".txt": render_listing,
    ".py": render_module,
    "_numba.py": render_numba_module,  # a preset's compiled twin (None: not fused, or a user's spec)
    ".tex": render_tex,
    ".md": render_markdown,
}

DEFAULT_OUT = "generated"


def render_one(name: str, out: str | Path = DEFAULT_OUT) -> dict[str, str]:
    """{file name: text} of the artifacts of one preset or spec file."""
    regenerate = regenerate_command(load_cell(name), out)
    derivation: Derivation = derive(name)
    files = {derivation.name + suffix: renderer(derivation, regenerate=regenerate)
             for suffix, renderer in ARTIFACTS.items()}
    return {name: text for name, text in files.items() if text is not None}



def _context():
    # fork: the workers inherit the imported modules (SymPy, the engine) instead
    # of importing them again; elsewhere the platform's default
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def render_all(names: Iterable[str] | None = None, out: str | Path = DEFAULT_OUT, jobs: int = 1,
               progress: Callable[[int, int, str], None] | None = None) -> dict[str, str]:
    """{file name: text} for every artifact of every named cell (all presets by
    default), rendered by ``jobs`` processes; ``progress(done, total, name)`` after
    each cell."""
    names = list(names if names is not None else presets())
    out = str(out)
    results: dict[str, dict[str, str]] = {}
    if jobs <= 1 or len(names) <= 1:
        for name in names:
            results[name] = render_one(name, out)
            if progress:
                progress(len(results), len(names), name)
    else:
        _warm()
        with ProcessPoolExecutor(max_workers=min(jobs, len(names)), mp_context=_context()) as pool:
            # the largest cells first: the last to finish is then a small one, not
            # an LSTM started when the other worker had nothing left to do
            futures = {pool.submit(_render_in_worker, name, out): name for name in _largest_first(names)}
            for future in as_completed(futures):
                name = futures[future]
                results[name] = future.result()
                if progress:
                    progress(len(results), len(names), name)
    files: dict[str, str] = {}
    for name in names:  # the order of the names, whatever order the workers finished in
        files.update(results[name])
    return files


def _warm() -> None:
    """What every worker would otherwise do again, done once before they fork: the
    templates compiled, every preset derived and its names read (each cell's
    crosswalk reads every preset of its family)."""
    from derive import templating
    from derive.writeup import crosswalk

    templating.warm()
    crosswalk.warm()


def _largest_first(names: list[str]) -> list[str]:
    """The names by the size of their cell, most equations first (ties: as given);
    a spec that does not load goes first, to fail early."""
    def size(name: str) -> int:
        try:
            return len(load_cell(name).equations)
        except DeriveError:
            return 1 << 30
    return sorted(names, key=lambda n: -size(n))


def _render_in_worker(name: str, out: str) -> dict[str, str]:
    """:func:`render_one` in a worker process: an error comes back as a plain
    DeriveError with the same message (the subclasses do not pickle)."""
    try:
        return render_one(name, out)
    except DeriveError as exc:
        raise DeriveError(str(exc)) from None


def default_jobs() -> int:
    """Worker processes for a build: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def changed(files: dict[str, str], folder: Path) -> list[str]:
    """The names of the files whose text on disk differs (or that are missing)."""
    out = []
    for name, text in sorted(files.items()):
        path = Path(folder) / name
        try:
            old = path.read_text("utf-8") if path.is_file() else None
        except UnicodeDecodeError:
            old = None
        if old != text:
            out.append(name)
    return out


def stale(files: dict[str, str], folder: Path) -> list[str]:
    """Unified diffs of the files whose committed text differs (or is missing)."""
    diffs = []
    for name in changed(files, folder):
        path = Path(folder) / name
        old = path.read_text("utf-8", errors="replace") if path.is_file() else ""
        diffs.append("".join(difflib.unified_diff(
            old.splitlines(True), files[name].splitlines(True), f"a/{path}", f"b/{path}")))
    return diffs


def write(files: dict[str, str], folder: Path) -> list[Path]:
    """Write the files whose text differs from what is on disk, all or nothing
    (:func:`derive.cli.files.write_files`: the changed files of one build are
    replaced together; an error or a signal leaves the old set); the paths written."""
    folder = Path(folder)
    todo = {name: files[name] for name in changed(files, folder)} if folder.is_dir() else dict(files)
    return write_files(todo, folder) if todo else []

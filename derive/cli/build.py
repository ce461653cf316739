"""``lstm-derive build``: (re)generate everything in generated/, or check it.

Contract. :data:`ARTIFACTS` maps a file suffix to a renderer ``(derivation,
regenerate) -> text``; :func:`render_one` renders the four artifacts of one cell,
:func:`render_all` those of every named cell (all presets by default), in
worker processes when ``jobs > 1`` (the cells are independent, and a preset's
write-up measures its own checks, which is most of the time), reporting each
finished cell to ``progress``. The files' headers name the command that
regenerates them into ``out``. :func:`changed` lists the files whose text
differs from what is on disk; :func:`write` writes only those (each written to
a temporary name and renamed, so an interrupted build leaves no half-written
file), and :func:`stale` returns the unified diff of every stale file. Output is byte-identical on every run, machine and number of jobs.

The build cache. A cell's four files are kept in the cache folder of
:mod:`derive.verifier.cache` (``$LSTM_DERIVE_CACHE``, ``off`` disables it) as
JSON, keyed by a SHA-256 of everything they depend on: every module, bundled
cell and template of the package, the Python and library versions, the spec's
text and the command the headers name. A rebuild with nothing changed reads them
back instead of re-measuring every write-up's checks; any change misses.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Iterable

from derive.codegen.render import render_module
from derive.errors import DeriveError
from derive.derivation import Derivation, derive, load_cell, presets, regenerate_command, spec_text
from derive.templating import template_texts
from derive.verifier.cache import cache_dir
from derive.writeup.listing import render_listing
from derive.writeup.document import render_markdown, render_tex

ARTIFACTS: dict[str, Callable[..., str]] = {
    ".txt": render_listing,
    ".py": render_module,
    ".tex": render_tex,
    ".md": render_markdown,
}

DEFAULT_OUT = "generated"
CACHE_FORMAT = "1"


def render_one(name: str, out: str | Path = DEFAULT_OUT) -> dict[str, str]:
    """{file name: text} of the artifacts of one preset or spec file, from the
    build cache when everything they depend on is unchanged (:func:`cache_key`)."""
    regenerate = regenerate_command(load_cell(name), out)
    entry = _cache_path(cache_key(name, regenerate))
    files = _cache_read(entry)
    if files is None:
        derivation: Derivation = derive(name)
        files = {derivation.name + suffix: renderer(derivation, regenerate=regenerate)
                 for suffix, renderer in ARTIFACTS.items()}
        _cache_write(entry, files)
    return files


# ---------------------------------------------------------------------------
# the build cache: a cell's four files, keyed by everything they depend on


@functools.lru_cache(maxsize=1)
def _fingerprint() -> str:
    """SHA-256 of the code that renders: every module and bundled cell of the
    package, every template, and the versions of Python and the libraries."""
    import jinja2
    import mpmath
    import numpy
    import sympy

    import derive

    h = hashlib.sha256()
    h.update(f"{CACHE_FORMAT}|{sys.version}|{sympy.__version__}|{numpy.__version__}|{mpmath.__version__}|"
             f"{jinja2.__version__}".encode())
    package = Path(derive.__file__).resolve().parent
    for path in sorted(list(package.rglob("*.py")) + list(package.rglob("*.toml"))):
        h.update(b"\0" + path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    for name, text in template_texts().items():
        h.update(b"\0" + name.encode() + b"\0" + text.encode("utf-8"))
    return h.hexdigest()


def cache_key(name: str, regenerate: str) -> str:
    """The key of a cell's files: the code (:func:`_fingerprint`), the spec's label
    and text, and the command their headers name."""
    label, text = spec_text(name)
    h = hashlib.sha256(_fingerprint().encode())
    for part in (label, text, regenerate):
        h.update(b"\0" + part.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:40]


def _cache_path(key: str) -> Path | None:
    folder = cache_dir()
    return folder / f"build-{key}.json" if folder is not None else None


def _cache_read(path: Path | None) -> dict[str, str] | None:
    if path is None or not path.is_file():
        return None
    try:
        files = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(files, dict) and len(files) == len(ARTIFACTS) and \
        all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    return files if ok else None


def _cache_write(path: Path | None, files: dict[str, str]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".build-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(files, fh)
        os.replace(tmp, path)
    except OSError:  # no cache is no error
        pass


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
        with ProcessPoolExecutor(max_workers=min(jobs, len(names)), mp_context=_context()) as pool:
            futures = {pool.submit(_render_in_worker, name, out): name for name in names}
            for future in as_completed(futures):
                name = futures[future]
                results[name] = future.result()
                if progress:
                    progress(len(results), len(names), name)
    files: dict[str, str] = {}
    for name in names:  # the order of the names, whatever order the workers finished in
        files.update(results[name])
    return files


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
    """Write the files whose text differs from what is on disk; the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in changed(files, folder):
        path = folder / name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(files[name])
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; generated files are for everyone to read
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(path)
    return written

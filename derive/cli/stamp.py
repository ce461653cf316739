"""The build's stamp: a second ``lstm-derive build`` with nothing changed says
"up to date" in about a second, without rendering anything.

Contract. :func:`inputs_digest` is a SHA-256 over everything a build's files
depend on: every source file and bundled spec of the ``derive`` package, the
templates as :mod:`derive.templating` reads them, the label and text of each
named cell (a spec file's current text), the output folder as the files'
headers name it, and the versions of Python, SymPy, NumPy, mpmath and Jinja2.
After a build has written (or found current) its files, :func:`save` records
that digest, the output folder's absolute path and the SHA-256 of each file in
a stamp of that folder under ``$XDG_CACHE_HOME/lstm-derive/build`` (else
``~/.cache/...``; JSON, data only, never executed; the output folder gets no
file of its own). :func:`fresh` returns the number of files when
the stamp's digest is the current one and every file it lists is on disk with
the recorded hash, else None (a missing, unreadable or foreign stamp, an edited
or deleted file, a changed source or spec: the build renders everything, as
without a stamp). ``build --check`` never reads the stamp: it renders and compares.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterable

_VERSIONED = ("sympy", "numpy", "mpmath", "jinja2")


def inputs_digest(names: Iterable[str], out: str) -> str:
    """What the files of a build of ``names`` into ``out`` depend on, as one digest."""
    from derive.derivation import spec_text
    from derive.templating import template_texts

    h = hashlib.sha256()

    def part(tag: str, data: bytes) -> None:
        h.update(f"{tag}\0{len(data)}\0".encode("utf-8", "surrogateescape"))
        h.update(data)

    package = Path(__file__).resolve().parent.parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml", ".j2") and "__pycache__" not in path.parts:
            part("source:" + path.relative_to(package).as_posix(), path.read_bytes())
    for name, text in template_texts().items():
        part("template:" + name, text.encode("utf-8"))
    for name in names:
        label, text = spec_text(name)
        part("cell:" + str(name) + "\0" + label, text.encode("utf-8", "surrogateescape"))
    part("out", str(out).encode("utf-8", "surrogateescape"))
    part("python", sys.version.encode())
    for dist in _VERSIONED:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "?"
        part("version:" + dist, version.encode())
    return h.hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stamp_path(folder: Path) -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "lstm-derive" / "build" / (_sha(str(Path(folder).resolve()).encode("utf-8", "surrogateescape")) + ".json")


def fresh(folder: Path, digest: str) -> int | None:
    """The number of files of the stamp in ``folder`` if it is for ``digest`` and
    every file it lists is there unchanged; else None."""
    try:
        stamp = json.loads(_stamp_path(folder).read_text("utf-8"))
        if stamp.get("folder") != str(Path(folder).resolve()):
            return None
        if stamp.get("inputs") != digest or not isinstance(stamp.get("files"), dict) or not stamp["files"]:
            return None
        for name, sha in stamp["files"].items():
            if "/" in name or os.sep in name or name.startswith(".") or not isinstance(sha, str):
                return None
            path = Path(folder) / name
            if not path.is_file() or _sha(path.read_bytes()) != sha:
                return None
        return len(stamp["files"])
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def save(folder: Path, digest: str, files: dict[str, str]) -> None:
    """Record ``digest`` and the hash of each file's text (as written) in ``folder``;
    best effort: a folder that refuses the stamp only costs the next build its speed."""
    stamp = {"folder": str(Path(folder).resolve()), "inputs": digest, "files": {name: _sha(text.encode("utf-8")) for name, text in sorted(files.items())}}
    path = _stamp_path(folder)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n", "utf-8")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass

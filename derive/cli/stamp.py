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
file of its own). That folder is made 0700 and used only while it is private:
a real folder owned by the user and writable by nobody else (otherwise the
build says so once and renders as without a stamp); a stamp is never read
through a link. :func:`fresh` returns the number of files when
the stamp's digest is the current one and every file it lists is on disk with
the recorded hash, else None (a missing, unreadable or foreign stamp, an edited
or deleted file, a changed source or spec: the build renders everything, as
without a stamp). ``build --check`` never reads the stamp: it renders and compares.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
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


def _stamp_dir(create: bool) -> Path | None:
    """The stamps' folder, ``.../lstm-derive/build``, if it is private: each of its two
    levels a real folder (not a link) owned by this user and writable by nobody else.
    Made 0700 when ``create``. A folder that is not private is not used (said once)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))
    here = cache / "lstm-derive"
    for level in (here, here / "build"):
        try:
            info = os.lstat(level)
        except FileNotFoundError:
            if not create:
                return None
            try:
                level.parent.mkdir(parents=True, exist_ok=True)  # the user's cache folder itself
                os.mkdir(level, 0o700)
                os.chmod(level, 0o700)
                info = os.lstat(level)
            except OSError:
                return None
        except OSError:
            return None
        reason = ("is not a folder" if not stat.S_ISDIR(info.st_mode)
                  else "belongs to another user" if info.st_uid != os.geteuid()
                  else "is writable by others" if info.st_mode & 0o022 else None)
        if reason is not None:
            _say_once(f"lstm-derive: not using {level} for the build's stamp: it {reason}")
            return None
    return here / "build"


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        print(message, file=sys.stderr)


def _stamp_path(folder: Path, create: bool = False) -> Path | None:
    where = _stamp_dir(create)
    if where is None:
        return None
    return where / (_sha(str(Path(folder).resolve()).encode("utf-8", "surrogateescape")) + ".json")


def _read_private(path: Path) -> str:
    """A stamp's text, refusing a link in its place."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        return f.read(1_000_000)


def fresh(folder: Path, digest: str) -> int | None:
    """The number of files of the stamp in ``folder`` if it is for ``digest`` and
    every file it lists is there unchanged; else None."""
    path = _stamp_path(folder)
    if path is None:
        return None
    try:
        stamp = json.loads(_read_private(path))
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
    path = _stamp_path(folder, create=True)
    if path is None:
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass

"""All-or-nothing writing of a command's output files.

Contract. :func:`write_files` takes ``{file name: text}`` rendered in memory
and a folder, and either replaces every file or none:

1. every name must be a plain file name that resolves inside the folder (no
   ``/``, ``..``, NUL; checked after ``resolve()``), every target that exists
   must be a regular file, and the folder must be a writable directory (or
   creatable); otherwise :class:`OutputError` (exit status 2) before anything
   is written;
2. every text is written to a temporary file in the folder (``.<name>.<random>.tmp``);
   an error, ``KeyboardInterrupt`` (SIGINT) or SIGTERM here removes them all and
   leaves the old files as they were;
3. with SIGINT and SIGTERM held back, the old files are moved aside and the
   new ones renamed into place; a failure part way puts the old ones back.

A process killed with SIGKILL can leave temporary files; the next write into
the same folder removes those of its own pattern.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path
from typing import Callable

from derive.errors import DeriveError


class OutputError(DeriveError):
    """The output cannot be written where asked; nothing was written."""


# Called after each temporary file is written (tests interrupt the build here).
_after_stage: Callable[[int, str], None] | None = None

_TMP_SUFFIX = ".tmp"


def check_folder(folder: Path, option: str = "--out") -> Path:
    """The folder, resolved; OutputError if it is a file or cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder}: is a file, not a folder")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{option} {folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {folder}: {probe} is not writable")
    return folder.resolve()


def _target(folder: Path, name: str) -> Path:
    if (not name or "\x00" in name or "/" in name or "\\" in name or name in (".", "..")
            or name.startswith(".") or not name.isprintable()):
        raise OutputError(f"refusing to write a file named {name!r}")
    path = (folder / name).resolve()
    if path.parent != folder:
        raise OutputError(f"refusing to write {path}: it is outside {folder}")
    if path.exists() and (path.is_symlink() or not path.is_file()):
        raise OutputError(f"refusing to replace {path}: it is not a regular file")
    return path


@contextlib.contextmanager
def _signals_as_interrupts():
    """SIGTERM raises KeyboardInterrupt while staging, so the cleanup runs."""
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        old = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _signals_held():
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _remove_stale(folder: Path, names) -> None:
    """Temporary files of an earlier write killed with SIGKILL."""
    for name in names:
        for stale in folder.glob(f".{name}.*{_TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                if stale.is_file() and not stale.is_symlink():
                    stale.unlink()


def write_files(files: dict[str, str], folder: Path, option: str = "--out") -> list[Path]:
    """Write every file or none (see the module docstring); returns the paths."""
    folder = check_folder(folder, option)
    targets = {name: _target(folder, name) for name in sorted(files)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{option} {folder}: cannot create it ({exc.strerror})") from None
    _remove_stale(folder, targets)
    staged: list[tuple[str, str]] = []
    try:
        with _signals_as_interrupts():
            for i, (name, path) in enumerate(targets.items()):
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=_TMP_SUFFIX)
                staged.append((name, tmp))
                with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                    fh.write(files[name])
                os.chmod(tmp, 0o644)  # mkstemp makes 0600; generated files are for everyone to read
                if _after_stage is not None:
                    _after_stage(i, name)
            with _signals_held():
                _commit(targets, staged)
                staged = []
    except OSError as exc:
        raise OutputError(f"cannot write into {folder}: {exc.strerror or exc}; nothing was changed") from None
    finally:
        for _, tmp in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return list(targets.values())


def _commit(targets: dict[str, Path], staged: list[tuple[str, str]]) -> None:
    """Old files aside, new ones in; on failure, the old ones back."""
    backups: list[tuple[Path, str | None]] = []
    try:
        for name, tmp in staged:
            path = targets[name]
            backup = None
            if path.exists():
                backup = tmp[: -len(_TMP_SUFFIX)] + ".old" + _TMP_SUFFIX
                os.replace(path, backup)
            backups.append((path, backup))
            os.replace(tmp, path)
    except BaseException:
        for path, backup in reversed(backups):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    path.unlink()
        raise
    for _, backup in backups:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.unlink(backup)

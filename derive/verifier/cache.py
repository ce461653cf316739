"""A disk cache of derivations, so that a verdict from the shell does not re-derive.

Contract. ``load(name_or_path, loss=None)`` returns the :class:`Derivation`
that ``derive.derive`` returns for the same arguments, computing only the one
asked for. The first call derives and stores it; later calls in any process
read it back (a dozen milliseconds instead of a few hundred).

The key is a SHA-256 of everything the result depends on: the spec text, the
loss option, the source of the engine modules, and the Python, SymPy and
package versions. A changed spec or engine therefore misses the cache; nothing
is ever invalidated by hand.

Where: ``$LSTM_DERIVE_CACHE`` if set (``off``, ``0`` or ``none`` disables the
cache), else ``$XDG_CACHE_HOME/lstm-derive``, else ``~/.cache/lstm-derive``.
The folder is created with mode 0700. Entries are pickles written to a
temporary name and renamed into place (atomic: a reader never sees half a
file, concurrent writers are harmless). Because unpickling trusts its input, an
entry is read only if it is a regular file owned by the current user and not
writable by group or others, as ssh treats its keys; anything else, and any
error, falls back to deriving in memory.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

_ENGINE_MODULES = ("engine/backprop.py", "spec/cell.py", "derivation.py", "errors.py", "spec/expr.py", "spec/ops.py", "engine/rules.py")
FORMAT = "1"


def cache_dir() -> Path | None:
    """The cache folder, or None when caching is off."""
    value = os.environ.get("LSTM_DERIVE_CACHE")
    if value is not None:
        if value.strip().lower() in ("", "0", "off", "none", "false", "no"):
            return None
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lstm-derive"


@lru_cache(maxsize=1)
def _engine_fingerprint() -> str:
    import sympy

    h = hashlib.sha256()
    h.update(f"{FORMAT}|{sys.version}|{sympy.__version__}|".encode())
    try:
        from importlib.metadata import version

        h.update(version("derive").encode())
    except Exception:  # running from a checkout that is not installed
        h.update(b"checkout")
    here = Path(__file__).resolve().parent.parent
    for name in _ENGINE_MODULES:
        try:
            h.update((here / name).read_bytes())
        except OSError:
            h.update(name.encode())
    return h.hexdigest()


def key(label: str, text: str, loss: str | None) -> str:
    h = hashlib.sha256()
    h.update(_engine_fingerprint().encode())
    h.update(b"\0" + label.encode("utf-8", "surrogateescape"))
    h.update(b"\0" + text.encode("utf-8", "surrogateescape"))
    h.update(b"\0" + str(loss).encode())
    return h.hexdigest()[:40]


def _trusted(path: Path) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return not (st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def load(name_or_path, loss: str | None = None):
    """The derivation of a preset or spec file, from the disk cache if possible."""
    from derive.derivation import Derivation, derive, spec_text

    label, text = spec_text(name_or_path)
    k = key(label, text, loss)
    hit = _MEMORY.get(k)
    if hit is not None:
        return hit
    folder = cache_dir()
    path = folder / f"{k}.pickle" if folder is not None else None
    derivation = None
    if path is not None and _trusted(path):
        try:
            with open(path, "rb") as fh:
                obj = pickle.load(fh)
            if isinstance(obj, Derivation):
                derivation = obj
        except Exception:  # a damaged entry is rebuilt below
            derivation = None
    if derivation is None:
        derivation = derive(name_or_path, loss=loss)
        if path is not None:
            store(path, derivation)
    _MEMORY[k] = derivation
    return derivation


# one process reads each derivation once
_MEMORY: dict[str, object] = {}


def _unevaluated_eq(lhs, rhs):
    import sympy as sp

    return sp.Eq(lhs, rhs, evaluate=False)


def _rebuild(cls, state):
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def _picklable(value) -> bool:
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return True
    except Exception:
        return False


class _Pickler(pickle.Pickler):
    """Pickles ``Eq`` as unevaluated: rebuilding an evaluated ``Eq`` asks SymPy's
    assumption system whether the two sides are equal, which costs more than
    the whole rest of the derivation to load. A Derivation is stored without
    what it caches in memory and cannot be pickled (its compiled kernels)."""

    def reducer_override(self, obj):
        import sympy as sp

        from derive.derivation import Derivation

        if type(obj) is sp.Equality:
            return _unevaluated_eq, (obj.lhs, obj.rhs)
        if type(obj) is Derivation:
            state = {k: v for k, v in obj.__dict__.items() if not k.startswith("_") or k in _KEEP or _picklable(v)}
            return _rebuild, (Derivation, state)
        return NotImplemented


_KEEP = ("_sweep", "_rhs")


def store(path: Path, obj) -> bool:
    """Write ``obj`` atomically; False (and no file) if anything goes wrong."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pickle")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as fh:
            _Pickler(fh, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return True
    except Exception:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False

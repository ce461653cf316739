"""No derivation cache on disk (issue 12): the command line never touches
``$LSTM_DERIVE_CACHE`` nor ``~/.cache/lstm-derive``, however hostile they are.

The folders are made as an attacker would leave them: world-writable, full of
pickles whose unpickling writes a marker file, with symlinks to those pickles
and to a file outside. The commands run in a fresh interpreter with an audit
hook (``sys.addaudithook``) that records every file-system event Python
reports (``open``, ``os.listdir``, ``os.scandir``, ``os.mkdir``, ``os.rename``,
``os.remove``, ...) whose path lies in those folders; nothing is monkeypatched.
A stat is not an audit event; every file there is also made unreadable (mode
000), a tripwire for an ``open`` outside Python's audited calls (it stops
nothing when the tests run as root, so the hook is the proof). The folders are
compared before and after: nothing added, nothing removed.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_RUNNER = r"""
import json, os, runpy, sys
watched = [os.path.realpath(p) for p in json.loads(os.environ["WATCHED"])]
seen = []

def _paths(args):
    for a in args:
        if isinstance(a, (str, bytes, os.PathLike)):
            try:
                yield os.path.realpath(os.fsdecode(a))
            except (TypeError, ValueError):
                pass

def hook(event, args):
    if event == "open" or event.startswith(("os.", "shutil.", "glob.", "pathlib.", "tempfile.")):
        for p in _paths(args):
            if any(p == w or p.startswith(w + os.sep) for w in watched):
                seen.append([event, p])

sys.addaudithook(hook)
sys.argv = ["lstm-derive", *json.loads(os.environ["ARGV"])]
try:
    runpy.run_module("derive", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
with open(os.environ["SEEN"], "w") as f:
    json.dump(seen, f)
sys.exit(code)
"""


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _hostile_folder(folder: Path, marker: Path, outside: Path) -> None:
    folder.mkdir(parents=True)
    for k in range(3):
        entry = folder / f"{k:040x}.pickle"
        entry.write_bytes(pickle.dumps(_Payload(str(marker))))
        os.chmod(entry, 0)
    (folder / "link.pickle").symlink_to(folder / f"{0:040x}.pickle")
    (folder / "elsewhere").symlink_to(outside)
    os.chmod(folder, 0o777)


@pytest.mark.parametrize("argv", [
    ["verify", "coursera", "dft", "dc * c_prev * ft * (1 - ft)"],
    ["verify", "elman", "dz_h", "dh * (1 - h**2)"],
    ["numpy", "gru", "-o", "{out}/gru.py"],
], ids=["verify-coursera", "verify-elman", "numpy-gru"])
def test_cache_folders_are_never_touched(tmp_path, argv):
    marker = tmp_path / "unpickled"
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    shared = tmp_path / "shared-cache"
    home = tmp_path / "home"
    _hostile_folder(shared, marker, outside)
    _hostile_folder(home / ".cache" / "lstm-derive", marker, outside)
    out = tmp_path / "out"
    out.mkdir()
    seen_file = tmp_path / "seen.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), LSTM_DERIVE_CACHE=str(shared), HOME=str(home),
               XDG_CACHE_HOME=str(home / ".cache"), SEEN=str(seen_file),
               WATCHED=json.dumps([str(shared), str(home / ".cache")]),
               ARGV=json.dumps([a.replace("{out}", str(out)) for a in argv]))
    done = subprocess.run([sys.executable, "-c", _RUNNER], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr  # a verdict or a written module, not a crash
    assert "Traceback" not in done.stderr, done.stderr
    seen = json.loads(seen_file.read_text())
    assert seen == [], seen
    assert not marker.exists()
    # the folders are as they were: nothing added, nothing removed
    assert sorted(p.name for p in shared.iterdir()) == sorted(
        [f"{k:040x}.pickle" for k in range(3)] + ["link.pickle", "elsewhere"])
    assert sorted(p.name for p in (home / ".cache").iterdir()) == ["lstm-derive"]


def test_the_hook_sees_what_it_should(tmp_path):
    """The audit hook does record an open in a watched folder (else the test above proves nothing)."""
    watched = tmp_path / "w"
    watched.mkdir()
    (watched / "f").write_text("x")
    seen_file = tmp_path / "seen.json"
    runner = _RUNNER.replace('runpy.run_module("derive", run_name="__main__", alter_sys=True)',
                             'open(os.path.join(watched[0], "f")).read(); os.listdir(watched[0])')
    env = dict(os.environ, PYTHONPATH=str(ROOT), SEEN=str(seen_file), WATCHED=json.dumps([str(watched)]),
               ARGV="[]")
    subprocess.run([sys.executable, "-c", runner], env=env, check=True, timeout=60)
    events = {e for e, _ in json.loads(seen_file.read_text())}
    assert {"open", "os.listdir"} <= events

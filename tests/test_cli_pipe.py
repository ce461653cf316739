"""`lstm-derive ... | head`: when the reader of the output leaves, the command stops
quietly (exit 141 when it meets the closed pipe, as a shell reports a tool stopped by
SIGPIPE; 0 when its output was already written), with no traceback."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_closed_pipe_is_not_a_traceback():
    read, write = os.pipe()
    fcntl.fcntl(read, fcntl.F_SETPIPE_SZ, 4096)  # far smaller than the write-up: the writer meets the closed pipe
    proc = subprocess.Popen([sys.executable, "-m", "derive", "markdown", "coursera"], stdout=write,
                            stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        first = reader.readline()
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert first.strip(), first  # the reader got the start of the write-up
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code in (0, 141)

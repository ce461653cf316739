"""Run the user's code in a child process, with a time limit and a memory limit.

Contract. :func:`run_child` starts a fresh Python interpreter (never a fork of
this process: it holds no state of ours) on :mod:`derive.verifier.child` with a
job (JSON) and returns the child's answer (JSON), or raises
:class:`CouldNotCheck` with the reason: the time limit passed (a hang, a
training loop), the child ended without answering (``sys.exit`` called outside
a checked call, ``os._exit``), it was killed by a signal (a segfault, the memory
limit), or its answer is unreadable. The memory limit is the child's address
space (``RLIMIT_AS``), set in the child before it starts; BLAS threads are held
at one so that the limit and the timings mean the same on every machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_TIMEOUT = 10.0  # seconds for the whole child: importing NumPy alone takes a fraction of one
DEFAULT_MEMORY = 2 * 1024 ** 3  # bytes of address space
STARTUP_SECONDS = 60.0  # the child's own imports (NumPy, the package) and the user's files' imports


class CouldNotCheck(Exception):
    """The user's code could not be run to a verdict (exit status 2)."""


def _limit(memory: int):
    def apply() -> None:  # runs in the child, between fork and exec
        import resource

        os.setsid()
        try:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        except (ValueError, OSError):
            pass
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_child(job: dict, timeout: float = DEFAULT_TIMEOUT, memory: int = DEFAULT_MEMORY) -> dict:
    """The child's answer to ``job``; :class:`CouldNotCheck` when there is none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds the package `derive`
    env["PYTHONPATH"] = root
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    with tempfile.TemporaryDirectory(prefix="lstm-derive-child-") as tmp:
        out = Path(tmp) / "answer.json"
        job = {**job, "answer": str(out)}
        jobfile = Path(tmp) / "job.json"
        jobfile.write_text(json.dumps(job), encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "derive.verifier.child", str(jobfile)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=tmp, env=env, preexec_fn=_limit(memory))
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise CouldNotCheck(f"the code did not finish within {timeout:g} s (a loop that never ends? "
                                "raise the limit with --timeout)") from None
        if out.is_file():
            try:
                return json.loads(out.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise CouldNotCheck("the child process wrote an unreadable answer") from None
        code = proc.returncode
        if code == 3:
            raise CouldNotCheck("lstm-derive itself failed in the process running your code (a bug in the tool, "
                                "not in your code; please report it): "
                                + " / ".join(stderr.decode("utf-8", "replace").strip().splitlines()[-2:]))
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        detail = f" ({' / '.join(tail)})" if tail else ""
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (the memory limit?)" if -code in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT) else ""
            raise CouldNotCheck(f"the process running your code crashed: signal {name}{hint}{detail}")
        if any("MemoryError" in line for line in tail):
            raise CouldNotCheck(f"your code ran out of memory (limit {memory // 1024 ** 2} MB)")
        raise CouldNotCheck(f"the process running your code ended (exit status {code}) before any verdict: "
                            f"os._exit() or exit() at import?{detail}")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.communicate()

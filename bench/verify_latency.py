"""Wall-clock latency of a verdict from the shell, import time included.

    python bench/verify_latency.py [--repeat N] [--markdown]

Each case is run as a fresh process (``python -m derive verify ...``, what the
console script ``lstm-derive`` runs) and timed from spawn to exit. "cold" runs
start with an empty derivation cache (the one preset asked is derived and
stored), "warm" runs read it. Hostile inputs must be rejected with exit status
2; their times are reported too. The requirement (issue 6): a verdict in under
1.5 s on a 2-core machine; hostile input rejected in under a second.

Nothing here is a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    ("coursera dft, right (Python)", ["coursera", "dft",
                                      "(dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next)*ft*(1-ft)"], 0),
    ("coursera dft, missing parenthesis", ["coursera", "dft",
                                           "dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next*ft*(1-ft)"], 1),
    ("coursera dWf (Python)", ["coursera", "dWf", "dft @ concat.T"], 0),
    ("coursera da_prev (LaTeX)", ["coursera", "da_prev", "--latex",
                                  r"W_f[:, :n_a]^{T} d\gamma_f + W_u[:, :n_a]^T d\gamma_u + W_c[:, :n_a]^T dp\tilde c"
                                  r" + W_o[:, :n_a]^T d\gamma_o"], 0),
    ("coursera da_prev rows-sliced (repair)", ["coursera", "da_prev",
                                                "Wf[:n_a, :].T @ dft + Wi[:n_a, :].T @ dit + Wc[:n_a, :].T @ dcct"
                                                " + Wo[:n_a, :].T @ dot"], 1),
    ("graves dz_f --json", ["graves", "dz_f", "--json", "dc*c_prev*f*(1-f)"], 0),
    ("nicodjimenez seed line", ["nicodjimenez", "ds = self.state.o * top_diff_h + top_diff_s"], 0),
    # issue 7: cells that are not LSTMs, and a user's spec file
    ("gru dz_r without b_hn", ["gru", "dz_r", "dz_n*r*(1-r)*(h_prev @ W_hn.T)"], 1),
    ("elman dW_hh one step as total", ["elman", "dW_hh", "--total", "dz_h.T @ h_prev"], 1),
    ("coursera_rnn da_prev (LaTeX)", ["coursera_rnn", "da_prev", "--latex", r"W_{aa} \cdot dtanh"], 1),
    ("cifg delta_f without -delta_i", ["cifg", "delta_f", "c_prev*delta_c"], 1),
    ("--spec examples/mgu.toml", ["--spec", "examples/mgu.toml", "dh_prev", "dh*(1-f) + f*(W_h.T @ dz_h_tilde)[:m]"], 1),
]

HOSTILE = [
    ("__import__('os').system(...)", ["coursera", "dft", "__import__('os').system('echo pwned')"]),
    ("().__class__.__mro__", ["coursera", "dft", "().__class__.__mro__"]),
    ("9**9**9**9", ["coursera", "dft", "9**9**9**9"]),
    ("10 000 nested parentheses", ["coursera", "dft", "--file", "{deep}"]),
    ("1 MB string", ["coursera", "dft", "--file", "{big}"]),
    ("non-UTF-8 bytes", ["coursera", "dft", "--file", "{binary}"]),
    ("LaTeX \\input", ["coursera", "dft", "--latex", r"\input{/etc/passwd}"]),
]


CPU: dict[str, list[float]] = {}


def run(args, env, command=("verify",), label=None) -> tuple[float, int]:
    """Wall seconds and exit status of one fresh process; its CPU seconds
    (user + system) are kept in CPU[label] (wall time depends on the load of
    the machine, CPU time much less)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    argv = [sys.executable, *args] if command == ("python",) else [sys.executable, "-m", "derive", *command, *args]
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if label is not None:
        CPU.setdefault(label, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table for BENCHMARKS.md")
    opts = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        env = dict(os.environ, LSTM_DERIVE_CACHE=str(tmpdir / "cache"), PYTHONPATH=str(ROOT))
        files = {
            "deep": tmpdir / "deep.txt",
            "big": tmpdir / "big.txt",
            "binary": tmpdir / "binary.txt",
        }
        files["deep"].write_text("(" * 10_000 + "ft" + ")" * 10_000)
        files["big"].write_text("ft + " * 200_000 + "ft")
        files["binary"].write_bytes(b"ft \xff\xfe + it")

        rows = []
        # the floor: Python itself, and the command line doing nothing of ours
        for label, args, command in (("baseline: python -c pass", ["-c", "pass"], ("python",)),
                                     ("baseline: lstm-derive presets", [], ("presets",))):
            rows.append((label, [run(args, env, command, label)[0] for _ in range(opts.repeat)]))
        # cold: an empty cache for each run
        for label, args, want in [CASES[0]] + [c for c in CASES if c[1][0] == "gru"]:
            times = []
            for i in range(opts.repeat):
                cold = dict(env, LSTM_DERIVE_CACHE=str(tmpdir / f"cold{i}"))
                t, code = run(args, cold, label=f"{label} — cold cache")
                assert code == want, (label, code)
                times.append(t)
            rows.append((f"{label} — cold cache", times))
        run(CASES[0][1], env)  # fill the cache
        for label, args, want in CASES:
            if args[0] != "coursera":
                run(args, env)  # fill this preset's entry
            times = []
            for _ in range(opts.repeat):
                t, code = run(args, env, label=label)
                assert code == want, (label, code)
                times.append(t)
            rows.append((label, times))
        hostile = []
        for label, args in HOSTILE:
            args = [str(files[a[1:-1]]) if a[1:-1] in files else a for a in args]
            times = []
            for _ in range(opts.repeat):
                t, code = run(args, env, label=label)
                assert code == 2, (label, code)
                times.append(t)
            hostile.append((label, times))

    cpu = f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"
    try:
        load = "load average %.2f" % os.getloadavg()[0]
    except OSError:
        load = ""
    def cpu_median(label):
        return statistics.median(CPU[label]) if label in CPU else float("nan")

    if opts.markdown:
        print(f"Machine: {cpu}; {load}; {opts.repeat} runs each, fresh process per run.\n")
        print("| case | wall median (s) | wall max (s) | CPU median (s) |")
        print("|---|---|---|---|")
        for label, times in rows:
            print(f"| {label} | {statistics.median(times):.2f} | {max(times):.2f} | {cpu_median(label):.2f} |")
        print("\nHostile input (exit status 2 every time):\n")
        print("| input | wall median (s) | wall max (s) | CPU median (s) |")
        print("|---|---|---|---|")
        for label, times in hostile:
            print(f"| {label} | {statistics.median(times):.2f} | {max(times):.2f} | {cpu_median(label):.2f} |")
    else:
        print(cpu, load)
        for label, times in rows + hostile:
            print(f"{label:45s} wall median {statistics.median(times):.2f} s  max {max(times):.2f} s"
                  f"  CPU median {cpu_median(label):.2f} s")
    verdicts = [(label, t) for label, t in rows if not label.startswith("baseline")]
    worst = max(max(t) for _, t in verdicts)
    worst_hostile = max(max(t) for _, t in hostile)
    print(f"\nworst verdict {worst:.2f} s (limit 1.5 s); worst rejection {worst_hostile:.2f} s (limit 1 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

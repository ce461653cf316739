"""How long a full ``lstm-derive build`` takes, cold: fresh process, fresh output folder, no stamp.

    python bench/build_time.py [--repeat 3] [--checkout PATH] [--per-preset]

Each run is a fresh interpreter running ``python -m derive build -o DIR`` into a new
empty folder with an empty ``XDG_CACHE_HOME`` (so the build's stamp cannot say "up to
date": everything is rendered), once with the default workers (one per CPU) and once
with ``-j 1``. Reported per run: wall clock from spawn to exit, CPU time of the child
and its workers (user + sys, from ``resource.getrusage(RUSAGE_CHILDREN)``) and the
1-minute load average before the run; then the medians. ``--checkout PATH`` measures
another checkout (its ``derive`` first on ``PYTHONPATH``): the same command before and
after a change. ``--per-preset`` adds the CPU time of each preset's four files in one
process (``render_one``, in the order of ``presets()``, so the first also pays for
deriving every preset, which its crosswalk reads), with the shares of the two numeric
proofs the write-ups measure (``unrolled.check``, ``gradcheck.measure``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_PRESET = r"""
import json, time
from derive.cli import build
from derive.derivation import derive, presets
from derive.numeric import gradcheck, unrolled
cpu = time.process_time
out = {}
for name in presets():
    t0 = cpu()
    d = derive(name)
    t1 = cpu(); unrolled.check(d)
    t2 = cpu(); gradcheck.measure(d)
    t3 = cpu(); build.render_one(name, "generated")
    t4 = cpu()
    out[name] = {"total": t4 - t0, "unrolled": t2 - t1, "gradcheck": t3 - t2}
print(json.dumps(out))
"""


def _env(checkout: Path | None, cache: str) -> dict:
    env = dict(os.environ, XDG_CACHE_HOME=cache)
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def one_build(checkout: Path | None, jobs: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out, cache = Path(tmp) / "fresh", str(Path(tmp) / "cache")
        cmd = [sys.executable, "-m", "derive", "build", "-o", str(out)]
        if jobs is not None:
            cmd += ["-j", str(jobs)]
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=_env(checkout, cache), check=True, stdout=subprocess.DEVNULL,
                       cwd=checkout or Path.cwd())
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        files = len(list(out.iterdir()))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load": load, "files": files}


def per_preset(checkout: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run([sys.executable, "-c", PER_PRESET], env=_env(checkout, cache), check=True,
                              capture_output=True, text=True, cwd=checkout or Path.cwd())
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--checkout", type=Path, default=None, help="measure this checkout's derive")
    ap.add_argument("--per-preset", action="store_true")
    args = ap.parse_args()
    for jobs in (None, 1):
        label = "default workers" if jobs is None else f"-j {jobs}"
        runs = [one_build(args.checkout, jobs) for _ in range(args.repeat)]
        for r in runs:
            print(f"{label}: wall {r['wall']:.2f} s, CPU {r['cpu']:.2f} s, load {r['load']:.2f}, {r['files']} files")
        print(f"{label}: median wall {statistics.median(r['wall'] for r in runs):.2f} s, "
              f"median CPU {statistics.median(r['cpu'] for r in runs):.2f} s")
    if args.per_preset:
        table = per_preset(args.checkout)
        print("| preset | CPU (s) | of which unrolled.check | gradcheck.measure |")
        print("|---|---|---|---|")
        for name, row in table.items():
            print(f"| {name} | {row['total']:.2f} | {row['unrolled']:.2f} | {row['gradcheck']:.2f} |")
        print(f"| all | {sum(r['total'] for r in table.values()):.2f} | "
              f"{sum(r['unrolled'] for r in table.values()):.2f} | {sum(r['gradcheck'] for r in table.values()):.2f} |")


if __name__ == "__main__":
    main()

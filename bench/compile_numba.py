"""First-call compile time of every compiled module (generated/*_numba.py), in one fresh process.

    python bench/compile_numba.py             # no disk cache: what a fresh checkout (CI) pays
    python bench/compile_numba.py --cached    # with numba's disk cache beside the modules (a second process)

Each module is imported by name, then its forward and backward run once at a tiny
size in float32 and in float64 (full BPTT: the compiled kernels). Prints, per
module and dtype, the wall time and this process's CPU time of those first calls
(compiling), then the totals and the load average. Without ``--cached`` numba's
cache goes to a fresh temporary folder (NUMBA_CACHE_DIR), so nothing is reused.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child() -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from test_generated_reference import dims_for, generated_grads, sequence

    import numba

    t0, c0 = time.perf_counter(), time.process_time()
    numba.njit(lambda v: v + 1)(1)
    print(f"numba's first compile (start-up): {time.perf_counter() - t0:.2f} s wall, "
          f"{time.process_time() - c0:.2f} s CPU", flush=True)
    total_wall = total_cpu = 0.0
    for path in sorted((ROOT / "generated").glob("*_numba.py")):
        name = path.name[:-len("_numba.py")]
        spec = importlib.util.spec_from_file_location(f"generated_{name}_numba", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        seq = sequence(name, dims_for(name, 2, 3, 2), 3, seed=0)
        for dtype in (np.float32, np.float64):
            t0, c0 = time.perf_counter(), time.process_time()
            generated_grads(name, seq, dtype=dtype, module_=mod)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            total_wall += wall
            total_cpu += cpu
            print(f"{name:14s} {np.dtype(dtype).name:8s} {wall:6.2f} s wall {cpu:6.2f} s CPU", flush=True)
    print(f"total: {total_wall:.1f} s wall, {total_cpu:.1f} s CPU; load average {os.getloadavg()}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        child()
        return 0
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    print(f"load average at the start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        if "--cached" not in argv:
            env["NUMBA_CACHE_DIR"] = tmp
        return subprocess.run([sys.executable, __file__, "--child"], env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

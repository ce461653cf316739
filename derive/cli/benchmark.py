"""The benchmark behind ``python bench/lstm.py``, ``python bench/gru.py`` and ``lstm-derive bench``.

Contract. :func:`run` times forward + backward of an emitted module against
its torch.nn counterpart on the CPU (``--cell``, :data:`CELLS`):
``generated/pytorch.py`` against ``torch.nn.LSTM`` (the default),
``generated/gru.py`` against ``torch.nn.GRU``, ``generated/elman.py`` against
``torch.nn.RNN(nonlinearity='tanh')``. The module is rendered from the spec
in this run, so it is the committed file when ``lstm-derive build --check``
passes. A third side is a naive per-step NumPy reference written the way the
course notebook is (separate gate products per step, weight gradients
accumulated inside the loop; derive.cli.bench_naive). Two more sides: the
compiled twin ``generated/<preset>_numba.py`` (``compiled``; its first call,
compiling, timed apart) and the GEMM floor (``floor``: the same matrix products
the compiled module performs, alone, in NumPy; derive.cli.bench_compiled). It prints a Markdown table: medians, the ratios
to torch, the fraction of the machine's matrix-multiply rate that each
achieves (the rate is measured in the same run: a square NumPy matmul of the
same dtype with the same threads), and the peak memory of one forward +
backward.

Honest measurement on a small shared machine:
- every measurement runs in a fresh worker process (``python -m
  derive.cli.benchmark --worker …``), one implementation at a time, so NumPy's idle
  BLAS threads and torch's OpenMP threads never compete for the cores;
- the same thread count for NumPy's BLAS, scipy's BLAS (numba's np.dot),
  numba and torch (``--threads``, set through threadpoolctl,
  ``numba.set_num_threads``, ``torch.set_num_threads`` and the OMP/BLAS
  variables); one process per implementation, since three spinning thread
  pools in one process starve each other on two cores;
- a pause between timed samples (``--pause``), a few untimed calls first; a
  sample is one call, or at the smallest size as many calls back to back as
  last 20 ms (per call), since one millisecond call after a pause mostly times
  caches and a CPU waking up;
- peak memory is the rise of the worker's resident set (VmHWM, reset through
  /proc/self/clear_refs) over the first call in the fresh worker, the same for
  both sides;
- the whole table is measured ``--runs`` times (two by default) and the
  ratios of every run are shown, so that a ratio is only read where it is stable.

Timed tests have no place in the test suite; this module is never imported by it
except for its correctness check at a tiny size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from derive.cli.bench_naive import naive_elman_forward_backward, naive_forward_backward, naive_gru_forward_backward

SIZES = [(20, 1, 10, 16), (50, 32, 64, 128), (100, 64, 256, 256)]
DTYPES = ["float32", "float64"]
IMPLS = ["generated", "compiled", "floor", "torch", "naive"]
SAMPLE = 0.02  # seconds: the shortest timed sample (calls back to back, then a pause)


@dataclass(frozen=True)
class Cell:
    """One benchmarked cell: its preset, its torch.nn module, its naive reference."""

    preset: str
    torch_module: str
    gates: int  # row blocks of weight_ih: 4 for the LSTM, 3 for the GRU, 1 for the RNN
    states: int  # h (and c)
    naive: Callable

    @property
    def forward(self) -> str:
        return {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}[self.torch_module] + "_forward"

    @property
    def backward(self) -> str:
        return self.forward.replace("_forward", "_backward")


CELLS = {
    "lstm": Cell("pytorch", "LSTM", 4, 2, naive_forward_backward),
    "gru": Cell("gru", "GRU", 3, 1, naive_gru_forward_backward),
    "elman": Cell("elman", "RNN", 1, 1, naive_elman_forward_backward),
}


def matmul_flops(T: int, B: int, D: int, H: int, gates: int = 4) -> float:
    """Matrix-product work of one forward + backward: the gates' input and state
    terms (T·B·gH·(D+H) multiply-adds for g gate blocks), the same again for dx
    and dh, and again for dW_ih and dW_hh; two flops per multiply-add:
    6g·T·B·H·(D+H) (24· for the LSTM, 18· for the GRU)."""
    return 2.0 * 3 * T * B * gates * H * (D + H)


def load_generated(path: str):
    """The module at ``path``, imported under its file's name (registered, so that a
    compiled module finds its numba disk cache in the next worker)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# the worker: one implementation, one dtype, one size, in a process of its own


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def inputs(cell: Cell, dtype: str, size: tuple[int, int, int, int], seed: int = 1234):
    """x, the initial states (h0, and c0 for the LSTM), torch's four weights, d_output."""
    import numpy as np

    T, B, D, H = size
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    states = [(0.1 * rng.standard_normal((1, B, H))).astype(dtype) for _ in range(cell.states)]
    k = 1 / math.sqrt(H)
    G = cell.gates * H
    weights = [rng.uniform(-k, k, shape).astype(dtype) for shape in ((G, D), (G, H), (G,), (G,))]
    d_output = rng.standard_normal((T, B, H)).astype(dtype)
    return x, states, weights, d_output


def worker(impl: str, dtype: str, size: tuple[int, int, int, int], threads: int, repeats: int, pause: float,
           module_path: str, mode: str = "time", cell_name: str = "lstm") -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    cell = CELLS[cell_name]
    T, B, D, H = size
    x, states, weights, d_output = inputs(cell, dtype, size)

    first = None
    if impl == "generated":
        gen = load_generated(module_path)
        forward, backward = getattr(gen, cell.forward), getattr(gen, cell.backward)

        def call():
            output, _, cache = forward(x, *states, *weights)
            return backward(d_output, cache)
    elif impl == "compiled":
        from derive.cli.bench_compiled import compiled_call

        call, first = compiled_call(load_generated(compiled_path(module_path)), cell.forward, cell.backward, threads,
                                    x, states, weights, d_output)
    elif impl == "floor":
        from derive.cli.bench_compiled import floor_call

        call = floor_call(cell.gates, x, states, weights, d_output)
    elif impl == "naive":
        def call():
            return cell.naive(x, *states, *weights, d_output)
    elif impl == "torch":
        import torch

        torch.set_num_threads(threads)
        tdtype = getattr(torch, dtype)
        net = (torch.nn.RNN(D, H, nonlinearity="tanh") if cell.torch_module == "RNN"
               else getattr(torch.nn, cell.torch_module)(D, H)).to(tdtype)
        with torch.no_grad():
            for p, w in zip((net.weight_ih_l0, net.weight_hh_l0, net.bias_ih_l0, net.bias_hh_l0), weights):
                p.copy_(torch.from_numpy(w))
        xt = torch.from_numpy(x).requires_grad_()
        st = [torch.from_numpy(a).requires_grad_() for a in states]
        dt = torch.from_numpy(d_output)
        hidden = tuple(st) if len(st) > 1 else st[0]

        def call():
            for p in (xt, *st, *net.parameters()):
                p.grad = None
            output, _ = net(xt, hidden)
            output.backward(dt)
    elif impl == "matmul":
        n = 1024
        rng = np.random.default_rng(4321)
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)

        def call():
            return a @ b
    else:
        raise ValueError(f"unknown implementation {impl}")

    with threadpool_limits(limits=threads):
        warm = []
        for _ in range(3):
            t0 = time.perf_counter()
            call()
            warm.append(time.perf_counter() - t0)
        # a timed sample is a few calls back to back, lasting SAMPLE seconds or one
        # call (a lone millisecond call after a pause times the waking caches)
        per_sample = max(1, math.ceil(SAMPLE / min(warm)))
        peak = None
        if mode == "memory":
            # the rise of the resident set over one warm call (the driver runs this
            # worker with glibc giving every block of 4 KiB or more back when it is
            # freed, so that the call's arrays show in the resident set and earlier
            # calls' leftovers do not)
            if _reset_peak():
                time.sleep(pause)
                base = _rss_kb("VmRSS")
                call()
                peak = max(_rss_kb("VmHWM") - base, 0)
            repeats = 0
        times = []
        for _ in range(repeats):
            time.sleep(pause)
            t0 = time.perf_counter()
            for _ in range(per_sample):
                call()
            times.append((time.perf_counter() - t0) / per_sample)
        pools = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")}
                 for p in threadpool_info()]
    return {"impl": impl, "dtype": dtype, "size": list(size), "times": times, "first": first,
            "median": statistics.median(times) if times else None, "peak_kb": peak, "threadpools": pools}


def compiled_path(module_path: str) -> str:
    """Where the driver writes the compiled twin of the module it benchmarks."""
    return module_path.replace("_bench.py", "_numba_bench.py")


def _worker_main(argv: list[str]) -> int:
    impl, dtype, size, threads, repeats, pause, path, mode, cell = argv
    result = worker(impl, dtype, tuple(int(s) for s in size.split(",")), int(threads), int(repeats), float(pause), path,
                    mode, cell)
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------
# the driver


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm",
                   help="lstm: generated/pytorch.py vs torch.nn.LSTM (default); gru: generated/gru.py vs "
                        "torch.nn.GRU; elman: generated/elman.py vs torch.nn.RNN")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for NumPy's BLAS and for torch alike (default: all cores)")
    p.add_argument("--runs", type=int, default=2, help="measure the whole table this many times (default 2)")
    p.add_argument("--rounds", type=int, default=3,
                   help="worker processes per implementation and size, taken in turns (default 3)")
    p.add_argument("--pause", type=float, default=0.01, help="seconds between timed samples (default 0.01)")
    p.add_argument("--seconds", type=float, default=3.0, help="time budget of one implementation at one size (default 3)")
    p.add_argument("--dtype", action="append", choices=DTYPES, help="only this dtype (repeatable)")
    p.add_argument("--size", action="append", metavar="T,B,D,H", help="only this size (repeatable)")
    p.add_argument("--skip-naive", action="store_true", help="leave out the naive reference")
    p.add_argument("--only", action="append", choices=IMPLS, metavar="IMPL",
                   help=f"only these implementations (repeatable; of {', '.join(IMPLS)}; torch is always measured)")
    p.add_argument("--sweep", action="store_true",
                   help="the sweep over T (10, 100, 1000) and H (64, 256, 1024) instead of the three sizes")
    p.add_argument("--json", metavar="FILE", help="also write every measurement here")


def _measure(impl, dtype, size, args, module_path, repeats, mode="time") -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    if mode == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "4096"  # every block of 4 KiB or more goes back to the system when freed
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "derive.cli.benchmark", "--worker", impl, dtype, ",".join(map(str, size)),
           str(args.threads), str(repeats), str(args.pause), module_path, mode, args.cell]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {impl} {dtype} {size} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()}


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def measure_size(dtype, size, impls, args, module_path, run) -> list[dict]:
    """Every implementation at one size: ``--rounds`` worker processes each, taken
    in turns (so that a change in the machine's load falls on all of them), the
    timed calls pooled; then one memory worker each."""
    pooled = {impl: [] for impl in impls}
    estimate = {}
    for r in range(args.rounds):
        for impl in impls:
            if impl not in estimate:
                probe = _measure(impl, dtype, size, args, module_path, 2)
                estimate[impl] = statistics.median(probe["times"])
                pooled[impl].extend(probe["times"])
            share = args.seconds / args.rounds
            repeats = max(3, min(100, int(share / max(estimate[impl], SAMPLE))))
            pooled[impl].extend(_measure(impl, dtype, size, args, module_path, repeats)["times"])
    results = []
    for impl in impls:
        mem = _measure(impl, dtype, size, args, module_path, 0, mode="memory")
        times = pooled[impl]
        results.append({"impl": impl, "dtype": dtype, "size": list(size), "run": run, "times": times,
                        "median": statistics.median(times), "peak_kb": mem["peak_kb"], "first": mem.get("first"),
                        "threadpools": mem["threadpools"]})
        print(f"  run {run} {dtype} {size} {impl}: median {statistics.median(times) * 1e3:.3f} ms "
              f"({len(times)} samples from {args.rounds} processes), peak {(mem['peak_kb'] or 0) / 1024:.1f} MiB",
              file=sys.stderr, flush=True)
    return results


def matmul_rate(dtype, args, module_path) -> tuple[float, list]:
    """The machine's matrix-multiply rate: the best of many 1024 x 1024 products."""
    m = _measure("matmul", dtype, (1, 1, 1, 1), args, module_path, 20)
    return 2 * 1024**3 / min(m["times"]), m["threadpools"]


def run(args: argparse.Namespace) -> int:
    try:
        import threadpoolctl  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        print(f"lstm-derive bench needs torch and threadpoolctl (pip install '.[test]'): {exc}", file=sys.stderr)
        return 2

    from derive.codegen.render import numba_module, render_module
    from derive.derivation import derive

    cell = CELLS[args.cell]
    text = render_module(derive(cell.preset))
    committed = Path(__file__).resolve().parents[2] / "generated" / f"{cell.preset}.py"
    same = committed.exists() and committed.read_text("utf-8") == text
    tmp = tempfile.mkdtemp(prefix="lstm-bench-")
    module_path = os.path.join(tmp, f"{cell.preset}_bench.py")
    Path(module_path).write_text(text, encoding="utf-8")
    Path(compiled_path(module_path)).write_text(numba_module(derive(cell.preset)), encoding="utf-8")

    from derive.cli.bench_compiled import SWEEP

    sizes = [tuple(int(v) for v in s.split(",")) for s in args.size] if args.size else SWEEP if args.sweep else SIZES
    dtypes = args.dtype or DTYPES
    impls = [i for i in IMPLS if not (args.skip_naive and i == "naive")]
    if args.only:
        impls = [i for i in impls if i in args.only or i == "torch"]
    _check_agreement(module_path, cell)
    if "compiled" in impls:
        _check_agreement(compiled_path(module_path), cell)

    info = machine()
    print(f"# lstm-derive bench: generated/{cell.preset}.py vs torch.nn.{cell.torch_module}, forward + backward",
          flush=True)
    print(f"machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; {info['system']}")
    print(f"threads: {args.threads} for NumPy's BLAS, scipy's BLAS and numba (the compiled module) and for torch; "
          f"{args.rounds} worker processes per "
          f"implementation and size, in turns; {args.pause} s between timed samples of at least "
          f"{SAMPLE * 1e3:.0f} ms")
    print(f"generated module: {f'the committed generated/{cell.preset}.py' if same else f'rendered in this run (generated/{cell.preset}.py is missing or stale)'}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        print(f"{var}: {os.environ.get(var, 'unset')}")
    print(f"implementations: {', '.join(impls)} (compiled: generated/{cell.preset}_numba.py; floor: its matrix "
          f"products alone, in NumPy)")
    print(f"load average at the start: {_load()}")
    print(flush=True)

    if "compiled" in impls:
        for dtype in dtypes:
            cold, warm = compile_times(dtype, args, module_path)
            print(f"compiled module, first call in a fresh process, {dtype}: {cold:.2f} s compiling "
                  f"(empty disk cache), {warm:.2f} s with the disk cache", flush=True)
        print(flush=True)
    results: list[dict] = []
    pools = {}
    for r in range(1, args.runs + 1):
        for dtype in dtypes:
            rate, pools["numpy"] = matmul_rate(dtype, args, module_path)
            for size in sizes:
                for m in measure_size(dtype, size, impls, args, module_path, r):
                    m["rate"] = rate
                    if m["impl"] in ("torch", "compiled"):
                        pools[m["impl"]] = m["threadpools"]
                    results.append(m)

    print(table(results, sizes, dtypes, impls, args.runs, cell.gates))
    print()
    print(f"load average at the end: {_load()}")
    print("BLAS and OpenMP libraries in use (threadpoolctl):")
    for side, infos in pools.items():
        for p in infos:
            detail = ", ".join(str(p[k]) for k in ("version", "threading_layer", "architecture") if p.get(k))
            print(f"  {side}: {p['internal_api']} ({detail}), {p['num_threads']} threads")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "threads": args.threads, "cell": args.cell,
                                               "results": results}, indent=1))
    return 0


RATIOS = [("generated", "torch"), ("compiled", "torch"), ("compiled", "floor"), ("floor", "torch"),
          ("naive", "torch")]


def table(results, sizes, dtypes, impls, runs, gates: int = 4) -> str:
    def get(run, dtype, size, impl):
        return next(m for m in results if m["run"] == run and m["dtype"] == dtype and tuple(m["size"]) == tuple(size)
                    and m["impl"] == impl)

    ratios = [(a, b) for a, b in RATIOS if a in impls and b in impls]
    rated = [i for i in ("generated", "compiled", "torch") if i in impls]
    head = (["dtype", "(T, B, D, H)"] + [f"{i} ms" for i in impls] + [f"{a} / {b}" for a, b in ratios]
            + ["matmul rate GFLOP/s"] + [f"{i} % of rate" for i in rated]
            + [f"peak MiB {i}" for i in impls if i != "floor"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dtype in dtypes:
        for size in sizes:
            T, B, D, H = size
            flops = matmul_flops(T, B, D, H, gates)
            cells = {h: [] for h in head}
            for r in range(1, runs + 1):
                m = {i: get(r, dtype, size, i) for i in impls}
                for i in impls:
                    cells[f"{i} ms"].append(f"{m[i]['median'] * 1e3:.2f}")
                    if i != "floor":
                        cells[f"peak MiB {i}"].append(f"{(m[i]['peak_kb'] or 0) / 1024:.1f}")
                for a, b in ratios:
                    cells[f"{a} / {b}"].append(f"{m[a]['median'] / m[b]['median']:.2f}")
                rate = m["torch"]["rate"]
                cells["matmul rate GFLOP/s"].append(f"{rate / 1e9:.0f}")
                for i in rated:
                    cells[f"{i} % of rate"].append(f"{100 * flops / m[i]['median'] / rate:.0f}")
            cells["dtype"] = [dtype]
            cells["(T, B, D, H)"] = [f"({T}, {B}, {D}, {H})"]
            lines.append("| " + " | ".join(" / ".join(cells[h]) for h in head) + " |")
    note = ("Each cell shows run 1 / run 2 / …; times are medians over the timed samples, per call; "
            "`floor` is the compiled module's matrix products alone, in NumPy, in the same run; "
            f"`% of rate` is the matrix-product work of forward + backward ({6 * gates}·T·B·H·(D+H) flops) over the time, "
            "as a share of the NumPy matmul rate measured in the same run (the best of 20 products of two "
            "1024 x 1024 matrices); peak is the rise of the resident set over one warm forward + backward.")
    return "\n".join(lines) + "\n\n" + note


def compile_times(dtype: str, args, module_path: str) -> tuple[float, float]:
    """Seconds of the compiled module's first call in a fresh process: with an
    empty disk cache (compiling), then with the cache that call left."""
    import shutil

    shutil.rmtree(Path(module_path).parent / "__pycache__", ignore_errors=True)
    cold = _measure("compiled", dtype, (2, 1, 2, 2), args, module_path, 0, mode="memory")["first"]
    warm = _measure("compiled", dtype, (2, 1, 2, 2), args, module_path, 0, mode="memory")["first"]
    return cold, warm


def _check_agreement(module_path: str, cell: Cell = CELLS["lstm"]) -> None:
    """The generated module and the naive reference compute the same gradients (float64, tiny size)."""
    import numpy as np

    gen = load_generated(module_path)
    x, states, weights, dout = inputs(cell, "float64", (4, 3, 5, 6), seed=7)
    weights = [w * 3 for w in weights]  # not small: every term counts
    _, _, cache = getattr(gen, cell.forward)(x, *states, *weights)
    a = getattr(gen, cell.backward)(dout, cache)
    b = cell.naive(x, *states, *weights, dout)
    for key in a:
        if not np.allclose(a[key], b[key], rtol=1e-10, atol=1e-12):
            raise AssertionError(f"generated and naive disagree on {key}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return _worker_main(argv[1:])
    p = argparse.ArgumentParser(prog="python bench/lstm.py", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

"""The benchmark behind ``python bench/lstm.py``, ``python bench/gru.py`` and ``lstm-derive bench``.

Contract. :func:`run` times forward + backward of an emitted module against
its torch.nn counterpart on the CPU (``--cell``, :data:`CELLS`):
``generated/pytorch.py`` against ``torch.nn.LSTM`` (the default),
``generated/gru.py`` against ``torch.nn.GRU``, ``generated/elman.py`` against
``torch.nn.RNN(nonlinearity='tanh')``; with ``--layers L`` or
``--bidirectional`` the module's class against the same stacked torch.nn
module (:mod:`derive.cli.benchmark_stacked`). The module is rendered from the spec
in this run, so it is the committed file when ``lstm-derive build --check``
passes. A third side is a naive per-step NumPy reference written the way the
course notebook is (separate gate products per step, weight gradients
accumulated inside the loop). Two more columns (issue 15): ``compiled``, the
module's compiled twin ``generated/<preset>_numba.py`` (rendered in this run
too; when numba and scipy are installed), and ``floor``, the GEMM floor: the
same matrix products the fused modules perform, timed alone in NumPy
(:func:`floor_call`). It prints a Markdown table: medians, the ratios
to torch, the fraction of the machine's matrix-multiply rate that each
achieves (the rate is measured in the same run: a square NumPy matmul of the
same dtype with the same threads), and the peak memory of one forward +
backward.

Honest measurement on a small shared machine:
- every measurement runs in a fresh worker process (``python -m
  derive.cli.benchmark --worker …``), one implementation at a time, so NumPy's idle
  BLAS threads and torch's OpenMP threads never compete for the cores;
- the same thread count for NumPy's BLAS and torch (``--threads``, set through
  threadpoolctl, ``torch.set_num_threads`` and the OMP/BLAS variables);
- a pause between timed samples (``--pause``), a few untimed calls first; a
  sample is one call, or at the smallest size as many calls back to back as
  last 20 ms (per call), since one millisecond call after a pause mostly times
  caches and a CPU waking up;
- peak memory is the rise of the worker's resident set (VmHWM, reset through
  /proc/self/clear_refs) over a warm call, glibc giving every freed block of
  4 KiB or more back: the median of ``MEMORY_CALLS`` calls in each of
  ``--rounds`` workers, and the median of those (torch's rise differs from
  process to process by up to a MiB at the medium size), the same for all;
- the compiled twin's products use NumPy's BLAS threads (``--threads``), its
  unit loops one thread (the batch split is off as generated);
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

from derive.cli.benchmark_stacked import stacked_flops

SIZES = [(20, 1, 10, 16), (50, 32, 64, 128), (100, 64, 256, 256)]
DTYPES = ["float32", "float64"]
IMPLS = ["generated", "compiled", "floor", "torch", "naive"]
MEMORY_CALLS = 5  # warm calls whose rise of the resident set is measured, per memory worker
SAMPLE = 0.02  # seconds: the shortest timed sample (calls back to back, then a pause)


# ---------------------------------------------------------------------------
# the naive reference: the course notebook's structure, in torch's layout


def naive_forward_backward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, d_output):
    """Per step: concat = [h_prev, x_t], four separate gate products, the
    gradients of every weight accumulated inside the backward loop."""
    import numpy as np

    T, N, D = x.shape
    H = h0.shape[-1]
    W = np.concatenate([weight_hh, weight_ih], axis=1)  # acts on [h_prev, x_t]
    Wi, Wf, Wg, Wo = (np.ascontiguousarray(W[k * H:(k + 1) * H]) for k in range(4))
    b = bias_ih + bias_hh
    bi, bf, bg, bo = (b[k * H:(k + 1) * H] for k in range(4))

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    h, c = h0[0], c0[0]
    caches = []
    for t in range(T):
        concat = np.concatenate([h, x[t]], axis=1)
        i = sigmoid(concat @ Wi.T + bi)
        f = sigmoid(concat @ Wf.T + bf)
        g = np.tanh(concat @ Wg.T + bg)
        o = sigmoid(concat @ Wo.T + bo)
        c_prev = c
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        caches.append((concat, i, f, g, o, c_prev, c))
    dWi, dWf, dWg, dWo = (np.zeros_like(w) for w in (Wi, Wf, Wg, Wo))
    dbi, dbf, dbg, dbo = (np.zeros_like(v) for v in (bi, bf, bg, bo))
    dx = np.empty_like(x)
    dh_next = np.zeros_like(h)
    dc_next = np.zeros_like(c)
    for t in reversed(range(T)):
        concat, i, f, g, o, c_prev, c = caches[t]
        dh = d_output[t] + dh_next
        tc = np.tanh(c)
        dc = dc_next + dh * o * (1 - tc**2)
        dzo = dh * tc * o * (1 - o)
        dzg = dc * i * (1 - g**2)
        dzf = dc * c_prev * f * (1 - f)
        dzi = dc * g * i * (1 - i)
        dWi += dzi.T @ concat
        dWf += dzf.T @ concat
        dWg += dzg.T @ concat
        dWo += dzo.T @ concat
        dbi += dzi.sum(axis=0)
        dbf += dzf.sum(axis=0)
        dbg += dzg.sum(axis=0)
        dbo += dzo.sum(axis=0)
        dconcat = dzi @ Wi + dzf @ Wf + dzg @ Wg + dzo @ Wo
        dh_next = dconcat[:, :H]
        dx[t] = dconcat[:, H:]
        dc_next = dc * f
    dW = np.concatenate([dWi, dWf, dWg, dWo])
    db = np.concatenate([dbi, dbf, dbg, dbo])
    return {"x": dx, "h0": dh_next[None], "c0": dc_next[None], "weight_ih": dW[:, H:], "weight_hh": dW[:, :H],
            "bias_ih": db, "bias_hh": db.copy()}


def naive_gru_forward_backward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, d_output):
    """torch.nn.GRU's equations the notebook's way: per step six separate gate
    products, the weight gradients accumulated inside the backward loop."""
    import numpy as np

    T, N, D = x.shape
    H = h0.shape[-1]
    Wir, Wiz, Win = (np.ascontiguousarray(weight_ih[k * H:(k + 1) * H]) for k in range(3))
    Whr, Whz, Whn = (np.ascontiguousarray(weight_hh[k * H:(k + 1) * H]) for k in range(3))
    bir, biz, bin_ = (bias_ih[k * H:(k + 1) * H] for k in range(3))
    bhr, bhz, bhn = (bias_hh[k * H:(k + 1) * H] for k in range(3))

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    h = h0[0]
    caches = []
    for t in range(T):
        r = sigmoid(x[t] @ Wir.T + bir + h @ Whr.T + bhr)
        z = sigmoid(x[t] @ Wiz.T + biz + h @ Whz.T + bhz)
        hn = h @ Whn.T + bhn
        n = np.tanh(x[t] @ Win.T + bin_ + r * hn)
        caches.append((h, r, z, n, hn))
        h = (1 - z) * n + z * h
    grads = {k: np.zeros_like(v) for k, v in (("Wir", Wir), ("Wiz", Wiz), ("Win", Win), ("Whr", Whr), ("Whz", Whz),
                                              ("Whn", Whn), ("bir", bir), ("biz", biz), ("bin", bin_), ("bhr", bhr),
                                              ("bhz", bhz), ("bhn", bhn))}
    dx = np.empty_like(x)
    dh_next = np.zeros_like(h)
    for t in reversed(range(T)):
        h_prev, r, z, n, hn = caches[t]
        dh = d_output[t] + dh_next
        dzn = dh * (1 - z) * (1 - n**2)
        dzz = dh * (h_prev - n) * z * (1 - z)
        dhn = dzn * r
        dzr = dzn * hn * r * (1 - r)
        for name, g, inp in (("Wir", dzr, x[t]), ("Wiz", dzz, x[t]), ("Win", dzn, x[t]),
                             ("Whr", dzr, h_prev), ("Whz", dzz, h_prev), ("Whn", dhn, h_prev)):
            grads[name] += g.T @ inp
        for name, g in (("bir", dzr), ("biz", dzz), ("bin", dzn), ("bhr", dzr), ("bhz", dzz), ("bhn", dhn)):
            grads[name] += g.sum(axis=0)
        dx[t] = dzr @ Wir + dzz @ Wiz + dzn @ Win
        dh_next = dh * z + dzr @ Whr + dzz @ Whz + dhn @ Whn
    g = grads
    return {"x": dx, "h0": dh_next[None], "weight_ih": np.concatenate([g["Wir"], g["Wiz"], g["Win"]]),
            "weight_hh": np.concatenate([g["Whr"], g["Whz"], g["Whn"]]),
            "bias_ih": np.concatenate([g["bir"], g["biz"], g["bin"]]),
            "bias_hh": np.concatenate([g["bhr"], g["bhz"], g["bhn"]])}


def naive_elman_forward_backward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, d_output):
    """torch.nn.RNN's equations per step, the weight gradients accumulated inside the loop."""
    import numpy as np

    T = x.shape[0]
    h = h0[0]
    hs = []
    for t in range(T):
        h = np.tanh(x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
        hs.append(h)
    dW_ih, dW_hh, db = np.zeros_like(weight_ih), np.zeros_like(weight_hh), np.zeros_like(bias_ih)
    dx = np.empty_like(x)
    dh_next = np.zeros_like(h)
    for t in reversed(range(T)):
        h_prev = hs[t - 1] if t else h0[0]
        dz = (d_output[t] + dh_next) * (1 - hs[t] ** 2)
        dW_ih += dz.T @ x[t]
        dW_hh += dz.T @ h_prev
        db += dz.sum(axis=0)
        dx[t] = dz @ weight_ih
        dh_next = dz @ weight_hh
    return {"x": dx, "h0": dh_next[None], "weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}


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


def load_generated(path: str, name: str = "generated_pytorch_lstm"):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a compiled module caches its kernels on disk only when imported by name
    spec.loader.exec_module(module)
    return module


def compiled_path(module_path: str) -> str:
    """Where the run writes the compiled twin, beside the NumPy module."""
    return module_path.replace("_bench.py", "_numba_bench.py")


def floor_call(cell: "Cell", x, states, weights):
    """The GEMM floor: the matrix products the fused modules perform, timed alone
    in NumPy: the input terms of all steps (one product), per step the state's
    terms (h @ W_hhᵀ into a scratch) and the state's adjoint (dz @ W_hh), then the
    weight and input gradients (one product each). Nothing elementwise."""
    import numpy as np

    T, N, D = x.shape
    weight_ih, weight_hh = weights[0], weights[1]
    G, H = weight_hh.shape
    x2d = x.reshape(T * N, D)
    WhhT = np.ascontiguousarray(weight_hh.T)  # as the compiled twin: a plain (NN) product, 1.1-1.6x faster than NT
    hs = np.empty((T + 1, N, H), x.dtype)
    hs[:] = states[0]
    hp = np.empty((N, G), x.dtype)
    dh = np.empty((N, H), x.dtype)

    def call():
        gates = (x2d @ weight_ih.T).reshape(T, N, G)
        for t in range(T):
            np.matmul(hs[t], WhhT, out=hp)
        for t in range(T - 1, -1, -1):
            np.matmul(gates[t], weight_hh, out=dh)
        dz = gates.reshape(T * N, G)
        return dz.T @ x2d, dz.T @ hs[:-1].reshape(T * N, H), dz @ weight_ih

    return call


# ---------------------------------------------------------------------------
# the worker: one implementation, one dtype, one size, in a process of its own


def in_turns(runs: dict[str, Callable[[], object]], rounds: int, calls: int, warm: int = 2, pause: float = 0.02,
             clock: Callable[[], float] = time.process_time) -> dict[str, list[float]]:
    """Time callables against each other in one process, in turns: each called
    ``warm`` times first (compiles, caches), then ``rounds`` samples of each, a
    pause before every sample; {name: seconds per call of every sample}. CPU time
    by default (steadier than wall time on a shared machine, and with one thread
    the call's own); ``clock=time.perf_counter`` where other threads work too."""
    for run in runs.values():
        for _ in range(warm):
            run()
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            time.sleep(pause)
            t0 = clock()
            for _ in range(calls):
                run()
            samples[k].append((clock() - t0) / calls)
    return samples


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
           module_path: str, mode: str = "time", cell_name: str = "lstm", layers: int = 1,
           bidirectional: bool = False) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    cell = CELLS[cell_name]
    T, B, D, H = size
    x, states, weights, d_output = inputs(cell, dtype, size)

    paired = None  # a second call timed in turns with the first (the compiled twin's floor)
    if (layers > 1 or bidirectional) and impl in ("generated", "torch"):
        from derive.cli.benchmark_stacked import stacked_call

        call = stacked_call(impl, load_generated(module_path), cell.torch_module, dtype, size, layers, bidirectional,
                            threads)
    elif impl in ("generated", "compiled"):
        gen = (load_generated(module_path) if impl == "generated"
               else load_generated(compiled_path(module_path), f"bench_{cell.preset}_numba"))
        forward, backward = getattr(gen, cell.forward), getattr(gen, cell.backward)

        def call():
            output, _, cache = forward(x, *states, *weights)
            return backward(d_output, cache)
        if impl == "compiled":  # its floor timed in this worker too, in turns with it (a paired ratio)
            paired = floor_call(cell, x, states, weights)
    elif impl == "floor":
        call = floor_call(cell, x, states, weights)
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
        def calls_per_sample(f):
            warm = []
            for _ in range(3):
                t0 = time.perf_counter()
                f()
                warm.append(time.perf_counter() - t0)
            # a timed sample is a few calls back to back, lasting SAMPLE seconds or one
            # call (a lone millisecond call after a pause times the waking caches)
            return max(1, math.ceil(SAMPLE / min(warm)))
        per_sample = calls_per_sample(call)
        per_paired = calls_per_sample(paired) if paired is not None and mode == "time" else 0
        peak = None
        if mode == "memory":
            # the rise of the resident set over one warm call (the driver runs this
            # worker with glibc giving every block of 4 KiB or more back when it is
            # freed, so that the call's arrays show in the resident set and earlier
            # calls' leftovers do not)
            rises = []
            for _ in range(MEMORY_CALLS):
                if not _reset_peak():
                    break
                time.sleep(pause)
                base = _rss_kb("VmRSS")
                call()
                rises.append(max(_rss_kb("VmHWM") - base, 0))
            peak = statistics.median(rises) if rises else None
            repeats = 0
        times, paired_times = [], []
        for _ in range(repeats):
            time.sleep(pause)
            t0 = time.perf_counter()
            for _ in range(per_sample):
                call()
            times.append((time.perf_counter() - t0) / per_sample)
            if per_paired:
                time.sleep(pause)
                t0 = time.perf_counter()
                for _ in range(per_paired):
                    paired()
                paired_times.append((time.perf_counter() - t0) / per_paired)
        pools = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")}
                 for p in threadpool_info()]
    return {"impl": impl, "dtype": dtype, "size": list(size), "times": times,
            "median": statistics.median(times) if times else None, "peak_kb": peak, "threadpools": pools,
            "paired_floor": paired_times}


def _worker_main(argv: list[str]) -> int:
    impl, dtype, size, threads, repeats, pause, path, mode, cell, layers, bidirectional = argv
    result = worker(impl, dtype, tuple(int(s) for s in size.split(",")), int(threads), int(repeats), float(pause), path,
                    mode, cell, int(layers), bidirectional == "1")
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
    p.add_argument("--impl", action="append", choices=[i for i in IMPLS if i not in ("generated", "torch")],
                   help="only these columns besides the NumPy module and torch (repeatable; default all: the "
                        "compiled twin generated/<preset>_numba.py when numba is installed, the GEMM floor, "
                        "the naive reference)")
    p.add_argument("--json", metavar="FILE", help="also write every measurement here")
    p.add_argument("--layers", type=int, default=1,
                   help="layers of the module: >1 (or --bidirectional) times the class (LSTM, GRU, RNN) against "
                        "the same torch.nn module, without the naive reference (default 1)")
    p.add_argument("--bidirectional", action="store_true", help="both directions (the class; see --layers)")


def _measure(impl, dtype, size, args, module_path, repeats, mode="time") -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    if mode == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "4096"  # every block of 4 KiB or more goes back to the system when freed
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "derive.cli.benchmark", "--worker", impl, dtype, ",".join(map(str, size)),
           str(args.threads), str(repeats), str(args.pause), module_path, mode, args.cell, str(args.layers),
           "1" if args.bidirectional else "0"]
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
    ratios = []  # the compiled twin over its floor, per worker, timed in turns in that worker
    estimate = {}
    for r in range(args.rounds):
        for impl in impls:
            if impl not in estimate:
                probe = _measure(impl, dtype, size, args, module_path, 2)
                estimate[impl] = statistics.median(probe["times"])
                pooled[impl].extend(probe["times"])
            share = args.seconds / args.rounds
            repeats = max(3, min(100, int(share / max(estimate[impl], SAMPLE))))
            m = _measure(impl, dtype, size, args, module_path, repeats)
            pooled[impl].extend(m["times"])
            if m.get("paired_floor"):
                ratios.append(statistics.median(m["times"]) / statistics.median(m["paired_floor"]))
    results = []
    for impl in impls:
        mems = [_measure(impl, dtype, size, args, module_path, 0, mode="memory") for _ in range(args.rounds)]
        peaks = [m["peak_kb"] for m in mems if m["peak_kb"] is not None]
        peak = statistics.median(peaks) if peaks else None
        times = pooled[impl]
        results.append({"impl": impl, "dtype": dtype, "size": list(size), "run": run, "times": times,
                        "median": statistics.median(times), "peak_kb": peak, "peaks_kb": peaks,
                        "paired_ratio": statistics.median(ratios) if impl == "compiled" and ratios else None,
                        "paired_ratios": ratios if impl == "compiled" else [],
                        "threadpools": mems[0]["threadpools"]})
        if impl == "compiled" and ratios:
            print(f"  run {run} {dtype} {size} compiled / floor in the same worker, in turns: "
                  f"{', '.join(f'{r:.3f}' for r in ratios)}", file=sys.stderr, flush=True)
        print(f"  run {run} {dtype} {size} {impl}: median {statistics.median(times) * 1e3:.3f} ms "
              f"({len(times)} samples from {args.rounds} processes), peak {(peak or 0) / 1024:.1f} MiB "
              f"(median of {args.rounds} processes: {', '.join(f'{k / 1024:.1f}' for k in peaks)})",
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

    from derive.codegen.render import render_module
    from derive.derivation import derive

    cell = CELLS[args.cell]
    text = render_module(derive(cell.preset))
    committed = Path(__file__).resolve().parents[2] / "generated" / f"{cell.preset}.py"
    same = committed.exists() and committed.read_text("utf-8") == text
    tmp = tempfile.mkdtemp(prefix="lstm-bench-")
    module_path = os.path.join(tmp, f"{cell.preset}_bench.py")
    Path(module_path).write_text(text, encoding="utf-8")

    sizes = [tuple(int(v) for v in s.split(",")) for s in args.size] if args.size else SIZES
    dtypes = args.dtype or DTYPES
    stacked = args.layers > 1 or args.bidirectional
    impls = [i for i in IMPLS if not ((args.skip_naive or stacked) and i == "naive")]
    if args.impl:
        impls = [i for i in IMPLS if i in args.impl or i in ("generated", "torch")]
    if stacked:
        impls = [i for i in impls if i not in ("compiled", "floor")]
    if "compiled" in impls:
        try:
            import numba  # noqa: F401
            import scipy  # noqa: F401
        except ImportError:
            print("lstm-derive bench: no compiled column (needs pip install 'derive[fast]')", file=sys.stderr)
            impls.remove("compiled")
    if "compiled" in impls:
        from derive.codegen.render import numba_module

        Path(compiled_path(module_path)).write_text(numba_module(derive(cell.preset)), encoding="utf-8")
    _check_agreement(module_path, cell, "compiled" in impls)

    info = machine()
    config = f"(num_layers={args.layers}, bidirectional={args.bidirectional})" if stacked else ""
    print(f"# lstm-derive bench: generated/{cell.preset}.py vs torch.nn.{cell.torch_module}{config}, "
          f"forward + backward", flush=True)
    print(f"machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; {info['system']}")
    print(f"threads: {args.threads} for NumPy's BLAS and for torch; {args.rounds} worker processes per "
          f"implementation and size, in turns; {args.pause} s between timed samples of at least "
          f"{SAMPLE * 1e3:.0f} ms")
    print(f"generated module: {f'the committed generated/{cell.preset}.py' if same else f'rendered in this run (generated/{cell.preset}.py is missing or stale)'}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        print(f"{var}: {os.environ.get(var, 'unset')}")
    print(f"load average at the start: {_load()}")
    print(flush=True)

    results: list[dict] = []
    pools = {}
    for r in range(1, args.runs + 1):
        for dtype in dtypes:
            rate, pools["numpy"] = matmul_rate(dtype, args, module_path)
            for size in sizes:
                for m in measure_size(dtype, size, impls, args, module_path, r):
                    m["rate"] = rate
                    if m["impl"] == "torch":
                        pools["torch"] = m["threadpools"]
                    results.append(m)

    print(table(results, sizes, dtypes, impls, args.runs, cell.gates, args.layers, 2 if args.bidirectional else 1))
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


def table(results, sizes, dtypes, impls, runs, gates: int = 4, layers: int = 1, directions: int = 1) -> str:
    def get(run, dtype, size, impl):
        return next(m for m in results if m["run"] == run and m["dtype"] == dtype and tuple(m["size"]) == tuple(size)
                    and m["impl"] == impl)

    head = ["dtype", "(T, B, D, H)", "generated ms", "compiled ms", "floor ms", "torch ms", "naive ms",
            "generated / torch", "compiled / torch", "floor / torch", "compiled / floor", "naive / torch",
            "matmul rate GFLOP/s", "generated % of rate", "torch % of rate",
            "peak MiB generated", "peak MiB compiled", "peak MiB torch", "peak MiB naive"]
    for side in ("naive", "compiled", "floor"):
        if side not in impls:
            head = [h for h in head if side not in h]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dtype in dtypes:
        for size in sizes:
            T, B, D, H = size
            flops = stacked_flops(T, B, D, H, gates, layers, directions)
            cells = {h: [] for h in head}
            for r in range(1, runs + 1):
                g, t = get(r, dtype, size, "generated"), get(r, dtype, size, "torch")
                n = get(r, dtype, size, "naive") if "naive" in impls else None
                c = get(r, dtype, size, "compiled") if "compiled" in impls else None
                f = get(r, dtype, size, "floor") if "floor" in impls else None
                cells["generated ms"].append(f"{g['median'] * 1e3:.2f}")
                cells["torch ms"].append(f"{t['median'] * 1e3:.2f}")
                cells["generated / torch"].append(f"{g['median'] / t['median']:.2f}")
                cells["matmul rate GFLOP/s"].append(f"{g['rate'] / 1e9:.0f}")
                cells["generated % of rate"].append(f"{100 * flops / g['median'] / g['rate']:.0f}")
                cells["torch % of rate"].append(f"{100 * flops / t['median'] / t['rate']:.0f}")
                cells["peak MiB generated"].append(f"{(g['peak_kb'] or 0) / 1024:.1f}")
                cells["peak MiB torch"].append(f"{(t['peak_kb'] or 0) / 1024:.1f}")
                if c is not None:
                    cells["compiled ms"].append(f"{c['median'] * 1e3:.2f}")
                    cells["compiled / torch"].append(f"{c['median'] / t['median']:.2f}")
                    cells["peak MiB compiled"].append(f"{(c['peak_kb'] or 0) / 1024:.1f}")
                if f is not None:
                    cells["floor ms"].append(f"{f['median'] * 1e3:.2f}")
                    cells["floor / torch"].append(f"{f['median'] / t['median']:.2f}")
                if c is not None and "compiled / floor" in cells:
                    ratio = c.get("paired_ratio") or (f and c["median"] / f["median"])
                    cells["compiled / floor"].append(f"{ratio:.2f}")
                if n is not None:
                    cells["naive ms"].append(f"{n['median'] * 1e3:.2f}")
                    cells["naive / torch"].append(f"{n['median'] / t['median']:.2f}")
                    cells["peak MiB naive"].append(f"{(n['peak_kb'] or 0) / 1024:.1f}")
            cells["dtype"] = [dtype]
            cells["(T, B, D, H)"] = [f"({T}, {B}, {D}, {H})"]
            lines.append("| " + " | ".join(" / ".join(cells[h]) for h in head) + " |")
    note = ("Each cell shows run 1 / run 2 / …; times are medians over the timed samples, per call; "
            f"`% of rate` is the matrix-product work of forward + backward ({6 * gates}·T·B·H·(D+H) flops"
            f"{', summed over layers and directions, D a layer input' if layers * directions > 1 else ''}) over the time, "
            "as a share of the NumPy matmul rate measured in the same run (the best of 20 products of two "
            "1024 x 1024 matrices); peak is the rise of the resident set over a warm forward + backward (the median of "
            f"{MEMORY_CALLS} calls in each of --rounds processes, the median of those). "
            "compiled: generated/<preset>_numba.py (its kernels compiled before the timing, in the untimed "
            "first calls); floor: the same matrix products alone in NumPy (derive.cli.benchmark.floor_call); "
            "compiled / floor: paired: the floor timed again in each compiled worker, in turns with the twin "
            "(the median over workers of the ratio of their medians), steadier than the ratio of two workers' "
            "times on a shared machine.")
    return "\n".join(lines) + "\n\n" + note


def _check_agreement(module_path: str, cell: Cell = CELLS["lstm"], compiled: bool = False) -> None:
    """The generated module (and its compiled twin) and the naive reference
    compute the same gradients (float64, tiny size)."""
    import numpy as np

    mods = [load_generated(module_path)]
    if compiled:
        mods.append(load_generated(compiled_path(module_path), f"bench_{cell.preset}_numba"))
    x, states, weights, dout = inputs(cell, "float64", (4, 3, 5, 6), seed=7)
    weights = [w * 3 for w in weights]  # not small: every term counts
    b = cell.naive(x, *states, *weights, dout)
    for gen in mods:
        _, _, cache = getattr(gen, cell.forward)(x, *states, *weights)
        a = getattr(gen, cell.backward)(dout, cache)
        for key in a:
            if not np.allclose(a[key], b[key], rtol=1e-10, atol=1e-12):
                raise AssertionError(f"{gen.__name__} and naive disagree on {key}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return _worker_main(argv[1:])
    p = argparse.ArgumentParser(prog="python bench/lstm.py", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

"""Whether two threads in lockstep pay for the compiled twins' time loops: the
third idea of BENCHMARKS.md for the two-thread target (a per-step split of the
unit loops with a synchronisation far cheaper than a Python pool), built as an
experiment on a copy of a twin, not in the emitter.

    python bench/lockstep_threads.py                       # the LSTM, float32, (50, 32, 64, 128)
    python bench/lockstep_threads.py gru float64 --rounds 15

The lockstep variant runs each compiled time loop in two threads at once (the
caller and one pool thread, BLAS on one thread meanwhile). Per step each thread
computes its half of the columns of the per-step product (``h @ W_hhᵀ`` in the
forward loop, ``dz @ W_hh`` in the backward: the weight packed once in all, not
once per thread as in the batch split), waits at a spin barrier (an atomic
counter, LLVM's ``atomicrmw`` and an acquire load, ``pause`` while waiting), runs
its half of the batch through the unit loop, and waits again before the next
step's product reads the whole state. The variant is the twin's own text with
those lines added (``lockstep``); its numbers are checked against the twin's.

Timed in one process, in turns, wall clock, medians of samples of 3 calls:
``whole1`` / ``floor1`` with BLAS on one thread; ``lockstep`` with BLAS on one
thread and the loops on two; ``whole2`` / ``floor2`` with BLAS on two threads
(the twin as generated: its unit loops on one). The target is lockstep < whole2
and near floor2.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from derive.cli.benchmark import CELLS, floor_call, in_turns, inputs, load_generated  # noqa: E402

# The barrier: every thread adds 1 to the counter, then waits until all have
# (the k-th barrier of a call is passed at counter >= k * threads; no reset).
BARRIER = '''

@_intrinsic
def _atomic_add_one(typingctx, counter):
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", array.data, _ir.IntType(64)(1), "seq_cst")
    return _types.int64(counter), codegen


@_intrinsic
def _atomic_read(typingctx, counter):
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(array.data, "acquire", 8)
    return _types.int64(counter), codegen


@_intrinsic
def _pause(typingctx):
    def codegen(context, builder, signature, args):
        pause = _cgutils.get_or_insert_function(builder.module, _ir.FunctionType(_ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
        builder.call(pause, [])
        return context.get_dummy_value()
    return _types.none(), codegen


@_jit(inline="always")
def _barrier(counter, target):
    _atomic_add_one(counter)
    while _atomic_read(counter) < target:
        _pause()

'''

LAUNCH = '''

LOCKSTEP = [False]


def _split(kernel, batch, size, *args):
    """The lockstep variant when LOCKSTEP[0]: both halves at once, BLAS on one thread meanwhile."""
    if not LOCKSTEP[0]:
        return _split_as_generated(kernel, batch, size, *args)
    both = globals()[kernel.__name__ + "_lockstep"]
    counter = np.zeros(16, np.int64)  # one cache line of its own
    with _blas_lent():
        half = batch // 2
        other = _pool(1).submit(both, *args, counter, 1, 2, half, batch)
        try:
            both(*args, counter, 0, 2, 0, half)
        finally:
            other.result()

'''


def lockstep_kernel(source: str, name: str) -> str:
    """The kernel ``name`` of a twin's text as its lockstep variant ``name_lockstep``."""
    start = source.index(f"@_jit\ndef {name}(")
    text = source[start:source.index("\n\n\n", start)]
    text = text.replace(f"def {name}(", f"def {name}_lockstep(", 1).replace(", n0, n1):", ", counter, me, threads, n0, n1):", 1)
    forward = name.startswith("_forward_steps")
    out = []
    for line in text.split("\n"):
        product = re.match(r"(\s*)(_gemm\w*)\(blas, (\w+)\[(.*?)\], (\w+), (\w+)\[n0:n1\]\)", line)
        if product:
            indent, gemm, a, at, w, dest = product.groups()
            at = at.replace("n0:n1", ":")  # the whole batch: this thread's columns of the product
            if not forward:  # the step's adjoints of every row written before the product reads them
                out += [f"{indent}passed += threads", f"{indent}_barrier(counter, passed)"]
            out += [f"{indent}{gemm}(blas, {a}[{at}], {w}[:, c0:c1], {dest}[:, c0:c1])",
                    f"{indent}passed += threads", f"{indent}_barrier(counter, passed)"]
            continue
        out.append(line)
        if line.strip().startswith("U = "):
            columns = "weight_hh_T.shape[1]" if forward else "weight_hh.shape[1]"
            out += [f"    columns = {columns}",
                    "    c0 = (columns * me // threads) // 16 * 16  # whole cache lines",
                    "    c1 = columns if me == threads - 1 else (columns * (me + 1) // threads) // 16 * 16",
                    "    passed = 0"]
    if forward:  # the step's states of every row written before the next product reads them
        out += ["        passed += threads", "        _barrier(counter, passed)"]
    return "\n".join(out)


def lockstep_module(text: str) -> str:
    """A twin's text with the lockstep variants of its time loops added and _split choosing."""
    kernels = [lockstep_kernel(text, f"{k}_{sfx}") for sfx in ("f32", "f64") for k in ("_forward_steps", "_bptt_steps")]
    text = text.replace("\n_POOL = [None]", BARRIER + "\n_POOL = [None]", 1)
    text = text.replace("\ndef _split(kernel, batch, size, *args):", "\ndef _split_as_generated(kernel, batch, size, *args):", 1)
    anchor = "\n\n\ndef _forward("
    assert anchor in text, "the twin's layout changed: _forward not found"
    return text.replace(anchor, "\n\n\n" + "\n\n\n".join(kernels) + "\n" + LAUNCH + anchor[2:], 1)


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset", nargs="?", default="pytorch", choices=["pytorch", "gru"])
    p.add_argument("dtype", nargs="?", default="float32", choices=["float32", "float64"])
    p.add_argument("--size", default="50,32,64,128", metavar="T,B,D,H")
    p.add_argument("--rounds", type=int, default=12, help="timed samples per variant (default 12)")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.split(","))
    text = (ROOT / "generated" / f"{args.preset}_numba.py").read_text("utf-8")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"lockstep_{args.preset}_numba.py"
        path.write_text(lockstep_module(text), "utf-8")
        module = load_generated(str(path), f"bench_lockstep_{args.preset}")
    cell = CELLS["lstm" if args.preset == "pytorch" else "gru"]
    x, states, weights, d_output = inputs(cell, args.dtype, size)
    forward, backward = getattr(module, cell.forward), getattr(module, cell.backward)

    def variant(lockstep: bool):
        def run():
            module.LOCKSTEP[0] = lockstep
            _, _, cache = forward(x, *states, *weights)
            return backward(d_output, cache)
        return run

    whole, lockstep = variant(False), variant(True)
    with threadpool_limits(limits=2):
        want, got = whole(), lockstep()
    tol = 1e-4 if args.dtype == "float32" else 1e-10
    for key, value in want.items():
        scale = max(float(np.max(np.abs(value))), 1e-30)
        assert float(np.max(np.abs(np.asarray(got[key]) - value))) <= tol * scale, f"lockstep differs in {key}"
    floor = floor_call(cell, x, states, weights)
    medians = {}
    with threadpool_limits(limits=1):
        runs = {"whole1": whole, "lockstep": lockstep, "floor1": floor}
        samples = in_turns(runs, args.rounds, 3, clock=time.perf_counter)
        medians.update({k: statistics.median(v) * 1e3 for k, v in samples.items()})
    with threadpool_limits(limits=2):
        samples = in_turns({"whole2": whole, "floor2": floor}, args.rounds, 3, clock=time.perf_counter)
        medians.update({k: statistics.median(v) * 1e3 for k, v in samples.items()})
    m = medians
    print(f"{args.preset} {args.dtype} {size} ms: " + " ".join(f"{k}={v:.2f}" for k, v in m.items())
          + f" | lockstep/whole2 {m['lockstep'] / m['whole2']:.2f}, lockstep/floor2 {m['lockstep'] / m['floor2']:.2f},"
          f" whole2/floor2 {m['whole2'] / m['floor2']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

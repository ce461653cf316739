"""Two threads by overlap in compiled code, tried on the GRU twin: the time loop
on one core, the large products on the other, with no Python between chunks.

The second form of bench/overlap_threads.py (there, Python threads hand each
chunk over; here both threads run compiled code from start to end of a pass).
Time is cut into chunks of ``--chunk`` steps. Forward: a second thread computes
the input terms chunk by chunk (BLAS's gemm called from compiled code) and
counts them on an atomic counter; the caller runs the twin's own compiled
forward loop (``_forward_steps_*``) over each chunk once the counter says its
input terms are there (spinning with ``pause`` meanwhile). Backward: the caller
runs the twin's compiled backward loop (``_bptt_steps_*``) chunk by chunk from
the end and counts each; the second thread, as each chunk is counted, adds its
weight gradients (TN gemms) and writes its input gradient (with
``--dx-in-chain`` the caller writes that one, to balance the two threads). BLAS
on one thread in each, its thread count lent as the twin's batch split lends
it. The variant is checked against the twin's results before timing (NumPy's
ILP64 CBLAS only, the BLAS of NumPy's own wheels).

Timed in blocks: each implementation runs a block of samples (wall time,
medians) with its thread count, 0.3 s apart, the blocks taken in turns
``--blocks`` times (a sample-by-sample alternation would time the overlap just
after a 2-thread BLAS call, whose idle worker spins for a while on the core the
second thread needs); the figure is the median of the blocks' medians. The
twin's storage and the check are bench/overlap_threads.py's.

    python bench/overlap_compiled.py
    python bench/overlap_compiled.py --dx-in-chain --chunk 5
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import numpy as np  # noqa: E402
from llvmlite import ir as _ir  # noqa: E402
from numba.core import cgutils as _cgutils  # noqa: E402
from numba.core import types as _types  # noqa: E402
from numba.extending import intrinsic as _intrinsic  # noqa: E402

from derive.cli.benchmark import CELLS, floor_call, inputs  # noqa: E402
from overlap_threads import checked_against_twin, twin_storage  # noqa: E402  (bench/, the script's folder)

TWIN = importlib.import_module("generated.gru_numba")
_gemm, _matrix = TWIN._gemm, TWIN._matrix


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
        fn = _cgutils.get_or_insert_function(builder.module, _ir.FunctionType(_ir.VoidType(), []),
                                             "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()
    return _types.none(), codegen


@_intrinsic
def _gemm_tn_add(typingctx, blas, a, b, out):
    """out += a.T @ b; a stored (k, m), b (k, n), out (m, n); NumPy's CBLAS."""
    def codegen(context, builder, signature, args):
        (pa, k, m, lda), (pb, _, n, ldb), (pc, _, _, ldc) = (
            _matrix(context, builder, t, v) for t, v in zip(signature.args[1:], args[1:]))
        real = context.get_value_type(signature.args[1].dtype)
        t = "s" if signature.args[1].dtype == _types.float32 else "d"
        i32, i64 = _ir.IntType(32), _ir.IntType(64)
        pointer = real.as_pointer()
        fnty = _ir.FunctionType(_ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, pointer, i64, pointer,
                                                 i64, real, pointer, i64])
        fn = _cgutils.get_or_insert_function(builder.module, fnty, f"_derive_cblas64_{t}gemm")
        m, n, k, lda, ldb, ldc = [builder.sext(v, i64) if v.type.width < 64 else v for v in (m, n, k, lda, ldb, ldc)]
        # row-major (101), a transposed (112), b as stored (111), beta 1: out += aᵀ b
        builder.call(fn, [i32(101), i32(112), i32(111), m, n, k, real(1.0), pa, lda, pb, ldb, real(1.0), pc, ldc])
        return context.get_dummy_value()
    return _types.none(blas, a, b, out), codegen


def make(steps_fwd, steps_bwd, dx_in_chain: bool):
    """The four compiled functions of one dtype: the chains (caller) and the products (second thread)."""
    @numba.njit(nogil=True)
    def chain_forward(gates, blas, b, h_seq, hp, whhT, edges, counter):
        N = gates.shape[1]
        for k in range(edges.shape[0] - 1):
            while _atomic_read(counter) < k + 1:
                _pause()
            steps_fwd(gates[edges[k]:edges[k + 1]], blas, b, h_seq[edges[k]:edges[k + 1] + 1], hp, whhT, 0, N)

    @numba.njit(nogil=True)
    def input_products(blas, x2d, W_xT, gates2d, rows, counter, G):
        for k in range(rows.shape[0] - 1):
            _gemm(blas, x2d[rows[k]:rows[k + 1]], W_xT, gates2d[rows[k]:rows[k + 1], 0:G])
            _atomic_add_one(counter)

    @numba.njit(nogil=True)
    def chain_backward(gates, blas, dh, dz_sum, d, h_seq, whh, edges, counter, dg2d, W_x, dx2d, H):
        N = gates.shape[1]
        for k in range(edges.shape[0] - 2, -1, -1):
            steps_bwd(gates[edges[k]:edges[k + 1]], blas, dh, dz_sum, d[edges[k]:edges[k + 1]],
                      h_seq[edges[k]:edges[k + 1] + 1], whh, 0, N)
            _atomic_add_one(counter)
            if dx_in_chain:
                _gemm(blas, dg2d[edges[k] * N:edges[k + 1] * N, 0:3 * H], W_x, dx2d[edges[k] * N:edges[k + 1] * N])

    @numba.njit(nogil=True)
    def gradient_products(blas, dg2d, x2d, hs2d, W_x, dW_x, dWhh, dx2d, rows, counter, H):
        K = rows.shape[0] - 1
        done = 0
        for k in range(K - 1, -1, -1):
            done += 1
            while _atomic_read(counter) < done:
                _pause()
            r0, r1 = rows[k], rows[k + 1]
            _gemm_tn_add(blas, dg2d[r0:r1, 0:3 * H], x2d[r0:r1], dW_x)
            _gemm_tn_add(blas, dg2d[r0:r1, H:4 * H], hs2d[r0:r1], dWhh)
            if not dx_in_chain:
                _gemm(blas, dg2d[r0:r1, 0:3 * H], W_x, dx2d[r0:r1])
    return chain_forward, input_products, chain_backward, gradient_products



def run_beside(f, args):
    """f(*args) in a thread of its own; returns its join."""
    thread = threading.Thread(target=f, args=args)
    thread.start()
    return thread.join


def overlapped(chunk: int, dx_in_chain: bool):
    """(forward, backward) of the GRU with the large products beside the time loop."""
    kernels = {np.dtype(np.float32): make(TWIN._forward_steps_f32, TWIN._bptt_steps_f32, dx_in_chain),
               np.dtype(np.float64): make(TWIN._forward_steps_f64, TWIN._bptt_steps_f64, dx_in_chain)}
    blas = TWIN._BLAS

    def edges(T):
        return np.array(list(range(0, T, chunk)) + [T], np.int64)

    def forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        T, N, D = x.shape
        H = h0.shape[2]
        chain_forward, input_products, _, _ = kernels[x.dtype]
        W_x, b, gates, h_seq = twin_storage(x, h0, weight_ih, bias_ih, bias_hh)
        e = edges(T)
        counter = np.zeros(16, np.int64)  # a cache line of its own
        with TWIN._blas_lent():
            join = run_beside(input_products, (blas, x.reshape(T * N, D), np.ascontiguousarray(W_x.T),
                                               gates.reshape(T * N, 4 * H), e * N, counter, 3 * H))
            try:
                chain_forward(gates, blas, b, h_seq, np.empty((N, 3 * H), x.dtype),
                              np.ascontiguousarray(weight_hh.T), e, counter)
            finally:
                join()
        return h_seq[1:], {"x": x, "h_seq": h_seq, "gates": gates, "W_x": W_x, "weight_hh": weight_hh}

    def backward(d_output, cache):
        x, h_seq, gates, W_x, weight_hh = (cache[k] for k in ("x", "h_seq", "gates", "W_x", "weight_hh"))
        T, N, H = d_output.shape
        D = x.shape[2]
        _, _, chain_backward, gradient_products = kernels[x.dtype]
        dh = np.zeros((N, H), x.dtype)
        dz_sum = np.zeros((N, 4 * H), x.dtype)
        dW_x = np.zeros((3 * H, D), x.dtype)
        dweight_hh = np.zeros((3 * H, H), x.dtype)
        dx = np.empty((T, N, D), x.dtype)
        e = edges(T)
        counter = np.zeros(16, np.int64)
        dgates = gates.reshape(T * N, 4 * H)
        with TWIN._blas_lent():
            join = run_beside(gradient_products, (blas, dgates, x.reshape(T * N, D), h_seq[:-1].reshape(T * N, H),
                                                  W_x, dW_x, dweight_hh, dx.reshape(T * N, D), e * N, counter, H))
            try:
                chain_backward(gates, blas, dh, dz_sum, np.ascontiguousarray(d_output), h_seq,
                               np.ascontiguousarray(weight_hh), e, counter, dgates, W_x, dx.reshape(T * N, D), H)
            finally:
                join()
        weight_ih = np.concatenate([dW_x[H:3 * H], dW_x[:H]])
        return {"x": dx, "h0": dh[None], "weight_ih": weight_ih, "weight_hh": dweight_hh}

    return forward, backward


def in_blocks(runs: dict, blocks: int, samples: int) -> dict[str, float]:
    """{name: median over blocks of the block's median wall seconds}; runs: {name: (call, threads)}."""
    from threadpoolctl import threadpool_limits

    medians: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(blocks):
        for name, (call, threads) in runs.items():
            time.sleep(0.3)  # BLAS's idle workers of an earlier block asleep again
            with threadpool_limits(limits=threads):
                for _ in range(3):
                    call()
                times = []
                for _ in range(samples):
                    time.sleep(0.01)
                    t0 = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - t0)
            medians[name].append(statistics.median(times))
    return {k: statistics.median(v) for k, v in medians.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="50,32,64,128", metavar="T,B,D,H")
    p.add_argument("--chunk", type=int, default=10, help="steps per chunk (default 10)")
    p.add_argument("--blocks", type=int, default=3, help="blocks of each implementation (default 3)")
    p.add_argument("--samples", type=int, default=10, help="timed calls per block (default 10)")
    p.add_argument("--dx-in-chain", action="store_true", help="the caller writes the input gradient")
    args = p.parse_args(argv)
    if TWIN._BLAS.dtype != np.int64:
        raise SystemExit("this experiment calls NumPy's ILP64 CBLAS, which this NumPy does not expose")
    size = tuple(int(v) for v in args.size.split(","))
    cell = CELLS["gru"]
    forward, backward = overlapped(args.chunk, args.dx_in_chain)
    for dtype in ("float32", "float64"):
        x, states, weights, d_output = inputs(cell, dtype, size)
        as_generated, overlap = checked_against_twin(TWIN, forward, backward, x, states, weights, d_output)
        floor = floor_call(cell, x, states, weights)
        ms = {k: v * 1e3 for k, v in in_blocks({
            "twin, 1 thread": (as_generated, 1), "floor, 1 thread": (floor, 1),
            "twin, 2 threads": (as_generated, 2), "overlap (compiled), 2 threads": (overlap, 2),
            "floor, 2 threads": (floor, 2)}, args.blocks, args.samples).items()}
        floor2 = ms["floor, 2 threads"]
        print(f"{dtype} {size} chunk {args.chunk}{' dx in chain' if args.dx_in_chain else ''}: "
              + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
              + f"; twin / floor (2) {ms['twin, 2 threads'] / floor2:.3f}, overlap / floor (2) "
              f"{ms['overlap (compiled), 2 threads'] / floor2:.3f}, overlap / twin (2) "
              f"{ms['overlap (compiled), 2 threads'] / ms['twin, 2 threads']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

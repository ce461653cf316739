"""Two threads by overlap, tried on the GRU twin: the time loop on one core, the
large products on the other, chunk by chunk.

The twin as generated runs, with two BLAS threads, every product on both cores
and its unit loops on one. The products that are not in the chain from step to
step (the input terms of all steps before the forward loop; the weight and
input gradients after the backward loop) could instead run beside the chain:
the time is cut into chunks of ``--chunk`` steps; while the compiled forward
loop runs chunk k, a second thread computes the input terms of chunk k+1;
while the compiled backward loop runs chunk k, the second thread computes the
gradients that chunk k+1 (already done) contributes. BLAS runs on one thread in
each (its thread count lent, as the twin's batch split does). If both cores ran
at full speed side by side, this would take about the chain's time alone.

The variant calls the twin's own compiled loops (``_forward_steps_*``,
``_bptt_steps_*``) and is checked against the twin's results before timing.
Wall time (other threads work), in turns in one process, medians:

    python bench/overlap_threads.py                  # float32 and float64, (50, 32, 64, 128), chunks of 10
    python bench/overlap_threads.py --chunk 5 --rounds 20

Prints per dtype the twin as generated with 1 and with 2 BLAS threads, the
overlap variant, and the GEMM floor with 1 and with 2 threads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from derive.cli.benchmark import CELLS, floor_call, in_turns, inputs  # noqa: E402


def twin_storage(x, h0, weight_ih, bias_ih, bias_hh):
    """The GRU twin's storage of a forward pass (see its gru_forward): W_x and b in the
    order of the gate blocks n, r, z (x's terms) and W_hn h_prev, the gates buffer and
    h of every step (slot 0 holding h0)."""
    T, N, _ = x.shape
    H = h0.shape[2]
    W_x = np.concatenate([weight_ih[2 * H:], weight_ih[:2 * H]])
    b = np.concatenate([bias_ih[2 * H:], bias_ih[:2 * H] + bias_hh[:2 * H], bias_hh[2 * H:]])
    gates = np.empty((T, N, 4 * H), x.dtype)
    h_seq = np.empty((T + 1, N, H), x.dtype)
    h_seq[0] = h0[0]
    return W_x, b, gates, h_seq


def checked_against_twin(twin, forward, backward, x, states, weights, d_output):
    """A variant's (forward, backward) checked once against the twin's output and every
    gradient the variant returns (1e-5 in float32, 1e-12 in float64, relative to the
    largest entry or 1); returns (the twin's call, the variant's call) for timing."""
    output, _, cache = twin.gru_forward(x, *states, *weights)
    expected = twin.gru_backward(d_output, cache)
    got_output, got_cache = forward(x, *states, *weights)
    got = backward(d_output, got_cache)
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    for name, a, b in [("output", got_output, output)] + [(k, got[k], expected[k]) for k in got]:
        err = float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(b)))))
        assert err <= tol, f"the overlap variant's {name} differs from the twin's by {err:.2e}"

    def as_generated():
        _, _, c = twin.gru_forward(x, *states, *weights)
        return twin.gru_backward(d_output, c)

    def overlap():
        _, c = forward(x, *states, *weights)
        return backward(d_output, c)
    return as_generated, overlap


def overlapped(twin, chunk: int):
    """(forward, backward) of the GRU that overlap the large products with the time loop."""
    worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="overlap")

    def edges(T):
        return list(range(0, T, chunk)) + [T]

    def forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
        T, N, D = x.shape
        H = h0.shape[2]
        W_x, b, gates, h_seq = twin_storage(x, h0, weight_ih, bias_ih, bias_hh)
        scratch = np.empty((N, 3 * H), x.dtype)
        weight_hh_T = np.ascontiguousarray(weight_hh.T)
        steps = twin._kernel("_forward_steps", x.dtype)
        e = edges(T)

        def input_terms(a, z):
            np.matmul(x[a:z].reshape(-1, D), W_x.T, out=gates[a:z].reshape(-1, 4 * H)[:, :3 * H])

        with twin._blas_lent():
            input_terms(e[0], e[1])
            for i in range(len(e) - 1):
                ahead = worker.submit(input_terms, e[i + 1], e[i + 2]) if i + 2 < len(e) else None
                twin._run(steps, gates[e[i]:e[i + 1]], twin._BLAS, b, h_seq[e[i]:e[i + 1] + 1], scratch,
                          weight_hh_T, 0, N)
                if ahead is not None:
                    ahead.result()
        return h_seq[1:], {"x": x, "h_seq": h_seq, "gates": gates, "W_x": W_x, "weight_hh": weight_hh}

    def backward(d_output, cache):
        x, h_seq, gates, W_x, weight_hh = (cache[k] for k in ("x", "h_seq", "gates", "W_x", "weight_hh"))
        T, N, H = d_output.shape
        D = x.shape[2]
        dh = np.zeros((N, H), x.dtype)
        dz_sum = np.zeros((N, 4 * H), x.dtype)
        dW_x = np.zeros((3 * H, D), x.dtype)
        dweight_hh = np.zeros((3 * H, H), x.dtype)
        dx = np.empty((T, N, D), x.dtype)
        steps = twin._kernel("_bptt_steps", x.dtype)
        weight_hh = np.ascontiguousarray(weight_hh)
        e = edges(T)

        def gradients(a, z):
            dgates = gates[a:z].reshape(-1, 4 * H)
            dW_x.__iadd__(dgates[:, :3 * H].T @ x[a:z].reshape(-1, D))
            dweight_hh.__iadd__(dgates[:, H:].T @ h_seq[a:z].reshape(-1, H))
            np.matmul(dgates[:, :3 * H], W_x, out=dx[a:z].reshape(-1, D))

        with twin._blas_lent():
            behind = None
            for i in range(len(e) - 2, -1, -1):
                twin._run(steps, gates[e[i]:e[i + 1]], twin._BLAS, dh, dz_sum, d_output[e[i]:e[i + 1]],
                          h_seq[e[i]:e[i + 1] + 1], weight_hh, 0, N)
                if behind is not None:
                    behind.result()
                behind = worker.submit(gradients, e[i], e[i + 1])
            behind.result()
        weight_ih = np.concatenate([dW_x[H:3 * H], dW_x[:H]])  # the twin's row blocks n, r, z as torch's r, z, n
        return {"x": dx, "h0": dh[None], "weight_ih": weight_ih, "weight_hh": dweight_hh}

    return forward, backward


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="50,32,64,128", metavar="T,B,D,H")
    p.add_argument("--chunk", type=int, default=10, help="steps per chunk (default 10)")
    p.add_argument("--rounds", type=int, default=15, help="timed samples of each (default 15)")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.split(","))
    twin = importlib.import_module("generated.gru_numba")
    cell = CELLS["gru"]
    forward, backward = overlapped(twin, args.chunk)
    for dtype in ("float32", "float64"):
        x, states, weights, d_output = inputs(cell, dtype, size)
        as_generated, overlap = checked_against_twin(twin, forward, backward, x, states, weights, d_output)
        floor = floor_call(cell, x, states, weights)
        samples = {}
        for threads, runs in ((1, {"twin, 1 thread": as_generated, "floor, 1 thread": floor}),
                              (2, {"twin, 2 threads": as_generated, "overlap, 2 threads": overlap,
                                   "floor, 2 threads": floor})):
            with threadpool_limits(limits=threads):
                samples.update(in_turns(runs, args.rounds, 3, clock=time.perf_counter))
        ms = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        floor2 = ms["floor, 2 threads"]
        print(f"{dtype} {size} chunk {args.chunk}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
              + f"; twin / floor (2) {ms['twin, 2 threads'] / floor2:.3f}, overlap / floor (2) "
              f"{ms['overlap, 2 threads'] / floor2:.3f}, overlap / twin (2) "
              f"{ms['overlap, 2 threads'] / ms['twin, 2 threads']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the GRU's gates buffer layout costs its matrix products: the GEMM floor's
products (derive.cli.benchmark.floor_call) with the slot adjoints and input terms
in a contiguous 3H-wide buffer, as the floor keeps them, against the same
products on 3H-wide blocks of a 4H-wide buffer, as the fused modules keep them
(x feeds the sums n, r, z; h_prev feeds r, z and W_hn h_prev: four blocks, one
product per source), in one process, one BLAS thread, in turns; and the products of a
memory-lean design (``lean``: what keeping 3H values per unit and step would cost).

    python bench/gru_layout.py                       # (50, 32, 64, 128), float32 and float64
    python bench/gru_layout.py --size 100,64,256,256

Prints the median CPU ms of each and their ratios to the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from derive.cli.benchmark import in_turns  # noqa: E402


def products(x, weight_ih, weight_hh, hs, width: int):
    """The floor's products with the gates buffer ``width`` wide: the input terms into
    its first 3H columns, the state's adjoint and dW_hh from the 3H columns the
    state feeds (H..4H of a 4H buffer), dW_ih and dx from the first 3H."""
    T, N, D = x.shape
    H = weight_hh.shape[1]
    x2d = x.reshape(T * N, D)
    whhT = np.ascontiguousarray(weight_hh.T)
    state_cols = slice(H, 4 * H) if width == 4 * H else slice(0, 3 * H)
    buffer = np.zeros((T * N, width), x.dtype)  # (zeros: the block no product writes holds no NaN or subnormal)
    hp = np.empty((N, 3 * H), x.dtype)
    dh = np.empty((N, H), x.dtype)

    def call():
        np.matmul(x2d, weight_ih.T, out=buffer[:, 0:3 * H])
        gates = buffer.reshape(T, N, width)
        for t in range(T):
            np.matmul(hs[t], whhT, out=hp)
        for t in range(T - 1, -1, -1):
            np.matmul(gates[t, :, state_cols], weight_hh, out=dh)
        return (buffer[:, 0:3 * H].T @ x2d, buffer[:, state_cols].T @ hs[:-1].reshape(T * N, H),
                buffer[:, 0:3 * H] @ weight_ih)
    return call


def lean(x, weight_ih, weight_hh, hs):
    """The products of a memory-lean design, which would keep 3H values per unit and
    step instead of 4H (the peak memory of torch.nn.GRU at the medium size needs about
    that): the gates buffer 3H wide (n, r, z); per backward step W_hn h_prev computed
    again (h_prev @ W_hnᵀ), the state's adjoint from a 3H scratch of the step (dz_r,
    dz_z, dz_n*r), and dW_hn summed per step ((dz_n*r)ᵀ h_prev: the adjoint dz_n*r is
    not kept for a product after the loop); dW_ih and dx from the whole buffer, and
    dW_hr, dW_hz from its r, z blocks after the loop."""
    T, N, D = x.shape
    H = weight_hh.shape[1]
    x2d = x.reshape(T * N, D)
    whhT = np.ascontiguousarray(weight_hh.T)
    W_hn_T = np.ascontiguousarray(weight_hh[2 * H:].T)
    buffer = np.zeros((T * N, 3 * H), x.dtype)
    hp = np.empty((N, 3 * H), x.dtype)
    hn = np.empty((N, H), x.dtype)
    adjoints = np.zeros((N, 3 * H), x.dtype)
    dh = np.empty((N, H), x.dtype)
    dW_hn = np.zeros((H, H), x.dtype)
    dW_hn_t = np.empty((H, H), x.dtype)

    def call():
        np.matmul(x2d, weight_ih.T, out=buffer)
        for t in range(T):
            np.matmul(hs[t], whhT, out=hp)
        for t in range(T - 1, -1, -1):
            np.matmul(hs[t], W_hn_T, out=hn)
            np.matmul(adjoints, weight_hh, out=dh)
            np.matmul(adjoints[:, 2 * H:].T, hs[t], out=dW_hn_t)
            dW_hn.__iadd__(dW_hn_t)
        return (buffer.T @ x2d, buffer[:, H:3 * H].T @ hs[:-1].reshape(T * N, H), buffer @ weight_ih)
    return call


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="50,32,64,128", metavar="T,B,D,H")
    p.add_argument("--rounds", type=int, default=20, help="timed samples of each (default 20)")
    args = p.parse_args(argv)
    T, N, D, H = (int(v) for v in args.size.split(","))
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, N, D)).astype(dtype)
        weight_ih = (0.1 * rng.standard_normal((3 * H, D))).astype(dtype)
        weight_hh = (0.1 * rng.standard_normal((3 * H, H))).astype(dtype)
        hs = rng.standard_normal((T + 1, N, H)).astype(dtype)
        runs = {"3H contiguous (the floor)": products(x, weight_ih, weight_hh, hs, 3 * H),
                "3H blocks of 4H (the module)": products(x, weight_ih, weight_hh, hs, 4 * H),
                "memory-lean (3H kept, see lean)": lean(x, weight_ih, weight_hh, hs)}
        with threadpool_limits(limits=1):
            samples = in_turns(runs, args.rounds, 3)
        ms = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
        floor, module, memory_lean = ms.values()
        print(f"{np.dtype(dtype).name} {(T, N, D, H)}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
              + f"; ratio {module / floor:.3f}; memory-lean / floor {memory_lean / floor:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The per-step product h @ W_hᵀ two ways, one BLAS thread: on a transposed view of
the weight (NumPy hands BLAS an NT gemm) and on a C-contiguous copy of Wᵀ made
once (an NN gemm). Why the compiled twins copy W_hᵀ once per call, and why the
GEMM floor (derive.cli.benchmark.floor_call) does the same.

    python bench/gemm_layout.py

Median CPU time of 200 products per sample, 30 samples each, the two in turns.
"""

import statistics
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from derive.cli.benchmark import in_turns  # noqa: E402

SHAPES = [(32, 128, 512), (32, 128, 384), (64, 256, 1024), (64, 256, 768)]  # (B, H, gates*H): LSTM and GRU


def main() -> None:
    rng = np.random.default_rng(0)
    print("| dtype | (B x H) @ (H x G) | NT (transposed view) us | NN (copy of Wᵀ) us | NT / NN |")
    print("|---|---|---|---|---|")
    for B, H, G in SHAPES:
        for dtype in (np.float32, np.float64):
            h = rng.standard_normal((B, H)).astype(dtype)
            W = rng.standard_normal((G, H)).astype(dtype)
            WT = np.ascontiguousarray(W.T)
            out = np.empty((B, G), dtype)

            def nt():
                np.matmul(h, W.T, out=out)

            def nn():
                np.matmul(h, WT, out=out)

            with threadpool_limits(limits=1):
                samples = in_turns({"nt": nt, "nn": nn}, rounds=30, calls=200, warm=50, pause=0.005)
            m = {k: statistics.median(v) * 1e6 for k, v in samples.items()}
            print(f"| {np.dtype(dtype).name} | ({B} x {H}) @ ({H} x {G}) | {m['nt']:.1f} | {m['nn']:.1f} | "
                  f"{m['nt'] / m['nn']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

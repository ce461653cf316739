"""The per-step product h @ W_hᵀ two ways, one BLAS thread: on a transposed view of
the weight (NumPy hands BLAS an NT gemm) and on a C-contiguous copy of Wᵀ made
once (an NN gemm). Why the compiled twins copy W_hᵀ once per call, and why the
GEMM floor (derive.cli.benchmark.floor_call) does the same.

    python bench/gemm_layout.py

Median CPU time of 200 products per sample, 30 samples each, the two in turns.
"""

import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

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

            samples = {"nt": [], "nn": []}
            with threadpool_limits(limits=1):
                for f in (nt, nn):
                    for _ in range(50):
                        f()
                for _ in range(30):
                    for key, f in (("nt", nt), ("nn", nn)):
                        time.sleep(0.005)
                        t0 = time.process_time()
                        for _ in range(200):
                            f()
                        samples[key].append((time.process_time() - t0) / 200 * 1e6)
            m = {k: statistics.median(v) for k, v in samples.items()}
            print(f"| {np.dtype(dtype).name} | ({B} x {H}) @ ({H} x {G}) | {m['nt']:.1f} | {m['nn']:.1f} | "
                  f"{m['nt'] / m['nn']:.2f} |", flush=True)


if __name__ == "__main__":
    main()

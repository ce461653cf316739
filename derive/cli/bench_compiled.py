"""The compiled module's side of the benchmark: its worker call and the GEMM floor.

Contract. :func:`floor_call` returns a function that performs, alone and in
NumPy, exactly the matrix products the compiled module performs for one
forward + backward of a torch-layout cell (gate blocks ``G = gates·H``):

    before the loop   gates = X_all @ W_ihᵀ                     (T·B, D) x (D, G)
    each step         hp = h_prev @ W_hhᵀ                        (B, H) x (H, G)     forward
                      dh = dz @ W_hh  (the GRU: dz's state block) (B, G') x (G', H)   backward
    after the loop    dW_ih = dZᵀ @ X_all, dW_hh = dZᵀ @ H_all, dx = dZ @ W_ih

(the GRU's state products are G' = G rows: its three state blocks) into
preallocated buffers, so that its time is the floor no implementation of the
module's structure goes below. :func:`compiled_call` loads a compiled module
and returns its forward + backward, with numba's threads and both BLAS pools
(NumPy's and scipy's, which numba's np.dot calls) set to the run's count; the
first call (compilation, or loading it from the disk cache) is timed apart.
"""

from __future__ import annotations

import time

SWEEP = [(10, 32, 128, 128), (100, 32, 128, 128), (1000, 32, 128, 128),
         (50, 32, 64, 64), (50, 32, 256, 256), (50, 32, 1024, 1024)]


def floor_call(gates: int, x, states, weights, d_output):
    """The module's matrix products alone (module docstring)."""
    import numpy as np

    T, B, D = x.shape
    H = states[0].shape[-1]
    weight_ih, weight_hh = weights[0], weights[1]
    G = gates * H
    dtype = x.dtype
    x_all = x.reshape(T * B, D)
    w_ih_t, w_hh_t = weight_ih.T, weight_hh.T
    rng = np.random.default_rng(0)
    hs = rng.standard_normal((T + 1, B, H)).astype(dtype)
    dz = rng.standard_normal((T, B, G)).astype(dtype)
    out_gates = np.empty((T * B, G), dtype)
    hp = np.empty((B, G), dtype)
    dh = np.empty((B, H), dtype)
    dw_ih, dw_hh = np.empty((G, D), dtype), np.empty((G, H), dtype)
    dx = np.empty((T * B, D), dtype)
    dz_all = dz.reshape(T * B, G)
    h_all = hs[:-1].reshape(T * B, H)

    def call():
        np.matmul(x_all, w_ih_t, out=out_gates)
        for t in range(T):
            np.dot(hs[t], w_hh_t, out=hp)
        for t in range(T - 1, -1, -1):
            np.dot(dz[t], weight_hh, out=dh)
        np.matmul(dz_all.T, x_all, out=dw_ih)
        np.matmul(dz_all.T, h_all, out=dw_hh)
        np.matmul(dz_all, weight_ih, out=dx)
    return call


def compiled_call(module, forward: str, backward: str, threads: int, x, states, weights, d_output):
    """(call, seconds of the first call): the compiled module's forward + backward."""
    import numba
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS, numba's np.dot's, before the thread limits)
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    fwd, bwd = getattr(module, forward), getattr(module, backward)

    def call():
        output, _, cache = fwd(x, *states, *weights)
        return bwd(d_output, cache)

    with threadpool_limits(limits=threads):
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
    return call, first

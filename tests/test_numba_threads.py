"""The compiled twins' loops split over the batch (generated/<preset>_numba.py, ``_split``).

Off as generated (``_SPLIT_SIZE = None``: measured slower on the benchmark machine,
BENCHMARKS.md); switched on, with NumPy's BLAS on more than one thread, a compiled
time loop runs in blocks of the batch, one per thread, BLAS lent down to one thread
meanwhile. What must hold:
the numbers are the NumPy module's (the blocks never meet inside a loop), every
block is run (uneven ones too, more threads than rows), BLAS's thread count is
given back, also when a block raises, and a call that finds the threads lent
runs whole. The split is forced at small sizes by lowering the module's
threshold; its speed is a benchmark's business (BENCHMARKS.md), not a test's.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from test_generated_reference import dims_for, generated_grads, module, sequence, worst
from test_numba_modules import compiled

pytest.importorskip("numba")
threadpoolctl = pytest.importorskip("threadpoolctl")

# rows (torch's LSTM, in place), rows with a second loop and strided column
# blocks (the GRU), columns (the course's LSTM: the batch is the last axis)
SPLIT = ["pytorch", "gru", "coursera", "graves"]


class Recorder:
    """Stands in for a compiled loop: runs it, and records the rows of every call and its thread."""

    def __init__(self, kernel):
        self.kernel, self.calls, self.signatures = kernel, [], kernel.signatures or ["compiled"]

    def __call__(self, *args):
        self.calls.append((args[-2], args[-1], threading.get_ident()))
        return self.kernel(*args)


def _blas_threads(twin) -> int:
    get, _ = twin._BLAS_THREADS
    return get()


def _needs_thread_control(twin):
    if twin._BLAS_THREADS is None:
        pytest.skip("NumPy's OpenBLAS thread count not found: the loops are not split")


@pytest.mark.parametrize("name", SPLIT)
@pytest.mark.parametrize("threads, batch", [(2, 4), (3, 5), (4, 3)])
def test_split_loops_give_the_numpy_module_numbers(name, threads, batch, monkeypatch):
    twin = compiled(name)
    _needs_thread_control(twin)
    seq = sequence(name, dims_for(name, 3, 4, batch), 5, seed=11)
    generated_grads(name, seq, module_=twin)  # compiled (and run whole) first
    monkeypatch.setattr(twin, "_SPLIT_SIZE", 0)
    recorders = {}
    for loop in ("_forward_steps_f64", "_bptt_steps_f64"):
        recorders[loop] = Recorder(getattr(twin, loop))
        monkeypatch.setattr(twin, loop, recorders[loop])
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        before = _blas_threads(twin)
        got = generated_grads(name, seq, module_=twin)
        assert _blas_threads(twin) == before  # given back
    assert twin._LENT[0] == 0
    ref = generated_grads(name, seq, module_=module(name))
    err, key = worst(got, ref)
    assert err <= 1e-12, (name, key, err)
    blocks = min(before, batch)
    for loop, rec in recorders.items():
        rows = sorted((lo, hi) for lo, hi, _ in rec.calls)
        assert rows[0][0] == 0 and rows[-1][1] == batch and len(rows) == blocks, (loop, rows)
        assert all(a[1] == b[0] for a, b in zip(rows, rows[1:])), (loop, rows)  # every row once
        caller = threading.get_ident()  # the first block in the calling thread, the others in the pool's
        assert [ident == caller for lo, _, ident in rec.calls if lo == 0] == [True], (loop, rec.calls)
        assert all(ident != caller for lo, _, ident in rec.calls if lo > 0), (loop, rec.calls)


def test_as_generated_the_loops_run_whole_whatever_the_threads(monkeypatch):
    twin = compiled("pytorch")
    assert twin._SPLIT_SIZE is None
    seq = sequence("pytorch", dims_for("pytorch", 3, 4, 4), 3, seed=4)
    generated_grads("pytorch", seq, module_=twin)
    rec = Recorder(twin._forward_steps_f64)
    monkeypatch.setattr(twin, "_forward_steps_f64", rec)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        generated_grads("pytorch", seq, module_=twin)
    assert [(lo, hi) for lo, hi, _ in rec.calls] == [(0, 4)]


def test_one_blas_thread_runs_the_loops_whole(monkeypatch):
    twin = compiled("pytorch")
    _needs_thread_control(twin)
    seq = sequence("pytorch", dims_for("pytorch", 3, 4, 4), 3, seed=1)
    generated_grads("pytorch", seq, module_=twin)
    monkeypatch.setattr(twin, "_SPLIT_SIZE", 0)
    rec = Recorder(twin._forward_steps_f64)
    monkeypatch.setattr(twin, "_forward_steps_f64", rec)
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        generated_grads("pytorch", seq, module_=twin)
    assert [(lo, hi) for lo, hi, _ in rec.calls] == [(0, 4)]


def test_a_call_that_finds_the_threads_lent_runs_whole_and_blas_is_given_back(monkeypatch):
    twin = compiled("pytorch")
    _needs_thread_control(twin)
    seq = sequence("pytorch", dims_for("pytorch", 3, 4, 4), 3, seed=2)
    generated_grads("pytorch", seq, module_=twin)
    monkeypatch.setattr(twin, "_SPLIT_SIZE", 0)
    rec = Recorder(twin._forward_steps_f64)
    monkeypatch.setattr(twin, "_forward_steps_f64", rec)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with twin._blas_lent() as threads:  # another call holds them
            assert threads == 2 and _blas_threads(twin) == 1
            with twin._blas_lent() as inner:
                assert inner == 1
            generated_grads("pytorch", seq, module_=twin)
        assert _blas_threads(twin) == 2
    assert [(lo, hi) for lo, hi, _ in rec.calls] == [(0, 4)]


def test_a_block_that_raises_gives_blas_back_and_raises(monkeypatch):
    twin = compiled("pytorch")
    _needs_thread_control(twin)
    seq = sequence("pytorch", dims_for("pytorch", 3, 4, 4), 3, seed=3)
    generated_grads("pytorch", seq, module_=twin)
    monkeypatch.setattr(twin, "_SPLIT_SIZE", 0)
    kernel = twin._forward_steps_f64

    def failing(*args):
        if args[-2] > 0:
            raise FloatingPointError("block")
        return kernel(*args)
    failing.signatures = kernel.signatures
    monkeypatch.setattr(twin, "_forward_steps_f64", failing)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(FloatingPointError, match="block"):
            generated_grads("pytorch", seq, module_=twin)
        assert _blas_threads(twin) == 2
    assert twin._LENT[0] == 0


def test_a_forked_child_splits_its_loops_in_threads_of_its_own(monkeypatch):
    """After a split call the module's pool has threads; a forked child has none
    of them, and must not wait for them (it gets a fresh pool)."""
    import os
    import pickle
    import select
    import signal

    twin = compiled("pytorch")
    _needs_thread_control(twin)
    seq = sequence("pytorch", dims_for("pytorch", 3, 4, 4), 4, seed=5)
    monkeypatch.setattr(twin, "_SPLIT_SIZE", 0)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        generated_grads("pytorch", seq, module_=twin)
        generated_grads("pytorch", seq, module_=twin)  # split: the pool has a thread now
        assert twin._POOL[0] is not None
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                grads = generated_grads("pytorch", seq, module_=twin)
                os.write(write, pickle.dumps({k: np.asarray(v) for k, v in grads.items()}))
            finally:
                os._exit(0)
        os.close(write)
        ready, _, _ = select.select([read], [], [], 60)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in the split loops")
        chunks = []
        while chunk := os.read(read, 1 << 20):
            chunks.append(chunk)
        os.close(read)
        os.waitpid(pid, 0)
    got = pickle.loads(b"".join(chunks))
    err, key = worst(got, generated_grads("pytorch", seq, module_=module("pytorch")))
    assert err <= 1e-12, (key, err)

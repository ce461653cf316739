"""Whether splitting the compiled loops over the batch pays, with one and with two
threads: each compiled twin timed with its loops split ("split", ``_SPLIT_SIZE = 0``:
with 2 BLAS threads its loops run in two blocks of the batch, BLAS on one thread
meanwhile), with its loops run whole ("whole", as generated: one thread of loops,
BLAS's threads for the per-step products), and the GEMM floor, in one process, the
three in turns.

    python bench/split_threads.py pytorch float64 50,32,64,128
    python bench/split_threads.py gru float32 100,64,256,256 --rounds 20

Wall time (threads), medians over samples of 3 calls with pauses. With 1 thread
"split" and "whole" are the same code path (the split needs 2 BLAS threads);
both are shown as a check of the noise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from derive.cli.benchmark import CELLS, floor_call, in_turns, inputs, load_generated  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset", choices=["pytorch", "gru"])
    p.add_argument("dtype", choices=["float32", "float64"])
    p.add_argument("size", nargs="?", default="50,32,64,128", metavar="T,B,D,H")
    p.add_argument("--rounds", type=int, default=12, help="timed samples per variant (default 12)")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.split(","))
    module = load_generated(str(ROOT / "generated" / f"{args.preset}_numba.py"), f"bench_split_{args.preset}_numba")
    cell = CELLS["lstm" if args.preset == "pytorch" else "gru"]
    x, states, weights, d_output = inputs(cell, args.dtype, size)
    forward, backward = getattr(module, cell.forward), getattr(module, cell.backward)

    def call():
        _, _, cache = forward(x, *states, *weights)
        backward(d_output, cache)

    def with_threshold(size):
        def run():
            module._SPLIT_SIZE = size
            call()
        return run

    split, whole = with_threshold(0), with_threshold(None)  # every call split (when 2 BLAS threads), none

    floor = floor_call(cell, x, states, weights)
    medians = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            runs = {f"split{threads}": split, f"whole{threads}": whole, f"floor{threads}": floor}
            samples = in_turns(runs, args.rounds, 3, clock=time.perf_counter)  # wall: the blocks run in threads
            medians.update({k: statistics.median(v) * 1e3 for k, v in samples.items()})
    m = medians
    print(f"{args.preset} {args.dtype} {size} ms: " + " ".join(f"{k}={v:.2f}" for k, v in m.items())
          + f" | 2 threads: split/floor {m['split2'] / m['floor2']:.2f}, whole/floor {m['whole2'] / m['floor2']:.2f},"
          f" split/whole {m['split2'] / m['whole2']:.2f} | 1 thread: compiled/floor {m['split1'] / m['floor1']:.2f}",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

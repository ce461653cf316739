"""Where the compiled twins' time above the GEMM floor goes: each twin timed as
generated, and again with the bodies of its unit loops removed (the same file,
every ``for _k in range(U):`` loop of its compiled time loops emptied: the
per-step products, the NumPy work before and after the loops and the Python
around them stay), in one process, one BLAS thread, in turns with the floor.

    python bench/unit_loops.py                   # LSTM and GRU, both dtypes, (50, 32, 64, 128)
    python bench/unit_loops.py --size 100,64,256,256 --rounds 15

Prints per cell and dtype the median CPU time of one forward + backward of each,
and two shares of the floor (paired: the median over samples of the ratios):
``loops`` = (twin - without loops) / floor, the elementwise work of every step
(the bias sums included) with whatever it costs the products around it
(caches); ``rest`` = (without loops - floor) / floor, everything else (copies,
allocation, the bias sums' sum over the batch, Python). The numbers of the
emptied twin are wrong; only its time is used. Its buffers are allocated
zeroed (the loops no longer write them; BLAS can be slower on the subnormals
or NaN of uninitialised memory): the zeroing counts in ``rest``, so ``loops``
errs low. The script says so if a buffer still holds a non-finite or
subnormal value.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from derive.cli.benchmark import CELLS, floor_call, in_turns, inputs, load_generated  # noqa: E402


def without_unit_loops(text: str) -> str:
    """The module's text with the body of every unit loop (``for _k in range(U):``) replaced by ``pass``,
    and its buffers allocated zeroed (``np.empty`` -> ``np.zeros``: what the loops no longer write
    would otherwise hold whatever memory held, subnormals and NaN included, on which BLAS can be slower)."""
    out, skip = [], None
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip())
        if skip is not None:
            if not line.strip() or indent > skip:
                continue
            skip = None
        out.append(line)
        if re.fullmatch(r"\s*for _k in range\(U\):", line):
            out.append(" " * (indent + 4) + "pass")
            skip = indent
    return "\n".join(out).replace("np.empty(", "np.zeros(")


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="50,32,64,128", metavar="T,B,D,H")
    p.add_argument("--rounds", type=int, default=21, help="timed samples of each (default 21)")
    p.add_argument("--calls", type=int, default=5, help="calls per sample (default 5)")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.split(","))
    print(f"size (T, B, D, H) = {size}; 1 BLAS thread; median CPU ms per forward + backward over "
          f"{args.rounds} samples of {args.calls} calls, in turns")
    print("| cell | dtype | twin | without unit loops | floor | twin / floor | loops / floor | rest / floor |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for cell_name in ("lstm", "gru"):
            cell = CELLS[cell_name]
            path = ROOT / "generated" / f"{cell.preset}_numba.py"
            emptied = Path(tmp) / f"{cell.preset}_numba_emptied.py"
            emptied.write_text(without_unit_loops(path.read_text()))
            twin = load_generated(str(path), f"bench_loops_{cell.preset}_numba")
            bare = load_generated(str(emptied), f"bench_loops_{cell.preset}_numba_emptied")
            for dtype in ("float32", "float64"):
                x, states, weights, d_output = inputs(cell, dtype, size)

                def call(module):
                    forward, backward = getattr(module, cell.forward), getattr(module, cell.backward)

                    def run():
                        _, _, cache = forward(x, *states, *weights)
                        backward(d_output, cache)
                    return run

                runs = {"twin": call(twin), "bare": call(bare), "floor": floor_call(cell, x, states, weights)}
                with threadpool_limits(limits=1):
                    out, _, cache = getattr(bare, cell.forward)(x, *states, *weights)
                held = np.concatenate([np.ravel(out)] + [np.ravel(v) for v in cache.values() if isinstance(v, np.ndarray)])
                tiny = np.finfo(held.dtype).tiny
                if not np.all(np.isfinite(held)) or np.any((held != 0) & (np.abs(held) < tiny)):
                    print(f"  note: {cell_name} {dtype}: the emptied twin's buffers hold non-finite or subnormal "
                          f"values; its time may not be the products' alone", flush=True)
                with threadpool_limits(limits=1):
                    samples = {k: [t * 1e3 for t in v] for k, v in in_turns(runs, args.rounds, args.calls).items()}
                m = {k: statistics.median(v) for k, v in samples.items()}

                def paired(f):
                    return statistics.median(f(t, b, fl) for t, b, fl in zip(*samples.values()))
                print(f"| {cell_name} | {dtype} | {m['twin']:.2f} | {m['bare']:.2f} | {m['floor']:.2f} | "
                      f"{paired(lambda t, b, fl: t / fl):.3f} | {paired(lambda t, b, fl: (t - b) / fl):.3f} | "
                      f"{paired(lambda t, b, fl: (b - fl) / fl):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

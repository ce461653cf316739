"""What the 512-bit vectors of the compiled loops buy: each compiled twin timed with
its loops as generated (``_wide_vectors()``: LLVM may use 512-bit registers) and
with the same loops compiled without that attribute (LLVM's default on AVX-512
CPUs: 256-bit), in one process, one BLAS thread, the two taken in turns.

    python bench/wide_vectors.py                 # LSTM and GRU, both dtypes, (50, 32, 64, 128)
    python bench/wide_vectors.py --size 100,64,256,256 --rounds 20

Prints per cell and dtype the median CPU time of one forward + backward with each
build, their difference, and the GEMM floor of the same run (derive.cli.benchmark's
floor_call), so that the difference reads as a share of the time above the floor.
CPU time (``time.process_time``) with pauses between samples: on a shared machine
it is steadier than wall time, and with one thread it is the call's own.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from derive.cli.benchmark import CELLS, floor_call, in_turns, inputs, load_generated  # noqa: E402

LOOPS = ("_forward_steps_f32", "_bptt_steps_f32", "_forward_steps_f64", "_bptt_steps_f64")


def narrow_loops(module) -> dict:
    """The module's loops compiled again, ``_wide_vectors`` a no-op: {name: dispatcher}."""
    import numba
    from numba.core import types as nt
    from numba.extending import intrinsic

    @intrinsic
    def no_attribute(typingctx):
        def codegen(context, builder, signature, args):
            return context.get_dummy_value()
        return nt.none(), codegen

    out = {}
    for name in LOOPS:
        f = getattr(module, name).py_func
        g = types.FunctionType(f.__code__, dict(f.__globals__, _wide_vectors=no_attribute), f.__name__)
        out[name] = numba.njit(**module._OPTIONS)(g)
    return out


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="50,32,64,128", metavar="T,B,D,H")
    p.add_argument("--rounds", type=int, default=15, help="timed samples per build (default 15)")
    p.add_argument("--calls", type=int, default=5, help="calls per sample (default 5)")
    args = p.parse_args(argv)
    size = tuple(int(v) for v in args.size.split(","))
    print(f"size (T, B, D, H) = {size}; 1 BLAS thread; median CPU ms per forward + backward over "
          f"{args.rounds} samples of {args.calls} calls, the builds in turns")
    print("| cell | dtype | wide (as generated) | narrow (256-bit) | narrow - wide | floor | wide / floor | "
          "narrow / floor |")
    print("|---|---|---|---|---|---|---|---|")
    for cell_name in ("lstm", "gru"):
        cell = CELLS[cell_name]
        module = load_generated(str(ROOT / "generated" / f"{cell.preset}_numba.py"), f"bench_wide_{cell.preset}_numba")
        wide = {name: getattr(module, name) for name in LOOPS}
        narrow = narrow_loops(module)
        for dtype in ("float32", "float64"):
            x, states, weights, d_output = inputs(cell, dtype, size)
            forward, backward = getattr(module, cell.forward), getattr(module, cell.backward)

            def call():
                _, _, cache = forward(x, *states, *weights)
                backward(d_output, cache)

            def build(loops):
                def run():
                    for name, loop in loops.items():
                        setattr(module, name, loop)
                    call()
                return run

            runs = {"wide": build(wide), "narrow": build(narrow), "floor": floor_call(cell, x, states, weights)}
            with threadpool_limits(limits=1):
                samples = {k: [t * 1e3 for t in v] for k, v in in_turns(runs, args.rounds, args.calls).items()}
            build(wide)()  # the module as generated again
            m = {k: statistics.median(v) for k, v in samples.items()}
            print(f"| {cell_name} | {dtype} | {m['wide']:.2f} | {m['narrow']:.2f} | {m['narrow'] - m['wide']:.2f} | "
                  f"{m['floor']:.2f} | {m['wide'] / m['floor']:.3f} | {m['narrow'] / m['floor']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

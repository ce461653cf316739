"""Where the time of generated/pytorch.py (or gru.py, elman.py) goes: every
statement of its forward and backward functions timed (the best of several
calls), in one process.

    python bench/profile_lstm.py                       # (T, B, D, H) = (20, 1, 10, 16), float32
    python bench/profile_lstm.py --size 100,64,256,256 --dtype float64
    python bench/profile_lstm.py --cell gru

The module's text is instrumented, not edited: each statement of _forward and
_backward (loops included) is wrapped in a timer through the ast module. The
timers add about 0.2 us per statement, so at the smallest size the sum
overstates the real time; the shares are what to read.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from derive.cli.benchmark import CELLS, inputs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class _Timers(ast.NodeTransformer):
    def __init__(self):
        self.inside = False

    def visit_FunctionDef(self, node):
        if node.name in ("_forward", "_backward", "_bptt"):
            self.inside = True
            self.generic_visit(node)
            node.body = self._wrap(node.body, node.name)
            self.inside = False
        return node

    def visit_For(self, node):
        self.generic_visit(node)
        if self.inside:
            node.body = self._wrap(node.body, "loop")
        return node

    def _wrap(self, body, where):
        out = []
        for stmt in body:
            if isinstance(stmt, (ast.For, ast.Return, ast.If)) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
                # (an if calls the timed _bptt: its time is in the loop's statements)
                out.append(stmt)
                continue
            key = f"{where}: " + ast.unparse(stmt).split("#")[0].strip()[:90]
            out += ast.parse("_t0 = _clock()").body
            out.append(stmt)
            out += ast.parse(f"_acc[{key!r}] = _acc.get({key!r}, 0.0) + _clock() - _t0").body
        return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="20,1,10,16", metavar="T,B,D,H")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    args = p.parse_args(argv)
    T, B, D, H = (int(v) for v in args.size.split(","))
    cell = CELLS[args.cell]
    path = f"generated/{cell.preset}.py"
    text = (ROOT / path).read_text("utf-8")
    tree = ast.fix_missing_locations(_Timers().visit(ast.parse(text)))
    acc: dict[str, float] = {}
    ns = {"_clock": time.perf_counter, "_acc": acc}
    exec(compile(tree, f"{path} (timed)", "exec"), ns)
    x, states, weights, d_output = inputs(cell, args.dtype, (T, B, D, H))

    best: dict[str, float] | None = None
    totals = []
    for _ in range(args.calls):
        acc.clear()
        t0 = time.perf_counter()
        _, _, cache = ns[cell.forward](x, *states, *weights)
        ns[cell.backward](d_output, cache)
        totals.append(time.perf_counter() - t0)
        best = dict(acc) if best is None else {k: min(best[k], acc[k]) for k in best}
    total = sum(best.values())
    print(f"{path}, (T, B, D, H) = ({T}, {B}, {D}, {H}), {args.dtype}: best call {min(totals) * 1e3:.3f} ms "
          f"(median {np.median(totals) * 1e3:.3f} ms); timed statements {total * 1e3:.3f} ms")
    print(f"{'ms':>9}  {'share':>6}  statement (best of {args.calls} calls, summed over the steps)")
    for key, value in sorted(best.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{value * 1e3:9.3f}  {100 * value / total:5.1f}%  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

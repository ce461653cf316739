"""Numbers for the verifier: consistent random states to judge formulas on.

Contract. (Shapes live in :mod:`derive.spec.shapes`, re-exported here.)
:class:`Bench` holds the states a formula is judged on. For each seed it draws
a random sequence with :func:`derive.numeric.evaluate.random_sequence` at small,
pairwise different sizes (so a transposed or mis-sliced array cannot pass by
coincidence), runs the forward equations, then the backward equations through
time as :func:`derive.numeric.evaluate.run` does, and keeps every step's environment:
forward values and every backward quantity of that step (a parameter
gradient's entry is the step's contribution, the summand of its ``Sum``).
:meth:`Bench.values` evaluates an expression at every (seed, step);
``later(x)`` reads step t+1 (zero after the last step) and a ``Sum`` over t
adds all steps. :func:`backward_steps` can also withhold the carried terms
(``carry``), which is how the verifier recognises a backward pass that does not
chain ``da_prev``/``dc_prev`` between steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import sympy as sp

from derive.numeric import evaluate as ev
from derive.spec import ops
from derive.spec.shapes import Shape, all_shapes, shape_of

# Sizes given to the dimensions, in spec order: small, pairwise different, and
# no sum of two equal to a third that a formula could confuse with it.
SIZES = (3, 4, 2, 5, 7, 6, 8, 9)
SEEDS = (11, 12, 13)
STEPS = 3


def sizes_for(cell) -> dict[str, int]:
    return {d: SIZES[i % len(SIZES)] + (i // len(SIZES)) * 10 for i, d in enumerate(cell.dims)}


def concrete(shape: Shape, dims: Mapping[str, int]) -> tuple[int, ...]:
    return ev.concrete_shape(shape, dims)


# ---------------------------------------------------------------------------
# running the derivation through time


def backward_steps(derivation, seq, envs, carry: Iterable[str] | None = None, backend=ev.FLOAT,
                   shapes: Mapping[str, Shape] | None = None):
    """Every step's backward values, t = T..1 as :func:`evaluate.run` computes
    them (the sweep :func:`evaluate.bptt`). ``carry``: the names x whose
    ``later(x)`` is carried from step t+1 (all by default; the others read
    zeros shaped like x). Returns (per-step dicts of backward values, per-step
    dicts of the values ``later(x)`` read). ``shapes`` is accepted for the
    callers that pass it; the zeros take the states' shapes from ``envs``."""
    laws = ev.interpreter(derivation, backend, seq.dims)
    steps: list[dict[str, Any]] = [dict() for _ in envs]
    laters: list[dict[str, Any]] = [dict() for _ in envs]
    for t, values, later in ev.bptt(derivation, envs, laws.step, laws.chain, carry=carry):
        steps[t], laters[t] = values, later
    return steps, laters


def totals(derivation, seq, steps) -> dict[Any, Any]:
    """The gradients of a whole sequence from per-step values, keyed as
    :func:`evaluate.run` keys them: parameter names (summed over t),
    initial-state gradient names, and (input gradient name, t)."""
    return ev.gradients(derivation, reversed(list(enumerate(steps))))


@dataclass
class Run:
    """One random sequence, forward and backward."""

    seq: Any
    envs: list[dict[str, Any]]  # forward values and backward values of each step
    later: list[dict[str, Any]] = field(default_factory=list)


class Bench:
    """Random consistent states of one derivation, for judging formulas."""

    def __init__(self, derivation, seeds: Iterable[int] = SEEDS, steps: int = STEPS,
                 initial_zero: bool = False, loss_scale: float = 0.5, shapes: Mapping[str, Shape] | None = None):
        self.derivation = derivation
        self.cell = derivation.cell
        self.dims = sizes_for(self.cell)
        self.shapes = dict(shapes) if shapes is not None else all_shapes(derivation)
        self.runs: list[Run] = []
        for seed in seeds:
            seq = ev.random_sequence(derivation, self.dims, steps, np.random.default_rng(seed), scale=loss_scale)
            if initial_zero:
                seq.initial = {k: np.zeros_like(v) for k, v in seq.initial.items()}
            fwd = ev.forward(derivation, seq)
            back, later = backward_steps(derivation, seq, fwd, shapes=self.shapes)
            sizes = {d: float(v) for d, v in self.dims.items()}  # a formula may mention a size
            envs = [{**sizes, **f, **b} for f, b in zip(fwd, back)]
            self.runs.append(Run(seq, envs, later))

    # -- evaluation -------------------------------------------------------------
    def zeros(self, shape: Shape) -> np.ndarray:
        return np.zeros(concrete(shape, self.dims))

    def value_at(self, expr: sp.Expr, run: Run, t: int, extra: Mapping[str, Any] | None = None):
        """``expr`` at step t of a run; ``later(x)`` reads step t+1."""
        env = run.envs[t] if not extra else {**run.envs[t], **extra}
        atoms = expr.atoms(ops.later)
        if atoms:
            held = {}
            for i, a in enumerate(sorted(atoms, key=sp.default_sort_key)):
                key = f"later__{i}"
                if t + 1 < len(run.envs):
                    held[key] = self.value_at(a.args[0], run, t + 1, extra)
                else:
                    held[key] = self.zeros(shape_of(a.args[0], self.shapes))
                expr = expr.xreplace({a: sp.Symbol(key)})
            env = {**env, **held}
        return ev.evaluate(expr, env, ev.FLOAT, self.dims)

    def values(self, expr: sp.Expr, extra: Mapping[str, Any] | None = None) -> list:
        """Values at every (run, step); a top-level Sum over t gives one value per run."""
        out = []
        for run in self.runs:
            if isinstance(expr, sp.Sum):
                total = 0
                for t in range(len(run.envs)):
                    total = total + self.value_at(expr.function, run, t, extra)
                out.append(total)
            else:
                out.extend(self.value_at(expr, run, t, extra) for t in range(len(run.envs)))
        return out

    def reference(self, name: str, total: bool = False) -> list:
        """The engine's values of a backward quantity at every (run, step), or a
        parameter gradient's total per run."""
        if total:
            return [sum(env[name] for env in run.envs) for run in self.runs]
        return [env[name] for run in self.runs for env in run.envs]


def relative_error(got: list, want: list) -> float:
    """max |got − want| / max |want| over all samples (inf if not finite, not
    real, e.g. ``(-1)**0.5``, or the shapes differ)."""
    worst = 0.0
    scale = 0.0
    for g, w in zip(got, want):
        g = np.asarray(g)
        if np.iscomplexobj(g):
            if np.any(np.imag(g) != 0):
                return float("inf")
            g = np.real(g)
        try:
            g = g.astype(float)
        except (TypeError, ValueError):  # an object array holding a non-real value
            return float("inf")
        w = np.asarray(w, dtype=float)
        if g.shape != w.shape:
            try:
                g = np.broadcast_to(g, w.shape)
            except ValueError:
                return float("inf")
        if not np.all(np.isfinite(g)):
            return float("inf")
        worst = max(worst, float(np.max(np.abs(g - w))) if w.size else 0.0)
        scale = max(scale, float(np.max(np.abs(w))) if w.size else 0.0)
    if scale == 0.0:
        return worst
    return worst / scale

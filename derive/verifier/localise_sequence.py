"""Name the cause of a whole-sequence backward's wrong gradients: the step equation where the mistake lives.

Contract. :func:`localise_sequence` takes what a user's whole-sequence backward
returned (its keys -> arrays), a function ``expected(key, totals)`` that reads
the array a key should hold from the totals of a backward pass through the
sequence (:func:`derive.numeric.judge.totals`), and the sequence it was run on.
It returns a list of :class:`~derive.verifier.localise.Cause` (the
intermediate of one STEP whose equation is wrong, the mistake, the returned
keys it explains) and the keys left unexplained. Nothing here knows a cell or
an API: the candidates are :func:`derive.verifier.localise.candidates` of
every step equation, plus the carried gradients left out of the gluing
equations (``da_next = da + later(da_prev)``: the carried term not added, one
state at a time or all together), and each candidate is judged by re-running
the whole backward pass through time (:func:`derive.numeric.judge.backward_steps`)
with that equation changed. A candidate that makes some wrong keys right and no
right key wrong is a cause; the one explaining the most is kept, applied, and
the search repeated (at most :data:`~derive.verifier.localise.MAX_CAUSES`).
A diagnosis never changes a verdict: the callers only add notes.
"""

from __future__ import annotations

import types
from typing import Callable

import numpy as np
import sympy as sp

from derive.spec import ops
from derive.verifier.function_report import TOL, _rel
from derive.verifier.localise import MAX_CAUSES, Cause, Graph, candidates
from derive.verifier.terms import _py


def localise_sequence(ctx, seq, fwd, got: dict[str, np.ndarray],
                      expected: Callable[[str, dict], np.ndarray | None]) -> tuple[list[Cause], list[str]]:
    """``ctx``: the context of the cell with the upstream head (the gradient arriving at each
    output given); ``seq``, ``fwd``: the sequence and its forward environments; ``got``: the
    user's arrays by key (shapes already checked). Returns (causes, keys not explained)."""
    from derive.numeric.judge import backward_steps, totals

    d = ctx.derivation
    keys = list(got)

    def run(fixes: dict) -> dict[str, np.ndarray | None]:
        steps, _ = backward_steps(_Replaced(d, fixes) if fixes else d, seq, fwd)
        tot = totals(d, seq, steps)
        return {k: expected(k, tot) for k in keys}

    def matching(values) -> set[str]:
        return {k for k in keys if values[k] is not None and _rel([got[k]], [values[k]]) <= TOL}

    right = matching(run({}))
    if right == set(keys):
        return [], []
    pool = _carry_candidates(ctx) + [(v, label, text, expr) for v in Graph(ctx).order
                                     for label, text, expr in candidates(ctx, v)]
    fixes: dict[str, sp.Expr] = {}
    causes: list[Cause] = []
    while len(causes) < MAX_CAUSES and right != set(keys):
        best = None
        for v, label, text, expr in pool:
            names = v.split(", ")
            if any(n in fixes for n in names):
                continue
            trial = {**fixes, **(expr if isinstance(expr, dict) else {v: expr})}
            try:
                now = matching(run(trial))
            except Exception:  # a mistake the evaluator cannot run explains nothing
                continue
            if right <= now and now - right and (best is None or len(now) > len(best[3])):
                best = (v, label, text, now, trial)
        if best is None:
            break
        v, label, text, now, trial = best
        fixes = trial
        causes.append(Cause(v, label, text, [k for k in keys if k in now - right]))
        right = now
    return causes, [k for k in keys if k not in right]


def _carry_candidates(ctx) -> list[tuple]:
    """The carried gradients left out of the gluing equations: (node, label, sentence, {node: rhs})."""
    d = ctx.derivation
    glued = []
    for eq in d.backward:
        name = str(eq.lhs)
        if d.kind(name) != "glue" or not eq.rhs.atoms(ops.later):
            continue
        carried = [a for a in sp.Add.make_args(eq.rhs) if a.atoms(ops.later)]
        glued.append((name, eq.rhs - sp.Add(*carried), ", ".join(_py(a.args[0]) for a in carried if a.args)))
    out = [(name, "no_chaining", f"{name}: the gradient carried back from step t+1 ({what}) is not added",
            {name: rhs}) for name, rhs, what in glued]
    if len(glued) > 1:
        names = ", ".join(n for n, _, _ in glued)
        whats = " nor ".join(w for _, _, w in glued)
        out.append((names, "no_chaining", f"{names}: neither {whats} is carried back from step t+1 to step t",
                    {n: rhs for n, rhs, _ in glued}))
    return out


class _Replaced:
    """A derivation whose backward equations of some quantities are replaced (a Sum stays a Sum)."""

    def __init__(self, derivation, fixes: dict[str, sp.Expr]):
        self._derivation = derivation
        self.backward = [types.SimpleNamespace(lhs=eq.lhs, rhs=_like(eq.rhs, fixes[str(eq.lhs)]))
                         if str(eq.lhs) in fixes else eq for eq in derivation.backward]

    def __getattr__(self, attr):
        return getattr(self._derivation, attr)


def _like(old: sp.Expr, new: sp.Expr) -> sp.Expr:
    if isinstance(old, sp.Sum) and not isinstance(new, sp.Sum):
        return sp.Sum(new, *old.limits)
    return new

"""The vocabulary of the diagnosis: findings, expansion, linear structure, probes.

:class:`Finding` is what the verifier reports about a wrong term, with its
label (:data:`LABELS`). :func:`reference`, :func:`keep_set` and :func:`expand`
bring a formula and the engine's right side to one vocabulary (forward values
and the gradients that reach the quantity); :func:`linear_terms` splits an
expression into ``map(core)`` terms linear in those gradients; :class:`Probe`
and :func:`close` compare maps and cores on random numbers. The analysis built
on these is :mod:`derive.verifier.diagnose`; the classic mistakes made on
purpose are :mod:`derive.verifier.mutations`.
"""


from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from derive.numeric import evaluate as ev
from derive.spec import functions, ops
from derive.numeric.judge import concrete


TOL = 1e-9


# the gate functions whose derivative is written in the stored gate value (sigmoid, tanh, exp, relu,
# sqrt): the rows of derive.spec.functions; a wrong derivative is diagnosed against theirs
_ACTS = {row.function: row.name for row in functions.FUNCTIONS.values() if row.gate and row.in_value}


@dataclass
class Finding:
    """One diagnosed difference. ``kind``: missing_term | extra_term | factor |
    term_differs | constant_term | map | missing_map_term | extra_map_term |
    shape | repair | not_linear | not_finite | different_quantity | mistake
    (the engine's formula with one classic mistake made) | output (functions). ``label`` names the classic mistake it most likely is, or ''.
    Expressions are SymPy (``expected`` the engine's, ``got`` the formula's);
    ``term`` is the upstream gradient (or the array map) the finding is about."""

    kind: str
    text: str  # the sentence, in Python spelling of the notation
    label: str = ""
    term: Any = None
    expected: Any = None
    got: Any = None
    missing: Any = None  # factors the formula lacks
    extra: Any = None  # factors the formula has in excess
    where: Any = None  # the array map the finding is inside, if any
    latex: str = ""  # the difference in LaTeX, the formula's part highlighted
    data: dict = field(default_factory=dict)
    explained: bool = False  # the text already explains the label
    predicate: str = ""  # the text after "the <term> term", for merging
    coef: Any = None  # for a missing term: its coefficient (placeholders in), for pairing

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "label": self.label, "message": self.text}
        for key in ("term", "expected", "got", "missing", "extra", "where"):
            value = getattr(self, key)
            if isinstance(value, tuple):  # one finding for several terms
                out[key] = [_py(v) if isinstance(v, sp.Basic) else str(v) for v in value]
            elif value is not None:
                out[key] = _py(value) if isinstance(value, sp.Basic) else str(value)
        if self.latex:
            out["latex"] = self.latex
        out.update(self.data)
        return out


LABELS = {
    "carried_state": "the gradient carried by a second recurrent state (an LSTM's cell state) is missing",
    "parenthesis": "an activation derivative multiplies only one of the summed terms (a missing parenthesis)",
    "activated_twice": "a derivative applied to an already activated value",
    "time_index": "a wrong time index",
    "slice_axis": "a weight sliced by rows instead of columns",
    "slice_block": "the wrong block of a concatenation",
    "missing_slice": "a weight used whole where only its block of columns belongs",
    "missing_derivative": "a missing activation derivative",
    "missing_value": "a gate's value left out of a product (not its derivative)",
    "no_chaining": "the backward pass does not chain the gradient between steps",
    "transposed": "a transposed result",
    "sign": "the wrong sign",
    "different_quantity": "a correct formula for a different quantity",
    "per_step": "a parameter gradient that is not summed over the steps",
    "wrong_derivative": "an activation derivative written wrong",
    "summand": "a factor with one of its summands left out or added",
    "missing_path": "a use of the value in the forward pass whose gradient is not added",
    "direct_path": "the direct (elementwise) path from the previous state is missing",
}


def _py(e) -> str:
    from derive.spec.pyprint import to_python

    try:
        return to_python(e)
    except Exception:
        return sp.sstr(e)


class NotLinear(Exception):
    def __init__(self, expr):
        self.expr = expr
        super().__init__("not linear")


class Unsupported(Exception):
    pass


def is_elementwise(e: sp.Expr) -> bool:
    return not any(isinstance(a, ops.ARRAY_FUNCTIONS) for a in sp.preorder_traversal(e)) and not e.has(sp.Sum)


def gate_acts(derivation) -> dict[str, str]:
    """Gate output name -> its function's name ('sigmoid', 'tanh', 'exp', …) for ``v = act(affine)``."""
    out = {}
    for eq in derivation.forward:
        rhs = eq.rhs
        for f, name in _ACTS.items():
            if isinstance(rhs, f) and not isinstance(rhs.args[0], sp.Symbol):
                out[str(eq.lhs)] = name
    return out


def derivative_of(gate: str, act: str) -> sp.Expr:
    """act' written in the stored gate value (sigmoid: g*(1 - g), tanh: 1 - g**2, exp: g, relu: [g > 0])."""
    return functions.gate_derivative(act, sp.Symbol(gate))


def reference(ctx, name: str) -> sp.Expr:
    """The engine's right side of ``name`` for one step (a Sum's summand)."""
    rhs = ctx.rhs(name)
    return rhs.function if isinstance(rhs, sp.Sum) else rhs


def on_path(ctx, name: str) -> set[str]:
    """Backward quantities the engine's ``name`` is computed from (transitively)."""
    seen: set[str] = set()
    stop = set(ctx.derivation.cell_inputs) if ctx.kind(name) in ("cell", "param", "state", "input", "book") else set()
    stack = [reference(ctx, name)]
    while stack:
        e = stack.pop()
        e = e.xreplace({a: sp.Dummy() for a in e.atoms(ops.later)})  # step t+1 is not on the path
        for s in e.free_symbols:
            n = s.name
            if n in ctx.backward_names and n not in seen and n != name:
                seen.add(n)
                if not ctx.is_sum(n) and n not in stop:
                    stack.append(reference(ctx, n))
    return seen


def keep_set(ctx, name: str, F: sp.Expr) -> set[str]:
    kind = ctx.kind(name)
    keep = set(ctx.derivation.cell_inputs) if kind in ("cell", "param", "state", "input", "book") else set()
    path = on_path(ctx, name)
    used = {s.name for s in F.free_symbols}
    keep |= {n for n in used if n in path and (n in ctx.backward_names or ctx.role(n) == "grad")}
    # gradients given from outside (the loss's dl/dh, the cell's inputs) are always gradients
    everything = used | {s.name for s in reference(ctx, name).free_symbols}
    keep |= {n for n in everything if ctx.role(n) == "grad" and n not in ctx.backward_names}
    return keep


def expand(ctx, expr: sp.Expr, keep: set[str]) -> sp.Expr:
    """Substitute the engine's equations for every backward name not in ``keep``
    (``later(x)`` atoms are left alone)."""
    for _ in range(len(ctx.backward_names) + 2):
        held = {a: sp.Dummy() for a in expr.atoms(ops.later)}
        body = expr.xreplace(held)
        subs = {}
        for s in body.free_symbols:
            n = s.name
            if n in ctx.backward_names and n not in keep and not ctx.is_sum(n):
                subs[s] = reference(ctx, n)
        if not subs:
            return expr
        expr = body.xreplace(subs).xreplace({v: k for k, v in held.items()})
    return expr


def linear_terms(e: sp.Expr, grads: set, P: sp.Symbol):
    """e = Σ template_k(P := core_k) + Σ constants; raises NotLinear."""
    if not (e.free_symbols & grads):
        return [], [e]
    if e in grads:
        return [(P, e)], []
    if isinstance(e, sp.Add):
        terms, consts = [], []
        for a in e.args:
            t, c = linear_terms(a, grads, P)
            terms += t
            consts += c
        return terms, consts
    if isinstance(e, sp.Mul):
        g = [a for a in e.args if a.free_symbols & grads]
        if len(g) > 1:
            raise NotLinear(e)
        others = sp.Mul(*[a for a in e.args if a is not g[0]])
        terms, consts = linear_terms(g[0], grads, P)
        out = []
        for tmpl, core in terms:
            # `*` is elementwise whatever its factors hold: a factor free of gradients, even
            # one with a matrix product inside (GRU's `r * (h_prev @ W_hn.T + b_hn)`), scales
            # the core, so a difference inside it is a factor difference, not another map
            if tmpl == P and not others.has(sp.Sum):
                out.append((P, others * core))
            else:
                out.append((others * tmpl, core))
        return out, [others * c for c in consts]
    if isinstance(e, (ops.matmul, ops.outer)):
        a, b = e.args
        ga, gb = bool(a.free_symbols & grads), bool(b.free_symbols & grads)
        if ga and gb:
            raise NotLinear(e)
        if ga:
            t, c = linear_terms(a, grads, P)
            return [(e.func(x, b), k) for x, k in t], [e.func(x, b) for x in c]
        t, c = linear_terms(b, grads, P)
        return [(e.func(a, x), k) for x, k in t], [e.func(a, x) for x in c]
    if isinstance(e, (ops.transpose, ops.take, ops.pick, ops.batch_sum)):
        rest = e.args[1:]
        t, c = linear_terms(e.args[0], grads, P)
        return [(e.func(x, *rest), k) for x, k in t], [e.func(x, *rest) for x in c]
    if isinstance(e, (sp.Pow, sp.Function, ops.softmax)) and not isinstance(e, ops.concat):
        raise NotLinear(e)
    raise Unsupported(e)


def normalize(t: sp.Expr) -> sp.Expr:
    """Push slices into matrix products and through transposes, so that
    ``take(Wc.T @ □, 0, 0, n_a)`` reads ``Wc[:, 0:n_a].T @ □``."""
    if isinstance(t, ops.take):
        x, axis, a, b = t.args
        x = normalize(x)
        if isinstance(x, ops.matmul) and int(axis) == 0:
            return ops.matmul(normalize(ops.take(x.args[0], axis, a, b)), x.args[1])
        if isinstance(x, ops.matmul) and int(axis) == 1:
            return ops.matmul(x.args[0], normalize(ops.take(x.args[1], axis, a, b)))
        if isinstance(x, ops.transpose):
            return ops.transpose(normalize(ops.take(x.args[0], sp.Integer(1 - int(axis)), a, b)))
        return ops.take(x, axis, a, b)
    if isinstance(t, sp.Basic) and t.args and isinstance(t, (ops.matmul, ops.outer, ops.transpose, ops.batch_sum, ops.pick, sp.Mul)):
        return t.func(*[normalize(a) for a in t.args])
    return t


class Probe:
    """Forward values of two random consistent states, and random values for
    the placeholders, to compare expressions numerically."""

    def __init__(self, ctx, placeholders: dict, seed: int = 7):
        bench = ctx.bench
        self.ctx = ctx
        self.dims = bench.dims
        picks = [(0, min(1, len(bench.runs[0].envs) - 1)), (min(1, len(bench.runs) - 1), 0)]
        rng = np.random.default_rng(seed)
        self.envs = []
        for r, t in picks:
            env = {**{d: float(v) for d, v in self.dims.items()}, **bench.runs[r].envs[t]}
            for p, shape in placeholders.items():
                env[p.name] = rng.normal(0.0, 1.0, concrete(shape, self.dims))
            self.envs.append(env)

    def values(self, e: sp.Expr, extra: dict | None = None):
        out = []
        for env in self.envs:
            out.append(np.asarray(ev.evaluate(e, {**env, **(extra or {})}, ev.FLOAT, self.dims), dtype=float))
        return out

    def same(self, a: sp.Expr, b: sp.Expr, extra: dict | None = None) -> bool:
        if a == b:
            return True
        try:
            va, vb = self.values(a, extra), self.values(b, extra)
        except Exception:
            return False
        return close(va, vb)

    def zero(self, e: sp.Expr) -> bool:
        """Numerically zero at both states (placeholders random)."""
        if e == 0:
            return True
        try:
            return all(v.size == 0 or float(np.max(np.abs(v))) <= 1e-12 for v in self.values(e))
        except Exception:
            return False


def close(va, vb) -> bool:
    worst, scale = 0.0, 0.0
    for a, b in zip(va, vb):
        try:
            a, b = np.broadcast_arrays(a, b)
        except ValueError:
            return False
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            return False
        worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
        scale = max(scale, float(np.max(np.abs(b))) if b.size else 0.0, float(np.max(np.abs(a))) if a.size else 0.0)
    return worst <= TOL * max(scale, 1e-300) or worst <= 1e-14

"""Name the cause of a user's wrong gradients: the intermediate where the mistake lives.

Contract. :func:`localise` takes what a user's one-step backward returned (the
engine's output names -> values at a few sampled states) and finds, over the
derivation's backward graph, the mistakes that explain them. It returns a list
of :class:`Cause` (an intermediate, the mistake in it, the outputs it
explains) and, when something is left unexplained, a :class:`Region` naming
the intermediates every remaining wrong output is computed from while no right
output is. Nothing here knows a cell: names, gates and weights come from the
derivation, so it works for every preset and user spec.

The method. The backward pass is re-run on the numbers with one intermediate
``v`` replaced by its own equation with one classic mistake made (a factor
left out, the gate's value or its activation derivative; a derivative on only
one of the summed terms; the weight of another gate paired with a gradient;
a term left out; a wrong time index; the sign), and everything computed from
``v`` recomputed by the engine's equations. A candidate that makes some wrong
outputs right and no right output wrong is a cause; the one that explains the
most is kept, applied, and the search repeated, so that several independent
mistakes are each named. The sentences use the notation's names and stay
short (``dit: only the da_next term has the factor it*(1 - it)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from derive.numeric import evaluate as ev
from derive.spec import ops
from derive.verifier.function_report import TOL, _rel
from derive.verifier.terms import _py, derivative_of, expand, reference

MAX_CAUSES = 3


@dataclass
class Cause:
    node: str  # the intermediate (or output) whose equation is wrong
    label: str  # missing_factor | missing_derivative | parenthesis | wrong_weight | ... (terms.LABELS or these)
    text: str  # the sentence, starting with the node's name
    explains: list = field(default_factory=list)  # the wrong outputs it makes right

    def to_dict(self) -> dict:
        return {"node": self.node, "label": self.label, "text": self.text, "explains": list(self.explains)}


@dataclass
class Region:
    nodes: list  # intermediates every wrong output comes from and no right one does
    outputs: list  # the wrong outputs it covers

    @property
    def text(self) -> str:
        where = " or ".join(self.nodes)
        return (f"{', '.join(self.outputs)} are computed from {where} and no right output is: "
                f"the mistake is in {where}")


class Graph:
    """The backward equations of one step, in order, and who is computed from whom."""

    def __init__(self, ctx):
        self.ctx = ctx
        d = ctx.derivation
        skip = set(d.cell_inputs)
        self.order = [str(eq.lhs) for eq in d.backward
                      if d.kind(str(eq.lhs)) not in ("head", "glue", "book") and str(eq.lhs) not in skip]
        self.deps: dict[str, set[str]] = {}
        for n in self.order:
            R = reference(ctx, n)
            R = R.xreplace({a: sp.Dummy() for a in R.atoms(ops.later)})
            self.deps[n] = {s.name for s in R.free_symbols if s.name in self.deps}

    def downstream(self, v: str) -> set[str]:
        out = {v}
        for n in self.order:
            if self.deps[n] & out:
                out.add(n)
        return out


def localise(ctx, got: dict[str, list], envs: list[dict], dims: dict) -> tuple[list[Cause], Region | None]:
    """``got``: engine output name -> the user's values at the states ``envs`` (every forward and
    backward value of the derivation by name, as ctx.bench keeps them), shapes already checked;
    ``dims`` the sizes. Returns (causes, region of what they leave unexplained)."""
    graph = Graph(ctx)
    samples = list(range(len(envs)))
    outputs = [n for n in graph.order if n in got]
    if not outputs:
        return [], None

    equations = {n: reference(ctx, n) for n in graph.order}
    base = set()  # outputs right as the user returned them

    def evaluate(fixes: dict[str, sp.Expr], which) -> dict[str, list]:
        """The outputs computed from the fixed intermediates, at the samples ``which``, with the
        fixed intermediates' equations replaced and everything after them recomputed."""
        changed = set()
        for n in graph.order:
            if n in fixes or graph.deps[n] & changed:
                changed.add(n)
        values: dict[str, list] = {n: [] for n in outputs if n in changed}
        for k in which:
            extra = dict(envs[k])
            for n in graph.order:
                if n in changed:
                    extra[n] = ev.evaluate(fixes.get(n, equations[n]), extra, ev.FLOAT, dims)
            for n in values:
                values[n].append(extra[n])
        return values

    def matching(values, which) -> set[str]:
        """The outputs the user's numbers agree with, at the samples ``which``."""
        return {n for n in outputs if (n in base if n not in values else
                                       _rel([got[n][i] for i in which], values[n]) <= TOL)}

    base |= {n for n in outputs if _rel(got[n], [env[n] for env in envs]) <= TOL}
    right = set(base)
    if right == set(outputs):
        return [], None
    fixes: dict[str, sp.Expr] = {}
    causes: list[Cause] = []
    while len(causes) < MAX_CAUSES and right != set(outputs):
        wrong = set(outputs) - right
        best = None
        for v in graph.order:
            if v in fixes:
                continue
            below = graph.downstream(v)
            if not below & wrong:
                continue
            for label, text, expr in candidates(ctx, v):
                trial = {**fixes, v: expr}
                try:  # one sample first: most candidates fail there
                    now = matching(evaluate(trial, samples[:1]), samples[:1])
                    if right <= now and now - right:
                        now = matching(evaluate(trial, samples), samples)
                except Exception:
                    continue
                if not right <= now or not (now - right):
                    continue
                if best is None or len(now) > len(best[3]):
                    best = (v, label, text, now, expr)
        if best is None:
            break
        v, label, text, now, expr = best
        fixes[v] = expr
        causes.append(Cause(v, label, text, [n for n in outputs if n in now - right]))
        right = now
    left = [n for n in outputs if n not in right]
    return causes, (_region(graph, outputs, right, left) if left else None)


def _region(graph: Graph, outputs, right, wrong) -> Region | None:
    """The intermediates from which every wrong output, and no right one, is computed (smallest first)."""
    best: list[str] = []
    size = None
    for v in graph.order:
        below = graph.downstream(v) & set(outputs)
        if not set(wrong) <= below or below & set(right):
            continue
        n = len(below)
        if size is None or n < size:
            best, size = [v], n
        elif n == size:
            best.append(v)
    return Region(best, list(wrong)) if best else None


# ---------------------------------------------------------------------------
# the mistakes one equation can have, in the notation's names


def candidates(ctx, v: str) -> list[tuple[str, str, sp.Expr]]:
    """(label, sentence, the equation of ``v`` with that mistake), most specific first."""
    R = reference(ctx, v)
    acts = ctx.gate_acts
    grads = _gradient_names(ctx)
    out: list[tuple[str, str, sp.Expr]] = []
    # a factor left out: a forward value (a gate's value) or an activation derivative
    for node in sp.preorder_traversal(R):
        if not isinstance(node, sp.Mul):
            continue
        args = list(node.args)
        where = _term_of(ctx, R, node, v, grads)
        groups = []
        for gate, act in acts.items():
            dfac = list(sp.Mul.make_args(derivative_of(gate, act)))
            if len(dfac) > 0 and all(f in args for f in dfac):
                groups.append((gate, act, dfac))
                rest = [a for a in args if a not in dfac]
                out.append(("missing_derivative", f"{where} lacks the factor {_py(sp.Mul(*dfac))}, the derivative "
                            f"of {act} in {gate}", R.xreplace({node: sp.Mul(*rest)})))
        in_groups = {f for _, _, dfac in groups for f in dfac}
        for a in args:
            if a in in_groups or a.is_Number or a.free_symbols & grads or a.atoms(ops.later):
                continue
            what = ", the gate's value (not its derivative)" if isinstance(a, sp.Symbol) and a.name in acts else ""
            out.append(("missing_factor", f"{where} lacks the factor {_py(a)}{what}",
                        R.xreplace({node: sp.Mul(*[b for b in args if b is not a])})))
    # a derivative on only one of the summed gradient terms (a missing parenthesis), in the gradients
    # reaching the cell
    X = expand(ctx, R, set(ctx.derivation.cell_inputs))
    for node in sp.preorder_traversal(X):
        if not isinstance(node, sp.Mul):
            continue
        args = list(node.args)
        for gate, act in acts.items():
            dfac = list(sp.Mul.make_args(derivative_of(gate, act)))
            if not all(f in args for f in dfac):
                continue
            rest = [a for a in args if a not in dfac]
            for s in [a for a in rest if isinstance(a, sp.Add) and a.free_symbols & grads]:
                others = [a for a in rest if a is not s]
                for k, term in enumerate(s.args):
                    if not term.free_symbols & grads:
                        continue
                    moved = sp.Add(*[x * sp.Mul(*dfac) if i == k else x for i, x in enumerate(s.args)])
                    who = _grad_list(term, grads)
                    out.append(("parenthesis", f"{v}: only the {who} term has the factor {_py(sp.Mul(*dfac))}",
                                X.xreplace({node: sp.Mul(*others) * moved})))
    # a weight paired with another gate's gradient, or a gradient with another gate's weight
    params = sorted({s for s in R.free_symbols if ctx.role(s.name) == "param"}, key=str)
    for p in params:
        for q in _same_shape(ctx, p, (s for s in ctx.cell.symbols if ctx.role(s) == "param")):
            partner = _partner(R, p, grads)
            what = f"pairs {partner} with {q.name}" if partner else f"uses {q.name}"
            out.append(("wrong_weight", f"{v} {what}, another gate's weight ({p.name} belongs)",
                        R.xreplace({p: q})))
    for g in sorted({s for s in R.free_symbols if s.name in ctx.backward_names and ctx.kind(s.name) == "cell"},
                    key=str):
        for h in _same_shape(ctx, g, (n for n in ctx.backward_names if ctx.kind(n) == "cell")):
            partner = _partner(R, g, {s for s in R.free_symbols if ctx.role(s.name) == "param"})
            what = f"pairs {partner} with {h.name}" if partner else f"uses {h.name}"
            out.append(("wrong_weight", f"{v} {what}, another gate's gradient ({g.name} belongs)",
                        R.xreplace({g: h})))
    # a term left out
    if isinstance(R, sp.Add):
        for term in R.args:
            out.append(("missing_term", f"{v} leaves out the term {_py(term)}", R - term))
    # a wrong time index, the sign
    for a, b in ctx.time_pairs():
        for x, y in ((a, b), (b, a)):
            if R.has(sp.Symbol(x)):
                out.append(("time_index", f"{v} uses {y} where {x} belongs", R.xreplace({sp.Symbol(x): sp.Symbol(y)})))
    out.append(("sign", f"{v} has the opposite sign", -R))
    return out


def _gradient_names(ctx) -> set:
    names = set(ctx.backward_names) | set(ctx.derivation.cell_inputs)
    return {sp.Symbol(n) for n in names}


def _grad_list(e: sp.Expr, grads: set) -> str:
    return ", ".join(sorted(s.name for s in e.free_symbols & grads))


def _term_of(ctx, R: sp.Expr, node: sp.Expr, v: str, grads: set) -> str:
    """``v`` when ``node`` is the whole equation, else ``v: the <gradient> term``."""
    if node == R or not isinstance(R, sp.Add):
        return v
    who = _grad_list(node, grads)
    return f"{v}: the {who} term" if who else v


def _same_shape(ctx, s, names) -> list[sp.Symbol]:
    name = s.name if isinstance(s, sp.Symbol) else str(s)
    shape = ctx.shapes.get(name)
    return [sp.Symbol(n) for n in sorted(set(names)) if n != name and ctx.shapes.get(n) == shape]


def _partner(R: sp.Expr, s: sp.Symbol, others: set) -> str:
    """The symbol of ``others`` that ``s`` multiplies in R (``dft`` for ``Wf`` in ``Wf.T @ dft``)."""
    for node in sp.preorder_traversal(R):
        if isinstance(node, (ops.matmul, ops.outer, sp.Mul)) and node.has(s):
            found = sorted(x.name for x in node.free_symbols & set(others) if x != s)
            if len(found) == 1 and len([a for a in node.args if a.has(s)]) == 1:
                return found[0]
    return ""

"""The reverse sweep: a cell's forward equations -> its named backward equations.

Contract. :func:`derive_cell` lowers the forward equations to a graph of
:class:`~derive.engine.rules.Node` (one node per elementwise expression, matrix
product, transpose or concatenation; a gate ``v = σ(…)`` gets its own
pre-activation node ``z_v``), then visits the nodes in reverse topological
order. The adjoint of a node is the sum over its consumers of the
contributions their rules give (autograd's ``backward_pass``):

    adj[v] = Σ_{consumers u of v}  rule_u(adj[u])          (+ dL/dv from outside, for cell outputs)

A node's adjoint is written as its own named equation when the notation names
it, when it is a gate's pre-activation, a parameter, an input or a state,
when several consumers meet in it, or when a value the spec names fans it out
to several operands (JANET's ``ds``); otherwise it is inlined into its one
consumer. That is what makes the result read like the textbook
(``dft = c_prev*dc*ft*(1 - ft)``) rather than like an expanded sum. Where a
gradient needs the value of a sub-expression the spec never named (torch's
GRU: ``W_hn h + b_hn``), that value is written out.

Backpropagation through time is explicit. The loss head (if any) is swept
first and gives ``external`` = dl(t)/d(output). Each recurrent link
``out -> prev`` then gets its gluing equation

    d(out) reaching the cell = external (if the head acts on out) + later(d(prev))

where ``later(x)`` is x at step t+1 (zero after the last step). Parameter
gradients are ``Sum(per-step contribution, (t, 1, T))``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from derive.spec import functions, ops
from derive.spec.cell import Cell, Equation
from derive.spec.shapes import Shape, infer_shape
from derive.errors import SpecError
from derive.engine.rules import KIND_OF_OP, LOSS_RULES, RULES, Node, Term

t = sp.Symbol("t", integer=True, positive=True)
T = sp.Symbol("T", integer=True, positive=True)

# v = f(affine) with f one of these makes v a gate (derive.spec.functions: sigmoid, tanh, exp, relu, …)
_ACTIVATIONS = functions.GATES


@dataclass(frozen=True)
class Step:
    """One adjoint of the derivation, as the chain rule computed it.

    ``name`` = ``Σ terms`` (+ ``outside``, the gradient reaching the cell from
    outside); ``result`` is the right side written into ``backward``.
    """

    name: str
    of: str
    terms: tuple[Term, ...]
    outside: sp.Expr | None
    result: sp.Expr
    over_time: bool = False


@dataclass
class Sweep:
    """What the reverse sweep produces for one cell; the input of Derivation."""

    cell: Cell
    nodes: list[Node]
    head_nodes: list[Node]
    shapes: dict[str, Shape]
    backward: list[sp.Eq] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    grad_of: dict[str, str] = field(default_factory=dict)  # array name -> its adjoint's name
    kind_of: dict[str, str] = field(default_factory=dict)  # adjoint name -> head|glue|cell|param|state|input|book


def derive_cell(cell: Cell) -> Sweep:
    shapes = {n: s.shape for n, s in cell.symbols.items()}
    lowering = _Lowering(cell, shapes)
    head_nodes = lowering.lower(cell.head_equations())
    nodes = lowering.lower(cell.cell_equations())
    sweep = Sweep(cell, nodes, head_nodes, shapes)
    namer = _Namer(cell, sweep)

    # 1. the loss head: its adjoints, its parameters, and dl(t)/d(on)
    if cell.loss.kind != "upstream":
        loss = cell.loss
        rule = LOSS_RULES[loss.kind]
        pred = sp.Symbol(loss.prediction)
        n = shapes[loss.prediction][cell.feature_axis if shapes[loss.prediction] else 0]
        axis = sp.Integer(min(cell.feature_axis, len(shapes[loss.prediction]) - 1))
        seed = rule.seed(pred, sp.Symbol(loss.target), axis, loss.unit, n, len(shapes[loss.prediction]))
        seeded = lowering.preact[loss.prediction] if rule.seeds_preact else loss.prediction
        skip = {loss.prediction} if rule.seeds_preact else set()
        leaves = _sweep(head_nodes, {seeded: seed}, skip, sweep, namer, region="head")
        external = _sum(t.contribution for t in leaves.pop(loss.on, []))
        if seeded == loss.on:  # the loss reads the cell output itself (h[0] − y)²
            external += seed
        _emit(sweep, Step(loss.external, loss.on, tuple(), None, external), region="head")
        sweep.grad_of[loss.on + "@head"] = loss.external
        _emit_leaves(leaves, sweep, namer)

    # 2. the gluing equations of backpropagation through time (each link's gradient is the
    #    adjoint of its output: no other adjoint may take that name, or BPTT would read one for the other)
    grads = {link.grad: link for link in cell.links}
    for link in cell.links:
        namer.claim(link.grad, link.out)
    for link in cell.links:
        prev_adjoint = namer.leaf_name(link.prev)
        if prev_adjoint in grads:
            raise SpecError(cell.path, f"[[recurrent]] `{grads[prev_adjoint].out}`: its grad `{prev_adjoint}` is also "
                                       f"the name of the gradient carried back to `{link.prev}`; call it otherwise "
                                       f"(e.g. grad = \"d{grads[prev_adjoint].out}\")")
        carried = ops.later(sp.Symbol(namer.leaf(link.prev)))
        outside = carried + (sp.Symbol(cell.loss.external) if link.out == cell.loss.on else 0)
        _emit(sweep, Step(link.grad, link.out, tuple(), None, outside), region="glue")

    # 3. the cell, from its outputs back to its inputs
    seeds = {link.out: sp.Symbol(link.grad) for link in cell.links}
    leaves = _sweep(nodes, seeds, set(), sweep, namer, region="cell")
    _emit_leaves(leaves, sweep, namer)

    _refuse_gradientless(cell, sweep)
    _inline_hidden_values(sweep, nodes + head_nodes)

    # 4. the book's names, as aliases (Graves 2012: ε_s := ∂L/∂s, …)
    for book, ours in cell.book_names.items():
        if ours not in sweep.kind_of:
            raise SpecError(cell.path, f"[book_names] `{book}` names `{ours}`, which the derivation does not produce")
        sweep.backward.append(sp.Eq(sp.Symbol(book), sp.Symbol(ours), evaluate=False))
        sweep.kind_of[book] = "book"
    return sweep


def _refuse_gradientless(cell: Cell, sweep: Sweep) -> None:
    """Every parameter, input and state gets a gradient, or the spec is refused:
    one that reaches the loss only through a step function (sign, heaviside:
    derivative 0, as torch's) has none, and a gradient identically 0 is almost
    always a mistake in the equations, not an intent."""
    for role in ("param", "input", "state"):
        for name in cell.names(role):
            if name in sweep.grad_of:
                continue
            where = next((eq for eq in cell.head_equations() + cell.cell_equations()
                          if sp.Symbol(name) in eq.rhs.free_symbols), None)
            place = f", equation `{where.text}`" if where is not None else ""
            steps = "/".join(sorted(f.__name__.lower() for f in functions.STEPS))
            raise SpecError(cell.path, f"{role} `{name}` gets no gradient{place}: every path from it to the loss "
                                       f"passes through a step function ({steps}), whose derivative is taken as 0; "
                                       f"its gradient would be 0 at every point")


def gate_values(nodes: list[Node]) -> dict[sp.Expr, sp.Expr]:
    """``f(z_v) -> v`` for each gate ``v = f(z_v)`` of ``nodes``, f its own function only:
    σ(z_f) is stored as f, tanh(z_c) as c̃, exp(z_i) as i, relu(z_h) as h, so that the
    derivatives read f(1 − f), 1 − c̃², i, [h > 0] (a softplus gate's σ(z_h) stays)."""
    own = {n.name: n.expr.func for n in nodes}
    out = {}
    for node in nodes:
        if node.preact_of is not None and own.get(node.preact_of) in _ACTIVATIONS:
            out[own[node.preact_of](sp.Symbol(node.name))] = sp.Symbol(node.preact_of)
    return out


def spell_hidden(nodes: list[Node]) -> Callable[[sp.Expr], sp.Expr]:
    """A function that writes every hidden temporary of ``nodes`` as its
    expression, as the derivation writes unnamed intermediates."""
    value = {sp.Symbol(n.name): n.expr for n in nodes if n.hidden}

    def spelled(expr: sp.Expr) -> sp.Expr:
        while True:
            found = expr.free_symbols & value.keys()
            if not found:
                return expr
            expr = expr.xreplace({s: value[s] for s in found})

    return spelled


def _inline_hidden_values(sweep: Sweep, nodes: list[Node]) -> None:
    """Write the forward value of an unnamed intermediate as its expression.

    A gradient may need the value of a sub-expression the spec never named:
    in torch's GRU, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) gives
    dz_r = dz_n * (h_prev @ W_hn.T + b_hn) * r * (1 - r). The sweep calls
    that factor ``_k``; the textbook writes it out, and so do we."""
    hidden = {sp.Symbol(n.name) for n in nodes if n.hidden}
    if not hidden:
        return
    spelled = spell_hidden(nodes)
    for k, eq in enumerate(sweep.backward):
        if eq.rhs.free_symbols & hidden:
            sweep.backward[k] = sp.Eq(eq.lhs, spelled(eq.rhs), evaluate=False)
    for k, step in enumerate(sweep.steps):
        terms = tuple(
            dataclasses.replace(
                t, contribution=spelled(t.contribution), partial=None if t.partial is None else spelled(t.partial)
            )
            for t in step.terms
        )
        sweep.steps[k] = dataclasses.replace(step, terms=terms, result=spelled(step.result))


def _sweep(nodes, seeds, skip, sweep: Sweep, namer: "_Namer", region: str) -> dict[str, list[Term]]:
    """Reverse-mode over ``nodes``; returns the contributions left for leaves."""
    shapes = sweep.shapes
    forward_values = namer.forward_values
    terms: dict[str, list[Term]] = defaultdict(list)
    defined = {n.name for n in nodes}
    for node in reversed(nodes):
        incoming = terms.pop(node.name, [])
        outside = seeds.get(node.name)
        if not incoming and outside is None:
            continue  # the loss does not depend on this node
        if node.name in skip:
            continue
        total = _sum(t.contribution for t in incoming) + (outside if outside is not None else 0)
        name = namer.node(node, incoming, outside)
        if name is not None:
            if incoming or outside != sp.Symbol(name):
                _emit(sweep, Step(name, node.name, tuple(incoming), outside, total), region)
            adjoint = sp.Symbol(name)
        else:
            adjoint = total
        for term in RULES[node.kind](node, adjoint, shapes, forward_values):
            role = sweep.cell.symbols[term.arg].role if term.arg in sweep.cell.symbols else "value"
            if role in ("target", "grad"):
                continue
            terms[term.arg].append(term)
    return {k: v for k, v in terms.items() if k not in defined}


def _emit(sweep: Sweep, step: Step, region: str) -> None:
    rhs = sp.Sum(step.result, (t, 1, T)) if step.over_time else step.result
    sweep.backward.append(sp.Eq(sp.Symbol(step.name), rhs, evaluate=False))
    sweep.steps.append(step)
    sweep.grad_of.setdefault(step.of, step.name)
    sweep.kind_of[step.name] = region


def _emit_leaves(leaves: dict[str, list[Term]], sweep: Sweep, namer: "_Namer") -> None:
    """Parameters (Σ over t), then previous states, then inputs, in spec order."""
    cell = sweep.cell
    for role in ("param", "state", "input"):
        for name in cell.names(role):
            if name not in leaves:
                continue
            incoming = tuple(leaves[name])
            total = _sum(t.contribution for t in incoming)
            step = Step(namer.leaf(name), name, incoming, None, total, over_time=(role == "param"))
            _emit(sweep, step, role)


def _sum(exprs) -> sp.Expr:
    return sp.Add(*list(exprs))


class _Lowering:
    """Forward equations -> nodes. Matrix products, transposes and
    concatenations become nodes of their own; a gate ``v = act(affine)`` gets
    a pre-activation node ``z_v``."""

    def __init__(self, cell: Cell, shapes: dict[str, Shape]):
        self.cell = cell
        self.shapes = shapes
        self.counter = itertools.count(1)
        self.preact: dict[str, str] = {}

    def lower(self, equations: tuple[Equation, ...]) -> list[Node]:
        out: list[Node] = []
        for eq in equations:
            rhs = eq.rhs
            is_gate = isinstance(rhs, (*_ACTIVATIONS, ops.softmax)) and not isinstance(rhs.args[0], sp.Symbol)
            if is_gate:
                z = f"z_{eq.target}"
                if z in self.cell.symbols:
                    raise SpecError(self.cell.path, f"`{z}` is reserved for the pre-activation of `{eq.target}`", eq.text)
                self.preact[eq.target] = z
                self._add(out, z, rhs.args[0], eq.text, hidden=False, preact_of=eq.target)
                rest = (sp.Symbol(z),) + tuple(rhs.args[1:])
                self._add(out, eq.target, rhs.func(*rest), eq.text)
            else:
                self._add(out, eq.target, rhs, eq.text)
        return out

    def _add(self, out, name, expr, text, hidden=False, preact_of=None) -> None:
        op = KIND_OF_OP.get(expr.func)
        if op is not None:
            args = [a if _is_leaf_operand(a) else self._temp(out, a, text) for a in expr.args]
            expr = expr.func(*args)
            kind = op
        elif isinstance(expr, ops.softmax):
            kind = "softmax"
        else:
            expr = self._strip(out, expr, text)
            kind = "elementwise"
        self.shapes[name] = infer_shape(expr, self.shapes)
        args = tuple(str(s) for s in sorted(expr.free_symbols, key=str) if str(s) not in self.cell.dims)
        out.append(Node(name, kind, expr, args, text, hidden, preact_of))

    def _strip(self, out, expr, text):
        if KIND_OF_OP.get(expr.func) or isinstance(expr, ops.softmax):
            return self._temp(out, expr, text)
        if not expr.args:
            return expr
        args = [self._strip(out, a, text) for a in expr.args]
        if all(a is b for a, b in zip(args, expr.args)):
            return expr
        return functions.rebuild(expr.func, args)

    def _temp(self, out, expr, text) -> sp.Symbol:
        name = f"_{next(self.counter)}"
        self._add(out, name, expr, text, hidden=True)
        return sp.Symbol(name)


def _is_leaf_operand(a: sp.Expr) -> bool:
    """Operands an array op takes as they are: names, axis integers, and the
    transpose of a name (``x @ W.T`` stays one matrix-product node, so dW reads
    ``dzᵀ @ x`` rather than going through a temporary)."""
    return a.is_Integer or isinstance(a, sp.Symbol) or (isinstance(a, ops.transpose) and isinstance(a.args[0], sp.Symbol))


class _Namer:
    """Decides which adjoints get a name, and which name (see module doc)."""

    def __init__(self, cell: Cell, sweep: Sweep):
        self.cell = cell
        self.sweep = sweep
        self.taken: dict[str, str] = {}
        self.forward_values: dict[sp.Expr, sp.Expr] = gate_values(sweep.nodes + sweep.head_nodes)
        # a gate whose derivative needs its argument (softplus' = σ(z), |z|' = sign(z)): z written out,
        # since only the gate's value is stored
        own = {n.name: n.expr.func for n in sweep.nodes + sweep.head_nodes}
        for node in sweep.nodes + sweep.head_nodes:
            row = functions.BY_CLASS.get(own.get(node.preact_of))
            if row is not None and not row.in_value:
                self.forward_values[sp.Symbol(node.name)] = node.expr

    def claim(self, name: str, of: str) -> str:
        clash = self.taken.get(name)
        if clash is not None and clash != of:
            raise SpecError(
                self.cell.path,
                f"the adjoints of `{clash}` and `{of}` would both be called `{name}`; name one in [adjoints]",
            )
        if name in self.cell.symbols and self.cell.symbols[name].role not in ("grad",):
            raise SpecError(
                self.cell.path,
                f"the adjoint of `{of}` would be called `{name}`, which is already a symbol; name it in [adjoints]",
            )
        self.taken[name] = of
        return name

    def leaf_name(self, name: str) -> str:
        """The name a leaf's adjoint takes (the spec's [adjoints], else d + name), unclaimed."""
        return self.cell.adjoint_names.get(name, "d" + name)

    def leaf(self, name: str) -> str:
        return self.claim(self.leaf_name(name), name)

    def node(self, node: Node, incoming: list[Term], outside) -> str | None:
        cell = self.cell
        if node.preact_of is not None:
            return self.claim(cell.preact_names.get(node.preact_of, "dz_" + node.preact_of), node.name)
        if node.hidden:
            return None
        if node.name in cell.adjoint_names:
            return self.claim(cell.adjoint_names[node.name], node.name)
        if outside is not None:
            if not incoming:
                return str(outside)  # the cell receives it whole: no new name
            return self.claim("d" + node.name, node.name)
        if len(incoming) > 1:
            return self.claim("d" + node.name, node.name)
        if node.kind == "elementwise" and len(node.args) > 1 and not isinstance(incoming[0].contribution, sp.Symbol):
            # a named value the user wrote (JANET's s = U_f c + W_f x + b_f) fans its adjoint out to
            # several operands: name it once (ds) rather than repeat it in each
            return self.claim("d" + node.name, node.name)
        return None

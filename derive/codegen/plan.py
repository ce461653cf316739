"""The fused structure of an emitted module, read off a derivation's graph and checked.

Contract. :func:`plan` reads, from the lowered forward graph of a cell
(``Derivation.nodes``), every product of a parameter with an array of the step
(a *projection*: ``W_f @ concat(a_prev, xt)``, ``h_prev @ W_hn.T``) and sorts
the cell around them:

- a *slot* is a sum of projections (with biases, and other terms): a gate's
  pre-activation (``z_f``), a value the spec names (JANET's ``s``), or a sum
  inside a bigger expression (the GRU's ``h_prev @ W_hn.T + b_hn``, which the
  reset gate multiplies). Every slot has a block of one buffer, the *gates*
  buffer; a gate is activated in place in its block;
- a *source* is what projections read: an input (its products for all steps
  are one product before the time loop), a state (one product per step), or a
  value computed in the step (the MGU's ``f * h_prev``: one product per step,
  once it is known). The weights a source meets are stacked into one matrix,
  so that each source costs one product forward and one backward per step;
- each slot's *adjoint* (dL/d of the sum) is the chain rule through the one
  node that holds it: ``dz_f`` for a gate's pre-activation, ``dz_n * r`` for
  the GRU's inner sum;
- a *readout* is a state output that is a weight product of a value of the
  step outside every sum (torch's projection ``h = m @ W_hr.T``): its operand
  and its adjoint are kept per step, its weight gradient is one product after
  the loop.

Then it CHECKS the structure against the derived backward equations, never
trusting it: the products in a state or input gradient must be exactly the
source's stacked product of the slots' adjoints (:func:`fold_products`), each
weight gradient exactly the rule table's ``Σ_t adjoint ⊗ operand``, each bias
gradient exactly ``Σ_t Σ_batch adjoint``. A cell outside this frame raises
:class:`CodegenError` with the reason; :func:`derive.codegen.render_module`
then emits the unfused module instead.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Iterable

import sympy as sp

from derive.spec import functions, ops
from derive.engine.backprop import derive_cell, gate_values, spell_hidden
from derive.derivation import Derivation
from derive.errors import DeriveError
from derive.spec.pyprint import to_python
from derive.codegen.cse import _readable


class CodegenError(DeriveError):
    """The cell does not fit the fused frame of the emitted modules."""


# ---------------------------------------------------------------------------
# layouts: how a sequence is stored and sliced


@dataclass(frozen=True)
class Layout:
    """Sequence storage of one layout (see derive.codegen.render's docstring)."""

    name: str  # columns | rows | none

    @property
    def rows(self) -> bool:
        return self.name == "rows"

    @property
    def feature_from_end(self) -> int:
        """How many axes follow the feature axis of a step's array."""
        return 1 if self.name == "columns" else 0

    def seq_shape(self, features: str, T: str, batch: str | None) -> str:
        if self.rows:
            return f"({T}, {batch}, {features})"
        return f"({features}, {T})" if batch is None else f"({features}, {T}, {batch})"

    def all_shape(self, features: str, T: str, batch: str | None) -> str:
        """The shape of the all-steps matrix of a sequence."""
        if self.rows:
            return f"({T} * {batch}, {features})"
        return f"({features}, {T})" if batch is None else f"({features}, {T} * {batch})"

    def step(self, array: str, t: str, lo: str | None = None, hi: str | None = None) -> str:
        """Step t of a stored sequence (features lo:hi)."""
        if self.rows:
            return f"{array}[{t}]" if lo is None else f"{array}[{t}, :, {lo}:{hi}]"
        return f"{array}[:, {t}]" if lo is None else f"{array}[{lo}:{hi}, {t}]"

    def block(self, view: str, lo: str, hi: str, stacked: bool = False) -> str:
        """Features lo:hi of one step's array (``stacked``: with a leading axis of its own)."""
        if stacked:
            return f"{view}[..., {lo}:{hi}" + ", :" * self.feature_from_end + "]"
        return f"{view}[:, {lo}:{hi}]" if self.rows else f"{view}[{lo}:{hi}]"

    def all_steps(self, array: str, features: str, T: str, batch: str | None, part: str = "") -> str:
        """The matrix of the T·B columns (rows) of every step of a stored
        sequence, a view; ``part`` is ``:-1`` or ``1:`` for a state's T+1 slots."""
        if self.rows:
            sub = f"[{part}]" if part else ""
            return f"{array}{sub}.reshape({T} * {batch}, {features})"
        sub = f"[:, {part}]" if part else ""
        return f"{array}{sub}" if batch is None else f"{array}{sub}.reshape({features}, {T} * {batch})"

    def from_all(self, matrix: str, features: str, T: str, batch: str | None) -> str:
        if self.rows:
            return f"{matrix}.reshape({T}, {batch}, {features})"
        return matrix if batch is None else f"{matrix}.reshape({features}, {T}, {batch})"

    def all_block(self, matrix: str, lo: str, hi: str) -> str:
        return f"{matrix}[:, {lo}:{hi}]" if self.rows else f"{matrix}[{lo}:{hi}]"

    # the fused products; W is stacked (Σ slot sizes, source size)
    def project(self, W: str, X: str) -> str:
        return f"{X} @ {W}.T" if self.rows else f"{W} @ {X}"

    def project_into(self, W: str, X: str, out: str) -> str:
        """The product written straight into ``out`` (no temporary the size of the result)."""
        return f"np.matmul({X}, {W}.T, out={out})" if self.rows else f"np.matmul({W}, {X}, out={out})"

    def back_project(self, W: str, dZ: str, stacked: bool = False) -> str:
        if self.rows or (stacked and self.name == "none"):  # a stack of 1-D adjoints: (k, R) @ W
            return f"{dZ} @ {W}"
        return f"{W}.T @ {dZ}"

    def weight_grad(self, dZ: str, X: str) -> str:
        return f"{dZ}.T @ {X}" if self.rows else f"{dZ} @ {X}.T"

    def bias_grad(self, dZ: str) -> str:
        if self.rows:
            return f"{dZ}.sum(axis=0)"
        return f"{dZ}.sum(axis=1)" if self.name == "none" else f"{dZ}.sum(axis=1, keepdims=True)"

    def bias_add(self, b: str) -> str:
        return f"{b}[:, None]" if self.name == "none" else b

    def time_sum(self, text: str) -> str:
        """Σ over t of a per-step contribution evaluated on all-steps matrices
        (only the ``none`` layout keeps time on an axis of its own)."""
        return f"np.sum({text}, axis=-1)" if self.name == "none" else text


# ---------------------------------------------------------------------------
# the plan's parts


@dataclass
class Part:
    """Slot ``slot``'s product of the weight ``param`` with features lo:hi of
    the operand ``operand``; those features are the source ``source``."""

    slot: "Slot"
    param: str
    operand: str
    source: str
    lo: sp.Expr
    hi: sp.Expr
    transposed: bool  # the parameter is stored (in, out): ``x @ W``
    node: object  # the matmul node

    @property
    def key(self) -> tuple:
        return (self.param, str(self.lo), str(self.hi), self.transposed)


@dataclass
class Slot:
    """A sum of weight products, with its block lo:hi of the gates buffer.

    ``kind`` is ``gate`` (a gate's pre-activation: the block ends up holding
    the gate, activated in place), ``value`` (a value the spec names, such as
    JANET's s) or ``inner`` (a sum inside a bigger expression, such as the
    GRU's ``h_prev @ W_hn.T + b_hn``: ``name`` is the variable the module
    gives it)."""

    name: str
    kind: str
    expr: sp.Expr  # the sum as the lowered graph writes it
    owner: str  # the node whose expression holds it
    size: sp.Expr
    start: sp.Expr = sp.Integer(0)
    stop: sp.Expr = sp.Integer(0)
    parts: list[Part] = field(default_factory=list)
    biases: list[str] = field(default_factory=list)
    extra: sp.Expr = sp.Integer(0)  # its other terms (a peephole, r * hn)
    adjoint: sp.Expr = sp.Integer(0)  # dL/d(the sum)
    act: type | None = None  # a gate's activation
    grad: str | None = None  # the adjoint's name, when the derivation names it (dz_f, ds)
    home: str | None = None  # a gate that is a state output is kept in that state's sequence
    text: str = ""
    tag: str = ""

    @property
    def gate(self) -> str | None:
        return self.name if self.kind == "gate" else None


@dataclass
class Source:
    """An input, a state or a value of the step that slots see through weights.
    Its weight stacks the parts' weights: (Σ part sizes, source size)."""

    name: str
    role: str  # input | state | value
    size: sp.Expr
    parts: list[Part]
    var: str = ""  # its variable inside the loops
    weight: str = ""
    dweight: str = ""
    stack: str | None = None  # the notation stores exactly this stack (PyTorch's weight_ih)
    rows: sp.Expr = sp.Integer(0)  # Σ part sizes
    runs: list[tuple] = field(default_factory=list)  # (slot lo, slot hi, row lo, row hi), merged
    product: str = ""  # its adjoint's product in a step (dS = W_Sᵀ dZ_S)
    dgather: str = ""  # its parts' adjoints for all steps, when they are not one block of the slots
    seq: str = ""  # where its values of all steps are kept (a value: its own sequence)

    @property
    def direct(self) -> tuple | None:
        """(lo, hi) of the slots when the parts fill one block, in order."""
        if len(self.runs) == 1:
            return self.runs[0][0], self.runs[0][1]
        return None


@dataclass
class Readout:
    """A state output that is a weight product of a value of the step, outside
    every sum (torch's projection ``h = m @ W_hr.T``): one product per step
    forward; backward, its adjoint (dh) is kept per step and the weight's
    gradient is one product after the loop (dW_hr = dh_allᵀ m_all)."""

    out: str
    param: str
    operand: str
    node: object
    seq: str = ""  # the operand of every step, kept for the weight gradient
    grad: str = ""  # the adjoint of ``out``
    dseq: str = ""  # that adjoint at every step


@dataclass
class Plan:
    derivation: Derivation  # the cell with a given gradient on its output (upstream loss)
    full: Derivation  # the preset as defined (its loss head, if any)
    layout: Layout
    slots: list[Slot]
    sources: list[Source]
    total: sp.Expr  # Σ slot sizes
    absorbed: set[str]  # concatenations that only feed the products
    names: dict[str, str]
    seq: dict[str, str]  # input, link output or value source -> its stored sequence
    fresh: object = None
    spelled: dict = field(default_factory=dict)  # an inner slot's sum as the derivation spells it -> its symbol
    readouts: list[Readout] = field(default_factory=list)

    @property
    def cell(self):
        return self.derivation.cell

    @property
    def gates(self) -> list[Slot]:
        return [s for s in self.slots if s.kind == "gate"]

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)

    def slot_named(self, name: str) -> Slot | None:
        return next((s for s in self.slots if s.name == name), None)

    @property
    def has_bias(self) -> bool:
        return any(s.biases for s in self.slots)


def upstream(d: Derivation) -> Derivation:
    """``d`` with its loss taken as a given gradient on the output, as the fused loops take it."""
    if d.cell.loss.kind == "upstream":
        return d
    return Derivation(derive_cell(d.cell.with_upstream_loss()))


# Names the emitted code defines or uses, that a notation's names must not shadow.
RESERVED = {"np", "range", "reversed", "sigmoid", "softmax", "t", "dtype", "cache", "grads", "_basis", "_check",
            "_forward", "_backward", "_predict", "_as_float", "_bptt", "_bptt_truncated", "_aged",
            "_check_truncate", "truncate", "k", "numbers", "values"} | {
            row.numpy for row in functions.FUNCTIONS.values() if row.helper is not None}


class Names:
    """Fresh names for the emitted code: ``base``, or ``base_``, ``base__``...
    when a name is taken, reserved or a Python keyword."""

    def __init__(self, taken: Iterable[str]):
        self.taken = set(taken) | RESERVED

    def __call__(self, base: str) -> str:
        name = base
        while name in self.taken or keyword.iskeyword(name):
            name += "_"
        self.taken.add(name)
        return name


def forward_values(d: Derivation) -> dict:
    """σ(z_f) -> f, tanh(z_g) -> g: the stored gates, as the sweep reads derivatives."""
    return gate_values(d.nodes)


# ---------------------------------------------------------------------------
# plan()


def plan(derivation: Derivation) -> Plan:
    """Read the fused structure off a derivation and check it (module docstring)."""
    full = derivation
    d = upstream(derivation)
    cell = d.cell
    layout = Layout(cell.layout)
    shapes = d.shapes
    nodes = {n.name: n for n in d.nodes}
    order = {n.name: k for k, n in enumerate(d.nodes)}

    def fail(message: str) -> CodegenError:
        return CodegenError(f"{cell.path}: no fused NumPy module: {message}")

    def feat(name: str) -> sp.Expr:
        shape = shapes[name]
        if not shape:
            raise fail(f"`{name}` is a scalar")
        return shape[-1] if layout.rows else shape[0]

    notation = set(cell.symbols) | set(cell.dims) | set(d.names()) | set(full.names()) | set(full.cell.symbols)
    for name in sorted(notation):
        if keyword.iskeyword(name) or name in RESERVED:
            raise fail(f"the name `{name}` cannot be used in the emitted Python")
    fresh = Names(notation | {n.name for n in d.nodes})

    # 1. the projections: a parameter times an input, a state, a value of the step, or their concatenation
    def operand_parts(op: str) -> list[tuple[str, sp.Expr, sp.Expr]]:
        if op in nodes and nodes[op].kind == "concat":
            parts, lo = [], sp.Integer(0)
            for part in nodes[op].expr.args[1:]:
                size = feat(str(part))
                parts.append((str(part), lo, lo + size))
                lo = lo + size
            return parts
        return [(op, sp.Integer(0), feat(op))]

    gate_names = {n.preact_of for n in d.nodes if n.preact_of is not None}
    link_outs = {l.out for l in cell.links}
    projections: dict[str, tuple] = {}
    readouts: list[Readout] = []
    for node in d.nodes:
        if node.kind == "transpose":
            raise fail(f"`{node.equation}` transposes an array of the step")
        if node.kind != "matmul":
            continue
        w, operand, transposed = _weight_and_operand(node, layout)
        if node.name in link_outs and _is_readout(w, operand, transposed, cell, nodes, gate_names | link_outs):
            readouts.append(Readout(node.name, w.name, operand.name, node))
            continue
        if not (isinstance(w, sp.Symbol) and w.name in cell.symbols and cell.role(w.name) == "param"):
            raise fail(f"in `{node.equation}` a product is not a parameter times an array of the step")
        if not isinstance(operand, sp.Symbol):
            raise fail(f"in `{node.equation}` a product's operand is not a named array")
        parts = operand_parts(operand.name)
        for name, _, _ in parts:
            ok = (name in cell.symbols and cell.role(name) in ("input", "state")) or (
                name in nodes and nodes[name].kind == "elementwise" and nodes[name].preact_of is None
                and name not in gate_names and name not in {l.out for l in cell.links})
            if not ok:
                raise fail(f"in `{node.equation}` the product reads `{name}`, which is neither an input, a state "
                           f"nor a value of the step")
        projections[node.name] = (w.name, operand.name, transposed, parts)

    # 2. the slots: the sums of projections, in the node that holds each
    proj_syms = {sp.Symbol(n) for n in projections}
    consumers: dict[str, list[str]] = {n: [] for n in projections}
    for node in d.nodes:
        for s in node.expr.free_symbols:
            if s.name in consumers:
                consumers[s.name].append(node.name)
    slots: list[Slot] = []
    slot_of_proj: dict[str, Slot] = {}
    fv = forward_values(d)
    spell = spell_hidden(d.nodes)
    gate_eqs = {e.target: e for e in cell.equations}
    outs = {l.out for l in cell.links}
    for name, users in consumers.items():
        if len(users) != 1:
            raise fail(f"the product `{to_python(nodes[name].expr)}` is used {len(users)} times")
    holders = sorted({users[0] for users in consumers.values()}, key=order.get)
    for owner in holders:
        node = nodes[owner]
        if node.hidden:
            raise fail(f"a product in `{node.equation}` sits in an unnamed value")
        sums = _sums_of_products(node.expr, proj_syms)
        for expr in sums:
            whole = expr == node.expr
            if whole and node.preact_of is not None:
                gate = node.preact_of
                eq = gate_eqs[gate]
                row = functions.BY_CLASS.get(eq.rhs.func)
                if row is None or not row.gate or not row.in_value:
                    raise fail(f"the gate `{gate}` is not a function of its pre-activation whose derivative "
                               f"reads the stored value (sigmoid, tanh, exp, relu, sqrt)")
                slot = Slot(gate, "gate", expr, owner, feat(owner), act=eq.rhs.func, text=eq.text, tag=eq.tag,
                            home=gate if gate in outs else None)
            elif whole and owner not in outs:
                eq = gate_eqs.get(owner)
                slot = Slot(owner, "value", expr, owner, feat(owner), text=eq.text if eq else "", tag=eq.tag if eq else "")
            else:
                first = min((a for a in sp.Add.make_args(expr) if a in proj_syms), key=lambda s: order[s.name])
                w, op, _, parts = projections[first.name]
                base = f"{w}_{parts[0][0]}" if len(parts) == 1 else f"{w}_{op}"
                slot = Slot(fresh(base), "inner", expr, owner, feat(owner))
            for term in sp.Add.make_args(expr):
                if term in proj_syms:
                    slot_of_proj[term.name] = slot
                elif isinstance(term, sp.Symbol) and term.name in cell.symbols and cell.role(term.name) == "param" \
                        and _is_bias(shapes[term.name], shapes[owner], layout):
                    slot.biases.append(term.name)
                else:
                    slot.extra += term
            slots.append(slot)
    if not slots:
        raise fail("it has no product of a parameter with an array of the step")
    for node in d.nodes:
        if node.preact_of is not None and not any(s.kind == "gate" and s.owner == node.name for s in slots):
            raise fail(f"the pre-activation of `{node.preact_of}` is not a sum of weight products")
    inner_syms = {s.expr: sp.Symbol(s.name) for s in slots if s.kind == "inner"}
    for s in slots:  # a sum inside another refers to it by its name
        s.extra = s.extra.xreplace(inner_syms)
        if any(str(x) in projections or (str(x) in nodes and nodes[str(x)].hidden) for x in s.extra.free_symbols):
            raise fail(f"in `{nodes[s.owner].equation}` a term other than a weight product is an unnamed value")

    # 3. each slot's adjoint: the chain rule through the node that holds it
    for s in slots:
        owner = nodes[s.owner]
        grad = _adjoint_name(d, owner.name)
        if grad is None:
            raise fail(f"the derivation gives no name to the adjoint of `{owner.name}`")
        D = sp.Dummy("sum")
        partial = functions.diff(owner.expr.xreplace({s.expr: D}).xreplace(inner_syms), D).xreplace(fv)
        s.adjoint = sp.Symbol(grad) * partial.xreplace({D: sp.Symbol(s.name)})
        if s.kind in ("gate", "value") and s.adjoint == sp.Symbol(grad):
            s.grad = grad

    # 4. the parts of each projection, and the sources: inputs, states, values of the step
    parts_by_source: dict[str, list[Part]] = {}
    for name, (w, op, transposed, parts) in sorted(projections.items(), key=lambda kv: order[kv[0]]):
        slot = slot_of_proj[name]
        for src, lo, hi in parts:
            part = Part(slot, w, op, src, lo, hi, transposed, nodes[name])
            slot.parts.append(part)
            parts_by_source.setdefault(src, []).append(part)
    inputs = [n for n in cell.names("input") if n in parts_by_source]
    states = [l.prev for l in cell.links if l.prev in parts_by_source]
    values = sorted((n for n in parts_by_source if n in nodes), key=order.get)
    for name in values:
        if any(s.name == name for s in slots):
            raise fail(f"the value `{name}` is both a sum of products and the operand of one")
    if not inputs:
        raise fail("no input reaches the gates through a weight")

    # The order of the slots in the buffer: those only inputs feed, then those fed by
    # inputs and by a state (or step value), then those only a state feeds, each in
    # graph order. Each source's weight stacks its parts in that order, so that a
    # state's slots are one block wherever they can be: one in-place product per step
    # and none gathered (the GRU: n | r z | the sum W_hn h_prev + b_hn; weight_ih is
    # then assembled n, r, z once per call, weight_hh used as it is).
    step_fed = {id(p.slot) for name in states + values for p in parts_by_source[name]}
    input_fed = {id(p.slot) for name in inputs for p in parts_by_source[name]}
    slots.sort(key=lambda s: ((id(s) in step_fed) + (id(s) not in input_fed), order[s.owner]))
    start = sp.Integer(0)
    for s in slots:
        s.start, s.stop = start, start + s.size
        start = s.stop
    for parts in parts_by_source.values():
        parts.sort(key=lambda p: slots.index(p.slot))

    sources = []
    for name in inputs + states + values:
        parts = parts_by_source[name]
        if len({id(p.slot) for p in parts}) != len(parts):
            raise fail(f"a sum sees `{name}` through two weights")
        role = "input" if name in inputs else "state" if name in states else "value"
        src = Source(name, role, feat(name), parts)
        members = tuple(p.param for p in parts)
        whole = all(p.lo == 0 and p.hi == feat(p.operand) and not p.transposed for p in parts)
        src.stack = next((k for k, v in cell.stacks.items() if tuple(v) == members), None) if whole else None
        src.var = name if role != "value" else fresh(_readable(nodes[name].expr) if nodes[name].hidden else name)
        src.weight = src.stack if src.stack else fresh("W_" + src.var)
        src.dweight = fresh("d" + src.weight)
        row = sp.Integer(0)
        for p in parts:
            lo, hi = p.slot.start, p.slot.stop
            if src.runs and src.runs[-1][1] == lo:
                a, _, r0, _ = src.runs[-1]
                src.runs[-1] = (a, hi, r0, row + p.slot.size)
            else:
                src.runs.append((lo, hi, row, row + p.slot.size))
            row = row + p.slot.size
        src.rows = row
        sources.append(src)

    absorbed = {p.operand for s in sources for p in s.parts if p.operand != p.source}
    for a in sorted(absorbed):
        if any(sp.Symbol(a) in n.expr.free_symbols and n.name not in projections for n in d.nodes):
            raise fail(f"`{a}` is used other than as the operand of a weight")

    seq = {}
    for link in cell.links:
        seq[link.out] = fresh(link.out + "_seq")
    for name in cell.names("input"):
        seq[name] = fresh(name + "_seq")
    for src in sources:
        src.seq = seq[src.name] if src.role == "input" else seq[next(l.out for l in cell.links if l.prev == src.name)] \
            if src.role == "state" else fresh(src.var + "_seq")
        src.product = fresh("d" + src.var + "_from_gates") if src.role != "input" else ""
        src.dgather = fresh("dgates_" + src.var) if src.direct is None else ""
        if src.role == "value":
            seq[src.name] = src.seq
    for r in readouts:
        r.seq, r.grad = fresh(r.operand + "_seq"), _adjoint_name(d, r.out) or ""
        if not r.grad:
            raise fail(f"the derivation gives no name to the adjoint of `{r.out}`")
        r.dseq = fresh(r.grad + "_seq")
    names = {key: fresh(key) for key in ("T", "gates", "dgates", "gates_all", "dgates_all", "z", "dz", "b", "db")}
    names["ext"] = fresh(cell.loss.external + "_seq")
    spelled = {spell(s.expr): sp.Symbol(s.name) for s in slots if s.kind == "inner"}
    return Plan(d, full, layout, slots, sources, start, absorbed, names, seq, fresh, spelled, readouts)


def _weight_and_operand(node, layout: Layout):
    a, b = node.expr.args
    transposed = False
    if layout.rows:
        operand, w = a, b
        if isinstance(w, ops.transpose):
            w = w.args[0]
        else:
            transposed = True
    else:
        w, operand = a, b
    return w, operand, transposed


def _is_readout(w, operand, transposed: bool, cell, nodes: dict, excluded: set) -> bool:
    """``w`` a parameter (stored (out, in)) times a named elementwise value of the step, no gate nor state."""
    return (not transposed and isinstance(w, sp.Symbol) and w.name in cell.symbols and cell.role(w.name) == "param"
            and isinstance(operand, sp.Symbol) and operand.name in nodes and nodes[operand.name].kind == "elementwise"
            and not nodes[operand.name].hidden and nodes[operand.name].preact_of is None
            and operand.name not in excluded)


def _sums_of_products(expr: sp.Expr, products: set) -> list[sp.Expr]:
    """The sums in ``expr`` with weight products among their terms (a product
    outside any sum is a sum of one term), outermost first."""
    found = []

    def walk(e):
        if isinstance(e, sp.Add):
            if any(a in products for a in e.args):
                found.append(e)
            for a in e.args:
                if a not in products:
                    walk(a)
        elif e in products:
            found.append(e)
        else:
            for a in e.args:
                walk(a)

    walk(expr)
    return found


def _adjoint_name(d: Derivation, node: str) -> str | None:
    try:
        name = d.gradient_name(node)
    except KeyError:
        return None
    return name if name in d.names() else None


def _is_bias(shape, zshape, layout: Layout) -> bool:
    """A parameter added to a sum and broadcast over the batch."""
    if layout.rows:
        return len(shape) == 1 and shape[0] == zshape[-1]
    if layout.name == "none":
        return tuple(shape) == tuple(zshape)
    return len(shape) == 2 and shape[0] == zshape[0] and shape[1] == 1


# ---------------------------------------------------------------------------
# the products of an adjoint, folded into the sources' products and checked


# ---------------------------------------------------------------------------
# common subexpressions, named for reading



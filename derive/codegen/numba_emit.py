"""The compiled core of a fused module (numba), from the same plan and the same derived statements.

Contract. :class:`NumbaEmitter` takes the :class:`~derive.codegen.plan.Plan`
and the :class:`~derive.codegen.emit.Emitter` of a fused NumPy module (after
the NumPy core is built: it reads the emitter's analysed, CSE'd backward step)
and gives the templates two compiled kernels, each one whole time loop in one
``@njit`` function, and the Python lines that call them:

    forward kernel    per step t: each state's product into a scratch
                      (``_gemm(blas, h_prev, W_hᵀ, hp)``: BLAS's gemm called from
                      the compiled code, no allocation), then
                      ONE loop over the units [n, k] of the step: every sum
                      completed (its input terms, its bias, its state terms), every
                      gate activated, every other equation of the cell; then
                      each readout's product (torch's projection ``h = m @
                      W_hrᵀ``: ``_gemm(blas, m_seq[t], W_hrᵀ, h_seq[t + 1])``)
    backward kernel   per step t (descending): each readout's adjoint in a loop
                      over its own units (``dh = doutput + later(dh_prev)``,
                      kept per step for its weight's gradient) and its product
                      (``dm = dh @ W_hr``, into a scratch); loop A over the units: the derived
                      statements that do not need a product (the slot adjoints into
                      the step's slot of the gates buffer, or a step scratch dz,
                      each also added to its bias sum ``dz_sum``, one row per
                      example); each state's product (``_gemm(blas, dz[:, block],
                      W_h, ...)``, a column block passed with its row stride, no
                      copy), added (``_gemm_add``, beta = 1) to the terms loop A
                      wrote into the state's adjoint when that adjoint is its
                      product plus such terms (the GRU's ``dh_prev = dh*z + dz @
                      W_h``); loop B, only when some statement needs a product
                      otherwise; dz copied into the step's slot of the gates
                      buffer when it was a scratch, as the NumPy module leaves it

Both kernels run over a block of the batch, rows ``n0..n1`` (their last two
parameters): the rows of a batch never meet, so every product and unit loop
of a step is cut to the block (``h_seq[t, n0:n1]``), and the caller
(``_split`` in the template) can run the blocks in threads of their own
(off as generated: measured slower, BENCHMARKS.md). Each
kernel starts with ``_wide_vectors()``, which lets LLVM use 512-bit
vectors in its unit loops where the CPU has them.

Every scratch of a step is allocated by the Python caller and passed in. The
``blas`` argument is the module's token of the BLAS library (``_BLAS``: NumPy's
own when found, else scipy's; see the template). Everything before the loops
(the input products of all steps, without the bias line: the forward loop adds
the biases) and after them (weight and input gradients, one product each; the
bias gradients are the loop's sums, summed over the batch) is the NumPy
module's; so is truncated BPTT (``_bptt_truncated``, the NumPy stacked loop,
which sums the bias gradients over the gates buffer as the NumPy module does).
Every scalar statement is a derived one, printed per unit by
:mod:`derive.codegen.numba_printer`, once per dtype (float32 and float64:
constants are of the loop's dtype). The frame is narrower than the NumPy
one: every sum, state and elementwise value of the step has the same number
of units (a readout's state and adjoint excepted: they have their own, and
are compiled in the rows layout only), products read states only (no value of
the step), and each state's slots are one block; else
:class:`~derive.codegen.plan.CodegenError`.
"""

from __future__ import annotations

import sympy as sp

from derive.spec import ops
from derive.codegen.emit import BIAS_GRAD_COMMENT, Emitter
from derive.codegen.numba_printer import DTYPES, Constants, helper_lines, scalar_text
from derive.codegen.numba_exp import EXP_POLYNOMIAL
from derive.codegen.numpy_printer import Lines
from derive.codegen.plan import CodegenError, Names, Plan, Slot, Source


class Unit:
    """One loop over the units of a step: the views its outer loop binds and
    how its body reads a unit of each (layout ``rows``: a batch row outside,
    its units inside; ``columns``: a unit outside, the batch inside; ``none``:
    the units)."""

    def __init__(self, ne: "NumbaEmitter", size: str | None = None):
        self.ne = ne
        self.size = size or ne.U  # the kernel's name of the number of units (a readout's: its own)
        self.binds = Lines()
        self.views: dict[tuple, str] = {}
        self.body = Lines()

    def _view(self, key: tuple, label: str, text: str) -> str:
        if key not in self.views:
            name = self.ne.fresh("v_" + label)
            self.views[key] = name
            self.binds.add(f"{name} = {text}")
        return self.views[key]

    def _range(self, off: sp.Expr) -> tuple[str, str]:
        if self.size != self.ne.U:  # a loop over a readout's units: its arrays are one block each
            if sp.sympify(off) != 0:
                raise self.ne.fail(f"an array of {self.size} units read from offset {off}")
            return "0", self.size
        m, U = self.ne.blocks(off), self.ne.U
        return ("0" if m == 0 else f"{m}*{U}"), (U if m == 0 else f"{m + 1}*{U}")

    def seq(self, array: str, at: str, off: sp.Expr, label: str) -> str:
        """A unit of step ``at`` of a stored sequence, features from ``off``."""
        ne, layout = self.ne, self.ne.L.name
        lo, hi = self._range(off)
        if layout == "rows":
            return self._view((array, at, lo), label, f"{array}[{at}, {ne.n}, {lo}:{hi}]") + f"[{ne.k}]"
        if layout == "columns":
            return self._view((array, at, lo), label, f"{array}[{_plus(lo, ne.k)}, {at}]") + f"[{ne.n}]"
        return self._view((array, at, lo), label, f"{array}[{lo}:{hi}, {at}]") + f"[{ne.k}]"

    def step(self, array: str, off: sp.Expr, label: str) -> str:
        """A unit of a step-shaped array (a scratch, a carried adjoint)."""
        ne, layout = self.ne, self.ne.L.name
        lo, hi = self._range(off)
        if layout == "rows":
            return self._view((array, lo), label, f"{array}[{ne.n}, {lo}:{hi}]") + f"[{ne.k}]"
        if layout == "columns":
            return self._view((array, lo), label, f"{array}[{_plus(lo, ne.k)}]") + f"[{ne.n}]"
        return self._view((array, lo), label, f"{array}[{lo}:{hi}]") + f"[{ne.k}]"

    def bias(self, array: str, off: sp.Expr, label: str) -> str:
        """A unit of the bias vector (``b``: every sum's, stacked as the gates buffer), features from ``off``."""
        ne = self.ne
        lo, hi = self._range(off)
        if ne.L.name == "columns":
            return self._view((array, lo), label, f"{array}[{_plus(lo, ne.k)}, 0]")
        return self._view((array, lo), label, f"{array}[{lo}:{hi}]") + f"[{ne.k}]"

    def param(self, array: str) -> str:
        """A unit of a parameter read elementwise (a peephole), the same for every example."""
        ne = self.ne
        if ne.L.name == "columns":
            return self._view((array,), array, f"{array}[{ne.k}, 0]")
        return self._view((array,), array, f"{array}[0:{self.size}]") + f"[{ne.k}]"

    def loop(self) -> Lines:
        ne, layout = self.ne, self.ne.L.name
        out = Lines()
        inner = ne.k if layout != "columns" else ne.n
        if layout == "none":
            out.extend(self.binds)
            out.add(f"for {ne.k} in range({self.size}):")
            out.extend("    " + line for line in self.body)
            return out
        rows = f"{ne.n0}, {ne.n1}"  # the block of the batch this call runs
        outer, size, inner_size = (ne.n, rows, self.size) if layout == "rows" else (ne.k, self.size, rows)
        out.add(f"for {outer} in range({size}):")
        out.extend("    " + line for line in self.binds)
        out.add(f"    for {inner} in range({inner_size}):")
        out.extend("        " + line for line in self.body)
        return out


def _plus(lo: str, k: str) -> str:
    return k if lo == "0" else f"{lo} + {k}"


class _NotInPlace(Exception):
    """Loop B reads a stored value of the step from the gates buffer: the slot
    adjoints cannot overwrite it in place."""


class NumbaEmitter:
    """The compiled kernels of a fused module and the Python lines that call them."""

    def __init__(self, p: Plan, e: Emitter):
        self.p, self.e, self.L, self.d, self.cell = p, e, p.layout, e.d, e.cell
        self.constants = Constants()
        self.base_taken = set(p.fresh.taken)
        self.bias_sum: str | None = None  # the backward kernel's bias sums, once built (_backward)
        self.reset()
        links = self.cell.links
        # a readout (torch's projection h = m @ W_hrᵀ) is a state of its own size: its
        # product follows the step's unit loop, and its adjoint has a loop of its own
        self.readout_of = {r.out: r for r in p.readouts}
        self.inner_links = [l for l in links if l.out not in self.readout_of]
        if not self.inner_links:
            raise self.fail("every state is a readout: no array has the units of the step")
        if len(p.readouts) > 1:  # (the backward kernel has one size of readout units)
            raise self.fail("more than one readout (a state that is a product of a value of the step)")
        if p.readouts and not self.L.rows:  # (no cell in columns has one in the fused frame to prove it on)
            raise self.fail("a readout (a state that is a product of a value of the step) is compiled in the rows "
                            "layout only")
        self.units = e.feat(self.inner_links[0].out)
        for s in p.sources:
            if s.role == "value":
                raise self.fail(f"a product reads `{s.var}`, a value of the step")
            if s.role == "state" and s.direct is None:
                raise self.fail(f"the sums that `{s.var}` feeds are not one block of the gates buffer")
        sized = [(s.name, s.size) for s in p.slots] + [(l.out, e.feat(l.out)) for l in self.inner_links]
        for what, size in sized + [(r.operand, e.feat(r.operand)) for r in p.readouts]:
            if sp.simplify(size - self.units) != 0:
                raise self.fail(f"`{what}` has {size} units, not {self.units}: one loop over the units needs one size")
        want = (self.units,) if self.L.name != "columns" else (self.units, 1)
        elementwise = set().union(*[{x.name for x in n.expr.free_symbols} for n in self.d.nodes if n.kind == "elementwise"])
        readout_only = {r.param for r in p.readouts} - elementwise  # read by its product alone
        for name in e.loop_params():
            if name in readout_only:
                continue
            if tuple(self.d.shapes[name]) != want:
                raise self.fail(f"the parameter `{name}` read in the step is not one value per unit")
        self.forward_args: dict[str, str] = {}
        self.backward_args: dict[str, str] = {}

    def fail(self, message: str) -> CodegenError:
        return CodegenError(f"{self.cell.path}: no compiled module: {message}")

    def blocks(self, off: sp.Expr) -> int:
        m = sp.simplify(sp.sympify(off) / self.units)
        if not (m.is_Integer and m >= 0):
            raise self.fail(f"the offset {off} is not a whole number of blocks of {self.units} units")
        return int(m)

    def dims(self, units: str, gates: str) -> list[str]:
        """The kernel's T and U, read off the gates buffer and an array of
        units (``units`` indexes its units' axis: ``h_seq.shape[2]``)."""
        if self.L.name == "rows":
            return [f"{self.T} = {gates}.shape[0]", f"{self.U} = {units}"]
        return [f"{self.T} = {gates}.shape[1]", f"{self.U} = {units}"]

    def outer_empty(self, blocks: int, units: str, gates: str) -> str:
        """A step-shaped scratch allocated by the Python caller and passed in (a
        scratch allocated inside the kernel made the forward unit loop about 2x
        slower, measured: LLVM versions the loop differently); ``units`` and
        ``gates`` are the caller's expressions (``h_seq.shape[2]``, ``gates``)."""
        rows = units if blocks == 1 else f"{blocks}*{units}"
        if self.L.name == "rows":
            return f"np.empty(({gates}.shape[1], {rows}), {gates}.dtype)"
        if self.L.name == "columns":
            return f"np.empty(({rows}, {gates}.shape[2]), {gates}.dtype)"
        return f"np.empty(({rows},), {gates}.dtype)"

    def sum_zeros(self, gates: str) -> str:
        """The zeroed accumulator of the bias sums: shaped as one step of the gates buffer."""
        return f"np.zeros_like({gates}[0])" if self.L.name == "rows" else f"np.zeros_like({gates}[:, 0])"

    def sum_total(self, acc: str) -> str:
        """The bias gradients from the accumulator: summed over the batch (the NumPy module's shape)."""
        return {"rows": f"{acc}.sum(axis=0)", "columns": f"{acc}.sum(axis=1, keepdims=True)", "none": acc}[self.L.name]

    def batch(self, gates: str) -> str:
        """The batch size, as the Python caller reads it off the gates buffer."""
        return {"rows": f"{gates}.shape[1]", "columns": f"{gates}.shape[2]", "none": "1"}[self.L.name]

    def block(self, array: str, at: str | None = None, cols: str | None = None) -> str:
        """``array`` at step ``at`` (a stored sequence; None: a step-shaped array),
        its features ``cols`` (None: all), cut to this call's rows of the batch:
        ``h_seq[t, n0:n1]``, ``dz[n0:n1, 0:2*U]`` (rows), ``seq[:, t, n0:n1]``
        (columns); the ``none`` layout has no batch to cut."""
        rows = f"{self.n0}:{self.n1}"
        if self.L.name == "rows":
            index = ([at] if at else []) + [rows] + ([cols] if cols else [])
        elif self.L.name == "columns":
            index = [cols or ":"] + ([at] if at else []) + [rows]
        else:
            index = [cols or ":", at] if at else ([cols] if cols else [])
        return f"{array}[{', '.join(index)}]" if index else array

    def unread(self) -> sp.Expr | None:
        """Where the sums start whose block of the gates buffer the forward loop
        does not read (all zero: no input feeds them, and only one input feeds
        any), or None."""
        inputs = [s for s in self.p.sources if s.role == "input"]
        return self.e.unfed() if len(inputs) == 1 else None

    def copy(self) -> str:
        """The compiled copy loop of a step-shaped array (an array assignment
        ``a[...] = b`` inside a kernel costs seconds of LLVM time; a call does not)."""
        return "_copy_1d" if self.L.name == "none" else "_copy_2d"

    def reset(self) -> None:
        """Fresh kernel-local names, the same on every call (both dtypes get the same text)."""
        self.fresh = Names(self.base_taken)
        self.n, self.k = self.fresh("_n"), self.fresh("_k")
        self.U, self.T = self.fresh("U"), self.fresh("T")
        self.blas = self.fresh("blas")
        self.n0, self.n1 = self.fresh("n0"), self.fresh("n1")

    def transposed(self, args: dict[str, str], weight: str) -> str:
        """A kernel argument (added to ``args``) holding ``weight``ᵀ C-contiguous,
        copied once per call: gemm on a transposed operand (NT) took 1.0-1.6x as
        long as the plain (NN) product on these shapes (OpenBLAS 0.3.31,
        bench/gemm_layout.py)."""
        w = self.fresh(weight + "_T")
        args[w] = f"np.ascontiguousarray({weight}.T)"
        return w

    def hp_row(self, src: Source, slot: Slot) -> sp.Expr:
        """Where a slot's terms sit in the source's product (its rows of the stacked weight)."""
        for lo, hi, r0, _ in src.runs:
            if self.blocks(slot.start - lo) >= 0 and self.blocks(hi - slot.stop) >= 0:
                return r0 + slot.start - lo
        raise self.fail(f"`{slot.name}` is not among the sums of `{src.var}`")

    # -- forward ---------------------------------------------------------------------
    def forward(self, sfx: str) -> Lines:
        p, e, d, L = self.p, self.e, self.d, self.L
        self.reset()
        gates = p.names["gates"]
        args = self.forward_args
        args[gates] = gates
        args[self.blas] = "_BLAS"
        if p.has_bias:
            args[p.names["b"]] = f"np.ascontiguousarray({p.names['b']})"
        unit = Unit(self)
        local: dict[str, str] = {}
        states = [s for s in p.sources if s.role == "state"]
        axis = {"rows": 2, "columns": 0, "none": 0}[L.name]
        units = f"{p.seq[self.inner_links[0].out]}.shape[{axis}]"
        prev_of = {l.prev: l for l in self.cell.links}
        readout_prev = {l.prev for l in self.cell.links if l.out in self.readout_of}
        kept_for = {r.operand: r for r in p.readouts}
        params = set(e.loop_params())
        inputs = set(self.cell.names("input"))
        products = Lines()
        hp: dict[str, str] = {}
        for s in states:
            seq = p.seq[prev_of[s.name].out]
            args[seq] = seq
            hp[s.name] = self.fresh("hp_" + s.var)
            args[hp[s.name]] = self.outer_empty(self.blocks(s.rows), units, gates)
            if L.rows:
                w = self.transposed(args, s.weight)
                products.add(f"_gemm({self.blas}, {self.block(seq, 't')}, {w}, {self.block(hp[s.name])})",
                             f"the {s.var} terms of their sums: one product")
            else:
                args[s.weight] = f"np.ascontiguousarray({s.weight})"  # C-contiguous: one signature per dtype
                products.add(f"_gemm({self.blas}, {s.weight}, {self.block(seq, 't')}, {self.block(hp[s.name])})",
                             f"the {s.var} terms of their sums: one product (its rows strided, no copy)")

        def need(expr: sp.Expr) -> None:
            for sym in sorted(expr.free_symbols, key=lambda s: s.name):
                name = sym.name
                if name in local:
                    continue
                if name in readout_prev:
                    raise self.fail(f"the step reads `{name}` per unit; it has the units of its readout, not the step's")
                if name in prev_of:
                    seq = p.seq[prev_of[name].out]
                    args[seq] = seq
                    unit.body.add(f"{name} = {unit.seq(seq, 't', 0, name)}")
                elif name in inputs:
                    seq = p.seq[name]
                    args[seq] = f"np.ascontiguousarray({seq})"
                    unit.body.add(f"{name} = {unit.seq(seq, 't', 0, name)}")
                elif name in params:
                    args[name] = f"np.ascontiguousarray({name})"
                    local[name] = unit.param(name)
                    continue
                elif p.slot_named(name) is not None and p.slot_named(name).kind == "inner":
                    sum_of(p.slot_named(name))
                else:
                    raise self.fail(f"the step reads `{name}`, which the compiled loop does not have")
                local[name] = name

        unfed = self.unread()

        def fed(slot: Slot) -> bool:
            if unfed is None:
                return True
            m = sp.simplify((slot.start - unfed) / self.units)
            return not (m.is_Integer and m >= 0)

        def total(slot: Slot) -> str:
            """The slot's sum: its block of the gates (input terms and bias), each state's terms, its other terms."""
            terms = [unit.seq(gates, "t", slot.start, "z_" + slot.name)] if fed(slot) else []
            if p.has_bias:  # in the NumPy module's order: (input terms + bias) + state terms
                terms.append(unit.bias(p.names["b"], slot.start, "b_" + slot.name))
            for s in states:
                if any(part.slot is slot for part in s.parts):
                    terms.append(unit.step(hp[s.name], self.hp_row(s, slot), f"{hp[s.name]}_{slot.name}"))
            if slot.extra != 0:
                need(slot.extra)
                terms.append(scalar_text(slot.extra, local, self.constants, sfx))
            return " + ".join(terms)

        def sum_of(slot: Slot) -> None:
            """A sum that is not a gate (the GRU's inner one): computed and kept in its block."""
            text = total(slot)
            unit.body.add(f"{slot.name} = {text}", f"{slot.name}: its sum, kept for the backward pass")
            unit.body.add(f"{unit.seq(gates, 't', slot.start, 'z_' + slot.name)} = {slot.name}")
            local[slot.name] = slot.name

        equations = {eq.target: eq for eq in self.cell.equations}
        gate_slot = {s.name: s for s in p.gates}
        outs = {l.out for l in self.cell.links}
        for node in d.nodes:
            if node.kind in ("matmul", "concat") or node.preact_of is not None:
                continue
            comment = equations[node.name].text if node.name in equations else None
            if node.name in gate_slot:
                g = gate_slot[node.name]
                act = scalar_text(g.act(sp.Symbol("_pre_")), {"_pre_": total(g)}, self.constants, sfx)
                unit.body.add(f"{g.name} = {act}", comment)
                dest = unit.seq(p.seq[g.home], "t + 1", 0, g.name) if g.home else \
                    unit.seq(gates, "t", g.start, "z_" + g.name)
                if g.home:
                    args[p.seq[g.home]] = p.seq[g.home]
                unit.body.add(f"{dest} = {g.name}")
                local[g.name] = g.name
                continue
            slot = p.slot_named(node.name)
            if slot is not None:
                if slot.name not in local:
                    sum_of(slot)
                continue
            if node.hidden:
                raise self.fail(f"`{node.equation}` has an unnamed value")
            expr = node.expr.xreplace(e.inner)
            need(expr)
            unit.body.add(f"{node.name} = {scalar_text(expr, local, self.constants, sfx)}", comment)
            local[node.name] = node.name
            if node.name in outs:
                seq = p.seq[node.name]
                args[seq] = seq
                unit.body.add(f"{unit.seq(seq, 't + 1', 0, node.name)} = {node.name}")
            if node.name in kept_for:  # a readout's operand, kept for its product and its weight's gradient
                seq = kept_for[node.name].seq
                args[seq] = seq
                unit.body.add(f"{unit.seq(seq, 't', 0, node.name)} = {node.name}")
        readouts = Lines()
        for r in p.readouts:  # after the unit loop: the readout of the step, one product into its state
            operand, out = self.block(r.seq, "t"), self.block(p.seq[r.out], "t + 1")
            args[p.seq[r.out]] = p.seq[r.out]
            text = equations[r.out].text if r.out in equations else None
            w = self.transposed(args, r.param)  # (rows only, see __init__)
            readouts.add(f"_gemm({self.blas}, {operand}, {w}, {out})", text)
        lines = Lines()
        lines.add("_wide_vectors()")
        lines.extend(self.dims(units, gates))
        lines.add(f"for t in range({self.T}):")
        lines.extend("    " + line for line in Lines(products + unit.loop() + readouts))
        return lines

    # -- backward --------------------------------------------------------------------
    def backward(self, sfx: str) -> tuple[Lines, list[str]]:
        """The backward kernel's lines, and the names of its carried buffers.

        In the ``rows`` layout the slot adjoints of step t are written straight
        into their slots of the gates buffer (no scratch, no copy): every stored
        value of the step that the unit loop reads from there is read at the top
        of the unit's body, before any adjoint overwrites it. When loop B would
        read such a value, a scratch takes the adjoints and is copied after."""
        try:
            return self._backward(sfx, inplace=self.L.name == "rows")
        except _NotInPlace:
            return self._backward(sfx, inplace=False)

    def _backward(self, sfx: str, inplace: bool) -> tuple[Lines, list[str]]:
        p, e, d, L = self.p, self.e, self.d, self.L
        self.backward_args.clear()
        self.reset()
        e.backward()
        sb = e.step_body
        n = p.names
        gates = n["gates"]
        args = self.backward_args
        args[gates] = gates
        args[self.blas] = "_BLAS"
        target = gates if sb.reuse else n["dgates"]
        args[target] = target
        links = self.cell.links
        grad_of = {d.gradient_name(l.prev): l for l in links}
        carried = {g: self.fresh(g + "_buf") for g in grad_of}
        for g, buf in carried.items():
            args[buf] = buf
        later = {g: self.fresh("later_" + g) for g in grad_of}
        readout_later = {later[g] for g, l in grad_of.items() if l.out in self.readout_of}
        params = set(e.loop_params())
        products = {name: src for name, src in sb.product_of.items()}
        stored = set(e.stored())
        slot_home = {s.name: s for s in p.slots if s.home is None}
        ext = self.cell.loss.external
        dz = self.fresh("dz")

        # every definition of the step, in an order that defines before use
        reads, recompute = sb._needed()
        temps = dict(sb.pairs)
        defs: list[tuple[str, sp.Expr, str | None]] = [(name, expr, f"{name} = again") for name, expr in recompute]
        for name, rhs, text in sb.glue:
            rhs = rhs.replace(ops.later, lambda a: sp.Symbol(later[a.name]) if isinstance(a, sp.Symbol) else a)
            if rhs.has(ops.later):
                raise self.fail(f"`{text}` carries something other than a state's adjoint")
            defs.append((name, rhs, text))
        done: set[str] = set()

        def ensure(expr: sp.Expr) -> None:
            for sym in sorted(expr.free_symbols, key=lambda s: s.name):
                if sym.name in temps and sym.name not in done:
                    ensure(temps[sym.name])
                    done.add(sym.name)
                    defs.append((sym.name, temps[sym.name], None))

        for (name, _, text), rhs in zip(sb.body, sb.reduced):
            ensure(rhs)
            defs.append((name, rhs, text))
        for slot in sb.unnamed:
            value = sb.unnamed_reduced[slot.name]
            ensure(value)
            defs.append((sb.unnamed_var[slot.name], value, f"the adjoint of {slot.name}: {slot.adjoint}"))
        unnamed_slot = {sb.unnamed_var[s.name]: s for s in sb.unnamed}

        # a readout's adjoint (dh = doutput + later(dh_prev), h = m @ W_hrᵀ) has the
        # readout's units: a loop of its own first, which also keeps it per step for
        # the weight's gradient; its product (dm = dh @ W_hr) follows, into a scratch
        # that loop A reads
        readout_grad = {r.grad: r for r in p.readouts}
        readout_product: dict[str, object] = {}  # the product's name -> its readout
        product_text: dict[str, str] = {}
        for name, rhs, text in defs:
            for r in p.readouts:
                if isinstance(rhs, ops.matmul) and {x.name for x in rhs.free_symbols} == {r.grad, r.param}:
                    readout_product[name] = r
                    product_text[name] = text or f"{name}: one product"
        readout_defs = [(name, rhs, text) for name, rhs, text in defs if name in readout_grad]
        defs = [d_ for d_ in defs if d_[0] not in readout_grad and d_[0] not in readout_product]
        for r in p.readouts:
            if not any(name == r.grad for name, _, _ in readout_defs) or \
                    sum(1 for r2 in readout_product.values() if r2 is r) != 1:
                raise self.fail(f"the adjoint of the readout `{r.out}` is not one statement and one product")

        # loop B: what needs a product; the rest is loop A
        late: set[str] = set(products)
        for name, rhs, _ in defs:
            if {s.name for s in rhs.free_symbols} & late:
                late.add(name)
        direct = {}  # a state's adjoint that is exactly its product: written straight by np.dot
        uses = {}
        for name, rhs, _ in defs:
            for s in rhs.free_symbols:
                uses[s.name] = uses.get(s.name, 0) + 1
        for name, rhs, _ in defs:
            if name in grad_of and isinstance(rhs, sp.Symbol) and rhs.name in products and uses[rhs.name] == 1:
                direct[rhs.name] = name
        # a state's adjoint that is its product plus terms loop A has (the GRU's
        # dh_prev = dh*z + dz @ W): loop A writes the terms into its buffer, once it
        # has read the later adjoint there, and the product adds itself to them
        # (gemm with beta = 1), so no second loop over the units of the step
        # (only an adjoint no statement of the step reads and no slot receives: its
        # buffer holds the terms alone until the product is added, after loop A)
        added: dict[str, tuple[str, sp.Expr]] = {}  # gradient -> (its product, the terms of loop A)
        for name, rhs, _ in defs:
            if (name not in grad_of or not isinstance(rhs, sp.Add) or uses.get(name, 0)
                    or name in sb.slot_of_grad or name in unnamed_slot):
                continue
            alone = [a for a in rhs.args if isinstance(a, sp.Symbol) and a.name in products and uses[a.name] == 1]
            if len(alone) != 1:
                continue
            terms = rhs - alone[0]
            if {s.name for s in terms.free_symbols} & late:
                continue
            added[name] = (alone[0].name, terms)
        late -= set(added)
        for name in list(added):  # loop B must not read the later adjoint its buffer no longer holds
            if any(sp.Symbol(later[name]) in rhs.free_symbols for other, rhs, _ in defs if other in late):
                del added[name]
                late.add(name)
        product_of_added = {prod: name for name, (prod, _) in added.items()}
        written_by_a = {name for name, _, _ in defs if name in grad_of and name not in late}  # incl. added
        written_so_far: set[str] = set()  # the state adjoints loop A has written, as its body grows
        early = {name for name, _, _ in defs if name not in late}
        kept = {s.name for name, rhs, _ in defs if name in late for s in rhs.free_symbols} & early

        first, second = Unit(self), Unit(self)
        readout_size = self.fresh("P") if p.readouts else None
        outer = Unit(self, readout_size) if p.readouts else None  # the readouts' adjoints
        local_r: dict[str, str] = {}
        outer_names = set(readout_grad) | readout_later | ({ext} if self.cell.loss.on in self.readout_of else set())
        local_a: dict[str, str] = {}
        local_b: dict[str, str] = {}
        keep_buf = {name: self.fresh("keep_" + name) for name in sorted(kept)}
        prod_buf = {name: self.fresh(name + "_t") for name in list(products) + list(readout_product)
                    if name not in direct and name not in product_of_added}
        prev_of = {l.prev: l for l in links}
        out_of = {l.out: l for l in links}

        def read(unit: Unit, local: dict, name: str, in_b: bool) -> None:
            if name in local:
                return
            if outer is not None and (unit is outer) != (name in outer_names):
                raise self.fail(f"the backward step reads `{name}` in a loop over units it does not have")
            if in_b and name in keep_buf:
                local[name] = unit.step(keep_buf[name], 0, name)
                return
            if in_b and inplace and target == gates and name in stored and name in slot_home:
                raise _NotInPlace(name)
            if name in later.values():
                g = next(k for k, v in later.items() if v == name)
                if g in (written_by_a if in_b else written_so_far):  # the buffer holds this step's value by then
                    raise self.fail(f"the backward step reads later({g}) after its loop has written {g}")
                unit.body.add(f"{name} = {unit.step(carried[g], 0, g)}", f"later({g})")
            elif name in prod_buf:
                local[name] = unit.step(prod_buf[name], 0, name)
                return
            elif name == ext:
                args[n["ext"]] = f"np.ascontiguousarray({n['ext']})"
                unit.body.add(f"{name} = {unit.seq(n['ext'], 't', 0, name)}")
            elif name in params:
                args[name] = f"np.ascontiguousarray({name})"
                local[name] = unit.param(name)
                return
            elif name in stored and name in slot_home:
                unit.body.add(f"{name} = {unit.seq(gates, 't', slot_home[name].start, name)}")
            elif name in stored and name in out_of:
                seq = p.seq[name]
                args[seq] = seq
                unit.body.add(f"{name} = {unit.seq(seq, 't + 1', 0, name)}")
            elif name in stored and name in prev_of:
                seq = p.seq[prev_of[name].out]
                args[seq] = seq
                unit.body.add(f"{name} = {unit.seq(seq, 't', 0, name)}")
            elif name in stored and name in self.cell.names("input"):
                seq = p.seq[name]
                args[seq] = f"np.ascontiguousarray({seq})"
                unit.body.add(f"{name} = {unit.seq(seq, 't', 0, name)}")
            else:
                raise self.fail(f"the backward step reads `{name}`, which the compiled loop does not have")
            local[name] = name

        # every bias gradient summed by the loop as it writes the slot adjoints,
        # instead of a pass over the whole gates buffer after it: one row of sums
        # per example (the blocks of a split batch never add into the same
        # place), summed over the batch by the caller. Only when the loop writes
        # every slot (the sum then covers what the NumPy module's sum covers).
        written = {s.name for s in sb.slot_of_grad.values()} | {s.name for s in unnamed_slot.values()}
        summed = self.fresh("dz_sum") if p.has_bias and written == {s.name for s in p.slots} else None
        self.bias_sum = summed
        if summed:
            args[summed] = summed

        def dz_unit(unit: Unit, off, name: str) -> str:
            if inplace:
                return unit.seq(target, "t", off, "d" + name)
            return unit.step(dz, off, name)

        if inplace and target == gates:
            # the stored values of the step that loop A reads, read before any adjoint overwrites them
            for name, rhs, _ in defs:
                if name not in late and name not in direct.values():
                    for sym in sorted(rhs.free_symbols, key=lambda s: s.name):
                        if sym.name in stored and sym.name in slot_home:
                            read(first, local_a, sym.name, False)

        for name, rhs, text in readout_defs:  # the readouts' adjoints, each kept per step
            for sym in sorted(rhs.free_symbols, key=lambda s: s.name):
                read(outer, local_r, sym.name, False)
            outer.body.add(f"{name} = {scalar_text(rhs, local_r, self.constants, sfx)}", text)
            local_r[name] = name
            r = readout_grad[name]
            args[r.dseq] = r.dseq
            outer.body.add(f"{outer.seq(r.dseq, 't', 0, name)} = {name}", f"{name} of step t, for d{r.param} after the loop")

        for name in added:  # read before loop A overwrites it with the terms
            read(first, local_a, later[name], False)
        for name, rhs, text in defs:
            if name in direct.values():
                continue
            if name in added:
                terms = added[name][1]
                for sym in sorted(terms.free_symbols, key=lambda s: s.name):
                    read(first, local_a, sym.name, False)
                first.body.add(f"{first.step(carried[name], 0, name)} = {scalar_text(terms, local_a, self.constants, sfx)}",
                               f"{text}: its terms here, its product added below")
                written_so_far.add(name)
                continue
            in_b = name in late
            unit, local = (second, local_b) if in_b else (first, local_a)
            for sym in sorted(rhs.free_symbols, key=lambda s: s.name):
                read(unit, local, sym.name, in_b)
            unit.body.add(f"{name} = {scalar_text(rhs, local, self.constants, sfx)}", text)
            local[name] = name
            slot = sb.slot_of_grad.get(name) or unnamed_slot.get(name)
            if slot is not None:
                unit.body.add(f"{dz_unit(unit, slot.start, name)} = {name}")
                if summed:
                    unit.body.add(f"{unit.step(summed, slot.start, 'sum_' + name)} += {name}")
            if name in grad_of:
                unit.body.add(f"{unit.step(carried[name], 0, name)} = {name}")
                if not in_b:
                    written_so_far.add(name)
            if name in keep_buf:
                unit.body.add(f"{unit.step(keep_buf[name], 0, name)} = {name}")

        # the step scratches: allocated by the caller and passed in, as the forward's
        axis = {"rows": 1, "columns": 0, "none": 0}[L.name]
        units = f"{carried[d.gradient_name(self.inner_links[0].prev)]}.shape[{axis}]"
        early_prods = Lines()  # the readouts' products, before loop A
        for name, r in readout_product.items():
            out = prod_buf[name]
            args[out] = self.outer_empty(1, units, gates)
            args[r.param] = f"np.ascontiguousarray({r.param})"  # (rows only, see __init__)
            early_prods.add(f"_gemm({self.blas}, {self.block(r.dseq, 't')}, {r.param}, {self.block(out)})",
                            product_text[name])
        if not inplace:
            args[dz] = self.outer_empty(self.blocks(p.total), units, gates)  # the slot adjoints of one step
        for name, buf in sorted(keep_buf.items()):
            args[buf] = self.outer_empty(1, units, gates)  # a value of loop A that loop B reads
        prods = Lines()
        for name, src in products.items():
            into = direct.get(name) or product_of_added.get(name)
            out = carried[into] if into else prod_buf[name]
            gemm = "_gemm_add" if name in product_of_added else "_gemm"
            if not into:
                args[out] = self.outer_empty(self.blocks(src.size), units, gates)
            lo, hi = src.direct
            cols = None  # the slot adjoints the product reads: all, or a block of them (its rows strided, no copy)
            if (lo, hi) != (0, p.total):
                a, b = self.blocks(lo), self.blocks(hi)
                cols = f"{a}*{self.U}:{b}*{self.U}" if a else f"0:{b}*{self.U}"
            operand = self.block(target, "t", cols) if inplace else self.block(dz, cols=cols)
            if L.rows:
                args[src.weight] = f"np.ascontiguousarray({src.weight})"
                prods.add(f"{gemm}({self.blas}, {operand}, {src.weight}, {self.block(out)})", f"{name}: one product")
            else:  # W_hᵀ dz, a plain NN product
                w = self.transposed(args, src.weight)
                prods.add(f"{gemm}({self.blas}, {w}, {operand}, {self.block(out)})", f"{name}: one product")
        lines = Lines()
        lines.add("_wide_vectors()")
        lines.extend(self.dims(units, gates))
        body = Lines()
        if outer is not None:
            readout_link = next(l for l in links if l.out in self.readout_of)
            lines.add(f"{readout_size} = {carried[d.gradient_name(readout_link.prev)]}.shape[{axis}]")
            body.extend(outer.loop() + early_prods)
        lines.add(f"for t in range({self.T} - 1, -1, -1):")
        body.extend(first.loop() + prods)
        if second.body:
            body.extend(second.loop())
        if not inplace:
            body.add(f"{self.copy()}({self.block(target, 't')}, {self.block(dz)})",
                     "the step's slot adjoints, where the NumPy loop leaves them")
        lines.extend("    " + line for line in body)
        return lines, list(carried.values())

    # -- what the template needs ----------------------------------------------------------
    def context(self, fwd: dict, bwd: dict) -> dict:
        """The template's ``numba`` entry; ``fwd`` (the NumPy module's forward
        context) without the bias line: the forward loop adds the biases; and
        ``bwd`` with the bias gradients summed by the full-BPTT loop when it sums
        them (truncated BPTT still sums the gates buffer)."""
        kernels = {}
        for sfx in DTYPES:
            forward = self.forward(sfx)
            backward, carried = self.backward(sfx)
            kernels[sfx] = {"forward": list(forward), "backward": list(backward)}
        grads = [self.d.gradient_name(l.prev) for l in self.cell.links]
        helpers = {sfx: helper_lines(self.constants, sfx) for sfx in DTYPES}
        left_out = {self.e.bias_line()}  # the loop adds the biases
        if self.unread() is not None:
            left_out.add(self.e.unfed_line())  # and does not read the sums no input feeds
        fwd = dict(fwd, pre=[line for line in fwd["pre"] if line not in left_out])
        bias_sum = None
        if self.bias_sum:
            got = Names(self.base_taken)("db_summed")  # the loop's sums; None after truncated BPTT
            db, summing = self.e.bias_grad()
            ours = (f"{db} = {summing} if {got} is None else {got}"
                    f"  # {BIAS_GRAD_COMMENT} (by the compiled loop in full BPTT)")
            post = [ours if line == self.e.bias_grad_line() else line for line in bwd["post"]]
            if post.count(ours) != 1:
                raise self.fail("the backward's bias line is not where the compiled loop's sums replace it")
            bwd = dict(bwd, post=post, full_returns=list(bwd["state_grads"]) + [got],
                       buffers=list(bwd["buffers"]) + [f"{got} = None"])
            bias_sum = {"name": self.bias_sum, "zeros": self.sum_zeros(self.p.names["gates"]),
                        "total": self.sum_total(self.bias_sum)}
        return {
            "fwd": fwd,
            "bwd": bwd,
            "numba": {
                "kernels": kernels,
                "helpers": helpers,
                "constants": self.constants.definitions(),
                "exp_polynomial": EXP_POLYNOMIAL,
                "forward_params": list(self.forward_args) + [self.n0, self.n1],
                "forward_call": list(self.forward_args.values()),
                "backward_params": list(self.backward_args) + [self.n0, self.n1],
                "backward_call": list(self.backward_args.values()),
                "batch": self.batch(self.p.names["gates"]),
                "carried": list(zip(carried, grads)),
                "bias_sum": bias_sum,
                "readout": bool(self.p.readouts),
            },
        }

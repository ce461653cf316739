"""The core functions of a fused module, emitted from a :class:`~derive.codegen.plan.Plan`.

Contract. :class:`Emitter` gives the templates the statements of

- ``_forward``: the input products of all steps before the loop, then per
  step each source's product added into its slots, the gates activated in
  place and the cell's other equations;
- ``_bptt``: full backpropagation through time, one adjoint per state carried
  from step to step, every slot's adjoint written into the step's slot of the
  gates buffer (its values are spent by then);
- ``_bptt_truncated``: BPTT(k), the same derived statements on a stack of k
  adjoints per state (one per loss still inside its window, by age: see
  derive.codegen.render's docstring);
  the statements of one backward step are :class:`derive.codegen.step_body.StepBody`'s;
- ``_backward``: what needs every step, after either loop: the weight, bias
  and input gradients, one product each;
- ``_predict``: the loss head's forward on all steps at once.

Every expression in them is the derivation's (common subexpressions shared);
each derived line carries the equation it implements as a comment. A cell
the frame cannot express raises :class:`CodegenError`.
"""

from __future__ import annotations

import re

import sympy as sp

from derive.spec import ops
from derive.engine.backprop import spell_hidden
from derive.codegen.plan import CodegenError, Layout, Plan, Slot, Source
from derive.codegen.products import Products, _linear
from derive.codegen.step_body import StepBody
from derive.codegen.numpy_printer import FUNCTION_NAMES, Lines, assign_into, dim_text, numpy_text, shape_text
from derive.spec.pyprint import equation_text, to_python
from derive.engine.rules import matmul_rule, unbroadcast

_LATER_FREE = tuple(f for f in ops.ARRAY_FUNCTIONS if f is not ops.later)
BIAS_GRAD_COMMENT = "every bias gradient: one sum"


def tagged(eq) -> str:
    return (f"({eq.tag}) " if eq.tag else "") + eq.text


class Emitter:
    """Builds the core of a module (``_forward``, ``_bptt``, ``_backward``, ``_predict``)."""

    def __init__(self, p: Plan):
        self.p = p
        self.d = p.derivation
        self.cell = p.cell
        self.L: Layout = p.layout
        self.n = p.names
        self.T = p.names["T"]
        self.batch = self.cell.batch_dim
        self.of = {s.name: s.of for s in self.d.steps}
        self.nodes = {node.name: node for node in self.d.nodes}
        self.spell = spell_hidden(self.d.nodes)
        self.value_var = {s.name: s.var for s in p.sources if s.role == "value"}
        self.weights = {part.param for s in p.sources for part in s.parts}
        # a sum inside a bigger expression is read by its name (the GRU's W_hn_h_prev)
        self.inner = {s.expr: sp.Symbol(s.name) for s in p.slots if s.kind == "inner"}
        self._analysis = None
        self._backward = None

    # -- small helpers ---------------------------------------------------------------
    def seq_shape(self, size, slots: str | None = None) -> str:
        return self.L.seq_shape(dim_text(size), slots or self.T, self.batch)

    def feat(self, name: str) -> sp.Expr:
        shape = self.d.shapes[name]
        return shape[-1] if self.L.rows else shape[0]

    def fail(self, message: str) -> CodegenError:
        return CodegenError(f"{self.cell.path}: no fused NumPy module: {message}")

    def slot_block(self, view: str, slot: Slot, stacked: bool = False) -> str:
        return self.L.block(view, dim_text(slot.start), dim_text(slot.stop), stacked)

    def stored(self) -> dict[str, str]:
        """Forward values kept for the backward pass -> how step t reads them."""
        p, L, n = self.p, self.L, self.n
        out = {}
        for s in p.slots:
            if s.home is None:
                out[s.name] = L.step(n["gates"], "t", dim_text(s.start), dim_text(s.stop))
        for link in self.cell.links:
            out[link.out] = L.step(p.seq[link.out], "t + 1")
            out[link.prev] = L.step(p.seq[link.out], "t")
        for src in p.sources:
            if src.role == "value":
                out[src.var] = L.step(src.seq, "t")
        for r in p.readouts:
            out[r.operand] = L.step(r.seq, "t")
        for x in self.cell.names("input"):
            out[x] = L.step(p.seq[x], "t")
        return out

    def all_steps(self, name: str) -> str:
        """The all-steps matrix of a per-step array of the cell (after the loops)."""
        p, L, T = self.p, self.L, self.T
        for s in p.slots:
            if s.grad == name:
                return L.all_block(p.names["dgates_all"], dim_text(s.start), dim_text(s.stop))
            if s.name == name and s.home is None:
                return L.all_block(p.names["gates_all"], dim_text(s.start), dim_text(s.stop))
        for link in self.cell.links:
            if name in (link.out, link.prev):
                part = "1:" if name == link.out else ":-1"
                return L.all_steps(p.seq[link.out], dim_text(self.feat(name)), T, self.batch, part)
        if name in self.cell.names("input"):
            return L.all_steps(p.seq[name], dim_text(self.feat(name)), T, self.batch)
        for src in p.sources:
            if src.role == "value" and name in (src.name, src.var):
                return L.all_steps(src.seq, dim_text(src.size), T, self.batch)
        for r in p.readouts:
            if name in (r.operand, r.grad):
                kept, of = (r.seq, r.operand) if name == r.operand else (r.dseq, r.out)
                return L.all_steps(kept, dim_text(self.feat(of)), T, self.batch)
        raise self.fail(f"`{name}` is not kept for after the loop")

    # -- dimensions ------------------------------------------------------------------
    def bind_dims(self, arrays: list[tuple[str, tuple]], want: set[str]) -> list[str]:
        """Statements that read the dimensions in ``want`` off arrays' shapes."""
        lines, bound = [], set()
        for var, shape in arrays:
            found = [(k, s.name) for k, s in enumerate(shape)
                     if isinstance(s, sp.Symbol) and s.name in want and s.name not in bound]
            if found and len(found) == len(shape) > 1 and len({n for _, n in found}) == len(found):
                lines.append(f"{', '.join(n for _, n in found)} = {var}.shape")
            else:
                for k, name in dict((name, k) for k, name in reversed(found)).items():
                    lines.append(f"{k} = {var}.shape[{name}]")
            bound |= {n for _, n in found}
            for k, s in enumerate(shape):  # T + 1 slots
                if isinstance(s, sp.Add) and len(s.free_symbols) == 1:
                    (sym,) = s.free_symbols
                    if sym.name in want and sym.name not in bound:
                        lines.append(f"{sym.name} = {var}.shape[{k}] - {to_python(s - sym)}")
                        bound.add(sym.name)
        missing = want - bound
        if missing:
            raise self.fail(f"cannot read {sorted(missing)} off the arrays")
        return lines

    def stored_shape(self, name: str, slots: int = 0) -> tuple:
        """The symbolic shape of a stored sequence (T, or T + 1 slots)."""
        shape = tuple(self.d.shapes[name])
        T = sp.Symbol(self.T) + slots
        if self.L.rows:
            return (T,) + shape
        return (shape[0], T) + shape[1:]

    def core_dims(self) -> set[str]:
        used = set()
        for s in self.p.slots:
            used |= {x.name for x in (s.start.free_symbols | s.stop.free_symbols)}
        for s in self.p.sources:
            used |= {x.name for x in s.size.free_symbols | s.rows.free_symbols}
        for name in list(self.cell.names("input")) + [l.out for l in self.cell.links]:
            used |= {x.name for x in self.feat(name).free_symbols}
        if self.batch:
            used.add(self.batch)
        return used | {self.T}

    # -- forward ---------------------------------------------------------------------
    def loop_params(self) -> list[str]:
        """Parameters the loops read elementwise (a peephole weight), in spec order."""
        used: set[str] = set()
        for s in self.p.slots:
            used |= {x.name for x in s.extra.free_symbols | s.adjoint.free_symbols}
        for node in self.d.nodes:
            if node.kind == "elementwise" and node.preact_of is None and self.p.slot_named(node.name) is None:
                used |= {x.name for x in node.expr.free_symbols}
        for _, rhs, _ in self.analyse()[0]:
            used |= {x.name for x in rhs.free_symbols}
        return [n for n in self.cell.names("param") if n in used]

    def forward(self) -> dict:
        p, L, n, T, cell = self.p, self.L, self.n, self.T, self.cell
        inputs = [s for s in p.sources if s.role == "input"]
        args = [p.seq[x] for x in cell.names("input")] + [l.prev for l in cell.links] + [s.weight for s in p.sources]
        args += self.loop_params()
        if p.has_bias:
            args.append(n["b"])
        arrays = [(p.seq[x], self.stored_shape(x)) for x in cell.names("input")]
        arrays += [(l.prev, tuple(self.d.shapes[l.prev])) for l in cell.links]
        dims = self.bind_dims(arrays, self.core_dims())
        pre = Lines()
        pre.add(f"dtype = {p.seq[cell.names('input')[0]]}.dtype")
        total = dim_text(p.total)
        for k, s in enumerate(inputs):
            X = L.all_steps(s.seq, dim_text(s.size), T, self.batch)
            product = L.project(s.weight, X)
            why = f"the {s.name} terms of every sum at every step: one product"
            if k == 0 and s.direct == (0, p.total):
                pre.add(f"{n['gates']} = {product}", why)
                continue
            if k == 0:
                pre.add(f"{n['gates']} = np.empty({L.all_shape(total, T, self.batch)}, dtype)")
            if k == 0 and s.direct is not None:  # its block of the buffer: written in place
                block = L.all_block(n["gates"], dim_text(s.direct[0]), dim_text(s.direct[1]))
                pre.add(L.project_into(s.weight, X, block), why)
            else:
                pre.extend(self._scatter(n["gates"], s, product, why, first=k == 0, whole=True))
            if k == 0:
                pre.add(self.unfed_line())
        if p.has_bias:
            pre.add(self.bias_line())
        if L.from_all(n["gates"], total, T, self.batch) != n["gates"]:
            pre.add(f"{n['gates']} = {L.from_all(n['gates'], total, T, self.batch)}")
        for link in cell.links:
            st = p.seq[link.out]
            pre.add(f"{st} = np.empty({self.seq_shape(self.feat(link.out), T + ' + 1')}, dtype)",
                    f"{link.out} of every step; slot 0 holds {link.prev} of the first")
            pre.add(f"{L.step(st, '0')} = {link.prev}")
        for s in p.sources:
            if s.role == "value":
                pre.add(f"{s.seq} = np.empty({self.seq_shape(s.size)}, dtype)", f"{s.var} of every step")
        for r in p.readouts:
            pre.add(f"{r.seq} = np.empty({self.seq_shape(self.feat(r.operand))}, dtype)",
                    f"{r.operand} of every step, for the gradient of {r.param}")
        return {"args": args, "dims": dims, "pre": list(pre), "loop": list(self._forward_loop()),
                "has_values": any(s.role == "value" for s in p.sources) or bool(p.readouts),
                "returns": [p.seq[l.out] for l in cell.links] + [n["gates"]] + [s.seq for s in p.sources if s.role == "value"]
                + [r.seq for r in p.readouts]}

    def _scatter(self, target: str, s: Source, product: str, why: str, first: bool = False, whole: bool = False,
                 stacked: bool = False) -> list[str]:
        """``product`` (the source's stacked terms) added into its slots of ``target``."""
        L = self.L
        block = (lambda v, lo, hi: L.all_block(v, lo, hi)) if whole else (lambda v, lo, hi: L.block(v, lo, hi, stacked))
        lines = Lines()
        op = "=" if first else "+="
        if s.direct is not None:
            lo, hi = s.direct
            whole_slots = (lo, hi) == (0, self.p.total) and not whole
            lines.add(f"{target if whole_slots else block(target, dim_text(lo), dim_text(hi))} {op} {product}", why)
            return lines
        tmp = self.p.fresh("z_" + s.var) if not whole else self.p.fresh(s.var + "_terms")
        lines.add(f"{tmp} = {product}", why + ", its blocks added into their sums below")
        for lo, hi, r0, r1 in s.runs:
            lines.add(f"{block(target, dim_text(lo), dim_text(hi))} {op} {block(tmp, dim_text(r0), dim_text(r1))}")
        return lines

    def _forward_loop(self) -> Lines:
        p, L, n, cell = self.p, self.L, self.n, self.cell
        loop = Lines()
        z = n["z"]
        names = {src.name: src.var for src in p.sources if src.role == "value"}
        for link in cell.links:
            loop.add(f"{link.prev} = {L.step(p.seq[link.out], 't')}")
        reads = set()
        for s in p.slots:
            reads |= {x.name for x in s.extra.free_symbols}
        for node in self.d.nodes:
            if node.kind == "elementwise" and node.preact_of is None and p.slot_named(node.name) is None:
                reads |= {x.name for x in node.expr.free_symbols}
        for x in cell.names("input"):
            if x in reads:
                loop.add(f"{x} = {L.step(p.seq[x], 't')}")
        loop.add(f"{z} = {L.step(n['gates'], 't')}", "every sum's terms of step t (its gate, in place, below)")
        done: set[str] = set()

        def product(src: Source) -> None:
            if src.role == "input" or src.name in done:
                return
            done.add(src.name)
            loop.extend(self._scatter(z, src, L.project(src.weight, src.var), f"the {src.var} terms of their sums: one product"))

        def ready(slot: Slot) -> None:
            """The slot's sum complete: every product in, every inner sum it reads ready."""
            for part in slot.parts:
                product(p.source(part.source))
            ready_inner(slot.extra)

        def ready_inner(expr: sp.Expr) -> None:
            for x in sorted(expr.free_symbols, key=lambda s: s.name):
                inner = p.slot_named(x.name)
                if inner is not None and inner.kind == "inner" and inner.name not in done:
                    done.add(inner.name)
                    ready(inner)
                    loop.add(f"{inner.name} = {self.slot_block(z, inner)}", f"{to_python(self.spell(inner.expr))}")
                    if inner.extra != 0:
                        loop.add(f"np.add({inner.name}, {numpy_text(inner.extra, names)}, out={inner.name})")

        gate_slot = {s.name: s for s in p.slots if s.kind == "gate"}
        runs = self._runs()
        equations = {e.target: e for e in cell.equations}
        outs = {l.out for l in cell.links}
        value_sources = {s.name: s for s in p.sources if s.role == "value"}
        readout_of = {r.out: r for r in p.readouts}
        kept = {r.operand: r for r in p.readouts}
        for node in self.d.nodes:
            if node.name in readout_of:
                r = readout_of[node.name]
                loop.add(f"{r.out} = {L.project_into(r.param, r.operand, L.step(p.seq[r.out], 't + 1'))}",
                         tagged(equations[r.out]) if r.out in equations else None)
                continue
            if node.kind in ("matmul", "concat") or node.preact_of is not None:
                continue
            comment = tagged(equations[node.name]) if node.name in equations else None
            expr = node.expr.xreplace(self.inner)
            if node.name in gate_slot:
                g = gate_slot[node.name]
                block = self.slot_block(z, g)
                run = runs.get(g.name)
                if run is None:  # a gate with a term of its own (a peephole), or kept as a state: its own call
                    ready(g)
                    arg = numpy_text(sp.Symbol("_z_") + g.extra, {"_z_": block, **names})
                    dest = L.step(p.seq[g.home], "t + 1") if g.home else block
                    loop.add(f"{g.name} = {FUNCTION_NAMES[g.act]}({arg}, out={dest})", comment)
                    continue
                if run[0] is g:
                    for member in run:
                        ready(member)
                    if len(run) > 1:  # neighbouring gates of one activation: one call
                        whole = L.block(z, dim_text(run[0].start), dim_text(run[-1].stop))
                        loop.add(f"{FUNCTION_NAMES[g.act]}({whole}, out={whole})",
                                 f"the gates {', '.join(r.name for r in run)} at once")
                if len(run) > 1:
                    loop.add(f"{g.name} = {block}", comment)
                else:
                    loop.add(f"{g.name} = {FUNCTION_NAMES[g.act]}({block}, out={block})", comment)
            elif p.slot_named(node.name) is not None:  # a value the spec names, a sum of products
                s = p.slot_named(node.name)
                ready(s)
                block = self.slot_block(z, s)
                if s.extra != 0:
                    loop.add(f"{s.name} = np.add({block}, {numpy_text(s.extra, names)}, out={block})", comment)
                else:
                    loop.add(f"{s.name} = {block}", comment)
            elif node.name in value_sources:
                src = value_sources[node.name]
                text = comment or f"{src.var} = {to_python(self.spell(node.expr))}"
                ready_inner(expr)
                loop.add(assign_into(src.var, expr, L.step(src.seq, "t"), names), text)
            elif node.hidden:
                raise self.fail(f"`{node.equation}` has an unnamed value the module does not compute")
            elif expr.has(*ops.ARRAY_FUNCTIONS) or any(x.name in self.nodes and self.nodes[x.name].kind == "matmul"
                                                          for x in expr.free_symbols):
                raise self.fail(f"`{node.equation}` is not elementwise, and not a gate")
            elif node.name in outs:
                ready_inner(expr)
                loop.add(assign_into(node.name, expr, L.step(p.seq[node.name], "t + 1"), names), comment)
            elif node.name in kept:  # the operand of a readout, kept for its weight gradient
                ready_inner(expr)
                loop.add(assign_into(node.name, expr, L.step(kept[node.name].seq, "t"), names), comment)
            else:  # a value the spec names, used within the step
                ready_inner(expr)
                loop.add(f"{node.name} = {numpy_text(expr, names)}", comment)
        return loop

    def _runs(self) -> dict[str, list[Slot]]:
        """Neighbouring gates (in the buffer and in the step) of one activation,
        with no other term, fed by inputs and states only: one call each run."""
        p = self.p
        gate_order = [node.preact_of for node in self.d.nodes if node.preact_of is not None]
        runs: dict[str, list[Slot]] = {}
        current: list[Slot] = []
        for s in p.slots:
            plain = (s.kind == "gate" and s.extra == 0 and s.home is None
                     and all(p.source(part.source).role != "value" for part in s.parts))
            if not plain:
                current = []
                continue
            follows = (current and current[-1].act is s.act and current[-1].stop == s.start
                       and gate_order.index(s.name) == gate_order.index(current[-1].name) + 1)
            current = current + [s] if follows else [s]
            for member in current:
                runs[member.name] = current
        return runs

    # -- backward: the derived equations sorted into the frame -----------------------
    def analyse(self):
        """(steps, input gradients, parameter equations): the per-step equations
        with their products folded into the sources' stacked products (checked),
        the input gradients (one product after the loop), the parameter gradients."""
        if self._analysis is not None:
            return self._analysis
        p, d, L = self.p, self.d, self.L
        products = Products(p)
        folded: dict[sp.Symbol, sp.Expr] = {}  # cell adjoints that are sums of products (dconcat)
        steps: list[tuple[str, sp.Expr, str]] = []
        input_grads: list[tuple[str, Source, str]] = []
        params: list[sp.Eq] = []
        for eq in d.backward:
            name, kind = str(eq.lhs), d.kind(str(eq.lhs))
            text = equation_text(eq)
            if kind == "book":
                continue
            if kind == "param":
                params.append(eq)
                continue
            rhs = eq.rhs.xreplace(folded).xreplace(p.spelled)
            if kind == "cell" and self._readout_product(rhs, f"`{text}`"):
                steps.append((name, rhs, text))  # a readout's back product: one product in the step
                continue
            if kind == "cell" and rhs.has(ops.matmul, ops.take) and _linear(rhs, L) is not None:
                folded[sp.Symbol(name)] = rhs
                continue
            if kind == "input":
                input_grads.append((name, products.input_source(rhs, f"`{text}`"), text))
                continue
            rhs = products.fold(rhs, f"`{text}`")
            if rhs.has(*_LATER_FREE):
                raise self.fail(f"`{text}` has array operations the fused frame does not compute")
            steps.append((name, rhs, text))
        inputs = {s.name for _, s, _ in input_grads}
        if inputs != {s.name for s in p.sources if s.role == "input"}:
            raise self.fail("an input's gradient is not one product after the loop")
        self._analysis = (steps, input_grads, params)
        return self._analysis

    def _readout_product(self, rhs: sp.Expr, what: str) -> bool:
        """Whether ``rhs`` is the product of readout adjoints with their weights
        (dm = dh @ W_hr); a product with a readout's weight of another adjoint fails."""
        readouts = {r.param: r for r in self.p.readouts}
        terms = _linear(rhs, self.L) if readouts else None
        if not terms or not any(t.param in readouts for t in terms):
            return False
        for t in terms:
            r = readouts.get(t.param)
            if r is None or t.lo is not None or t.transposed or t.adjoint != sp.Symbol(r.grad):
                raise self.fail(f"{what} is not the product of a readout's adjoint with its weight")
        return True

    def backward(self) -> dict:
        if self._backward is None:
            self._backward = self._build_backward()
        return self._backward

    def _build_backward(self) -> dict:
        p, d, n, T, cell = self.p, self.d, self.n, self.T, self.cell
        steps, input_grads, params = self.analyse()
        grads = self.param_grads(params)
        # The slot adjoints of step t go into the slot of step t's gates once these
        # are spent (less memory: one T-long buffer, not two), unless a parameter
        # gradient reads the gates after the loop.
        reuse = not any(re.search(rf"\b{n['gates_all']}\b", g.text) for g in grads)
        body = self.step_body = StepBody(self, steps, reuse)
        full, stacked = body.lines(stacked=False), body.lines(stacked=True)

        post, results = self._after_loops(grads, input_grads, reuse)
        for link in cell.links:
            results[link.prev] = d.gradient_name(link.prev)
        state_grads = [d.gradient_name(l.prev) for l in cell.links]
        arrays = [(n["ext"], self.stored_shape(cell.loss.on))]
        arrays += [(p.seq[x], self.stored_shape(x)) for x in cell.names("input")]
        arrays += [(p.seq[l.out], self.stored_shape(l.out, 1)) for l in cell.links]
        dims = self.bind_dims(arrays, self.core_dims())
        cache = [p.seq[x] for x in cell.names("input")] + [p.seq[l.out] for l in cell.links] + [n["gates"]]
        cache += [s.seq for s in p.sources if s.role == "value"] + [r.seq for r in p.readouts]
        cache += [s.weight for s in p.sources] + self.loop_params()
        init = [(g, shape_text(self.d.shapes[l.prev])) for g, l in zip(state_grads, cell.links)]
        buffers = [f"{s.dgather} = np.empty({self.seq_shape(s.rows)}, dtype)" for s in p.sources if s.dgather]
        buffers += [f"{r.dseq} = np.empty({self.seq_shape(self.feat(r.out))}, dtype)  # {r.grad} of every step"
                    for r in p.readouts]
        if not reuse:
            buffers.append(f"{n['dgates']} = np.empty_like({n['gates']})")
        # what the loops read: the arrays and dimensions their text names
        text = "\n".join(line.split("  # ")[0] for line in full + stacked)
        candidates = [n["ext"], n["gates"], n["dgates"]] + [p.seq[x] for x in cell.names("input")]
        candidates += [p.seq[l.out] for l in cell.links] + [s.seq for s in p.sources if s.role == "value"]
        candidates += [s.weight for s in p.sources if s.role != "input"] + self.loop_params()
        candidates += [s.dgather for s in p.sources if s.dgather]
        candidates += [r.seq for r in p.readouts] + [r.dseq for r in p.readouts]
        candidates += sorted(self.core_dims() - {T}) + [T]
        loop_args = [c for c in dict.fromkeys(candidates) if c and re.search(rf"\b{re.escape(c)}\b", text)]
        if T not in loop_args:
            loop_args.append(T)
        finals = self.backward_finals()
        return {"dims": dims, "loop": list(full), "stacked": list(stacked),
                "final_pairs": list(zip(state_grads, finals)),
                "truncated_returns": ", ".join(f"{g}.sum(axis=0)" for g in state_grads), "post": list(post), "results": results,
                "full_returns": state_grads,
                "returns": list(dict.fromkeys(results.values())), "state_grads": state_grads, "finals": finals,
                "cache": cache, "init": init, "reuse": reuse, "buffers": buffers, "loop_args": loop_args,
                "scratch": body.scratch(stacked=False), "stacked_scratch": body.scratch(stacked=True)}

    def unfed(self) -> sp.Expr | None:
        """Where the sums that the first input does not feed start in the gates
        buffer (zeroed before the other inputs add theirs), or None when it
        feeds them all."""
        first = next((s for s in self.p.sources if s.role == "input"), None)
        if first is None or first.direct == (0, self.p.total):
            return None
        return first.rows

    def unfed_line(self) -> str:
        """The forward line that zeroes the sums the first input does not feed
        (the compiled twin leaves it out when no other input feeds them: its
        loop does not read those blocks)."""
        block = self.L.all_block(self.n["gates"], dim_text(self.unfed()), dim_text(self.p.total))
        return f"{block} = 0  # the sums no input feeds"

    def bias_grad(self) -> tuple[str, str]:
        """The name of every bias gradient and its sum over all steps (the
        compiled twin's full-BPTT loop sums them itself, see numba_emit)."""
        return self.n["db"], self.L.bias_grad(self.n["dgates_all"])

    def bias_grad_line(self) -> str:
        return "{} = {}  # {}".format(*self.bias_grad(), BIAS_GRAD_COMMENT)

    def bias_line(self) -> str:
        """The forward line that adds every bias to every sum (the compiled twin's
        loop adds them itself and leaves this line out)."""
        return f"{self.n['gates']} += {self.L.bias_add(self.n['b'])}"

    def _after_loops(self, grads, input_grads, reuse: bool) -> tuple[Lines, dict[str, str]]:
        """What needs every step: the weight gradients (one product per source), the
        bias gradients (one sum), the other parameter gradients, the inputs' (one
        product each). Returns the lines and {array: the name of its gradient}."""
        p, L, n, T, cell = self.p, self.L, self.n, self.T, self.cell
        dgates = n["gates"] if reuse else n["dgates"]
        post = Lines()
        dZ = n["dgates_all"]
        post.add(f"{dZ} = {L.all_steps(dgates, dim_text(p.total), T, self.batch)}",
                 "the slot adjoints of all T steps, one matrix")
        for s in p.sources:
            if s.role == "state":
                owner = next(l.out for l in cell.links if l.prev == s.name)
                X = L.all_steps(p.seq[owner], dim_text(s.size), T, self.batch, ":-1")
            else:
                X = L.all_steps(s.seq, dim_text(s.size), T, self.batch)
            whose = ", ".join(dict.fromkeys(b.param for b in s.parts))
            post.add(f"{s.dweight} = {L.weight_grad(self.source_adjoints(s), X)}",
                     f"the {s.var} blocks of d({whose}): one product")
        if p.has_bias:
            post.add(self.bias_grad_line())
        if not reuse:
            post.add(f"{n['gates_all']} = {L.all_steps(n['gates'], dim_text(p.total), T, self.batch)}")
        results: dict[str, str] = {}  # what -> the name of its gradient
        for g in grads:
            post.add(f"{g.name} = {g.text}", g.comment)
            results[g.param] = g.name
        for s in p.sources:
            if s.stack:
                results[s.stack] = s.dweight
        for stack, members in cell.stacks.items():  # a stack the plan keeps in another order
            if stack not in results and all(m in results and m in self.weights for m in members):
                name = p.fresh("d" + stack)
                post.add(f"{name} = np.concatenate([{', '.join(results[m] for m in members)}])")
                results[stack] = name
        for stack, text in self.bias_stacks():
            name = p.fresh("d" + stack)
            post.add(f"{name} = {text}")
            results[stack] = name
        for name, s, text in input_grads:
            x_all = L.back_project(s.weight, self.source_adjoints(s))
            post.add(f"{name} = {L.from_all('(' + x_all + ')', dim_text(s.size), T, self.batch)}", text)
            results[s.name] = name
        return post, results

    def backward_finals(self) -> list[str]:
        """The names the truncated loop gives the final states' gradients."""
        if not hasattr(self, "_final_names"):
            self._final_names = [self.p.fresh("d" + l.out + "_T") for l in self.cell.links]
        return self._final_names

    def source_adjoints(self, s: Source) -> str:
        """The matrix of a source's part adjoints over all steps."""
        p, L = self.p, self.L
        dZ = p.names["dgates_all"]
        if s.direct is None:
            return L.all_steps(s.dgather, dim_text(s.rows), self.T, self.batch)
        lo, hi = s.direct
        return dZ if (lo, hi) == (0, p.total) else L.all_block(dZ, dim_text(lo), dim_text(hi))

    def bias_stacks(self) -> list[tuple[str, str]]:
        """Each bias stack of the notation (PyTorch's bias_ih) as the sum of its members' blocks of db."""
        p, n = self.p, self.n
        slot_of = {b: s for s in p.slots for b in s.biases}
        out, used = [], set()
        for stack, members in self.cell.stacks.items():
            if not members or not all(m in slot_of for m in members):
                continue
            runs: list[list] = []
            for m in members:
                s = slot_of[m]
                if runs and runs[-1][1] == s.start:
                    runs[-1][1] = s.stop
                else:
                    runs.append([s.start, s.stop])
            pieces = [n["db"] if (lo, hi) == (0, p.total) else f"{n['db']}[{dim_text(lo)}:{dim_text(hi)}]"
                      for lo, hi in runs]
            mine = {slot_of[m].name for m in members}
            if len(pieces) > 1:
                text = f"np.concatenate([{', '.join(pieces)}])"
            else:
                text = pieces[0] + (".copy()" if mine & used else "")
            used |= mine
            out.append((stack, text))
        return out

    def param_grads(self, params: list[sp.Eq]) -> list["ParamGrad"]:
        p, n = self.p, self.n
        shapes = self.d.shapes
        out = []
        parts_of: dict[str, list] = {}
        for s in p.sources:
            for part in s.parts:
                parts_of.setdefault(part.param, []).append(part)
        seen_bias: dict[str, int] = {}
        for eq in params:
            name, param = str(eq.lhs), self.of[str(eq.lhs)]
            contribution = (eq.rhs.function if isinstance(eq.rhs, sp.Sum) else eq.rhs).xreplace(p.spelled)
            text = equation_text(eq)
            parts = parts_of.get(param)
            slot = next((s for s in p.slots if param in s.biases), None)
            if parts and contribution == self._weight_rule(parts[0]).xreplace(p.spelled):
                pieces = []
                for part in sorted(parts, key=lambda b: str(b.lo)):
                    s = p.source(part.source)
                    row = sum((q.slot.size for q in s.parts[:s.parts.index(part)]), sp.Integer(0))
                    piece = f"{s.dweight}[{dim_text(row)}:{dim_text(row + part.slot.size)}]"
                    pieces.append(piece + (".T" if part.transposed else ""))
                if len(pieces) == 1:
                    value = pieces[0]
                else:
                    axis = 0 if parts[0].transposed else 1
                    value = f"np.concatenate([{', '.join(pieces)}], axis={axis})"
                out.append(ParamGrad(name, param, value, text))
            elif slot is not None and contribution == unbroadcast(slot.adjoint, shapes[param], shapes[slot.owner]):
                value = f"{n['db']}[{dim_text(slot.start)}:{dim_text(slot.stop)}]"
                k = seen_bias.get(slot.name, 0)
                seen_bias[slot.name] = k + 1
                out.append(ParamGrad(name, param, value + (".copy()" if k else ""), text))
            elif parts or slot is not None:
                raise self.fail(f"`{text}` is not the gradient the fused products give")
            else:
                if contribution.has(ops.matmul, ops.outer, ops.take, ops.concat) and self.L.name == "none":
                    raise self.fail(f"`{text}` cannot be summed over time after the loop")
                try:
                    names = {s.name: self.all_steps(s.name) for s in contribution.free_symbols
                             if s.name not in self.cell.symbols or self.cell.role(s.name) != "param"}
                except CodegenError as exc:
                    raise self.fail(f"`{text}` reads a value the fused loop does not keep for after it "
                                    f"({str(exc).split(': ')[-1]})") from None
                expand = [s.name for s in contribution.free_symbols
                          if s.name in self.cell.symbols and self.cell.role(s.name) == "param"
                          and len(shapes[s.name]) == 1] if self.L.name == "none" else []
                value = self.L.time_sum(numpy_text(contribution, names, expand))
                out.append(ParamGrad(name, param, value, text + "  (on all steps at once)"))
        return out

    def _weight_rule(self, part) -> sp.Expr:
        """The rule table's contribution of the part's product to its weight,
        with the slot's adjoint as the product's, unnamed values written out."""
        for term in matmul_rule(part.node, part.slot.adjoint, self.d.shapes, {}):
            if term.arg == part.param:
                return self.spell(term.contribution)
        raise self.fail(f"no rule for `{part.param}`")

    # -- the loss head's forward (predictions), on all steps at once -------------------
    def predict(self) -> dict | None:
        full = self.p.full
        head = full.cell.head_equations()
        if not head:
            return None
        L, T = self.L, self.T
        params = [n for n in full.cell.names("param") if any(sp.Symbol(n) in e.rhs.free_symbols for e in head)]
        on = [l.out for l in full.cell.links if any(sp.Symbol(l.out) in e.rhs.free_symbols for e in head)]
        names = {o: o + "_all" for o in on}
        lines = Lines()
        for o in on:
            lines.add(f"{o}_all = {L.all_steps(self.p.seq[o], dim_text(self.feat(o)), T, self.batch, '1:')}")
        expand = [n for n in params if len(full.shapes[n]) == 1] if L.name == "none" else []
        results = []
        for e in head:
            lines.add(f"{e.target} = {numpy_text(e.rhs, names, expand)}", tagged(e) + "  (all steps at once)")
            names[e.target] = e.target
            shape = full.shapes[e.target]
            size = shape[-1] if L.rows else shape[0]
            results.append((e.target, L.from_all(e.target, dim_text(size), T, self.batch)))
        dims = sorted({s.name for n in params for d in full.shapes[n] for s in sp.sympify(d).free_symbols} |
                      {self.T} | ({self.batch} if self.batch else set()) |
                      {s.name for o in on for s in self.feat(o).free_symbols})
        arrays = [(self.p.seq[o], self.stored_shape(o, 1)) for o in on] + [(n, tuple(full.shapes[n])) for n in params]
        return {"args": [self.p.seq[o] for o in on] + params, "dims": self.bind_dims(arrays, set(dims)),
                "lines": list(lines), "results": results}


class ParamGrad:
    def __init__(self, name: str, param: str, text: str, comment: str):
        self.name, self.param, self.text, self.comment = name, param, text, comment

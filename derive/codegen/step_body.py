"""The statements of one backward step of a fused module (``_bptt`` and ``_bptt_truncated``).

Contract. :class:`StepBody` takes an :class:`~derive.codegen.emit.Emitter`
(passed in, not imported: the emitter builds the body) and the derived
per-step equations the emitter has sorted into the frame, and gives the
lines of one backward step: the stored forward values read, the derived
adjoints (common subexpressions shared) each written into its block of the
step's slot, one product per source, and, in the truncated loop, the same
statements on stacks of k adjoints by age. Every expression is the
derivation's; each derived line carries its equation as a comment.
"""

from __future__ import annotations

import sympy as sp

from derive.spec import ops
from derive.codegen.cse import shared_subexpressions
from derive.codegen.plan import Slot, Source
from derive.codegen.numpy_printer import Lines, assign_into, dim_text, numpy_text
from derive.spec.pyprint import to_python


class StepBody:
    """The statements of one backward step, for the full loop and for the
    truncated one (``stacked``: every adjoint carries a leading axis of ages)."""

    def __init__(self, e, steps, reuse: bool):
        self.e, self.p, self.L, self.n = e, e.p, e.L, e.n
        self.reuse = reuse
        d = e.d
        self.glue = [s for s in steps if d.kind(s[0]) == "glue"]
        self.body = [s for s in steps if d.kind(s[0]) != "glue"]
        # slot adjoints the derivation does not name (the GRU's dz_n * r) are written too
        self.unnamed = [s for s in self.p.slots if s.grad is None]
        self.unnamed_var = {s.name: self.p.fresh("d" + s.name) for s in self.unnamed}
        exprs = [rhs for _, rhs, _ in self.body] + [s.adjoint for s in self.unnamed]
        self.pairs, reduced = shared_subexpressions(exprs, self.p.fresh)
        self.reduced = reduced[:len(self.body)]
        self.unnamed_reduced = dict(zip([s.name for s in self.unnamed], reduced[len(self.body):]))
        self.product_of = {s.product: s for s in self.p.sources if s.role != "input"}
        self.slot_of_grad = {s.grad: s for s in self.p.slots if s.grad}
        self.inline = self._inlined_products()

    def _inlined_products(self) -> dict[str, str]:
        """Products used once, as a term of a state gradient: written in that statement."""
        counts: dict[str, int] = {}
        for expr in list(self.reduced) + [v for _, v in self.pairs] + list(self.unnamed_reduced.values()):
            for s in expr.free_symbols:
                counts[s.name] = counts.get(s.name, 0) + 1
        out = {}
        for (name, _, _), rhs in zip(self.body, self.reduced):
            for term in sp.Add.make_args(rhs):
                if isinstance(term, sp.Symbol) and term.name in self.product_of and counts[term.name] == 1:
                    out[term.name] = name
        return out

    def _needed(self) -> tuple[list[str], list]:
        """Stored values the step reads, and values it recomputes (in graph order)."""
        e, p = self.e, self.p
        stored = e.stored()
        symbols = set()
        for _, rhs, _ in self.glue + self.body:
            symbols |= {s.name for s in rhs.free_symbols}
        for s in p.slots:
            symbols |= {x.name for x in s.adjoint.free_symbols}
        recompute = []
        for node in reversed(e.d.nodes):  # a value the step neither stores nor receives: its forward equation again
            if node.name in symbols and node.name not in stored and node.kind == "elementwise" and not node.hidden:
                if p.slot_named(node.name) is not None or node.preact_of is not None:
                    continue
                expr = node.expr.xreplace(e.inner)
                if any(x.name in e.nodes and e.nodes[x.name].hidden for x in expr.free_symbols):
                    raise e.fail(f"`{node.equation}` cannot be computed again in the backward step")
                recompute.append((node.name, expr))
                symbols |= {s.name for s in expr.free_symbols}
        return [k for k in stored if k in symbols], list(reversed(recompute))

    def scratch(self, stacked: bool) -> list[str]:
        n = self.n
        step = self.L.step(n["gates"], "0")
        if not stacked:
            return [f"{n['dz']} = np.empty_like({step})"] if self.reuse else []
        lines = [f"{n['dz']} = np.empty((k,) + {step}.shape, {n['gates']}.dtype)"]
        for s in self.p.sources:
            if s.dgather:
                lines.append(f"{s.dgather}_t = np.empty((k,) + {self.L.step(s.dgather, '0')}.shape, {n['gates']}.dtype)")
        return lines

    def lines(self, stacked: bool) -> Lines:
        e, p, L, n, d = self.e, self.p, self.L, self.n, self.e.d
        opts = {"feature_from_end": L.feature_from_end} if stacked else {}
        loop = Lines()
        stored = e.stored()
        reads, recompute = self._needed()
        for name in reads:
            loop.add(f"{name} = {stored[name]}")
        ext = self.e.cell.loss.external
        symbols = {s.name for _, rhs, _ in self.glue + self.body for s in rhs.free_symbols}
        if ext in symbols:
            loop.add(f"{ext} = {L.step(n['ext'], 't')}")
        for name, expr in recompute:
            loop.add(f"{name} = {numpy_text(expr)}", f"{name} = {to_python(expr)}, again")
        if not self.reuse and not stacked:
            loop.add(f"{n['dz']} = {L.step(n['dgates'], 't')}", "the slot adjoints of step t go here")
        finals = dict(zip([d.gradient_name(l.prev) for l in e.cell.links], e.backward_finals()))
        for name, rhs, text in self.glue:
            if not stacked:
                loop.add(f"{name} = {numpy_text(rhs)}", text)
                continue
            carried = [a.args[0] for a in sp.Add.make_args(rhs) if isinstance(a, ops.later)]
            fresh = sp.Add(*[a for a in sp.Add.make_args(rhs) if not isinstance(a, ops.later)])
            if len(carried) != 1 or not isinstance(carried[0], sp.Symbol):
                raise e.fail(f"`{text}` is not a gluing equation of one carried adjoint")
            args = [carried[0].name] + ([numpy_text(fresh)] if fresh != 0 else []) + [finals[carried[0].name]]
            loop.add(f"{name} = _aged({', '.join(args)})", text)
        if stacked and self.glue:
            loop.add(" = ".join(finals.values()) + " = None", "the final states' gradients joined the last step's loss")
        for r in p.readouts:  # a readout's adjoint, kept for its weight gradient after the loop
            if stacked:
                loop.add(f"np.sum({r.grad}, axis=0, out={L.step(r.dseq, 't')})", f"every loss's {r.grad} of step t, summed")
            else:
                loop.add(f"{L.step(r.dseq, 't')} = {r.grad}", f"{r.grad} of step t, for d{r.param} after the loop")

        emitted: set[str] = set()
        temps = dict(self.pairs)
        dz = n["dz"]

        # a slot adjoint that is a shared temporary is computed straight into its block
        temp_slot = {v.name: self.p.slot_named(k) for k, v in self.unnamed_reduced.items() if isinstance(v, sp.Symbol)
                     and v.name in dict(self.pairs)}

        def ensure(expr: sp.Expr) -> None:
            for s in sorted(expr.free_symbols, key=lambda s: s.name):
                if s.name in temps and s.name not in emitted:
                    ensure(temps[s.name])
                    emitted.add(s.name)
                    slot = temp_slot.get(s.name)
                    if slot is not None:
                        emitted.add(slot.name)
                        loop.add(assign_into(s.name, temps[s.name], e.slot_block(dz, slot, stacked), **opts),
                                 f"the adjoint of {to_python(e.spell(slot.expr))}: {to_python(slot.adjoint)}")
                    else:
                        loop.add(f"{s.name} = {numpy_text(temps[s.name], **opts)}")
                elif s.name in self.product_of and s.name not in emitted and s.name not in self.inline:
                    emitted.add(s.name)
                    loop.add(f"{s.name} = {product(self.product_of[s.name])}")

        def slot_adjoint(slot: Slot) -> None:
            if slot.grad is not None:
                if slot.grad not in emitted:
                    raise e.fail(f"the product of {slot.grad} is needed before {slot.grad} is computed")
                return
            if slot.name in emitted:
                return
            value = self.unnamed_reduced[slot.name]
            ensure(value)
            if slot.name in emitted:  # the shared temporary it is went into its block
                return
            emitted.add(slot.name)
            loop.add(assign_into(self.unnamed_var[slot.name], value, e.slot_block(dz, slot, stacked), **opts),
                     f"the adjoint of {to_python(e.spell(slot.expr))}: {to_python(slot.adjoint)}")

        def product(src: Source) -> str:
            """The source's adjoint from its slots' adjoints: one product (its slots gathered first if apart)."""
            for part in src.parts:
                slot_adjoint(part.slot)
            if src.direct is not None:
                lo, hi = src.direct
                dZ = dz if (lo, hi) == (0, p.total) else L.block(dz, dim_text(lo), dim_text(hi), stacked)
            else:
                dZ = f"{src.dgather}_t"
                if not stacked:
                    loop.add(f"{dZ} = {L.step(src.dgather, 't')}", f"the adjoints of the {src.var} terms, gathered")
                for lo, hi, r0, r1 in src.runs:
                    loop.add(f"{L.block(dZ, dim_text(r0), dim_text(r1), stacked)} = "
                             f"{L.block(dz, dim_text(lo), dim_text(hi), stacked)}")
            return L.back_project(src.weight, dZ, stacked)

        for (name, _, text), rhs in zip(self.body, self.reduced):
            ensure(rhs)
            if name in self.slot_of_grad:
                slot = self.slot_of_grad[name]
                loop.add(assign_into(name, rhs, e.slot_block(dz, slot, stacked), **opts), text)
            else:
                inline = [s for s in sp.Add.make_args(rhs) if isinstance(s, sp.Symbol) and self.inline.get(s.name) == name]
                if inline:
                    rest = rhs - inline[0]
                    text_rhs = product(self.product_of[inline[0].name])
                    loop.add(f"{name} = {text_rhs}" + ("" if rest == 0 else f" + {numpy_text(rest, **opts)}"), text)
                else:
                    loop.add(f"{name} = {numpy_text(rhs, **opts)}", text)
            emitted.add(name)
        for slot in self.unnamed:  # every slot's adjoint is kept for the products after the loop
            slot_adjoint(slot)
        for src in p.sources:
            if src.role != "input" and src.product not in emitted and src.product not in self.inline:
                raise e.fail(f"the adjoint of `{src.var}` is never used")
        gates_t = L.step(n["gates"], "t")
        if stacked:
            target = gates_t if self.reuse else L.step(n["dgates"], "t")
            loop.add(f"np.sum({dz}, axis=0, out={target})", "every loss's adjoints of step t, summed")
            for s in p.sources:
                if s.dgather:
                    loop.add(f"np.sum({s.dgather}_t, axis=0, out={L.step(s.dgather, 't')})")
        elif self.reuse:
            loop.add(f"{gates_t} = {dz}", "step t's gates are spent: their slot keeps their adjoints")
        return loop

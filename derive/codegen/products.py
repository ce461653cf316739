"""The weight products of the derived adjoints, folded into the plan's stacked products and checked.

A state's or input's gradient contains products ``Wᵀ @ adjoint`` (or
``adjoint @ W`` with the batch in rows); :class:`Products` recognises each as
one block of a source's stacked weight matrix and checks that the derived
equations use exactly the plan's stacks, so the emitted module can do one
product per source and step. Anything else is a :class:`CodegenError`.
"""


from dataclasses import dataclass

import sympy as sp

from derive.spec import ops
from derive.spec.pyprint import to_python
from derive.codegen.plan import CodegenError, Layout, Part, Plan, Source



@dataclass(frozen=True)
class LinearTerm:
    adjoint: sp.Expr
    param: str
    lo: sp.Expr | None
    hi: sp.Expr | None
    transposed: bool


def _linear(expr: sp.Expr, layout: Layout, lo=None, hi=None) -> list[LinearTerm] | None:
    """``expr`` as weight products ``Wᵀ @ adjoint`` (W restricted to its input
    features lo:hi), or None when it is not such a sum."""
    axis = 1 if layout.rows else 0
    if isinstance(expr, sp.Add):
        out = []
        for term in expr.args:
            part = _linear(term, layout, lo, hi)
            if part is None:
                return None
            out.extend(part)
        return out
    if isinstance(expr, ops.take) and int(expr.args[1]) == axis:
        s, e = expr.args[2], expr.args[3]
        return _linear(expr.args[0], layout, s if lo is None else lo + s, e if lo is None else lo + e)
    if isinstance(expr, ops.matmul):
        a, b = expr.args
        if layout.rows:
            g, w = a, b
            transposed = isinstance(w, ops.transpose)
            w = w.args[0] if transposed else w
        elif isinstance(a, ops.transpose):
            w, g, transposed = a.args[0], b, False
        else:
            return None
        if not isinstance(w, sp.Symbol) or g.has(*ops.ARRAY_FUNCTIONS):
            return None
        return [LinearTerm(g, w.name, lo, hi, transposed)]
    return None


def _is_linear_atom(expr) -> bool:
    return isinstance(expr, (ops.matmul, ops.take))


class Products:
    """Folds the weight products of the derived adjoints into the sources'
    stacked products, checking each against the plan."""

    def __init__(self, p: Plan):
        self.p = p
        shapes = p.derivation.shapes
        self.part_of: dict[tuple, Part] = {}
        for s in p.sources:
            for part in s.parts:
                self.part_of[part.key] = part
        self.shapes = shapes
        self.symbol = {s.name: sp.Symbol(s.product) for s in p.sources if s.role != "input"}

    def _key(self, term: LinearTerm) -> tuple:
        lo, hi = term.lo, term.hi
        if lo is None:
            lo, hi = sp.Integer(0), self.shapes[term.param][0 if term.transposed else 1]
        return (term.param, str(lo), str(hi), term.transposed)

    def by_source(self, terms: list[LinearTerm], what: str) -> dict[str, list[LinearTerm]]:
        out: dict[str, list] = {}
        for term in terms:
            part = self.part_of.get(self._key(term))
            if part is None:
                raise CodegenError(f"{self.p.cell.path}: no fused NumPy module: {what} has a product "
                                   f"({to_python(term.adjoint)} through {term.param}) the plan does not compute")
            if sp.expand(term.adjoint - part.slot.adjoint) != 0:
                raise CodegenError(f"{self.p.cell.path}: no fused NumPy module: in {what} the product with {term.param} "
                                   f"carries {to_python(term.adjoint)}, the plan {to_python(part.slot.adjoint)}")
            out.setdefault(part.source, []).append(term)
        for name, found in out.items():
            if len(found) != len(self.p.source(name).parts):
                raise CodegenError(f"{self.p.cell.path}: no fused NumPy module: {what} holds only some of the "
                                   f"products of `{name}`")
        return out

    def fold(self, expr: sp.Expr, what: str) -> sp.Expr:
        """``expr`` with every sum of a source's products replaced by the symbol
        of its stacked product (a state's or a value's; an input's products
        must stand alone, see :meth:`input_source`)."""
        if isinstance(expr, sp.Add) or _is_linear_atom(expr):
            args = sp.Add.make_args(expr)
            linear = [a for a in args if _is_linear_atom(a)]
            rest = [a for a in args if not _is_linear_atom(a)]
            terms = []
            for a in linear:
                found = _linear(a, self.p.layout)
                if found is None:
                    raise CodegenError(f"{self.p.cell.path}: no fused NumPy module: {what}: "
                                       f"`{to_python(a)}` is not a weight product of adjoints")
                terms.extend(found)
            folded = [self.fold(r, what) for r in rest]
            for name in self.by_source(terms, what):
                if name not in self.symbol:
                    raise CodegenError(f"{self.p.cell.path}: no fused NumPy module: {what} needs the input "
                                       f"`{name}`'s products inside the step")
                folded.append(self.symbol[name])
            return sp.Add(*folded)
        if expr.args and expr.has(ops.matmul, ops.take):
            return expr.func(*[self.fold(a, what) for a in expr.args])
        return expr

    def input_source(self, expr: sp.Expr, what: str) -> Source:
        """The input whose stacked products are exactly ``expr``."""
        terms = _linear(expr, self.p.layout)
        if terms is None:
            raise CodegenError(f"{self.p.cell.path}: no fused NumPy module: {what} is not a sum of weight products")
        found = self.by_source(terms, what)
        if len(found) != 1 or self.p.source(next(iter(found))).role != "input":
            raise CodegenError(f"{self.p.cell.path}: no fused NumPy module: {what} is not one input's products")
        return self.p.source(next(iter(found)))

"""The classic mistakes, made on purpose, and repairs of formulas of the wrong shape.

:func:`mutations` lists the engine's formula of a quantity with each classic
mistake made (an activation derivative left out or written wrong, a term of
the carried state dropped, a weight untransposed, ...), so that a wrong number
can be matched to its cause (:mod:`derive.verifier.formula` and
:mod:`derive.verifier.function` both use it). :func:`repairs` proposes edits that
make a formula of the wrong *shape* right: weights without their block of
columns, a slice along the wrong axis, a transposed result.
"""


from __future__ import annotations


import sympy as sp

from derive.spec import functions, ops
from derive.verifier.terms import _py, derivative_of, expand, is_elementwise, reference


# Each slice repaired is a candidate that is shaped, printed and judged, each in work
# that grows with the formula: with more slices than this (a hostile `x[0:2][0:2]...`,
# 99 deep, took 5 s of CPU) no slice repair is proposed.
MAX_SLICE_REPAIRS = 8


def repairs(ctx, name: str, F: sp.Expr) -> list[tuple[str, str, sp.Expr]]:
    """(label, description, repaired formula) candidates, most specific first."""
    out = []
    body = F.function if isinstance(F, sp.Sum) else F
    wrap = (lambda e: sp.Sum(e, *F.limits)) if isinstance(F, sp.Sum) else (lambda e: e)
    params = [s for s in body.free_symbols if ctx.role(s.name) == "param" and len(ctx.shapes[s.name]) == 2]
    # 1. weights used whole where the engine uses a block of their columns
    blocks = ctx.param_blocks(name)
    bare = {}
    for p in params:
        held = {a: sp.Dummy() for a in body.atoms(ops.take) if a.args[0] == p}
        if body.xreplace(held).has(p) and p.name in blocks:
            bare[p] = blocks[p.name]
    if bare:
        repl = {p: ops.take(p, sp.Integer(ax), a, b) for p, (ax, a, b) in bare.items()}
        held = {a: sp.Dummy() for a in body.atoms(ops.take)}
        fixed = body.xreplace(held).xreplace(repl).xreplace({v: k for k, v in held.items()})
        desc = ", ".join(f"`{_py(v)}` for `{p.name}`" for p, v in repl.items())
        out.append(("missing_slice", f"the weights act on the whole concatenation; this gradient needs only their "
                    f"block of columns: {desc}", wrap(fixed)))
    # 2. a slice along the wrong axis
    takes = body.atoms(ops.take)
    takes = [a for a in takes if len(ctx.shape_or_none(a.args[0]) or ()) == 2] if len(takes) <= MAX_SLICE_REPAIRS else []

    def swap(tk, to_end):
        x, axis, a, b = tk.args
        shape = ctx.shape_or_none(x)
        if to_end and shape is not None and sp.expand(b - shape[int(axis)]) == 0:
            b = shape[1 - int(axis)]  # an open end (`W[a:, :]`) runs to the end of the other axis
        return ops.take(x, sp.Integer(1 - int(axis)), a, b)

    for to_end in (False, True):
        if len(takes) > 1:
            swapped = {tk: swap(tk, to_end) for tk in takes}
            out.append(("slice_axis", "every slice is along the wrong axis: " + ", ".join(
                f"`{_py(k)}` should be `{_py(v)}`" for k, v in swapped.items()), wrap(body.xreplace(swapped))))
        for tk in takes:
            x, axis, a, b = tk.args
            other = swap(tk, to_end)
            out.append(("slice_axis", f"`{_py(tk)}` slices along axis {int(axis)} "
                        f"({'rows' if int(axis) == 0 else 'columns'}); the block that acts on this part is along axis "
                        f"{1 - int(axis)}: `{_py(other)}`", wrap(body.xreplace({tk: other}))))
    # 3. the whole result transposed
    out.append(("transposed", "the result is transposed", wrap(ops.transpose(body))))
    # 4. each weight transposed
    for p in params:
        held = {a: sp.Dummy() for a in body.atoms(ops.transpose) if a.args[0] == p}
        t = body.xreplace({p: ops.transpose(p)})
        out.append(("transposed", f"`{p.name}` is used untransposed where its transpose belongs, or the reverse", wrap(t)))
    return out


def mutations(ctx, name: str) -> list[tuple[str, str, sp.Expr]]:
    """(label, description, mutated right side) of the engine's ``name``, in
    forward values and the gradients reaching the cell."""
    R = expand(ctx, reference(ctx, name), set(ctx.derivation.cell_inputs))
    out: list[tuple[str, str, sp.Expr]] = []
    # gradients left out
    for u in sorted({s for s in R.free_symbols if s.name in ctx.derivation.cell_inputs}, key=str):
        out.append((ctx.missing_term_label(u) or "missing_term", f"leaves out the {u.name} term", R.xreplace({u: 0})))
    for a in R.atoms(ops.later):
        out.append(("no_chaining", f"leaves out {_py(a)}, the term carried from step t+1", R.xreplace({a: 0})))
    # a state's direct path (GRU's dh*z in dh_prev): an elementwise term in a gradient reaching the cell
    if ctx.kind(name) == "state" and isinstance(R, sp.Add):
        for term in R.args:
            inputs = [s for s in term.free_symbols if s.name in ctx.derivation.cell_inputs]
            if is_elementwise(term) and len(inputs) == 1 and ctx.direct_path_note(name, inputs[0]):
                out.append(("direct_path", f"leaves out the direct term {_py(term)}", R - term))
    # activation derivatives
    acts = ctx.gate_acts
    for node in sp.preorder_traversal(R):
        if not isinstance(node, sp.Mul):
            continue
        args = list(node.args)
        for gate, act in acts.items():
            g = sp.Symbol(gate)
            dfac = list(sp.Mul.make_args(derivative_of(gate, act)))
            if not all(f in args for f in dfac):
                continue
            rest = [a for a in args if a not in dfac]
            out.append(("missing_derivative", f"leaves out the derivative of {act} in {gate}",
                        R.xreplace({node: sp.Mul(*rest)})))
            twice = sp.Mul(*[f.xreplace({g: _ACT_FN[act](g)}) for f in dfac])
            out.append(("activated_twice", f"applies the derivative of {act} to {gate}, which is already activated",
                        R.xreplace({node: sp.Mul(*rest) * twice})))
            if act == "tanh":  # tanh' written 1 - h: the square forgotten
                out.append(("wrong_derivative", f"writes the derivative of tanh in {gate} as {_py(1 - g)}",
                            R.xreplace({node: sp.Mul(*rest) * (1 - g)})))
            # a parenthesis left out is a derivative on one of the summed *gradient* terms
            # (coursera's dc_next*... + da_next*...), not on a part of a forward value (GRU's 1 - z)
            sums = [a for a in rest if isinstance(a, sp.Add) and _has_gradient(a, ctx)]
            for s in sums:
                others = [a for a in rest if a is not s]
                for k, term in enumerate(s.args):
                    moved = sp.Add(*[t * sp.Mul(*dfac) if i == k else t for i, t in enumerate(s.args)])
                    out.append(("parenthesis", f"multiplies only the term {_py(term)} by the derivative of {act} in {gate}",
                                R.xreplace({node: sp.Mul(*others) * moved})))
    # time index
    for a, b in ctx.time_pairs():
        for x, y in ((a, b), (b, a)):
            if R.has(sp.Symbol(x)):
                out.append(("time_index", f"uses {y} where {x} belongs", R.xreplace({sp.Symbol(x): sp.Symbol(y)})))
    out.append(("sign", "has the opposite sign", -R))
    return [(label, desc, prune_zeros(e)) for label, desc, e in out]


_ACT_FN = {row.name: row.function for row in functions.FUNCTIONS.values()}


def _has_gradient(e: sp.Expr, ctx) -> bool:
    inputs = set(ctx.derivation.cell_inputs)
    return bool(e.atoms(ops.later)) or any(s.name in inputs for s in e.free_symbols)


def prune_zeros(e: sp.Expr) -> sp.Expr:
    """Array ops of a zero are zero: ``Wo.T @ 0`` -> 0 (after a gradient is set
    to zero in a mutation)."""
    if not e.args or e.is_Atom:
        return e
    args = [prune_zeros(a) for a in e.args]
    if isinstance(e, (ops.matmul, ops.outer)) and any(a == 0 for a in args):
        return sp.Integer(0)
    if isinstance(e, (ops.transpose, ops.take, ops.pick, ops.batch_sum, ops.later)) and args[0] == 0:
        return sp.Integer(0)
    if isinstance(e, sp.Sum) and args[0] == 0:
        return sp.Integer(0)
    if isinstance(e, ops.concat) and all(a == 0 for a in args[1:]):
        return sp.Integer(0)
    return e.func(*args) if tuple(args) != e.args else e

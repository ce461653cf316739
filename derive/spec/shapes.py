"""Shapes of array expressions: a spec's equations and a user's formulas (no NumPy here).

Contract. :func:`infer_shape` infers the symbolic shape of a cell equation's
right side (what :mod:`derive.spec.cell` checks a spec with and the engine
sizes its adjoints with) and raises :class:`ShapeError` naming the operands as
the user spells them; :func:`broadcast` is NumPy's rule on symbolic
dimensions. :func:`shape_of` infers the symbolic shape of any array expression of
:mod:`derive.spec.ops` (``later``, ``Sum``, ``outer``, ``batch_sum`` and ``basis``
included) and raises :class:`ShapeError` naming the operands;
:func:`all_shapes` gives the shape of every name of a derivation: its symbols,
its sizes (scalars) and every backward quantity (a parameter gradient has the
shape of its parameter). :class:`FormulaShapeError` is a user's formula whose
arrays do not fit, with the column of the fault.
"""

from __future__ import annotations

import functools
from typing import Mapping

import sympy as sp

from derive.spec import functions, ops

Shape = tuple[sp.Expr, ...]


class ShapeError(Exception):
    pass


def fmt_shape(shape: Shape) -> str:
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(d) for d in shape) + ")"


@functools.lru_cache(maxsize=4096)
def same_dim(a: sp.Expr, b: sp.Expr) -> bool:
    # remembered: shapes repeat the same few dimensions, and expand() is slow
    return a == b or sp.expand(a - b) == 0


def same_shape(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(same_dim(x, y) for x, y in zip(a, b))


def broadcast(a: Shape, b: Shape, what: str) -> Shape:
    """NumPy broadcasting on symbolic dimensions."""
    n = max(len(a), len(b))
    a = (sp.Integer(1),) * (n - len(a)) + tuple(a)
    b = (sp.Integer(1),) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if same_dim(x, y) or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(f"shape mismatch in {what}: {fmt_shape(a)} and {fmt_shape(b)} do not broadcast")
    return tuple(out)


def _text(expr: sp.Expr) -> str:
    """An expression as the user spells it (``concat(f * h_prev, x)``, not the
    internal ``concat(0, f*h_prev, x)``)."""
    from derive.spec.pyprint import to_python

    try:
        return to_python(expr)
    except Exception:  # a printer gap must never hide the real message
        return sp.sstr(expr)


def infer_shape(expr: sp.Expr, shapes: Mapping[str, Shape]) -> Shape:
    """The shape of an array expression; raises ShapeError with the operands."""
    if isinstance(expr, sp.Symbol):
        if str(expr) not in shapes:
            raise ShapeError(f"`{expr}` is declared without a role, and no equation defines it")
        return shapes[str(expr)]
    if expr.is_Number:
        return ()
    if isinstance(expr, (sp.Add, sp.Mul)):
        out: Shape = ()
        for arg in expr.args:
            out = broadcast(out, infer_shape(arg, shapes), f"`{_text(expr)}`")
        return out
    if isinstance(expr, sp.Pow):
        return infer_shape(expr.base, shapes)
    if expr.func in functions.BY_CLASS:
        out = ()
        for arg in expr.args:
            out = broadcast(out, infer_shape(arg, shapes), f"`{sp.sstr(expr)}`")
        return out
    if isinstance(expr, ops.matmul):
        a, b = (infer_shape(x, shapes) for x in expr.args)
        if not a or not b:
            raise ShapeError("`@` needs arrays on both sides")
        inner_a = a[-1]
        inner_b = b[0] if len(b) == 1 else b[-2]
        if not same_dim(inner_a, inner_b):
            left, right = (_text(x) for x in expr.args)
            raise ShapeError(
                f"shape mismatch in `{left} @ {right}`: {left} is {fmt_shape(a)} and {right} is "
                f"{fmt_shape(b)}; the inner dimensions {inner_a} and {inner_b} differ"
            )
        return tuple(a[:-1]) + (tuple(b[1:]) if len(b) == 1 else (b[-1],))
    if isinstance(expr, ops.transpose):
        return tuple(reversed(infer_shape(expr.args[0], shapes)))
    if isinstance(expr, ops.concat):
        axis = int(expr.args[0])
        parts = [infer_shape(p, shapes) for p in expr.args[1:]]
        if any(len(p) != len(parts[0]) for p in parts):
            raise ShapeError("concat: the parts have different numbers of axes")
        ax = min(axis, len(parts[0]) - 1)
        for p in parts[1:]:
            for i, (x, y) in enumerate(zip(parts[0], p)):
                if i != ax and not same_dim(x, y):
                    raise ShapeError(
                        f"concat: parts of shapes {fmt_shape(parts[0])} and {fmt_shape(p)} differ off axis {ax}"
                    )
        total = sum((p[ax] for p in parts), sp.Integer(0))
        return tuple(total if i == ax else d for i, d in enumerate(parts[0]))
    if isinstance(expr, ops.softmax):
        return infer_shape(expr.args[0], shapes)
    if isinstance(expr, ops.take):
        x, axis, start, stop = expr.args
        shape = list(infer_shape(x, shapes))
        ax = min(int(axis), len(shape) - 1)
        shape[ax] = stop - start
        return tuple(shape)
    if isinstance(expr, ops.pick):
        x, axis, _k = expr.args
        shape = list(infer_shape(x, shapes))
        ax = min(int(axis), len(shape) - 1)
        shape[ax] = sp.Integer(1)
        return tuple(shape)
    raise ShapeError(f"cannot infer the shape of `{_text(expr)}`")


class FormulaShapeError(Exception):
    """A formula's arrays do not fit together; ``col`` points into ``text``."""

    def __init__(self, message: str, text: str = "", col: int | None = None):
        self.message = message
        self.text = text
        self.col = col
        super().__init__(message)

    def render(self) -> str:
        if self.col is None or not self.text or "\n" in self.text or len(self.text) > 400:
            return self.message
        return f"{self.message}\n    {self.text}\n    {' ' * self.col}^"



# ---------------------------------------------------------------------------
# shapes


def shape_of(expr: sp.Expr, shapes: Mapping[str, Shape], memo: dict | None = None) -> Shape:
    """The symbolic shape of ``expr``; ShapeError if the operands do not fit."""
    if memo is None:
        memo = {}

    def walk(e):
        hit = memo.get(e)
        if hit is not None:
            return hit
        out = _shape(e, walk, shapes)
        memo[e] = out
        return out

    return walk(expr)


def _shape(e, walk, shapes) -> Shape:
    if isinstance(e, sp.Symbol):
        try:
            return tuple(shapes[e.name])
        except KeyError:
            raise ShapeError(f"`{e.name}` has no known shape") from None
    if e.is_Number or (e.is_number and not e.free_symbols):  # zoo (a division by zero) included
        return ()
    if isinstance(e, (sp.Add, sp.Mul)):
        return _broadcast_args(e, [walk(arg) for arg in e.args])
    if isinstance(e, sp.Pow):
        if walk(e.exp) != ():
            raise ShapeError(f"the exponent of `{_text(e)}` must be a number")
        return walk(e.base)
    if e.func in functions.BY_CLASS:
        return _broadcast_args(e, [walk(arg) for arg in e.args])
    if isinstance(e, ops.matmul):
        a, b = (walk(x) for x in e.args)
        if not a or not b or not same_dim(a[-1], b[0] if len(b) == 1 else b[-2]):
            left, right = (_text(x) for x in e.args)
        if not a or not b:
            raise ShapeError(f"`{left} @ {right}`: `@` needs arrays on both sides")
        inner_a = a[-1]
        inner_b = b[0] if len(b) == 1 else b[-2]
        if not same_dim(inner_a, inner_b):
            raise ShapeError(
                f"shape mismatch in `{left} @ {right}`: {left} is {fmt_shape(a)} and {right} is "
                f"{fmt_shape(b)}; the inner dimensions {inner_a} and {inner_b} differ"
            )
        return tuple(a[:-1]) + (tuple(b[1:]) if len(b) == 1 else (b[-1],))
    if isinstance(e, ops.outer):
        a, b = (walk(x) for x in e.args)
        if len(a) != 1 or len(b) != 1:
            raise ShapeError(f"`np.outer({_text(e.args[0])}, {_text(e.args[1])})` needs two vectors")
        return (a[0], b[0])
    if isinstance(e, ops.transpose):
        return tuple(reversed(walk(e.args[0])))
    if isinstance(e, ops.concat):
        axis = int(e.args[0])
        parts = [walk(p) for p in e.args[1:]]
        if not parts or any(len(p) != len(parts[0]) or not p for p in parts):
            raise ShapeError("concat: the parts must be arrays with the same number of axes")
        ax = min(axis, len(parts[0]) - 1)
        for p in parts[1:]:
            for i, (x, y) in enumerate(zip(parts[0], p)):
                if i != ax and not same_dim(x, y):
                    raise ShapeError(
                        f"concatenation: parts of shapes {fmt_shape(parts[0])} and {fmt_shape(p)} differ off axis {ax}"
                    )
        total = sum((p[ax] for p in parts), sp.Integer(0))
        return tuple(total if i == ax else d for i, d in enumerate(parts[0]))
    if isinstance(e, ops.take):
        x, axis, start, stop = e.args
        shape = list(walk(x))
        if not shape:
            raise ShapeError(f"cannot slice the number `{_text(x)}`")
        ax = min(int(axis), len(shape) - 1)
        if int(axis) >= len(shape):
            raise ShapeError(f"`{_text(x)}` is {fmt_shape(tuple(shape))}: it has no axis {int(axis)} to slice")
        size = sp.expand(stop - start)
        if size.is_number and size <= 0:
            raise ShapeError(f"the slice {start}:{stop} of `{_text(x)}` is empty")
        bound = sp.expand(shape[ax] - stop)
        if bound.is_number and bound < 0:
            raise ShapeError(
                f"the slice {start}:{stop} runs past the end of `{_text(x)}` (axis {ax} has {shape[ax]} entries)")
        shape[ax] = size
        return tuple(shape)
    if isinstance(e, ops.pick):
        x, axis, _k = e.args
        shape = list(walk(x))
        if not shape:
            raise ShapeError(f"cannot index the number `{_text(x)}`")
        ax = min(int(axis), len(shape) - 1)
        shape[ax] = sp.Integer(1)
        return tuple(shape)
    if isinstance(e, ops.batch_sum):
        x, axis, keep = e.args
        shape = list(walk(x))
        ax = int(axis)
        if ax >= len(shape):
            raise ShapeError(f"`{_text(x)}` is {fmt_shape(tuple(shape))}: it has no axis {ax} to sum over")
        if int(keep):
            shape[ax] = sp.Integer(1)
        else:
            del shape[ax]
        return tuple(shape)
    if isinstance(e, ops.softmax):
        return walk(e.args[0])
    if isinstance(e, ops.basis):
        axis, ndim, _k, n = e.args
        shape = [sp.Integer(1)] * int(ndim)
        shape[int(axis)] = n
        return tuple(shape)
    if isinstance(e, ops.later):
        return walk(e.args[0])
    if isinstance(e, sp.Sum):
        return walk(e.function)
    raise ShapeError(f"cannot infer the shape of `{_text(e)}`")


def _broadcast_args(e, shapes: list) -> Shape:
    """The broadcast of the operands' shapes (already walked: an operand's own
    error is raised once, by its walk). ``e`` is printed only for the message:
    printing every node would be quadratic work."""
    out: Shape = ()
    try:
        for shape in shapes:
            out = broadcast(out, shape, "")
    except ShapeError:
        out = ()
        for shape in shapes:
            out = broadcast(out, shape, f"`{_text(e)}`")
    return out


def all_shapes(derivation) -> dict[str, Shape]:
    """Shape of every symbol and every backward quantity of a derivation."""
    cell = derivation.cell
    shapes: dict[str, Shape] = {n: tuple(s.shape) for n, s in cell.symbols.items()}
    for d, _ in cell.dims.items():
        shapes.setdefault(d, ())
    for eq in derivation.backward:
        name = str(eq.lhs)
        if name in shapes:
            continue
        shapes[name] = shape_of(eq.rhs, shapes)
    return shapes

"""Shapes of array expressions, for the verifier (no NumPy here).

Contract. :func:`shape_of` infers the symbolic shape of any array expression of
:mod:`derive.spec.ops` (``later``, ``Sum``, ``outer``, ``batch_sum`` and ``basis``
included) and raises :class:`~derive.spec.cell.ShapeError` naming the operands;
:func:`all_shapes` gives the shape of every name of a derivation: its symbols,
its sizes (scalars) and every backward quantity (a parameter gradient has the
shape of its parameter). :class:`FormulaShapeError` is a user's formula whose
arrays do not fit, with the column of the fault.
"""

from __future__ import annotations

from typing import Mapping

import sympy as sp

from derive.spec import functions, ops
from derive.spec.cell import ShapeError, broadcast, fmt_shape, same_dim

Shape = tuple


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


def _text(e) -> str:
    from derive.spec.pyprint import to_python

    try:
        return to_python(e)
    except Exception:  # a printer gap must never hide the real message
        return sp.sstr(e)


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

"""The NumPy spelling of array expressions, for the emitted modules.

Contract. :func:`numpy_text` prints a :mod:`derive.spec.ops` expression as pure
NumPy text (``sigmoid(x)*np.tanh(y)``, ``W.T @ dz``, ``np.concatenate([a, b],
axis=0)``); :func:`assign_into` prints ``target = expr`` with the outermost
operation writing into a given array (``out=``). ``names`` maps a symbol to the
text that stands for it in the emitted code (a view such as ``gates[t, :,
0:H]``). With ``stacked=True`` a slice of the feature axis is counted from the
end (``x[..., 0:H]``, ``x[..., 0:H, :]``), so that the same text serves an
array with an extra leading axis: truncated BPTT carries the adjoints of
several losses at once along such an axis.

:class:`Lines` collects emitted statements, each derived line commented with
the equation it implements.
"""

from __future__ import annotations

from typing import Iterable

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from derive.spec import functions, ops
from derive.spec.pyprint import PythonPrinter, to_python

# How each elementwise function is spelled in an emitted module (each accepts
# ``out=``; the rows of derive.spec.functions), and the ufunc of each operator.
FUNCTION_NAMES: dict[type, str] = {row.function: row.numpy for row in functions.FUNCTIONS.values()}
OPERATOR_UFUNCS: dict[type, str] = {sp.Mul: "np.multiply", sp.Add: "np.add"}


class NumpyPrinter(PythonPrinter):
    """Pure-NumPy text of the array expressions of a cell.

    ``names`` maps a symbol to the text that stands for it; ``expand`` lists
    the 1-D parameters that need a trailing axis (the ``none`` layout's
    all-steps matrices have time on their last axis). ``feature_from_end``
    (stacked printing) gives, for a slice of the feature axis, how many axes
    follow it: 0 when features are the last axis, 1 when the batch follows.
    ``vector_right`` names the per-step vectors v that ``W.T @ v`` prints as
    ``v @ W`` (see :meth:`_print_matmul`)."""

    def __init__(self, names: dict[str, str] | None = None, expand: Iterable[str] = (),
                 feature_from_end: int | None = None, vector_right: Iterable[str] = ()):
        super().__init__({"order": "none"})
        self.names = names or {}
        self.expand = set(expand)
        self.feature_from_end = feature_from_end
        self.vector_right = set(vector_right)

    def _print_Symbol(self, expr):
        text = self.names.get(expr.name, expr.name)
        return text + "[:, None]" if expr.name in self.expand else text

    def _print(self, expr, **kwargs):
        name = FUNCTION_NAMES.get(getattr(expr, "func", None))
        if name is None:
            return super()._print(expr, **kwargs)
        if expr.func is sp.Heaviside and expr.args[1] == 0:
            return f"({self._print(expr.args[0])} > 0)"  # the step relu' reads: [h > 0]
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Half(self, expr):
        return "0.5"

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_matmul(self, expr):
        a, b = expr.args
        # W.T @ v with one vector v per step: v @ W is the same product, and
        # stays right when v carries a leading axis of its own (stacked adjoints)
        if isinstance(a, ops.transpose) and isinstance(b, sp.Symbol) and b.name in self.vector_right:
            return self._print(ops.matmul(b, a.args[0]))
        return super()._print_matmul(expr)

    def _print_concat(self, expr):
        return "np.concatenate([" + ", ".join(self._print(a) for a in expr.args[1:]) + f"], axis={int(expr.args[0])})"

    def _print_take(self, expr):
        if self.feature_from_end is None:
            return super()._print_take(expr)
        x, _axis, start, stop = expr.args
        index = "..., " + f"{self._print(start)}:{self._print(stop)}" + ", :" * self.feature_from_end
        return f"{self.parenthesize(x, PRECEDENCE['Atom'], strict=True)}[{index}]"

    def _print_softmax(self, expr):
        return f"softmax({self._print(expr.args[0])}, axis={int(expr.args[1])})"

    def _print_pick(self, expr):
        x, axis, k = expr.args
        index = ":, " * int(axis) + f"{self._print(k)}:{self._print(k + 1)}"
        return f"{self.parenthesize(x, PRECEDENCE['Atom'], strict=True)}[{index}]"

    def _print_basis(self, expr):
        axis, ndim, k, n = expr.args
        shape = ["1"] * int(ndim)
        shape[int(axis)] = self._print(n)
        text = ", ".join(shape) + ("," if int(ndim) == 1 else "")
        return f"_basis(({text}), {int(axis)}, {self._print(k)})"

    def _print_later(self, expr):
        # BPTT: the loop runs backwards, so when step t begins a name still holds its value of step t+1
        return self._print(expr.args[0])


def numpy_text(expr: sp.Expr, names: dict[str, str] | None = None, expand: Iterable[str] = (), **options) -> str:
    """``expr`` as pure-NumPy text (see :class:`NumpyPrinter`)."""
    return NumpyPrinter(names, expand, **options).doprint(expr)


def assign_into(target: str, expr: sp.Expr, dest: str, names: dict[str, str] | None = None, **options) -> list[str]:
    """``target = expr`` computed straight into the array ``dest``: the
    outermost operation writes there (``out=``), so no copy follows."""
    p = NumpyPrinter(names, **options)
    if isinstance(expr, (sp.Mul, sp.Add)) and len(expr.args) > 1:
        head = expr.func(*expr.args[:-1], evaluate=False)
        return [f"{target} = {OPERATOR_UFUNCS[expr.func]}({p.doprint(head)}, {p.doprint(expr.args[-1])}, out={dest})"]
    if expr.func in FUNCTION_NAMES:
        args = ", ".join(p.doprint(a) for a in expr.args)
        return [f"{target} = {FUNCTION_NAMES[expr.func]}({args}, out={dest})"]
    return [f"{target} = {dest}", f"{target}[...] = {p.doprint(expr)}"]


def dim_text(e) -> str:
    """A dimension (a number, a name, ``m + n``) as Python text."""
    return to_python(sp.sympify(e))


def shape_text(shape) -> str:
    """A shape tuple as Python text: ``(n_a, m)``, ``(H,)``."""
    parts = [dim_text(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


class Lines(list):
    """Lines of Python; a derived line ends with the equation it implements."""

    def add(self, code: str | list[str], comment: str | None = None) -> None:
        lines = [code] if isinstance(code, str) else list(code)
        if comment:
            lines[0] = f"{lines[0]}  # {comment}"
        self.extend(lines)

"""Print array expressions in the formula language that :mod:`derive.spec.expr` reads.

Contract. ``to_python(expr)`` writes ``expr`` as NumPy-flavoured Python text
(``Wf.T @ dft``, ``c_prev*dc*ft*(1 - ft)``, ``np.sum(dft, axis=1,
keepdims=True)``, ``dconcat[0:n_a]``) such that ``expr.parse`` reads it back
to the same SymPy expression in the cell's scope. The plain-text listings in
generated/ and the verifier's messages use it.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from derive.spec import functions, ops

_MATMUL_PREC = PRECEDENCE["Mul"]


class PythonPrinter(StrPrinter):
    def _print(self, expr, **kwargs):
        row = functions.BY_CLASS.get(getattr(expr, "func", None))
        if row is not None:  # an elementwise function, by the name formulas use
            return f"{row.name}({', '.join(self._print(a) for a in expr.args)})"
        return super()._print(expr, **kwargs)

    def _print_matmul(self, expr):
        a, b = expr.args
        # @ is left-associative with * and /; parenthesise products on the right
        return self.parenthesize(a, _MATMUL_PREC) + " @ " + self.parenthesize(b, _MATMUL_PREC + 1)

    def _print_transpose(self, expr):
        return self.parenthesize(expr.args[0], PRECEDENCE["Atom"], strict=True) + ".T"

    def _print_outer(self, expr):
        return f"np.outer({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_concat(self, expr):
        return "concat(" + ", ".join(self._print(p) for p in expr.args[1:]) + ")"

    def _print_take(self, expr):
        x, axis, start, stop = expr.args
        index = ":, " * int(axis) + f"{self._print(start)}:{self._print(stop)}"
        return f"{self.parenthesize(x, PRECEDENCE['Atom'], strict=True)}[{index}]"

    def _print_pick(self, expr):
        x, axis, k = expr.args
        return f"{self.parenthesize(x, PRECEDENCE['Atom'], strict=True)}[{':, ' * int(axis)}{self._print(k)}]"

    def _print_batch_sum(self, expr):
        x, axis, keep = expr.args
        keep_text = ", keepdims=True" if keep else ""
        return f"np.sum({self._print(x)}, axis={int(axis)}{keep_text})"

    def _print_softmax(self, expr):
        return f"softmax({self._print(expr.args[0])})"

    def _print_basis(self, expr):
        axis, ndim, k, n = expr.args
        return f"basis({int(axis)}, {int(ndim)}, {self._print(k)}, {self._print(n)})"

    def _print_later(self, expr):
        return f"later({self._print(expr.args[0])})"

    def _print_Sum(self, expr):
        return f"sum_t({self._print(expr.function)})"

    def _print_Symbol(self, expr):
        return expr.name


def to_python(expr: sp.Expr) -> str:
    return PythonPrinter({"order": "none"}).doprint(expr)


def equation_text(eq: sp.Eq) -> str:
    return f"{to_python(eq.lhs)} = {to_python(eq.rhs)}"

"""Print array expressions in the formula language that :mod:`derive.spec.expr` reads.

Contract. ``to_python(expr)`` writes ``expr`` as NumPy-flavoured Python text
(``Wf.T @ dft``, ``c_prev*dc*ft*(1 - ft)``, ``np.sum(dft, axis=1,
keepdims=True)``, ``dconcat[0:n_a]``) such that ``expr.parse`` reads it back
to the same SymPy expression in the cell's scope. The plain-text listings in
generated/ and the verifier's messages use it.
"""

from __future__ import annotations

import sympy as sp
from sympy.core.mul import _keep_coeff
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

    def parenthesize(self, item, level, strict=False):
        # In Python ``*``, ``/`` and ``@`` share one precedence level, left to
        # right: ``a*b @ W*c`` is ``((a*b) @ W)*c``. So a matrix product that is
        # a factor of a product (or a power, a negation, a ``.T``) is always
        # parenthesised; only on the left of another ``@`` does it stand bare.
        if isinstance(item, ops.matmul) and level >= _MATMUL_PREC:
            return f"({self._print(item)})"
        return super().parenthesize(item, level, strict)

    def _print_Mul(self, expr):
        # SymPy prints a negative product at the level of a sum, where a matrix
        # product would stand bare: -a*b @ W reads as ((-a)*b) @ W, and -a/a @ W
        # as (-a/a) @ W. Print the positive product (its matmul factors and
        # divisors parenthesised) after the sign.
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_negative and any(isinstance(f.base if f.is_Pow else f, ops.matmul) for f in sp.Mul.make_args(rest)):
            positive = _keep_coeff(-coeff, rest)
            text = self._print(positive)
            return f"-({text})" if isinstance(positive, ops.matmul) else f"-{text}"
        return super()._print_Mul(expr)

    def _print_matmul(self, expr):
        a, b = expr.args
        # @ is left-associative: a product on its left stands bare, a matmul or
        # any other product on its right is parenthesised
        left = self._print(a) if isinstance(a, ops.matmul) else self.parenthesize(a, _MATMUL_PREC)
        right = self._print(b) if _binds_tighter_than_matmul(b) else f"({self._print(b)})"
        return f"{left} @ {right}"

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


def _binds_tighter_than_matmul(e: sp.Expr) -> bool:
    """Whether ``e`` prints as text that stands bare on the right of ``@``:
    a name, a call, ``x.T``, ``x[...]``, ``x**k`` (k > 0), a natural number;
    not a product, a quotient (``1/a`` prints for ``a**-1``), a sum or a sign."""
    if isinstance(e, (sp.Symbol, sp.Sum)) or (isinstance(e, sp.Function) and not isinstance(e, ops.matmul)):
        return True
    if isinstance(e, sp.Pow):
        return bool(e.exp.is_positive)
    return bool(e.is_Integer and e >= 0)


def to_python(expr: sp.Expr) -> str:
    return PythonPrinter({"order": "none"}).doprint(expr)


def equation_text(eq: sp.Eq) -> str:
    return f"{to_python(eq.lhs)} = {to_python(eq.rhs)}"

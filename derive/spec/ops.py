"""The vocabulary of array expressions: SymPy functions with NumPy semantics.

Contract. Every SymPy ``Symbol`` in a cell stands for a whole array (a vector
per example, a batch of them, or a weight matrix). Arithmetic on symbols is
elementwise with NumPy broadcasting: ``*`` is the Hadamard product ``⊙``,
``+`` adds with broadcasting, ``sigmoid``/``tanh``/``exp``/``relu``/… act per
entry (their table is :mod:`derive.spec.functions`). Because elementwise algebra is ordinary commutative scalar algebra,
SymPy can differentiate it per unit with ``diff``.

Everything that couples entries is one of the unevaluated functions below;
SymPy never differentiates them (its matrix calculus is unreliable, see
DESIGN.md). Their derivative rules live in :mod:`derive.engine.rules`. Axis
arguments are SymPy integers so that the expressions stay hashable and
printable; the layout of the cell decides which axis is the feature axis.

Each function knows how to print itself in LaTeX; the NumPy spelling is in
:mod:`derive.codegen.numpy_printer`.
"""

from __future__ import annotations

import sympy as sp

__all__ = [
    "sigmoid",
    "matmul",
    "transpose",
    "outer",
    "concat",
    "take",
    "batch_sum",
    "softmax",
    "pick",
    "basis",
    "later",
    "ARRAY_FUNCTIONS",
]


def _tex(printer, expr) -> str:
    return printer._print(expr)


def _wrap(printer, expr) -> str:
    """Parenthesise sums so that juxtaposition reads as a product."""
    text = _tex(printer, expr)
    if isinstance(expr, (sp.Add, sp.Mul)) or (isinstance(expr, sp.Pow) and not expr.exp.is_Integer):
        return r"\left(" + text + r"\right)"
    return text


class sigmoid(sp.Function):
    """The logistic function σ(x) = 1 / (1 + e^{-x}).

    σ' = σ (1 − σ): written through σ itself so that, once ``σ(z_f)`` is
    replaced by the stored gate ``f``, the derivative reads ``f (1 − f)``.
    """

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0])))._eval_evalf(prec)

    def _latex(self, printer) -> str:
        return r"\sigma\left(" + _tex(printer, self.args[0]) + r"\right)"


class matmul(sp.Function):
    """The matrix product ``A @ B`` (NumPy's matmul, 1-D operands included)."""

    nargs = 2

    def _latex(self, printer) -> str:
        a, b = self.args
        return _wrap(printer, a) + " " + _wrap(printer, b)


class transpose(sp.Function):
    """``A.T``; (Aᵀ)ᵀ = A and (AB)ᵀ = BᵀAᵀ are applied on construction."""

    nargs = 1

    @classmethod
    def eval(cls, a):
        if isinstance(a, transpose):
            return a.args[0]
        if isinstance(a, matmul):
            return matmul(transpose(a.args[1]), transpose(a.args[0]))
        return None

    def _latex(self, printer) -> str:
        return "{" + _wrap(printer, self.args[0]) + r"}^{\top}"


class outer(sp.Function):
    """The outer product of two vectors, ``np.outer(u, v)`` = u vᵀ."""

    nargs = 2

    def _latex(self, printer) -> str:
        a, b = self.args
        return _wrap(printer, a) + r" \otimes " + _wrap(printer, b)


class concat(sp.Function):
    """``concat(axis, a, b, ...)``: the parts stacked along the feature axis."""

    def _latex(self, printer) -> str:
        parts = r" \\ ".join(_tex(printer, p) for p in self.args[1:])
        return r"\begin{bmatrix} " + parts + r" \end{bmatrix}"


class take(sp.Function):
    """``take(x, axis, start, stop)``: rows (features) start..stop-1 of x."""

    nargs = 4

    def _latex(self, printer) -> str:
        x, _axis, start, stop = self.args
        return (
            "{" + _wrap(printer, x) + "}_{[" + _tex(printer, start) + ":" + _tex(printer, stop) + "]}"
        )


class batch_sum(sp.Function):
    """``batch_sum(x, axis, keepdims)``: x summed over the batch axis.

    This is how a bias or peephole gradient collects its contributions from a
    batch: the adjoint of a broadcast is a sum over the broadcast axis.
    """

    nargs = 3

    def _latex(self, printer) -> str:
        return r"\sum_{\mathrm{batch}} " + _wrap(printer, self.args[0])


class softmax(sp.Function):
    """``softmax(z, axis)``: exp(z) normalised over the feature axis."""

    nargs = 2

    def _latex(self, printer) -> str:
        return r"\operatorname{softmax}\left(" + _tex(printer, self.args[0]) + r"\right)"


class pick(sp.Function):
    """``pick(x, axis, k)``: unit k of x along the feature axis (dims kept)."""

    nargs = 3

    def _latex(self, printer) -> str:
        return "{" + _wrap(printer, self.args[0]) + "}_{" + _tex(printer, self.args[2]) + "}"


class basis(sp.Function):
    """``basis(axis, ndim, k, n)``: the unit vector e_k of length n along axis."""

    nargs = 4

    def _latex(self, printer) -> str:
        return "e_{" + _tex(printer, self.args[2]) + "}"


class later(sp.Function):
    """``later(x)``: the value x takes at step t+1 (zero after the last step).

    It appears only in the gluing equations of backpropagation through time,
    where the adjoint of a previous state computed at t+1 is carried to t.
    """

    nargs = 1

    def _latex(self, printer) -> str:
        return r"\left.{" + _tex(printer, self.args[0]) + r"}\right|_{t+1}"


# Functions that couple entries; their rules are in derive.engine.rules.
ARRAY_FUNCTIONS = (matmul, transpose, outer, concat, take, batch_sum, softmax, pick, basis, later)

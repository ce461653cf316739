"""The scalar spelling of a cell's elementwise expressions, for the compiled (numba) modules.

Contract. :func:`scalar_text` prints an elementwise :mod:`derive.spec.ops`
expression as the text of ONE unit of it (``f*c_prev + i*g``), for the body
of a compiled loop over the units ``[n, k]`` of a step. Symbols print as the
scalar locals ``names`` gives them; each activation is the vectorisable helper
its row of :data:`SCALAR_FUNCTIONS` names (``sigmoid(z)`` ->
``_sigmoid_f32(z)``), so that LLVM vectorises the loop (the PyPI llvmlite has
no SVML: a libm call would keep it scalar). Every number is a module-level
constant of the loop's dtype (``_1_f32 = np.float32(1)``): a Python literal
would promote float32 arithmetic to float64. Integer powers are written out
as products (``g*g``). An expression the table cannot spell raises
:class:`~derive.codegen.plan.CodegenError`.

:class:`Constants` collects the constants a module's kernels use, for both
dtypes, in a deterministic order.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from derive.spec import functions
from derive.spec.pyprint import PythonPrinter
from derive.codegen.plan import CodegenError

# Each activation the compiled loops can compute: its helper's name (the dtype
# suffix is added) and its definition, one line of scalar text over ``x`` in
# terms of the vectorised exponential and the constants {one}, {two};
# ``_SAT`` = -log(eps) of the dtype, where sigmoid and tanh have saturated to
# the dtype's precision (the NumPy module's bound: no subnormal further on);
# an argument held there is within the exponential's range, so they call
# ``_exp_core``, which does not hold it again (``_exp`` does).
# Data, one row each: a new activation (relu, softplus) is one more row.
# Keyed by the name of the function's row in :data:`derive.spec.functions.FUNCTIONS`.
SCALAR_FUNCTIONS: dict[str, tuple[str, str | None]] = {
    "sigmoid": ("_sigmoid", "{one} / ({one} + _exp_core_{sfx}(min(max(-x, -_SAT_{sfx}), _SAT_{sfx})))"),
    "tanh": ("_tanh", "{two} / ({one} + _exp_core_{sfx}(min(max(-{two} * x, -_SAT_{sfx}), _SAT_{sfx}))) - {one}"),
    "exp": ("_exp", None),  # the vectorised exponential itself (module template)
}

DTYPES = {"f32": "np.float32", "f64": "np.float64"}


class Constants:
    """The numbers the kernels use, named ``_<text>_<sfx>`` (``_1_2_f64``: 1/2)."""

    def __init__(self) -> None:
        self.values: dict[str, sp.Expr] = {}

    def name(self, value: sp.Expr, sfx: str) -> str:
        value = sp.nsimplify(value) if isinstance(value, sp.Float) and value == int(value) else value
        if isinstance(value, sp.Integer):
            base = str(int(value))
        elif isinstance(value, sp.Rational):
            base = f"{value.p}_{value.q}"
        else:
            base = repr(float(value)).replace(".", "p").replace("-", "m").replace("+", "")
        self.values.setdefault(base, value)
        return f"_{base}_{sfx}"

    def definitions(self) -> list[tuple[str, str, str]]:
        """(name, dtype, value text) of every constant, both dtypes, sorted."""
        out = []
        for sfx, dtype in DTYPES.items():
            for base in sorted(self.values, key=lambda b: (float(self.values[b]), b)):
                v = self.values[base]
                text = f"{v.p} / {v.q}" if isinstance(v, sp.Rational) and v.q != 1 else repr(float(v))
                out.append((f"_{base}_{sfx}", dtype, text))
        return out


class ScalarPrinter(PythonPrinter):
    """One unit of an elementwise expression, in the dtype ``sfx``."""

    def __init__(self, names: dict[str, str], constants: Constants, sfx: str):
        super().__init__({"order": "none"})
        self.names, self.constants, self.sfx = names, constants, sfx

    def _number(self, value: sp.Expr) -> str:
        if value < 0:
            return "-" + self.constants.name(-value, self.sfx)
        return self.constants.name(value, self.sfx)

    def _print_Integer(self, expr):
        return self._number(expr)

    _print_Rational = _print_Integer
    _print_Float = _print_Integer

    def _print_One(self, expr):
        return self._number(expr)

    def _print_NegativeOne(self, expr):
        return self._number(expr)

    def _print_Half(self, expr):
        return self._number(expr)

    def _print_Zero(self, expr):
        return self._number(expr)

    def _print_Symbol(self, expr):
        return self.names.get(expr.name, expr.name)

    def _print(self, expr, **kwargs):
        row = functions.BY_CLASS.get(getattr(expr, "func", None))
        if row is not None:  # an elementwise function of the table: its compiled helper
            helper = SCALAR_FUNCTIONS.get(row.name)
            if helper is None or len(expr.args) != 1:
                raise CodegenError(f"no compiled spelling of `{row.name}` (derive.codegen.numba_printer."
                                   f"SCALAR_FUNCTIONS)")
            return f"{helper[0]}_{self.sfx}({self._print(expr.args[0])})"
        return super()._print(expr, **kwargs)

    def _print_Function(self, expr):
        raise CodegenError(f"no compiled spelling of `{expr.func.__name__}` (derive.codegen.numba_printer."
                           f"SCALAR_FUNCTIONS)")

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp.is_Integer and 1 <= abs(int(exp)) <= 4:
            b = self.parenthesize(base, PRECEDENCE["Mul"], strict=True)
            text = "*".join([b] * abs(int(exp)))
            if exp > 0:
                return text
            return f"{self._number(sp.Integer(1))} / ({text})"
        if exp == sp.Rational(1, 2):
            return f"np.sqrt({self._print(base)})"
        return f"{self.parenthesize(base, PRECEDENCE['Pow'], strict=True)} ** {self.parenthesize(exp, PRECEDENCE['Pow'])}"

    def _print_Mul(self, expr):
        # a coefficient of -1 prints as a sign; every other number as a constant
        coeff, rest = expr.as_coeff_Mul()
        if coeff == -1:
            return "-" + self.parenthesize(rest, PRECEDENCE["Mul"])
        return super()._print_Mul(expr)

    def emptyPrinter(self, expr):  # anything else is outside the compiled frame
        raise CodegenError(f"no compiled spelling of `{expr}`")

    def _print_matmul(self, expr):
        raise CodegenError(f"`{expr}` is a product, not elementwise")

    _print_transpose = _print_outer = _print_concat = _print_take = _print_matmul
    _print_batch_sum = _print_softmax = _print_pick = _print_basis = _print_matmul

    def _print_later(self, expr):
        raise CodegenError(f"`{expr}` crosses steps")


def scalar_text(expr: sp.Expr, names: dict[str, str], constants: Constants, sfx: str) -> str:
    """One unit of ``expr`` as scalar text in the dtype ``sfx`` (module docstring)."""
    return ScalarPrinter(names, constants, sfx).doprint(expr)


def helper_lines(constants: Constants, sfx: str) -> list[tuple[str, str]]:
    """(name, one-line body) of each activation helper built on ``_exp``."""
    one, two = constants.name(sp.Integer(1), sfx), constants.name(sp.Integer(2), sfx)
    return [(f"{name}_{sfx}", body.format(one=one, two=two, sfx=sfx))
            for name, body in SCALAR_FUNCTIONS.values() if body is not None]


__all__ = ["SCALAR_FUNCTIONS", "DTYPES", "Constants", "ScalarPrinter", "scalar_text", "helper_lines"]

"""The scalar spelling of a cell's elementwise expressions, for the compiled (numba) modules.

Contract. :func:`scalar_text` prints an elementwise :mod:`derive.spec.ops`
expression as the text of ONE unit of it (``f*c_prev + i*g``), for the body
of a compiled loop over the units ``[n, k]`` of a step. Symbols print as the
scalar locals ``names`` gives them; each elementwise function of the language
is the helper its row of :data:`SCALAR_FUNCTIONS` names (``sigmoid(z)`` ->
``_sigmoid_f32(z)``), vectorisable where it can be, so that LLVM vectorises
the loop (the PyPI llvmlite has no SVML: a libm call, as log's, keeps it
scalar). Every number is a module-level
constant of the loop's dtype (``_1_f32 = np.float32(1)``): a Python literal
would promote float32 arithmetic to float64. Integer powers are written out
as products (``g*g``). An expression the table cannot spell raises
:class:`~derive.codegen.plan.CodegenError`.

:class:`Constants` collects the constants a module's kernels use, for both
dtypes, in a deterministic order, and the functions they call:
:func:`helper_lines` defines those (and only those) in the module.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from derive.spec import functions
from derive.spec.pyprint import PythonPrinter
from derive.codegen.plan import CodegenError

# Each elementwise function of the language, as the compiled loops compute it:
# its helper's name (the dtype suffix is added), the helper's parameters, and
# its definition, one line of scalar text in terms of the vectorised
# exponential and the constants {zero}, {one}, {two}; ``_SAT`` = -log(eps) of
# the dtype, where sigmoid and tanh have saturated to the dtype's precision
# (the NumPy module's bound: no subnormal further on); an argument held there
# is within the exponential's range, so they call ``_exp_core``, which does not
# hold it again (``_exp`` does). The selects are written so that a NaN comes
# out a NaN, as from NumPy's spelling (relu: ``not x <= 0``). log and log1p are
# libm calls: a loop that uses them is not vectorised (correct, slower).
# Data, one row each: a new function is one more row. Keyed by the name of
# the function's row in :data:`derive.spec.functions.FUNCTIONS`; a module
# defines the helpers its loops call (:meth:`Constants.call`).
SCALAR_FUNCTIONS: dict[str, tuple[str, str, str | None]] = {
    "sigmoid": ("_sigmoid", "x", "{one} / ({one} + _exp_core_{sfx}(min(max(-x, -_SAT_{sfx}), _SAT_{sfx})))"),
    "tanh": ("_tanh", "x", "{two} / ({one} + _exp_core_{sfx}(min(max(-{two} * x, -_SAT_{sfx}), _SAT_{sfx}))) - {one}"),
    "exp": ("_exp", "x", None),  # the vectorised exponential itself (module template)
    "log": ("_log", "x", "np.log(x)"),
    "relu": ("_relu", "x", "x if not x <= {zero} else {zero}"),
    # log(1 + e^x) = max(x, 0) + log1p(e^-|x|), as np.logaddexp(0, x): no overflow;
    # e^-|x| is 0 beyond the exponential's range (a subnormal at most, in truth)
    "softplus": ("_softplus", "x", "(x if not x <= {zero} else {zero}) + "
                 "(np.log1p(_exp_core_{sfx}(-abs(x))) if abs(x) < _EXP_BOUND_{sfx} else {zero})"),
    "abs": ("_abs", "x", "abs(x)"),
    "sqrt": ("_sqrt", "x", "np.sqrt(x)"),
    "maximum": ("_maximum", "a, b", "a if a >= b else (b if b > a else a + b)"),
    "minimum": ("_minimum", "a, b", "a if a <= b else (b if b < a else a + b)"),
    "heaviside": ("_heaviside", "x, h0", "{one} if x > {zero} else ({zero} if x < {zero} else (h0 if x == {zero} else x))"),
    "sign": ("_sign", "x", "{one} if x > {zero} else (-{one} if x < {zero} else ({zero} if x == {zero} else x))"),
}

DTYPES = {"f32": "np.float32", "f64": "np.float64"}


class Constants:
    """The numbers the kernels use, named ``_<text>_<sfx>`` (``_1_2_f64``: 1/2),
    and the functions they call (rows of :data:`SCALAR_FUNCTIONS`)."""

    def __init__(self) -> None:
        self.values: dict[str, sp.Expr] = {}
        self.called: set[str] = set()

    def call(self, function: str, sfx: str) -> str:
        """The helper of ``function``'s row in the dtype ``sfx``, noted as called."""
        self.called.add(function)
        return f"{SCALAR_FUNCTIONS[function][0]}_{sfx}"

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
            if helper is None or len(expr.args) != len(helper[1].split(",")):
                raise CodegenError(f"no compiled spelling of `{row.name}` (derive.codegen.numba_printer."
                                   f"SCALAR_FUNCTIONS)")
            args = ", ".join(self._print(a) for a in expr.args)
            return f"{self.constants.call(row.name, self.sfx)}({args})"
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


def helper_lines(constants: Constants, sfx: str) -> list[tuple[str, str, str]]:
    """(name, parameters, one-line body) of each helper the kernels call (the
    exponential is the template's), in the table's order."""
    def spelled(body: str) -> str:
        numbers = {k: constants.name(sp.Integer(v), sfx) for k, v in (("zero", 0), ("one", 1), ("two", 2))
                   if "{" + k + "}" in body}
        return body.format(sfx=sfx, **numbers)
    return [(f"{name}_{sfx}", params, spelled(body)) for key, (name, params, body) in SCALAR_FUNCTIONS.items()
            if body is not None and key in constants.called]


__all__ = ["SCALAR_FUNCTIONS", "DTYPES", "Constants", "ScalarPrinter", "scalar_text", "helper_lines"]

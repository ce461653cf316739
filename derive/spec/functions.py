r"""The elementwise functions of the language: one row per function, one table.

Contract. :data:`FUNCTIONS` maps the name a formula uses (``relu``) to a
:class:`Function` row, and every layer that touches an elementwise function
reads that row and nothing else: the parser (:mod:`derive.spec.expr`), shape
inference (:mod:`derive.spec.cell`), the rules and the gate detection
(:mod:`derive.engine`), the evaluators (:mod:`derive.numeric.evaluate`,
:mod:`derive.numeric.kernels`), the NumPy printer of the emitted modules
(:mod:`derive.codegen.numpy_printer`), the LaTeX printer (:mod:`derive.spec.latex`)
and reader (:mod:`derive.verifier.latex_parser`), and the diagnosis of a wrong
derivative (:mod:`derive.verifier.terms`, :mod:`derive.verifier.mutations`).
Adding a function is adding one row (see CONTRIBUTING.md).

A row gives:

- ``name``: the name in formulas (also ``np.name``); ``function``: the SymPy
  function class (a custom :class:`sympy.Function` where SymPy's own would
  evaluate, rewrite or differentiate in a way the engine does not want);
- ``partials(y, *args)``: the derivative with respect to each argument, written
  in the forward value ``y = f(args)`` wherever the function allows (σ' = y(1−y),
  tanh' = 1−y², exp' = y, relu' = [y > 0], sqrt' = 1/(2y)) and otherwise in
  the arguments (softplus' = σ(x), |x|' = sign(x)). The SymPy class's own
  derivative agrees with it (tests/test_functions.py checks every row); the
  engine replaces ``f(z)`` by the stored value, so a derivative written in the
  value reads ``di*i`` for an exponential gate as ``df*f*(1 - f)`` for a
  sigmoid one;
- ``numpy``: the spelling in an emitted module, a callable that accepts
  ``out=`` (``np.tanh``, or a helper of the module such as ``sigmoid``), and
  ``helper``: the source of that helper when it is one;
- ``float64``, ``mpmath``, ``sympy``: the function on float64 arrays, on one
  mpmath number, on one SymPy number or expression (the evaluators);
- ``latex``: the LaTeX head it prints as; ``latex_read``: the commands and
  words the LaTeX reader accepts for it;
- ``gate``: ``v = f(affine)`` makes ``v`` a gate with a pre-activation node
  (one-argument functions);
- ``kink``: the convention at a point where the derivative jumps, equal to
  torch's (relu'(0) = 0, |x|'(0) = 0, maximum and minimum split a tie 1/2, 1/2);
- ``domain``: where the function is real (``log``: x > 0, ``sqrt``: x >= 0), as
  text and as a test of one number; the numeric evaluators refuse an argument
  outside it with a :class:`~derive.errors.DomainError` that names the equation,
  instead of a NaN or a complex number deep inside a proof.

Two rows are helpers the derivatives produce (``heaviside``, ``sign``); they may
be written in formulas too (the verifier reads a user's ``dh*heaviside(h, 0)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import mpmath
import numpy as np
import sympy as sp

from derive.spec import ops

__all__ = [
    "Function", "FUNCTIONS", "BY_CLASS", "ELEMENTWISE", "GATES", "relu", "softplus", "absolute", "sqrt",
    "maximum", "minimum", "heaviside", "STEPS", "diff", "partials", "gate_derivative", "helpers_for", "kinks",
]


# ---------------------------------------------------------------------------
# the SymPy classes SymPy lacks (or whose own behaviour the engine cannot use)


def _heaviside(x: sp.Expr, at_zero) -> sp.Expr:
    return sp.Heaviside(x, sp.sympify(at_zero))


heaviside = _heaviside


class relu(sp.Function):
    """max(x, 0); relu'(x) = [relu(x) > 0], so relu'(0) = 0 as in torch."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return x if x > 0 else sp.S.Zero
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return _heaviside(self, 0)

    def _eval_evalf(self, prec):
        x = self.args[0]._eval_evalf(prec)
        return None if x is None or not x.is_Number else (x if x > 0 else sp.Float(0, prec))


class softplus(sp.Function):
    """log(1 + e^x); softplus' = σ(x) (needs the argument)."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number and not x.is_Float:
            return sp.log(1 + sp.exp(x))
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return ops.sigmoid(self.args[0])

    def _eval_evalf(self, prec):
        return sp.log(1 + sp.exp(self.args[0]))._eval_evalf(prec)


class absolute(sp.Function):
    """|x| for real arrays; |x|' = sign(x), so 0 at 0 as in torch."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number:
            return abs(x)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.sign(self.args[0])

    def _eval_evalf(self, prec):
        x = self.args[0]._eval_evalf(prec)
        return None if x is None or not x.is_Number else abs(x)


class sqrt(sp.Function):
    """√x as a node of its own (SymPy's sqrt is a power); sqrt' = 1/(2√x)."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_Number and not x.is_Float:
            return sp.sqrt(x)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return 1 / (2 * self)

    def _eval_evalf(self, prec):
        return sp.sqrt(self.args[0])._eval_evalf(prec)


class maximum(sp.Function):
    """max(a, b) per entry; a tie splits the gradient 1/2, 1/2 as in torch."""

    nargs = 2

    @classmethod
    def eval(cls, a, b):
        if a.is_Number and b.is_Number:
            return a if a >= b else b
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        a, b = self.args
        return _heaviside(a - b if argindex == 1 else b - a, sp.S.Half)

    def _eval_evalf(self, prec):
        a, b = (x._eval_evalf(prec) for x in self.args)
        return None if a is None or b is None or not (a.is_Number and b.is_Number) else (a if a >= b else b)


class minimum(sp.Function):
    """min(a, b) per entry; a tie splits the gradient 1/2, 1/2 as in torch."""

    nargs = 2

    @classmethod
    def eval(cls, a, b):
        if a.is_Number and b.is_Number:
            return a if a <= b else b
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        a, b = self.args
        return _heaviside(b - a if argindex == 1 else a - b, sp.S.Half)

    def _eval_evalf(self, prec):
        a, b = (x._eval_evalf(prec) for x in self.args)
        return None if a is None or b is None or not (a.is_Number and b.is_Number) else (a if a <= b else b)


# ---------------------------------------------------------------------------
# numbers: float64 arrays, mpmath and SymPy scalars


def _stable_sigmoid(x):
    # σ(x) = ½(1 + tanh(x/2)): no overflow at |x| = 1e4, unlike 1/(1+e^{−x})
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _mp_heaviside(x, at_zero):
    return mpmath.mpf(1) if x > 0 else (mpmath.mpf(at_zero) if x == 0 else mpmath.mpf(0))


def _mp_sign(x):
    return mpmath.mpf(1) if x > 0 else (mpmath.mpf(-1) if x < 0 else mpmath.mpf(0))


def _symbolic(f):
    """f applied to a SymPy scalar: a number folds to a number (a Float keeps
    its precision); anything else stays unevaluated, since SymPy's eval() of
    tanh/exp queries assumptions over the whole argument, which makes building
    an unrolled loss take minutes instead of a second."""
    def apply(*xs):
        return f(*xs) if all(x.is_Number for x in xs) else f(*xs, evaluate=False)
    return apply


_sym_exp = _symbolic(sp.exp)


def sym_reciprocal(x: sp.Expr) -> sp.Expr:
    """1/x for a SymPy scalar, the same expression ``1/x`` builds, without the
    question SymPy asks first of a two-term sum (is a term infinite?), which for
    1 + exp(...) walks the assumptions of the whole argument: most of the time
    of building an unrolled loss through a sigmoid or a softmax."""
    return 1 / x if x.is_Number else sp.Pow(x, -1, evaluate=False)


def sym_power(x: sp.Expr, n: int) -> sp.Expr:
    """x**n for a SymPy scalar and an integer n: numbers fold; otherwise the
    power left as written (SymPy's ``**`` asks a two-term sum whether a term is
    infinite first, as for 1/x)."""
    if x.is_Number:
        return x**n
    return sp.Pow(x, n, evaluate=False)


def sym_quotient(x: sp.Expr, y: sp.Expr) -> sp.Expr:
    """x/y for SymPy scalars: numbers fold; otherwise the product x * (1/y) left
    as it is (SymPy's canonical product asks the sign and finiteness of both
    factors over their whole arguments first)."""
    if x.is_Number and y.is_Number:
        return x / y
    return sp.Mul(x, sym_reciprocal(y), evaluate=False)

# SymPy's own functions whose eval() queries assumptions over the whole argument:
# tanh nested n deep cost about 3^n (7 deep: 0.7 s, 10 deep: minutes), so formulas
# and the engine build them unevaluated unless every argument is a number.
UNEVALUATED = (sp.tanh, sp.exp, sp.log)


def rebuild(f, args) -> sp.Expr:
    """``f(*args)``, unevaluated for the functions of ``UNEVALUATED`` (see there)
    unless every argument is a number: the one way formulas and the engine apply them."""
    if f in UNEVALUATED and not all(getattr(x, "is_Number", False) for x in args):
        return f(*args, evaluate=False)
    return f(*args)


# ---------------------------------------------------------------------------
# the template helpers an emitted module defines (sigmoid is always there)

_RELU_HELPER = '''def relu(z, out=None):
    """max(z, 0) per entry (its derivative is taken as 0 at 0, as torch does)."""
    return np.maximum(z, 0.0, out=out)'''

_SOFTPLUS_HELPER = '''def softplus(z, out=None):
    """log(1 + exp(z)) per entry, without overflow (np.logaddexp(0, z))."""
    return np.logaddexp(0.0, z, out=out)'''


# ---------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Function:
    """One elementwise function of the language (module docstring)."""

    name: str
    function: Any
    partials: Callable[..., tuple]
    numpy: str
    float64: Callable
    mpmath: Callable
    sympy: Callable
    latex: str
    latex_read: tuple[str, ...] = ()
    helper: str | None = None
    gate: bool = True
    kink: str = ""
    doc: str = ""
    arity: int = 1
    words: tuple[str, ...] = field(default=())
    # where the function is real: (the condition as read, a test of one number); None: everywhere
    domain: tuple[str, Callable[[Any], bool]] | None = None

    @property
    def in_value(self) -> bool:
        """Whether the derivative is written in the forward value alone."""
        y, *xs = _probe(self.arity)
        return not any(x in sp.sympify(p).free_symbols for p in self.partials(y, *xs) for x in xs)


def _probe(arity: int):
    return [sp.Symbol("_y")] + [sp.Symbol(f"_x{i}") for i in range(arity)]


_ROWS = [
    Function("sigmoid", ops.sigmoid, lambda y, x: (y * (1 - y),), "sigmoid", _stable_sigmoid,
             lambda x: 1 / (1 + mpmath.exp(-x)), lambda x: sym_reciprocal(1 + _sym_exp(-x)), r"\sigma",
             (r"\sigma",), words=("sigmoid", "sigma"), doc="the logistic function 1/(1 + e^{-x})"),
    Function("tanh", sp.tanh, lambda y, x: (1 - y**2,), "np.tanh", np.tanh, mpmath.tanh,
             _symbolic(sp.tanh), r"\tanh", (r"\tanh",), words=("tanh",)),
    Function("exp", sp.exp, lambda y, x: (y,), "np.exp", np.exp, mpmath.exp, _sym_exp, r"\exp",
             (r"\exp",), words=("exp",)),
    Function("log", sp.log, lambda y, x: (1 / x,), "np.log", np.log, mpmath.log, _symbolic(sp.log), r"\log",
             (r"\log", r"\ln"), words=("log", "ln"), domain=("x > 0", lambda x: x > 0)),
    Function("relu", relu, lambda y, x: (_heaviside(y, 0),), "relu", lambda x: np.maximum(x, 0.0),
             lambda x: x if x > 0 else mpmath.mpf(0), _symbolic(relu), r"\operatorname{relu}",
             (r"\operatorname{relu}", r"\mathrm{relu}", r"\mathrm{ReLU}", r"\operatorname{ReLU}"),
             helper=_RELU_HELPER, words=("relu", "ReLU"), kink="relu'(0) = 0 (torch.relu)",
             doc="max(x, 0)"),
    Function("softplus", softplus, lambda y, x: (ops.sigmoid(x),), "softplus", lambda x: np.logaddexp(0.0, x),
             lambda x: mpmath.log1p(mpmath.exp(x)), _symbolic(softplus), r"\operatorname{softplus}",
             (r"\operatorname{softplus}", r"\mathrm{softplus}"), helper=_SOFTPLUS_HELPER, words=("softplus",),
             doc="log(1 + e^x) (torch.nn.functional.softplus with beta=1, below its threshold 20)"),
    Function("abs", absolute, lambda y, x: (sp.sign(x),), "np.abs", np.abs, abs, _symbolic(absolute),
             r"\operatorname{abs}", (r"\operatorname{abs}",), words=("abs",), kink="|x|'(0) = 0 (torch.abs)"),
    Function("sqrt", sqrt, lambda y, x: (1 / (2 * y),), "np.sqrt", np.sqrt, mpmath.sqrt, _symbolic(sqrt),
             r"\sqrt", (r"\sqrt",), words=("sqrt",), domain=("x >= 0", lambda x: x >= 0)),
    Function("maximum", maximum, lambda y, a, b: (_heaviside(a - b, sp.S.Half), _heaviside(b - a, sp.S.Half)),
             "np.maximum", np.maximum, lambda a, b: a if a >= b else b, _symbolic(maximum), r"\max",
             (r"\max",), gate=False, arity=2, words=("maximum", "max"),
             kink="a tie a = b gives each argument half the gradient (torch.maximum)"),
    Function("minimum", minimum, lambda y, a, b: (_heaviside(b - a, sp.S.Half), _heaviside(a - b, sp.S.Half)),
             "np.minimum", np.minimum, lambda a, b: a if a <= b else b, _symbolic(minimum), r"\min",
             (r"\min",), gate=False, arity=2, words=("minimum", "min"),
             kink="a tie a = b gives each argument half the gradient (torch.minimum)"),
    Function("heaviside", sp.Heaviside, lambda y, x, h0: (sp.S.Zero, sp.S.Zero), "np.heaviside", np.heaviside,
             _mp_heaviside, _symbolic(sp.Heaviside), r"\operatorname{heaviside}", (), gate=False, arity=2, words=("heaviside",),
             doc="the step [x > 0], h0 at 0: relu' and the tie rule of maximum/minimum; derivative taken as 0"),
    Function("sign", sp.sign, lambda y, x: (sp.S.Zero,), "np.sign", np.sign, _mp_sign, _symbolic(sp.sign),
             r"\operatorname{sign}", (r"\operatorname{sign}", r"\operatorname{sgn}"), gate=False,
             words=("sign",), doc="the derivative of abs; derivative taken as 0"),
]

FUNCTIONS: dict[str, Function] = {row.name: row for row in _ROWS}
BY_CLASS: dict[Any, Function] = {row.function: row for row in _ROWS}
# Functions a spec or a formula may apply per entry, by the name it uses.
ELEMENTWISE: dict[str, Any] = {row.name: row.function for row in _ROWS}
# The functions whose ``v = f(affine)`` makes a gate with a pre-activation node.
GATES: tuple = tuple(row.function for row in _ROWS if row.gate)


# The step functions: rows whose derivative is taken as 0 everywhere (heaviside, sign).
STEPS: tuple = tuple(row.function for row in _ROWS
                     if all(sp.sympify(d) == 0 for d in row.partials(*_probe(row.arity))))


def diff(expr: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """d expr / dx with every step function of the table held constant, as its row
    says (its derivative is 0): SymPy's own derivative of ``Heaviside`` is a
    ``DiracDelta`` and of ``sign`` an unevaluated ``Derivative``, neither of which
    a module or a proof can evaluate. The engine differentiates through this."""
    held = {e: sp.Dummy("step") for e in sp.preorder_traversal(expr) if isinstance(e, STEPS)}
    if not held:
        return sp.diff(expr, x)
    return sp.diff(expr.xreplace(held), x).xreplace({v: k for k, v in held.items()})


def partials(expr: sp.Expr) -> tuple:
    """The derivative of ``f(args)`` with respect to each argument, from its row."""
    return BY_CLASS[expr.func].partials(expr, *expr.args)


def gate_derivative(name: str, value: sp.Expr, argument: sp.Expr | None = None) -> sp.Expr:
    """f' of the gate whose function is ``name``, in its value (and argument)."""
    return FUNCTIONS[name].partials(value, argument)[0]


def helpers_for(text: str) -> list[str]:
    """The helper sources an emitted module needs, by the calls its text makes."""
    return [row.helper for row in _ROWS if row.helper is not None and f"{row.numpy}(" in text]


def kinks(expr: sp.Expr) -> list[str]:
    """The conventions at the kinks of the functions ``expr`` applies (empty: a smooth expression)."""
    seen = []
    for node in sp.preorder_traversal(expr):
        row = BY_CLASS.get(getattr(node, "func", None))
        if row is not None and row.kink and row.kink not in seen:
            seen.append(row.kink)
    return seen

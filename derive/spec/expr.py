"""The expression language: formula text -> SymPy, through an AST whitelist.

Contract. ``parse(text, scope)`` reads a formula written in a subset of Python
and returns a SymPy expression built from the ops in :mod:`derive.spec.ops`. The
text is parsed with :func:`ast.parse` and walked node by node; nothing is ever
evaluated, and every node kind, function and attribute not listed here is an
:class:`~derive.errors.ExprError` that points at its column.

Accepted:
- names the scope resolves (symbols, dimensions such as ``n_a``);
- numbers (int or float literals);
- ``+ - * /`` (elementwise), ``@`` (matrix product), unary ``-``/``+``;
- ``x ** k`` with a literal exponent of magnitude at most 16;
- ``x.T``; calls of the scope's functions (the elementwise ones of
  :mod:`derive.spec.functions`: ``sigmoid``, ``tanh``, ``exp``, ``log``, ``relu``,
  ``maximum(a, b)``, …; and ``concat``, ``softmax``, …), optionally spelled ``np.tanh``;
- subscripts: ``x[k]`` (one unit) and slices of one axis, ``W[:, :n_a]``;
  an open end (``dxc[x_dim:]``) or a negative bound needs ``Scope.shape_of``;
- ``np.concatenate([a, b], axis=k)``, ``np.vstack([a, b])``, ``np.hstack([a, b])``
  (a list or tuple literal of arrays, the only place a list is accepted), and the
  elementwise ``np.multiply``, ``np.add``, ``np.subtract``, ``np.divide``,
  ``np.square``, ``np.power(x, k)`` (literal k).

``parse(text, scope, on_node=hook)`` calls ``hook(node, expr)`` after each node
is read (bottom-up), so a caller can check shapes as the formula is built and
point at the column of the node that fails; what the hook raises propagates.

Rejected quickly, before any work: texts over ``MAX_LENGTH`` characters,
nesting deeper than ``MAX_DEPTH``, anything Python cannot parse, characters
outside ASCII (Python would read a fullwidth ``ｈ`` as ``h``).

Bounded work. Each exponent literal is at most ``MAX_EXPONENT``, and what a
power *produces* is bounded too (SymPy folds ``(9**16)**16`` eagerly): a
folded constant has at most ``MAX_CONSTANT_BITS`` bits in its numerator and
denominator, and an exponent on a symbol at most ``MAX_RESULT_EXPONENT`` in
magnitude; :func:`bounded_power` checks both *before* SymPy computes anything,
and the LaTeX reader uses it too.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from derive.spec import functions, ops
from derive.errors import ExprError

MAX_LENGTH = 10_000
MAX_DEPTH = 100


def bracket_depth(text: str) -> int:
    """The deepest nesting of ``( [ {`` in ``text``, counted without parsing (the
    readers refuse a formula past MAX_DEPTH before any parser can recurse)."""
    depth = peak = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            peak = max(peak, depth)
        elif ch in ")]}":
            depth -= 1
    return peak


MAX_EXPONENT = 16
MAX_CONSTANT_BITS = 256
MAX_RESULT_EXPONENT = 256

# The keyword arguments a function accepts (literal values only).
_KEYWORDS = {"sum": ("axis", "keepdims"), "concatenate": ("axis",)}

# Functions whose one argument is a list or tuple literal of arrays.
_SEQUENCE_FUNCTIONS = ("concatenate", "vstack", "hstack")

_BINOPS: dict[type, Callable[[sp.Expr, sp.Expr], sp.Expr]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.MatMult: ops.matmul,
}


@dataclass
class Scope:
    """What a formula may refer to.

    ``symbols`` maps names to SymPy symbols (arrays); ``dims`` maps dimension
    names to SymPy symbols usable in slices; ``functions`` maps callable names to
    builders that take the parsed positional arguments; ``aliases`` maps extra
    spellings (``self.state.o``, ``Gamma_u``) to names in ``symbols``;
    ``feature_axis`` is the axis that ``concat``, ``x[k]`` and ``softmax`` act on.
    """

    symbols: dict[str, sp.Symbol]
    dims: dict[str, sp.Symbol] = field(default_factory=dict)
    functions: dict[str, Callable[..., sp.Expr]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    feature_axis: int = 0
    ndim: dict[str, int] = field(default_factory=dict)
    # Optional: the symbolic shape of an expression (a tuple of dimensions). With
    # it, ``x[a:]`` runs to the end of the axis and ``x[-k:]`` counts from the end.
    shape_of: Callable[[sp.Expr], tuple] | None = None


def _reader(f):
    return lambda *xs: functions.rebuild(f, xs)


def default_functions(feature_axis: int) -> dict[str, Callable[..., sp.Expr]]:
    """The functions every formula may call, by name."""
    axis = sp.Integer(feature_axis)
    table: dict[str, Callable[..., sp.Expr]] = {
        name: _reader(row.function) for name, row in functions.FUNCTIONS.items()
    }
    table["concat"] = lambda *parts: ops.concat(axis, *parts)
    table["softmax"] = lambda z: ops.softmax(z, axis)
    table["dot"] = ops.matmul
    table["matmul"] = ops.matmul
    table["outer"] = ops.outer
    table["transpose"] = ops.transpose
    table["later"] = ops.later
    table["basis"] = lambda a, n, k, size: ops.basis(a, n, k, size)

    def total(x, axis=None, keepdims=False):
        if axis is None:
            raise TypeError("sum needs axis=")
        return ops.batch_sum(x, sp.Integer(axis), sp.Integer(int(keepdims)))

    table["sum"] = total

    def concatenate(*parts, axis=0):
        if not parts:
            raise TypeError("nothing to concatenate")
        return ops.concat(sp.Integer(axis), *parts)

    def power(x, k):
        if not (k.is_Number and abs(k) <= MAX_EXPONENT):
            raise ValueError(f"the exponent of `power` must be a number literal of magnitude at most {MAX_EXPONENT}")
        return bounded_power(x, k)

    def divide(a, b):
        return a / b

    table["concatenate"] = concatenate
    table["vstack"] = lambda *parts: concatenate(*parts, axis=0)
    table["hstack"] = lambda *parts: concatenate(*parts, axis=1)
    table["multiply"] = lambda a, b: a * b
    table["add"] = lambda a, b: a + b
    table["subtract"] = lambda a, b: a - b
    table["divide"] = divide
    table["square"] = lambda x: bounded_power(x, sp.Integer(2))
    table["power"] = power
    return table


def _bits(r: sp.Rational) -> int:
    return max(int(r.p).bit_length(), int(r.q).bit_length())


def bounded_power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    """``base ** exponent``, refused (ValueError naming the limit) when the
    result would be a constant of more than ``MAX_CONSTANT_BITS`` bits or carry
    an exponent above ``MAX_RESULT_EXPONENT``; checked before SymPy folds it."""
    if not exponent.is_Number:
        raise ValueError("an exponent must be a number")
    if base.is_Rational and exponent.is_Rational:
        if exponent.is_Integer:
            need = abs(int(exponent)) * _bits(base)
        else:
            need = _bits(base) * max(1, abs(int(exponent.p)))
        if need > MAX_CONSTANT_BITS:
            raise ValueError(f"the power folds to a constant of about {need} bits "
                             f"(the limit is {MAX_CONSTANT_BITS} bits)")
    inner = base.exp if isinstance(base, sp.Pow) and base.exp.is_Number else sp.Integer(1)
    if abs(float(inner)) * abs(float(exponent)) > MAX_RESULT_EXPONENT:
        raise ValueError(f"the powers multiply to an exponent of {sp.sstr(inner * exponent)} "
                         f"(the limit is {MAX_RESULT_EXPONENT})")
    out = base ** exponent
    if isinstance(out, sp.Pow) and out.exp.is_Number and abs(float(out.exp)) > MAX_RESULT_EXPONENT:
        raise ValueError(f"the powers multiply to an exponent of {sp.sstr(out.exp)} "
                         f"(the limit is {MAX_RESULT_EXPONENT})")
    return out


def check_constant(value: sp.Expr) -> sp.Expr:
    """``value`` if a folded constant fits ``MAX_CONSTANT_BITS`` (numerator and
    denominator), else ValueError naming the limit."""
    if value.is_Rational and _bits(value) > MAX_CONSTANT_BITS:
        raise ValueError(f"the formula folds to a constant of {_bits(value)} bits "
                         f"(the limit is {MAX_CONSTANT_BITS} bits)")
    return value


def _first_non_ascii(text: str) -> str | None:
    """A message for the first character outside ASCII, or None."""
    import unicodedata

    for i, ch in enumerate(text):
        if not ch.isascii():
            folded = unicodedata.normalize("NFKC", ch)
            hint = f"; Python would read it as `{folded}`" if folded != ch and folded.isascii() else ""
            return i, f"character `{ch}` (U+{ord(ch):04X}) is not ASCII{hint}: formulas are written in ASCII"
    return None


def parse(text: str, scope: Scope, on_node: Callable[[ast.AST, sp.Expr], None] | None = None) -> sp.Expr:
    """Parse one expression. Raises ExprError on anything outside the language.

    ``on_node(node, expr)``, if given, sees every node once it is read."""
    if not isinstance(text, str):
        raise ExprError(f"a formula must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"formula too long: {len(text)} characters (the limit is {MAX_LENGTH})")
    if "\x00" in text:
        raise ExprError("formula contains a NUL character")
    bad = _first_non_ascii(text.strip())
    if bad is not None:
        raise ExprError(bad[1], text.strip(), bad[0])
    # Python's own parser gives up on deep nesting with a clear message; the
    # pre-count keeps RecursionError out of the picture altogether.
    peak = bracket_depth(text)
    if peak > MAX_DEPTH:
        raise ExprError(f"formula nests brackets {peak} deep (the limit is {MAX_DEPTH})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        col = (exc.offset - 1) if exc.offset else None
        raise ExprError(f"not a formula: {exc.msg}", text.strip(), col) from None
    except (RecursionError, MemoryError):
        raise ExprError("not a formula: too many operators in one chain for Python's parser "
                        "(split it, or use parentheses)") from None
    except ValueError as exc:
        raise ExprError(f"not a formula: {exc}") from None
    return _Reader(text.strip(), scope, on_node).read(tree.body, 0)


def parse_equation(text: str, scope: Scope) -> tuple[str, sp.Expr]:
    """Parse ``name = expression``; returns the name and the parsed right side."""
    if not isinstance(text, str) or text.count("=") != 1 or "==" in text:
        raise ExprError("an equation is `name = expression`, with one `=`", str(text))
    lhs, rhs = text.split("=")
    name = lhs.strip()
    if not name.isidentifier():
        raise ExprError(f"the left side `{name}` is not a name", text, 0)
    return name, parse(rhs, scope)


def suggest(name: str, candidates) -> str:
    """A did-you-mean clause, or the empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""


class _Reader:
    def __init__(self, text: str, scope: Scope, on_node=None):
        self.text = text
        self.scope = scope
        self.on_node = on_node

    def fail(self, node: ast.AST, message: str) -> ExprError:
        return ExprError(message, self.text, getattr(node, "col_offset", None))

    def read(self, node: ast.AST, depth: int) -> sp.Expr:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"formula nests too deep: more than {MAX_DEPTH} levels of operations (the limit "
                                  f"is {MAX_DEPTH}; each `+` or `*` of a long sum or product is one more level)")
        method = getattr(self, "read_" + type(node).__name__, None)
        if method is None:
            raise self.fail(node, f"{_describe(node)} is not allowed in a formula")
        expr = method(node, depth + 1)
        if self.on_node is not None:
            self.on_node(node, expr)
        return expr

    # -- leaves ---------------------------------------------------------------
    def read_Name(self, node: ast.Name, depth: int) -> sp.Expr:
        return self.resolve(node.id, node)

    def resolve(self, name: str, node: ast.AST) -> sp.Expr:
        scope = self.scope
        name = scope.aliases.get(name, name)
        if name.startswith("__"):
            raise self.fail(node, f"`{name}`: double-underscore names are not allowed")
        if name in scope.symbols:
            return scope.symbols[name]
        if name in scope.dims:
            return scope.dims[name]
        if name in scope.functions:
            raise self.fail(node, f"`{name}` is a function; call it")
        known = list(scope.symbols) + list(scope.dims) + list(scope.aliases)
        raise self.fail(node, f"unknown symbol `{name}`{suggest(name, known)}")

    def read_Constant(self, node: ast.Constant, depth: int) -> sp.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(node, f"constant {value!r} is not a number")
        if isinstance(value, int):
            if abs(value) > 10**12:
                raise self.fail(node, "integer constant too large")
            return sp.Integer(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise self.fail(node, "constant is not finite")
        return sp.Float(value)

    # -- operators ------------------------------------------------------------
    def read_BinOp(self, node: ast.BinOp, depth: int) -> sp.Expr:
        if isinstance(node.op, ast.Pow):
            return self.read_power(node, depth)
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        left = self.read(node.left, depth)
        right = self.read(node.right, depth)
        try:
            return check_constant(op(left, right))
        except ValueError as exc:
            raise self.fail(node, str(exc)) from None

    def read_power(self, node: ast.BinOp, depth: int) -> sp.Expr:
        exponent = node.right
        sign = 1
        if isinstance(exponent, ast.UnaryOp) and isinstance(exponent.op, ast.USub):
            sign, exponent = -1, exponent.operand
        if not (isinstance(exponent, ast.Constant) and type(exponent.value) in (int, float)):
            raise self.fail(node.right, "an exponent must be a number literal")
        value = sign * exponent.value
        if abs(value) > MAX_EXPONENT:
            raise self.fail(node.right, f"exponent {value} is too large (at most {MAX_EXPONENT})")
        power = sp.Integer(value) if isinstance(value, int) else sp.nsimplify(value)
        try:
            return bounded_power(self.read(node.left, depth), power)
        except ValueError as exc:
            raise self.fail(node, str(exc)) from None

    def read_UnaryOp(self, node: ast.UnaryOp, depth: int) -> sp.Expr:
        operand = self.read(node.operand, depth)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")

    # -- attributes, calls, subscripts ------------------------------------------
    def read_Attribute(self, node: ast.Attribute, depth: int) -> sp.Expr:
        if node.attr == "T":
            return ops.transpose(self.read(node.value, depth))
        dotted = _dotted(node)
        if dotted is not None and dotted in self.scope.aliases:
            return self.resolve(dotted, node)
        raise self.fail(node, f"attribute `.{node.attr}` is not allowed (only `.T`)")

    def read_Call(self, node: ast.Call, depth: int) -> sp.Expr:
        name = _dotted(node.func)
        if name is None:
            raise self.fail(node, "only named functions may be called")
        if name.startswith("np.") or name.startswith("numpy."):
            name = name.split(".", 1)[1]
        builder = self.scope.functions.get(name)
        if builder is None:
            known = list(self.scope.functions)
            raise self.fail(node, f"unknown function `{name}`{suggest(name, known)}")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(node, "starred arguments are not allowed")
        keywords = {}
        for kw in node.keywords:
            if kw.arg not in _KEYWORDS.get(name, ()):
                raise self.fail(kw.value, f"`{name}` takes no keyword argument `{kw.arg}`")
            if not (isinstance(kw.value, ast.Constant) and type(kw.value.value) in (int, bool)):
                raise self.fail(kw.value, f"`{kw.arg}=` takes an integer or True/False literal")
            keywords[kw.arg] = kw.value.value
        if name in _SEQUENCE_FUNCTIONS:
            if len(node.args) != 1 or not isinstance(node.args[0], (ast.List, ast.Tuple)):
                raise self.fail(node, f"`{name}` takes one list of arrays: `{name}([a, b])`")
            items = node.args[0].elts
            if any(isinstance(a, ast.Starred) for a in items):
                raise self.fail(node, "starred arguments are not allowed")
            args = [self.read(a, depth) for a in items]
        else:
            args = [self.read(a, depth) for a in node.args]
        try:
            return builder(*args, **keywords)
        except TypeError:
            raise self.fail(node, f"wrong number of arguments to `{name}`") from None
        except ValueError as exc:
            raise self.fail(node, str(exc)) from None

    def read_Subscript(self, node: ast.Subscript, depth: int) -> sp.Expr:
        base = self.read(node.value, depth)
        index = node.slice
        items = list(index.elts) if isinstance(index, ast.Tuple) else [index]
        chosen = [(axis, item) for axis, item in enumerate(items) if not _full_slice(item)]
        if len(chosen) != 1:
            raise self.fail(node, "index exactly one axis: `x[k]`, `x[a:b]` or `W[:, a:b]`")
        axis, item = chosen[0]
        if len(items) == 1:
            axis = self.scope.feature_axis
        if isinstance(item, ast.Slice):
            if item.step is not None:
                raise self.fail(item, "slice steps are not allowed")
            start = self.read(item.lower, depth) if item.lower is not None else sp.Integer(0)
            stop = self.read(item.upper, depth) if item.upper is not None else None
            if stop is None or start.could_extract_minus_sign() or (stop.could_extract_minus_sign()):
                extent = self.extent(base, axis, item)
                if stop is None:
                    stop = extent
                if start.could_extract_minus_sign():
                    start = extent + start
                if stop.could_extract_minus_sign():
                    stop = extent + stop
            return ops.take(base, sp.Integer(axis), start, stop)
        return ops.pick(base, sp.Integer(axis), self.read(item, depth))


    def extent(self, base: sp.Expr, axis: int, item: ast.AST) -> sp.Expr:
        """The length of ``base`` along ``axis``, for open or negative slice ends."""
        if self.scope.shape_of is None:
            raise self.fail(item, "write the end of the slice (`a:b`)")
        try:
            shape = self.scope.shape_of(base)
        except Exception as exc:  # the caller's shape error, reported at the slice
            raise self.fail(item, f"cannot slice: {exc}") from None
        if not shape:
            raise self.fail(item, "cannot slice a number")
        return shape[min(axis, len(shape) - 1)]


def _full_slice(item: ast.AST) -> bool:
    return isinstance(item, ast.Slice) and item.lower is None and item.upper is None and item.step is None


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` as text, for Name/Attribute chains only."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _describe(node: ast.AST) -> str:
    names = {
        "Lambda": "a lambda",
        "ListComp": "a comprehension",
        "GeneratorExp": "a generator",
        "DictComp": "a comprehension",
        "SetComp": "a comprehension",
        "JoinedStr": "an f-string",
        "Compare": "a comparison",
        "BoolOp": "a boolean operator",
        "IfExp": "a conditional expression",
        "NamedExpr": "an assignment expression",
        "List": "a list",
        "Tuple": "a tuple",
        "Dict": "a dict",
        "Set": "a set",
        "Await": "await",
        "Yield": "yield",
    }
    return names.get(type(node).__name__, f"`{type(node).__name__}`")

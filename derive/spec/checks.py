"""The checks a spec's values pass before they become a cell: hostile input.

Contract. :class:`ValueChecks` is mixed into the spec loader (which provides
``fail(message) -> SpecError``); each method returns the value when it is
what the format says, else raises that error naming what and where:
:meth:`~ValueChecks.name` (an ASCII identifier, no Python keyword, not a name
the generated code uses itself: it becomes code), :meth:`~ValueChecks.text`
(one printable line: it is quoted in docstrings and comments),
:meth:`~ValueChecks.latex` (the whitelist of :mod:`derive.spec.texsafe`),
:meth:`~ValueChecks.shape_entry` (a dimension, an integer 1..``MAX_DIM``, or
sums and products of them). The ``MAX_*`` limits bound a spec's size; every
refusal names its limit.
"""

from __future__ import annotations

import keyword
from typing import Any

import sympy as sp

from derive.errors import ExprError
from derive.spec.expr import Scope, parse
from derive.spec.texsafe import TexError, check_math

MAX_BYTES = 64_000
MAX_EQUATIONS = 50
MAX_SYMBOLS = 300
# functions applied inside functions in one equation (`tanh(sigmoid(...))` is 2): the
# derivative of tanh nested n deep costs SymPy about 3^n (8 deep: 3 s of CPU), and no
# cell nests more than 2; 50 equations nesting tanh 4 deep took 5.5 s, 3 deep 2.9 s
MAX_NESTED_CALLS = 3
MAX_DIM = 4096
MAX_NAME = 64
MAX_TEXT = 2000
# names a generated module uses itself: a symbol of that name would shadow them
RESERVED = frozenset({"np", "numpy", "math", "self", "params", "cache", "grads"})


class ValueChecks:
    """Checks of single values, for the spec loader (which defines ``fail``)."""

    def name(self, what: str, value: Any) -> str:
        """``value`` if it is a name code can carry (ASCII identifier, no keyword)."""
        if not isinstance(value, str):
            raise self.fail(f"{what} must be a name (text), not {type_name(value)}")
        if not (value.isascii() and value.isidentifier()):
            raise self.fail(f"{what} `{shown(value)}` is not a name: ASCII letters, digits and `_`, "
                            "not starting with a digit")
        if keyword.iskeyword(value):
            raise self.fail(f"{what} `{value}` is a Python keyword")
        if value in RESERVED:
            raise self.fail(f"{what} `{value}` is a name the generated code uses itself; choose another")
        if len(value) > MAX_NAME:
            raise self.fail(f"{what} `{value[:20]}...` is longer than {MAX_NAME} characters")
        return value

    def text(self, what: str, value: Any, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(f"{what} must be text, not {type_name(value)}")
        for i, ch in enumerate(value):
            if not ch.isprintable():
                raise self.fail(f"{what}: character U+{ord(ch):04X} at position {i} is not printable "
                                "(one line of text, no control characters)")
        if len(value) > MAX_TEXT:
            raise self.fail(f"{what} is {len(value)} characters long (the limit is {MAX_TEXT})")
        return value

    def latex(self, what: str, value: str) -> str:
        try:
            return check_math(value)
        except TexError as exc:
            raise self.fail(f"{what}: {exc}") from None

    def shape_entry(self, name: str, d: Any, dim_scope: Scope) -> sp.Expr:
        """One entry of a shape: an integer 1..MAX_DIM, or a dimension name, or a
        sum or product of dimensions and such integers (``"m + n"``, ``"4*H"``)."""
        where = f"symbol `{name}`: shape entry `{shown(str(d))}`"
        if isinstance(d, bool) or not isinstance(d, (int, str)):
            raise self.fail(f"{where} must be a positive integer or a dimension, not {type_name(d)}")
        if isinstance(d, int):
            if not 1 <= d <= MAX_DIM:
                raise self.fail(f"{where} must be an integer from 1 to {MAX_DIM}")
            return sp.Integer(d)
        if len(d) > 200:
            raise self.fail(f"{where} is longer than 200 characters")
        try:
            value = parse(d, dim_scope)
        except ExprError as exc:
            raise self.fail(f"{where}: {exc.message}") from None
        if not _dimension_like(value):
            raise self.fail(f"{where} must be a dimension, a positive integer up to {MAX_DIM}, or a sum or "
                            "product of them")
        return value


def type_name(value: Any) -> str:
    """How a TOML value's type is named in a message."""
    return {str: "text", int: "an integer", float: "a number", bool: "true/false", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def shown(text: str) -> str:
    """User text safe to quote in a one-line message: no control characters, short."""
    text = "".join(ch if ch.isprintable() else "\\x%02x" % ord(ch) if ord(ch) < 256 else "\\u%04x" % ord(ch)
                   for ch in str(text))
    return text if len(text) <= 60 else text[:57] + "..."


def _dimension_like(value: sp.Expr) -> bool:
    """A positive integer up to MAX_DIM, a dimension, or sums and products of them."""
    if value.is_Integer:
        return 1 <= int(value) <= MAX_DIM
    if isinstance(value, sp.Symbol):
        return True
    if isinstance(value, (sp.Add, sp.Mul)):
        return all(_dimension_like(a) for a in value.args)
    return False



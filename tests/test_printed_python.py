"""Printed equations are valid Python (issue 13, item 10).

In Python ``*``, ``/`` and ``@`` share one precedence level, read left to
right, so ``a*b @ W*c`` is ``((a*b) @ W)*c``. Every equation the project
prints (``show``, listings, module docstrings, verdicts: all go through
:func:`derive.spec.pyprint.to_python`) must read back through
:mod:`derive.spec.expr` to the very expression it was printed from: for every
preset, the examples, specs with a projection, and random expressions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from derive.derivation import derive, presets
from derive.spec import ops
from derive.spec.expr import Scope, default_functions, parse
from derive.spec.pyprint import equation_text, to_python
from derive.verifier.context import context

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*.toml"))

# An LSTM with a projection (torch's proj_size), batch in rows: h = (o*tanh(c)) @ W_hr.T
PROJECTION = '''\
name = "projected"
title = "LSTM with a projection"
layout = "rows"
batch = "N"
forward = [
  { eq = "i = sigmoid(x @ W_i.T + h_prev @ U_i.T + b_i)" },
  { eq = "f = sigmoid(x @ W_f.T + h_prev @ U_f.T + b_f)" },
  { eq = "g = tanh(x @ W_g.T + h_prev @ U_g.T + b_g)" },
  { eq = "o = sigmoid(x @ W_o.T + h_prev @ U_o.T + b_o)" },
  { eq = "c = f * c_prev + i * g" },
  { eq = "h = (o * tanh(c)) @ W_hr.T" },
]
[dims]
D = "input size"
H = "cell size"
P = "projection size"
N = "batch size"
[symbols]
x      = { role = "input", shape = ["N", "D"] }
h_prev = { role = "state", shape = ["N", "P"] }
c_prev = { role = "state", shape = ["N", "H"] }
W_i = { role = "param", shape = ["H", "D"] }
W_f = { role = "param", shape = ["H", "D"] }
W_g = { role = "param", shape = ["H", "D"] }
W_o = { role = "param", shape = ["H", "D"] }
U_i = { role = "param", shape = ["H", "P"] }
U_f = { role = "param", shape = ["H", "P"] }
U_g = { role = "param", shape = ["H", "P"] }
U_o = { role = "param", shape = ["H", "P"] }
b_i = { role = "param", shape = ["H"] }
b_f = { role = "param", shape = ["H"] }
b_g = { role = "param", shape = ["H"] }
b_o = { role = "param", shape = ["H"] }
W_hr = { role = "param", shape = ["P", "H"] }
[[recurrent]]
out = "h"
prev = "h_prev"
grad = "dh"
[[recurrent]]
out = "c"
prev = "c_prev"
grad = "dc"
[loss]
kind = "upstream"
on = "h"
external = "dy"
'''


@pytest.fixture(scope="module")
def projection(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "projected.toml"
    path.write_text(PROJECTION)
    return str(path)


def _round_trip(name_or_path: str) -> int:
    d = derive(name_or_path)
    scope = context(d).scope()
    equations = list(d.forward) + list(d.backward)
    equations += [sp.Eq(sp.Symbol(n), d.closed_form(n), evaluate=False) for n in d.names()]
    for eq in equations:
        text = equation_text(eq)
        ast.parse(text)  # valid Python
        lhs, _, rhs = text.partition(" = ")
        assert parse(rhs, scope) == eq.rhs, f"{d.name}: `{text}` reads back as `{to_python(parse(rhs, scope))}`"
    return len(equations)


@pytest.mark.parametrize("name", presets())
def test_every_preset_equation_reads_back(name):
    assert _round_trip(name) > 0


@pytest.mark.parametrize("path", EXAMPLES, ids=[Path(p).stem for p in EXAMPLES])
def test_every_example_equation_reads_back(path):
    assert _round_trip(path) > 0


def test_projection_equations_read_back(projection):
    assert _round_trip(projection) > 0
    d = derive(projection)
    # the product that was printed wrong: (dh @ W_hr)*tanh(c) has a factor that is a matmul
    text = to_python(d.closed_form("dz_o"))
    assert "(dh @ W_hr)" in text, text


_a, _b, _W, _U = sp.symbols("a b W U")
_LEAVES = st.sampled_from([_a, _b, _W, _U, sp.Integer(1), sp.Integer(2)])


def _extend(children):
    unary = st.sampled_from([lambda x: -x, ops.transpose, sp.tanh, ops.sigmoid, lambda x: x**2, lambda x: 1 - x])
    binary = st.sampled_from([lambda x, y: x * y, lambda x, y: x + y, lambda x, y: x - y,
                              lambda x, y: x / y, ops.matmul])
    return st.one_of(st.builds(lambda f, x: f(x), unary, children),
                     st.builds(lambda f, x, y: f(x, y), binary, children, children))


def _meaningful(expr) -> bool:
    """No division by zero, no transposed number: nothing a cell produces."""
    return not expr.has(sp.zoo, sp.nan, sp.oo) and not any(t.args[0].is_Number for t in expr.atoms(ops.transpose))


_EXPRESSIONS = st.recursive(_LEAVES, _extend, max_leaves=8).filter(_meaningful)
_SCOPE = Scope(symbols={s.name: s for s in (_a, _b, _W, _U)}, functions=default_functions(0))


@settings(max_examples=300, deadline=None)
@given(_EXPRESSIONS)
def test_random_expressions_read_back(expr):
    text = to_python(expr)
    got = parse(text, _SCOPE)
    # SymPy distributes a sign over a sum as it reads -(a + b): equal up to
    # expansion, which never looks through a matrix product's grouping
    # and the reader may cancel what the expression kept (2*(a/2 + b/2)/(a + b) reads as 1)
    assert got == expr or sp.expand(got - expr) == 0 or sp.cancel(got - expr) == 0, \
        f"`{text}` reads back as `{to_python(got)}`"


@pytest.mark.parametrize("expr, text", [
    (_a * ops.matmul(_b, _W) * _U, "U*a*(b @ W)"),
    (-ops.matmul(_b, _W), "-(b @ W)"),
    (-_a * ops.matmul(_b, _W), "-a*(b @ W)"),
    (ops.matmul(_a * _b, _W), "(a*b) @ W"),
    (ops.matmul(_a, ops.matmul(_b, _W)), "a @ (b @ W)"),
    (ops.matmul(ops.matmul(_a, _b), _W), "a @ b @ W"),
    (-_a / ops.matmul(_a, _a), "-a/(a @ a)"),  # found by the random test: was -a/a @ a
    (-_a * _b / ops.matmul(_a, _W), "-a*b/(a @ W)"),
])
def test_matrix_products_inside_products_are_parenthesised(expr, text):
    assert to_python(expr) == text

"""derive.numeric.unrolled.derivative, the write-ups' unrolled derivative, is
SymPy's derivative: it equals ``sympy.diff`` of the whole expression, evaluated
in 40-digit mpmath, on the unrolled losses of presets and on expressions with
shared subexpressions and every function of the table."""

from __future__ import annotations

import mpmath
import pytest
import sympy as sp

import derive
from derive.numeric import evaluate as ev
from derive.numeric import unrolled
from derive.spec import functions

W = sp.Symbol("w", real=True)


def _both(expr, at):
    with mpmath.workdps(unrolled.DPS):
        ours = unrolled.derivative(expr, W, at)
        theirs = unrolled._mp_value(sp.diff(expr, W), {W: at})
    return ours, theirs


def _unrolled_loss(name):
    d = derive.derive(name)
    dims = {x: unrolled.SIZE for x in d.cell.dims}
    param, index = unrolled.choose(d)
    exact = unrolled._sequence(d, dims)
    with mpmath.workdps(unrolled.DPS):
        symbolic = unrolled._convert(exact, lambda r: sp.Float(r, unrolled.DPS))
        arr = symbolic.params[param].copy()
        arr[index] = W
        symbolic.params[param] = arr
        loss = ev.loss(d, symbolic, ev.SYMBOLIC)
    value = exact.params[param][index]
    return loss, mpmath.mpf(value.p) / value.q


@pytest.mark.parametrize("name", ["elman", "elman_relu", "minchar", "gru", "coursera"])
def test_the_unrolled_loss_derivative_is_sympy_diff(name):
    loss, at = _unrolled_loss(name)
    ours, theirs = _both(loss, at)
    assert theirs != 0
    assert abs(ours - theirs) <= abs(theirs) * mpmath.mpf("1e-35")


def test_a_shared_subexpression_counts_once_per_consumer():
    """s is read by three consumers; forgetting one, or counting its own
    derivative twice, changes the number."""
    s = sp.tanh(3 * W + sp.Rational(1, 5))
    expr = s * sp.exp(s) + sp.log(1 + s**2) / (2 + s)
    ours, theirs = _both(expr, mpmath.mpf("0.3"))
    assert abs(ours - theirs) <= abs(theirs) * mpmath.mpf("1e-35")
    with mpmath.workdps(unrolled.DPS):
        h = mpmath.mpf("1e-12")
        f = sp.Lambda(W, expr)
        fd = (unrolled._mp_value(f(sp.Float("0.3", 40) + sp.Float(h, 40)), {}) -
              unrolled._mp_value(f(sp.Float("0.3", 40) - sp.Float(h, 40)), {})) / (2 * h)
    assert abs(ours - fd) <= abs(fd) * mpmath.mpf("1e-15")


@pytest.mark.parametrize("row", sorted(functions.FUNCTIONS), ids=str)
def test_every_function_of_the_table(row):
    f = functions.FUNCTIONS[row]
    # (heaviside's second argument is its value at 0, a constant)
    second = sp.S.Half if row == "heaviside" else 2 * W + sp.Rational(1, 7)
    inner = [sp.Rational(1, 3) + W**2, second][: f.arity]
    node = f.sympy(*inner) if f.arity > 1 else f.sympy(inner[0])
    expr = node * (1 + W) + node**2
    ours, theirs = _both(expr, mpmath.mpf("0.45"))
    assert abs(ours - theirs) <= max(abs(theirs), 1) * mpmath.mpf("1e-35")


def test_a_head_without_expression_arguments_is_differentiated_whole():
    """Piecewise takes (expression, condition) pairs, not placeholders: that node's
    derivative is SymPy's diff of the node itself."""
    expr = sp.Piecewise((W**2, W > 0), (W, True)) * sp.tanh(W) + sp.exp(W)
    ours, theirs = _both(expr, mpmath.mpf("0.3"))
    assert abs(ours - theirs) <= abs(theirs) * mpmath.mpf("1e-35")

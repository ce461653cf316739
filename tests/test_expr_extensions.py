"""derive.spec.expr additions for the verifier: the per-node hook, open-ended and
negative slices, list arguments of concatenate/vstack/hstack, and a few more
NumPy elementwise functions. The existing contract is unchanged."""

from __future__ import annotations

import ast

import pytest
import sympy as sp

from derive.spec import ops
from derive.errors import ExprError
from derive.spec.expr import Scope, default_functions, parse

a, b, W, dxc = sp.symbols("a b W dxc")
n, k = sp.symbols("n k", positive=True, integer=True)
SHAPES = {"a": (n, 3), "b": (n, 3), "W": (n, n + k), "dxc": (n + k,)}


def scope(with_shapes=True, feature_axis=0):
    def shape_of(e):
        from derive.spec.shapes import shape_of as infer

        return infer(e, {**SHAPES, "n": (), "k": ()})

    return Scope(symbols={"a": a, "b": b, "W": W, "dxc": dxc}, dims={"n": n, "k": k},
                 functions=default_functions(feature_axis), aliases={"self.param.x_dim": "k", "self.state.a": "a"},
                 feature_axis=feature_axis, shape_of=shape_of if with_shapes else None)


def test_existing_behaviour_is_unchanged():
    s = scope(with_shapes=False)
    assert parse("W[:, :n].T @ a", s) == ops.matmul(ops.transpose(ops.take(W, 1, 0, n)), a)
    assert parse("np.sum(a, axis=1, keepdims=True)", s) == ops.batch_sum(a, 1, 1)
    assert parse("self.state.a * b", s) == a * b
    with pytest.raises(ExprError, match="write the end of the slice"):
        parse("dxc[k:]", s)
    with pytest.raises(ExprError, match="a list is not allowed"):
        parse("[a, b]", s)


def test_on_node_sees_every_node_bottom_up_and_its_errors_propagate():
    seen = []
    parse("a * (b + 1)", scope(), on_node=lambda node, expr: seen.append((type(node).__name__, expr)))
    assert [name for name, _ in seen] == ["Name", "Name", "Constant", "BinOp", "BinOp"]
    assert seen[-1][1] == a * (b + 1)

    class Stop(Exception):
        pass

    def hook(node, expr):
        if isinstance(node, ast.BinOp):
            raise Stop(node.col_offset)

    with pytest.raises(Stop) as exc:
        parse("a + b", scope(), on_node=hook)
    assert exc.value.args == (0,)


def test_open_ended_and_negative_slices_with_shapes():
    s = scope()
    assert parse("dxc[self.param.x_dim:]", s) == ops.take(dxc, 0, k, n + k)
    assert parse("dxc[:self.param.x_dim]", s) == ops.take(dxc, 0, 0, k)
    assert parse("W[:, -k:]", s) == ops.take(W, 1, n, n + k)
    assert parse("W[:, :-k]", s) == ops.take(W, 1, 0, n)
    with pytest.raises(ExprError, match="steps"):
        parse("W[:, ::2]", s)


def test_concatenate_vstack_hstack_take_one_list():
    s = scope()
    assert parse("np.concatenate([a, b])", s) == ops.concat(0, a, b)
    assert parse("np.concatenate((a, b), axis=1)", s) == ops.concat(1, a, b)
    assert parse("np.vstack([a, b])", s) == ops.concat(0, a, b)
    assert parse("np.hstack([a.T, b.T])", s) == ops.concat(1, ops.transpose(a), ops.transpose(b))
    for bad, message in (("np.concatenate(a, b)", "one list"), ("np.concatenate([*a])", "starred"),
                         ("np.concatenate([a, b], axis=n)", "literal"), ("np.vstack([a], axis=0)", "keyword")):
        with pytest.raises(ExprError, match=message):
            parse(bad, s)


def test_more_numpy_elementwise_functions():
    s = scope()
    assert parse("np.multiply(a, b)", s) == a * b
    assert parse("np.add(a, b) - np.subtract(a, b)", s) == 2 * b
    assert parse("np.divide(a, b)", s) == a / b
    assert parse("np.square(np.tanh(a))", s) == sp.tanh(a) ** 2
    assert parse("np.power(a, 3)", s) == a**3
    with pytest.raises(ExprError, match="exponent"):
        parse("np.power(a, 99)", s)
    with pytest.raises(ExprError, match="exponent"):
        parse("np.power(a, b)", s)

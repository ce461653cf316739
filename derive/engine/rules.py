"""Derivative rules: one row per node kind, and one per loss head.

Contract. A rule receives the node, the node's adjoint ``g`` (dL/d node, a SymPy
expression) and the shapes of everything, and returns one :class:`Term` per
argument: the contribution of this node to that argument's adjoint. This is
the vector-Jacobian product of the node, written as array algebra:

    elementwise  v = e(a, b, …)    d[a] += unbroadcast(g ⊙ ∂e/∂a)      (∂ by SymPy, per unit)
    matmul       v = A @ B         d[A] += g @ Bᵀ,   d[B] += Aᵀ @ g     (outer products for 1-D)
    transpose    v = Aᵀ            d[A] += gᵀ
    concat       v = [a; b; …]     d[a] += g[rows of a], …
    take         v = x[s:e]        (appears only in formulas, never in a cell)

``unbroadcast`` sums over the axes NumPy broadcast: a bias of shape (n, 1)
added to (n, m) collects ``Σ_batch g``. The loss heads are rows of
:data:`LOSS_RULES`: each gives the loss value of one step and the adjoint it
seeds into the head (softmax with cross-entropy seeds the pre-activation with
``ŷ − y`` directly, the classic fused rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import sympy as sp

from derive.spec import functions, ops
from derive.spec.shapes import Shape, infer_shape

Shapes = Mapping[str, Shape]


@dataclass(frozen=True)
class Node:
    """One step of the lowered forward graph: ``name = expr``.

    ``kind`` selects the rule; ``args`` are the names of the arrays ``expr``
    reads. ``hidden`` nodes are temporaries (a matrix product inside a
    pre-activation) whose adjoints are always inlined.
    """

    name: str
    kind: str
    expr: sp.Expr
    args: tuple[str, ...]
    equation: str
    hidden: bool = False
    preact_of: str | None = None  # set on the pre-activation node z of gate v


@dataclass(frozen=True)
class Term:
    """``arg``'s adjoint receives ``contribution`` from ``node``.

    ``partial`` is the local partial ∂node/∂arg when it is an elementwise
    factor (so the chain rule reads ``g ⊙ partial``); None for linear maps,
    whose contribution shows the map itself (``Wᵀ @ g``).
    """

    node: str
    arg: str
    contribution: sp.Expr
    partial: sp.Expr | None


# ---------------------------------------------------------------------------
# the node rules


def unbroadcast(x: sp.Expr, arg_shape: Shape, out_shape: Shape) -> sp.Expr:
    """Sum x (shaped like out_shape) down to arg_shape, as broadcasting's adjoint."""
    lead = len(out_shape) - len(arg_shape)
    for axis in range(lead):
        x = ops.batch_sum(x, sp.Integer(axis), sp.Integer(0))
    for i, d in enumerate(arg_shape):
        if d == 1 and not out_shape[lead + i] == 1:
            x = ops.batch_sum(x, sp.Integer(i), sp.Integer(1))
    return x


def elementwise_rule(node: Node, g: sp.Expr, shapes: Shapes, forward_values: Mapping) -> list[Term]:
    terms = []
    for name in node.args:
        partial = functions.diff(node.expr, sp.Symbol(name)).xreplace(forward_values)
        if partial == 0:
            continue
        contribution = unbroadcast(g * partial, shapes[name], shapes[node.name])
        terms.append(Term(node.name, name, contribution, partial))
    return terms


def matmul_rule(node: Node, g: sp.Expr, shapes: Shapes, forward_values: Mapping) -> list[Term]:
    a, b = node.expr.args
    sa, sb = infer_shape(a, shapes), infer_shape(b, shapes)
    if len(sa) == 2 and len(sb) == 1:  # W @ v: dW = g ⊗ v
        da, db = ops.outer(g, b), ops.matmul(ops.transpose(a), g)
    elif len(sa) == 1 and len(sb) == 2:  # v @ W: dv = W @ g, dW = v ⊗ g
        da, db = ops.matmul(b, g), ops.outer(a, g)
    else:
        da, db = ops.matmul(g, ops.transpose(b)), ops.matmul(ops.transpose(a), g)
    return [_to_operand(node, a, da), _to_operand(node, b, db)]


def _to_operand(node: Node, operand: sp.Expr, d: sp.Expr) -> Term:
    """An operand written ``W.T`` passes the transposed adjoint to W: d[W] += (d[Wᵀ])ᵀ."""
    if isinstance(operand, ops.transpose):
        return Term(node.name, str(operand.args[0]), ops.transpose(d), None)
    return Term(node.name, str(operand), d, None)


def transpose_rule(node: Node, g: sp.Expr, shapes: Shapes, forward_values: Mapping) -> list[Term]:
    (a,) = node.expr.args
    return [Term(node.name, str(a), ops.transpose(g), None)]


def concat_rule(node: Node, g: sp.Expr, shapes: Shapes, forward_values: Mapping) -> list[Term]:
    axis, *parts = node.expr.args
    terms, start = [], sp.Integer(0)
    for part in parts:
        shape = shapes[str(part)]
        ax = min(int(axis), len(shape) - 1)
        stop = start + shape[ax]
        terms.append(Term(node.name, str(part), ops.take(g, axis, start, stop), None))
        start = stop
    return terms


RULES: dict[str, Callable[[Node, sp.Expr, Shapes, Mapping], list[Term]]] = {
    "elementwise": elementwise_rule,
    "matmul": matmul_rule,
    "transpose": transpose_rule,
    "concat": concat_rule,
}

# The array op that makes a node of each kind (elementwise is everything else).
KIND_OF_OP = {ops.matmul: "matmul", ops.transpose: "transpose", ops.concat: "concat"}


# ---------------------------------------------------------------------------
# the loss heads


@dataclass(frozen=True)
class LossRule:
    """``value(pred, target, axis, unit, n)``: the loss of one step, summed over
    units and batch. ``seed(...)``: the adjoint it starts the head with, and
    ``seeds_preact`` says whether that is the adjoint of the prediction's
    pre-activation (fused softmax + cross-entropy) or of the prediction."""

    value: Callable[..., sp.Expr]
    seed: Callable[..., sp.Expr]
    seeds_preact: bool


def _se_value(p, y, axis, unit, n):
    diff = (ops.pick(p, axis, unit) if unit is not None else p) - y
    return diff**2


def _se_seed(p, y, axis, unit, n, ndim=1):
    if unit is None:
        return 2 * (p - y)
    return 2 * (ops.pick(p, axis, unit) - y) * ops.basis(axis, sp.Integer(ndim), sp.Integer(unit), n)


LOSS_RULES: dict[str, LossRule] = {
    # l = −Σ y ⊙ log ŷ with ŷ = softmax(z):  dl/dz = ŷ − y
    "cross_entropy": LossRule(
        value=lambda p, y, axis, unit, n: -y * sp.log(p),
        seed=lambda p, y, axis, unit, n, ndim=1: p - y,
        seeds_preact=True,
    ),
    # l = Σ (ŷ − y)²  (or (ŷ_k − y)² on one unit k):  dl/dŷ = 2 (ŷ − y) (e_k)
    "squared_error": LossRule(value=_se_value, seed=_se_seed, seeds_preact=False),
}

"""In-memory NumPy kernels of a derivation, built with ``sympy.lambdify(cse=True)``.

Contract. :func:`kernels` (also ``Derivation.kernels()``) turns a derivation
into NumPy callables, without writing any file:

- ``step_forward(env)``: one step forward. ``env`` maps names to arrays (the
  parameters, the step's inputs and targets, the previous states); the result
  maps every forward value (cell and loss head) to its array.
- ``step_backward(env)``: one step backward, head included. ``env`` holds the
  step's forward values and, for every recurrent link, ``later(x)`` as the
  name ``"later:" + x`` (x of step t+1, zero after the last step; missing
  means zero). The result maps every backward quantity of the derivation to its
  value at this step; for a parameter that is the step's contribution to the
  sum over t.
- ``cell_backward(env)``: the cell's own equations for one step, given the
  gradients that reach it from outside (``derivation.cell_inputs``, e.g. the
  course's ``da_next`` and ``dc_next``, nothing else): exactly what a
  from-scratch ``lstm_cell_backward`` computes. The loss head's gradients
  (``dzy``, ``dWy``, ...) are not part of it.
- ``forward(seq)``, ``backward(envs, truncate=None)``, ``run(seq,
  truncate=None)``: whole sequences, with the same conventions as
  :func:`derive.numeric.evaluate.run` (an ``evaluate.Sequence`` in, ``(loss,
  gradients)`` out, input gradients keyed by ``(name, t)``, ``truncate=k`` for
  BPTT(k)), through the one backward loop :func:`derive.numeric.evaluate.bptt`.

Every callable is ``lambdify`` of the derivation's own equations, each
equation's earlier names substituted so that one common-subexpression pass
(``cse=True``) sees the whole step. The array operations of :mod:`derive.spec.ops`
map to NumPy through :data:`NUMPY_OPS`, one row each. Arrays keep their
dtype: float32 in, float32 out. Dimensions (``n_a``, ``x_dim``, …) are read
off the arrays' shapes.

This is the quick path (no files, a few hundred milliseconds to build): the
tests and the verifier use it. The fast path is the emitted modules of
:mod:`derive.codegen.render`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence as Seq

import numpy as np
import sympy as sp

from derive.spec import functions, ops
from derive.numeric.evaluate import bptt, chain_equations, check_truncate, gradients

LATER = "later:"


# ---------------------------------------------------------------------------
# the array operations, as NumPy (one row per op of derive.spec.ops)


def stable_sigmoid(z):
    """σ(z) = (1 + tanh(z/2)) / 2: no overflow and no warning at any |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _axis(x, axis) -> int:
    return min(int(axis), max(np.ndim(x) - 1, 0))


def _concat(axis, *parts):
    return np.concatenate(parts, axis=_axis(parts[0], axis))


def _take(x, axis, start, stop):
    index = [slice(None)] * np.ndim(x)
    index[_axis(x, axis)] = slice(int(start), int(stop))
    return x[tuple(index)]


def _softmax(z, axis):
    axis = _axis(z, axis)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _pick(x, axis, k):
    return np.take(x, [int(k)], axis=_axis(x, axis))


def _basis(axis, ndim, k, n):
    shape = [1] * int(ndim)
    shape[int(axis)] = int(n)
    out = np.zeros(shape, np.int8)  # integers: multiplying a float32 array keeps it float32
    out[tuple(int(k) if i == int(axis) else 0 for i in range(int(ndim)))] = 1
    return out


_HEAVISIDE = sp.Function("heaviside")

NUMPY_OPS: dict[str, Callable] = {
    "heaviside": np.heaviside,  # keeps float32 float32
    # the elementwise functions by their class names (derive.spec.functions), then the array ops
    **{row.function.__name__: row.float64 for row in functions.FUNCTIONS.values() if isinstance(row.function, type)
       and issubclass(row.function, sp.Function) and row.function.__module__.startswith("derive.")},
    "sigmoid": stable_sigmoid,
    "matmul": np.matmul,
    "transpose": np.transpose,
    "outer": np.outer,
    "concat": _concat,
    "take": _take,
    "batch_sum": lambda x, axis, keep: np.sum(x, axis=int(axis), keepdims=bool(keep)),
    "softmax": _softmax,
    "pick": _pick,
    "basis": _basis,
}


# ---------------------------------------------------------------------------
# one lambdified block of equations


class _Block:
    """``names = exprs`` as one lambdified function of the names it reads."""

    def __init__(self, equations: Seq[tuple[str, sp.Expr]], known: Mapping[str, sp.Expr] | None = None):
        self.names = [n for n, _ in equations]
        defined: dict[sp.Symbol, sp.Expr] = dict(known or {})
        exprs = []
        for name, rhs in equations:
            full = rhs.xreplace(defined)
            defined[sp.Symbol(name)] = full
            exprs.append(full)
        free = set().union(*(e.free_symbols for e in exprs)) if exprs else set()
        self.args = sorted((s for s in free), key=lambda s: s.name)
        # Plain, assumption-free symbols, so that the printed names are just the names.
        plain = {s: sp.Symbol(s.name) for s in self.args}
        exprs = [e.xreplace(plain) for e in exprs]
        self.args = [plain[s] for s in self.args]
        self._safe = {s: sp.Dummy(s.name.replace(":", "_")) for s in self.args if not s.name.isidentifier()}
        exprs = [e.xreplace(self._safe) for e in exprs]
        # the step of relu' as np.heaviside (SymPy's printer spells it as a float64 select)
        exprs = [e.replace(sp.Heaviside, _HEAVISIDE) for e in exprs]
        params = [self._safe.get(s, s) for s in self.args]
        self.fn = sp.lambdify(params, exprs, modules=[NUMPY_OPS, "numpy"], cse=True, docstring_limit=0)
        self.arg_names = [s.name for s in self.args]

    def __call__(self, env: Mapping[str, Any]) -> dict[str, Any]:
        try:
            values = [env[n] for n in self.arg_names]
        except KeyError as exc:
            raise KeyError(f"no value for `{exc.args[0]}`") from None
        return dict(zip(self.names, self.fn(*values)))


def _later_free(rhs: sp.Expr) -> sp.Expr:
    return rhs.xreplace({a: sp.Symbol(LATER + str(a.args[0])) for a in rhs.atoms(ops.later)})


def _contribution(rhs: sp.Expr) -> sp.Expr:
    return rhs.function if isinstance(rhs, sp.Sum) else rhs


# ---------------------------------------------------------------------------
# the kernels


@dataclass
class Kernels:
    """NumPy callables of one derivation (see the module docstring)."""

    derivation: Any
    _forward: _Block
    _backward: _Block
    _cell: _Block
    _carry: _Block | None = None  # the cell's equations down to the state gradients, for BPTT(k)

    # -- one step ----------------------------------------------------------------
    def step_forward(self, env: Mapping[str, Any]) -> dict[str, Any]:
        return self._forward(_with_dims(self.derivation.cell, env))

    def step_backward(self, env: Mapping[str, Any]) -> dict[str, Any]:
        env = _with_dims(self.derivation.cell, env)
        zero = _zero_like(env)
        full = dict(env)
        for link in self.derivation.cell.links:
            full.setdefault(LATER + self.derivation.gradient_name(link.prev), zero)
        return self._backward(full)

    def cell_backward(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """The cell's gradients from the step's forward values and the gradients that
        reach it from outside (``derivation.cell_inputs``): see the module docstring."""
        return self._cell(_with_dims(self.derivation.cell, env))

    # -- whole sequences ---------------------------------------------------------
    def forward(self, seq) -> list[dict[str, Any]]:
        """Every step's environment after the forward equations."""
        cell = self.derivation.cell
        envs, state = [], dict(seq.initial)
        for inputs in seq.steps:
            env = {**seq.params, **inputs, **state}
            env.update(self.step_forward(env))
            envs.append(env)
            state = {link.prev: env[link.out] for link in cell.links}
        return envs

    def backward(self, envs: list[dict[str, Any]], truncate: int | None = None) -> dict[Any, Any]:
        """Gradients of the parameters (summed over t), of each step's inputs
        (keyed ``(name, t)``) and of the initial states. ``truncate=k``:
        BPTT(k), as :func:`derive.numeric.evaluate.bptt` defines it."""
        sweep = bptt(self.derivation, envs, self._step, self._chain, truncate=truncate)
        return gradients(self.derivation, ((t, values) for t, values, _ in sweep))

    def _step(self, env: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
        full = _with_dims(self.derivation.cell, env)
        for name, value in later.items():
            full[LATER + name] = value
        return self._backward(full)

    def _chain(self, env: Mapping[str, Any], grads: Mapping[str, Any]) -> dict[str, Any]:
        # built on first use: only truncated BPTT follows one loss's gradient through the cell
        if self._carry is None:
            self._carry = _Block([(str(eq.lhs), _later_free(eq.rhs)) for eq in chain_equations(self.derivation)])
        return self._carry(_with_dims(self.derivation.cell, {**env, **grads}))

    def loss(self, envs: list[dict[str, Any]]):
        from derive.numeric.evaluate import step_loss

        total = 0
        for env in envs:
            total = total + step_loss(self.derivation, env, dims=_dims(self.derivation.cell, env))
        return total

    def run(self, seq, truncate: int | None = None) -> tuple[Any, dict[Any, Any]]:
        """(loss, gradients), as :func:`derive.numeric.evaluate.run` returns them."""
        check_truncate(truncate)  # before the forward pass: a bad argument fails at once
        envs = self.forward(seq)
        return self.loss(envs), self.backward(envs, truncate)


def kernels(derivation) -> Kernels:
    """Build the in-memory kernels of a derivation (see the module docstring)."""
    d = derivation
    forward = _Block([(str(eq.lhs), eq.rhs) for eq in d.forward])
    backward_eqs = [(str(eq.lhs), _later_free(_contribution(eq.rhs))) for eq in d.backward]
    backward = _Block(backward_eqs)
    return Kernels(d, forward, backward, _Block(_cell_equations(d, backward_eqs)))


def _cell_equations(d, backward_eqs: list[tuple[str, sp.Expr]]) -> list[tuple[str, sp.Expr]]:
    """The equations of the cell alone, fed by the gradients from outside
    (``d.cell_inputs``): the loss head's and the gluing equations are left out, and
    so is every equation that reads them (the head's own parameters, ``dWy``)."""
    outside = set(d.cell_inputs)
    unknown: set[str] = set()
    cell_eqs = []
    for name, rhs in backward_eqs:
        if name in outside:
            continue
        reads = {s.name for s in rhs.free_symbols}
        if d.kind(name) in ("cell", "param", "state", "input") and not reads & unknown:
            cell_eqs.append((name, rhs))
        else:
            unknown.add(name)
    return cell_eqs


# ---------------------------------------------------------------------------
# dimensions, read off the arrays


def _dims(cell, env: Mapping[str, Any]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for name, info in cell.symbols.items():
        value = env.get(name)
        if value is None:
            continue
        shape = np.shape(value)
        if len(shape) != len(info.shape):
            continue
        for size, dim in zip(shape, info.shape):
            if isinstance(dim, sp.Symbol) and dim.name in cell.dims:
                dims.setdefault(dim.name, int(size))
    return dims


def _with_dims(cell, env: Mapping[str, Any]) -> dict[str, Any]:
    missing = [d for d in cell.dims if d not in env]
    if not missing:
        return dict(env)
    return {**_dims(cell, env), **env}


def _zero_like(env: Mapping[str, Any]):
    for value in env.values():
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            return value.dtype.type(0)
    return 0.0

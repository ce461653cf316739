"""Proof 1: the engine's per-step formulas, run through time, equal SymPy's
derivative of the fully unrolled scalar loss.

The loss of a whole sequence (T = 3, two hidden units, two inputs, every size 2,
batch 1) is written out as one SymPy expression by running the FORWARD
equations on SymPy numbers: no backward formula is involved. For a checked
entry w, w is left symbolic and every other number is a 50-digit Float with
random digits, so the unrolled loss is an expression in w alone, and
``sympy.diff`` gives the partial derivative dL/dw at that point. The engine's
gradient, from the backward equations run through time in 50-digit mpmath,
must agree to 1e-25 relative.

tanh, exp, log, relu, softplus, abs, sqrt, maximum and minimum enter the
unrolled loss as opaque SymPy functions whose derivative is SymPy's own rule
for them (``sympy.diff(sympy.tanh(x), x)``, ``sympy.diff(sympy.Max(a, b), a)`` …,
never the engine's table) but that carry no assumption handlers: SymPy's ``tanh`` asks assumptions of its whole
argument at every product-rule step, which turns seconds into minutes.

SymPy needs seconds per entry, so the default run checks, per preset, the
first and the last parameter of the cell, a parameter of the loss head when
there is one, every initial state and an input of the middle step;
``DERIVE_FULL_UNROLLED=1`` checks every entry of every array (tens of
minutes: run it before a release).
"""

from __future__ import annotations

import os
from pathlib import Path

import mpmath

import numpy as np
import pytest
import sympy as sp

import derive
from derive.numeric import evaluate as ev
from derive.spec import functions, ops

DPS = 50
STEPS = 3
FULL = os.environ.get("DERIVE_FULL_UNROLLED") == "1"

# -- the reference: the forward pass on SymPy scalars --------------------------

_x = sp.Dummy("x", real=True)
_y = sp.Dummy("y", real=True)


def _opaque(f, name, mp, arity=1):
    """A SymPy function class ``name`` whose derivative is SymPy's own of ``f``
    (``sympy.diff(f(x), x)``, at dummy points) and whose value is ``mp`` in mpmath."""
    xs = (_x, _y)[:arity]
    rules = [sp.diff(f(*xs), x) for x in xs]

    def fdiff(self, argindex=1):
        return _wrap(rules[argindex - 1]).xreplace(dict(zip(xs, self.args)))

    return type(name, (sp.Function,), {"nargs": arity, "fdiff": fdiff, "mp": staticmethod(mp)})


Tanh = _opaque(sp.tanh, "Tanh", mpmath.tanh)
Exp = _opaque(sp.exp, "Exp", mpmath.exp)
Log = _opaque(sp.log, "Log", mpmath.log)
Sqrt = _opaque(sp.sqrt, "Sqrt", mpmath.sqrt)
# SymPy's own Max, Min, Abs and Heaviside (H(0) = 1/2; no kink is visited): relu' = H(x), max' = H(a - b), …
Relu = _opaque(lambda x: sp.Max(x, 0), "Relu", lambda x: max(x, 0))
Softplus = _opaque(lambda x: sp.log(1 + sp.exp(x)), "Softplus", lambda x: mpmath.log(1 + mpmath.exp(x)))
Abs = _opaque(sp.Abs, "Abs", abs)
Maximum = _opaque(sp.Max, "Maximum", max, 2)
Minimum = _opaque(sp.Min, "Minimum", min, 2)
_WRAP = {sp.tanh: Tanh, sp.exp: Exp, sp.log: Log}
_MP = {Tanh: mpmath.tanh, Exp: mpmath.exp, Log: mpmath.log, sp.tanh: mpmath.tanh, sp.exp: mpmath.exp,
       sp.Heaviside: lambda x, *h: mpmath.mpf(1) if x > 0 else mpmath.mpf(0) if x < 0 else mpmath.mpf("0.5"),
       sp.sign: mpmath.sign}


def _wrap(e):
    if e.func in _WRAP:
        return _WRAP[e.func](_wrap(e.args[0]))
    if e.func is sp.Pow and e.exp == sp.S.Half:
        return Sqrt(_wrap(e.base))
    return e.func(*[_wrap(a) for a in e.args]) if e.args else e


def _scalar(opaque, exact):
    # a number folds to a number; anything with w in it stays a function of it
    return lambda *xs: exact(*xs) if all(x.is_Number for x in xs) else opaque(*xs)


def _fold(f):
    return lambda *xs: f(*xs).evalf(DPS) if any(x.is_Float for x in xs) else f(*xs)


_exp = np.frompyfunc(_scalar(Exp, sp.exp), 1, 1)
REFERENCE = ev.Backend(
    "sympy-unrolled",
    {
        ops.sigmoid: np.frompyfunc(lambda x: 1 / (1 + _scalar(Exp, sp.exp)(-x)), 1, 1),
        sp.tanh: np.frompyfunc(_scalar(Tanh, sp.tanh), 1, 1),
        sp.exp: _exp,
        sp.log: np.frompyfunc(_scalar(Log, sp.log), 1, 1),
        functions.relu: np.frompyfunc(_scalar(Relu, lambda x: sp.Max(x, 0)), 1, 1),
        functions.softplus: np.frompyfunc(_scalar(Softplus, _fold(lambda x: sp.log(1 + sp.exp(x)))), 1, 1),
        functions.absolute: np.frompyfunc(_scalar(Abs, sp.Abs), 1, 1),
        functions.sqrt: np.frompyfunc(_scalar(Sqrt, _fold(sp.sqrt)), 1, 1),
        functions.maximum: np.frompyfunc(_scalar(Maximum, sp.Max), 2, 1),
        functions.minimum: np.frompyfunc(_scalar(Minimum, sp.Min), 2, 1),
    },
    lambda x: x,
    lambda z, axis: _exp(z) / np.sum(_exp(z), axis=axis, keepdims=True),
)


def _mp(e, env, memo):
    """A SymPy scalar in mpmath, each shared subexpression once."""
    r = memo.get(e)
    if r is not None:
        return r
    if e.is_Symbol:
        r = env[e]
    elif e.is_Float:
        r = mpmath.mpf(e._mpf_)
    elif e.is_Rational:
        r = mpmath.mpf(e.p) / e.q
    elif e.is_Add:
        r = mpmath.fsum(_mp(a, env, memo) for a in e.args)
    elif e.is_Mul:
        r = mpmath.fprod(_mp(a, env, memo) for a in e.args)
    elif e.is_Pow:
        r = _mp(e.base, env, memo) ** (int(e.exp) if e.exp.is_Integer else _mp(e.exp, env, memo))
    else:
        f = getattr(e.func, "mp", None) or _MP[e.func]
        r = f(*[_mp(a, env, memo) for a in e.args])
    memo[e] = r
    return r


# -- the numbers ---------------------------------------------------------------


def _sequence(derivation) -> ev.Sequence:
    """A random consistent sequence in 50-digit Floats (random digits beyond
    float64), soft labels renormalised so that Σ y = 1 to 50 digits."""
    cell = derivation.cell
    dims = {d: 2 for d in cell.dims}
    if cell.batch_dim:
        dims[cell.batch_dim] = 1
    rng = np.random.default_rng(20261122)
    seq = ev.random_sequence(derivation, dims, STEPS, rng)

    def widen(a):
        a = np.asarray(a)
        out = np.empty(a.shape, dtype=object)
        for idx in np.ndindex(*a.shape):
            out[idx] = sp.Float(repr(float(a[idx])) + str(rng.integers(10**9, 10**10)), DPS)
        return out

    def step(s):
        out = {k: widen(v) for k, v in s.items()}
        for name in cell.names("target"):
            if cell.loss.kind == "cross_entropy":
                axis = min(cell.feature_axis, out[name].ndim - 1)
                out[name] = out[name] / out[name].sum(axis=axis, keepdims=True)
        return out

    return ev.Sequence(
        {k: widen(v) for k, v in seq.params.items()},
        [step(s) for s in seq.steps],
        {k: widen(v) for k, v in seq.initial.items()},
        dims,
    )


def _as_mp(seq: ev.Sequence) -> ev.Sequence:
    conv = np.frompyfunc(lambda x: mpmath.mpf(x._mpf_), 1, 1)
    return ev.Sequence(
        {k: conv(v) for k, v in seq.params.items()},
        [{k: conv(v) for k, v in s.items()} for s in seq.steps],
        {k: conv(v) for k, v in seq.initial.items()},
        seq.dims,
    )


def _entries(derivation, seq):
    """(table, step, name, index) of the entries to check."""
    cell = derivation.cell
    head = {str(s) for e in cell.head_equations() for s in e.rhs.free_symbols}
    params = cell.names("param")
    if FULL:
        out = [("params", None, n, i) for n in params for i in np.ndindex(*seq.params[n].shape)]
        out += [("initial", None, n, i) for n in cell.names("state") for i in np.ndindex(*seq.initial[n].shape)]
        out += [("inputs", t, n, i) for t in range(STEPS) for n in cell.names("input")
                for i in np.ndindex(*seq.steps[t][n].shape)]
        return out
    own = [n for n in params if n not in head]
    chosen = [own[0], own[-1]] + [n for n in params if n in head][:1]
    out = [("params", None, n, tuple(d - 1 for d in seq.params[n].shape)) for n in chosen]
    out += [("initial", None, n, (0,) * seq.initial[n].ndim) for n in cell.names("state")]
    out += [("inputs", 1, n, tuple(d - 1 for d in seq.steps[1][n].shape)) for n in cell.names("input")]
    return out


def _unrolled(derivation, seq, table_name, t, name, index):
    """dL/dw of the unrolled loss, w = that entry, at its value."""
    w = sp.Symbol("w")
    table = {"params": seq.params, "initial": seq.initial}.get(table_name) or seq.steps[t]
    saved = table[name]
    arr = saved.copy()
    value = arr[index]
    arr[index] = w
    table[name] = arr
    try:
        loss = ev.loss(derivation, seq, REFERENCE)
    finally:
        table[name] = saved
    assert loss.free_symbols == {w}, "the unrolled loss must be an expression in w alone"
    return _mp(sp.diff(loss, w), {w: mpmath.mpf(value._mpf_)}, {})


def _engine(derivation, grads, table_name, t, name, index):
    grad = derivation.gradient_name(name)
    return (grads[(grad, t)] if table_name == "inputs" else grads[grad])[index]


# -- the tests -------------------------------------------------------------------


EXAMPLES = sorted(str(p) for p in (Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))


@pytest.mark.parametrize("preset", derive.presets() + EXAMPLES, ids=lambda p: Path(p).stem)
def test_engine_equals_sympy_derivative_of_the_unrolled_loss(preset):
    d = derive.derive(preset)
    seq = _sequence(d)
    with mpmath.workdps(DPS):
        _, grads = ev.run(d, _as_mp(seq), ev.MP)
        entries = _entries(d, seq)
        for table_name, t, name, index in entries:
            engine = _engine(d, grads, table_name, t, name, index)
            unrolled = _unrolled(d, seq, table_name, t, name, index)
            scale = max(abs(unrolled), mpmath.mpf(10) ** -30)
            assert abs(engine - unrolled) <= scale * mpmath.mpf("1e-25"), (
                f"{preset}: d{name}{list(index)}{'' if t is None else f' at step {t}'}: "
                f"engine {mpmath.nstr(engine, 30)}, unrolled SymPy {mpmath.nstr(unrolled, 30)}"
            )
    assert len(entries) >= 4


def test_a_wrong_gradient_is_caught():
    """The comparison can fail: without the carried cell-state term the engine
    disagrees with the unrolled derivative."""
    d = derive.derive("nicodjimenez")
    seq = _sequence(d)
    broken = derive.Derivation.__new__(derive.Derivation)
    broken.__dict__.update(d.__dict__)
    broken.backward = [
        sp.Eq(eq.lhs, sp.Integer(0)) if str(eq.lhs) == "top_diff_s" else eq for eq in d.backward
    ]
    with mpmath.workdps(DPS):
        _, grads = ev.run(broken, _as_mp(seq), ev.MP)
        name = d.cell.names("param")[0]
        engine = _engine(broken, grads, "params", None, name, (0, 0))
        unrolled = _unrolled(d, seq, "params", None, name, (0, 0))
        assert abs(engine - unrolled) > abs(unrolled) * mpmath.mpf("1e-6")

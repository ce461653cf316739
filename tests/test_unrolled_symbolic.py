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

tanh, exp and log enter the unrolled loss as opaque SymPy functions whose
derivative is SymPy's own rule for them (``sympy.tanh(x).fdiff()`` …) but that
carry no assumption handlers: SymPy's ``tanh`` asks assumptions of its whole
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
from derive.spec import ops

DPS = 50
STEPS = 3
FULL = os.environ.get("DERIVE_FULL_UNROLLED") == "1"

# -- the reference: the forward pass on SymPy scalars --------------------------

_x = sp.Dummy("x")


def _opaque(f, name):
    rule = f(_x).fdiff()  # SymPy's own derivative of f, at a dummy point

    def fdiff(self, argindex=1):
        return _wrap(rule).xreplace({_x: self.args[0]})

    return type(name, (sp.Function,), {"nargs": 1, "fdiff": fdiff})


Tanh, Exp, Log = _opaque(sp.tanh, "Tanh"), _opaque(sp.exp, "Exp"), _opaque(sp.log, "Log")
_WRAP = {sp.tanh: Tanh, sp.exp: Exp, sp.log: Log}


def _wrap(e):
    if e.func in _WRAP:
        return _WRAP[e.func](_wrap(e.args[0]))
    return e.func(*[_wrap(a) for a in e.args]) if e.args else e


def _scalar(opaque, exact):
    # a number folds to a number; anything with w in it stays a function of it
    return lambda x: exact(x) if x.is_Number else opaque(x)


_exp = np.frompyfunc(_scalar(Exp, sp.exp), 1, 1)
REFERENCE = ev.Backend(
    "sympy-unrolled",
    {
        ops.sigmoid: np.frompyfunc(lambda x: 1 / (1 + _scalar(Exp, sp.exp)(-x)), 1, 1),
        sp.tanh: np.frompyfunc(_scalar(Tanh, sp.tanh), 1, 1),
        sp.exp: _exp,
        sp.log: np.frompyfunc(_scalar(Log, sp.log), 1, 1),
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
        f = {Tanh: mpmath.tanh, Exp: mpmath.exp, Log: mpmath.log, sp.tanh: mpmath.tanh, sp.exp: mpmath.exp}[e.func]
        r = f(_mp(e.args[0], env, memo))
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

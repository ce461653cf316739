"""Proof 2: central finite differences in float64 on whole sequences.

For every preset and every spec in examples/, every entry of every parameter, of every initial state and
of the inputs of every step is perturbed by ±h and the loss of the whole
sequence (T = 5, batch 3 where the notation has a batch) recomputed with the
forward equations only; the engine's gradient must agree. The nicodjimenez
code has no batch (one example at a time), so its sequences have none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import derive
from derive.numeric import evaluate as ev

STEPS = 5
H = 1e-6


def _dims(cell):
    sizes = iter([3, 4, 2, 5, 3, 2])
    dims = {d: next(sizes) for d in cell.dims}
    if cell.batch_dim:
        dims[cell.batch_dim] = 3
    return dims


def _entries(cell, seq):
    for name in cell.names("param"):
        for i in np.ndindex(*seq.params[name].shape):
            yield name, None, seq.params[name], i
    for name in cell.names("state"):
        for i in np.ndindex(*seq.initial[name].shape):
            yield name, None, seq.initial[name], i
    for t, step in enumerate(seq.steps):
        for name in cell.names("input"):
            for i in np.ndindex(*step[name].shape):
                yield name, t, step[name], i


# Each preset with its own loss head, and those with a softmax or squared-error
# head also with the head replaced by a given upstream gradient.
# The user-style specs in examples/ are derived from their paths, as a user would.
EXAMPLES = sorted(str(p) for p in (Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))
CASES = [(p, None) for p in derive.presets() + EXAMPLES] + [
    (p, "upstream") for p in derive.presets() if derive.derive(p).cell.loss.kind != "upstream"
]


@pytest.mark.parametrize("preset,loss", CASES, ids=[f"{Path(p).stem}-{loss}" for p, loss in CASES])
def test_gradients_match_central_differences(preset, loss):
    d = derive.derive(preset, loss=loss)
    seq = ev.random_sequence(d, _dims(d.cell), STEPS, np.random.default_rng(3))
    _, grads = ev.run(d, seq)
    worst = 0.0
    count = 0
    for name, t, arr, i in _entries(d.cell, seq):
        old = arr[i]
        arr[i] = old + H
        plus = ev.loss(d, seq)
        arr[i] = old - H
        minus = ev.loss(d, seq)
        arr[i] = old
        numeric = (plus - minus) / (2 * H)
        gname = d.gradient_name(name)
        engine = grads[(gname, t)][i] if t is not None else grads[gname][i]
        err = abs(engine - numeric) / max(1.0, abs(numeric))
        worst = max(worst, err)
        count += 1
        assert err < 1e-7, f"{preset}: {gname}{list(i)}{'' if t is None else f' t={t}'}: engine {engine!r}, FD {numeric!r}"
    assert count > 50


def test_a_wrong_gradient_fails_the_check():
    """Dropping the carried term from dc_prev breaks the agreement."""
    import sympy as sp

    d = derive.derive("coursera")
    seq = ev.random_sequence(d, _dims(d.cell), STEPS, np.random.default_rng(3))
    broken = derive.Derivation.__new__(derive.Derivation)
    broken.__dict__.update(d.__dict__)
    broken.backward = [sp.Eq(e.lhs, sp.Integer(0) * e.rhs) if str(e.lhs) == "dc_next" else e for e in d.backward]
    _, good = ev.run(d, seq)
    _, bad = ev.run(broken, seq)
    assert not np.allclose(good["dWf"], bad["dWf"], rtol=1e-6)

"""Name the cause for an API whose arrays map onto a notation (CS231n's ``Wx (D, 4H)``, min-char-rnn's ``lossFun``).

Contract. :func:`diagnose` takes one pair as the child measured it in
``lstm-derive check FILE`` (the inputs the user's forward was called with, the
gradients that reached its outputs, what the user's backward returned) and,
when the API has a row in :data:`ROWS`, maps the arrays onto the notation (a
stacked array split into its blocks, a sequence split along its time axis,
indices made one-hot), recomputes the cell by the derivation, and returns the
sentences of :func:`derive.verifier.localise.localise` for a one-step function
or :func:`derive.verifier.localise_sequence.localise_sequence` for a
whole-sequence one (the intermediate where each mistake lives). It returns
nothing when the user's forward does not compute the notation's cell with that
mapping (another gate order, say): a diagnosis never guesses. To add an API, add
a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from derive.numeric import evaluate as ev
from derive.verifier.function_report import TOL, _rel

_GATES = ("i", "f", "o", "g")
_CS231N_LSTM = {"Wx": (-1, tuple(f"Wx_{g}" for g in _GATES)), "Wh": (-1, tuple(f"Wh_{g}" for g in _GATES)),
                "b": (-1, tuple(f"b_{g}" for g in _GATES))}


@dataclass(frozen=True)
class Row:
    """How one API's arrays are the notation's: ``stacks`` an API array -> (axis, the notation's
    blocks in order); for a whole-sequence function, ``time_axis`` of its per-step arrays, ``initial``
    an API input -> the notation's state it starts (the others start at zero), ``output`` the API's
    output -> the notation's value the loss reads; ``indices``: per-step inputs given as indices
    (min-char-rnn: one-hot columns), the initial states in ``given["states"]``."""

    preset: str
    stacks: dict = field(default_factory=dict)
    sequence: bool = False
    time_axis: int = 1
    initial: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    indices: bool = False


# (family, forward) -> row
ROWS: dict[tuple[str, str], Row] = {
    # CS231n assignment 3, rnn_layers.py: batch in rows, Wx (D, 4H), Wh (H, 4H), b (4H,) stacked i, f, o, g
    ("cs231n", "rnn_step_forward"): Row("cs231n_rnn"),
    ("cs231n", "rnn_forward"): Row("cs231n_rnn", sequence=True, initial={"h0": "prev_h"}, output={"h": "next_h"}),
    ("cs231n", "lstm_step_forward"): Row("cs231n", _CS231N_LSTM),
    ("cs231n", "lstm_forward"): Row("cs231n", _CS231N_LSTM, sequence=True, initial={"h0": "prev_h"},
                                    output={"h": "next_h"}),
    # karpathy's min-char-rnn: lossFun(inputs, targets, hprev) over the weights Wxh, Whh, Why, bh, by
    ("minchar", "lossFun"): Row("minchar", sequence=True, indices=True, output={"loss": ""}),
}


def diagnose(raw: dict) -> list[str]:
    """Notes naming the causes of the wrong gradients of one measured pair (see the module docstring)."""
    row = ROWS.get((raw.get("family", ""), raw.get("api_forward") or raw.get("forward", "")))
    sample = raw.get("sample") or {}
    if row is None or "upstream" not in sample:
        return []
    inputs = {k: np.asarray(v, dtype=float) for k, v in sample["inputs"].items()}
    if row.sequence:
        causes, left = _sequence(row, inputs, sample, raw.get("returned", {}))
        notes = [f"cause: {c.text}; it explains {', '.join(c.explains)}" for c in causes]
        return notes + ([f"not explained: {', '.join(left)}"] if causes and left else [])
    return _step(row, inputs, sample, raw.get("returned", {}))


def _split(row: Row, name: str, value: np.ndarray) -> dict[str, np.ndarray]:
    """An API array -> the notation's arrays (a stacked array's blocks), {} when it cannot be split."""
    if name not in row.stacks:
        return {name: value}
    axis, blocks = row.stacks[name]
    if value.ndim == 0 or value.shape[axis] % len(blocks):
        return {}
    return dict(zip(blocks, np.split(value, len(blocks), axis=axis)))


def _step(row: Row, inputs: dict, sample: dict, returned: dict) -> list[str]:
    from derive.verifier.context import load_context
    from derive.verifier.localise import Graph, localise
    from derive.verifier.terms import reference

    ctx = load_context(row.preset, None)
    d = ctx.derivation
    env: dict = {}
    for name, value in inputs.items():
        env.update(_split(row, name, value))
    dims = _dims(ctx, env)
    for eq in d.forward:
        env[str(eq.lhs)] = np.asarray(ev.evaluate(eq.rhs, env, ev.FLOAT, dims), dtype=float)
    for name, value in sample["outputs"].items():  # the user's forward is this cell, with this mapping
        if value is None or name not in env or _rel([np.asarray(value, dtype=float)], [env[name]]) > TOL:
            return []
    for link in ctx.cell.links:
        if link.out not in sample["upstream"]:
            return []
        env[link.grad] = np.asarray(sample["upstream"][link.out], dtype=float)
    graph = Graph(ctx)
    for n in graph.order:
        env[n] = np.asarray(ev.evaluate(reference(ctx, n), env, ev.FLOAT, dims), dtype=float)
    got: dict[str, list] = {}
    for name, part in _returned(row, returned).items():
        try:
            gname = d.gradient_name(name)
        except KeyError:
            continue
        if gname in env and np.shape(env[gname]) == part.shape:
            got[gname] = [part]
    causes, region = localise(ctx, got, [env], dims)
    notes = [f"cause: {c.text}; it explains {', '.join(c.explains)}" for c in causes]
    if region is not None:
        notes.append(("not explained: " if causes else "") + region.text)
    return notes


def _returned(row: Row, returned: dict) -> dict[str, np.ndarray]:
    """What the user's backward returned, by the notation's (or the API's unstacked) names."""
    out: dict[str, np.ndarray] = {}
    for name, item in returned.items():
        if item.get("value") is None or name.startswith("?"):
            continue
        out.update(_split(row, name, np.asarray(item["value"], dtype=float)))
    return out


def _sequence(row: Row, inputs: dict, sample: dict, returned: dict):
    """A whole-sequence function: the sequence rebuilt in the notation, its forward compared with
    the user's, and the returned gradients localised through the whole backward pass."""
    from derive.numeric.judge import backward_steps, totals
    from derive.verifier.cache import load
    from derive.verifier.context import context, load_context
    from derive.verifier.localise_sequence import localise_sequence

    own = load_context(row.preset, None)
    ctx = own if own.cell.loss.kind == "upstream" or row.indices else context(load(row.preset, "upstream"))
    d, cell = ctx.derivation, ctx.cell
    params: dict = {}
    for name, value in inputs.items():
        if name not in row.initial and name not in cell.names("input"):
            params.update(_split(row, name, value))
    if any(p not in params for p in cell.names("param")):
        return [], []
    given = sample.get("given") or {}
    steps: list[dict] = []
    if row.indices:  # one-hot columns from indices, the targets likewise
        V = params[cell.names("param")[0]].shape[1]
        (x,), (y,) = cell.names("input"), cell.names("target")
        for i, j in zip(given.get("inputs", []), given.get("targets", [])):
            steps.append({x: np.eye(V)[:, [i]], y: np.eye(V)[:, [j]]})
        states = [np.asarray(s, dtype=float) for s in given.get("states", [])]
        initial = dict(zip(cell.names("state"), states))
    else:
        (x,) = cell.names("input")
        T = inputs[x].shape[row.time_axis]
        up = np.asarray(sample["upstream"][next(iter(row.output))], dtype=float)
        for t in range(T):
            steps.append({x: np.take(inputs[x], t, axis=row.time_axis),
                          cell.loss.external: np.take(up, t, axis=row.time_axis)})
        initial = {state: inputs[api] for api, state in row.initial.items()}
    if not steps:
        return [], []
    dims = _dims(ctx, {**params, **steps[0], **initial})
    for state in cell.names("state"):
        if state not in initial:
            initial[state] = np.zeros(ev.concrete_shape(cell.symbols[state].shape, dims))
    seq = ev.Sequence(params, steps, initial, dims)
    fwd = ev.forward(d, seq)
    for api, mine in row.output.items():  # the user's forward is this cell, with this mapping
        theirs = sample["outputs"].get(api)
        want = (sum(ev.step_loss(d, env, ev.FLOAT, dims) for env in fwd) if not mine else
                np.stack([env[mine] for env in fwd], axis=row.time_axis))
        if theirs is None or _rel([np.asarray(theirs, dtype=float)], [np.asarray(want, dtype=float)]) > TOL:
            return [], []
    inverse = {api: state for api, state in row.initial.items()}
    got: dict[str, np.ndarray] = {}
    where: dict[str, tuple] = {}
    for name, value in _returned(row, returned).items():
        if name in cell.names("param"):
            key = d.gradient_name(name)
            where[key] = ("sum", key)
        elif name in cell.names("input") and not row.indices:
            key = d.gradient_name(name)
            where[key] = ("stack", key)
        elif name in inverse:
            key = d.gradient_name(inverse[name])
            where[key] = ("initial", key)
        else:
            continue
        got[key] = value

    def expected(key: str, tot: dict):
        kind, g = where[key]
        if kind == "stack":
            return np.stack([tot[(g, t)] for t in range(len(steps))], axis=row.time_axis)
        return tot.get(g)

    base = totals(d, seq, backward_steps(d, seq, fwd)[0])
    got = {k: v for k, v in got.items() if np.shape(expected(k, base)) == v.shape}
    return localise_sequence(ctx, seq, fwd, got, expected)


def _dims(ctx, env: dict) -> dict:
    """The sizes, read off the arrays by the notation's symbolic shapes."""
    dims: dict = {}
    for name, value in env.items():
        for size, n in zip(ctx.shapes.get(name, ()), np.shape(value)):
            if isinstance(size, sp.Symbol):
                dims[size.name] = int(n)
    return dims

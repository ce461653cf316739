"""Name the cause for an API whose arrays stack the notation's parameters (CS231n's ``Wx (D, 4H)``).

Contract. :func:`diagnose` takes one pair as the child measured it in
``lstm-derive check FILE`` (the inputs the user's forward was called with, the
gradients that reached its outputs, what the user's backward returned) and,
when the API is in :data:`STACKED`, maps the arrays onto the notation (a
stacked array split into its blocks), recomputes the cell by the derivation,
and returns the sentences of :func:`derive.verifier.localise.localise` (the
intermediate where each mistake lives). It returns nothing when the user's
forward does not compute the notation's cell with that mapping (another gate
order, say): a diagnosis never guesses. To add an API, add a row.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from derive.numeric import evaluate as ev
from derive.verifier.function_report import TOL, _rel

# (family, forward) -> (preset, {API array: (axis, the notation's blocks in order)})
STACKED: dict[tuple[str, str], tuple[str, dict[str, tuple[int, tuple[str, ...]]]]] = {
    # CS231n assignment 3: Wx (D, 4H), Wh (H, 4H), b (4H,), the gates stacked i, f, o, g
    ("cs231n", "lstm_step_forward"): ("cs231n", {
        "Wx": (-1, ("Wx_i", "Wx_f", "Wx_o", "Wx_g")),
        "Wh": (-1, ("Wh_i", "Wh_f", "Wh_o", "Wh_g")),
        "b": (-1, ("b_i", "b_f", "b_o", "b_g")),
    }),
}


def diagnose(raw: dict) -> list[str]:
    """Notes naming the causes of the wrong gradients of one measured pair (see the module docstring)."""
    from derive.verifier.context import load_context
    from derive.verifier.localise import Graph, localise
    from derive.verifier.terms import reference

    row = STACKED.get((raw.get("family", ""), raw.get("api_forward") or raw.get("forward", "")))
    sample = raw.get("sample") or {}
    if row is None or "upstream" not in sample:
        return []
    preset, stacks = row
    ctx = load_context(preset, None)
    d = ctx.derivation
    env: dict = {}
    for name, value in sample["inputs"].items():
        value = np.asarray(value, dtype=float)
        if name in stacks:
            axis, blocks = stacks[name]
            env.update(zip(blocks, np.split(value, len(blocks), axis=axis)))
        else:
            env[name] = value
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
    for name, item in raw.get("returned", {}).items():
        if item.get("value") is None or name.startswith("?"):
            continue
        value = np.asarray(item["value"], dtype=float)
        if name in stacks:
            axis, blocks = stacks[name]
            if value.ndim == 0 or value.shape[axis] % len(blocks):
                continue
            parts = dict(zip(blocks, np.split(value, len(blocks), axis=axis)))
        else:
            parts = {name: value}
        for block, part in parts.items():
            try:
                gname = d.gradient_name(block)
            except KeyError:
                continue
            if gname in env and np.shape(env[gname]) == part.shape:
                got[gname] = [part]
    causes, region = localise(ctx, got, [env], dims)
    notes = [f"cause: {c.text}; it explains {', '.join(c.explains)}" for c in causes]
    if region is not None:
        notes.append(("not explained: " if causes else "") + region.text)
    return notes


def _dims(ctx, env: dict) -> dict:
    """The sizes, read off the arrays by the notation's symbolic shapes."""
    dims: dict = {}
    for name, value in env.items():
        for size, n in zip(ctx.shapes.get(name, ()), np.shape(value)):
            if isinstance(size, sp.Symbol):
                dims[size.name] = int(n)
    return dims

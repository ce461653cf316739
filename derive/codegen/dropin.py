"""Drop-in APIs of course code: CS231n's rnn_layers.py and min-char-rnn's lossFun.

Contract. Each builder here takes the plan, the emitter, the module context
and the context :func:`derive.codegen.api.generic_api` made for the cell (its
whole-sequence ``_sequence_forward`` / ``_sequence_backward`` over the
notation's own parameters), and returns what the drop-in template adds: the
source's exact functions, arguments and return tuples, which call those two.
Nothing here derives or prints a gradient by hand: every gradient the drop-in
functions return is one the generic functions computed from the derivation,
only re-assembled (CS231n's stacked Wx, Wh, b from the gates' blocks) or, for
min-char-rnn's softmax head, the derived head equations printed by the NumPy
printer over the all-steps matrices.

- ``cs231n`` / ``cs231n_rnn`` (rows): ``rnn_step_forward(x, prev_h, Wx, Wh, b)``,
  ``rnn_step_backward(dnext_h, cache)``, ``rnn_forward(x, h0, Wx, Wh, b)``,
  ``rnn_backward(dh, cache)``; ``lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)``,
  ``lstm_step_backward(dnext_h, dnext_c, cache)``, ``lstm_forward(x, h0, Wx, Wh,
  b)`` (c0 = 0), ``lstm_backward(dh, cache)``. The assignment stacks the gates'
  blocks along the columns (i, f, o, g); ``STACKED`` lists the blocks.
- ``minchar`` (columns, one example): ``lossFun(inputs, targets, hprev, Wxh,
  Whh, Why, bh, by, clip=5)`` returning ``loss, dWxh, dWhh, dWhy, dbh, dby, h``.
"""

from __future__ import annotations

import sympy as sp

from derive.codegen.numpy_printer import numpy_text

# The assignment's stacked arrays, each the column blocks (the entries, for
# the bias) of the notation's per-gate parameters, in the assignment's order.
STACKED: dict[str, dict[str, tuple[str, ...]]] = {
    "cs231n": {"Wx": ("Wx_i", "Wx_f", "Wx_o", "Wx_g"), "Wh": ("Wh_i", "Wh_f", "Wh_o", "Wh_g"),
               "b": ("b_i", "b_f", "b_o", "b_g")},
    "cs231n_rnn": {"Wx": ("Wx",), "Wh": ("Wh",), "b": ("b",)},
}


def _sequence(generic: dict) -> dict:
    """The generic context with its public pair renamed private."""
    return dict(generic, prefix="_sequence")


def cs231n_api(p, e, ctx: dict, generic: dict) -> dict:
    cell = p.cell
    stacked = STACKED[cell.name]
    lstm = len(cell.links) == 2
    r = ctx["bwd"]["results"]
    blocks = [(name, list(members), [r[m] for m in members]) for name, members in stacked.items()]
    prefix = "lstm" if lstm else "rnn"
    return dict(_sequence(generic), **{
        "template": "numpy_cs231n.py.j2",
        "api_names": [f"{prefix}_step_forward", f"{prefix}_step_backward", f"{prefix}_forward", f"{prefix}_backward"],
        "lstm": lstm,
        "K": len(stacked["Wx"]),
        "blocks": blocks,
        "dx": r[cell.names("input")[0]],
        "state_grads": [r[l.prev] for l in cell.links],
        "gate_order": ", ".join(m.rsplit("_", 1)[-1] for m in stacked["Wx"]),
    })


def minchar_api(p, e, ctx: dict, generic: dict) -> dict:
    """min-char-rnn's lossFun: the cell's BPTT from the generic functions, the
    softmax head's gradients from the derived head equations, printed over the
    all-steps matrices (features, T*B): sum_t(...) is then one product or sum."""
    d, cell = p.full, p.cell
    loss = d.cell.loss
    head_params = [n for n in d.cell.names("param") if n not in cell.names("param")]
    head_grads = {d.gradient_name(n) for n in head_params}
    head = [eq for eq in d.backward if d.kind(str(eq.lhs)) == "head" or str(eq.lhs) in head_grads]
    names = {s: f"{s}_all" for s in (loss.prediction, loss.target, loss.on)}
    names.update({str(eq.lhs): f"{eq.lhs}_all" for eq in head if d.kind(str(eq.lhs)) == "head"})
    lines = []
    for eq in head:
        name = str(eq.lhs)
        rhs = eq.rhs.function if isinstance(eq.rhs, sp.Sum) else eq.rhs
        lines.append((names.get(name, name), numpy_text(rhs, names), f"{name} = {_py(eq.rhs)}"))
    r = ctx["bwd"]["results"]
    (x,) = cell.names("input")
    (link,) = cell.links
    return dict(_sequence(generic), **{
        "template": "numpy_minchar.py.j2",
        "api_names": ["lossFun"],
        "head_lines": lines,
        "ext_all": names[loss.external],
        "head_params": head_params,
        "cell_params": cell.names("param"),
        "all_params": d.cell.names("param"),
        "grad_of": {n: d.gradient_name(n) for n in d.cell.names("param")},
        "seq_h": p.seq[link.out], "x": x, "h": link.out, "h_prev": link.prev, "dh_prev": r[link.prev],
        "prediction": loss.prediction, "target": loss.target,
    })


def _py(expr) -> str:
    from derive.spec.pyprint import to_python

    return to_python(expr)

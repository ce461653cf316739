"""The crosswalk: one cell's names beside the names of every bundled cell of its family.

Each spec tags its symbols with concepts (``forget_gate``, ``recurrent_weights``,
...); :func:`crosswalk` lines up the cells of one family (LSTMs with LSTMs,
simple RNNs with simple RNNs, a GRU alone) by those tags, so a reader of one
notation finds each quantity in every other. :func:`cell_family` names the family.
"""

from __future__ import annotations

import functools

import sympy as sp

from derive.spec import ops
from derive.spec.latex import to_latex


# The order of the crosswalk's rows: the quantities an LSTM has, by concept tag,
# then those of a gated cell without a cell state (a GRU's reset and update
# gates) and the weights of a cell with one affine map (an Elman RNN).
GATES = ("input_gate", "forget_gate", "candidate", "output_gate")


CONCEPTS = (
    ["input", "hidden_prev", "cell_prev", "stacked_input"]
    + list(GATES) + ["reset_gate", "update_gate"]
    + ["cell_state", "hidden_state", "prediction", "target"]
    + [f"{g}_{part}" for g in GATES for part in ("weights", "input_weights", "recurrent_weights", "peephole", "bias",
                                                  "recurrent_bias")]
    + ["input_weights", "recurrent_weights", "bias", "recurrent_bias"]
    + ["output_weights", "output_bias"]
)


CONCEPT_TEXT = {
    "input": "input", "hidden_prev": "previous hidden state", "cell_prev": "previous cell state",
    "stacked_input": "stacked input", "input_gate": "input gate", "forget_gate": "forget gate",
    "candidate": "candidate (cell input)", "output_gate": "output gate", "cell_state": "cell state",
    "hidden_state": "hidden state", "prediction": "prediction", "target": "target",
    "output_weights": "output layer weights", "output_bias": "output layer bias",
    "reset_gate": "reset gate", "update_gate": "update gate",
    "input_weights": "weights on the input", "recurrent_weights": "weights on the hidden state",
    "bias": "bias", "recurrent_bias": "second bias (hidden side)",
}


@functools.lru_cache(maxsize=64)
def _concept_names(d) -> dict[str, tuple[str, str, str]]:
    """concept -> (symbol name, its LaTeX, its gradient's LaTeX) for one derivation
    (kept per derivation: every cell's crosswalk reads every preset's; read only)."""
    from derive.writeup.explain import explain as _explain

    ex = _explain(d)
    cell = d.cell
    out = {}
    for n, s in cell.symbols.items():
        if not s.concept or s.concept in out:
            continue
        grad = ""
        gname = cell.preact_names.get(n) if n in cell.preact_names else None
        if gname is None and n in {e.target for e in cell.equations} and f"z_{n}" in ex.adjoints:
            gname = ex.adjoints[f"z_{n}"]
        if gname is None:
            gname = ex.adjoints.get(n)
        if gname is None:
            try:
                gname = d.gradient_name(n)
            except KeyError:
                gname = None
        if gname is not None and gname in set(d.names()):
            grad = to_latex(sp.Symbol(gname), cell)
        out[s.concept] = (n, s.latex, grad)
    return out


FAMILY_TEXT = {  # (one, several)
    "lstm": ("LSTM", "LSTMs"),
    "gated": ("gated recurrent cell without a cell state", "gated recurrent cells without a cell state"),
    "simple": ("simple (Elman) recurrent cell", "simple (Elman) recurrent cells"),
}


def cell_family(d) -> str:
    """``lstm`` (a symbol tagged ``cell_state``), else ``gated`` (a sigmoid
    gate of its own equation, as a GRU's r and z), else ``simple``. The
    crosswalk compares a cell with the bundled cells of its family only: a
    GRU has no cell state and no output gate, and a table that set it beside
    the LSTMs would be a column of dashes."""
    if any(s.concept == "cell_state" for s in d.cell.symbols.values()):
        return "lstm"
    if any(isinstance(e.rhs, ops.sigmoid) for e in d.cell.cell_equations()):
        return "gated"
    return "simple"


def warm() -> None:
    """Derive every preset and read its names, what every cell's crosswalk reads:
    a build calls this once in the parent process, before forking its workers, so
    that each worker inherits them instead of deriving every preset again."""
    from derive.derivation import derive as _derive, presets

    for p in presets():
        try:
            _concept_names(_derive(p))
        except Exception:  # noqa: BLE001 - as in _crosswalk: a preset that does not load is left out
            continue


def _crosswalk(d) -> dict:
    from derive.derivation import derive as _derive, presets

    own = _concept_names(d)
    family = cell_family(d)
    if not own:
        return _table([], [], family, missing=True)
    tables = {d.name: own}
    for p in presets():
        if p == d.name:
            continue
        try:
            other = _derive(p)
        except Exception:  # noqa: BLE001 - a preset that does not load is left out, not fatal
            continue
        names = _concept_names(other)
        # a cell in the same names as one already there (elman_relu beside elman) adds no column
        if cell_family(other) == family and names not in tables.values():
            tables[p] = names
    columns = list(tables)
    if len(columns) == 1:
        return _table(columns, [], family, alone=True)
    order = {c: i for i, c in enumerate(CONCEPTS)}
    rows = []
    for concept in sorted(own, key=lambda c: (order.get(c, len(order)), c)):
        cells, gcells = [], []
        for p in columns:
            entry = tables[p].get(concept)
            partner = _second_bias(concept)
            second = tables[p].get(partner) if partner and partner not in own and p != d.name else None
            if entry is not None and second is not None:
                cells.append(("mathlist", entry[1] + " + " + second[1]))
                gcells.append(("mathlist", entry[2] + " = " + second[2]) if entry[2] and second[2] else ("text", "-"))
                continue
            if entry is not None:
                cells.append(("math", entry[1]))
                gcells.append(("math", entry[2]) if entry[2] else ("text", "-"))
                continue
            alt = _crosswalk_alternative(tables[p], concept)
            cells.append(alt)
            gcells.append(("text", "-"))
        rows.append({"concept": concept, "text": CONCEPT_TEXT.get(concept, concept.replace("_", " ")),
                     "cells": cells, "grads": gcells})
    return _table(columns, rows, family)


def _second_bias(concept: str) -> str | None:
    """The concept of a second bias beside ``concept`` (torch's b_hh beside
    b_ih): a notation with both shows their sum where another has one."""
    if concept == "bias":
        return "recurrent_bias"
    if concept.endswith("_bias") and not concept.endswith("recurrent_bias"):
        return concept[: -len("_bias")] + "_recurrent_bias"
    return None


def _table(columns, rows, family: str, missing: bool = False, alone: bool = False) -> dict:
    one, several = FAMILY_TEXT[family]
    return {"columns": columns, "rows": rows, "missing": missing, "alone": alone, "family": one, "families": several}


def _crosswalk_alternative(table, concept) -> tuple[str, str]:
    """A quantity a notation does not name on its own: where it lives there."""
    for gate in GATES:
        whole, parts = f"{gate}_weights", (f"{gate}_input_weights", f"{gate}_recurrent_weights")
        if concept in parts and whole in table:
            return ("part", table[whole][1])
        if concept == whole and any(k in table for k in parts):
            return ("mathlist", ",\\ ".join(table[k][1] for k in parts if k in table))
        if concept == f"{gate}_recurrent_bias" and f"{gate}_bias" in table:
            return ("part", table[f"{gate}_bias"][1])
    if concept in ("input", "hidden_prev") and "stacked_input" in table:
        return ("part", table["stacked_input"][1])
    return ("text", "-")

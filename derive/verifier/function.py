"""Check a user's backward function against the derivation.

Contract. ``check(preset, fn, loss=None, returns=None, sequence=None)`` calls
``fn`` (the user's own code: running it is the point, so only check code you
trust) with its parameters filled BY NAME from random consistent states of
the preset, and compares what it returns with the engine, output by output.
It returns a :class:`FunctionReport` (``ok``, one :class:`OutputCheck` per
output with its relative error, a message; ``status`` 0 right, 1 wrong). A
parameter that no name of the notation fills raises
:class:`~derive.errors.DeriveError`.

How parameters are filled (tangent-style, by name):

- every name of the notation: forward values (``ft``, ``cct``), parameters
  (``Wf``), inputs, previous states, sizes (``n_a``) and the gradients reaching
  the cell (``da_next``, ``dc_next``), also through the notation's Python
  aliases (``Gamma_u``, ``precStateActivations``);
- the containers a notation's code passes around, declared in
  :data:`CONVENTIONS` (Coursera's ``cache`` tuple and ``parameters`` dict);
- ``self``, when the notation's aliases spell names as attributes
  (``self.state.o``, ``self.param.wi_diff`` in the nicodjimenez code): an
  object with exactly those attributes. Parameter-gradient accumulators
  (``self.param.wi_diff``) start at zero, so ``+=`` leaves one step's
  contribution.

What is compared: a returned dict by its keys (the notation's names or
aliases); a tuple by ``returns`` or, without it, each element with the quantity
of the same shape it equals; a lone array likewise; ``None`` (a method that
stores its results) by the output attributes of ``self``. A cell function
(one step) is called at three states, none the last step (where the carried
gradients are zero); its parameter gradients are one step's contributions. A
whole-sequence function is called on one sequence of four steps and its
outputs compared with the totals. It is recognised by a notation's own
signature (Coursera's ``lstm_backward(da, caches)`` and
``rnn_backward(da, caches)``), or asked for with ``sequence=True`` for any
cell: then every per-step name (inputs, forward values, the given gradient)
is passed stacked over time (the last axis when the batch is in columns,
else the first, as PyTorch's ``(T, N, H)``), a previous state (``h_prev``,
``h0``, ``h_0``) as the initial state, and a returned input gradient is
compared stacked over time, a state gradient (``dh_prev``, ``dh0``) with the
initial state's.

A wrong output is matched against the engine's formula with each classic
mistake made (:func:`derive.verifier.mutations.mutations`) and, for a sequence function,
against backward passes that do not chain a carried gradient between steps,
keep only one step's parameter gradient, or make one classic mistake in one
per-step quantity; the match is reported. The report also names the cause
(:mod:`derive.verifier.localise` for a cell function,
:mod:`derive.verifier.localise_sequence` for a whole-sequence one: the mistake
made in one step equation, or a carried gradient left out, and the whole
backward pass through time re-run): the intermediate where the mistake of the
wrong outputs lives, and what it is, as ``cause:`` notes and
``FunctionReport.causes``. Parameters the user's module reads as globals (a
notebook's variables) are set to the values the check uses.

The parts: :mod:`derive.verifier.function_fill` (loading a function, filling its
parameters by name), :mod:`derive.verifier.function_report` (the report, comparing
one output), :mod:`derive.verifier.function_sequence` (whole-sequence functions).
``lstm-derive check FILE`` (any API, the user's own forward making the cache) is
:mod:`derive.verifier.check_files`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import sympy as sp

from derive.errors import DeriveError
from derive.verifier.function_fill import (CONVENTIONS, _call, _fill, _from_namespace, _match_by_value,
                                           _resolve, load_function)
from derive.verifier.function_report import TOL, FunctionReport, OutputCheck, _finish, _rel
from derive.verifier.function_sequence import _check_sequence, _sequence_conventions

__all__ = ["CONVENTIONS", "FunctionReport", "OutputCheck", "check", "load_function"]


def check(preset, fn: Callable, *, loss: str | None = None, returns=None, sequence: bool | None = None) -> FunctionReport:
    """``sequence``: True for a function that runs backward through a whole
    sequence, False for one step; None decides by the notation's conventions
    (Coursera's ``caches`` parameter means a whole sequence)."""
    from derive.verifier.context import context, load_context

    ctx = load_context(preset, loss)
    conv = CONVENTIONS.get(ctx.cell.name, {})
    fname = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))
    try:
        params = set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        raise DeriveError("cannot read the function's parameters") from None
    own = conv.get("sequence")
    if sequence is None:
        sequence = own is not None and bool(params & set(own["trigger"]))
    if sequence:
        from derive.verifier.cache import load

        seq_loss = (own or {}).get("loss", loss)
        if own is None and ctx.cell.loss.kind != "upstream":
            seq_loss = "upstream"  # a whole-sequence backward takes the gradient arriving at each output
        up = context(load(preset, seq_loss))
        up.full_cell = ctx.cell
        return _check_sequence(up, fn, fname, _sequence_conventions(up, own), conv, returns, params)
    return _check_cell(ctx, fn, fname, conv, returns)


def _check_cell(ctx, fn, fname, conv, returns) -> FunctionReport:
    bench = ctx.bench
    samples = [(0, 0), (1, 1), (2, 0)]
    samples = [(r, min(t, len(bench.runs[r].envs) - 2)) for r, t in samples if r < len(bench.runs)]
    report = FunctionReport(False, ctx.cell.name, fname, "cell")
    got: dict[str, list] = {}
    keys: dict[str, str] = {}
    for r, t in samples:
        env = bench.runs[r].envs[t]
        args, kwargs, me = _fill(ctx, fn, env, bench.dims, conv)
        result, error = _call(fn, args, kwargs)
        if error is not None:
            report.error = error
            report.message = (f"could not check: {fname} raised {error}\n  (it was called as one step of the cell, with "
                              "arrays of one time step; if it runs through a whole sequence, check it with "
                              "--sequence)")
            return report
        outputs = _outputs(ctx, result, me, returns, env)
        for key, (name, value) in outputs.items():
            got.setdefault(name, []).append(value)
            keys[name] = key
    if not got:
        report.message = (f"wrong: {fname} returned nothing the {ctx.cell.name} notation names "
                          "(return a dict keyed by its names, or pass returns=)")
        return report
    for name, values in got.items():
        want = [bench.runs[r].envs[t][name] for r, t in samples]
        report.outputs.append(_compare(ctx, name, keys[name], values, want,
                                       lambda expr: [bench.value_at(expr, bench.runs[r], t) for r, t in samples]))
    _name_the_cause(ctx, report, got, samples)
    return _finish(report, ctx)


def _name_the_cause(ctx, report: FunctionReport, got: dict, samples) -> None:
    """The intermediates where the wrong outputs' mistakes live
    (:func:`derive.verifier.localise.localise`), as notes; a diagnosis never changes a verdict."""
    from derive.verifier.localise import localise

    if all(o.ok for o in report.outputs):
        return
    usable = {o.name: got[o.name] for o in report.outputs if o.rel_error is not None}
    try:
        causes, region = localise(ctx, usable, [ctx.bench.runs[r].envs[t] for r, t in samples],
                                  ctx.bench.dims)
    except Exception:  # the diagnosis is a help: its failure leaves the verdict as it is
        return
    report.causes = [c.to_dict() for c in causes]
    for c in causes:
        report.notes.append(f"cause: {c.text}; it explains {', '.join(c.explains)}")
    if region is not None:
        report.notes.append(("not explained: " if causes else "") + region.text)


def _outputs(ctx, result, me, returns, env) -> dict[str, tuple[str, Any]]:
    """{key: (engine name, value)}."""
    out = {}
    if isinstance(result, dict):
        items = list(result.items())
    elif result is None and me is not None:
        items = list(_from_namespace(ctx, me).items())
    else:
        seq = list(result) if isinstance(result, (tuple, list)) else [result]
        if returns:
            if len(returns) != len(seq):
                raise DeriveError(f"returns= names {len(returns)} outputs but the function returned {len(seq)}")
            items = list(zip(returns, seq))
        else:
            items = [(_match_by_value(ctx, v, env) or f"output {i + 1}", v) for i, v in enumerate(seq)]
    for key, value in items:
        name = _resolve(ctx, str(key))
        if name is None:
            continue
        out[str(key)] = (name, value)
    return out


def _compare(ctx, name, key, values, want, evaluate_at) -> OutputCheck:
    from derive.verifier import mutations

    shapes = {np.shape(v) for v in values}
    wshape = np.shape(want[0])
    if any(s != wshape for s in shapes):
        s = next(iter(shapes))
        hint = "; transposed?" if tuple(reversed(s)) == wshape else ""
        return OutputCheck(name, key, False, None, f"`{key}` has shape {s} but {name} has shape {wshape}{hint}",
                           "transposed" if hint else "")
    err = _rel(values, want)
    if err <= TOL:
        return OutputCheck(name, key, True, err, f"`{key}` matches {name} (relative error {err:.1e})")
    # which classic mistake gives these numbers?
    try:
        for label, desc, expr in mutations.mutations(ctx, name):
            if _rel(values, evaluate_at(expr)) <= TOL:
                return OutputCheck(name, key, False, err, f"`{key}` is wrong (relative error {err:.2g}): it matches "
                                   f"{name} when one {desc}", label, cause=f"matches the derivation when one {desc}")
    except Exception:
        pass
    for other in sorted(ctx.backward_names):
        if other == name or ctx.resolve_book(other) != other:
            continue
        try:
            ref = evaluate_at(sp.Symbol(other))
        except Exception:
            continue
        if _rel(values, ref) <= TOL:
            return OutputCheck(name, key, False, err, f"`{key}` is wrong: it holds {other}, not {name}",
                               "different_quantity")
    return OutputCheck(name, key, False, err, f"`{key}` is wrong (relative error {err:.2g})")

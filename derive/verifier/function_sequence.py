"""Checking a whole-sequence backward function (Coursera's ``lstm_backward(da, caches)``,
``rnn_backward(da, caches)``, or any cell's function that takes stacked inputs).

Contract. :func:`_sequence_conventions` says how such a function is called and
read for any cell; :func:`_check_sequence` runs it on one sequence and compares
its outputs with the totals; :class:`_SequenceExplainer` names the mistake behind
a wrong output (a carried gradient not carried, one step's parameter gradient,
one classic mistake in one per-step quantity). See
:mod:`derive.verifier.function` for the whole contract.
"""

from __future__ import annotations

import types

import numpy as np

from derive.numeric import evaluate as ev
from derive.verifier.function_fill import _call, _container, _fill, _resolve
from derive.verifier.function_report import TOL, FunctionReport, OutputCheck, _compare_plain, _finish, _rel


def _sequence_conventions(ctx, own: dict | None) -> dict:
    """How a whole-sequence function is called and read, for any cell: every
    per-step name of the notation (inputs, targets, forward values, the given
    gradient) is passed stacked over time; a previous state (``h_prev``, its
    aliases, ``h0``/``h_0``) is passed as the initial state. Of what it returns,
    a parameter gradient is compared with the sum over steps, an input gradient
    (``dx``) stacked over time, a state gradient (``dh_prev``, ``dh0``) with the
    gradient of the initial state. Time is the last axis when the batch is in
    columns (Coursera: ``(n_x, m, T_x)``), else the first (PyTorch: ``(T, N, H)``).
    A notation's own conventions (``own``) take precedence."""
    cell, d = ctx.cell, ctx.derivation
    inputs: dict[str, tuple] = {}
    outputs: dict[str, tuple] = {}
    # never a backward quantity (`dh` is declared as a gradient too): that would hand over the answer
    steps = [n for n, s in cell.symbols.items()
             if s.role in ("input", "target") or (s.role == "grad" and n not in ctx.backward_names)]
    steps += [str(eq.lhs) for eq in d.forward]
    if cell.loss.kind == "upstream":
        steps.append(cell.loss.external)
    for name in steps:
        inputs[name] = ("stack", name)
    for link in cell.links:
        for key in (link.prev, f"{link.out}0", f"{link.out}_0"):
            inputs.setdefault(key, ("initial", link.prev))
        g = d.gradient_name(link.prev)
        for key in (g, f"d{link.out}0", f"d{link.out}_0"):
            outputs.setdefault(key, ("initial", g))
    for x in cell.names("input"):
        outputs[d.gradient_name(x)] = ("stack", d.gradient_name(x))
    prevs = {link.prev for link in cell.links}
    for alias, target in cell.aliases.items():
        if not alias.isidentifier():
            continue  # `self.state.o`: a cell function's attribute, not a parameter
        if target in inputs:
            inputs.setdefault(alias, inputs[target])
        if target in prevs:  # elman's h_0 -> h_prev: dh_0 is the initial state's gradient
            outputs.setdefault(f"d{alias}", ("initial", d.gradient_name(target)))
    axis = -1 if cell.layout == "columns" else 0
    conv = {"trigger": (), "time_axis": axis, "zero_initial": (), "inputs": inputs, "outputs": outputs}
    if own:
        conv = {**conv, **{k: v for k, v in own.items() if k not in ("inputs", "outputs")},
                "inputs": {**inputs, **own.get("inputs", {})}, "outputs": {**outputs, **own.get("outputs", {})}}
    return conv


def _check_sequence(ctx, fn, fname, seq_conv, conv, returns, wanted: set[str]) -> FunctionReport:
    """``wanted``: the names of ``fn``'s parameters."""
    from derive.numeric.judge import backward_steps, sizes_for, totals

    d = ctx.derivation
    dims = sizes_for(ctx.cell)
    rng = np.random.default_rng(21)
    seq = ev.random_sequence(d, dims, 4, rng)
    for name in seq_conv.get("zero_initial", ()):
        seq.initial[name] = np.zeros_like(seq.initial[name])
    fwd = ev.forward(d, seq)
    steps, _ = backward_steps(d, seq, fwd, shapes=ctx.shapes)
    envs = [{**f, **b} for f, b in zip(fwd, steps)]
    axis = seq_conv.get("time_axis", -1)
    tot = totals(d, seq, steps)

    def stacked(name):
        return np.stack([np.array(e[name]) for e in envs], axis=axis)

    def initial(name):
        return np.array(seq.initial[name], copy=True)

    def build(spec):
        kind = spec[0]
        if kind == "stack":
            return stacked(spec[1])
        if kind == "initial":
            return initial(spec[1])
        if kind == "list":
            return [_container(ctx, e, dims, conv, spec[1]) for e in envs]
        if kind == "pair":
            return (build(spec[1]), build(spec[2]))
        raise ValueError(kind)

    extra = {k: build(v) for k, v in seq_conv["inputs"].items() if k in wanted}
    per_step = frozenset(envs[0]) - set(ctx.cell.names("param")) - set(ctx.cell.dims)
    args, kwargs, _ = _fill(ctx, fn, envs[0], dims, conv, extra, per_step=per_step)
    report = FunctionReport(False, ctx.cell.name, fname, "sequence")
    result, error = _call(fn, args, kwargs)
    if error is not None:
        report.error = error
        report.message = f"could not check: {fname} raised {error}"
        return report
    outputs = seq_conv["outputs"]
    if not isinstance(result, dict):
        if returns and isinstance(result, (tuple, list)):
            result = dict(zip(returns, result))
        else:
            example = ", ".join(list(outputs)[:2] + [ctx.derivation.gradient_name(p) for p in ctx.cell.names("param")][:2])
            report.message = f"wrong: {fname} should return a dict of gradients ({example}, ...), or pass returns="
            return report

    def expected(key, tot_):
        spec = outputs.get(key)
        if spec is not None:
            kind, name = spec
            if kind == "stack":
                return name, np.stack([tot_[(name, t)] for t in range(len(envs))], axis=axis)
            return name, tot_[name]
        name = _resolve(ctx, key)
        if name is not None and ctx.is_sum(name):
            return name, tot_[name]
        return None, None

    explain = _SequenceExplainer(ctx, seq, fwd, steps, expected)
    usable: dict[str, np.ndarray] = {}
    for key, value in result.items():
        name, want = expected(str(key), tot)
        if name is None:
            continue
        check = _compare_plain(name, str(key), value, want)
        if not check.ok and check.rel_error is not None:
            explain(check, value)
        if check.rel_error is not None:
            usable[str(key)] = np.asarray(value, dtype=float)
        report.outputs.append(check)
    if not all(o.ok for o in report.outputs):
        _name_the_cause(ctx, report, seq, fwd, usable, lambda key, tot_: expected(key, tot_)[1])
    if not report.outputs:
        report.message = (f"wrong: {fname} returned nothing the {ctx.cell.name} notation names "
                          f"(known: {', '.join(sorted(outputs))} and the parameter gradients)")
        return report
    return _finish(report, ctx)


def _name_the_cause(ctx, report: FunctionReport, seq, fwd, got: dict, expected) -> None:
    """The step equations where the wrong outputs' mistakes live
    (:func:`derive.verifier.localise_sequence.localise_sequence`), as notes; a diagnosis never
    changes a verdict."""
    from derive.verifier.localise_sequence import localise_sequence

    try:
        causes, left = localise_sequence(ctx, seq, fwd, got, expected)
    except Exception:  # the diagnosis is a help: its failure leaves the verdict as it is
        return
    report.causes = [c.to_dict() for c in causes]
    report.notes += [f"cause: {c.text}; it explains {', '.join(c.explains)}" for c in causes]
    if causes and left:
        report.notes.append(f"not explained: {', '.join(left)}")


class _SequenceExplainer:
    """Names the mistake behind a wrong output of a whole-sequence function by
    running the same sequence through backward passes that each make one
    mistake, cheapest first: a carried gradient not carried between steps;
    one step's parameter gradient instead of the sum; one classic mistake
    (:func:`derive.verifier.mutations.mutations`) in one per-step quantity of the cell."""

    def __init__(self, ctx, seq, fwd, steps, expected):
        self.ctx, self.seq, self.fwd, self.steps, self.expected = ctx, seq, fwd, steps, expected
        self._carry = None
        self._mutants = None

    def __call__(self, check: OutputCheck, value) -> None:
        for desc, alt in self.carry_variants():
            if self.matches(check, value, alt):
                self.mark(check, f"matches a backward pass that {desc}", "no_chaining")
                return
        if self.ctx.is_sum(check.name):
            for t in (0, len(self.steps) - 1):
                if _rel([value], [self.steps[t][check.name]]) <= TOL:
                    check.message += (f": it holds only step {t + 1}'s contribution; a parameter gradient is the sum "
                                      f"over all steps (accumulate: {check.key} += ...)")
                    check.label = "per_step"
                    check.cause = "holds only one step's contribution"
                    return
        for label, desc, alt in self.mutants():
            if self.matches(check, value, alt):
                self.mark(check, f"matches a backward pass in which {desc}", label)
                return

    def matches(self, check, value, alt_totals) -> bool:
        _, alt = self.expected(check.key, alt_totals)
        return alt is not None and _rel([value], [alt]) <= TOL

    @staticmethod
    def mark(check, cause, label) -> None:
        check.message += ": it " + cause
        check.label = label
        check.cause = cause

    def run(self, derivation, carry=None):
        from derive.numeric.judge import backward_steps, totals

        steps, _ = backward_steps(derivation, self.seq, self.fwd, carry=carry, shapes=self.ctx.shapes)
        return totals(self.ctx.derivation, self.seq, steps)

    def carry_variants(self):
        if self._carry is None:
            self._carry = [(desc, self.run(self.ctx.derivation, carry)) for _label, carry, desc in _carry_variants(self.ctx)]
        return self._carry

    def mutants(self):
        """Lazily, on the first output the cheaper variants do not explain."""
        if self._mutants is None:
            self._mutants = []
            for label, desc, derivation in _mutated_derivations(self.ctx):
                try:
                    self._mutants.append((label, desc, self.run(derivation)))
                except Exception:  # a mutation the evaluator cannot run explains nothing
                    continue
        return self._mutants


def _mutated_derivations(ctx):
    """(label, description, derivation with one classic mistake made in one
    per-step quantity of the cell)."""
    from derive.verifier import mutations

    d = ctx.derivation
    for name in d.names():
        if ctx.kind(name) != "cell" or d.kind(name) == "book":
            continue
        for label, desc, expr in mutations.mutations(ctx, name):
            if label == "sign":
                continue
            yield label, f"{name} {desc}", _WithEquation(d, name, expr)


class _WithEquation:
    """A derivation with the backward equation of one quantity replaced."""

    def __init__(self, derivation, name: str, rhs):
        self._derivation = derivation
        self.backward = [types.SimpleNamespace(lhs=eq.lhs, rhs=rhs) if str(eq.lhs) == name else eq
                         for eq in derivation.backward]

    def __getattr__(self, attr):
        return getattr(self._derivation, attr)


def _carry_variants(ctx):
    links = ctx.cell.links
    names = [ctx.derivation.gradient_name(link.prev) for link in links]
    out = []
    for i, link in enumerate(links):
        keep = [n for j, n in enumerate(names) if j != i]
        out.append((f"no_{names[i]}", keep, f"does not carry {names[i]} from step t+1 back to step t"))
    if len(names) > 1:
        out.append(("no_carry", [], f"carries neither {' nor '.join(names)} from step t+1 back to step t"))
    return out

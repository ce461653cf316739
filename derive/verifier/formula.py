"""The verifier: is a hand-derived formula, or a backward function, right — and
if not, which term is wrong?

Contract.

``verify(preset, quantity, formula, syntax="python" | "latex", loss=None)``
reads ``formula`` (Python: the formula language of :mod:`derive.spec.expr` with the
notation's names and aliases; LaTeX: :mod:`derive.verifier.latex_reader`) for the
backward quantity ``quantity`` of the preset or spec file, and returns a
:class:`Verdict`: ``ok``, the maximum relative error, the diagnosis (a list of
:class:`~derive.verifier.terms.Finding`), a message. ``quantity`` may be left out
when the formula has a left side (``"dft = ..."``); when both are given they
must agree. User text is read by whitelisted parsers only, never by ``eval``,
``exec``, ``sympify``, ``parse_expr``, ``lambdify`` or ``parse_latex``.
Formulas that cannot be read raise :class:`~derive.errors.ExprError` (the CLI's
exit status 2); a formula that can be read but does not compute the quantity,
a shape mismatch included, is a verdict with ``ok = False`` (exit status 1).

How it judges.

- Numbers first: the formula and the engine's quantity are evaluated in
  float64 at every step of three random *consistent* sequences (the forward
  run from random inputs, weights and initial states; the backward values of
  the same run), with pairwise different sizes and a batch of more than one,
  so a formula equal only at special points, or on a transposed array, fails.
  The tolerance is a relative error of 1e-9.
- A parameter gradient is a sum over steps: a formula without ``sum_t`` is
  compared with one step's contribution (the formula a learner writes for
  ``dWf``), one written ``sum_t(...)`` with the total. With ``total=True``
  (``--total``) the formula claims to be the whole sequence's gradient, and
  one step's contribution is wrong (label ``per_step``).
- An elementwise formula that is right is also proven symbolically (SymPy,
  after expanding both sides to forward values and the gradients reaching
  the cell).
- A wrong formula is diagnosed by :mod:`derive.verifier.diagnose`: split into one term per
  gradient it is linear in, each term compared with the engine's; or
  recognised as the right formula of another quantity of the same cell; or,
  for a shape mismatch, repaired (weights without their block of columns,
  slices along the wrong axis, a transposed result). When no finding names a
  classic mistake, the formula's numbers are matched against the engine's
  formula with each classic mistake made.
- Nothing assumes an LSTM: the gradients reaching the cell, the recurrent
  links, the activations (``v = sigmoid(...)``/``tanh(...)``) and the paths
  through the forward equations are read from the derivation, so a preset and
  a user's spec file are judged alike.

``check_function(preset, fn)`` calls a user's backward function on a
consistent random state, filling its parameters by name (see
:mod:`derive.verifier.function`), and compares what it returns with the engine.

The command line (:mod:`derive.cli.verify`)::

    lstm-derive verify PRESET [QUANTITY] FORMULA [--latex] [--json] [--file F] [--total]
    lstm-derive verify --spec FILE.toml [QUANTITY] FORMULA ...
    lstm-derive check PRESET path/to/file.py:NAME [--json] [--returns a,b] [--sequence]
    lstm-derive check --spec FILE.toml path/to/file.py:NAME ...

exit status 0 = right, 1 = wrong, 2 = the input could not be read. Derivations
come from :mod:`derive.verifier.cache` (derived once per process, nothing on
disk); only the asked preset is derived.

Speed and safety. :func:`prescan` checks everything about a formula that does
not depend on the notation (size, depth, syntax, the whitelist; for LaTeX the
tokens and TeX programming commands) before any derivation is loaded, so
hostile input costs milliseconds. NumPy and the analysis modules are imported
only when a formula is judged: building the command line imports nothing
heavy from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from derive.spec import ops
from derive.errors import DeriveError, DomainError, ExprError
from derive.spec.expr import parse
from derive.spec.shapes import FormulaShapeError, ShapeError, fmt_shape, same_dim, shape_of

from derive.verifier.context import (TOL, Context, _dg, _judge, _mutations, _terms, _T, _t, _UNICODE, check_text, load_context,
                                     prescan, split_equation)





# ---------------------------------------------------------------------------
# the verdict


@dataclass
class Verdict:
    """The answer to "is this formula right?"."""

    ok: bool
    preset: str
    quantity: str
    formula: str
    syntax: str
    max_rel_error: float | None
    message: str
    diagnosis: list = field(default_factory=list)
    method: str = "numeric"
    expected: str = ""  # the engine's equation for the quantity, Python spelling
    expected_closed: str = ""  # its closed form in forward values and the gradients reaching the cell
    notes: list = field(default_factory=list)
    samples: int = 0
    _latex: dict = field(default_factory=dict, repr=False)

    @property
    def status(self) -> int:
        """The CLI's exit status: 0 right, 1 wrong."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict:
        err = self.max_rel_error
        return {
            "ok": self.ok,
            "preset": self.preset,
            "quantity": self.quantity,
            "formula": self.formula,
            "syntax": self.syntax,
            "max_rel_error": None if err is None or not math.isfinite(err) else err,
            "method": self.method,
            "samples": self.samples,
            "message": self.message,
            "diagnosis": [f.to_dict() for f in self.diagnosis],
            "notes": list(self.notes),
            "expected": self.expected,
            "expected_closed": self.expected_closed,
        }

    def __str__(self) -> str:
        return self.message

    # Jupyter: rendered math, the differing term highlighted
    def _repr_markdown_(self) -> str:
        head = "**right**" if self.ok else "**wrong**"
        lines = [f"{head} — `{self.quantity}` ({self.preset})"]
        formula = self._latex.get("formula")
        if formula:
            lines.append(f"$$ {self._latex.get('lhs', '')} = {formula} $$")
        for f in self.diagnosis:
            lines.append(f"- {f.text}")
            if f.latex:
                lines.append(f"  $$ {f.latex} $$")
        for note in self.notes:
            lines.append(f"- {note}")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        formula = self._latex.get("formula", "")
        mark = r"\color{green}{\checkmark}" if self.ok else r"\color{red}{\times}"
        return f"$$ {mark}\\quad {self._latex.get('lhs', '')} = {formula} $$"


# ---------------------------------------------------------------------------
# one derivation's context, cached per process




















# ---------------------------------------------------------------------------
# the judgement


def verify(preset, quantity: str | None = None, formula: str | None = None, syntax: str = "python", *,
           loss: str | None = None, total: bool = False) -> Verdict:
    """Is ``formula`` the derivation's ``quantity``? See the module docstring.
    ``total=True``: the formula claims to be a parameter gradient of the whole
    sequence, so one step's contribution without ``sum_t`` is wrong."""
    if formula is None:
        quantity, formula = None, quantity
    if formula is None:
        raise ExprError("no formula given")
    formula = check_text(formula)
    prescan(formula, syntax)  # malformed or hostile text fails here, before any derivation is loaded
    ctx = load_context(preset, loss)
    try:
        lhs, rhs, rhs_text = ctx.read(formula, syntax)
    except FormulaShapeError as exc:
        name = ctx.quantity(quantity, _lhs_only(ctx, formula, syntax), syntax)
        return _shape_verdict(ctx, name, None, formula, syntax, exc)
    name = ctx.quantity(quantity, lhs, syntax)
    return judge(ctx, name, rhs, formula, syntax, claim_total=total)


def _sizes_text(bench) -> str:
    sizes = getattr(bench, "sizes", None) or getattr(bench, "dims", None)
    if isinstance(sizes, dict) and sizes:
        return ", ".join(f"{k} = {v}" for k, v in sizes.items())
    return "small random sizes"


def _lhs_only(ctx, formula, syntax):
    try:
        if syntax == "latex":
            return ctx.latex_reader.lhs_name(formula)
        lhs_text, _, _ = split_equation(formula)
        if lhs_text is None:
            return None
        e = parse(lhs_text, ctx.scope())
        return e.name if isinstance(e, sp.Symbol) else None
    except DeriveError:
        return None


def judge(ctx: Context, name: str, F: sp.Expr, formula: str, syntax: str, claim_total: bool = False) -> Verdict:
    d = ctx.derivation
    name_eff = ctx.resolve_book(name)
    if sp.Symbol(name) in F.xreplace({a: sp.Dummy() for a in F.atoms(ops.later)}).free_symbols:
        raise ExprError(f"the formula for `{name}` uses `{name}` itself")
    F = _tidy(ctx, F)
    is_param = ctx.is_sum(name_eff)
    total = isinstance(F, sp.Sum)
    for s in sorted(F.free_symbols, key=str):
        if ctx.is_sum(s.name):
            raise ExprError(f"`{s.name}` is a parameter gradient, a sum over all steps; a formula cannot use it")
    if any(isinstance(a, sp.Sum) for a in sp.preorder_traversal(F) if a is not F):
        raise ExprError("`sum_t(...)` must enclose the whole formula")
    if total and not is_param:
        raise ExprError(f"`{name}` is not a sum over steps; only a parameter gradient is written with `sum_t(...)`")
    if claim_total and not is_param:
        raise DeriveError(f"`{name}` is not a parameter gradient: only those are sums over the whole sequence")
    verdict = Verdict(False, ctx.cell.name, name, formula, syntax, None, "")
    verdict.expected = f"{name} = {_terms()._py(ctx.rhs(name))}"
    try:
        verdict.expected_closed = _terms()._py(d.closed_form(name))
    except Exception:
        verdict.expected_closed = ""
    verdict._latex = _latex_parts(ctx, name, F)

    if F.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        verdict.diagnosis.append(_terms().Finding("not_finite", "the formula divides by zero (SymPy reads it as "
                                               f"`{sp.sstr(F)}`)"))
        verdict.message = _message(verdict)
        return verdict

    # shapes
    want = ctx.shapes[name_eff]
    try:
        got_shape = shape_of(F, ctx.shapes)
    except ShapeError as exc:
        return _shape_verdict(ctx, name, F, formula, syntax, FormulaShapeError(str(exc), "", None), verdict)
    if not _fits(got_shape, want):
        exc = FormulaShapeError(
            f"the formula gives an array of shape {fmt_shape(got_shape)}, but `{name}` has shape {fmt_shape(want)}", "", None)
        return _shape_verdict(ctx, name, F, formula, syntax, exc, verdict)

    if claim_total and not total:
        return _one_step_as_total(ctx, verdict, name_eff, F)

    # numbers
    bench = ctx.bench
    import numpy as np

    try:
        with np.errstate(all="ignore"):  # an overflow is reported as a non-finite value, not a warning
            got = bench.values(F)
    except IndexError:  # an index or slice past the end of its axis at the check's sizes
        raise ExprError("an index or slice in the formula runs past the end of its axis "
                        f"(the check's sizes: {_sizes_text(bench)})") from None
    except (ArithmeticError, ValueError, TypeError, DomainError) as exc:
        at = " at a random state" if isinstance(exc, DomainError) else ""
        verdict.message = f"wrong: the formula cannot be evaluated ({exc}{at})"
        verdict.diagnosis.append(_terms().Finding("not_finite", verdict.message))
        return verdict
    want_values = bench.reference(name_eff, total=total)
    err = _judge().relative_error(got, want_values)
    verdict.max_rel_error = err
    verdict.samples = len(want_values)
    if err <= TOL:
        verdict.ok = True
        verdict.method = "numeric"
        if _symbolic_equal(ctx, name_eff, F):
            verdict.method = "symbolic and numeric"
        verdict.notes += _notes_right(ctx, name_eff, F, total)
        verdict.message = _message(verdict)
        return verdict
    if not math.isfinite(err):
        verdict.diagnosis.append(_terms().Finding("not_finite", "the formula's value is not finite or not real (an overflow, a "
                                            "division by zero, a root of a negative number) at a random state"))
    else:
        other = _other_quantity(ctx, name_eff, got, total)
        if other is not None and other.got.name not in _terms().on_path(ctx, name_eff):
            verdict.diagnosis.append(other)
        else:
            verdict.diagnosis += _analyse(ctx, name_eff, F)
            if other is not None and not verdict.diagnosis:
                verdict.diagnosis.append(other)
        if not any(f.label for f in verdict.diagnosis):
            mistake = _classic_mistake(ctx, name_eff, got, total)
            if mistake is not None:
                verdict.diagnosis.append(mistake)
    verdict.notes += _notes_wrong(ctx, name_eff, F, total, verdict.diagnosis)
    _highlight(ctx, verdict, F)
    verdict.message = _message(verdict)
    return verdict


def _one_step_as_total(ctx, verdict: Verdict, name: str, F) -> Verdict:
    """A formula without ``sum_t`` given as a whole-sequence parameter gradient
    (the mistake of seed 003's question): wrong, and said to be one step's
    contribution when it is that."""
    bench, judge_ = ctx.bench, _judge()
    import numpy as np

    with np.errstate(all="ignore"):
        per_step = bench.values(F)
    totals = [tot for run, tot in zip(bench.runs, bench.reference(name, total=True)) for _ in run.envs]
    verdict.max_rel_error = judge_.relative_error(per_step, totals)
    verdict.samples = len(per_step)
    step_right = judge_.relative_error(per_step, bench.reference(name)) <= TOL
    param = _param_of(ctx, name)
    summed = f"`{name} = sum_t({_terms()._py(F)})`"
    if step_right:
        text = (f"this is one step's contribution, not the whole sequence's gradient: {param} is used at every step, "
                f"so `{name}` is the sum of this over t = 1..T, {summed} (as one step's contribution it is right)")
    else:
        verdict.diagnosis += _analyse(ctx, name, F)
        text = (f"it is not summed over the steps either: `{name}` of the whole sequence is `sum_t(...)` of one "
                "step's contribution")
    verdict.diagnosis.append(_terms().Finding("per_step", text, label="per_step", explained=step_right))
    _highlight(ctx, verdict, F)
    verdict.message = _message(verdict)
    return verdict


def _classic_mistake(ctx, name, got, total):
    """When the term-by-term comparison named no classic mistake: is the
    formula, in numbers, the engine's with exactly one classic mistake made
    (:func:`derive.verifier.mutations.mutations`)? A formula written out in full, where
    one change shows up in many places, is recognised this way."""
    try:
        candidates = _mutations().mutations(ctx, name)
    except Exception:
        return None
    for label, desc, expr in candidates:
        try:
            want = ctx.bench.values(sp.Sum(expr, (_t, 1, _T)) if total else expr)
        except Exception:
            continue
        if _judge().relative_error(got, want) <= TOL:
            return _terms().Finding("mistake", f"it is `{name}` with one classic mistake made: it {desc}",
                                 label=label if label in _terms().LABELS else "")
    return None


def _analyse(ctx, name, F) -> list:
    try:
        findings = _dg().analyse(ctx, name, F)
    except (ShapeError, _terms().NotLinear, _terms().Unsupported, ArithmeticError, ValueError, TypeError):
        findings = []
    return findings


def _fits(got, want) -> bool:
    """got equals want, or broadcasts to it (a number for a zero gradient)."""
    if len(got) > len(want):
        return False
    for g, w in zip(reversed(got), reversed(want)):
        if not (same_dim(g, w) or g == 1):
            return False
    return True


def _tidy(ctx, F: sp.Expr) -> sp.Expr:
    """Floats that are short decimals become rationals (``1.`` -> 1); a
    forward value written out in full is folded to its name."""
    floats = {f: sp.Rational(str(f)) for f in F.atoms(sp.Float) if len(str(f).rstrip("0")) <= 12}
    F = F.xreplace({f: r for f, r in floats.items()})
    for eq in ctx.derivation.forward:
        if F.has(eq.rhs) and eq.rhs != eq.lhs:
            F = F.xreplace({eq.rhs: eq.lhs})
    books = {s: sp.Symbol(ctx.resolve_book(s.name)) for s in F.free_symbols
             if s.name in ctx.backward_names and ctx.derivation.kind(s.name) == "book"}
    F = F.xreplace(books) if books else F
    return _gather_later(ctx, F) if F.has(ops.later) else F


def _gather_later(ctx, F: sp.Expr) -> sp.Expr:
    """Values at step t+1 written one by one (Greff et al.'s ``delta c^{t+1} *
    f^{t+1} + delta fbar^{t+1} * p_f``) become one ``later(...)``, and
    ``later(rhs)`` of a backward equation ``later(name)``: the form the
    engine's own equations carry from step t+1."""
    def time_invariant(e) -> bool:
        return all(ctx.role(s.name) == "param" or s.name in ctx.cell.dims for s in e.free_symbols)

    def gather(e):
        if not e.args or isinstance(e, ops.later):
            return e
        e = e.func(*[gather(a) for a in e.args])
        if isinstance(e, sp.Mul) and e.has(ops.later):
            inside = [a.args[0] if isinstance(a, ops.later) else a for a in e.args]
            if all(isinstance(a, ops.later) or time_invariant(a) for a in e.args):
                return ops.later(sp.Mul(*inside))
        if isinstance(e, sp.Add):
            carried = [a for a in e.args if isinstance(a, ops.later)]
            if len(carried) > 1:
                rest = [a for a in e.args if not isinstance(a, ops.later)]
                return sp.Add(*rest, ops.later(sp.Add(*[a.args[0] for a in carried])))
        return e

    F = gather(F)
    named = {}
    for a in F.atoms(ops.later):
        for n in ctx.backward_names:
            if not ctx.is_sum(n) and ctx.rhs(n) == a.args[0]:
                named[a] = ops.later(sp.Symbol(n))
                break
    return F.xreplace(named) if named else F


def _shape_verdict(ctx, name, F, formula, syntax, exc, verdict: Verdict | None = None) -> Verdict:
    if verdict is None:
        verdict = Verdict(False, ctx.cell.name, name, formula, syntax, None, "")
        verdict.expected = f"{name} = {_terms()._py(ctx.rhs(name))}"
    where = exc.render()
    verdict.diagnosis.append(_terms().Finding("shape", f"shape mismatch: {where}", data={"column": exc.col}))
    if F is None:
        # the formula could not be built; read it again without the shape check to try repairs
        try:
            if syntax == "latex":
                _, F = ctx.latex_reader.parse_equation(formula, check_shapes=False)
            else:
                _, rhs_text, _ = split_equation("".join(_UNICODE.get(ch, ch) for ch in formula).strip())
                F = parse(rhs_text, ctx.scope())
            F = _tidy(ctx, F)
        except (DeriveError, ShapeError):
            F = None
    name_eff = ctx.resolve_book(name)
    if F is not None:
        best = None
        for label, desc, G in _mutations().repairs(ctx, name_eff, F):
            try:
                gs = shape_of(G, ctx.shapes)
            except ShapeError:
                continue
            if not _fits(gs, ctx.shapes[name_eff]):
                continue
            try:
                err = _judge().relative_error(ctx.bench.values(G), ctx.bench.reference(name_eff, total=isinstance(G, sp.Sum)))
            except Exception:
                continue
            if err <= TOL:
                best = (label, desc + "; with that change the formula is right", G, [])
                break
            if best is None:
                best = (label, desc, G, None)
        if best is None:
            hint = _structure_hint(ctx, name_eff, F)
            if hint is not None:
                verdict.diagnosis.append(hint)
        if best is not None:
            label, desc, G, rest = best
            verdict.diagnosis.append(_terms().Finding("repair", desc, label=label, got=F, expected=G))
            if rest is None:
                more = _analyse(ctx, name_eff, G)
                for f in more:
                    f.text = "after that: " + f.text
                verdict.diagnosis += more
    verdict.message = _message(verdict)
    return verdict


def _structure_hint(ctx, name, F):
    """For a formula of the wrong shape built like the engine's: the one part that differs."""
    dg = _dg()
    try:
        S = dg.setup(ctx, name, F)
        got, want = dg.tree_diff(S.show(_terms().normalize(S.F)), S.show(_terms().normalize(S.R)))
    except Exception:
        return None
    if got == S.show(S.F) or isinstance(got, (sp.Add, sp.Mul)) and isinstance(want, (sp.Add, sp.Mul)):
        return None
    text = f"it has `{_terms()._py(got)}` where `{_terms()._py(want)}` belongs"
    note = ctx.time_pair(got, want)
    return _terms().Finding("map", text + (f"; {note}" if note else ""), label="time_index" if note else "",
                      got=got, expected=want, explained=bool(note))


def _other_quantity(ctx, name, got, total):
    """A right formula for another quantity of the same cell?"""
    bench = ctx.bench
    same = {ctx.resolve_book(name)}
    for other in sorted(ctx.backward_names):
        o = ctx.resolve_book(other)
        if o in same or other != o:
            continue
        if total and not ctx.is_sum(o):
            continue
        try:
            ref = bench.reference(o, total=total)
        except KeyError:
            continue
        if len(ref) != len(got):
            continue
        if _judge().relative_error(got, ref) <= TOL:
            same.add(o)
            return _terms().Finding(
                "different_quantity",
                f"this is the formula of `{o}`{_meaning(ctx, o)}, not of `{name}`",
                label="different_quantity", expected=sp.Symbol(name), got=sp.Symbol(o))
    return None


def _meaning(ctx, name) -> str:
    for step in ctx.derivation.steps:
        if step.name == name:
            array = step.of
            base = array[2:] if array.startswith("z_") else array
            what = "pre-activation of " if array.startswith("z_") else ""
            return f" (the gradient with respect to the {what}{base})"
    return ""


def _symbolic_equal(ctx, name, F) -> bool:
    """For elementwise formulas: SymPy proves F = R once both are written in
    forward values and the gradients reaching the cell."""
    try:
        keep = set(ctx.derivation.cell_inputs) | {n for n in ctx.backward_names if ctx.kind(n) in ("glue", "head")}
        Fc = _terms().expand(ctx, F.function if isinstance(F, sp.Sum) else F, keep)
        Rc = _terms().expand(ctx, _terms().reference(ctx, name), keep)
        if not (_terms().is_elementwise(Fc) and _terms().is_elementwise(Rc)):
            return False
        if sp.count_ops(Fc) + sp.count_ops(Rc) > 400 or any(
                p.exp.is_Number and abs(p.exp) > 4 for p in Fc.atoms(sp.Pow)):
            return False
        if sp.expand(Fc - Rc) == 0:
            return True
        subs = {}
        for eq in ctx.derivation.forward:
            if eq.lhs.name not in ctx.gate_acts and _terms().is_elementwise(eq.rhs):
                subs[eq.lhs] = eq.rhs
        for _ in range(len(subs)):
            Fc, Rc = Fc.xreplace(subs), Rc.xreplace(subs)
        return sp.expand(Fc - Rc) == 0
    except Exception:
        return False


def _notes_right(ctx, name, F, total) -> list[str]:
    notes = []
    if ctx.is_sum(name) and not total:
        param = _param_of(ctx, name)
        notes.append(
            f"this is the contribution of one step t; `{name}` is its sum over t = 1..T "
            f"(`{name} = sum_t({_terms()._py(F)})`). {param} is used at every step, and its influence through the "
            f"earlier steps reaches this formula through {', '.join(ctx.derivation.cell_inputs)} "
            "(backpropagation through time)")
    return notes


def _notes_wrong(ctx, name, F, total, findings) -> list[str]:
    notes = []
    if not findings:
        notes.append("no single term could be singled out; compare with the derivation (`lstm-derive show "
                     f"{ctx.cell.name} {name} --closed`)")
    return notes


def _param_of(ctx, name) -> str:
    for param in ctx.cell.names("param"):
        try:
            if ctx.derivation.gradient_name(param) == name:
                return f"`{param}`"
        except KeyError:
            continue
    return "The parameter"


def _message(v: Verdict) -> str:
    err = v.max_rel_error
    if v.ok:
        how = "proven symbolically and " if v.method.startswith("symbolic") else ""
        where = "sequences" if "sum_t" in v.formula or v.formula.lstrip().startswith("\\sum") else "states"
        lines = [f"right: the formula is {v.quantity} ({how}checked at {v.samples} random consistent {where}, "
                 f"max relative error {err:.1e})"]
    else:
        what = f" (max relative error {err:.2g})" if err is not None and math.isfinite(err) else ""
        lines = [f"wrong: the formula is not {v.quantity}{what}"]
        for f in v.diagnosis:
            label = f" [{_terms().LABELS[f.label]}]" if f.label in _terms().LABELS and not f.explained else ""
            lines.append(f"  - {f.text}{label}")
    for note in v.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _highlight(ctx, verdict: Verdict, F) -> None:
    """LaTeX for Jupyter: each finding's difference, and the formula with the
    parts the findings name coloured."""
    try:
        from derive.spec.latex import to_latex
    except Exception:
        return

    def tex(e):
        try:
            return to_latex(e, ctx.cell)
        except Exception:
            return r"\text{" + _terms()._py(e).replace("_", r"\_") + "}"

    marks: dict = {}
    for f in verdict.diagnosis:
        parts = []
        if f.kind == "missing_term" and f.expected is not None:
            parts.append(r"\text{missing: }\color{red}{" + tex(f.expected) + "}")
        elif f.kind == "extra_term" and f.got is not None:
            parts.append(r"\text{extra: }\color{red}{" + tex(f.got) + "}")
            marks[f.got] = True
        elif f.got is not None and f.expected is not None and isinstance(f.got, sp.Basic):
            parts.append(r"\text{yours: }\color{red}{" + tex(f.got) + r"}\quad\text{derivation: }\color{green}{"
                         + tex(f.expected) + "}")
            if isinstance(f.extra, sp.Basic):
                for factor in sp.Mul.make_args(f.extra):
                    marks[factor] = True
            else:
                marks[f.got] = True
        f.latex = "".join(parts)
    hl = {}
    G = F
    for i, target in enumerate(marks):
        if isinstance(target, sp.Basic) and target != 1 and G.has(target):
            sym = sp.Symbol(f"__hl{i}")
            G = G.xreplace({target: sym})
            body = tex(target)
            if isinstance(target, sp.Add):
                body = r"\left(" + body + r"\right)"
            hl[sym.name] = r"\color{red}{" + body + "}"
    if hl:
        try:
            verdict._latex["formula"] = to_latex(G, ctx.cell, extra=hl)
        except Exception:
            pass


def _latex_parts(ctx, name, F) -> dict:
    try:
        from derive.spec.latex import to_latex

        return {"lhs": to_latex(sp.Symbol(name), ctx.cell), "formula": to_latex(F, ctx.cell)}
    except Exception:
        return {}


# ---------------------------------------------------------------------------
# functions


def check_function(preset, fn: Callable, *, loss: str | None = None, returns=None, sequence: bool | None = None):
    """Call a user's backward function on a consistent random state and compare
    its outputs with the engine (see :mod:`derive.verifier.function`). ``sequence=True``:
    ``fn`` runs backward through a whole sequence, its per-step arguments
    stacked over time."""
    from derive.verifier.function import check

    return check(preset, fn, loss=loss, returns=returns, sequence=sequence)

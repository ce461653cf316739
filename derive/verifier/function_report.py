"""The report of a function check, and how one output is compared.

Contract. :class:`OutputCheck` (one output: its quantity, its key, right or not,
the relative error, a message, the classic mistake it matches) and
:class:`FunctionReport` (all outputs, ``status`` 0 right, 1 wrong);
:func:`_rel` the relative error of arrays, :func:`_compare_plain` one output
against its expected value, :func:`_finish` the verdict's lines. Used by
:mod:`derive.verifier.function` and :mod:`derive.verifier.function_sequence`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TOL = 1e-7  # a user's float64 code may sum in another order


@dataclass
class OutputCheck:
    name: str  # the engine's quantity
    key: str  # as the function returned it
    ok: bool
    rel_error: float | None
    message: str
    label: str = ""
    cause: str = ""  # the classic mistake the wrong numbers match, if any

    def to_dict(self) -> dict:
        err = self.rel_error
        return {"name": self.name, "key": self.key, "ok": self.ok,
                "rel_error": None if err is None or not math.isfinite(err) else err,
                "message": self.message, "label": self.label, "cause": self.cause}


@dataclass
class FunctionReport:
    ok: bool
    preset: str
    function: str
    mode: str  # cell | sequence
    outputs: list = field(default_factory=list)
    message: str = ""
    notes: list = field(default_factory=list)
    error: str | None = None
    causes: list = field(default_factory=list)  # localise.Cause dicts: where the mistakes live

    @property
    def status(self) -> int:
        """0 right, 1 wrong, 2 could not check (the function raised: never "wrong")."""
        return 0 if self.ok else 2 if self.error else 1

    def to_dict(self) -> dict:
        return {"ok": self.ok, "preset": self.preset, "function": self.function, "mode": self.mode,
                "outputs": [o.to_dict() for o in self.outputs], "message": self.message, "notes": list(self.notes),
                "error": self.error, "causes": list(self.causes)}

    def __str__(self) -> str:
        return self.message

    def _repr_markdown_(self) -> str:
        head = "**right**" if self.ok else "**could not check**" if self.error else "**wrong**"
        lines = [f"{head} — `{self.function}` ({self.mode} backward, {self.preset})", "",
                 "| output | quantity | relative error | |", "|---|---|---|---|"]
        for o in self.outputs:
            err = "—" if o.rel_error is None or not math.isfinite(o.rel_error) else f"{o.rel_error:.1e}"
            mark = "ok" if o.ok else "**wrong**: " + o.message.split(": ", 1)[-1]
            lines.append(f"| `{o.key}` | `{o.name}` | {err} | {mark} |")
        if self.error:
            lines.append(f"\nraised `{self.error}`")
        lines += [f"\n{note}" for note in self.notes]
        return "\n".join(lines)


def _rel(got, want) -> float:
    worst = scale = 0.0
    for g, w in zip(got, want):
        try:
            g = np.asarray(g, dtype=float)
        except (TypeError, ValueError):
            return float("inf")
        w = np.asarray(w, dtype=float)
        if g.shape != w.shape or not np.all(np.isfinite(g)):
            return float("inf")
        if w.size:
            worst = max(worst, float(np.max(np.abs(g - w))))
            scale = max(scale, float(np.max(np.abs(w))))
    return worst / scale if scale else worst


def _compare_plain(name, key, value, want) -> OutputCheck:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return OutputCheck(name, key, False, None, f"`{key}` is not an array of numbers")
    if arr.shape != np.shape(want):
        return OutputCheck(name, key, False, None, f"`{key}` has shape {arr.shape} but {name} has shape {np.shape(want)}")
    err = _rel([arr], [want])
    if err <= TOL:
        return OutputCheck(name, key, True, err, f"`{key}` matches {name} (relative error {err:.1e})")
    return OutputCheck(name, key, False, err, f"`{key}` is wrong (relative error {err:.2g})")


def _finish(report: FunctionReport, ctx) -> FunctionReport:
    from derive.verifier import terms

    report.ok = bool(report.outputs) and all(o.ok for o in report.outputs)
    head = "right" if report.ok else "wrong"
    lines = [f"{head}: {report.function} ({report.mode} backward, {ctx.cell.name} notation)"]
    for o in report.outputs:
        mark = "ok " if o.ok else "BAD"
        label = f" [{terms.LABELS[o.label]}]" if o.label in terms.LABELS else ""
        lines.append(f"  {mark} {o.message}{label}")
    bad = [o for o in report.outputs if not o.ok]
    causes = {o.cause for o in bad}
    if len(bad) > 1 and len(causes) == 1 and "" not in causes:
        report.notes.insert(0, f"every wrong output {next(iter(causes))}")
    for note in report.notes:
        lines.append(f"  note: {note}")
    report.message = "\n".join(lines)
    return report

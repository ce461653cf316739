"""``lstm-derive check FILE [FILE ...]``: find the known functions in a user's files and judge each.

Contract. :func:`check_files` prepares filtered copies of the files
(:mod:`derive.verifier.userfiles`), runs them in a child process with a time and
a memory limit (:mod:`derive.verifier.sandbox`, :mod:`derive.verifier.child`),
and judges what the child measured: each gradient the user's backward returned
against the central differences of the user's own forward (referee (a)), every
gradient the API has but the function did not return named (completeness), and
the user's forward compared with the bundled cell it claims
(:mod:`derive.verifier.recognise`, referee (b)), and where something is wrong
the intermediate where the mistake lives, for one-step and whole-sequence
functions alike (the course's functions by the derivation's check, CS231n's
and min-char-rnn's, whose arrays map onto a notation, by
:mod:`derive.verifier.localise_api`). It returns a
:class:`FilesReport`: one :class:`PairVerdict` per backward, and ``status`` 0
(all right), 1 (something wrong or incomplete), 2 (nothing could be checked).
Nothing the user's code does (a hang, ``exit``, a crash, an exception) is ever
"right" or "wrong": it is "could not check", with the reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from derive.errors import DeriveError
from derive.verifier import apis, sandbox, userfiles

TOL = 1e-5  # central differences in float64 agree to ~1e-8 at these sizes
TOL_FLOAT32 = 2e-2


@dataclass
class GradientCheck:
    name: str  # the forward's input
    key: str  # as the backward returned it
    ok: bool
    rel_error: float | None
    message: str


@dataclass
class PairVerdict:
    backward: str
    forward: str
    family: str
    verdict: str  # right | wrong | incomplete | could not check
    checks: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    reason: str = ""
    recognition: str = ""
    sizes: dict = field(default_factory=dict)
    preset: str = ""
    # the file of a name several files define, beside the name (which stays the code's own)
    backward_file: str = ""
    forward_file: str = ""
    backward_module: str = ""  # the child's module of that file: where the diagnosis finds the definition

    @property
    def backward_label(self) -> str:
        """``rnn_backward``, or ``rnn_backward of layers.py`` for a name two files define."""
        return f"{self.backward} of {self.backward_file}" if self.backward_file else self.backward

    @property
    def forward_label(self) -> str:
        return f"{self.forward} of {self.forward_file}" if self.forward_file else self.forward

    def to_dict(self) -> dict:
        return {"backward": self.backward, "forward": self.forward,
                "backward_file": self.backward_file, "forward_file": self.forward_file,
                "family": self.family, "verdict": self.verdict,
                "checked": [c.key for c in self.checks], "missing": list(self.missing),
                "outputs": [{"name": c.name, "key": c.key, "ok": c.ok, "rel_error": c.rel_error,
                             "message": c.message} for c in self.checks],
                "notes": list(self.notes), "reason": self.reason, "recognition": self.recognition,
                "sizes": dict(self.sizes)}

    def lines(self) -> list[str]:
        head = f"{self.verdict}: {self.backward_label}"
        if self.forward and self.forward_label != self.backward_label:
            head += f" (cache from your {self.forward_label})"
        out = [head]
        if self.reason:
            out.append(f"  {self.reason}")
        if self.recognition:
            out.append(f"  {self.recognition}")
        for c in self.checks:
            out.append(f"  {'ok ' if c.ok else 'BAD'} {c.message}")
        if self.missing:
            out.append(f"  missing: {', '.join('d' + m for m in self.missing)} (not returned)")
        if self.checks:
            out.append(f"  checked: {', '.join(c.key for c in self.checks)}")
        out += [f"  note: {n}" for n in self.notes]
        return out


@dataclass
class FilesReport:
    files: list
    pairs: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    reason: str = ""  # why nothing could be checked

    @property
    def status(self) -> int:
        verdicts = [p.verdict for p in self.pairs]
        if not verdicts or all(v == "could not check" for v in verdicts):
            return 2
        if any(v in ("wrong", "incomplete") for v in verdicts):
            return 1
        if any(v == "could not check" for v in verdicts):
            return 2 if not any(v == "right" for v in verdicts) else 1
        return 0

    def to_dict(self) -> dict:
        return {"status": self.status, "files": self.files, "functions": [p.to_dict() for p in self.pairs],
                "notes": list(self.notes), "reason": self.reason}

    def __str__(self) -> str:
        lines = []
        for p in self.pairs:
            lines += p.lines()
        for n in self.notes:
            lines.append(f"note: {n}")
        if self.reason:
            lines.append(f"could not check: {self.reason}")
        counts = {}
        for p in self.pairs:
            counts[p.verdict] = counts.get(p.verdict, 0) + 1
        summary = ", ".join(f"{n} {v}" for v, n in counts.items()) or "nothing checked"
        lines.append(f"summary: {summary} (exit {self.status})")
        return "\n".join(lines)


def _rel(got: np.ndarray, want: np.ndarray) -> float:
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    worst = float(np.max(np.abs(got - want))) if want.size else 0.0
    return worst / scale if scale > 1e-12 else worst


def judge_pair(raw: dict, allow_missing: bool = False) -> PairVerdict:
    """One pair as the child measured it -> a verdict."""
    v = PairVerdict(raw.get("backward", "?"), raw.get("forward", ""), raw.get("family", ""), "could not check",
                    notes=list(raw.get("notes", [])), sizes=raw.get("sizes", {}), preset=raw.get("preset", ""),
                    backward_file=raw.get("backward_file", ""), forward_file=raw.get("forward_file", ""),
                    backward_module=raw.get("backward_module", ""))
    if raw.get("status") != "ok":
        stage = raw.get("stage")
        fwd, bwd = v.forward_label, v.backward_label
        who = {"forward": f"your {fwd} (which makes the cache)", "backward": f"your {bwd}",
               "setup": f"setting up {fwd}", "differences": f"your {fwd}, run again on nudged inputs,",
               "api": ""}.get(stage, "")
        v.reason = f"{who} raised {raw.get('error')}" if who else str(raw.get("error"))
        if stage in ("forward", "setup"):
            v.reason += " at every size tried"
        elif stage in ("backward", "differences"):
            sizes = ", ".join(f"{k}={n}" for k, n in raw.get("sizes", {}).items())
            v.reason += f" at sizes {sizes}, where your {fwd} ran"
        key = re.match(r"KeyError: '(\w+)'", str(raw.get("error", "")))
        if key and stage in ("forward", "setup") and raw.get("inputs") and key.group(1) not in raw["inputs"]:
            # the API's dict carries its own names (parameters["Wax"]); the code asked for another
            v.reason += (f"; `{key.group(1)}` is not a name of {v.family}'s API, whose arrays the check passes "
                         f"({', '.join(sorted(raw['inputs']))}): your code names its weights its own way, and "
                         "the check cannot tell which of yours is which")
        return v
    tol = TOL_FLOAT32 if raw.get("float32") else TOL
    if raw.get("float32"):
        v.notes.append("your forward computes in float32: compared at float32 precision")
    numeric = {k: np.asarray(x, dtype=float) for k, x in raw["numeric"].items()}
    returned = raw.get("returned", {})
    # a gradient returned as None (a skeleton's `dxt = None`) is one not returned: incomplete, not wrong
    nones = [name for name, item in returned.items() if item.get("none") and not name.startswith("?")
             and name in numeric]
    for name, item in returned.items():
        key = item["key"]
        if name in nones:
            continue
        if name.startswith("?"):
            if key.startswith("d"):
                v.notes.append(f"`{key}` was returned but names no input of {v.forward}: not compared")
            continue
        want = numeric.get(name)
        if want is None:
            continue
        if item["value"] is None:
            v.checks.append(GradientCheck(name, key, False, None, f"`{key}` is not an array of finite numbers"))
            continue
        got = np.asarray(item["value"], dtype=float)
        note = ""
        named = apis.named_input(key, numeric)
        if named is not None and named != name:  # a tuple unpacked by position: the API's place decides
            v.notes.append(f"`{key}` is returned where the API returns d{name} (callers unpack by position)")
        if got.shape != want.shape:
            if got.size == want.size and np.squeeze(got).shape == np.squeeze(want).shape:
                note = f" (shape {got.shape}, {name} has {want.shape})"
                got = got.reshape(want.shape)
            else:
                hint = "; transposed?" if tuple(reversed(got.shape)) == want.shape else ""
                v.checks.append(GradientCheck(name, key, False, None,
                                              f"`{key}` has shape {got.shape} but {name} has shape {want.shape}{hint}"))
                continue
        err = _rel(got, want)
        ok = err <= tol
        msg = (f"`{key}` matches d{name} of your forward (relative error {err:.1e}){note}" if ok else
               f"`{key}` is wrong: relative error {err:.2g} against d{name} of your forward{note}")
        if not ok and np.allclose(got, -want, rtol=1e-4, atol=1e-8 * max(1.0, float(np.max(np.abs(want))))):
            msg += " (its sign is flipped)"
        v.checks.append(GradientCheck(name, key, ok, err if math.isfinite(err) else None, msg))
    required = raw.get("required", [])
    v.missing = [r for r in required if r not in returned or r in nones] + [n for n in nones if n not in required]
    if nones:
        v.notes.append(f"{', '.join('`' + returned[n]['key'] + '`' for n in nones)} returned as None: not computed")
    if any(not c.ok for c in v.checks):
        v.verdict = "wrong"
    elif not v.checks and not (nones and not allow_missing):
        v.verdict = "could not check"
        v.reason = ("every gradient it returned is None" if nones else
                    "it returned no gradient that names an input of the forward")
    elif v.missing and not allow_missing:
        v.verdict = "incomplete"
    else:
        v.verdict = "right"
        if v.missing:
            v.notes.append(f"--allow-missing: {', '.join('d' + m for m in v.missing)} not checked")
    return v


def check_files(paths: list[str], *, sizes: dict[str, int] | None = None, timeout: float = 5.0,
                allow_missing: bool = False, recognise: bool = True,
                pair: tuple[str, str] | None = None) -> FilesReport:
    """Every known forward/backward pair in ``paths``, checked (see the module docstring);
    with ``pair`` (forward, backward), only those two functions, named by the user."""
    prepared = userfiles.prepare(paths)
    report = FilesReport([str(p) for p in paths], notes=list(prepared.notes))
    try:
        job = {"folder": str(prepared.folder), "modules": prepared.modules, "sizes": dict(sizes or {}),
               "files": {m: Path(src).name for m, src in prepared.sources.items()},
               "budget": timeout, **({"pair": list(pair)} if pair else {})}
        try:
            answer = sandbox.run_child(job, timeout=timeout + sandbox.STARTUP_SECONDS)
        except sandbox.CouldNotCheck as exc:
            report.reason = str(exc)
            return report
    finally:
        userfiles.cleanup(prepared)
    report.notes += answer.get("notes", [])
    if answer.get("timeout"):
        report.reason = (f"the code did not finish within {timeout:g} s (a loop that never ends? "
                         "raise the limit with --timeout)")
        return report
    for raw in answer.get("pairs", []):
        if raw is None:
            continue
        verdict = judge_pair(raw, allow_missing)
        if recognise and raw.get("status") == "ok":
            from derive.verifier import recognise as rec

            try:
                verdict.recognition = rec.describe(raw)
            except Exception as exc:  # recognition is a diagnosis: its failure never changes a verdict
                verdict.notes.append(f"recognition failed: {type(exc).__name__}: {exc}")
        if verdict.verdict == "wrong" and raw.get("status") == "ok":
            from derive.verifier import localise_api

            try:  # referee (b) for an API whose arrays map onto a notation: where the mistakes live
                verdict.notes += [f"the derivation says: {n}" for n in localise_api.diagnose(raw)]
            except Exception:  # a diagnosis never changes a verdict
                pass
        report.pairs.append(verdict)
    _diagnose(report, job, timeout)
    if not report.pairs:
        found = answer.get("functions", [])
        backwards = [f for f in found if "backward" in f.lower() or f == "lossFun"]
        report.reason = ("found no forward/backward pair of a known API"
                         + (f" (functions found: {', '.join(found[:12])})" if found else " (no functions found)")
                         + ("; name the pair with PRESET FILE:NAME --forward NAME" if backwards else ""))
    return report


def check_named_function(source: str, target: str, *, returns: list[str] | None = None,
                         sequence: bool | None = None, timeout: float = 5.0) -> tuple[int, dict, str]:
    """``lstm-derive check PRESET FILE.py:NAME``: NAME's parameters filled by the
    notation's names (:func:`derive.verifier.function.check`), run in the child
    like everything else of the user's. (status, report as a dict, message);
    :class:`DeriveError` when it could not be checked (exit 2)."""
    from pathlib import Path

    path, sep, name = target.rpartition(":")
    if not sep or not path or not name:
        raise DeriveError(f"`{target}`: write FILE.py:NAME")
    if Path(source).is_file():
        source = str(Path(source).resolve())
    prepared = userfiles.prepare([path])
    try:
        job = {"folder": str(prepared.folder), "modules": prepared.modules, "budget": timeout,
               "function": {"source": source, "file": path, "name": name, "returns": returns, "sequence": sequence}}
        try:
            answer = sandbox.run_child(job, timeout=timeout + sandbox.STARTUP_SECONDS)
        except sandbox.CouldNotCheck as exc:
            raise DeriveError(f"could not check {name}: {exc}") from None
    finally:
        userfiles.cleanup(prepared)
    if answer.get("timeout"):
        raise DeriveError(f"could not check {name}: it did not finish within {timeout:g} s (raise --timeout)")
    result = answer.get("function") or {}
    if "error" in result:
        raise DeriveError(result["error"])
    return result["status"], result["report"], result["message"]


# the presets whose names are the user's own names, so that referee (b) can fill
# the user's backward by name; other APIs get referee (a) and recognition only
DIAGNOSABLE = {"coursera": ("coursera", "coursera_rnn")}


def _diagnose(report: FilesReport, job: dict, timeout: float) -> None:
    """Referee (b) for the wrong outputs of functions in the course's names: a
    second child runs the derivation's check on them and names the cause. Each
    is looked up by its bare name, in its own file when several files define it."""
    if job.get("pair"):
        return
    targets = [p for p in report.pairs if p.verdict == "wrong" and p.preset in DIAGNOSABLE.get(p.family, ())]
    wanted = [(p.backward, p.preset, p.backward_module) for p in targets]
    if not wanted:
        return
    prepared = userfiles.prepare(report.files)
    try:
        job = {**job, "folder": str(prepared.folder), "modules": prepared.modules, "diagnose": wanted,
               "budget": timeout * 4}  # the user's code already ran within `timeout`; the search takes longer
        try:
            answer = sandbox.run_child(job, timeout=timeout * 4 + sandbox.STARTUP_SECONDS)
        except sandbox.CouldNotCheck:
            return
    finally:
        userfiles.cleanup(prepared)
    for p, diag in zip(targets, answer.get("diagnoses", [])):  # one diagnosis per target, in order
        if not diag or "outputs" not in diag:
            continue
        for c in p.checks:
            msg = diag["outputs"].get(c.key)
            if msg and not c.ok and ": it " in msg:
                c.message += "; the derivation says: it " + msg.split(": it ", 1)[1]
        p.notes += [f"the derivation says: {n}" for n in diag.get("notes", [])]


def parse_sizes(text: str | None) -> dict[str, int]:
    """``n_a=5,n_x=3`` -> {"n_a": 5, "n_x": 3}."""
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip().isidentifier() or not value.strip().isdigit() or int(value) < 1:
            raise DeriveError(f"--sizes: write NAME=NUMBER,... (got `{part.strip()}`)")
        out[key.strip()] = int(value)
    return out

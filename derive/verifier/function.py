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
per-step quantity; the match is reported.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import sympy as sp

from derive.numeric import evaluate as ev
from derive.errors import DeriveError

TOL = 1e-7  # a user's float64 code may sum in another order


def _notebook_sequence(zero_initial: tuple = (), outputs: dict | None = None) -> dict:
    """The convention of the Coursera notebook's rnn_backward / lstm_backward:
    the upstream gradients da over time and the caches the forward returned in,
    dx and da0 out, and the LSTM's dc0 among ``outputs``; ``zero_initial``
    names the states its forward starts at zero."""
    return {
        "trigger": ("caches",),
        "loss": "upstream",
        **({"zero_initial": zero_initial} if zero_initial else {}),
        "time_axis": -1,
        "inputs": {
            "da": ("stack", "da"),
            "caches": ("pair", ("list", "cache"), ("stack", "xt")),
            "x": ("stack", "xt"),
            "a0": ("initial", "a_prev"),
        },
        "outputs": {
            "dx": ("stack", "dxt"),
            "da0": ("initial", "da_prev"),
            **(outputs or {}),
        },
    }


# Containers and whole-sequence signatures of each notation's own code. Any
# other cell (a preset without an entry, a user's spec) is checked by the
# generic conventions of `_sequence_conventions`: names filled by name,
# per-step values stacked over time.
CONVENTIONS: dict[str, dict] = {
    "coursera_rnn": {
        "containers": {
            "cache": ("tuple", ("a_next", "a_prev", "xt", "parameters")),
            "parameters": ("dict", ("Waa", "Wax", "Wya", "ba", "by")),
        },
        # rnn_backward(da, caches) -> {dx, da0, dWax, dWaa, dba}
        "sequence": _notebook_sequence(),
    },
    "coursera": {
        "containers": {
            "cache": ("tuple", ("a_next", "c_next", "a_prev", "c_prev", "ft", "it", "cct", "ot", "xt", "parameters")),
            "parameters": ("dict", ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo", "Wy", "by")),
        },
        # lstm_backward(da, caches) -> {dx, da0, dc0, dWf, dbf, ...}; lstm_forward
        # starts from c0 = 0
        "sequence": _notebook_sequence(zero_initial=("c_prev",), outputs={"dc0": ("initial", "dc_prev")}),
    },
}


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

    @property
    def status(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict:
        return {"ok": self.ok, "preset": self.preset, "function": self.function, "mode": self.mode,
                "outputs": [o.to_dict() for o in self.outputs], "message": self.message, "notes": list(self.notes),
                "error": self.error}

    def __str__(self) -> str:
        return self.message

    def _repr_markdown_(self) -> str:
        head = "**right**" if self.ok else "**wrong**"
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


# ---------------------------------------------------------------------------
# loading a function from a file


def load_function(target: str) -> Callable:
    """``path/to/file.py:NAME`` (NAME may be dotted: ``Class.method``). Imports
    the file, which runs its top-level code."""
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise DeriveError(f"`{target}`: write FILE.py:NAME")
    path = Path(path_text)
    if not path.is_file():
        raise DeriveError(f"{path}: no such file")
    module_name = f"_lstm_derive_check_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DeriveError(f"{path}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SystemExit:
        raise DeriveError(f"{path}: the file called exit() while being imported") from None
    except BaseException as exc:  # the user's code: report, do not crash
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise DeriveError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from None
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            from derive.spec.expr import suggest

            near = [n for n in dir(obj) if not n.startswith("__") and callable(getattr(obj, n, None))]
            raise DeriveError(f"{path} has no `{name}`{suggest(part, near)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise DeriveError(f"`{name}` in {path} is not a function")
    return obj


# ---------------------------------------------------------------------------
# states


def _value(ctx, env, name, dims):
    cell = ctx.cell
    if name in dims:
        return int(dims[name])
    if name in env:
        return np.array(env[name], copy=True)
    alias = cell.aliases.get(name)
    if alias is not None and alias != name:
        return _value(ctx, env, alias, dims)
    raise KeyError(name)


def _fill(ctx, fn, env, dims, conv, extra: dict | None = None, per_step: frozenset = frozenset()) -> tuple[list, dict, Any]:
    """(positional args, keyword args, the `self` namespace or None).
    ``per_step``: names that have one value per step, which a whole-sequence
    function can only receive through ``extra`` (stacked over time)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise DeriveError("cannot read the function's parameters") from None
    args, kwargs = [], {}
    me = None
    for i, (pname, param) in enumerate(sig.parameters.items()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        value = _MISSING
        if extra and pname in extra:
            value = extra[pname]
        elif pname == "self" and i == 0:
            me = value = _namespace(ctx, env, dims)
        elif pname in conv.get("containers", {}):
            value = _container(ctx, env, dims, conv, pname)
        else:
            if _target(ctx, pname) in per_step:
                raise DeriveError(f"cannot fill the parameter `{pname}` of a whole-sequence function: it has one value "
                                  "per step, and only the inputs, forward values and given gradients are passed "
                                  "stacked over time")
            try:
                value = _value(ctx, env, pname, dims)
            except KeyError:
                if param.default is not param.empty:
                    continue
                known = sorted(set(ctx.cell.symbols) | set(ctx.derivation.cell_inputs) | set(conv.get("containers", {}))
                               | set(ctx.cell.dims))
                from derive.spec.expr import suggest

                raise DeriveError(f"cannot fill the parameter `{pname}`: it is not a name of the {ctx.cell.name} "
                                  f"notation{suggest(pname, known)}") from None
        if param.kind == param.KEYWORD_ONLY:
            kwargs[pname] = value
        else:
            args.append(value)
    return args, kwargs, me


_MISSING = object()


def _target(ctx, name: str) -> str:
    """A name or Python alias of the notation -> the notation's own name."""
    return ctx.cell.aliases.get(name, name)


def _container(ctx, env, dims, conv, name):
    kind, parts = conv["containers"][name]
    values = []
    for p in parts:
        if p in conv["containers"]:
            values.append(_container(ctx, env, dims, conv, p))
        else:
            try:
                values.append(_value(ctx, env, p, dims))
            except KeyError:
                values.append(_extra_param(ctx, p, dims))
    return tuple(values) if kind == "tuple" else dict(zip(parts, values))


def _extra_param(ctx, name, dims):
    """A parameter the checked derivation does not use (Wy, by of the softmax
    head when checking the cell with an upstream gradient): random, with the
    shape the full notation gives it."""
    full = getattr(ctx, "full_cell", None) or ctx.cell
    info = full.symbols.get(name)
    if info is None:
        raise KeyError(name)
    import zlib

    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.normal(0.0, 0.5, ev.concrete_shape(info.shape, dims))


def _namespace(ctx, env, dims):
    """``self`` for code that reads ``self.state.o``: an object with exactly the
    attributes the notation's aliases spell."""
    root = types.SimpleNamespace()
    for alias, target in ctx.cell.aliases.items():
        parts = alias.split(".")
        if parts[0] != "self" or len(parts) < 2:
            continue
        obj = root
        for p in parts[1:-1]:
            if not hasattr(obj, p):
                setattr(obj, p, types.SimpleNamespace())
            obj = getattr(obj, p)
        if target in ctx.backward_names:
            if ctx.is_sum(target):
                setattr(obj, parts[-1], np.zeros(ev.concrete_shape(ctx.shapes[target], dims)))
            continue
        try:
            setattr(obj, parts[-1], _value(ctx, env, target, dims))
        except KeyError:
            pass
    return root


def _from_namespace(ctx, me) -> dict:
    out = {}
    for alias, target in ctx.cell.aliases.items():
        parts = alias.split(".")
        if parts[0] != "self" or target not in ctx.backward_names:
            continue
        obj = me
        for p in parts[1:]:
            obj = getattr(obj, p, _MISSING)
            if obj is _MISSING:
                break
        if obj is not _MISSING:
            out[alias] = obj
    return out


# ---------------------------------------------------------------------------
# checking


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


def _call(fn, args, kwargs):
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # the user's code
        return None, f"{type(exc).__name__}: {exc}"


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
            report.message = (f"wrong: {fname} raised {error}\n  (it was called as one step of the cell, with "
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
    return _finish(report, ctx)


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


def _resolve(ctx, key: str) -> str | None:
    if key in ctx.backward_names:
        return ctx.resolve_book(key)
    alias = ctx.cell.aliases.get(key)
    if alias in ctx.backward_names:
        return alias
    return None


def _match_by_value(ctx, value, env) -> str | None:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    for name in sorted(ctx.backward_names):
        ref = env.get(name)
        if ref is None or np.shape(ref) != arr.shape:
            continue
        if _rel([arr], [ref]) <= TOL:
            return name
    return None


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


# ---------------------------------------------------------------------------
# whole sequences (Coursera's lstm_backward(da, caches), rnn_backward(da, caches),
# or any cell's function that takes stacked inputs)


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
        report.message = f"wrong: {fname} raised {error}"
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
    for key, value in result.items():
        name, want = expected(str(key), tot)
        if name is None:
            continue
        check = _compare_plain(name, str(key), value, want)
        if not check.ok and check.rel_error is not None:
            explain(check, value)
        report.outputs.append(check)
    if not report.outputs:
        report.message = (f"wrong: {fname} returned nothing the {ctx.cell.name} notation names "
                          f"(known: {', '.join(sorted(outputs))} and the parameter gradients)")
        return report
    return _finish(report, ctx)


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

"""Filling a user's backward function's parameters by name, from the notation.

Contract. :func:`load_function` imports ``FILE.py:NAME`` (running the file's
top-level code); :func:`_fill` gives every parameter of a function its value by
name from a consistent random state of the notation (forward values,
parameters, inputs, previous states, sizes, the gradients reaching the cell,
the notation's Python aliases), the containers of :data:`CONVENTIONS`
(Coursera's ``cache`` tuple and ``parameters`` dict), and ``self`` for code that
reads attributes; :func:`_call` calls it and turns whatever it raises into a
message. See :mod:`derive.verifier.function` for the whole contract.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np

from derive.errors import DeriveError
from derive.numeric import evaluate as ev
from derive.verifier.function_report import TOL, _rel


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
    _set_globals(ctx, fn, env, dims)
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
                                  f"notation{suggest(pname, known)}{_hint(pname, per_step)}") from None
        if param.kind == param.KEYWORD_ONLY:
            kwargs[pname] = value
        else:
            args.append(value)
    return args, kwargs, me


_MISSING = object()
_SET = "__derive_set_globals__"  # in a user's module: the globals the check set there


def _set_globals(ctx, fn, env, dims) -> None:
    """Notebook code that reads the notation's parameters as globals (``Wf`` in the
    course's lstm_cell_backward: the notebook's test cells set them, and they do not
    run here): each such global, missing from the function's module, gets the value
    the check uses, in ``fn`` and in the functions of its module it calls (the
    whole-sequence lstm_backward calls lstm_cell_backward). A global the user's
    module defines itself is never touched."""
    from derive.verifier.apis import free_names

    seen: set[int] = set()
    todo = [fn]
    while todo:
        f = todo.pop()
        f = getattr(f, "__func__", f)
        g = getattr(f, "__globals__", None)
        if g is None or id(f) in seen or str(g.get("__name__")).split(".")[0] in ("None", "builtins", "derive", "numpy"):
            continue
        seen.add(id(f))
        mine = g.setdefault(_SET, set())
        for name in free_names(f):
            held = g.get(name, _MISSING)
            if held is not _MISSING and name not in mine:
                if inspect.isfunction(held) and held.__globals__ is g:
                    todo.append(held)
                continue
            if name in dims or ctx.role(_target(ctx, name)) != "param":
                continue
            try:
                g[name] = _value(ctx, env, name, dims)
            except KeyError:
                continue
            mine.add(name)


def _hint(pname: str, per_step) -> str:
    """What a parameter the notation has no name for usually means: an initial
    state (a whole-sequence function), or a cache made by the user's own forward."""
    if not per_step and re.fullmatch(r"[A-Za-z]+_?0", pname):
        return f" (`{pname}` looks like an initial state: if the function runs through a whole sequence, add --sequence)"
    if re.fullmatch(r"caches?", pname):
        return (f" (a `{pname}` comes from your own forward: `lstm-derive check FILE.py` pairs each backward with "
                "its forward, or name the forward with --forward NAME)")
    return ""


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


def _call(fn, args, kwargs):
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # the user's code
        return None, f"{type(exc).__name__}: {exc}"


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

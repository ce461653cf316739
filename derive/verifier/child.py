"""The child process of ``lstm-derive check FILE``: the only place the user's code runs.

Contract. ``python -m derive.verifier.child JOB.json`` reads the job (the folder
of filtered copies from :mod:`derive.verifier.userfiles`, the module names, the
sizes asked for, the time budget), imports the user's modules, finds every
forward/backward pair of a known API (:data:`derive.verifier.apis.ROWS`), and for
each pair: builds random inputs at sizes that fit the code, runs the user's
forward (which makes the cache), runs the user's backward on that cache with a
random upstream gradient, and differentiates the user's forward by central
differences (referee (a): no notation, no mapping). It writes the raw numbers as
JSON to the job's ``answer`` file and judges nothing; the parent compares.

Sizes the user's forward does not take (a shape error in the forward: sizes fixed
somewhere in the code) are retried at the next set; a pair is reported as failing
only when every set fails. Once the forward ran at a set of sizes, a failure of
the backward on that forward's cache is the answer: it is never retried at a
smaller set (batch 1, D = H), where a broken reshape or a transposed weight
would pass. ``SystemExit`` raised inside the user's code
is caught and reported as such. The user's code as a whole gets ``budget``
seconds (an alarm), after the files' imports got theirs (:data:`LOAD_SECONDS`);
the parent's wall-clock limit catches what ignores it.
Names the user's code reads but that a missing helper module would have
supplied (``np``, ``sigmoid``, ``softmax``; ``xrange`` of Python 2) are given the
course's definitions, and said so.
"""

from __future__ import annotations

import builtins
import importlib
import itertools
import json
import os
import signal
import sys
import traceback

import numpy as np

from derive.verifier import apis

CANDIDATE_SIZES = ({"D": 3, "H": 4, "N": 2, "T": 3, "V": 5},
                   {"D": 4, "H": 3, "N": 3, "T": 4, "V": 4},
                   {"D": 2, "H": 2, "N": 1, "T": 2, "V": 3})


LOAD_SECONDS = 30.0  # for the imports of the user's files, before the budget of the checks starts


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x):  # the Coursera rnn_utils version: over the first axis
    e_x = np.exp(x - np.max(x))
    return e_x / e_x.sum(axis=0)


FALLBACKS = {"np": lambda: np, "numpy": lambda: np, "sigmoid": lambda: _sigmoid, "softmax": lambda: _softmax,
             "xrange": lambda: range}


class _OutOfTime(BaseException):
    """Raised by the alarm; a BaseException so that a bare ``except Exception`` in user code lets it through."""


def _alarm(_sig, _frame):
    raise _OutOfTime()


def load(job: dict) -> tuple[dict, list[str], dict[str, list]]:
    """({name: object} over all modules, the later file's winning as in Python;
    notes; {name: [(module, object), ...]} for a function or class that more than
    one file defines, each of which is checked)."""
    sys.path.insert(0, job["folder"])
    names: dict = {}
    defined: dict[str, list] = {}
    notes: list[str] = []
    for mod in job["modules"]:
        try:
            module = importlib.import_module(mod)
        except SystemExit as exc:
            notes.append(f"{mod}: exit({exc.code}) while its definitions were loaded; skipped")
            continue
        except _OutOfTime:
            raise
        except BaseException as exc:  # noqa: BLE001 - the user's code
            notes.append(f"{mod}: loading its definitions raised {type(exc).__name__}: {exc}; skipped")
            continue
        g = vars(module)
        failed = g.get("__derive_failed__", [])
        read = set()
        for obj in list(g.values()):
            if callable(obj) and getattr(obj, "__module__", None) == mod:
                read |= apis.free_names(obj)
                for meth in vars(obj).values() if isinstance(obj, type) else ():
                    read |= apis.free_names(meth)
        supplied = sorted(n for n in FALLBACKS if n in read and n not in g and not hasattr(builtins, n))
        for n in supplied:
            g[n] = FALLBACKS[n]()
        for what, line, err in failed:
            if what == "import":
                notes.append(f"{mod} line {line}: an import failed ({err})"
                             + (f"; supplied {', '.join(supplied)} the course's way" if supplied else ""))
                supplied = []
        for key, obj in g.items():
            if key.startswith("__"):
                continue
            own = getattr(obj, "__module__", None) == mod
            if key not in names or own:
                names[key] = obj
            if own and callable(obj):
                defined.setdefault(key, []).append((mod, obj))
    return names, notes, {k: v for k, v in defined.items() if len(v) > 1}


MAX_VIEWS = 64


def _views(names: dict, duplicates: dict[str, list]) -> list[tuple[dict, dict[str, str]]]:
    """The namespaces to search for pairs: Python's (the later file wins) first, then
    every other choice of definition for the names several files define that a
    known API looks up (a function or a class), so that no definition goes
    unchecked; with the module each duplicated name comes from. At most
    :data:`MAX_VIEWS`."""
    looked_up = {getattr(row, attr, None) for row in apis.ROWS for attr in ("forward", "backward", "function")}
    keys = [k for k, defs in duplicates.items() if k in looked_up or isinstance(defs[-1][1], type)]
    views = []
    for choice in itertools.product(*[list(reversed(duplicates[k])) for k in keys]):
        view = dict(names, **{k: obj for k, (_mod, obj) in zip(keys, choice)})
        views.append((view, {k: mod for k, (mod, _obj) in zip(keys, choice)}))
        if len(views) == MAX_VIEWS:
            break
    return views


def run_all(names: dict, duplicates: dict[str, list], job: dict) -> list[dict]:
    """Every pair of every known API, in every view; a pair made of the same two
    objects is checked once. A duplicated name's report says which file's it is
    (``backward_file``, ``backward_module``; ``forward_*`` alike) beside the bare
    name, which stays the name the user's code and the derivation know."""
    files = job.get("files", {})
    out, seen = [], set()
    for view, origin in _views(names, duplicates):
        for row in apis.ROWS:
            for pair in row.find(view):
                ident = (id(row), pair, id(_lookup(view, pair[0])), id(_lookup(view, pair[1])))
                if ident in seen:
                    continue
                seen.add(ident)
                report = run_pair(row, pair, view, job)
                for head in dict.fromkeys(p.split(".")[0] for p in pair):
                    if head not in origin:
                        continue
                    where = files.get(origin[head], origin[head])
                    for role, name in (("forward", pair[0]), ("backward", pair[1])):
                        if name.split(".")[0] == head and report.get(role):  # beside the name, not in it
                            report[f"{role}_file"], report[f"{role}_module"] = where, origin[head]
                    others = [files.get(m, m) for m, _ in duplicates[head] if m != origin[head]]
                    report["notes"] = report.get("notes", []) + [
                        f"{head} is defined in {where} and in {', '.join(others)}: each is checked"]
                out.append(report)
    return out


def _sizes(job: dict, names: dict, reads: set[str]) -> list[dict]:
    """The size sets to try, best first: module constants the code reads, then
    --sizes, over each candidate."""
    fixed: dict[str, int] = {}
    for letter, spellings in apis.SIZE_NAMES.items():
        for s in spellings:
            if s in reads and isinstance(names.get(s), int) and not isinstance(names.get(s), bool):
                fixed[letter] = names[s]
    for key, value in job.get("sizes", {}).items():
        letter = next((L for L, sp in apis.SIZE_NAMES.items() if key == L or key in sp), None)
        if letter:
            fixed[letter] = int(value)
    out = []
    for cand in CANDIDATE_SIZES:
        d = {**cand, **fixed}
        if d not in out:
            out.append(d)
    return out


def _copy(vals: dict) -> dict:
    return {k: np.array(v, copy=True) for k, v in vals.items()}


def _loss(problem: apis.Problem, vals: dict, up: dict) -> float:
    outs, _ = problem.forward(_copy(vals))
    return float(sum(np.sum(np.asarray(up[k]) * np.asarray(outs[k], dtype=float)) for k in up))


def central_differences(problem: apis.Problem, up: dict, which: list[str], eps: float) -> dict:
    """d(sum of upstream * outputs)/d(input) for each input in ``which``."""
    vals = _copy(problem.inputs)
    out = {}
    for name in which:
        base = vals[name]
        grad = np.zeros_like(base, dtype=float)
        for idx in np.ndindex(base.shape):
            keep = base[idx]
            base[idx] = keep + eps
            plus = _loss(problem, vals, up)
            base[idx] = keep - eps
            minus = _loss(problem, vals, up)
            base[idx] = keep
            grad[idx] = (plus - minus) / (2 * eps)
        out[name] = grad
    return out


def _listed(x):
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr.tolist() if np.all(np.isfinite(arr)) else None


def _error(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called exit({exc.code})"
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f" (in {fr.name})" for fr in reversed(tb)
                  if "derive" not in fr.filename.split(os.sep)[-3:-1] and "numpy" not in fr.filename), "")
    return f"{type(exc).__name__}: {exc}{where}"


def _lookup(names: dict, dotted: str):
    """``rnn_forward`` or ``LstmNode.bottom_data_is``."""
    head, *rest = dotted.split(".")
    obj = names.get(head)
    for part in rest:
        obj = getattr(obj, part, None)
    return obj


def definition(names: dict, duplicates: dict[str, list], dotted: str, module: str = ""):
    """``dotted`` as :func:`_lookup` finds it, but from ``module`` when several
    files define its head (the definition a verdict was given for)."""
    head = dotted.split(".")[0]
    own = [obj for mod, obj in duplicates.get(head, []) if mod == module]
    return _lookup({**names, head: own[-1]} if own else names, dotted)


def run_pair(row, pair, names: dict, job: dict) -> dict:
    fwd, bwd = _lookup(names, pair[0]), _lookup(names, pair[1])
    reads = apis.free_names(fwd) | apis.free_names(bwd)
    # the parameter and state classes a node API builds read the sizes too (an early LstmParam() sized by
    # the module constants mem_cell_ct, x_dim)
    classes = [fwd, bwd] + [names.get(getattr(row, attr)) for attr in ("param", "state") if hasattr(row, attr)]
    for obj in classes:
        if isinstance(obj, type):
            for meth in vars(obj).values():
                reads |= apis.free_names(meth)
    first = None
    for dims in _sizes(job, names, reads):
        rng = np.random.default_rng(7)
        report = {"forward": pair[0], "backward": pair[1], "family": row.family, "sizes": dims}
        stage = "setup"
        try:
            problem = row.build(pair, names, dims, rng)
            report.update(forward=problem.forward_name, backward=problem.backward_name, preset=problem.preset,
                          sequence=problem.sequence, required=problem.required, notes=problem.notes,
                          inputs={k: list(np.shape(v)) for k, v in problem.inputs.items()})
            if problem.api:
                report["api_forward"] = problem.api
            stage = "forward"
            outs, cache = problem.forward(_copy(problem.inputs))
            outs = {k: np.asarray(v) for k, v in outs.items()}
            float32 = any(v.dtype == np.float32 for v in outs.values())
            up = {k: (np.ones(()) if problem.loss_output else rng.normal(0.0, 1.0, v.shape)) for k, v in outs.items()}
            sample = {"inputs": {k: v.tolist() for k, v in problem.inputs.items()},
                      "outputs": {k: _listed(v) for k, v in outs.items()}, "given": problem.given,
                      "upstream": {k: v.tolist() for k, v in up.items()}}
            stage = "backward"
            got = problem.backward(_copy(up), cache)
            stage = "differences"
            which = sorted(set(problem.required) | {k for k in got if k in problem.inputs})
            numeric = central_differences(problem, up, which, 1e-3 if float32 else 1e-6)
        except apis._ApiError as exc:
            report.update(status="error", stage="api", error=str(exc))
            return report
        except _OutOfTime:
            raise
        except BaseException as exc:  # noqa: BLE001 - the user's code
            report.update(status="error", stage=stage, error=_error(exc))
            if stage not in ("setup", "forward"):
                # the user's own forward ran at these sizes, so they are sizes the code takes: a backward
                # that fails on its forward's cache fails here, and a smaller size (N = 1, D = H) would hide it
                if first is not None:
                    report["notes"] = report.get("notes", []) + [f"at sizes {first['sizes']} it raised {first['error']}"]
                return report
            first = first or report
            continue
        report.update(status="ok", float32=bool(float32), sample=sample,
                      returned={k: {"key": key, "value": _listed(v), "shape": list(np.shape(v)) if _listed(v) is not None else None,
                                    **({"none": True} if v is None else {})}
                                for k, (key, v) in got.items()},
                      numeric={k: v.tolist() for k, v in numeric.items()})
        if first is not None:
            report["notes"] = report.get("notes", []) + [f"at sizes {first['sizes']} it raised {first['error']}; "
                                                         f"checked at {dims}"]
        return report
    return first


def run_named_pair(pair: tuple[str, str], names: dict, job: dict) -> dict | None:
    """``--forward F`` with ``FILE:B``: the user's own names for a known API's
    pair. Every row whose signatures fit is tried; the first whose forward runs
    at its shapes is the API."""
    missing = [n for n in pair if n not in names]
    if missing:
        return {"forward": pair[0], "backward": pair[1], "status": "error", "stage": "api",
                "error": f"no function `{missing[0]}` in the files"}
    import dataclasses

    first = None
    for row in apis.ROWS:
        if not isinstance(row, apis.FunctionPairs):
            continue
        renamed = dataclasses.replace(row, forward=pair[0], backward=pair[1])
        if not renamed.find(names):
            continue
        report = run_pair(renamed, pair, names, job)
        if report:
            report["api_forward"] = row.forward  # the API's own name, for recognition
        if report and report.get("status") == "ok":
            return report
        first = first or report
    return first or {"forward": pair[0], "backward": pair[1], "status": "error", "stage": "api",
                     "error": f"`{pair[0]}` and `{pair[1]}` have the signatures of no known API's forward and backward"}


def check_named(spec: dict, job: dict) -> dict:
    """``lstm-derive check PRESET FILE.py:NAME``: the notation fills NAME's
    parameters (:func:`derive.verifier.function.check`), here in the child."""
    from derive.errors import DeriveError
    from derive.verifier.function import check

    module = importlib.import_module(job["modules"][0])
    obj = module
    for part in spec["name"].split("."):
        parent, obj = obj, getattr(obj, part, None)
        if obj is None:
            from derive.spec.expr import suggest

            near = [n for n in dir(parent) if not n.startswith("__") and callable(getattr(parent, n, None))]
            return {"error": f"{spec['file']} has no `{spec['name']}`{suggest(part, near)}"}
    if not callable(obj):
        return {"error": f"`{spec['name']}` in {spec['file']} is not a function"}
    try:
        report = check(spec["source"], obj, returns=spec.get("returns"), sequence=spec.get("sequence"))
    except DeriveError as exc:
        return {"error": str(exc)}
    return {"report": report.to_dict(), "message": report.message, "status": report.status}


def diagnose(preset: str, fn) -> dict:
    """Referee (b): the derivation of ``preset`` with the user's function's
    arguments filled by the notation's names (:func:`derive.verifier.function.check`),
    for the term-level diagnosis of outputs referee (a) found wrong."""
    from derive.verifier.function import check

    if not callable(fn):
        return {}
    try:
        report = check(preset, fn)
    except _OutOfTime:
        raise
    except BaseException as exc:  # noqa: BLE001 - the diagnosis is optional; the verdict stands without it
        return {"error": _error(exc)}
    return {"outputs": {o.key: o.message for o in report.outputs if not o.ok and o.cause},
            "notes": list(report.notes)}


def main(jobfile: str) -> None:
    job = json.loads(open(jobfile, encoding="utf-8").read())
    answer: dict = {"pairs": [], "notes": []}
    if os.environ.get("DERIVE_CHECK_FAULT") == "child":  # fault injection for the tests of a tool-side crash
        raise RuntimeError("injected fault")
    signal.signal(signal.SIGALRM, _alarm)
    budget = float(job.get("budget", 5))
    # loading the definitions runs the files' imports (an unused `import torch` takes seconds): their own allowance
    signal.setitimer(signal.ITIMER_REAL, max(budget, LOAD_SECONDS))
    try:
        names, answer["notes"], duplicates = load(job)
        signal.setitimer(signal.ITIMER_REAL, budget)
        answer["functions"] = sorted(k for k, v in names.items() if callable(v) and not k.startswith("__")
                                     and getattr(v, "__module__", None) in job["modules"])
        if job.get("function"):
            answer["function"] = check_named(job["function"], job)
        elif job.get("diagnose"):
            answer["diagnoses"] = [diagnose(preset, definition(names, duplicates, name, module))
                                   for name, preset, module in job["diagnose"]]
        elif job.get("pair"):
            answer["pairs"].append(run_named_pair(tuple(job["pair"]), names, job))
        else:
            answer["pairs"] += run_all(names, duplicates, job)
    except _OutOfTime:
        answer["timeout"] = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    with open(job["answer"] + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(answer, fh)
    os.replace(job["answer"] + ".tmp", job["answer"])


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except SystemExit:
        raise
    except BaseException:  # a crash of the tool itself: say so on stderr, exit 3
        traceback.print_exc()
        sys.exit(3)

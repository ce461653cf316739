"""`lstm-derive check FILE ...` on a corpus of real public implementations,
each run exactly as a user runs it, and judged again by torch autograd.

The corpus is ``tests/corpus/``: one folder per implementation with its files
byte for byte as published (``git show COMMIT:PATH``) and the licence text of
its repository at that commit, described in ``tests/corpus/MANIFEST.toml``
(repository, commit, paths, licence, copyright line, what is known about it).
Every licence there allows redistribution.

Per item, two verdicts per function, obtained independently:

* the tool's: the published files are copied to a temporary folder and
  ``python -m derive check --json --timeout 60 FILE...`` runs on them in a
  subprocess, as a user runs it, no adapter (the generous time limit is for a
  loaded test machine);
* torch's, written here: the user's definitions are loaded through a small AST
  filter of this test's own (imports, defs, classes, constants; nothing at top
  level runs), the user's forward is run on random inputs and compared with the
  same cell written in torch, and the user's backward, fed the user's own cache,
  is compared with ``torch.autograd`` of that cell. A returned gradient that
  differs is "wrong", a gradient not returned (or returned as None) makes
  "incomplete", a user function that raises is "could not check".

The test asserts that the two agree on every function, that torch's verdicts
are those the manifest records (so a regression of this referee is seen too),
and that the tool calls nothing "right" that torch did not referee.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "corpus"
ITEMS = tomllib.loads((CORPUS / "MANIFEST.toml").read_text(encoding="utf-8"))["item"]


def exit_status(verdicts: list[str]) -> int:
    """The documented exit status: 0 all right, 2 nothing could be checked, else 1."""
    if all(v == "right" for v in verdicts) and verdicts:
        return 0
    return 2 if all(v == "could not check" for v in verdicts) else 1


# ---------------------------------------------------------------------------
# the tool, as a user runs it


def tool_verdicts(item: dict, tmp: Path) -> tuple[dict[str, str], int, dict]:
    folder = tmp / "published"
    folder.mkdir()
    for f in item["files"]:
        shutil.copyfile(CORPUS / item["id"] / f, folder / f)
    # --timeout: a generous limit on a loaded test machine; the files themselves are untouched
    proc = subprocess.run([sys.executable, "-m", "derive", "check", "--json", "--timeout", "60", *item["files"]],
                          capture_output=True, text=True, cwd=folder, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    return {f["backward"]: f["verdict"] for f in report["functions"]}, proc.returncode, report


# ---------------------------------------------------------------------------
# the user's definitions, loaded by this test's own filter

PRELUDE = """import numpy as np
def sigmoid(x):
    return 1 / (1 + np.exp(-x))
def softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum(axis=0)
xrange = range
"""


def _statements(text: str) -> list[ast.stmt]:
    try:
        return ast.parse(text).body
    except SyntaxError:  # Python 2, pasted outputs: keep the top-level blocks that parse
        lines, out, start = text.splitlines(keepends=True), [], 0
        cuts = [i for i, line in enumerate(lines) if i and line[:1].strip() and line[0] not in "#)]}"] + [len(lines)]
        for cut in cuts:
            try:
                out += ast.parse("".join(lines[start:cut])).body
            except SyntaxError:
                pass
            start = cut
        return out


def _kept(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return not (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__")
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return all(isinstance(t, ast.Name) for t in targets) and not any(
            isinstance(n, ast.Call) for n in ast.walk(stmt.value))
    return False


def load_user(item: dict, tmp: Path) -> dict:
    """The names of every file of the item, loaded from filtered copies."""
    folder = tmp / "filtered"
    folder.mkdir()
    modules = []
    for f in item["files"]:
        path = CORPUS / item["id"] / f
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
            text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("%", "!")))
        elif path.suffix == ".py":
            text = path.read_text(encoding="utf-8")
        else:
            continue
        body = []
        for stmt in filter(_kept, _statements(text)):
            guard = ast.parse("try:\n    pass\nexcept Exception:\n    pass").body[0]
            guard.body = [stmt]
            body.append(guard)
        name = "corpus_" + "".join(c if c.isalnum() else "_" for c in path.stem)
        source = PRELUDE + ast.unparse(ast.fix_missing_locations(ast.Module(body=body, type_ignores=[])))
        # the files import each other by their own names: `from rnn_utils import *`
        (folder / f"{path.stem}.py").write_text(source, encoding="utf-8")
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
        modules.append((name, path.stem))
    sys.path.insert(0, str(folder))
    names: dict = {}
    try:
        for name, stem in modules:
            names.update(vars(importlib.import_module(name)))
    finally:
        sys.path.remove(str(folder))
        for name, stem in modules:
            sys.modules.pop(name, None)
            sys.modules.pop(stem, None)
    return names


# ---------------------------------------------------------------------------
# torch's verdict


def _t(a):
    return torch.tensor(np.asarray(a, dtype=float), requires_grad=True)


def close(got, want: np.ndarray) -> bool:
    try:
        g = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return False
    if g.size != want.size or not np.all(np.isfinite(g)):
        return False
    tol = 1e-3 if np.asarray(got).dtype == np.float32 else 1e-7
    return float(np.max(np.abs(g.reshape(want.shape) - want))) <= tol * max(1.0, float(np.max(np.abs(want))))


def referee(inputs: dict, user_forward, torch_forward, user_backward, loss_output: bool = False) -> str:
    """``user_forward(inputs) -> (outputs, cache)``; ``torch_forward(**tensors) -> outputs``;
    ``user_backward(upstream, cache) -> {input: gradient}`` (an input absent: not returned)."""
    rng = np.random.default_rng(1)
    tensors = {k: _t(v) for k, v in inputs.items()}
    want_out = torch_forward(**tensors)
    ups = [np.ones(()) if loss_output else rng.normal(size=tuple(o.shape)) for o in want_out]
    sum((o * torch.tensor(u)).sum() for o, u in zip(want_out, ups)).backward()
    want = {k: t.grad.numpy() for k, t in tensors.items()}
    try:
        outs, cache = user_forward({k: np.array(v) for k, v in inputs.items()})
    except Exception:
        return "could not check"
    if not all(close(o, w.detach().numpy()) for o, w in zip(outs, want_out)):
        return "forward differs"
    try:
        got = user_backward([u.copy() for u in ups], cache)
    except Exception:
        return "could not check"
    got = {k: v for k, v in got.items() if v is not None}  # a gradient returned as None is not returned
    if any(k in got and not close(got[k], w) for k, w in want.items()):
        return "wrong"
    return "right" if all(k in got for k in want) else "incomplete"


def _globals_for(fn, params: dict) -> None:
    """The course's notebooks: a backward that reads Wf, Wi, ... as notebook globals
    got them from the test cells; give them the parameters' values."""
    g = fn.__globals__
    for k, v in params.items():
        if k in fn.__code__.co_names and k not in g:
            g[k] = v


def _pick(d, names: dict[str, tuple[str, ...]]) -> dict:
    out = {}
    for inp, keys in names.items():
        for k in keys:
            if isinstance(d, dict) and k in d:
                out[inp] = d[k]
                break
    return out


def _lstm_col(xt, a_prev, c_prev, P):
    concat = torch.cat([a_prev, xt], 0)
    f = torch.sigmoid(P["Wf"] @ concat + P["bf"])
    i = torch.sigmoid(P["Wi"] @ concat + P["bi"])
    cc = torch.tanh(P["Wc"] @ concat + P["bc"])
    o = torch.sigmoid(P["Wo"] @ concat + P["bo"])
    c = f * c_prev + i * cc
    return o * torch.tanh(c), c


def coursera(ns: dict) -> dict[str, str]:
    rng = np.random.default_rng(0)
    n_x, n_a, n_y, m, T = 3, 5, 2, 4, 6
    r = lambda *s: rng.normal(0.0, 0.5, s)  # noqa: E731
    rnn_p = {"Wax": r(n_a, n_x), "Waa": r(n_a, n_a), "ba": r(n_a, 1)}
    lstm_p = {k: r(n_a, n_a + n_x) if k[0] == "W" else r(n_a, 1) for k in ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")}
    head = {"Wya": r(n_y, n_a), "Wy": r(n_y, n_a), "by": r(n_y, 1)}
    grads = lambda d, ins: _pick(d, {i: ("d" + i,) + (("dx",) if i == "xt" else ()) for i in ins})  # noqa: E731
    out = {}
    f, b = ns.get("rnn_cell_forward"), ns.get("rnn_cell_backward")
    if f and b:
        ins = {"xt": r(n_x, m), "a_prev": r(n_a, m), **rnn_p}
        out["rnn_cell_backward"] = referee(
            ins, lambda v: (lambda o: ([o[0]], o[-1]))(f(v["xt"], v["a_prev"], {**v, **head})),
            lambda xt, a_prev, Wax, Waa, ba: [torch.tanh(Wax @ xt + Waa @ a_prev + ba)],
            lambda up, cache: grads(b(up[0], cache), ins))
    f, b = ns.get("rnn_forward"), ns.get("rnn_backward")
    if f and b:
        ins = {"x": r(n_x, m, T), "a0": r(n_a, m), **rnn_p}

        def t_rnn(x, a0, Wax, Waa, ba):
            a, hs = a0, []
            for t in range(T):
                a = torch.tanh(Wax @ x[:, :, t] + Waa @ a + ba)
                hs.append(a)
            return [torch.stack(hs, -1)]
        out["rnn_backward"] = referee(ins, lambda v: (lambda o: ([o[0]], o[-1]))(f(v["x"], v["a0"], {**v, **head})),
                                      t_rnn, lambda up, cache: grads(b(up[0], cache), ins))
    f, b = ns.get("lstm_cell_forward"), ns.get("lstm_cell_backward")
    if f and b:
        _globals_for(b, {**lstm_p, **head})
        ins = {"xt": r(n_x, m), "a_prev": r(n_a, m), "c_prev": r(n_a, m), **lstm_p}
        out["lstm_cell_backward"] = referee(
            ins, lambda v: (lambda o: ([o[0], o[1]], o[-1]))(f(v["xt"], v["a_prev"], v["c_prev"], {**v, **head})),
            lambda xt, a_prev, c_prev, **P: list(_lstm_col(xt, a_prev, c_prev, P)),
            lambda up, cache: grads(b(up[0], up[1], cache), ins))
    f, b = ns.get("lstm_forward"), ns.get("lstm_backward")
    if f and b:
        _globals_for(b, {**lstm_p, **head})
        cell = ns.get("lstm_cell_backward")
        if cell:
            _globals_for(cell, {**lstm_p, **head})
        ins = {"x": r(n_x, m, T), "a0": r(n_a, m), **lstm_p}

        def t_lstm(x, a0, **P):
            a, c, hs = a0, torch.zeros_like(a0), []
            for t in range(T):
                a, c = _lstm_col(x[:, :, t], a, c, P)
                hs.append(a)
            return [torch.stack(hs, -1)]
        out["lstm_backward"] = referee(ins, lambda v: (lambda o: ([o[0]], o[-1]))(f(v["x"], v["a0"], {**v, **head})),
                                       t_lstm, lambda up, cache: grads(b(up[0], cache), ins))
    return out


def _lstm_rows(x, h, c, Wx, Wh, b, order="ifog"):
    H = h.shape[-1]
    a = x @ Wx + h @ Wh + b
    gate = {g: a[..., k * H:(k + 1) * H] for k, g in enumerate(order)}
    i, f, o, g = (torch.sigmoid(gate["i"]), torch.sigmoid(gate["f"]), torch.sigmoid(gate["o"]), torch.tanh(gate["g"]))
    c = f * c + i * g
    return o * torch.tanh(c), c


def _gru_rows(x, h, Wx, Wh, b):
    """DLFS2's GRU: gates z, r, n stacked; the reset gate multiplies h before Wh."""
    H = h.shape[-1]
    z = torch.sigmoid(x @ Wx[:, :H] + h @ Wh[:, :H] + b[:H])
    r = torch.sigmoid(x @ Wx[:, H:2 * H] + h @ Wh[:, H:2 * H] + b[H:2 * H])
    n = torch.tanh(x @ Wx[:, 2 * H:] + (r * h) @ Wh[:, 2 * H:] + b[2 * H:])
    return (1 - z) * h + z * n


def _seq(step, xs, h0, c0=None):
    h, c, hs = h0, c0, []
    for t in range(xs.shape[1]):
        if c is None:
            h = step(xs[:, t], h)
        else:
            h, c = step(xs[:, t], h, c)
        hs.append(h)
    return torch.stack(hs, 1)


def cs231n(ns: dict) -> dict[str, str]:
    rng = np.random.default_rng(0)
    N, D, H, T = 3, 4, 5, 6
    r = lambda *s: rng.normal(0.0, 0.5, s)  # noqa: E731
    tup = lambda names: (lambda res: dict(zip(names, res)))  # noqa: E731
    rnn = lambda x, h, Wx, Wh, b: torch.tanh(x @ Wx + h @ Wh + b)  # noqa: E731
    out = {}
    w1 = {"Wx": r(D, H), "Wh": r(H, H), "b": r(H)}
    w4 = {"Wx": r(D, 4 * H), "Wh": r(H, 4 * H), "b": r(4 * H)}
    f, b = ns.get("rnn_step_forward"), ns.get("rnn_step_backward")
    if f and b:
        out["rnn_step_backward"] = referee(
            {"x": r(N, D), "prev_h": r(N, H), **w1}, lambda v: (lambda o: ([o[0]], o[1]))(f(**v)),
            lambda x, prev_h, Wx, Wh, b: [rnn(x, prev_h, Wx, Wh, b)],
            lambda up, cache: tup(("x", "prev_h", "Wx", "Wh", "b"))(b(up[0], cache)))
    f, b = ns.get("rnn_forward"), ns.get("rnn_backward")
    if f and b:
        out["rnn_backward"] = referee(
            {"x": r(N, T, D), "h0": r(N, H), **w1}, lambda v: (lambda o: ([o[0]], o[1]))(f(**v)),
            lambda x, h0, Wx, Wh, b: [_seq(lambda xt, h: rnn(xt, h, Wx, Wh, b), x, h0)],
            lambda up, cache: tup(("x", "h0", "Wx", "Wh", "b"))(b(up[0], cache)))
    f, b = ns.get("lstm_step_forward"), ns.get("lstm_step_backward")
    if f and b:
        out["lstm_step_backward"] = referee(
            {"x": r(N, D), "prev_h": r(N, H), "prev_c": r(N, H), **w4}, lambda v: (lambda o: ([o[0], o[1]], o[2]))(f(**v)),
            lambda x, prev_h, prev_c, Wx, Wh, b: list(_lstm_rows(x, prev_h, prev_c, Wx, Wh, b)),
            lambda up, cache: tup(("x", "prev_h", "prev_c", "Wx", "Wh", "b"))(b(up[0], up[1], cache)))
    f, b = ns.get("lstm_forward"), ns.get("lstm_backward")
    if f and b:
        out["lstm_backward"] = referee(
            {"x": r(N, T, D), "h0": r(N, H), **w4}, lambda v: (lambda o: ([o[0]], o[1]))(f(**v)),
            lambda x, h0, Wx, Wh, b: [_seq(lambda xt, h, c: _lstm_rows(xt, h, c, Wx, Wh, b), x, h0, 0 * h0)],
            lambda up, cache: tup(("x", "h0", "Wx", "Wh", "b"))(b(up[0], cache)))
    return out


def dlfs2(ns: dict) -> dict[str, str]:
    """Deep Learning from Scratch 2's layers: Cls(Wx, Wh, b), gradients in self.grads."""
    rng = np.random.default_rng(0)
    N, D, H, T = 3, 4, 5, 6
    r = lambda *s: rng.normal(0.0, 0.5, s)  # noqa: E731
    cells = {  # class: (stack width, states, torch step)
        "RNN": (1, 1, lambda x, h, Wx, Wh, b: torch.tanh(x @ Wx + h @ Wh + b)),
        "LSTM": (4, 2, lambda x, h, c, Wx, Wh, b: _lstm_rows(x, h, c, Wx, Wh, b, order="fgio")),
        "GRU": (3, 1, _gru_rows),
    }
    out = {}
    for name, (k, n_states, step) in cells.items():
        W = {"Wx": r(D, k * H), "Wh": r(H, k * H), "b": r(k * H)}

        def with_grads(obj, res, names):
            got = dict(zip(names, res if isinstance(res, tuple) else (res,)))
            got.update(zip(("Wx", "Wh", "b"), obj.grads))
            return got

        cls = ns.get(name)
        if cls:
            states = ("h_prev", "c_prev")[:n_states]
            ins = {"x": r(N, D), **{s: r(N, H) for s in states}, **W}

            def fwd(v, cls=cls, states=states):
                obj = cls(v["Wx"], v["Wh"], v["b"])
                res = obj.forward(v["x"], *[v[s] for s in states])
                return list(res) if isinstance(res, tuple) else [res], obj

            out[f"{name}.backward"] = referee(
                ins, fwd, lambda x, Wx, Wh, b, step=step, states=states, **st: (
                    lambda res: list(res) if isinstance(res, tuple) else [res])(
                    step(x, *[st[s] for s in states], Wx, Wh, b)),
                lambda up, obj, states=states: with_grads(obj, obj.backward(*up), ("x",) + states))
        cls = ns.get("Time" + name)
        if cls:
            def tfwd(v, cls=cls):
                obj = cls(v["Wx"], v["Wh"], v["b"])
                return [obj.forward(v["xs"])], obj

            def tseq(xs, Wx, Wh, b, step=step, n_states=n_states):
                h0 = torch.zeros(xs.shape[0], H, dtype=xs.dtype)
                cell = (lambda xt, h: step(xt, h, Wx, Wh, b)) if n_states == 1 else \
                    (lambda xt, h, c: step(xt, h, c, Wx, Wh, b))
                return [_seq(cell, xs, h0, None if n_states == 1 else 0 * h0)]

            out[f"Time{name}.backward"] = referee({"xs": r(N, T, D), **W}, tfwd, tseq,
                                                  lambda up, obj: with_grads(obj, obj.backward(up[0]), ("xs",)))
    return out


def minchar(ns: dict) -> dict[str, str]:
    """karpathy's lossFun(inputs, targets, hprev) over module globals, or the same as a method."""
    rng = np.random.default_rng(0)
    V, H, T = 6, 5, 7
    xs, ys = [int(i) for i in rng.integers(0, V, T)], [int(i) for i in rng.integers(0, V, T)]
    hprev = rng.normal(0.0, 0.5, (H, 1))
    W = {"Wxh": rng.normal(0, 0.3, (H, V)), "Whh": rng.normal(0, 0.3, (H, H)), "Why": rng.normal(0, 0.3, (V, H)),
         "bh": rng.normal(0, 0.3, (H, 1)), "by": rng.normal(0, 0.3, (V, 1))}

    def t_loss(Wxh, Whh, Why, bh, by):
        h, loss = torch.tensor(hprev), 0
        for x, y in zip(xs, ys):
            h = torch.tanh(Wxh[:, x:x + 1] + Whh @ h + bh)
            loss = loss - torch.log_softmax(Why @ h + by, 0)[y, 0]
        return [loss]

    got = lambda res: dict(zip(("Wxh", "Whh", "Why", "bh", "by"), res[1:6]))  # noqa: E731
    out = {}
    if callable(ns.get("lossFun")):
        fn = ns["lossFun"]

        def fwd(v):
            fn.__globals__.update(v, vocab_size=V, hidden_size=H)
            res = fn(list(xs), list(ys), hprev.copy())
            return [res[0]], res
        out["lossFun"] = referee(W, fwd, t_loss, lambda up, res: got(res), loss_output=True)
    cls = ns.get("RNN")
    if isinstance(cls, type) and callable(getattr(cls, "train", None)):
        def mfwd(v):
            obj = cls(V, H, 0.1)
            for k, a in v.items():
                setattr(obj, k, a)
            res = obj.train(list(xs), list(ys), V, hprev.copy())
            return [res[0]], res
        out["RNN.train"] = referee(W, mfwd, t_loss, lambda up, res: got(res), loss_output=True)
    return out


REFEREES = {"coursera": coursera, "cs231n": cs231n, "dlfs2": dlfs2, "minchar": minchar}


# ---------------------------------------------------------------------------


def test_manifest_is_complete():
    """Every item names its source, commit, licence and copyright, and ships the licence text."""
    assert len({i["repo"].split("/")[0] for i in ITEMS}) >= 8
    for item in ITEMS:
        for key in ("id", "repo", "commit", "paths", "licence", "copyright", "family", "files", "torch"):
            assert item.get(key), (item.get("id"), key)
        assert len(item["commit"]) == 40
        folder = CORPUS / item["id"]
        assert (folder / "LICENSE").is_file(), item["id"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(item["files"] + ["LICENSE"]), item["id"]


@pytest.mark.parametrize("item", ITEMS, ids=[i["id"] for i in ITEMS])
def test_corpus_verdicts_agree_with_torch(item, tmp_path):
    truth = REFEREES[item["family"]](load_user(item, tmp_path))
    assert truth == item["torch"], ("torch's referee changed its mind", truth, item["torch"])
    got, status, report = tool_verdicts(item, tmp_path)
    for name, verdict in truth.items():
        assert got.get(name) == verdict, (name, got.get(name), verdict, report)
    for name, verdict in got.items():  # nothing torch did not referee is ever "right"
        assert name in truth or verdict != "right", (name, report)
    assert status == exit_status(list(got.values())), (status, got)
    # recognition: which cell the user's forward computes, and how (gate order, biases, batch, initial states)
    recognition = {f["backward"]: f["recognition"] for f in report["functions"]}
    for name, text in item.get("recognition", {}).items():
        assert text in recognition[name], (name, recognition[name])


# ---------------------------------------------------------------------------
# what the corpus taught the tool, each shown on a one-line change of a corpus file


def _check_text(tmp: Path, name: str, text: str) -> dict:
    (tmp / name).write_text(text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "derive", "check", "--json", "--timeout", "60", name],
                          capture_output=True, text=True,
                          cwd=tmp, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in proc.stderr, proc.stderr
    return {f["backward"]: f for f in json.loads(proc.stdout)["functions"]}


def test_the_min_char_rnn_list_bug_is_the_only_difference(tmp_path):
    """asmaloney's RNN.train is wrong only because hs became a list: with hs a dict again
    (h0 at key -1, as in the gist), the same file is right."""
    src = (CORPUS / "minchar_asmaloney" / "min-char-rnn.py").read_text(encoding="utf-8")
    old = "hs: list[FloatArray] = [np.empty([]) for _ in range(num_inputs)]"
    assert src.count(old) == 1
    got = _check_text(tmp_path, "fixed.py", src.replace(old, "hs: dict = {}"))
    assert got["RNN.train"]["verdict"] == "right", got["RNN.train"]


def test_gru_recognition_tells_the_two_places_of_the_reset_gate(tmp_path):
    """DLFS2's GRU with the reset gate moved after the recurrent product is torch's GRU
    (in DLFS2's gate order and update convention); its unchanged backward is then wrong."""
    src = (CORPUS / "class_dlfs2" / "time_layers.py").read_text(encoding="utf-8")
    old = "h_hat = np.tanh(np.dot(x, Wxh) + np.dot(r*h_prev, Whh) + bh)"
    assert src.count(old) == 1
    got = _check_text(tmp_path, "layers.py", src.replace(old, "h_hat = np.tanh(np.dot(x, Wxh) + r * np.dot(h_prev, Whh) + bh)"))
    gru = got["GRU.backward"]
    assert gru["verdict"] == "wrong", gru
    assert "computes the GRU: Wx (D, 3H) stacked z, r, n, one bias, batch in rows, " \
           "h = z * n + (1 - z) * h_prev" in gru["recognition"], gru


def test_time_layer_recognition_needs_the_zero_state_it_claims(tmp_path):
    """DLFS2's TimeLSTM computes in float32 from zero states, recognised at float32 precision (the
    manifest); started at c0 = 1 instead, it is no LSTM from zero states at that precision either,
    and the verdict (referee (a), its own forward) stays right."""
    src = (CORPUS / "class_dlfs2" / "time_layers.py").read_text(encoding="utf-8")
    old = "self.c = np.zeros((N, H), dtype='f')"
    assert src.count(old) == 1
    got = _check_text(tmp_path, "layers.py", src.replace(old, "self.c = np.ones((N, H), dtype='f')"))
    lstm = got["TimeLSTM.backward"]
    assert lstm["verdict"] == "right", lstm
    assert lstm["recognition"].startswith("your TimeLSTM.forward does not compute the pytorch LSTM: h differs"), lstm


def test_type_aliases_and_annotated_constants_are_kept_and_nothing_else_runs():
    from derive.verifier import userfiles

    text = ("import numpy as np\nimport numpy.typing as npt\nIntList = list[int]\nFloatArray = npt.NDArray[np.float64]\n"
            "H: int = 4\nLOG: str = open('log.txt').read()\nCalled = dict(a=1)\ndef f(xs: IntList) -> FloatArray:\n"
            "    return np.zeros(H)\n")
    source, deferred, _ = userfiles.filter_module([text], "t.py")
    for kept in ("IntList = list[int]", "FloatArray = npt.NDArray[np.float64]", "H = 4", "def f"):
        assert kept in source, source
    assert "open(" not in source and "dict(a=1)" not in source, source
    assert "LOG" in deferred and deferred["H"] == "H = 4"

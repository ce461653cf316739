"""`lstm-derive check FILE ...` run as a user runs it (a subprocess, the files as
written), on hand-written learner-style code in tests/learner_code/. Each
verdict is compared with an independent torch-autograd check written here: the
math of each cell in torch, differentiated by autograd, against the gradients
the learner's backward returns from the learner's own forward's cache."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
CODE = ROOT / "tests" / "learner_code"


def run_check(*args: str, env: dict | None = None, timeout: float = 240) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "derive", "check", "--json", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def verdicts(report: dict) -> dict[str, str]:
    return {f["backward"]: f["verdict"] for f in report["functions"]}


# ---------------------------------------------------------------------------
# the independent referee: torch autograd of the math, written here


def load(path: Path, extra: dict | None = None):
    """Import a learner file in this process (our own test code), with the
    helpers a missing rnn_utils would have given."""
    sys.path.insert(0, str(path.parent))
    try:
        sys.modules.setdefault("rnn_utils", _rnn_utils())
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = mod
        try:
            spec.loader.exec_module(mod)
        except (IndexError, KeyError, FileNotFoundError):  # the pasted test code at the bottom
            pass
        return mod
    finally:
        sys.path.remove(str(path.parent))


def _rnn_utils():
    import types

    m = types.ModuleType("rnn_utils")
    m.sigmoid = lambda x: 1 / (1 + np.exp(-x))
    m.softmax = lambda x: np.exp(x - x.max()) / np.exp(x - x.max()).sum(axis=0)
    return m


def grads(f, arrays: dict, up) -> dict:
    """d sum(up * f(arrays)) / d arrays, by torch autograd in float64."""
    ts = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in arrays.items()}
    out = f(ts)
    (out * torch.tensor(up)).sum().backward() if up is not None else out.backward()
    return {k: t.grad.numpy() for k, t in ts.items()}


def agree(mine: dict, truth: dict) -> bool:
    return all(np.allclose(mine[k], truth[k], rtol=1e-6, atol=1e-9) for k in truth)


rng = np.random.default_rng(3)
D, H, N, T, V = 3, 4, 2, 3, 5


def co_lstm_truth() -> dict[str, str]:
    fwd = load(CODE / "coursera_forward.py")
    bwd = load(CODE / "coursera_backward.py")
    p = {**{f"W{g}": rng.normal(size=(H, H + D)) for g in "fico"}, **{f"b{g}": rng.normal(size=(H, 1)) for g in "fico"},
         "Wy": rng.normal(size=(V, H)), "by": rng.normal(size=(V, 1))}
    x, a0 = rng.normal(size=(D, N, T)), rng.normal(size=(H, N))
    out: dict[str, str] = {}

    def cell(t, xt, a, c):
        cat = torch.cat([a, xt], 0)
        f, i = torch.sigmoid(t["Wf"] @ cat + t["bf"]), torch.sigmoid(t["Wi"] @ cat + t["bi"])
        cc, o = torch.tanh(t["Wc"] @ cat + t["bc"]), torch.sigmoid(t["Wo"] @ cat + t["bo"])
        c = f * c + i * cc
        return o * torch.tanh(c), c

    def seq(t):
        a, c, hs = t["a0"], torch.zeros(H, N, dtype=torch.float64), []
        for s in range(T):
            a, c = cell(t, t["x"][:, :, s], a, c)
            hs.append(a)
        return torch.stack(hs, -1)

    names = [f"{k}{g}" for g in "fico" for k in "Wb"]
    arrays = {"x": x, "a0": a0, **{k: p[k] for k in names}}
    da = rng.normal(size=(H, N, T))
    truth = grads(seq, arrays, da)
    a, y, c, caches = fwd.lstm_forward(x, a0, p)
    g = bwd.lstm_backward(da, caches)
    out["lstm_backward"] = "right" if agree({"x": g["dx"], "a0": g["da0"], **{k: g["d" + k] for k in names}},
                                            truth) else "wrong"
    # one cell
    xt, ap, cp = rng.normal(size=(D, N)), rng.normal(size=(H, N)), rng.normal(size=(H, N))
    dan, dcn = rng.normal(size=(H, N)), rng.normal(size=(H, N))
    arrays = {"xt": xt, "a_prev": ap, "c_prev": cp, **{k: p[k] for k in names}}
    truth = grads(lambda t: torch.cat([v.flatten() for v in cell(t, t["xt"], t["a_prev"], t["c_prev"])]),
                  arrays, np.concatenate([dan.flatten(), dcn.flatten()]))
    an, cn, _, cache = fwd.lstm_cell_forward(xt, ap, cp, p)
    g = bwd.lstm_cell_backward(dan, dcn, cache)
    out["lstm_cell_backward"] = "right" if agree({k: g["d" + k] for k in arrays}, truth) else "wrong"
    # the RNN
    q = {"Wax": rng.normal(size=(H, D)), "Waa": rng.normal(size=(H, H)), "ba": rng.normal(size=(H, 1)),
         "Wya": rng.normal(size=(V, H)), "by": rng.normal(size=(V, 1))}

    def rnn_seq(t):
        a, hs = t["a0"], []
        for s in range(T):
            a = torch.tanh(t["Wax"] @ t["x"][:, :, s] + t["Waa"] @ a + t["ba"])
            hs.append(a)
        return torch.stack(hs, -1)

    arrays = {"x": x, "a0": a0, "Wax": q["Wax"], "Waa": q["Waa"], "ba": q["ba"]}
    truth = grads(rnn_seq, arrays, da)
    _, _, caches = fwd.rnn_forward(x, a0, q)
    g = bwd.rnn_backward(da, caches)
    out["rnn_backward"] = "right" if agree({k: g["d" + k] for k in arrays}, truth) else "wrong"
    arrays = {"xt": xt, "a_prev": ap, "Wax": q["Wax"], "Waa": q["Waa"], "ba": q["ba"]}
    truth = grads(lambda t: torch.tanh(t["Wax"] @ t["xt"] + t["Waa"] @ t["a_prev"] + t["ba"]), arrays, dan)
    g = bwd.rnn_cell_backward(dan, fwd.rnn_cell_forward(xt, ap, q)[2])
    out["rnn_cell_backward"] = "right" if agree({k: g["d" + k] for k in arrays}, truth) else "wrong"
    return out


def cs231n_truth() -> dict[str, str]:
    m = load(CODE / "cs231n_layers.py")
    out = {}
    x, h0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H))
    Wx, Wh, b = rng.normal(size=(D, 4 * H)), rng.normal(size=(H, 4 * H)), rng.normal(size=(4 * H,))

    def lstm(t):
        h, c, hs = t["h0"], torch.zeros(N, H, dtype=torch.float64), []
        for s in range(T):
            a = t["x"][:, s] @ t["Wx"] + h @ t["Wh"] + t["b"]
            i, f, o, g = (torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H]), torch.sigmoid(a[:, 2 * H:3 * H]),
                          torch.tanh(a[:, 3 * H:]))
            c = f * c + i * g
            h = o * torch.tanh(c)
            hs.append(h)
        return torch.stack(hs, 1)

    dh = rng.normal(size=(N, T, H))
    truth = grads(lstm, {"x": x, "h0": h0, "Wx": Wx, "Wh": Wh, "b": b}, dh)
    dx, dh0, dWx, dWh, db = m.lstm_backward(dh.copy(), m.lstm_forward(x, h0, Wx, Wh, b)[1])
    out["lstm_backward"] = "right" if agree({"x": dx, "h0": dh0, "Wx": dWx, "Wh": dWh, "b": db}, truth) else "wrong"
    Wx1, Wh1, b1 = Wx[:, :H], Wh[:, :H], b[:H]

    def rnn(t):
        h, hs = t["h0"], []
        for s in range(T):
            h = torch.tanh(t["x"][:, s] @ t["Wx"] + h @ t["Wh"] + t["b"])
            hs.append(h)
        return torch.stack(hs, 1)

    truth = grads(rnn, {"x": x, "h0": h0, "Wx": Wx1, "Wh": Wh1, "b": b1}, dh)
    dx, dh0, dWx, dWh, db = m.rnn_backward(dh, m.rnn_forward(x, h0, Wx1, Wh1, b1)[1])
    out["rnn_backward"] = "right" if agree({"x": dx, "h0": dh0, "Wx": dWx, "Wh": dWh, "b": db}, truth) else "wrong"
    return out


def minchar_truth() -> str:
    src = (CODE / "minchar.py").read_text()
    ns: dict = {"np": np}
    exec(compile(src[src.index("def lossFun"):src.index("\nn = 0")], "minchar", "exec"), ns)  # our own file
    W = {"Wxh": rng.normal(size=(H, V)), "Whh": rng.normal(size=(H, H)), "Why": rng.normal(size=(V, H)),
         "bh": rng.normal(size=(H, 1)), "by": rng.normal(size=(V, 1))}
    ns.update(W, vocab_size=V)
    xs, ys, hprev = [1, 3, 0], [2, 2, 4], rng.normal(size=(H, 1)) * 0.1

    def loss(t):
        h, total = torch.tensor(hprev), 0
        for a, y in zip(xs, ys):
            h = torch.tanh(t["Wxh"][:, a:a + 1] + t["Whh"] @ h + t["bh"])
            total = total - torch.log_softmax(t["Why"] @ h + t["by"], 0)[y, 0]
        return total

    truth = grads(loss, W, None)
    got = ns["lossFun"](xs, ys, hprev)
    return "right" if agree(dict(zip(["Wxh", "Whh", "Why", "bh", "by"], got[1:6])), truth) else "wrong"


def gru_truth() -> str:
    m = load(CODE / "gru_class.py")
    cell = m.GRUCell(D, H)
    x, h = rng.normal(size=D), rng.normal(size=H)
    names = ["Wz", "Wr", "Wn", "Uz", "Ur", "Un"]

    def f(t):
        z = torch.sigmoid(t["Wz"] @ t["x"] + t["Uz"] @ t["h"])
        r = torch.sigmoid(t["Wr"] @ t["x"] + t["Ur"] @ t["h"])
        n = torch.tanh(t["Wn"] @ t["x"] + t["Un"] @ (r * t["h"]))
        return (1 - z) * n + z * t["h"]

    delta = rng.normal(size=H)
    truth = grads(f, {"x": x, "h": h, **{k: getattr(cell, k) for k in names}}, delta)
    cell.forward(x, h)
    dx, dh = cell.backward(delta)
    return "right" if agree({"x": dx, "h": dh, **{k: getattr(cell, "d" + k) for k in names}}, truth) else "wrong"


# ---------------------------------------------------------------------------
# the checker against that referee


def test_course_files_split_in_two_match_torch():
    truth = co_lstm_truth()
    assert truth["lstm_backward"] == "wrong" and truth["lstm_cell_backward"] == "right"  # the learner code is what we say
    status, report = run_check(str(CODE / "coursera_forward.py"), str(CODE / "coursera_backward.py"))
    assert verdicts(report) == truth
    assert status == 1
    bad = next(f for f in report["functions"] if f["backward"] == "lstm_backward")
    assert any("carr" in o["message"] for o in bad["outputs"] if not o["ok"])  # referee (b) names the missing carry
    assert any("rnn_utils" in n for n in report["notes"])  # the missing helper module is said


def test_cs231n_layers_match_torch_and_are_recognised():
    truth = cs231n_truth()
    status, report = run_check(str(CODE / "cs231n_layers.py"))
    got = verdicts(report)
    assert {k: got[k] for k in truth} == truth
    assert status == (0 if set(got.values()) == {"right"} else 1)
    lstm = next(f for f in report["functions"] if f["backward"] == "lstm_backward")
    assert "stacked i, f, o, g, one bias" in lstm["recognition"] and "c0 = 0" in lstm["recognition"]


def test_minchar_script_with_globals_and_training_loop():
    status, report = run_check(str(CODE / "minchar.py"))
    assert verdicts(report) == {"lossFun": minchar_truth()}
    assert status == 0


def test_gru_class_with_attribute_gradients():
    status, report = run_check(str(CODE / "gru_class.py"))
    assert verdicts(report) == {"GRUCell.backward": gru_truth()}
    assert status == 0


def test_notebook_skips_magics_tests_and_pasted_outputs():
    status, report = run_check(str(CODE / "notebook.ipynb"))
    assert verdicts(report) == {"rnn_cell_backward": "right"}, report
    assert status == 0
    assert any("not valid Python" in n for n in report["notes"])


# ---------------------------------------------------------------------------
# failure modes: never "right", never "wrong"

FAILING = CODE / "failing"


@pytest.mark.parametrize("name, words", [("hang", "did not finish"), ("exit", "exit(0)"), ("osexit", "ended"),
                                         ("crash", "crashed"), ("raises", "NameError"),
                                         ("memory", "MemoryError")])
def test_code_that_never_returns_normally_could_not_be_checked(name, words):
    status, report = run_check(str(FAILING / f"{name}.py"), "--timeout", "3")
    assert status == 2
    assert "right" not in verdicts(report).values() and "wrong" not in verdicts(report).values()
    text = json.dumps(report)
    assert words in text


def test_a_crash_of_the_tool_is_not_the_users_fault():
    status, report = run_check(str(CODE / "cs231n_layers.py"), env={"DERIVE_CHECK_FAULT": "child"})
    assert status == 2
    assert "lstm-derive itself failed" in report["reason"]


def test_partial_return_is_incomplete_unless_allowed():
    status, report = run_check(str(FAILING / "partial.py"))
    assert status == 1 and verdicts(report) == {"rnn_step_backward": "incomplete"}
    assert report["functions"][0]["missing"] == ["Wh", "b"]
    assert report["functions"][0]["checked"] == ["dx", "dprev_h", "dWx"]
    status, report = run_check(str(FAILING / "partial.py"), "--allow-missing")
    assert status == 0 and verdicts(report) == {"rnn_step_backward": "right"}


def test_module_level_sizes_are_used():
    status, report = run_check(str(FAILING / "module_sizes.py"))
    assert status == 0 and verdicts(report) == {"rnn_cell_backward": "right"}
    assert report["functions"][0]["sizes"]["H"] == 5 and report["functions"][0]["sizes"]["D"] == 2


def test_sizes_option_fits_hard_coded_sizes():
    status, report = run_check(str(FAILING / "hardcoded_sizes.py"))
    assert status == 2 and verdicts(report) == {"rnn_cell_backward": "could not check"}
    status, report = run_check(str(FAILING / "hardcoded_sizes.py"), "--sizes", "n_a=7")
    assert status == 0 and verdicts(report) == {"rnn_cell_backward": "right"}


def test_bad_arguments_are_one_message():
    proc = subprocess.run([sys.executable, "-m", "derive", "check", "no_such_file.py"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "derive", "check", str(FAILING / "partial.py"), "--sizes", "n_a"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "--sizes" in proc.stderr


def test_explicit_pair_with_forward_option(tmp_path):
    """Functions of a known API under the user's own names: FILE.py:BACKWARD --forward FORWARD."""
    src = (CODE / "cs231n_layers.py").read_text()
    src = src.replace("rnn_step_forward", "my_step").replace("rnn_step_backward", "my_step_back")
    f = tmp_path / "renamed.py"
    f.write_text(src)
    status, report = run_check(f"{f}:my_step_back", "--forward", "my_step")
    assert status == 0 and verdicts(report) == {"my_step_back": "right"}
    assert "Elman" in report["functions"][0]["recognition"]
    status, report = run_check(f"{f}:my_step_back", "--forward", "no_such_forward")
    assert status == 2 and "no_such_forward" in json.dumps(report)


def test_recognition_reads_the_gate_order_and_says_when_the_forward_is_another_cell(tmp_path):
    src = (CODE / "cs231n_layers.py").read_text()
    reordered = src.replace(
        "i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])",
        "o, g, f, i = sigmoid(a[:, :H]), np.tanh(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])")
    reordered = reordered.replace(
        "da = np.hstack((dnext_c * g * i * (1 - i), dnext_c * prev_c * f * (1 - f),\n"
        "                    dnext_h * tc * o * (1 - o), dnext_c * i * (1 - g ** 2)))",
        "da = np.hstack((dnext_h * tc * o * (1 - o), dnext_c * i * (1 - g ** 2),\n"
        "                    dnext_c * prev_c * f * (1 - f), dnext_c * g * i * (1 - i)))")
    assert reordered.count("o, g, f, i") == 1 and "dnext_h * tc * o * (1 - o), dnext_c * i" in reordered
    f = tmp_path / "reordered.py"
    f.write_text(reordered)
    status, report = run_check(str(f))
    step = next(x for x in report["functions"] if x["backward"] == "lstm_step_backward")
    assert step["verdict"] == "right" and "stacked o, g, f, i" in step["recognition"], step
    # a forward that is not an LSTM of the bundled kind (no tanh on the cell state), with a backward that
    # matches it: right by its own forward, and recognition says the forward is another cell
    other = src.replace("next_h = o * np.tanh(next_c)", "next_h = o * next_c").replace(
        "tc = np.tanh(next_c)", "tc = next_c").replace("dnext_c += dnext_h * o * (1 - tc ** 2)", "dnext_c += dnext_h * o")
    assert other.count("next_h = o * next_c") == 1 and other.count("dnext_c += dnext_h * o ") == 1
    f = tmp_path / "other.py"
    f.write_text(other)
    status, report = run_check(str(f))
    step = next(x for x in report["functions"] if x["backward"] == "lstm_step_backward")
    assert step["verdict"] == "right"
    assert "does not compute the pytorch LSTM: next_h differs" in step["recognition"], step


@pytest.mark.parametrize("tail, verdict", [
    ("    dWh = None\n    db = None\n    return dx, dprev_h, dWx, dWh, db\n", "incomplete"),
    ("    return {'dx': dx, 'dprev_h': dprev_h, 'dWx': dWx, 'dWh': None, 'db': None}\n", "incomplete"),
    ("    return dx, dprev_h, dWx, None, np.full(dz.shape[1], np.nan)\n", "wrong"),
])
def test_a_gradient_returned_as_none_is_not_returned(tmp_path, tail, verdict):
    """A skeleton's `dWh = None` is a gradient not returned: incomplete (exit 1), and right under
    --allow-missing when the others are right; a NaN is still a wrong number."""
    src = (FAILING / "partial.py").read_text().replace("    return dx, dprev_h, dWx\n", tail)
    (tmp_path / "none.py").write_text(src)
    status, report = run_check(str(tmp_path / "none.py"))
    (fn,) = report["functions"]
    assert status == 1 and fn["verdict"] == verdict, fn
    assert fn["checked"][:3] == ["dx", "dprev_h", "dWx"] and all(o["ok"] for o in fn["outputs"][:3])
    if verdict == "incomplete":
        assert fn["missing"] == ["Wh", "b"] and len(fn["checked"]) == 3
        assert any("returned as None" in n for n in fn["notes"])
        status, report = run_check(str(tmp_path / "none.py"), "--allow-missing")
        assert status == 0 and report["functions"][0]["verdict"] == "right"
    else:
        assert fn["missing"] == ["Wh"]
        assert "not an array of finite numbers" in fn["outputs"][3]["message"]


def test_every_gradient_none_is_incomplete_and_never_right(tmp_path):
    src = (FAILING / "partial.py").read_text().replace(
        "    return dx, dprev_h, dWx\n", "    return None, None, None, None, None\n")
    (tmp_path / "skeleton.py").write_text(src)
    status, report = run_check(str(tmp_path / "skeleton.py"))
    assert status == 1 and report["functions"][0]["verdict"] == "incomplete"
    status, report = run_check(str(tmp_path / "skeleton.py"), "--allow-missing")
    assert status == 2 and report["functions"][0]["verdict"] == "could not check"
    assert report["functions"][0]["reason"] == "every gradient it returned is None"

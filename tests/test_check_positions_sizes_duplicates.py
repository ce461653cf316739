"""`lstm-derive check FILE ...` on four ways real projects are laid out or go wrong,
each of which once gave a false "right" or a false diagnosis (found by trying the
tool on learners' repositories as published):

- a backward whose return tuple is in another order than the API's: callers
  unpack by position, so the names in the ``return`` statement do not decide;
- a backward that works only at batch size 1 (``dz.reshape(H)`` for a bias
  gradient): the tool once retried at smaller sizes until it passed;
- two files that define the same function name (the course's dinosaur
  ``utils.py`` has its own ``rnn_forward``/``rnn_backward``): the later file
  used to hide the learner's function, whatever it computed;
- a file that imports its sibling by a package path (``from course5.week_01.x
  import *``) or relatively: the sibling given on the command line is used.

The truth comes from the test itself: each variant is imported here and its
gradients, unpacked by position as a caller does, are compared with torch
autograd of the same RNN; the tool runs in a subprocess, as a user runs it.
"""

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
LAYERS = (ROOT / "tests" / "learner_code" / "cs231n_layers.py").read_text()
N, T, D, H = 2, 3, 3, 4


def run_check(*paths: Path) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, "-m", "derive", "check", "--json", *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=240)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    assert LAYERS.count(old) == 1, old
    path = tmp_path / name
    path.write_text(LAYERS.replace(old, new))
    return path


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"_variant_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rnn_truth(mod, step: bool) -> str:
    """Torch's verdict on the module's rnn_backward (or rnn_step_backward),
    its results unpacked by position in the API's order dx, dh0, dWx, dWh, db."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N, D) if step else (N, T, D))
    h0, Wx, Wh, b = rng.normal(size=(N, H)), rng.normal(size=(D, H)), rng.normal(size=(H, H)), rng.normal(size=(H,))
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in dict(x=x, h0=h0, Wx=Wx, Wh=Wh, b=b).items()}
    if step:
        out = torch.tanh(tensors["x"] @ tensors["Wx"] + tensors["h0"] @ tensors["Wh"] + tensors["b"])
    else:
        h, hs = tensors["h0"], []
        for s in range(T):
            h = torch.tanh(tensors["x"][:, s] @ tensors["Wx"] + h @ tensors["Wh"] + tensors["b"])
            hs.append(h)
        out = torch.stack(hs, 1)
    up = rng.normal(size=tuple(out.shape))
    (out * torch.tensor(up)).sum().backward()
    try:
        if step:
            got = mod.rnn_step_backward(up.copy(), mod.rnn_step_forward(x, h0, Wx, Wh, b)[1])
        else:
            got = mod.rnn_backward(up.copy(), mod.rnn_forward(x, h0, Wx, Wh, b)[1])
    except Exception:
        return "fails"
    for value, name in zip(got, ("x", "h0", "Wx", "Wh", "b")):
        want = tensors[name].grad.numpy()
        if np.shape(value) != want.shape or not np.allclose(value, want, rtol=1e-6, atol=1e-8):
            return "wrong"
    return "right"


def by_backward(report: dict) -> dict[str, dict]:
    return {f["backward"]: f for f in report["functions"]}


def test_a_tuple_is_read_by_position_not_by_the_names_in_return(tmp_path):
    path = variant(tmp_path, "swapped.py", "    return dx, dprev, dWx, dWh, db\n",
                   "    return dx, dprev, dWh, dWx, db\n")
    assert rnn_truth(load(path), step=False) == "wrong"
    status, report = run_check(path)
    rnn = by_backward(report)["rnn_backward"]
    assert rnn["verdict"] == "wrong" and status == 1
    assert any("`dWh` is returned where the API returns dWx" in n for n in rnn["notes"])


def test_a_backward_that_works_only_at_batch_one_is_not_right(tmp_path):
    path = variant(tmp_path, "reshape.py", "x.T @ dz, prev_h.T @ dz, dz.sum(axis=0)",
                   "x.T @ dz, prev_h.T @ dz, dz.reshape(Wh.shape[0])")
    assert rnn_truth(load(path), step=True) == "fails"  # at N = 2, as the assignment's own tests use
    status, report = run_check(path)
    step = by_backward(report)["rnn_step_backward"]
    assert step["verdict"] == "could not check" and status == 1  # the LSTM functions are right
    assert "where your rnn_step_forward ran" in step["reason"] and "N=2" in step["reason"]


DINOSAUR_UTILS = '''import numpy as np


def rnn_forward(X, Y, a0, parameters, vocab_size=27):
    return 0.0, {}


def rnn_backward(X, Y, parameters, cache):
    return {}, 0.0
'''


@pytest.mark.parametrize("utils_last", [True, False])
def test_a_function_two_files_define_is_checked_in_each(tmp_path, utils_last):
    wrong = variant(tmp_path, "layers.py", "dWh + dWht, db + dbt\n    return dx, dprev, ",
                    "dWh + dWht, dbt\n    return dx, dprev, ")  # the bias gradient of one step only
    assert rnn_truth(load(wrong), step=False) == "wrong"
    utils = tmp_path / "utils.py"
    utils.write_text(DINOSAUR_UTILS)
    status, report = run_check(*((wrong, utils) if utils_last else (utils, wrong)))
    functions = report["functions"]
    rnn = [f for f in functions if f["backward"].startswith("rnn_backward")]
    assert len(rnn) == 1 and rnn[0]["verdict"] == "wrong" and status == 1
    assert rnn[0]["backward"] == "rnn_backward" and rnn[0]["backward_file"] == "layers.py"  # the file beside the name
    assert any("defined in layers.py and in utils.py" in n for n in rnn[0]["notes"])


DIAGNOSIS = ROOT / "tests" / "learner_code" / "diagnosis" / "coursera_bugs.py"
RIGHT_CELL = "    return backward(da_next, dc_next, cache)\n"  # lstm_cell_backward's body in coursera_bugs.py


def coursera_cell_truth(mod) -> str:
    """Torch's verdict on the module's lstm_cell_backward (the course's layout:
    columns are examples, concat = [a_prev; xt]), on a cache built from torch's own
    forward, with the upstream gradients of a_next and c_next."""
    rng = np.random.default_rng(11)
    n_x, n_a, m = 3, 4, 2
    values = dict(xt=rng.normal(size=(n_x, m)), a_prev=rng.normal(size=(n_a, m)), c_prev=rng.normal(size=(n_a, m)),
                  **{f"W{g}": rng.normal(size=(n_a, n_a + n_x)) for g in "fico"},
                  **{f"b{g}": rng.normal(size=(n_a, 1)) for g in "fico"})
    t = {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}
    concat = torch.cat([t["a_prev"], t["xt"]], 0)
    ft, it, ot = (torch.sigmoid(t[f"W{g}"] @ concat + t[f"b{g}"]) for g in "fio")
    cct = torch.tanh(t["Wc"] @ concat + t["bc"])
    c_next = ft * t["c_prev"] + it * cct
    a_next = ot * torch.tanh(c_next)
    up_a, up_c = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))
    ((a_next * torch.tensor(up_a)).sum() + (c_next * torch.tensor(up_c)).sum()).backward()
    parameters = {k: v for k, v in values.items() if k[0] in "Wb"}
    cache = tuple(x.detach().numpy() for x in (a_next, c_next, t["a_prev"], t["c_prev"], ft, it, cct, ot, t["xt"]))
    got = mod.lstm_cell_backward(up_a.copy(), up_c.copy(), cache + (parameters,))
    for name, tensor in t.items():
        if not np.allclose(got["d" + name], tensor.grad.numpy(), rtol=1e-6, atol=1e-8):
            return "wrong"
    return "right"


def test_a_duplicated_course_function_gets_the_derivations_cause_line(tmp_path):
    """Two files define lstm_cell_backward, one right, one whose dit lacks the
    sigmoid's derivative: the wrong one is wrong and its verdict carries the same
    cause line the check of its file alone gives (the diagnosis looks the function
    up by its bare name, in its own file)."""
    source = DIAGNOSIS.read_text()
    assert source.count(RIGHT_CELL) == 1
    forward = tmp_path / "coursera_forward.py"
    forward.write_text((ROOT / "tests" / "learner_code" / "coursera_forward.py").read_text())
    right, wrong = tmp_path / "mine.py", tmp_path / "theirs.py"
    right.write_text(source)
    wrong.write_text(source.replace(RIGHT_CELL, RIGHT_CELL.replace("cache)", "cache, (\"dit_no_derivative\",))")))
    assert coursera_cell_truth(load(right)) == "right" and coursera_cell_truth(load(wrong)) == "wrong"

    def said(function: dict) -> list[str]:  # what the derivation adds, in the notes and the outputs' messages
        return ([n for n in function["notes"] if n.startswith("the derivation says")]
                + [o["message"] for o in function["outputs"] if "the derivation says" in o["message"]])

    status, report = run_check(forward, wrong)
    (alone,) = [f for f in report["functions"] if f["backward"] == "lstm_cell_backward"]
    assert alone["verdict"] == "wrong" and alone["backward_file"] == "" and status == 1
    assert any("cause: dit lacks the factor" in n for n in said(alone)), alone  # the single check names it

    status, report = run_check(forward, right, wrong)
    cells = {f["backward_file"]: f for f in report["functions"] if f["backward"] == "lstm_cell_backward"}
    assert set(cells) == {"mine.py", "theirs.py"} and status == 1
    assert cells["mine.py"]["verdict"] == "right" and not said(cells["mine.py"])
    assert cells["theirs.py"]["verdict"] == "wrong"
    assert said(cells["theirs.py"]) == said(alone)


def test_the_printed_verdict_names_the_file_beside_the_name():
    from derive.verifier.check_files import PairVerdict

    twice = PairVerdict("rnn_backward", "rnn_forward", "cs231n", "wrong", backward_file="layers.py",
                        forward_file="layers.py")
    assert twice.lines()[0] == "wrong: rnn_backward of layers.py (cache from your rnn_forward of layers.py)"
    assert twice.to_dict()["backward"] == "rnn_backward" and twice.to_dict()["backward_file"] == "layers.py"
    once = PairVerdict("rnn_backward", "rnn_forward", "cs231n", "right")
    assert once.lines()[0] == "right: rnn_backward (cache from your rnn_forward)"


@pytest.mark.parametrize("spelling", ["from course5.week_01.helpers import *", "from .helpers import logistic",
                                      "import course5.week_01.helpers as helpers_module"])
def test_a_sibling_imported_by_a_package_path_is_the_file_given(tmp_path, spelling):
    helpers = tmp_path / "helpers.py"
    helpers.write_text("import numpy as np\n\n\ndef logistic(x):\n    return 1 / (1 + np.exp(-x))\n")
    call = "helpers_module.logistic" if spelling.startswith("import") else "logistic"
    text = LAYERS.replace("def sigmoid(x):\n    return 1 / (1 + np.exp(-x))\n", "").replace("sigmoid(", f"{call}(")
    layers = tmp_path / "layers.py"
    layers.write_text(text.replace("import numpy as np\n", f"import numpy as np\n{spelling}\n", 1))
    status, report = run_check(layers, helpers)
    lstm = by_backward(report)["lstm_step_backward"]
    assert lstm["verdict"] == "right", lstm


def test_weights_named_another_way_are_said_to_be_so(tmp_path):
    """A course-API file whose ``parameters`` dict uses its own keys (``Whx`` for
    ``Wax``): could not check, and the reason says whose names differ."""
    course = ROOT / "tests" / "learner_code"
    forward = tmp_path / "coursera_forward.py"
    forward.write_text((course / "coursera_forward.py").read_text().replace('parameters["Wax"]', 'parameters["Whx"]'))
    backward = tmp_path / "coursera_backward.py"
    backward.write_text((course / "coursera_backward.py").read_text())
    status, report = run_check(forward, backward)
    cell = by_backward(report)["rnn_cell_backward"]
    assert cell["verdict"] == "could not check"
    assert "`Whx` is not a name of coursera's API" in cell["reason"] and "Wax" in cell["reason"]


@pytest.mark.parametrize("bug", [None, "self.state.bottom_diff_s = ds * self.state.f"])
def test_an_early_lstm_node_class_sized_by_module_constants(tmp_path, bug):
    """nicodjimenez/lstm's first commits: class LSTM(param), LstmParam() sized by the
    module constants. Torch autograd of the node (h = s * o) is the truth."""
    text = (ROOT / "tests" / "learner_code" / "early_lstm_node.py").read_text()
    if bug:
        text = text.replace(bug, "self.state.bottom_diff_s = ds")
    path = tmp_path / "lstm.py"
    path.write_text(text)
    node = load(path)
    param = node.LstmParam()
    rng = np.random.default_rng(5)
    x, s_prev, h_prev = rng.normal(size=node.x_dim), rng.normal(size=node.mem_cell_ct), rng.normal(size=node.mem_cell_ct)
    up_h, up_s = rng.normal(size=node.mem_cell_ct), rng.normal(size=node.mem_cell_ct)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in dict(x=x, s_prev=s_prev, h_prev=h_prev).items()}
    w = {k: torch.tensor(getattr(param, k), requires_grad=True) for k in ("wg", "wi", "wf", "wo", "bg", "bi", "bf", "bo")}
    xc = torch.cat([t["x"], t["h_prev"]])
    g, i = torch.tanh(w["wg"] @ xc + w["bg"]), torch.sigmoid(w["wi"] @ xc + w["bi"])
    f, o = torch.sigmoid(w["wf"] @ xc + w["bf"]), torch.sigmoid(w["wo"] @ xc + w["bo"])
    s = g * i + t["s_prev"] * f
    ((s * o) @ torch.tensor(up_h) + s @ torch.tensor(up_s)).backward()
    cell = node.LSTM(param)
    cell.bottom_data_is(x, s_prev, h_prev)
    cell.top_diff_is(up_h, up_s)
    mine = {"s_prev": cell.state.bottom_diff_s, "h_prev": cell.state.bottom_diff_h, "x": cell.state.bottom_diff_x,
            **{k: getattr(param, k + "_diff") for k in w}}
    truth = {**{k: v.grad.numpy() for k, v in t.items()}, **{k: v.grad.numpy() for k, v in w.items()}}
    expected = "right" if all(np.allclose(mine[k], truth[k], atol=1e-9) for k in truth) else "wrong"
    assert expected == ("wrong" if bug else "right")
    status, report = run_check(path)
    verdict = by_backward(report)["LSTM.top_diff_is"]
    assert verdict["verdict"] == expected and status == (0 if expected == "right" else 1)

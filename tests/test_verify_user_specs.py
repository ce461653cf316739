"""A user's own spec file on the command line (issue 7): `lstm-derive verify
--spec FILE ...` and `lstm-derive check --spec FILE ...` judge formulas and
functions for it as for a preset, and a spec with a mistake is an input error
(exit status 2) whose message names the file, the equation and the symbol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from derive.cli import main as cli

ROOT = Path(__file__).resolve().parent.parent
MGU = ROOT / "examples" / "mgu.toml"
CANDIDATE = "h_tilde = tanh(W_h @ concat(f * h_prev, x) + b_h)"


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def spec_with(tmp_path, old: str, new: str, name="mine.toml") -> Path:
    text = MGU.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


def test_verify_a_users_spec(capsys):
    code, out, _ = run(capsys, "verify", "--spec", MGU, "dz_f", "df*f*(1-f)")
    assert code == 0 and out.startswith("right")
    code, out, _ = run(capsys, "verify", "--spec", MGU, "dz_f = df*f")
    assert code == 1 and "lacks the factor 1 - f" in out
    # the options may come after the formula, as for a preset
    code, out, _ = run(capsys, "verify", "dz_f", r"\mathrm{d}f_t \odot f_t \odot (1 - f_t)", "--latex", "--spec", MGU)
    assert code == 0, out
    code, out, _ = run(capsys, "verify", "--json", "--spec", MGU, "dh_prev", "dh*(1-f) + f*(W_h.T @ dz_h_tilde)[:m]")
    d = json.loads(out)
    assert code == 1 and d["preset"] == "mgu" and d["diagnosis"][0]["label"] == "missing_path"
    # the spec path as the preset argument still works
    code, out, _ = run(capsys, "verify", MGU, "dz_f", "df*f*(1-f)")
    assert code == 0


def test_verify_total_on_the_command_line(capsys):
    code, out, _ = run(capsys, "verify", "--spec", MGU, "dW_h", "dz_h_tilde @ concat(f*h_prev, x).T", "--total")
    assert code == 1 and "one step's contribution" in out
    code, out, _ = run(capsys, "verify", "elman", "--total", "dW_hh", "sum_t(dz_h.T @ h_prev)")
    assert code == 0


BROKEN = [
    # (what is wrong, the edit, words the message must contain)
    ("unknown symbol", (CANDIDATE, CANDIDATE.replace("+ b_h)", "+ b_hh)")),
     ["mine.toml", "equation `h_tilde = tanh(W_h @ concat(f * h_prev, x) + b_hh)`", "unknown symbol `b_hh`",
      "did you mean `b_h`"]),
    ("bad equation", (CANDIDATE, CANDIDATE.replace("+ b_h)", "+ )")),
     ["mine.toml", "equation `h_tilde = tanh(W_h @ concat(f * h_prev, x) + )`", "^"]),
    ("shape mismatch", ("W_f @ concat(h_prev, x)", "W_f @ x"),
     ["mine.toml", "equation `f = sigmoid(W_f @ x + b_f)`", "shape mismatch in `W_f @ x`", "(m, m + n)", "(n, B)"]),
    ("TOML syntax", ('name = "mgu"', 'name = "mgu'), ["mine.toml"]),
]


@pytest.mark.parametrize("what,edit,words", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_spec_with_a_mistake_is_an_input_error(capsys, tmp_path, what, edit, words):
    path = spec_with(tmp_path, *edit)
    learner = tmp_path / "learner.py"
    learner.write_text("def backward(dh, f):\n    return {'dz_f': dh * f}\n")
    for argv in (["verify", "--spec", path, "dz_f", "df*f*(1-f)"],
                 ["verify", path, "dz_f", "df*f*(1-f)"],
                 ["check", "--spec", path, f"{learner}:backward"]):
        code, out, err = run(capsys, *argv)
        assert code == 2, (what, argv, out, err)
        assert err.startswith("lstm-derive: ") and "Traceback" not in err
        for w in words:
            assert w in err, (what, w, err)
    code, out, _ = run(capsys, "verify", "--json", "--spec", path, "dz_f", "df*f*(1-f)")
    d = json.loads(out)
    assert code == 2 and d["ok"] is None and all(w in d["error"] for w in words)


def test_missing_or_doubled_cell(capsys, tmp_path):
    code, _, err = run(capsys, "verify", "--spec", tmp_path / "nope.toml", "dz_f", "df")
    assert code == 2 and "no such spec file" in err
    learner = tmp_path / "learner.py"
    learner.write_text("def backward(dh, f):\n    return {}\n")
    code, _, err = run(capsys, "check", "elman", f"{learner}:backward", "--spec", MGU)
    assert code == 2 and "not both" in err
    code, _, err = run(capsys, "check", f"{learner}:backward")
    assert code == 2


def test_check_a_users_spec(capsys, tmp_path):
    learner = tmp_path / "learner.py"
    learner.write_text(
        "def cell(df, f):\n"
        "    return {'dz_f': df * f * (1 - f)}\n"
        "def cell_wrong(df, f):\n"
        "    return {'dz_f': df}\n")  # the sigmoid's derivative left out
    code, out, _ = run(capsys, "check", "--spec", MGU, f"{learner}:cell")
    assert code == 0 and out.startswith("right")
    code, out, _ = run(capsys, "check", "--spec", MGU, f"{learner}:cell_wrong", "--json")
    d = json.loads(out)
    assert code == 1 and d["outputs"][0]["label"] == "missing_derivative"


def test_check_a_whole_sequence_on_the_command_line(capsys, tmp_path):
    learner = tmp_path / "elman_seq.py"
    learner.write_text(
        "import numpy as np\n"
        "def backward(doutput, x, h, h_0, W_ih, W_hh):\n"
        "    dh_next = np.zeros_like(h_0); dW_hh = 0\n"
        "    for t in reversed(range(x.shape[0])):\n"
        "        dz = (doutput[t] + dh_next) * (1 - h[t] ** 2)\n"
        "        dW_hh = dW_hh + dz.T @ (h[t - 1] if t else h_0)\n"
        "        dh_next = dz @ W_hh\n"
        "    return {'dW_hh': dW_hh, 'dh_0': dh_next}\n")
    code, out, _ = run(capsys, "check", "elman", f"{learner}:backward", "--sequence")
    assert code == 0 and "sequence backward" in out, out
    # without --sequence it is called as one step's function, on one step's arrays, and fails: could not check
    code, out, _ = run(capsys, "check", "elman", f"{learner}:backward")
    assert code == 2 and out.startswith("could not check") and "raised" in out

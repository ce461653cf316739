"""A whole-sequence backward gets the cause named too (derive.verifier.localise_sequence): the
mistake is made in one STEP equation (or a carried gradient left out between steps), the whole
backward pass through time re-run, and compared with what the user's function returned.

The fixture (tests/learner_code/diagnosis/coursera_sequence_bugs.py) is the Coursera assignment's
lstm_forward / lstm_backward; copies make one mistake (or two). The right copy must be right by
central differences of its own forward (`check FILE`, referee (a)) and get no diagnosis, so the
buggy copies are diagnosed against an engine the right code agrees with. The corpus's Kulbear and
AlbertHG notebooks (the carried gradients never carried) are named as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from derive.verifier.function import check, load_function

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "learner_code" / "diagnosis" / "coursera_sequence_bugs.py"
CORPUS = ROOT / "tests" / "corpus"

NO_CARRY = "da_next, dc_next: neither da_prev nor dc_prev is carried back from step t+1 to step t"
CASES = {
    (): [],
    ("no_da_carry",): [("da_next", "no_chaining",
                        "da_next: the gradient carried back from step t+1 (da_prev) is not added")],
    ("no_carry",): [("da_next, dc_next", "no_chaining", NO_CARRY)],
    ("dit_no_derivative",): [("dit", "missing_derivative",
                              "dit lacks the factor it*(1 - it), the derivative of sigmoid in it")],
    ("dc_prev_no_ft",): [("dc_prev", "missing_factor",
                          "dc_prev lacks the factor ft, the gate's value (not its derivative)")],
    ("no_da_carry", "dit_no_derivative"): [
        ("da_next", "no_chaining", "da_next: the gradient carried back from step t+1 (da_prev) is not added"),
        ("dit", "missing_derivative", "dit lacks the factor it*(1 - it)")],
}
ALL = {"dx", "da0", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"}


def copy_with(tmp_path: Path, bug: tuple) -> Path:
    path = tmp_path / f"seq_{'_'.join(bug) or 'right'}.py"
    path.write_text(FIXTURE.read_text().replace("BUG = ()", f"BUG = {bug!r}"))
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "derive", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


@pytest.mark.parametrize("bug", list(CASES), ids=lambda b: "+".join(b) or "right")
def test_the_step_equation_is_named(tmp_path, bug):
    report = check("coursera", load_function(f"{copy_with(tmp_path, bug)}:lstm_backward"), sequence=True)
    assert report.ok == (not bug), report.message
    got = [(c["node"], c["label"], c["text"]) for c in report.causes]
    assert len(got) == len(CASES[bug]), report.message
    explained = set()
    for (node, label, text), want, cause in zip(got, CASES[bug], report.causes):
        assert (node, label) == want[:2] and text.startswith(want[2]), (got, want)
        assert f"cause: {text}" in report.message
        explained |= set(cause["explains"])
    wrong = {o.key for o in report.outputs if not o.ok}
    assert explained == wrong  # every wrong output explained, and only those
    if bug:
        assert wrong == ALL  # every output of a sequence is reached by a mistake in the step or the carry


@pytest.mark.parametrize("bug", [(), ("no_da_carry",), ("dc_prev_no_ft",)], ids=lambda b: "+".join(b) or "right")
def test_check_file_names_the_cause_of_a_sequence_function(tmp_path, bug):
    """As a user runs it: `lstm-derive check FILE`; the verdict is referee (a)'s (central differences
    of the file's own lstm_forward), the cause the derivation's."""
    proc = run("check", "--json", str(copy_with(tmp_path, bug)))
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    (fn,) = [f for f in report["functions"] if f["backward"] == "lstm_backward"]
    assert fn["verdict"] == ("wrong" if bug else "right"), fn
    said = [n.removeprefix("the derivation says: cause: ") for n in fn["notes"]
            if n.startswith("the derivation says: cause:")]
    assert [s.split(";")[0] for s in said] == [text for _, _, text in CASES[bug]], fn["notes"]


def test_check_preset_file_name_sequence_names_the_cause(tmp_path):
    proc = run("check", "coursera", f"{copy_with(tmp_path, ('dit_no_derivative',))}:lstm_backward", "--sequence")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"cause: {CASES[('dit_no_derivative',)][0][2]}; it explains dx, da0" in proc.stdout


@pytest.mark.parametrize("item, files", [
    ("coursera_kulbear", ["Building a Recurrent Neural Network - Step by Step - v2.ipynb", "rnn_utils.py"]),
    ("coursera_alberthg", ["Building+a+Recurrent+Neural+Network+-+Step+by+Step+-+v1.ipynb", "rnn_utils.py"]),
])
def test_the_corpus_no_carry_notebooks_are_named(item, files):
    """Both published notebooks' lstm_backward never update da_prevt and dc_prevt (their
    lstm_cell_backward is right, and Kulbear's reads Wf, Wi, Wc, Wo as notebook globals)."""
    proc = run("check", "--json", *[str(CORPUS / item / f) for f in files])
    assert "Traceback" not in proc.stderr, proc.stderr
    (fn,) = [f for f in json.loads(proc.stdout)["functions"] if f["backward"] == "lstm_backward"]
    assert fn["verdict"] == "wrong"  # referee (a); tests/test_check_corpus.py has torch agree
    notes = [n for n in fn["notes"] if n.startswith("the derivation says: cause:")]
    assert len(notes) == 1 and notes[0].startswith(f"the derivation says: cause: {NO_CARRY}; it explains "), notes
    explains = set(notes[0].split("it explains ", 1)[1].split(", "))
    assert explains == {c["key"] for c in fn["outputs"] if not c["ok"]}


# --- the other APIs through `check FILE`: CS231n (stacked i, f, o, g) and min-char-rnn's lossFun -----------

CS231N_FIXTURE = FIXTURE.with_name("cs231n_sequence_bugs.py")
CS231N = {  # bug -> {backward: the causes' sentences, in order}
    (): {},
    ("rnn_no_carry", "lstm_no_h_carry"): {
        "rnn_backward": ["dnext_h: the gradient carried back from step t+1 (dprev_h) is not added; "
                         "it explains dx, dprev_h, dWx, dWh, db"],
        "lstm_backward": ["dnext_h: the gradient carried back from step t+1 (dprev_h) is not added; it explains dx, "
                          "dprev_h, dWx_i"]},
    ("rnn_no_derivative", "dprev_c_no_f"): {
        "rnn_step_backward": ["dtanh lacks the factor 1 - next_h**2, the derivative of tanh in next_h"],
        "rnn_backward": ["dtanh lacks the factor 1 - next_h**2, the derivative of tanh in next_h; "
                         "it explains dx, dprev_h, dWx, dWh, db"],
        "lstm_step_backward": ["dprev_c lacks the factor f, the gate's value (not its derivative); "
                               "it explains dprev_c"],
        "lstm_backward": ["dprev_c lacks the factor f, the gate's value (not its derivative)"]},
    ("da_g_no_derivative",): {
        "lstm_step_backward": ["da_g lacks the factor 1 - g**2, the derivative of tanh in g"],
        "lstm_backward": ["da_g lacks the factor 1 - g**2, the derivative of tanh in g"]},
}


@pytest.mark.parametrize("bug", list(CS231N), ids=lambda b: "+".join(b) or "right")
def test_cs231n_functions_get_the_cause(tmp_path, bug):
    path = tmp_path / "rnn_layers.py"
    path.write_text(CS231N_FIXTURE.read_text().replace("BUG = ()", f"BUG = {bug!r}"))
    proc = run("check", "--json", str(path))
    assert "Traceback" not in proc.stderr, proc.stderr
    functions = {f["backward"]: f for f in json.loads(proc.stdout)["functions"]}
    assert set(functions) == {"rnn_step_backward", "rnn_backward", "lstm_step_backward", "lstm_backward"}
    for name, fn in functions.items():
        want = CS231N[bug].get(name, [])
        assert fn["verdict"] == ("wrong" if want else "right"), fn  # referee (a): central differences
        said = [n.removeprefix("the derivation says: cause: ") for n in fn["notes"]
                if n.startswith("the derivation says:")]
        assert len(said) == len(want), (name, said)
        for w, s in zip(want, said):
            assert s.startswith(w), (name, w, s)


MINCHAR = CORPUS / "minchar_karpathy_gist" / "min-char-rnn.py"


@pytest.mark.parametrize("line, edited, cause", [
    ("dhraw = (1 - hs[t] * hs[t]) * dh", "dhraw = dh",
     "dhraw lacks the factor 1 - h**2, the derivative of tanh in h; it explains dWxh, dWhh, dbh"),
    ("dh = np.dot(Why.T, dy) + dhnext", "dh = np.dot(Why.T, dy)",
     "dh: the gradient carried back from step t+1 (dh_prev) is not added; it explains dWxh, dWhh, dbh"),
])
def test_minchar_lossfun_gets_the_cause(tmp_path, line, edited, cause):
    """karpathy's gist as published, one line changed: the verdict by central differences of its own
    lossFun, the cause by the minchar notation over the same indices and state."""
    src = MINCHAR.read_text()
    assert line in src
    path = tmp_path / "min-char-rnn.py"
    path.write_text(src.replace(line, edited))
    proc = run("check", "--json", str(path))
    assert "Traceback" not in proc.stderr, proc.stderr
    (fn,) = json.loads(proc.stdout)["functions"]
    assert fn["verdict"] == "wrong", fn
    assert f"the derivation says: cause: {cause}" in fn["notes"], fn["notes"]

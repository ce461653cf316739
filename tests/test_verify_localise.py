"""A function check names the cause: the intermediate where the mistake of
several wrong outputs lives, and what the mistake is (derive.verifier.localise).

The fixtures (tests/learner_code/diagnosis/) are the Coursera assignment's
lstm_cell_backward and nicodjimenez's LstmNode.top_diff_is, each with one
classic mistake made (or two). The right version of each is checked too: it
must be right and get no diagnosis, so the buggy ones are judged against an
engine the right code agrees with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from derive.verifier.function import check, load_function
from derive.verifier.localise import Graph, candidates

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "tests" / "learner_code" / "diagnosis"
COURSERA = f"{HERE / 'coursera_bugs.py'}:"
NICO = f"{HERE / 'nico_bugs.py'}:"


def report_of(preset: str, target: str):
    return check(preset, load_function(target))


@pytest.mark.parametrize("preset, target", [("coursera", COURSERA + "lstm_cell_backward"),
                                            ("nicodjimenez", NICO + "LstmNode.top_diff_is")])
def test_a_right_function_gets_no_diagnosis(preset, target):
    report = report_of(preset, target)
    assert report.ok, report.message
    assert report.causes == [] and report.notes == []
    assert "cause" not in report.message and "the mistake is in" not in report.message


# (a) one wrong intermediate, several wrong outputs: the intermediate is named, with its mistake
CASES = {
    "coursera (a) dit parenthesis": (
        "coursera", COURSERA + "dit_parenthesis",
        [("dit", "parenthesis", "dit: only the da_next term has the factor it*(1 - it)",
          {"dWi", "dbi", "da_prev", "dxt"})]),
    "nicodjimenez (a) ds without o": (
        "nicodjimenez", NICO + "DsWithoutO.top_diff_is",
        [("ds", "missing_factor", "ds: the top_diff_h term lacks the factor o, the gate's value",
          {"wg_diff", "wi_diff", "wf_diff", "bg_diff", "bi_diff", "bf_diff", "bottom_diff_h", "bottom_diff_s",
           "bottom_diff_x"})]),
    # (b) a missing gate value is not a missing activation derivative
    "coursera (b) gate value": (
        "coursera", COURSERA + "dc_prev_without_ft",
        [("dc_prev", "missing_factor", "dc_prev lacks the factor ft, the gate's value (not its derivative)",
          {"dc_prev"})]),
    "coursera (b) derivative": (
        "coursera", COURSERA + "dit_without_derivative",
        [("dit", "missing_derivative", "dit lacks the factor it*(1 - it), the derivative of sigmoid in it",
          {"dWi", "dbi", "da_prev", "dxt"})]),
    "nicodjimenez (b) gate value": (
        "nicodjimenez", NICO + "BottomDiffSWithoutF.top_diff_is",
        [("bottom_diff_s", "missing_factor", "bottom_diff_s lacks the factor f, the gate's value (not its derivative)",
          {"bottom_diff_s"})]),
    "nicodjimenez (b) derivative": (
        "nicodjimenez", NICO + "DfInputWithoutDerivative.top_diff_is",
        [("df_input", "missing_derivative", "df_input lacks the factor f*(1 - f), the derivative of sigmoid in f",
          {"wf_diff", "bf_diff", "bottom_diff_h", "bottom_diff_x"})]),
    # (c) a weight paired with another gate's gradient
    "coursera (c) Wi with dft": (
        "coursera", COURSERA + "dft_with_Wi",
        [("dconcat", "wrong_weight", "dconcat pairs dft with Wi, another gate's weight (Wf belongs)",
          {"da_prev", "dxt"})]),
    "nicodjimenez (c) wi with df_input": (
        "nicodjimenez", NICO + "DfInputWithWi.top_diff_is",
        [("dxc", "wrong_weight", "dxc pairs df_input with wi, another gate's weight (wf belongs)",
          {"bottom_diff_h", "bottom_diff_x"})]),
    # (d) two independent mistakes, each named; the outputs both reach are explained by the pair
    "coursera (d) two bugs": (
        "coursera", COURSERA + "two_bugs",
        [("dot", "missing_derivative", "dot lacks the factor ot*(1 - ot)", {"dWo", "dbo"}),
         ("dit", "parenthesis", "dit: only the da_next term has the factor it*(1 - it)",
          {"dWi", "dbi", "da_prev", "dxt"})]),
    "nicodjimenez (d) two bugs": (
        "nicodjimenez", NICO + "TwoBugs.top_diff_is",
        [("ds", "missing_factor", "ds: the top_diff_h term lacks the factor o", None),
         ("do_input", "missing_derivative", "do_input lacks the factor o*(1 - o)", None)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_cause_is_named(case):
    preset, target, want = CASES[case]
    report = report_of(preset, target)
    assert not report.ok
    wrong = {o.name for o in report.outputs if not o.ok}
    got = {c["node"]: c for c in report.causes}
    assert set(got) == {node for node, *_ in want}, report.message
    explained = set()
    for node, label, text, explains in want:
        cause = got[node]
        assert cause["label"] == label and text in cause["text"], cause
        assert f"cause: {cause['text']}" in report.message
        if explains is not None:
            assert set(cause["explains"]) == explains
        explained |= set(cause["explains"])
    assert explained == wrong  # every wrong output is explained, and only those
    assert "the mistake is in" not in report.message


def test_gate_value_and_derivative_are_told_apart():
    value = report_of("coursera", COURSERA + "dc_prev_without_ft").causes[0]["text"]
    derivative = report_of("coursera", COURSERA + "dit_without_derivative").causes[0]["text"]
    assert "the gate's value" in value and "derivative of sigmoid" not in value
    assert "derivative of sigmoid" in derivative and "gate's value" not in derivative


@pytest.mark.parametrize("preset, target, where, outputs", [
    ("coursera", COURSERA + "dit_with_tanh_derivative", "in dit", {"dWi", "dbi", "da_prev", "dxt"}),
    ("nicodjimenez", NICO + "DiInputWithTanhDerivative.top_diff_is", "in di or di_input",
     {"wi_diff", "bi_diff", "bottom_diff_h", "bottom_diff_x"}),
])
def test_a_mistake_no_candidate_fits_is_still_placed(preset, target, where, outputs):
    report = report_of(preset, target)
    assert report.causes == []
    assert {o.name for o in report.outputs if not o.ok} == outputs
    assert f"and no right output is: the mistake is {where}" in report.message


def test_every_candidate_of_every_preset_is_well_formed():
    """The candidates are built from the derivation alone: every preset's every node gets some, each
    a sentence that starts with the node's name and an equation of the node's shape."""
    from derive.derivation import presets
    from derive.verifier.context import load_context

    for preset in presets():
        ctx = load_context(preset, None)
        graph = Graph(ctx)
        assert graph.order, preset
        for v in graph.order:
            cands = candidates(ctx, v)
            assert cands, (preset, v)
            for label, text, expr in cands:
                assert text.startswith(v), (preset, v, text)


def test_check_file_passes_the_cause_on(tmp_path):
    """`lstm-derive check FILE` (the user's forward makes the cache): referee (a) finds the outputs wrong,
    and the derivation's note names both causes."""
    code = ROOT / "tests" / "learner_code"
    (tmp_path / "coursera_forward.py").write_text((code / "coursera_forward.py").read_text())
    src = (HERE / "coursera_bugs.py").read_text().replace(
        "    return backward(da_next, dc_next, cache)\n",
        "    return backward(da_next, dc_next, cache, (\"dit_parenthesis\", \"dot_no_derivative\"))\n")
    (tmp_path / "mine.py").write_text(src)
    proc = subprocess.run([sys.executable, "-m", "derive", "check", "--json", str(tmp_path / "coursera_forward.py"),
                           str(tmp_path / "mine.py")], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=240)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    (fn,) = [f for f in report["functions"] if f["backward"] == "lstm_cell_backward"]
    assert fn["verdict"] == "wrong"
    notes = " | ".join(fn["notes"])
    assert "cause: dit: only the da_next term has the factor it*(1 - it)" in notes
    assert "cause: dot lacks the factor ot*(1 - ot)" in notes


# --- CS231n through `check FILE`: the user's forward makes the cache, Wx/Wh/b stacked i, f, o, g ---------

CS231N = {
    (): [],
    ("da_i_parenthesis",): ["cause: da_i: only the dnext_h term has the factor i*(1 - i); it explains dWx_i, dWh_i, "
                            "db_i, dprev_h, dx"],
    ("dprev_c_no_f",): ["cause: dprev_c lacks the factor f, the gate's value (not its derivative); "
                        "it explains dprev_c"],
    ("da_f_no_derivative",): ["cause: da_f lacks the factor f*(1 - f), the derivative of sigmoid in f"],
    ("da_f_with_Wh_i",): ["cause: dprev_h pairs da_f with Wh_i, another gate's weight (Wh_f belongs); "
                          "it explains dprev_h"],
    ("da_i_parenthesis", "da_o_no_derivative"): [
        "cause: da_o lacks the factor o*(1 - o), the derivative of sigmoid in o; it explains dWx_o, dWh_o, db_o",
        "cause: da_i: only the dnext_h term has the factor i*(1 - i)"],
}


@pytest.mark.parametrize("bug", list(CS231N), ids=lambda b: "+".join(b) or "right")
def test_cs231n_stacked_arrays_get_the_cause(tmp_path, bug):
    src = (HERE / "cs231n_bugs.py").read_text().replace("BUG = ()", f"BUG = {bug!r}")
    (tmp_path / "layers.py").write_text(src)
    proc = subprocess.run([sys.executable, "-m", "derive", "check", "--json", str(tmp_path / "layers.py")],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=240)
    assert "Traceback" not in proc.stderr, proc.stderr
    (fn,) = json.loads(proc.stdout)["functions"]
    assert fn["verdict"] == ("wrong" if bug else "right"), fn  # referee (a): central differences of the forward
    said = [n.removeprefix("the derivation says: ") for n in fn["notes"] if n.startswith("the derivation says")]
    assert len(said) == len(CS231N[bug]), said
    for want, got in zip(CS231N[bug], said):
        assert got.startswith(want), (want, got)

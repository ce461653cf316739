"""derive.check_function / funcheck: a user's backward function, filled by name
and compared with the engine output by output; wrong outputs matched to the
classic mistakes. The functions below are this project's own code, written the
way each notation's code is written."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from derive.errors import DeriveError
from derive.verifier.function import check, load_function
from derive.verifier.formula import check_function


# --- coursera: the assignment's signatures ------------------------------------


def cell_backward(da_next, dc_next, cache, carry_c=True, paren=True, row_slice=False):
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters) = cache
    n_a = a_next.shape[0]
    W = {k: parameters[k] for k in ("Wf", "Wi", "Wc", "Wo")}
    dcn = dc_next if carry_c else np.zeros_like(dc_next)
    dc = dcn + da_next * ot * (1 - np.tanh(c_next) ** 2)
    dot = da_next * np.tanh(c_next) * ot * (1 - ot)
    dcct = dc * it * (1 - cct ** 2)
    dit = dc * cct * it * (1 - it)
    if paren:
        dft = dc * c_prev * ft * (1 - ft)
    else:
        dft = dcn * c_prev + da_next * ot * (1 - np.tanh(c_next) ** 2) * c_prev * ft * (1 - ft)
    concat = np.vstack([a_prev, xt])
    grads = {"dWf": dft @ concat.T, "dWi": dit @ concat.T, "dWc": dcct @ concat.T, "dWo": dot @ concat.T,
             "dbf": dft.sum(axis=1, keepdims=True), "dbi": dit.sum(axis=1, keepdims=True),
             "dbc": dcct.sum(axis=1, keepdims=True), "dbo": dot.sum(axis=1, keepdims=True)}
    block = (lambda w: w[:n_a, :]) if row_slice else (lambda w: w[:, :n_a])
    grads["da_prev"] = sum(block(W[k]).T @ d for k, d in zip(("Wf", "Wi", "Wc", "Wo"), (dft, dit, dcct, dot)))
    grads["dxt"] = sum(W[k][:, n_a:].T @ d for k, d in zip(("Wf", "Wi", "Wc", "Wo"), (dft, dit, dcct, dot)))
    grads["dc_prev"] = dc * ft
    return grads


def lstm_cell_backward(da_next, dc_next, cache):
    return cell_backward(da_next, dc_next, cache)


def sequence_backward(da, caches, chain_a=True, accumulate=True):
    (caches, x) = caches
    n_a, m, T_x = da.shape
    dx = np.zeros((x.shape[0], m, T_x))
    da_prevt = np.zeros((n_a, m))
    dc_prevt = np.zeros((n_a, m))
    totals = {}
    for t in reversed(range(T_x)):
        g = lstm_cell_backward(da[:, :, t] + (da_prevt if chain_a else 0), dc_prevt, caches[t])
        da_prevt, dc_prevt = g["da_prev"], g["dc_prev"]
        dx[:, :, t] = g["dxt"]
        for k in ("dWf", "dWi", "dWc", "dWo", "dbf", "dbi", "dbc", "dbo"):
            totals[k] = totals.get(k, 0) + g[k] if accumulate else g[k]
    return {"dx": dx, "da0": da_prevt, **totals}


def test_the_assignments_cell_function_works_as_is():
    report = check_function("coursera", lstm_cell_backward)
    assert report.ok and report.status == 0, report.message
    names = {o.name for o in report.outputs}
    assert names == {"dxt", "da_prev", "dc_prev", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"}
    assert all(o.rel_error < 1e-12 for o in report.outputs)
    assert report.mode == "cell"


def test_the_assignments_sequence_function_works_as_is():
    def lstm_backward(da, caches):
        return sequence_backward(da, caches)

    report = check("coursera", lstm_backward)
    assert report.ok, report.message
    assert report.mode == "sequence"
    assert {o.key for o in report.outputs} >= {"dx", "da0", "dWf", "dbo"}


def test_cell_function_without_the_carried_cell_state():
    def lstm_cell_backward(da_next, dc_next, cache):
        return cell_backward(da_next, dc_next, cache, carry_c=False)

    report = check("coursera", lstm_cell_backward)
    assert not report.ok and report.status == 1
    bad = {o.name: o for o in report.outputs if not o.ok}
    assert set(bad) >= {"dc_prev", "dWf", "da_prev"}
    assert bad["dWf"].label == "carried_state" and "dc_next" in bad["dWf"].message
    assert {o.name for o in report.outputs if o.ok} == {"dWo", "dbo"}  # the output gate does not see dc_next
    assert "every wrong output matches the derivation when one leaves out the dc_next term" in report.message


def test_cell_function_with_a_missing_parenthesis():
    def lstm_cell_backward(da_next, dc_next, cache):
        return cell_backward(da_next, dc_next, cache, paren=False)

    report = check("coursera", lstm_cell_backward)
    bad = {o.name: o for o in report.outputs if not o.ok}
    assert set(bad) == {"dWf", "dbf", "da_prev", "dxt"}
    assert bad["dWf"].label == "parenthesis"


def test_cell_function_with_weights_sliced_by_rows():
    def lstm_cell_backward(da_next, dc_next, cache):
        return cell_backward(da_next, dc_next, cache, row_slice=True)

    report = check("coursera", lstm_cell_backward)
    (bad,) = [o for o in report.outputs if not o.ok]
    assert bad.name == "da_prev" and "shape" in bad.message


def test_sequence_function_that_does_not_chain_da_prev():
    def lstm_backward(da, caches):
        return sequence_backward(da, caches, chain_a=False)

    report = check("coursera", lstm_backward)
    assert not report.ok
    assert all(o.label == "no_chaining" for o in report.outputs if not o.ok)
    assert "does not carry da_prev from step t+1" in report.message


def test_sequence_function_that_overwrites_parameter_gradients():
    def lstm_backward(da, caches):
        return sequence_backward(da, caches, accumulate=False)

    report = check("coursera", lstm_backward)
    bad = {o.key: o for o in report.outputs if not o.ok}
    assert set(bad) == {"dWf", "dWi", "dWc", "dWo", "dbf", "dbi", "dbc", "dbo"}
    assert bad["dWf"].label == "per_step" and "only step 1's contribution" in bad["dWf"].message


def test_a_function_that_raises_is_wrong_not_a_crash():
    def lstm_cell_backward(da_next, dc_next, cache):
        raise KeyError("Wu")

    report = check("coursera", lstm_cell_backward)
    assert not report.ok and "KeyError" in report.error and "KeyError" in report.message


def test_unfillable_parameter_is_an_input_error():
    def backward(da_next, dcnext, cache):
        return {}

    with pytest.raises(DeriveError, match="cannot fill the parameter `dcnext`.*did you mean `dc_next`"):
        check("coursera", backward)


def test_tuple_returns_by_value_and_by_name():
    def cell(da_next, dc_next, ft, it, cct, ot, c_prev, c_next):
        dc = dc_next + da_next * ot * (1 - np.tanh(c_next) ** 2)
        return dc * c_prev * ft * (1 - ft), dc * cct * it * (1 - it)

    report = check("coursera", cell)
    assert report.ok and {o.name for o in report.outputs} == {"dft", "dit"}
    report = check("coursera", cell, returns=["dit", "dft"])
    assert not report.ok
    assert any("it holds dft, not dit" in o.message for o in report.outputs)


# --- other notations: names filled directly, `self` built from aliases ---------


def test_graves_function_by_name_with_a_wrong_time_index():
    def backward(dh, dc_next, i, f, g, o, c, c_prev, W_co, W_ci, W_cf):
        dz_o = dh * o * (1 - o) * np.tanh(c)
        dc = dc_next + dh * o * (1 - np.tanh(c) ** 2) + W_co * dz_o
        return {"dz_o": dz_o, "dc": dc, "dz_f": dc * c * f * (1 - f), "dz_i": dc * g * i * (1 - i)}

    report = check("graves", backward)
    bad = {o.name: o for o in report.outputs if not o.ok}
    assert set(bad) == {"dz_f"} and bad["dz_f"].label == "time_index"


NICO = '''
import numpy as np

class LstmNode:
    def top_diff_is(self, top_diff_h, top_diff_s):
        ds = self.state.o * top_diff_h{carry}
        do = self.state.s * top_diff_h
        di = self.state.g * ds
        dg = self.state.i * ds
        df = self.s_prev * ds
        di_input = (1. - self.state.i) * self.state.i * di
        df_input = (1. - self.state.f) * self.state.f * df
        do_input = (1. - self.state.o) * self.state.o * do
        dg_input = (1. - self.state.g ** 2) * dg
        self.param.wi_diff += np.outer(di_input, self.xc)
        self.param.wf_diff += np.outer(df_input, self.xc)
        self.param.wo_diff += np.outer(do_input, self.xc)
        self.param.wg_diff += np.outer(dg_input, self.xc)
        self.param.bi_diff += di_input
        self.param.bf_diff += df_input
        self.param.bo_diff += do_input
        self.param.bg_diff += dg_input
        dxc = np.zeros_like(self.xc)
        dxc += np.dot(self.param.wi.T, di_input)
        dxc += np.dot(self.param.wf.T, df_input)
        dxc += np.dot(self.param.wo.T, do_input)
        dxc += np.dot(self.param.wg.T, dg_input)
        self.state.bottom_diff_s = ds * self.state.f
        self.state.bottom_diff_x = dxc[:self.param.x_dim]
        self.state.bottom_diff_h = dxc[self.param.x_dim:]
'''


def test_nicodjimenez_method_with_self(tmp_path):
    path = tmp_path / "lstm_node.py"
    path.write_text(NICO.format(carry=" + top_diff_s"))
    report = check("nicodjimenez", load_function(f"{path}:LstmNode.top_diff_is"))
    assert report.ok, report.message
    assert {o.key for o in report.outputs} >= {"self.state.bottom_diff_h", "self.param.wi_diff"}
    path.write_text(NICO.format(carry=""))
    report = check("nicodjimenez", load_function(f"{path}:LstmNode.top_diff_is"))
    assert not report.ok
    bad = {o.name: o for o in report.outputs if not o.ok}
    assert bad["bottom_diff_s"].label == "carried_state" and "top_diff_s" in bad["bottom_diff_s"].message
    assert "wo_diff" not in bad  # the output gate does not see the carried state


def test_load_function_errors(tmp_path):
    with pytest.raises(DeriveError, match="no such file"):
        load_function(str(tmp_path / "missing.py") + ":f")
    with pytest.raises(DeriveError, match="FILE.py:NAME"):
        load_function("just_a_name")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(DeriveError, match="RuntimeError: boom"):
        load_function(f"{broken}:f")
    ok = tmp_path / "ok.py"
    ok.write_text(textwrap.dedent("""
        VALUE = 3
        def f(ft):
            return {"dft": ft}
    """))
    with pytest.raises(DeriveError, match="no `g`"):
        load_function(f"{ok}:g")
    with pytest.raises(DeriveError, match="not a function"):
        load_function(f"{ok}:VALUE")
    report = check("coursera", load_function(f"{ok}:f"))
    assert not report.ok and report.outputs[0].name == "dft"


def test_report_as_json():
    import json

    report = check_function("coursera", lstm_cell_backward)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is True and d["mode"] == "cell" and len(d["outputs"]) == 11

"""derive.check_function on cells that are not LSTMs (issue 7): Coursera's
basic RNN functions as a learner writes them (rnn_cell_backward(da_next,
cache), rnn_backward(da, caches)), PyTorch-named GRU and Elman functions for
one step and for a whole sequence, CIFG and a user's spec. The functions below
are learner code written for these tests, correct and with the classic
mistakes; none of it is the engine's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from derive.errors import DeriveError
from derive.verifier.formula import check_function

ROOT = Path(__file__).resolve().parent.parent
MGU = str(ROOT / "examples" / "mgu.toml")


def bad_outputs(report):
    return {o.key: o for o in report.outputs if not o.ok}


# --- Coursera's basic RNN, the notebook's signatures ----------------------------


def rnn_cell_backward(da_next, cache, tanh_derivative=True):
    (a_next, a_prev, xt, parameters) = cache
    Wax = parameters["Wax"]
    Waa = parameters["Waa"]
    dtanh = (1 - a_next ** 2) * da_next if tanh_derivative else da_next
    dxt = np.dot(Wax.T, dtanh)
    dWax = np.dot(dtanh, xt.T)
    da_prev = np.dot(Waa.T, dtanh)
    dWaa = np.dot(dtanh, a_prev.T)
    dba = np.sum(dtanh, axis=1, keepdims=True)
    return {"dxt": dxt, "da_prev": da_prev, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def rnn_backward_as_written(da, caches, tanh_derivative=True, carry=True, accumulate=True):
    (caches, x) = caches
    (a1, a0, x1, parameters) = caches[0]
    n_a, m, T_x = da.shape
    n_x, m = x1.shape
    dx = np.zeros((n_x, m, T_x))
    dWax = np.zeros((n_a, n_x))
    dWaa = np.zeros((n_a, n_a))
    dba = np.zeros((n_a, 1))
    da_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        gradients = rnn_cell_backward(da[:, :, t] + (da_prevt if carry else 0), caches[t], tanh_derivative)
        dxt, da_prevt = gradients["dxt"], gradients["da_prev"]
        dx[:, :, t] = dxt
        if accumulate:
            dWax += gradients["dWax"]
            dWaa += gradients["dWaa"]
            dba += gradients["dba"]
        else:
            dWax, dWaa, dba = gradients["dWax"], gradients["dWaa"], gradients["dba"]
    da0 = da_prevt
    return {"dx": dx, "da0": da0, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def test_the_notebooks_rnn_cell_backward_passes():
    report = check_function("coursera_rnn", rnn_cell_backward)
    assert report.ok and report.mode == "cell", report.message
    assert {o.name for o in report.outputs} == {"dxt", "da_prev", "dWax", "dWaa", "dba"}


def test_rnn_cell_backward_without_the_tanh_derivative():
    def rnn_cell_backward_(da_next, cache):
        return rnn_cell_backward(da_next, cache, tanh_derivative=False)

    report = check_function("coursera_rnn", rnn_cell_backward_)
    assert not report.ok and report.status == 1
    bad = bad_outputs(report)
    assert set(bad) == {"dxt", "da_prev", "dWax", "dWaa", "dba"}
    assert all(o.label == "missing_derivative" for o in bad.values())
    assert "leaves out the derivative of tanh in a_next" in report.message


def test_the_notebooks_rnn_backward_passes():
    def rnn_backward(da, caches):
        return rnn_backward_as_written(da, caches)

    report = check_function("coursera_rnn", rnn_backward)
    assert report.ok and report.mode == "sequence", report.message
    assert {o.key for o in report.outputs} == {"dx", "da0", "dWax", "dWaa", "dba"}


def test_rnn_backward_without_the_tanh_derivative():
    def rnn_backward(da, caches):
        return rnn_backward_as_written(da, caches, tanh_derivative=False)

    report = check_function("coursera_rnn", rnn_backward)
    bad = bad_outputs(report)
    assert set(bad) == {"dx", "da0", "dWax", "dWaa", "dba"}
    assert bad["dWaa"].label == "missing_derivative"
    assert "a backward pass in which dtanh leaves out the derivative of tanh in a_next" in bad["dWaa"].message


def test_rnn_backward_that_forgets_the_sum_over_time():
    def rnn_backward(da, caches):
        return rnn_backward_as_written(da, caches, accumulate=False)

    report = check_function("coursera_rnn", rnn_backward)
    bad = bad_outputs(report)
    assert set(bad) == {"dWax", "dWaa", "dba"}  # dx and da0 are right
    assert all(o.label == "per_step" for o in bad.values())
    assert "only step 1's contribution" in bad["dWaa"].message


def test_rnn_backward_that_forgets_to_carry_da_prev():
    def rnn_backward(da, caches):
        return rnn_backward_as_written(da, caches, carry=False)

    report = check_function("coursera_rnn", rnn_backward)
    bad = bad_outputs(report)
    assert set(bad) == {"dx", "da0", "dWax", "dWaa", "dba"}
    assert all(o.label == "no_chaining" for o in bad.values())
    assert "does not carry da_prev from step t+1" in report.message


def test_rnn_backward_from_a_file_on_the_command_line(tmp_path, capsys):
    from derive.cli import main as cli

    path = tmp_path / "my_rnn.py"
    path.write_text(
        "import numpy as np\n"
        "def rnn_backward(da, caches):\n"
        "    (caches, x) = caches\n"
        "    a1, a0, x1, p = caches[0]\n"
        "    n_a, m, T_x = da.shape\n"
        "    dx = np.zeros((x1.shape[0], m, T_x)); dWax = 0; dWaa = 0; dba = 0\n"
        "    da_prevt = np.zeros((n_a, m))\n"
        "    for t in reversed(range(T_x)):\n"
        "        a_next, a_prev, xt, p = caches[t]\n"
        "        dtanh = (1 - a_next ** 2) * (da[:, :, t] + da_prevt)\n"
        "        dx[:, :, t] = p['Wax'].T @ dtanh\n"
        "        da_prevt = p['Waa'] @ dtanh\n"  # the mistake: Waa, not Waa.T
        "        dWax = dWax + dtanh @ xt.T; dWaa = dWaa + dtanh @ a_prev.T\n"
        "        dba = dba + dtanh.sum(axis=1, keepdims=True)\n"
        "    return {'dx': dx, 'da0': da_prevt, 'dWax': dWax, 'dWaa': dWaa, 'dba': dba}\n")
    code = cli.main(["check", "coursera_rnn", f"{path}:rnn_backward"])
    out = capsys.readouterr().out
    assert code == 1 and "BAD `da0`" in out and "ok  `dWax`" not in out
    assert "sequence backward" in out


# --- PyTorch's Elman RNN: any cell's whole sequence, filled by name --------------


def elman_backward_as_written(doutput, x, h, h_0, W_ih, W_hh, square=True, carry=True, accumulate=True):
    T = x.shape[0]  # PyTorch's layout: time first, (T, N, features)
    dW_ih, dW_hh = np.zeros_like(W_ih), np.zeros_like(W_hh)
    db = np.zeros(W_hh.shape[0])
    dx = np.zeros_like(x)
    dh_next = np.zeros_like(h_0)
    for t in reversed(range(T)):
        h_prev = h[t - 1] if t > 0 else h_0
        dz = (doutput[t] + (dh_next if carry else 0)) * (1 - h[t] ** 2 if square else 1 - h[t])
        if accumulate:
            dW_ih = dW_ih + dz.T @ x[t]
            dW_hh = dW_hh + dz.T @ h_prev
        else:
            dW_ih, dW_hh = dz.T @ x[t], dz.T @ h_prev
        db = db + dz.sum(axis=0)
        dx[t] = dz @ W_ih
        dh_next = dz @ W_hh
    return {"dx": dx, "dh_0": dh_next, "dW_ih": dW_ih, "dW_hh": dW_hh, "db_ih": db, "db_hh": db}


def test_elman_whole_sequence_by_name():
    report = check_function("elman", elman_backward_as_written, sequence=True)
    assert report.ok and report.mode == "sequence", report.message
    assert {o.key for o in report.outputs} == {"dx", "dh_0", "dW_ih", "dW_hh", "db_ih", "db_hh"}


@pytest.mark.parametrize("mistake,label,culprit", [
    ({"square": False}, "wrong_derivative", "writes the derivative of tanh in h as 1 - h"),
    ({"carry": False}, "no_chaining", "does not carry dh_prev"),
    ({"accumulate": False}, "per_step", "only step 1's contribution"),
])
def test_elman_whole_sequence_mistakes(mistake, label, culprit):
    def elman_backward(doutput, x, h, h_0, W_ih, W_hh):
        return elman_backward_as_written(doutput, x, h, h_0, W_ih, W_hh, **mistake)

    report = check_function("elman", elman_backward, sequence=True)
    bad = bad_outputs(report)
    assert "dW_hh" in bad and bad["dW_hh"].label == label and culprit in bad["dW_hh"].message
    if label == "per_step":
        assert set(bad) == {"dW_ih", "dW_hh"}


def test_whole_sequence_function_cannot_ask_for_a_per_step_gradient():
    def elman_backward(dh, x, W_hh):
        return {}

    with pytest.raises(DeriveError, match="cannot fill the parameter `dh` of a whole-sequence function"):
        check_function("elman", elman_backward, sequence=True)


# --- GRU, one step, in PyTorch's names -------------------------------------------


def gru_cell_backward_as_written(dh, x, h_prev, r, z, n, W_ir, W_iz, W_in, W_hr, W_hz, W_hn, b_hn,
                                 bias_in_reset=True, flip=False, direct=True):
    dz_n = dh * (1 - z) * (1 - n ** 2)
    dz_z = dh * ((n - h_prev) if flip else (h_prev - n)) * z * (1 - z)
    dz_r = dz_n * (h_prev @ W_hn.T + (b_hn if bias_in_reset else 0)) * r * (1 - r)
    dh_prev = dz_r @ W_hr + dz_z @ W_hz + (dz_n * r) @ W_hn + (dh * z if direct else 0)
    return {"dz_n": dz_n, "dz_z": dz_z, "dz_r": dz_r, "dW_hr": dz_r.T @ h_prev, "db_hz": dz_z.sum(axis=0),
            "dh_prev": dh_prev, "dx": dz_r @ W_ir + dz_z @ W_iz + dz_n @ W_in}


def test_gru_cell_function():
    report = check_function("gru", gru_cell_backward_as_written)
    assert report.ok, report.message


@pytest.mark.parametrize("mistake,wrong_outputs,output,label,cause", [
    ({"bias_in_reset": False}, {"dz_r", "dW_hr", "dh_prev", "dx"}, "dz_r", "", ""),
    ({"flip": True}, {"dz_z", "db_hz", "dh_prev", "dx"}, "dz_z", "sign", "has the opposite sign"),
    ({"direct": False}, {"dh_prev"}, "dh_prev", "direct_path", "leaves out the direct term dh*z"),
])
def test_gru_cell_function_mistakes_are_named(mistake, wrong_outputs, output, label, cause):
    def gru_cell_backward(dh, x, h_prev, r, z, n, W_ir, W_iz, W_in, W_hr, W_hz, W_hn, b_hn):
        return gru_cell_backward_as_written(dh, x, h_prev, r, z, n, W_ir, W_iz, W_in, W_hr, W_hz, W_hn, b_hn, **mistake)

    report = check_function("gru", gru_cell_backward)
    bad = bad_outputs(report)
    assert set(bad) == wrong_outputs, report.message
    assert bad[output].label == label and cause in bad[output].message


# --- CIFG and a user's spec -------------------------------------------------------


def test_cifg_cell_function_without_the_coupled_term():
    def cifg_cell_backward(delta_c, delta_y, c_prev, z, f, o, c, p_f, coupled=True):
        delta_i = delta_c * z
        delta_f = delta_c * c_prev - (delta_i if coupled else 0)
        delta_fbar = delta_f * f * (1 - f)
        return {"delta_i": delta_i, "delta_f": delta_f, "delta_fbar": delta_fbar,
                "dc_prev": delta_c * f + delta_fbar * p_f}

    assert check_function("cifg", cifg_cell_backward).ok

    def wrong(delta_c, delta_y, c_prev, z, f, o, c, p_f):
        return cifg_cell_backward(delta_c, delta_y, c_prev, z, f, o, c, p_f, coupled=False)

    report = check_function("cifg", wrong)
    assert set(bad_outputs(report)) == {"delta_f", "delta_fbar", "dc_prev"}


def mgu_backward_as_written(dl_dh, x, f, h_tilde, h_prev, W_f, W_h, carry=True):
    """A user's whole-sequence backward for examples/mgu.toml: batch in columns,
    so time is the last axis; h_prev is the initial state."""
    m = h_prev.shape[0]
    T = x.shape[-1]
    dW_f, dW_h = np.zeros_like(W_f), np.zeros_like(W_h)
    dx = np.zeros_like(x)
    h = h_prev
    states = []
    for t in range(T):  # the states before each step, from the forward values
        states.append(h)
        h = (1 - f[..., t]) * h + f[..., t] * h_tilde[..., t]
    carried = np.zeros_like(h_prev)
    for t in reversed(range(T)):
        hp, ft, ht = states[t], f[..., t], h_tilde[..., t]
        dh = dl_dh[..., t] + (carried if carry else 0)
        dz_h = dh * ft * (1 - ht ** 2)
        back_h = W_h.T @ dz_h
        dz_f = (dh * (ht - hp) + hp * back_h[:m]) * ft * (1 - ft)
        back_f = W_f.T @ dz_f
        dW_f += dz_f @ np.vstack([hp, x[..., t]]).T
        dW_h += dz_h @ np.vstack([ft * hp, x[..., t]]).T
        dx[..., t] = back_f[m:] + back_h[m:]
        carried = dh * (1 - ft) + ft * back_h[:m] + back_f[:m]
    return {"dW_f": dW_f, "dW_h": dW_h, "dx": dx, "dh_prev": carried}


def test_a_users_spec_whole_sequence_function():
    report = check_function(MGU, mgu_backward_as_written, sequence=True)
    assert report.ok, report.message

    def mgu_backward(dl_dh, x, f, h_tilde, h_prev, W_f, W_h):
        return mgu_backward_as_written(dl_dh, x, f, h_tilde, h_prev, W_f, W_h, carry=False)

    report = check_function(MGU, mgu_backward, sequence=True)
    bad = bad_outputs(report)
    assert set(bad) == {"dW_f", "dW_h", "dx", "dh_prev"}
    assert all(o.label == "no_chaining" for o in bad.values())

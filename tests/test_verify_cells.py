"""derive.verifier.formula on cells that are not LSTMs, and on a user's own spec file
(issue 7): the GRU and Elman presets in PyTorch's names, Coursera's basic RNN,
Greff et al.'s CIFG, and the example specs examples/mgu.toml and
examples/janet.toml. Right formulas pass; each mistake class a learner makes
with these cells is caught and the wrong term named, in Python and in LaTeX.

The wrong formulas are this project's own examples of each mistake, written
in each notation's names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from derive.errors import DeriveError
from derive.verifier.formula import verify

ROOT = Path(__file__).resolve().parent.parent
MGU = str(ROOT / "examples" / "mgu.toml")
JANET = str(ROOT / "examples" / "janet.toml")


def labels(v):
    return [f.label for f in v.diagnosis]


def text(v):
    return "\n".join(f.text for f in v.diagnosis)


def wrong(preset, quantity, formula, syntax="python", **kw):
    v = verify(preset, quantity, formula, syntax, **kw)
    assert not v.ok and v.status == 1, v.message
    assert v.diagnosis, v.message
    return v


# ---------------------------------------------------------------------------
# right formulas, as a learner writes them


RIGHT = [
    ("gru", "dz_r", "dz_n*r*(1-r)*(h_prev @ W_hn.T + b_hn)", "python"),
    ("gru", "dz_z", "dh*(h_prev - n)*z*(1-z)", "python"),
    ("gru", "dh_prev", "dh*z + dz_r @ W_hr + dz_z @ W_hz + (dz_n*r) @ W_hn", "python"),
    ("gru", "dh_prev", r"\frac{\partial L}{\partial h_t} \odot z_t + dz_r W_{hr} + dz_z W_{hz} + (dz_n \odot r_t) W_{hn}",
     "latex"),
    ("gru", "dW_hn", r"\sum_t (dz_n \odot r_t)^T h_{t-1}", "latex"),
    ("elman", "dz_h", "dh*(1 - h**2)", "python"),
    ("elman", "dW_hh", "sum_t(dz_h.T @ h_prev)", "python"),
    ("elman", "dh_prev", r"\frac{\partial L}{\partial z_t} W_{hh}", "latex"),
    ("elman", "dh", "doutput + later(dh_prev)", "python"),
    # the notebook's rnn_cell_backward, line by line
    ("coursera_rnn", "dtanh", "(1 - a_next**2) * da_next", "python"),
    ("coursera_rnn", "da_prev", "np.dot(Waa.T, dtanh)", "python"),
    ("coursera_rnn", "dWax", "np.dot(dtanh, xt.T)", "python"),
    ("coursera_rnn", "dba", "np.sum(dtanh, axis=1, keepdims=True)", "python"),
    ("coursera_rnn", None, r"da_{prev} = W_{aa}^T \cdot dtanh", "latex"),
    # the notebook's own spelling of a transposed value at step t
    ("coursera_rnn", None, r"dW_{ax} = dtanh \cdot x^{\langle t \rangle T}", "latex"),
    ("coursera_rnn", None, r"dW_{aa} = dtanh \cdot a^{\langle t-1 \rangle T}", "latex"),
    ("coursera_rnn", None, r"dtanh = (1 - \tanh^2(W_{ax}x^{\langle t \rangle}+W_{aa} a^{\langle t-1 \rangle} + b_{a}))"
                           r" \odot da_{next}", "latex"),
    ("cifg", "delta_f", "c_prev*delta_c - delta_i", "python"),
    ("cifg", "delta_f", r"\delta c^t \odot c^{t-1} - \delta i^t", "latex"),
    ("cifg", "delta_zbar", r"\delta c^t \odot (1 - f^t) \odot (1 - (z^t)^2)", "latex"),
    # Greff et al.'s delta c^t, the next step's values written with ^{t+1}
    ("cifg", "delta_c", r"\delta y^t \odot o^t \odot (1 - \tanh^2(c^t)) + \delta \bar{o}^t \odot p_o"
                        r" + \delta c^{t+1} \odot f^{t+1} + \delta \bar{f}^{t+1} \odot p_f", "latex"),
    (MGU, "dh_prev", "dh*(1-f) + f*(W_h.T @ dz_h_tilde)[:m] + (W_f.T @ dz_f)[:m]", "python"),
    (MGU, "dh_prev", r"dh \odot (1 - f_t) + f_t \odot (W_h^T dz_{\tilde{h}})_{[0:m]} + (W_f^T dz_f)_{[0:m]}", "latex"),
    (JANET, "ds", r"dc \odot (c_{t-1} \odot \sigma'(s_t) - \tilde{c}_t \odot \sigma'(s_t - 1))", "latex"),
]


@pytest.mark.parametrize("preset,quantity,formula,syntax", RIGHT)
def test_right_formulas_pass(preset, quantity, formula, syntax):
    v = verify(preset, quantity, formula, syntax)
    assert v.ok, v.message
    assert v.status == 0 and v.diagnosis == []


@pytest.mark.parametrize("preset", ["gru", "elman", "coursera_rnn", "cifg", MGU, JANET])
def test_the_engines_own_equations_are_right_in_both_syntaxes(preset):
    import derive
    from derive.spec.latex import to_latex
    from derive.spec.pyprint import to_python

    d = derive.derive(preset)
    for eq in d.backward:
        name = str(eq.lhs)
        for formula, syntax in ((to_python(eq.rhs), "python"), (to_latex(eq.rhs, d.cell), "latex")):
            v = verify(preset, name, formula, syntax)
            assert v.ok, (preset, name, syntax, formula, v.message)


# ---------------------------------------------------------------------------
# gru


def test_gru_reset_product_without_its_bias():
    for formula, syntax in (("dz_n*r*(1-r)*(h_prev @ W_hn.T)", "python"),
                            (r"\mathrm{d}z_{n_t} \odot r_t \odot (1 - r_t) \odot (h_{t-1} W_{hn}^T)", "latex")):
        v = wrong("gru", "dz_r", formula, syntax)
        (f,) = v.diagnosis
        assert f.label == "summand" and str(f.term) == "dz_n"
        assert "lacks its part `b_hn`" in f.text and "__" not in f.text


def test_gru_update_gate_with_the_sign_of_h_prev_minus_n_flipped():
    for formula, syntax in (("dh*z*(1-z)*(n - h_prev)", "python"),
                            (r"\frac{\partial L}{\partial h_t} \odot z_t \odot (1 - z_t) \odot (n_t - h_{t-1})", "latex")):
        v = wrong("gru", "dz_z", formula, syntax)
        (f,) = v.diagnosis
        assert f.label == "sign" and str(f.term) == "dh"
        assert "`n - h_prev` is the negative of `h_prev - n`" in f.text


def test_gru_dh_prev_without_the_direct_path():
    for formula, syntax in (("dz_r @ W_hr + dz_z @ W_hz + (dz_n*r) @ W_hn", "python"),
                            (r"dz_r W_{hr} + dz_z W_{hz} + (dz_n \odot r_t) W_{hn}", "latex")):
        v = wrong("gru", "dh_prev", formula, syntax)
        (f,) = v.diagnosis
        assert (f.kind, f.label, str(f.term)) == ("missing_term", "direct_path", "dh")
        assert "it is `dh*z`" in f.text and "`h` uses `h_prev` directly" in f.text


# ---------------------------------------------------------------------------
# elman


def test_elman_weight_gradient_without_the_sum_over_time():
    # seed 003: the whole sequence's dW_hh written as one step's term
    for formula, syntax in (("dz_h.T @ h_prev", "python"),
                            (r"\left(\frac{\partial L}{\partial z_t}\right)^T h_{t-1}", "latex")):
        v = wrong("elman", "dW_hh", formula, syntax, total=True)
        (f,) = v.diagnosis
        assert f.label == "per_step" and "one step's contribution" in f.text
        assert "`dW_hh = sum_t(dz_h.T @ h_prev)`" in f.text
    # the same formula as one step's contribution is right, with the note that says so
    v = verify("elman", "dW_hh", "dz_h.T @ h_prev")
    assert v.ok and any("sum over t" in n for n in v.notes)
    # summed, but through this step only: the carried dh_prev is left out
    v = wrong("elman", "dW_hh", "sum_t((doutput*(1-h**2)).T @ h_prev)")
    (f,) = v.diagnosis
    assert f.label == "no_chaining" and "uses `doutput` where `dh` belongs" in f.text
    v = wrong("elman", "dW_hh", r"\sum_{t=1}^{T} \left(\frac{\partial \ell_t}{\partial h_t} \odot (1-h_t^2)\right)^T h_{t-1}",
              "latex")
    assert labels(v) == ["no_chaining"]
    # a per-step formula that is wrong besides: both said
    v = wrong("elman", "dW_hh", "dz_h.T @ h", total=True)
    assert labels(v) == ["time_index", "per_step"]


def test_elman_tanh_derivative_written_without_the_square():
    for formula, syntax in (("dh*(1-h)", "python"), (r"\frac{\partial L}{\partial h_t} \odot (1 - h_t)", "latex")):
        v = wrong("elman", "dz_h", formula, syntax)
        (f,) = v.diagnosis
        assert f.label == "wrong_derivative" and "has `1 - h` where `1 - h**2` belongs" in f.text
    # tanh applied to the stored h is another mistake
    v = wrong("elman", "dz_h", r"\frac{\partial L}{\partial h_t} \odot (1 - \tanh^2(h_t))", "latex")
    assert labels(v) == ["activated_twice"]


def test_elman_without_the_carried_gradient():
    v = wrong("elman", "dh", "doutput")
    assert labels(v) == ["no_chaining"] and "dh_prev" in text(v)


# ---------------------------------------------------------------------------
# coursera_rnn


def test_coursera_rnn_da_prev_with_Waa_untransposed():
    for formula, syntax in (("np.dot(Waa, dtanh)", "python"), (r"W_{aa} \cdot dtanh", "latex"),
                            (r"W_{aa} \frac{\partial \mathcal{L}}{\partial z^{\langle t \rangle}}", "latex")):
        v = wrong("coursera_rnn", "da_prev", formula, syntax)
        (f,) = v.diagnosis
        assert f.label == "transposed" and "has `Waa` where `Waa.T` belongs" in f.text


def test_coursera_rnn_tanh_derivative_mistakes():
    v = wrong("coursera_rnn", "dtanh", "(1 - a_next) * da_next")
    assert labels(v) == ["wrong_derivative"] and "1 - a_next**2" in text(v)
    v = wrong("coursera_rnn", "dtanh", r"da_{next}", "latex")
    assert labels(v) == ["missing_derivative"]
    v = wrong("coursera_rnn", "dWaa", "np.dot(dtanh, a_next.T)")
    assert labels(v) == ["time_index"] and "`a_next` where `a_prev` belongs" in text(v)


# ---------------------------------------------------------------------------
# cifg


def test_cifg_forget_gate_without_the_coupled_term():
    for formula, syntax in (("c_prev*delta_c", "python"), (r"\delta c^t \odot c^{t-1}", "latex")):
        v = wrong("cifg", "delta_f", formula, syntax)
        (f,) = v.diagnosis
        assert (f.kind, f.label, str(f.term)) == ("missing_term", "missing_path", "delta_i")
        assert "it is `-delta_i`" in f.text and "`i = 1 - f` uses `f`" in f.text
    v = wrong("cifg", "delta_f", "c_prev*delta_c + delta_i")
    assert labels(v) == ["sign"]


def test_cifg_cell_gradient_with_part_of_the_carried_term():
    v = wrong("cifg", "delta_c", r"\delta y^t \odot o^t \odot (1 - \tanh^2(c^t)) + \delta \bar{o}^t \odot p_o"
                                 r" + \delta c^{t+1} \odot f^{t+1}", "latex")
    (f,) = v.diagnosis
    assert f.label == "summand" and "lacks `later(delta_fbar*p_f)`" in f.text


# ---------------------------------------------------------------------------
# the user's specs


def test_mgu_mistakes():
    v = wrong(MGU, "dh_prev", "dh*(1-f) + f*(W_h.T @ dz_h_tilde)[:m]")
    (f,) = v.diagnosis
    assert f.label == "missing_path" and "`(W_f[:, 0:m]).T @ dz_f` is missing" in f.text
    v = wrong(MGU, "dh_prev", r"dh \odot (1 - f_t) + f_t \odot (W_h^T dz_{\tilde{h}})_{[0:m]}", "latex")
    assert labels(v) == ["missing_path"]
    v = wrong(MGU, "dz_f", r"\mathrm{d}f_t \odot f_t", "latex")
    assert labels(v) == ["missing_derivative"] and "f*(1 - f)" in text(v)
    v = wrong(MGU, "dW_h", "dz_h_tilde @ concat(h_prev, x).T")
    assert "`h_prev` where `f*h_prev` belongs" in text(v)


def test_janet_mistakes():
    v = wrong(JANET, "dc_prev", "dc*sigmoid(s) + U_c.T @ dz_c_tilde")
    (f,) = v.diagnosis
    assert f.label == "missing_path" and "`U_f.T @ ds` is missing" in f.text
    v = wrong(JANET, "dc_prev", r"dc \odot \sigma(s_t) + U_c^T \mathrm{d}z_{\tilde{c}_t}", "latex")
    assert labels(v) == ["missing_path"]


def test_total_is_only_for_parameter_gradients():
    with pytest.raises(DeriveError, match="not a parameter gradient"):
        verify("elman", "dz_h", "dh*(1-h**2)", total=True)
    assert verify("elman", "dW_ih", "sum_t(dz_h.T @ x)", total=True).ok


# ---------------------------------------------------------------------------
# every classic mistake, made on every quantity of the new cells


_EXPECTED = {
    "carried_state": {"carried_state"}, "no_chaining": {"no_chaining"}, "activated_twice": {"activated_twice"},
    "missing_derivative": {"missing_derivative", "parenthesis", "wrong_derivative"},
    "parenthesis": {"parenthesis", "missing_derivative"}, "time_index": {"time_index"},
    "wrong_derivative": {"wrong_derivative"}, "direct_path": {"direct_path"},
}


@pytest.mark.parametrize("preset", ["elman", "coursera_rnn", "gru", MGU])
def test_every_classic_mistake_is_caught_and_named(preset):
    from derive.verifier import mutations
    from derive.spec.pyprint import to_python
    from derive.verifier.context import load_context

    ctx = load_context(preset)
    named = total = 0
    for name in sorted(ctx.backward_names):
        if ctx.kind(name) not in ("cell", "state", "input", "param"):
            continue
        for label, _desc, expr in mutations.mutations(ctx, name):
            if label in ("sign", "missing_term"):
                continue
            v = verify(preset, name, to_python(expr))
            assert not v.ok and v.diagnosis, (name, label, to_python(expr))
            total += 1
            named += bool({f.label for f in v.diagnosis} & _EXPECTED[label])
    assert total >= 10
    assert named / total >= 0.95, (named, total)

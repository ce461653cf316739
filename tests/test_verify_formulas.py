"""derive.verifier.formula on formulas: right ones pass, and every mistake class of issue 6
is caught with a diagnosis a learner can act on, in more than one notation.

The wrong formulas are this project's own examples of each mistake, written in
each notation's names (Python and LaTeX); the diagnosis is asserted by its
label, the term it names and the words of its message.
"""

from __future__ import annotations

import math

import pytest

from derive.errors import DeriveError, ExprError
from derive.verifier.formula import verify


def labels(v):
    return [f.label for f in v.diagnosis]


def kinds(v):
    return [f.kind for f in v.diagnosis]


def text(v):
    return "\n".join(f.text for f in v.diagnosis)


# ---------------------------------------------------------------------------
# right formulas


RIGHT = [
    # the issue's own examples
    ("coursera", "dft", "(dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next)*ft*(1-ft)", "python"),
    ("coursera", "dWf", "dft @ concat.T", "python"),
    ("coursera", "da_prev", r"W_f[:, :n_a]^{T} d\gamma_f + W_u[:, :n_a]^T d\gamma_u + W_c[:, :n_a]^T dp\tilde c"
                            r" + W_o[:, :n_a]^T d\gamma_o", "latex"),
    # NumPy spellings
    ("coursera", "dWf", "np.dot(dft, np.hstack([a_prev.T, xt.T]))", "python"),
    ("coursera", "dWf", "dft @ np.concatenate([a_prev, xt], axis=0).T", "python"),
    ("coursera", "dbf", "np.sum(dft, axis=1, keepdims=True)", "python"),
    ("coursera", "dcct", "(dc_next*it + ot*(1-np.square(np.tanh(c_next)))*it*da_next)*(1-np.square(cct))", "python"),
    ("coursera", "dxt", "np.dot(Wf[:, n_a:].T, dft) + np.dot(Wi[:, n_a:].T, dit) + np.dot(Wc[:, n_a:].T, dcct)"
                        " + np.dot(Wo[:, n_a:].T, dot)", "python"),
    ("coursera", "da_next", "da + later(da_prev)", "python"),
    ("coursera", "dzy", "-y + yt_pred", "python"),
    ("coursera", "dot", "da_next * np.tanh(c_next) * Gamma_o * (1 - Gamma_o)", "python"),
    # the course's backward text, pasted
    ("coursera", "dit", r"\left(dc_{next}*\widetilde{c}^{\langle t \rangle} + \Gamma_o^{\langle t \rangle}* "
                        r"(1-\tanh^2(c_{next})) * \widetilde{c}^{\langle t \rangle} * da_{next}\right)*"
                        r"\Gamma_u^{\langle t \rangle}*\left(1-\Gamma_u^{\langle t \rangle}\right)", "latex"),
    ("coursera", "dWc", r"dp\widetilde c^{\langle t \rangle} \begin{bmatrix} a_{prev} \\ x_t\end{bmatrix}^T", "latex"),
    ("coursera", "dbc", r"\displaystyle \sum_{batch} dp\widetilde c^{\langle t \rangle}", "latex"),
    ("graves", "dz_f", r"\epsilon_s^t \odot c_{t-1} \odot f_t \odot (1 - f_t)", "latex"),
    ("graves", "dc_prev", "dc*f + W_ci*dz_i + W_cf*dz_f", "python"),
    ("graves", "dc", "dc_next + dh*o*(1 - tanh(c)**2) + W_co*dz_o", "python"),
    ("lipton", "ds", r"\frac{\partial L}{\partial h^{(t)}} \odot o(t) \odot (1 - \phi(s(t))^2) + "
                     r"\left.\frac{\partial L}{\partial s^{(t)}}\right|_{t+1}", "latex"),
    ("lipton", "dz_i", "(ds_next + dh*o*(1-tanh(s)**2))*g*i*(1-i)", "python"),
    ("nicodjimenez", "ds", "self.state.o * top_diff_h + top_diff_s", "python"),
    ("nicodjimenez", "wi_diff", "np.outer(di_input, self.xc)", "python"),
    ("nicodjimenez", "bottom_diff_h", "dxc[self.param.x_dim:]", "python"),
    ("nicodjimenez", "ds", r"o(t) \odot \frac{dL(t)}{dh(t)} + \frac{dL(t+1)}{ds(t)}", "latex"),
    ("pytorch", "dh_prev", "dz_i @ W_hi + dz_f @ W_hf + dz_g @ W_hg + dz_o @ W_ho", "python"),
    ("pytorch", "dW_ii", r"\frac{\partial L}{\partial z_{i,t}}^{\top} x_t", "latex"),
    ("tmva", "state_gradients_backward", "input_gate_gradient @ fWeightsInputGateState + forget_gradient @ U_f"
                                         " + candidate_gradient @ U_c + output_gradient @ U_o", "python"),
]


@pytest.mark.parametrize("preset,quantity,formula,syntax", RIGHT)
def test_right_formulas_pass(preset, quantity, formula, syntax):
    v = verify(preset, quantity, formula, syntax)
    assert v.ok, v.message
    assert v.status == 0
    assert v.max_rel_error <= 1e-9
    assert v.samples >= 9  # three seeds, three steps
    assert v.message.startswith("right")
    assert v.diagnosis == []


def test_elementwise_formulas_are_also_proven_symbolically():
    v = verify("coursera", "dft", "(dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next)*ft*(1-ft)")
    assert v.method == "symbolic and numeric"
    # written out through the forward equation of c_next: still an identity
    v = verify("coursera", "dc_prev", "ft*(dc_next + da_next*ot*(1 - tanh(ft*c_prev + it*cct)**2))")
    assert v.ok and v.method == "symbolic and numeric"
    # an array formula is judged by the numbers only
    v = verify("coursera", "dWf", "dft @ concat.T")
    assert v.ok and v.method == "numeric"


def test_equation_form_and_left_side():
    v = verify("coursera", "dc_prev = dc_next*ft + ot*(1-tanh(c_next)**2)*ft*da_next")
    assert v.ok and v.quantity == "dc_prev"
    v = verify("coursera", None, r"d\gamma_f^{\langle t \rangle} = dc^{\langle t \rangle} \odot c_{prev} \odot "
                                  r"\Gamma_f \odot (1 - \Gamma_f)", syntax="latex")
    assert v.ok and v.quantity == "dft"
    # a line of the seed blog's code, accumulation included
    v = verify("nicodjimenez", "self.param.wi_diff += np.outer(di_input, self.xc)")
    assert v.ok and v.quantity == "wi_diff"
    with pytest.raises(DeriveError, match="left side is `dit`"):
        verify("coursera", "dft", "dit = cct*dc*it*(1-it)")
    with pytest.raises(DeriveError, match="not a value of|forward pass"):
        verify("coursera", "ft", "dft")


def test_parameter_gradients_are_per_step_or_summed():
    v = verify("coursera", "dWo", "dot @ concat.T")
    assert v.ok
    # the seed question: where does the influence through earlier steps go?
    assert any("sum over t" in n and "da_next, dc_next" in n for n in v.notes)
    v = verify("coursera", "dWo", "sum_t(dot @ concat.T)")
    assert v.ok and v.samples == 3  # totals, one per random sequence
    v = verify("coursera", "dbo", r"\sum_{t=1}^{T} \sum_{batch} d\gamma_o", "latex")
    assert v.ok
    with pytest.raises(ExprError, match="not a sum over steps"):
        verify("coursera", "dft", "sum_t(dit)")
    with pytest.raises(ExprError, match="sum over all steps"):
        verify("coursera", "dft", "dWf[:, :n_a]")


# ---------------------------------------------------------------------------
# the mistake classes of issue 6, each in more than one notation


def test_missing_carried_cell_state_term():
    v = verify("coursera", "dft", "ot*(1-tanh(c_next)**2)*c_prev*da_next*ft*(1-ft)")
    assert not v.ok and v.status == 1
    f = v.diagnosis[0]
    assert (f.kind, f.label, str(f.term)) == ("missing_term", "carried_state", "dc_next")
    assert "dc_next term is missing" in f.text
    v = verify("graves", "dc", r"\frac{\partial \mathcal{L}}{\partial h_t} \odot o_t \odot (1 - \tanh^2(c_t))"
                               r" + W_{co} \odot \delta_\omega^t", "latex")
    assert labels(v) == ["carried_state"] and str(v.diagnosis[0].term) == "dc_next"
    v = verify("lipton", "ds", "dh*o*(1-tanh(s)**2)")
    assert labels(v) == ["carried_state"] and str(v.diagnosis[0].term) == "ds_next"
    v = verify("nicodjimenez", "ds", "self.state.o * top_diff_h")
    assert labels(v) == ["carried_state"] and str(v.diagnosis[0].term) == "top_diff_s"


def test_activation_derivative_on_one_term_only():
    # the seed formula with the parenthesis left out
    v = verify("coursera", "dft", "dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next*ft*(1-ft)")
    (f,) = v.diagnosis
    assert (f.kind, f.label, str(f.term)) == ("factor", "parenthesis", "dc_next")
    assert "lacks the factor ft*(1 - ft)" in f.text and "parenthesis" in f.text
    v = verify("coursera", "dft", r"dc_{next} \odot c_{prev} + \Gamma_o \odot (1-\tanh^2(c_{next})) \odot c_{prev}"
                                  r" \odot da_{next} \odot \Gamma_f \odot (1 - \Gamma_f)", "latex")
    assert labels(v) == ["parenthesis"]
    v = verify("nicodjimenez", "di_input", "(1. - self.state.i) * self.state.i * self.state.g * top_diff_s"
                                           " + self.state.g * self.state.o * top_diff_h")
    (f,) = v.diagnosis
    assert f.label == "parenthesis" and str(f.term) == "top_diff_h" and "i*(1 - i)" in f.text
    v = verify("graves", "dz_f", r"c_{t-1} \odot (\left.\frac{\partial \mathcal{L}}{\partial c_t}\right|_{t+1} + "
                                 r"W_{co} \odot \frac{\partial \mathcal{L}}{\partial z_{o,t}} + "
                                 r"\frac{\partial \mathcal{L}}{\partial h_t} \odot o_t \odot (1 - \tanh^2(c_t)) \odot f_t"
                                 r" \odot (1 - f_t))", "latex")
    (f,) = v.diagnosis
    assert f.label == "parenthesis" and "dc_next and dz_o terms lack the factor f*(1 - f)" in f.text


def test_derivative_of_an_already_activated_value():
    v = verify("coursera", "dft", "(dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next)*sigmoid(ft)*(1-sigmoid(ft))")
    (f,) = v.diagnosis
    assert f.label == "activated_twice" and "every term" in f.text
    assert "`ft` is already sigmoid" in f.text and "ft*(1 - ft)" in f.text
    v = verify("coursera", "dcct", r"(dc_{next} \odot \Gamma_u + \Gamma_o \odot (1-\tanh^2(c_{next})) \odot \Gamma_u"
                                   r" \odot da_{next}) \odot (1-\tanh^2(\tilde{c}))", "latex")
    assert labels(v) == ["activated_twice"] and "1 - cct**2" in text(v)
    v = verify("graves", "dz_g", "dc*i*(1-tanh(g)**2)")
    assert labels(v) == ["activated_twice"] and "`g` is already tanh" in text(v)
    v = verify("nicodjimenez", "do_input", "sigmoid(self.state.o)*(1-sigmoid(self.state.o))*do")
    assert labels(v) == ["activated_twice"]
    # sigma' applied to the gate value, as a learner writes it in LaTeX
    v = verify("coursera", "dft", r"\frac{\partial L}{\partial c^{\langle t \rangle}} \odot c^{\langle t-1 \rangle} "
                                  r"\odot \sigma'(\Gamma_f)", "latex")
    assert labels(v) == ["activated_twice"] and str(v.diagnosis[0].term) == "dc"


def test_wrong_time_index():
    v = verify("coursera", "dft", "(dc_next*c_next + ot*(1-tanh(c_next)**2)*c_next*da_next)*ft*(1-ft)")
    (f,) = v.diagnosis
    assert f.label == "time_index" and "c_next where c_prev belongs" in f.text and "every term" in f.text
    v = verify("lipton", "dz_f", r"\frac{\partial L}{\partial s^{(t)}} \odot s^{(t)} \odot f^{(t)} \odot "
                                 r"(1 - f^{(t)})", "latex")
    assert labels(v) == ["time_index"] and "s where s_prev belongs" in text(v)
    v = verify("pytorch", "dz_f", "dc*c*f*(1-f)")
    assert labels(v) == ["time_index"]
    v = verify("tmva", "forget_gradient", "cell_gradient * c * f * (1 - f)")
    assert labels(v) == ["time_index"]


def test_weight_sliced_by_rows_instead_of_columns():
    v = verify("coursera", "da_prev", "Wf[:n_a, :].T @ dft + Wi[:n_a, :].T @ dit + Wc[:n_a, :].T @ dcct"
                                      " + Wo[:n_a, :].T @ dot")
    assert not v.ok and kinds(v) == ["shape", "repair"]
    assert "(n_a + n_x, m)" in v.diagnosis[0].text and "(n_a, m)" in v.diagnosis[0].text
    assert v.diagnosis[1].label == "slice_axis" and "formula is right" in v.diagnosis[1].text
    assert "`Wf[:, 0:n_a]`" in v.diagnosis[1].text
    v = verify("nicodjimenez", "bottom_diff_h",
               "self.param.wi[self.param.x_dim:, :].T @ di_input + self.param.wf[self.param.x_dim:, :].T @ df_input"
               " + self.param.wo[self.param.x_dim:, :].T @ do_input + self.param.wg[self.param.x_dim:, :].T @ dg_input")
    assert labels(v)[-1] == "slice_axis" and "formula is right" in v.diagnosis[-1].text
    v = verify("coursera", "dxt", r"W_f[n_a:, :]^T d\gamma_f + W_u[n_a:, :]^T d\gamma_u + W_c[n_a:, :]^T "
                                  r"dp\tilde{c} + W_o[n_a:, :]^T d\gamma_o", "latex")
    assert not v.ok and v.diagnosis[0].kind == "shape"
    # the course's equation (19) pasted without its note: whole weights
    v = verify("coursera", "da_prev", r"W_f^T d\gamma_f^{\langle t \rangle} + W_u^T d\gamma_u^{\langle t \rangle} + "
                                      r"W_c^T dp\widetilde c^{\langle t \rangle} + W_o^T d\gamma_o^{\langle t \rangle}",
               "latex")
    assert labels(v)[-1] == "missing_slice" and "Wf[:, 0:n_a]" in v.diagnosis[-1].text


def test_missing_activation_derivative_in_db_or_da_prev():
    v = verify("coursera", "dbf", "np.sum(dc*c_prev, axis=1, keepdims=True)")
    (f,) = v.diagnosis
    assert f.label == "missing_derivative" and "lacks the factor ft*(1 - ft)" in f.text
    assert f.text.startswith("in the term `np.sum(")
    v = verify("coursera", "da_prev", "Wf[:, :n_a].T @ (dc*c_prev) + Wi[:, :n_a].T @ dit + Wc[:, :n_a].T @ dcct"
                                      " + Wo[:, :n_a].T @ dot")
    (f,) = v.diagnosis
    assert f.label == "missing_derivative" and "Wf[:, 0:n_a]" in f.text
    v = verify("graves", "db_i", r"\sum_{batch} \epsilon_s^t \odot g_t", "latex")
    assert labels(v) == ["missing_derivative"] and "i*(1 - i)" in text(v)
    v = verify("pytorch", "db_if", "np.sum(dc*c_prev, axis=0)")
    assert labels(v) == ["missing_derivative"]
    v = verify("nicodjimenez", "bi_diff", "di")
    assert labels(v) == ["missing_derivative"]
    v = verify("pytorch", "dh_prev", "(dc*c_prev) @ W_hf + dz_i @ W_hi + dz_g @ W_hg + dz_o @ W_ho")
    assert labels(v) == ["missing_derivative"]


def test_backward_pass_that_does_not_chain_between_steps():
    v = verify("coursera", "da_next", "da")
    (f,) = v.diagnosis
    assert f.label == "no_chaining" and "carried back from step t+1" in f.text and "da_prev" in f.text
    v = verify("graves", "dh", "dl_dh")
    assert labels(v) == ["no_chaining"]
    v = verify("lipton", "ds_next", "0")
    assert labels(v) == ["no_chaining"]
    v = verify("nicodjimenez", "top_diff_h", "diff_h")
    assert labels(v) == ["no_chaining"]


# ---------------------------------------------------------------------------
# other diagnoses


def test_right_formula_for_another_quantity():
    v = verify("coursera", "dft", "cct*dc*it*(1-it)")
    (f,) = v.diagnosis
    assert f.kind == "different_quantity" and str(f.got) == "dit"
    v = verify("graves", "dz_i", "dc*c_prev*f*(1-f)")
    assert v.diagnosis[0].kind == "different_quantity" and str(v.diagnosis[0].got) == "dz_f"


def test_term_without_its_gradient():
    v = verify("coursera", "dot", "ot*(1-ot)*tanh(c_next)")
    (f,) = v.diagnosis
    assert f.kind == "factor" and "lacks the gradient factor da_next" in f.text


def test_extra_term():
    v = verify("coursera", "dc_prev", "dc*ft + dc_next")
    assert kinds(v) == ["extra_term"] and str(v.diagnosis[0].term) == "dc_next"


def test_not_linear_in_the_gradients():
    v = verify("coursera", "dft", "dc*dc*c_prev")
    assert kinds(v) == ["not_linear"]


def test_shape_errors_point_at_the_place():
    v = verify("coursera", "dft", "Wf @ dc")
    assert not v.ok and v.diagnosis[0].kind == "shape"
    assert v.diagnosis[0].data["column"] == len("Wf ")  # under the operator
    assert "(n_a, n_a + n_x)" in v.diagnosis[0].text and "(n_a, m)" in v.diagnosis[0].text
    v = verify("coursera", "dft", "c_prev*dc*ft*(1 - ft) + Wf @ dc")
    assert v.diagnosis[0].data["column"] == len("c_prev*dc*ft*(1 - ft) + Wf ")
    assert "    c_prev*dc*ft*(1 - ft) + Wf @ dc\n" + " " * (4 + len("c_prev*dc*ft*(1 - ft) + Wf ")) + "^" \
        in v.diagnosis[0].text
    v = verify("coursera", "dWf", "concat @ dft.T")
    assert labels(v) == ["", "transposed"] and "formula is right" in v.diagnosis[1].text
    v = verify("pytorch", "dW_ii", "x.T @ dz_i")
    assert labels(v)[-1] == "transposed"
    v = verify("coursera", "dWf", "dft @ a_prev.T")
    assert "`a_prev` where `concat` belongs" in text(v)
    v = verify("coursera", "dft", r"W_f \Gamma_f", "latex")
    # the caret stands under the second factor of the product that does not fit
    assert v.diagnosis[0].kind == "shape" and v.diagnosis[0].data["column"] == len("W_f ")
    assert "(n_a, n_a + n_x)" in v.diagnosis[0].text and "(n_a, m)" in v.diagnosis[0].text


def test_unreadable_formulas_raise():
    with pytest.raises(ExprError) as exc:
        verify("coursera", "dft", "c_prev*dc*gt")
    assert exc.value.col == len("c_prev*dc*")
    with pytest.raises(ExprError, match="did you mean"):
        verify("coursera", "dft", r"\Gamma_z^{\langle t \rangle} dc", "latex")
    with pytest.raises(DeriveError, match="no gradient `dfoo`"):
        verify("coursera", "dfoo", "ft")
    with pytest.raises(ExprError, match="one equation"):
        verify("coursera", "dft = dft = ft")
    with pytest.raises(DeriveError, match="say which gradient"):
        verify("coursera", "ft*(1-ft)")
    with pytest.raises(ExprError, match="uses `dft` itself"):
        verify("coursera", "dft", "dft*1")
    assert verify("coursera", "dc_next", "later(dc_prev)").ok  # the next step's value is not the quantity itself


def test_verdict_as_json_and_for_jupyter():
    import json

    v = verify("coursera", "dft", "dc_next*c_prev + ot*(1-tanh(c_next)**2)*c_prev*da_next*ft*(1-ft)")
    d = json.loads(json.dumps(v.to_dict()))
    assert d["ok"] is False and d["quantity"] == "dft" and d["preset"] == "coursera"
    assert d["diagnosis"][0]["label"] == "parenthesis" and d["diagnosis"][0]["term"] == "dc_next"
    assert d["expected"] == "dft = c_prev*dc*ft*(1 - ft)"
    assert math.isfinite(d["max_rel_error"])
    md = v._repr_markdown_()
    assert "**wrong**" in md and r"\color{red}" in md and "$$" in md
    assert r"\color{red}" in v._repr_latex_()
    right = verify("coursera", "dft", "c_prev*dc*ft*(1-ft)")
    assert "**right**" in right._repr_markdown_()
    assert right.to_dict()["diagnosis"] == []


@pytest.mark.parametrize("preset", ["coursera", "graves", "lipton", "nicodjimenez", "pytorch", "tmva"])
def test_the_engines_own_equations_are_right_in_both_syntaxes(preset):
    """Every backward equation, as pyprint and derive.spec.latex print it, is judged right."""
    import derive
    from derive.spec.latex import to_latex
    from derive.spec.pyprint import to_python

    d = derive.derive(preset)
    for eq in d.backward:
        name = str(eq.lhs)
        for text, syntax in ((to_python(eq.rhs), "python"), (to_latex(eq.rhs, d.cell), "latex")):
            v = verify(preset, name, text, syntax)
            assert v.ok, (preset, name, syntax, text, v.message)


_EXPECTED_LABELS = {
    "carried_state": {"carried_state"}, "no_chaining": {"no_chaining"}, "activated_twice": {"activated_twice"},
    "missing_derivative": {"missing_derivative", "parenthesis"}, "parenthesis": {"parenthesis", "missing_derivative"},
    "time_index": {"time_index"}, "missing_term": {""}, "wrong_derivative": {"wrong_derivative"},
}


@pytest.mark.parametrize("preset", ["coursera", "lipton", "tmva"])
def test_every_classic_mistake_made_on_every_quantity_is_caught_and_named(preset):
    """The engine's formula of each cell quantity with each classic mistake made
    (mutations.mutations), printed as a learner would write it: never judged
    right, always diagnosed, and (almost always) labelled with its class."""
    from derive.verifier import mutations
    from derive.spec.pyprint import to_python
    from derive.verifier.context import load_context

    ctx = load_context(preset)
    named = total = 0
    for name in sorted(ctx.backward_names):
        if ctx.kind(name) not in ("cell", "state", "input", "param") or ctx.derivation.kind(name) == "book":
            continue
        for label, _desc, expr in mutations.mutations(ctx, name):
            if label == "sign":
                continue
            v = verify(preset, name, to_python(expr))
            assert not v.ok and v.diagnosis, (name, label, to_python(expr))
            total += 1
            got = {f.label for f in v.diagnosis}
            named += bool(got & _EXPECTED_LABELS[label]) or label == "missing_term"
    assert total > 50
    assert named / total >= 0.95, (named, total)

"""The Derivation reads like a textbook: named adjoints, derivatives in stored
forward values, closed forms in forward values and upstream gradients only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sympy as sp

import derive
from derive.spec import ops
from derive.numeric import evaluate as ev


def test_presets_are_the_nine_lstms_and_six_other_cells():
    assert derive.presets() == ["cifg", "coursera", "coursera_rnn", "cs231n", "cs231n_rnn", "elman", "elman_relu",
                                "graves", "gru", "lipton", "lstm_proj", "minchar", "nicodjimenez", "pytorch", "tmva"]


def test_an_unnamed_intermediate_is_written_out_where_a_gradient_needs_it():
    # torch's GRU: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) never names W_hn h + b_hn,
    # but dL/dz_r needs its value
    d = derive.derive("gru")
    hn = sp.Symbol("b_hn") + ops.matmul(sp.Symbol("h_prev"), ops.transpose(sp.Symbol("W_hn")))
    r, dz_n = sp.symbols("r dz_n")
    assert sp.expand(d["dz_r"] - dz_n * hn * r * (1 - r)) == 0
    assert not any(str(s).startswith("_") for eq in d.backward for s in eq.rhs.free_symbols)


def test_the_coupled_gate_reaches_the_forget_gate_with_a_minus_sign():
    d = derive.derive("cifg")  # i = 1 - f: dL/df gets c_prev*dc from f itself and -dL/di through i
    c_prev, delta_c, delta_i = sp.symbols("c_prev delta_c delta_i")
    assert sp.expand(d["delta_f"] - (c_prev * delta_c - delta_i)) == 0
    assert "dW_i" not in d.names()


def test_a_users_named_value_whose_adjoint_fans_out_is_named_once():
    d = derive.derive(Path(__file__).resolve().parent.parent / "examples" / "janet.toml")  # s = U_f c + W_f x + b_f feeds two sigmoids
    assert "ds" in d.names()
    for name in ("dU_f", "dW_f", "db_f"):
        assert sp.Symbol("ds") in d[name].free_symbols


def test_the_elman_cell_is_one_tanh():
    d = derive.derive("elman")
    dh, h = sp.symbols("dh h")
    assert sp.expand(d["dz_h"] - dh * (1 - h**2)) == 0
    assert isinstance(d["dW_hh"], sp.Sum)


def test_coursera_names_are_the_notebooks():
    d = derive.derive("coursera")
    names = set(d.names())
    assert {"dft", "dit", "dcct", "dot", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo",
            "da_prev", "dc_prev", "dxt", "dWy", "dby"} <= names
    assert all(isinstance(eq, sp.Eq) for eq in d.forward + d.backward)
    assert [str(eq.lhs) for eq in d.forward][:2] == ["concat", "ft"]


def test_nicodjimenez_names_are_the_codes():
    d = derive.derive("nicodjimenez")
    assert {"ds", "do", "di", "dg", "df", "di_input", "bottom_diff_h", "bottom_diff_s", "bottom_diff_x",
            "wi_diff", "bi_diff"} <= set(d.names())
    # the blog's line: ds = self.state.o * top_diff_h + top_diff_s
    o, top_h, top_s = sp.symbols("o top_diff_h top_diff_s")
    assert sp.expand(d["ds"] - (o * top_h + top_s)) == 0


def test_graves_gives_the_books_names():
    d = derive.derive("graves")
    for book in ("epsilon_c", "epsilon_s", "delta_iota", "delta_phi", "delta_omega"):
        assert book in d.names()
        assert d.kind(book) == "book"


def test_activation_derivatives_are_in_stored_forward_values():
    d = derive.derive("coursera")
    ft, cct, it = sp.symbols("ft cct it")
    assert d["dft"].has(ft * (1 - ft)) or sp.factor(d["dft"]).has(1 - ft)
    assert d["dcct"].has(1 - cct**2)
    for eq in d.backward:  # never σ(z) or tanh of a pre-activation in a result
        assert not eq.rhs.has(ops.sigmoid)
        assert not any(str(s).startswith("z_") for s in eq.rhs.free_symbols)


def test_intermediate_adjoints_are_named_not_expanded():
    d = derive.derive("coursera")
    dc = sp.Symbol("dc")
    for name in ("dft", "dit", "dcct", "dc_prev"):
        assert dc in d[name].free_symbols, name  # written through dc, not re-expanded
    assert d.kind("dc") == "cell"


def test_cell_state_gradient_carries_the_term_from_t_plus_1():
    d = derive.derive("coursera")
    assert sp.Symbol("dc_next") in d["dc"].free_symbols
    assert d["dc_next"] == ops.later(sp.Symbol("dc_prev"))
    assert d["da_next"] == sp.Symbol("da") + ops.later(sp.Symbol("da_prev"))


def test_parameter_gradients_sum_over_time():
    d = derive.derive("coursera")
    for name in ("dWf", "dbf", "dWy"):
        assert isinstance(d[name], sp.Sum)
        assert d[name].limits[0][0] == sp.Symbol("t", integer=True, positive=True)


def test_closed_form_is_in_forward_values_and_upstream_gradients_only():
    for preset in derive.presets():
        d = derive.derive(preset)
        cell = d.cell
        allowed = {n for n, s in cell.symbols.items() if s.role != "grad"} | set(d.cell_inputs) | set(cell.dims)
        for name in d.names():
            if d.kind(name) in ("cell", "param", "state", "input"):
                free = {str(s) for s in d.closed_form(name).free_symbols} - {"t", "T"}
                assert free <= allowed, (preset, name, free - allowed)


def test_closed_form_agrees_numerically_with_the_named_form():
    d = derive.derive("coursera")
    seq = ev.random_sequence(d, {"n_x": 3, "n_a": 4, "n_y": 2, "m": 5}, 1, np.random.default_rng(0))
    env = ev.forward(d, seq)[0]
    env.update(da_next=np.random.default_rng(1).normal(size=(4, 5)), dc_next=np.random.default_rng(2).normal(size=(4, 5)))
    for eq in d.backward[6:]:  # the cell's equations, after the head and the glue
        rhs = eq.rhs.function if isinstance(eq.rhs, sp.Sum) else eq.rhs
        env[str(eq.lhs)] = ev.evaluate(rhs, env, dims=seq.dims)
    closed = d.closed_form("dft")
    np.testing.assert_allclose(ev.evaluate(closed, env, dims=seq.dims), env["dft"], rtol=1e-12)


def test_the_course_formula_for_dft_is_the_closed_form():
    d = derive.derive("coursera")
    s = {n: sp.Symbol(n) for n in "dc_next c_prev ot c_next da_next ft".split()}
    course = (s["dc_next"] * s["c_prev"] + s["ot"] * (1 - sp.tanh(s["c_next"]) ** 2) * s["c_prev"] * s["da_next"]) * s["ft"] * (1 - s["ft"])
    assert sp.expand(d.closed_form("dft") - course) == 0


def test_upstream_loss_drops_the_head():
    d = derive.derive("coursera", loss="upstream")
    assert "dWy" not in d.names() and "dzy" not in d.names()
    assert d["da_next"] == sp.Symbol("da") + ops.later(sp.Symbol("da_prev"))


def test_repr_latex_uses_the_notation():
    tex = derive.derive("coursera")._repr_latex_()
    assert tex.startswith("$$") and r"\Gamma_f^{\langle t \rangle}" in tex and r"\odot" in tex


def test_unknown_quantity_suggests():
    d = derive.derive("coursera")
    try:
        d.equation("dfT")
    except KeyError as exc:
        assert "dft" in str(exc)
    else:
        raise AssertionError("no error")

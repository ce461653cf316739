"""derive.codegen.render: the fused plan read off a derivation, the NumPy printer, the
structure of every emitted module, and cells outside the bundled presets (a
fused module when the cell fits the frame, the unfused one when it does not)."""

from __future__ import annotations

import ast
import importlib.util
import textwrap

import numpy as np
import pytest
import sympy as sp

import derive
from derive.derivation import regenerate_command
from derive.numeric import evaluate
from derive.spec import ops
from derive.cli.main import main as cli_main
from derive.codegen.render import CodegenError, assign_into, fused_module, numpy_text, plan, render_module
from test_generated_reference import (
    CELLS,
    GENERATED,
    finite_differences,
    generated_grads,
    generated_loss,
    module,
    sequence,
    short,
    torch,
    torch_grads,
    worst,
)


def _spec(head: str, states: str = "", more: str = "") -> str:
    """The spec text of a cell below: ``head`` (its name, forward equations,
    dims and symbols), then the state h as a recurrent link (adjoint dh) and
    any other ``states``, the upstream loss dl_dh on h, then ``more``."""
    return (
        textwrap.dedent(head)
        + '[[recurrent]]\nout = "h"\nprev = "h_prev"\ngrad = "dh"\n'
        + textwrap.dedent(states)
        + '[loss]\nkind = "upstream"\non = "h"\nexternal = "dl_dh"\n'
        + textwrap.dedent(more)
    )


CIFG_ROWS = _spec('''\
    # A coupled input-forget gate LSTM: the input gate is 1 - f, batch in rows. Not a preset.
    name = "cifg_rows"
    title = "Coupled input-forget gate LSTM"
    layout = "rows"
    batch = "B"
    forward = [
      { eq = "f = sigmoid(x @ W_f.T + h_prev @ U_f.T + b_f)" },
      { eq = "g = tanh(x @ W_g.T + h_prev @ U_g.T + b_g)" },
      { eq = "o = sigmoid(x @ W_o.T + h_prev @ U_o.T + b_o)" },
      { eq = "c = f * c_prev + (1 - f) * g" },
      { eq = "h = o * tanh(c)" },
    ]
    [dims]
    D = "input size"
    H = "hidden size"
    B = "batch size"
    [symbols]
    x      = { role = "input", shape = ["B", "D"] }
    h_prev = { role = "state", shape = ["B", "H"] }
    c_prev = { role = "state", shape = ["B", "H"] }
    W_f    = { role = "param", shape = ["H", "D"] }
    U_f    = { role = "param", shape = ["H", "H"] }
    b_f    = { role = "param", shape = ["H"] }
    W_g    = { role = "param", shape = ["H", "D"] }
    U_g    = { role = "param", shape = ["H", "H"] }
    b_g    = { role = "param", shape = ["H"] }
    W_o    = { role = "param", shape = ["H", "D"] }
    U_o    = { role = "param", shape = ["H", "H"] }
    b_o    = { role = "param", shape = ["H"] }
    ''', states='''\
    [[recurrent]]
    out = "c"
    prev = "c_prev"
    grad = "dc_next"
    ''', more='''\
    [adjoints]
    c = "dc"
    ''')

# torch.nn.GRU's equations with the batch in columns and the recurrent part of
# the new gate written as a value of its own: a sum of one product, which the
# reset gate multiplies.
GRU_COLUMNS = _spec('''\
    name = "gru_columns"
    title = "GRU, torch.nn.GRU's equations, batch in columns"
    layout = "columns"
    batch = "B"
    forward = [
      { eq = "r = sigmoid(W_ir @ x + b_ir + W_hr @ h_prev + b_hr)" },
      { eq = "z = sigmoid(W_iz @ x + b_iz + W_hz @ h_prev + b_hz)" },
      { eq = "hn = W_hn @ h_prev + b_hn" },
      { eq = "n = tanh(W_in @ x + b_in + r * hn)" },
      { eq = "h = (1 - z) * n + z * h_prev" },
    ]
    [dims]
    D = "input size"
    H = "hidden size"
    B = "batch size"
    [symbols]
    x      = { role = "input", shape = ["D", "B"] }
    h_prev = { role = "state", shape = ["H", "B"] }
    W_ir = { role = "param", shape = ["H", "D"] }
    W_iz = { role = "param", shape = ["H", "D"] }
    W_in = { role = "param", shape = ["H", "D"] }
    W_hr = { role = "param", shape = ["H", "H"] }
    W_hz = { role = "param", shape = ["H", "H"] }
    W_hn = { role = "param", shape = ["H", "H"] }
    b_ir = { role = "param", shape = ["H", 1] }
    b_iz = { role = "param", shape = ["H", 1] }
    b_in = { role = "param", shape = ["H", 1] }
    b_hr = { role = "param", shape = ["H", 1] }
    b_hz = { role = "param", shape = ["H", 1] }
    b_hn = { role = "param", shape = ["H", 1] }
    ''')

# An Elman network with a residual connection: the input is also added
# elementwise, so its gradient is not one product after the loop. The fused
# frame cannot express it; the cell gets the unfused module.
RESIDUAL = _spec('''\
    name = "residual"
    title = "Residual Elman network"
    layout = "columns"
    batch = "B"
    forward = [
      { eq = "h = tanh(W @ x + U @ h_prev + b) + x" },
    ]
    [dims]
    H = "hidden size (= input size)"
    B = "batch size"
    [symbols]
    x      = { role = "input", shape = ["H", "B"] }
    h_prev = { role = "state", shape = ["H", "B"] }
    W      = { role = "param", shape = ["H", "H"] }
    U      = { role = "param", shape = ["H", "H"] }
    b      = { role = "param", shape = ["H", 1] }
    ''')


# The output gate sees the forget gate (a peephole on a gate): its weight's
# gradient reads the gates after the loop, so their slots cannot take the
# adjoints (a buffer of its own, dgates).
GATE_PEEPHOLE = _spec('''\
    name = "gatepeep"
    title = "A two-gate cell whose output gate sees the forget gate"
    layout = "rows"
    batch = "B"
    forward = [
      { eq = "f = sigmoid(x @ W_f.T + h_prev @ U_f.T + b_f)" },
      { eq = "o = sigmoid(x @ W_o.T + h_prev @ U_o.T + p * f + b_o)" },
      { eq = "h = o * f + (1 - f) * h_prev" },
    ]
    [dims]
    D = "input size"
    H = "hidden size"
    B = "batch size"
    [symbols]
    x      = { role = "input", shape = ["B", "D"] }
    h_prev = { role = "state", shape = ["B", "H"] }
    W_f    = { role = "param", shape = ["H", "D"] }
    U_f    = { role = "param", shape = ["H", "H"] }
    b_f    = { role = "param", shape = ["H"] }
    W_o    = { role = "param", shape = ["H", "D"] }
    U_o    = { role = "param", shape = ["H", "H"] }
    b_o    = { role = "param", shape = ["H"] }
    p      = { role = "param", shape = ["H"] }
    ''')

# An Elman network with a learned output scale s: ds = Σ dh ⊙ tanh(...) reads
# the step's dh, which the fused loop does not keep: the unfused module.
SCALED = _spec('''\
    name = "scaled"
    title = "Elman network with a learned output scale"
    layout = "columns"
    batch = "B"
    forward = [
      { eq = "h = tanh(W @ x + U @ h_prev + b) * s" },
    ]
    [dims]
    D = "input size"
    H = "hidden size"
    B = "batch size"
    [symbols]
    x      = { role = "input", shape = ["D", "B"] }
    h_prev = { role = "state", shape = ["H", "B"] }
    W      = { role = "param", shape = ["H", "D"] }
    U      = { role = "param", shape = ["H", "H"] }
    b      = { role = "param", shape = ["H", 1] }
    s      = { role = "param", shape = ["H", 1] }
    ''')


# A minimal gated unit with an output gate: h_prev feeds f and o, f * h_prev
# feeds h_tilde between them. h_prev's slots are not one block, so its
# products are added into them, and its adjoints gathered, block by block.
MGU_OUTPUT_GATE = _spec('''\
    name = "mgu_output_gate"
    title = "A minimal gated unit with an output gate"
    layout = "columns"
    batch = "B"
    forward = [
      { eq = "f = sigmoid(W_f @ concat(h_prev, x) + b_f)" },
      { eq = "h_tilde = tanh(W_h @ concat(f * h_prev, x) + b_h)" },
      { eq = "o = sigmoid(W_o @ concat(h_prev, x) + b_o)" },
      { eq = "h = o * ((1 - f) * h_prev + f * h_tilde)" },
    ]
    [dims]
    n = "input size"
    m = "hidden units"
    B = "batch size"
    [symbols]
    x       = { role = "input", shape = ["n", "B"] }
    h_prev  = { role = "state", shape = ["m", "B"] }
    W_f     = { role = "param", shape = ["m", "m + n"] }
    b_f     = { role = "param", shape = ["m", 1] }
    W_h     = { role = "param", shape = ["m", "m + n"] }
    b_h     = { role = "param", shape = ["m", 1] }
    W_o     = { role = "param", shape = ["m", "m + n"] }
    b_o     = { role = "param", shape = ["m", 1] }
    ''')


def _load(text: str, name: str):
    mod = type(importlib)(name)
    exec(compile(text, name, "exec"), mod.__dict__)
    return mod


def _spec(tmp_path, text: str, name: str) -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, "utf-8")
    return str(path)


# ---------------------------------------------------------------------------
# the plan


def test_plan_of_pytorch_uses_the_stacks_as_the_fused_weights():
    p = plan(derive.derive("pytorch"))
    assert [s.name for s in p.slots] == ["i", "f", "g", "o"] and all(s.kind == "gate" for s in p.slots)
    assert [(s.name, s.role, s.weight) for s in p.sources] == [("x", "input", "weight_ih"), ("h_prev", "state", "weight_hh")]
    assert all(s.direct == (0, p.total) for s in p.sources)
    assert all(s.extra == 0 and s.adjoint == sp.Symbol(s.grad) for s in p.slots)


def test_plan_of_coursera_splits_the_concatenation_by_columns():
    p = plan(derive.derive("coursera"))
    xt, a_prev = p.sources
    assert (xt.name, a_prev.name) == ("xt", "a_prev")
    assert [(b.param, str(b.lo), str(b.hi)) for b in a_prev.parts] == [(w, "0", "n_a") for w in ("Wf", "Wi", "Wc", "Wo")]
    assert [(b.param, str(b.lo), str(b.hi)) for b in xt.parts] == [(w, "n_a", "n_a + n_x") for w in ("Wf", "Wi", "Wc", "Wo")]
    assert p.absorbed == {"concat"}


def test_plan_of_graves_keeps_the_peepholes_as_elementwise_terms():
    p = plan(derive.derive("graves"))
    extras = {g.name: str(g.extra) for g in p.gates}
    assert extras == {"i": "W_ci*c_prev", "f": "W_cf*c_prev", "g": "0", "o": "W_co*c"}


def test_plan_of_gru_gives_the_reset_gates_sum_a_slot_of_its_own():
    """n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)): the inner sum is kept
    (dz_r needs it) and its adjoint is dz_n ⊙ r. The slots are ordered n | r z |
    that sum, so that both operands' slots are one block each: weight_hh is used
    as torch stores it, weight_ih's rows are stacked n, r, z."""
    p = plan(derive.derive("gru"))
    assert [(s.name, s.kind) for s in p.slots] == [("n", "gate"), ("r", "gate"), ("z", "gate"), ("W_hn_h_prev", "inner")]
    inner = p.slots[-1]
    assert str(inner.adjoint) == "dz_n*r" and inner.biases == ["b_hn"]
    assert str(p.slots[0].extra) == "W_hn_h_prev*r"
    x, h = p.sources
    assert (x.weight, x.stack, str(x.direct)) == ("W_x", None, "(0, 3*hidden_size)")
    assert [b.param for b in x.parts] == ["W_in", "W_ir", "W_iz"]
    assert (h.weight, str(h.direct)) == ("weight_hh", "(hidden_size, 4*hidden_size)")


def test_plan_of_mgu_reads_the_product_of_a_value_of_the_step():
    """h̃ = tanh(W_h [f ⊙ h_prev; x] + b_h): f ⊙ h_prev is a source of its own,
    one product per step once f is known."""
    p = plan(derive.derive("examples/mgu.toml"))
    assert [(s.var, s.role) for s in p.sources] == [("x", "input"), ("h_prev", "state"), ("f_h_prev", "value")]
    assert [str(s.direct) for s in p.sources[1:]] == ["(0, m)", "(m, 2*m)"]


def test_plan_of_janet_keeps_the_named_sum_s():
    p = plan(derive.derive("examples/janet.toml"))
    assert [(s.name, s.kind, str(s.adjoint)) for s in p.slots] == [("s", "value", "ds"), ("c_tilde", "gate", "dz_c_tilde")]


# the stabilised sLSTM is unfused: the pre-activation of its gate i is i~ - m, not a sum of weight products
FUSED = [c for c in CELLS if short(c) != "slstm"]


@pytest.mark.parametrize("name", FUSED, ids=short)
def test_every_module_has_the_fused_structure(name):
    """One matrix product per step-source in each loop (one for an LSTM, two for
    the MGU); the input product before the forward loop; the weight and input
    gradients after the backward loop, one product each."""
    text = (GENERATED / f"{name}.py").read_text("utf-8") if name in derive.presets() else fused_module(derive.derive(name))
    tree = ast.parse(text)
    funcs = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    p = plan(derive.derive(name))
    per_step = sum(s.role != "input" for s in p.sources) + len(p.readouts)  # a readout: one product per step
    inputs = sum(s.role == "input" for s in p.sources)

    def products(nodes):  # a @ b, or np.matmul(a, b, out=...)
        return sum((isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult))
                   or (isinstance(n, ast.Call) and ast.unparse(n.func) == "np.matmul")
                   for node in nodes for n in ast.walk(node))

    for fname, before, inside in (("_forward", inputs, per_step), ("_bptt", 0, per_step),
                                  ("_bptt_truncated", 0, per_step)):
        body = funcs[fname].body
        (loop,) = [n for n in body if isinstance(n, ast.For)]
        assert products([loop]) == inside, fname
        assert products(body[:body.index(loop)]) == before, fname
    assert products(funcs["_backward"].body) == len(p.sources) + inputs + len(p.readouts)


def test_a_projection_is_a_readout_of_the_fused_module():
    """torch's projection h = m @ W_hr.T: one product per step forward, dh kept per
    step, dW_hr one product after the loop (not the unfused module)."""
    p = plan(derive.derive("lstm_proj"))
    assert [(r.out, r.param, r.operand, r.grad) for r in p.readouts] == [("h", "W_hr", "m", "dh")]
    text = (GENERATED / "lstm_proj.py").read_text("utf-8")
    assert "def _bptt(" in text and "unfused" not in text.lower()
    assert "dW_hr = dh_seq.reshape(T * N, proj_size).T @ m_seq.reshape(T * N, hidden_size)" in text


# ---------------------------------------------------------------------------
# the printer


def test_numpy_printer_spells_numpy():
    x, y, c = sp.symbols("x y c")
    assert numpy_text(ops.sigmoid(x) * sp.tanh(y)) == "sigmoid(x)*np.tanh(y)"
    assert numpy_text(ops.later(y) + x) == "x + y"
    assert numpy_text(x / 2) == "x/2"
    assert numpy_text(sp.Rational(1, 2) + x) == "0.5 + x"
    assert numpy_text(ops.softmax(x, sp.Integer(0))) == "softmax(x, axis=0)"
    assert numpy_text(x * c, {"c": "c_seq[t + 1]"}) == "c_seq[t + 1]*x"
    assert numpy_text(ops.matmul(ops.transpose(x), y)) == "x.T @ y"


def test_stacked_printing_slices_features_from_the_end():
    """Truncated BPTT prints the same statements for arrays with a leading axis of ages."""
    x, w = sp.symbols("x W")
    sliced = ops.take(ops.matmul(ops.transpose(w), x), sp.Integer(0), sp.Integer(0), sp.Symbol("m"))
    assert numpy_text(sliced) == "(W.T @ x)[0:m]"
    assert numpy_text(sliced, feature_from_end=1) == "(W.T @ x)[..., 0:m, :]"
    assert numpy_text(ops.matmul(ops.transpose(w), x), vector_right={"x"}) == "x @ W"


def test_assign_into_writes_the_outermost_operation_into_the_array():
    x, y, z = sp.symbols("x y z")
    assert assign_into("c", x * y + z, "out[t]") == ["c = np.add(z, x*y, out=out[t])"]
    assert assign_into("h", x * sp.tanh(y), "out[t]") == ["h = np.multiply(x, np.tanh(y), out=out[t])"]
    assert assign_into("g", sp.tanh(y), "o") == ["g = np.tanh(y, out=o)"]
    assert assign_into("v", x, "o") == ["v = o", "v[...] = x"]


# ---------------------------------------------------------------------------
# cells that are no preset


def _check_against_references(spec: str, mod, T: int = 4) -> None:
    d = derive.derive(spec, loss="upstream")
    seq = evaluate.random_sequence(d, {k: 2 + (i % 2) for i, k in enumerate(d.cell.dims)}, T,
                                   np.random.default_rng(0))
    _, ref = evaluate.run(d, seq)
    grads = generated_grads(spec, seq, module_=mod)
    err, key = worst(grads, ref)
    assert err <= 1e-12, (key, err)
    fd = finite_differences(lambda s: generated_loss(spec, s, module_=mod), seq, d)
    err, key = worst(grads, fd)
    assert err <= 1e-10, (key, err)
    if torch is None:  # the references above still hold
        return
    for k in (1, 2, T):
        _, ref = torch_grads(spec, seq, truncate=k)
        err, key = worst(generated_grads(spec, seq, module_=mod, truncate=k), ref)
        assert err <= 1e-10, (k, key, err)


def test_a_users_cell_gets_a_correct_fused_module(tmp_path):
    spec = _spec(tmp_path, CIFG_ROWS, "cifg_rows")
    text = render_module(derive.derive(spec))
    assert text == render_module(derive.derive(spec)) and "def _bptt_truncated(" in text
    _check_against_references(spec, _load(text, "cifg_rows"))


def test_a_users_gru_in_columns_gets_a_fused_module(tmp_path):
    """The named value hn = W_hn h_prev + b_hn is a slot of its own."""
    spec = _spec(tmp_path, GRU_COLUMNS, "gru_columns")
    text = fused_module(derive.derive(spec))
    assert "hn = " in text
    _check_against_references(spec, _load(text, "gru_columns"))


def test_a_states_scattered_slots_are_added_and_gathered_block_by_block(tmp_path):
    spec = _spec(tmp_path, MGU_OUTPUT_GATE, "mgu_output_gate")
    p = plan(derive.derive(spec))
    h_prev = p.source("h_prev")
    assert h_prev.direct is None and [tuple(map(str, r)) for r in h_prev.runs] == [("0", "m", "0", "m"),
                                                                                   ("2*m", "3*m", "m", "2*m")]
    text = fused_module(derive.derive(spec))
    assert "z[2*m:3*m] += z_h_prev[m:2*m]" in text and "dgates_h_prev_t[m:2*m] = dz[2*m:3*m]" in text
    _check_against_references(spec, _load(text, "mgu_output_gate"))


def test_a_gradient_that_reads_the_gates_after_the_loop_keeps_them(tmp_path):
    spec = _spec(tmp_path, GATE_PEEPHOLE, "gatepeep")
    text = fused_module(derive.derive(spec))
    assert "dgates = np.empty_like(gates)" in text and "gates_all[:, 0:H]" in text
    _check_against_references(spec, _load(text, "gatepeep"))


def test_a_gradient_that_reads_a_step_adjoint_gets_the_unfused_module(tmp_path):
    spec = _spec(tmp_path, SCALED, "scaled")
    with pytest.raises(CodegenError, match=r"`ds = .*` reads a value the fused loop does not keep for after it"):
        fused_module(derive.derive(spec))
    text = render_module(derive.derive(spec))
    assert "(unfused)" in text.split("\n")[2]
    _check_against_references(spec, _load(text, "scaled"))


def test_a_cell_outside_the_frame_gets_the_unfused_module_with_the_reason(tmp_path, capsys):
    spec = _spec(tmp_path, RESIDUAL, "residual")
    with pytest.raises(CodegenError, match="no fused NumPy module"):
        fused_module(derive.derive(spec))
    text = render_module(derive.derive(spec))
    assert "(unfused)" in text.split("\n")[2] and "Why it is not fused:" in text and "sympy" not in text
    _check_against_references(spec, _load(text, "residual"))
    assert cli_main(["numpy", spec]) == 0
    captured = capsys.readouterr()
    assert "writing the unfused module" in captured.err and captured.out == text


@pytest.mark.parametrize("name", ["gru", "pytorch", "examples/mgu.toml"])
def test_the_unfused_module_is_right_for_fused_cells_too(name):
    """The fallback is not only for strange cells: on cells the fused frame
    handles, it gives the same gradients (full and truncated)."""
    from derive.codegen.unfused import unfused_module

    spec = name if name in derive.presets() else str(GENERATED.parent / name)
    mod = _load(unfused_module(derive.derive(spec), "x: no fused NumPy module: a test"), f"unfused_{short(name)}")
    seq = sequence(spec, {k: 2 for k in derive.derive(spec).cell.dims}, 4, seed=2)
    for k in (None, 1, 3):
        err, key = worst(generated_grads(spec, seq, module_=mod, truncate=k),
                         generated_grads(spec, seq, module_=module(spec), truncate=k))
        assert err <= 1e-12, (k, key, err)


def test_build_spec_writes_the_users_module(tmp_path):
    spec = _spec(tmp_path, CIFG_ROWS, "cifg_rows")
    out = tmp_path / "gen"
    assert cli_main(["build", "--out", str(out), "--spec", str(spec)]) == 0
    d = derive.derive(str(spec))
    assert (out / "cifg_rows.py").read_text("utf-8") == render_module(d, regenerate_command(d.cell, out))


@pytest.mark.parametrize("example", ["mgu", "janet"])
def test_build_spec_writes_a_fused_module_for_the_examples(example, tmp_path):
    spec = str(GENERATED.parent / "examples" / f"{example}.toml")
    out = tmp_path / "gen"
    assert cli_main(["build", "--out", str(out), "--spec", spec]) == 0
    text = (out / f"{example}.py").read_text("utf-8")
    d = derive.derive(spec)
    assert text == fused_module(d, regenerate_command(d.cell, out)) and "rnn_forward" in text

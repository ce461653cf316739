"""generated/<preset>.py and the examples' modules: the emitted NumPy modules.

Each is proven through its public API against torch autograd (torch.nn.LSTM,
GRU and RNN themselves for `pytorch`, `gru` and `elman`; the cell's forward
written in torch, by hand or interpreted from the spec, for the others),
against seven-point finite differences in float64, and against the engine's
reference interpreter; on random sizes (hypothesis) including T = 1 and a
batch of 1; relative error at most 1e-10 in float64 and 1e-4 in float32.
Truncated BPTT is proven against torch autograd of BPTT(k) itself: each
step's loss differentiated through a forward restarted k-1 steps before it
from the detached state.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import derive
from derive.cli import build
from derive.numeric import evaluate
from derive.cli.main import main as cli_main
from derive.codegen.render import HEADER, render_module
from test_generated_reference import (
    CELLS,
    EXAMPLES,
    GENERATED,
    ROOT,
    dims_for,
    expected,
    finite_differences,
    generated_grads,
    generated_loss,
    module,
    needs_torch,
    rel_err,
    sequence,
    short,
    torch,
    torch_grads,
    worst,
)

PRESETS = derive.presets()
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# the files


@pytest.mark.parametrize("name", PRESETS)
def test_committed_module_is_what_the_build_renders(name):
    """`lstm-derive build --check` for the .py files: run `lstm-derive build` and commit."""
    path = GENERATED / f"{name}.py"
    assert path.exists(), f"{path} is missing: run `lstm-derive build` and commit"
    text = render_module(derive.derive(name))
    assert path.read_text("utf-8") == text, f"{path} is stale: run `lstm-derive build` and commit"
    assert build.stale({f"{name}.py": text}, GENERATED) == []


@pytest.mark.parametrize("name", PRESETS)
def test_module_text_is_generated_pure_numpy_and_deterministic(name):
    text = (GENERATED / f"{name}.py").read_text("utf-8")
    assert text.splitlines()[0] == HEADER
    assert "sympy" not in text
    assert "import numpy as np" in text
    import sympy

    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d\d:\d\d:\d\d", text)  # no date, no time
    for version in (sympy.__version__, np.__version__, "__version__"):  # no library version
        assert version not in text
    # every derived statement of the loops cites its equation
    assert "# " in text and " = sum_t(" in text
    assert "(unfused)" not in text.splitlines()[2], "every preset fits the fused frame"


def _repeated_sentences(doc: str) -> list[str]:
    """The sentences of a docstring (over 40 characters) that it says more than once."""
    sentences = [re.sub(r"\s+", " ", s).strip() for s in re.split(r"(?<=[.:])\s+(?=[A-Z])", doc)]
    return sorted({s for s in sentences if len(s) > 40 and sentences.count(s) > 1})


@pytest.mark.parametrize("path", sorted(GENERATED.glob("*.py")), ids=lambda p: p.name)
def test_module_docstring_says_each_sentence_once(path):
    """A template block and the block it overrides can both say a sentence (the twins'
    docstrings said their shape errors twice)."""
    doc = ast.get_docstring(ast.parse(path.read_text("utf-8")))
    assert doc and not _repeated_sentences(doc), f"{path.name}: said twice: {_repeated_sentences(doc)}"


def test_repeated_sentences_are_found():
    doc = "One short. Arguments of the wrong shape raise a ValueError.\nArguments of the wrong shape raise\na ValueError."
    assert _repeated_sentences(doc) == ["Arguments of the wrong shape raise a ValueError."]
    assert _repeated_sentences("Arguments of the wrong shape raise a ValueError. Once.") == []


@pytest.mark.parametrize("name", ["graves", "gru", "examples/mgu.toml"])
def test_rendering_is_byte_identical_across_processes(name):
    """Same bytes from a fresh interpreter with another hash seed."""
    name = str(ROOT / name) if name.endswith(".toml") else name
    code = ("import sys, derive; from derive.codegen.render import render_module; "
            f"sys.stdout.write(render_module(derive.derive({name!r})))")
    outs = set()
    for seed in ("1", "12345"):
        env = {"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
        outs.add(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                                check=True).stdout)
    assert outs == {render_module(derive.derive(name))}


def test_modules_import_without_sympy(tmp_path):
    """The presets' modules, the examples' and an unfused one."""
    from derive.codegen.unfused import unfused_module

    paths = [str(GENERATED / f"{name}.py") for name in PRESETS]
    for spec in EXAMPLES:
        paths.append(str(tmp_path / f"{short(spec)}.py"))
        (tmp_path / f"{short(spec)}.py").write_text(render_module(derive.derive(spec)), "utf-8")
    (tmp_path / "unfused.py").write_text(unfused_module(derive.derive("gru"), "a test"), "utf-8")
    paths.append(str(tmp_path / "unfused.py"))
    code = ("import sys, importlib.util; sys.modules['sympy'] = None\n"
            "for k, path in enumerate(%r):\n"
            "    spec = importlib.util.spec_from_file_location(f'm{k}', path)\n"
            "    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print('ok')") % (paths,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_build_check_exits_1_with_a_diff_when_a_module_is_stale(tmp_path, capsys):
    assert cli_main(["build", "--out", str(tmp_path)]) == 0
    assert cli_main(["build", "--check", "--out", str(tmp_path)]) == 0
    stale = tmp_path / "pytorch.py"
    stale.write_text(stale.read_text("utf-8").replace("dh_prev = dz @ weight_hh", "dh_prev = dz @ weight_ih"), "utf-8")
    capsys.readouterr()
    assert cli_main(["build", "--check", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"a/{stale}" in out and "-        dh_prev = dz @ weight_ih" in out and "+        dh_prev = dz @ weight_hh" in out


def test_cli_numpy_writes_one_module(tmp_path):
    target = tmp_path / "lstm.py"
    assert cli_main(["numpy", "tmva", "-o", str(target)]) == 0
    assert target.read_text("utf-8") == (GENERATED / "tmva.py").read_text("utf-8")
    assert cli_main(["numpy", "no-such-cell"]) == 2


# ---------------------------------------------------------------------------
# the proofs


sizes = st.tuples(
    st.sampled_from(CELLS),
    st.integers(1, 5),  # T
    st.integers(1, 4),  # input size
    st.integers(1, 4),  # hidden size
    st.integers(1, 3),  # batch
    st.integers(0, 2**16),  # seed
)


@needs_torch
@FAST
@given(sizes)
@example(("pytorch", 1, 1, 1, 1, 0))
@example(("coursera", 1, 2, 3, 1, 1))
@example(("graves", 1, 3, 2, 1, 2))
@example(("lipton", 1, 1, 2, 1, 3))
@example(("nicodjimenez", 1, 2, 2, 1, 4))
@example(("tmva", 1, 2, 2, 1, 5))
@example(("gru", 1, 1, 1, 1, 6))
@example(("elman", 1, 2, 1, 1, 7))
@example(("coursera_rnn", 1, 2, 2, 1, 8))
@example(("cifg", 1, 1, 2, 1, 9))
@example((EXAMPLES[0], 1, 2, 2, 1, 10))
@example((EXAMPLES[1], 1, 2, 1, 1, 11))
def test_generated_equals_torch_autograd_float64(case):
    name, T, d_in, hidden, batch, seed = case
    seq = sequence(name, dims_for(name, d_in, hidden, batch), T, seed)
    _, ref = torch_grads(name, seq)
    err, key = worst(generated_grads(name, seq), expected(name, ref))
    assert err <= 1e-10, (short(name), key, err)


@needs_torch
@FAST
@given(sizes)
@example(("pytorch", 1, 3, 2, 1, 0))
@example(("coursera", 1, 2, 2, 1, 0))
@example(("gru", 3, 2, 3, 2, 0))
@example(("coursera_rnn", 2, 2, 2, 1, 0))
def test_generated_float32_is_float32_and_close_to_torch_float64(case):
    name, T, d_in, hidden, batch, seed = case
    seq = sequence(name, dims_for(name, d_in, hidden, batch), T, seed)
    for arrays in [seq.params, seq.initial, *seq.steps]:  # the same numbers in both dtypes
        for k in arrays:
            arrays[k] = np.asarray(arrays[k], np.float32).astype(np.float64)
    _, ref = torch_grads(name, seq)
    grads = generated_grads(name, seq, dtype=np.float32)
    assert {np.asarray(v).dtype for v in grads.values()} == {np.dtype(np.float32)}
    err, key = worst(grads, expected(name, ref))
    assert err <= 1e-4, (short(name), key, err)


@pytest.mark.parametrize("name", CELLS, ids=short)
def test_generated_equals_finite_differences(name):
    seq = sequence(name, dims_for(name, 2, 3, 2), 3, seed=11)
    d = derive.derive(name, loss="upstream")
    fd = finite_differences(lambda s: generated_loss(name, s), seq, d)
    err, key = worst(generated_grads(name, seq), expected(name, fd))
    assert err <= 1e-10, (short(name), key, err)


@FAST
@given(sizes)
def test_generated_equals_the_reference_interpreter(case):
    name, T, d_in, hidden, batch, seed = case
    seq = sequence(name, dims_for(name, d_in, hidden, batch), T, seed)
    _, ref = evaluate.run(derive.derive(name, loss="upstream"), seq)
    err, key = worst(generated_grads(name, seq), expected(name, ref))
    assert err <= 1e-12, (short(name), key, err)


# ---------------------------------------------------------------------------
# truncated BPTT


@pytest.mark.parametrize("name", CELLS, ids=short)
def test_truncate_at_or_beyond_T_is_full_bptt(name):
    seq = sequence(name, dims_for(name, 2, 3, 2), 4, seed=13)
    full = generated_grads(name, seq)
    for k in (4, 5, 100):
        grads = generated_grads(name, seq, truncate=k)
        assert all(np.array_equal(grads[key], full[key]) for key in full), k


def _finals(name, seq, seed=0):
    """Gradients on the final states, for the APIs that take them."""
    rng = np.random.default_rng(seed)
    if name in ("coursera", "coursera_rnn"):
        return None
    return {l.prev: rng.standard_normal(seq.initial[l.prev].shape) for l in derive.derive(name).cell.links}


truncations = st.tuples(
    st.sampled_from(CELLS),
    st.integers(2, 6),  # T
    st.integers(1, 6),  # k
    st.integers(1, 3),  # hidden size
    st.integers(1, 2),  # batch
    st.integers(0, 2**16),
)


@needs_torch
@FAST
@given(truncations)
@example(("gru", 5, 2, 3, 2, 0))
@example(("pytorch", 4, 1, 2, 1, 1))
@example(("coursera", 5, 3, 2, 2, 2))
@example(("coursera_rnn", 4, 2, 2, 2, 3))
@example(("nicodjimenez", 4, 2, 2, 1, 4))
@example((EXAMPLES[0], 5, 2, 2, 2, 5))
def test_truncated_equals_torch_autograd_of_bptt_k(case):
    """BPTT(k) against torch: each ℓ_t through the steps t-k+1..t only, from
    the detached state there; the final states' gradients count as a loss of
    the last step."""
    name, T, k, hidden, batch, seed = case
    seq = sequence(name, dims_for(name, 2, hidden, batch), T, seed)
    finals = _finals(name, seq, seed)
    _, ref = torch_grads(name, seq, truncate=k, finals=finals)
    err, key = worst(generated_grads(name, seq, truncate=k, finals=finals), expected(name, ref))
    assert err <= 1e-10, (short(name), k, key, err)


@needs_torch
@pytest.mark.parametrize("name", ["gru", "cifg", "coursera_rnn"])
def test_truncated_float32_is_close_to_torch_float64(name):
    seq = sequence(name, dims_for(name, 3, 4, 2), 6, seed=17)
    for arrays in [seq.params, seq.initial, *seq.steps]:
        for key in arrays:
            arrays[key] = np.asarray(arrays[key], np.float32).astype(np.float64)
    _, ref = torch_grads(name, seq, truncate=2)
    grads = generated_grads(name, seq, dtype=np.float32, truncate=2)
    assert {np.asarray(v).dtype for v in grads.values()} == {np.dtype(np.float32)}
    err, key = worst(grads, expected(name, ref))
    assert err <= 1e-4, (name, key, err)


@pytest.mark.parametrize("name", ["pytorch", "graves", "coursera_rnn", "gru"])
def test_truncated_modules_agree_with_the_engines_truncated_run(name):
    """The modules and derive.numeric.evaluate.run(..., truncate=k) share one meaning of k."""
    seq = sequence(name, dims_for(name, 2, 3, 2), 5, seed=19)
    for k in (1, 2, 4):
        _, ref = evaluate.run(derive.derive(name, loss="upstream"), seq, truncate=k)
        err, key = worst(generated_grads(name, seq, truncate=k), expected(name, ref))
        assert err <= 1e-12, (name, k, key, err)


def test_truncate_1_carries_no_gradient_between_steps():
    """k = 1: the initial state receives only the first step's loss, and each
    step's input gradient is that of its own loss alone."""
    name = "gru"
    seq = sequence(name, dims_for(name, 2, 3, 2), 3, seed=23)
    grads = generated_grads(name, seq, truncate=1)
    for t in range(3):
        only = sequence(name, dims_for(name, 2, 3, 2), 3, seed=23)
        for u, step in enumerate(only.steps):
            if u != t:
                step["doutput"] = np.zeros_like(step["doutput"])
        alone = generated_grads(name, only)
        assert rel_err(grads[("dx", t)], alone[("dx", t)]) <= 1e-12
        if t == 0:
            assert rel_err(grads["dh_prev"], alone["dh_prev"]) <= 1e-12


@pytest.mark.parametrize(("truncate", "message"), [
    (0, "truncate must be >= 1 (1: no gradient carried between steps; None: full BPTT), not 0"),
    (-3, "truncate must be >= 1"),
    (2.0, "truncate must be None or an int >= 1 (the number of steps the gradient of each step's loss flows back "
          "through), not 2.0"),
    (True, "truncate must be None or an int >= 1"),
    ("2", "truncate must be None or an int >= 1"),
])
def test_a_bad_truncate_is_a_value_error_and_keeps_the_cache(truncate, message):
    gen = module("gru")
    x, h0, weights = _gru_case()
    output, _, cache = gen.gru_forward(x, h0, *weights)
    with pytest.raises(ValueError) as info:
        gen.gru_backward(np.ones_like(output), cache, truncate=truncate)
    assert str(info.value).startswith(message)
    gen.gru_backward(np.ones_like(output), cache, truncate=np.int64(2))  # the cache still serves
    x, a0, p, _ = _course()
    _, _, caches = module("coursera_rnn").rnn_forward(x, a0, p)
    with pytest.raises(ValueError, match="truncate must be"):
        module("coursera_rnn").rnn_backward(np.ones_like(a0)[:, :, None].repeat(x.shape[2], 2), caches, truncate=0)
    with pytest.raises(TypeError):
        gen.gru_backward(np.ones_like(output), cache, None, 2)  # keyword only


# ---------------------------------------------------------------------------
# pytorch, gru, elman: torch.nn's own APIs


def _torch_case(T=4, N=3, D=5, H=6, seed=0, dtype=np.float64, gates=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N, D)).astype(dtype)
    h0, c0 = (rng.standard_normal((1, N, H)).astype(dtype) for _ in range(2))
    weights = [(0.4 * rng.standard_normal(s)).astype(dtype)
               for s in ((gates * H, D), (gates * H, H), (gates * H,), (gates * H,))]
    return x, h0, c0, weights


def _gru_case(**kw):
    x, h0, _, weights = _torch_case(gates=3, **kw)
    return x, h0, weights


def _torch_module_grads(net, x, initial, weights, d_output, d_finals):
    with torch.no_grad():
        for p, w in zip((net.weight_ih_l0, net.weight_hh_l0, net.bias_ih_l0, net.bias_hh_l0), weights):
            p.copy_(torch.from_numpy(w))
    leaves = [torch.tensor(a, requires_grad=True) for a in (x, *initial)]
    out, finals = net(leaves[0], tuple(leaves[1:]) if len(leaves) > 2 else leaves[1])
    finals = finals if isinstance(finals, tuple) else (finals,)
    loss = (out * torch.from_numpy(d_output)).sum()
    for f, g in zip(finals, d_finals):
        loss = loss + (f * torch.from_numpy(g)).sum()
    loss.backward()
    grads = {"x": leaves[0].grad, "weight_ih": net.weight_ih_l0.grad, "weight_hh": net.weight_hh_l0.grad,
             "bias_ih": net.bias_ih_l0.grad, "bias_hh": net.bias_hh_l0.grad}
    for name, leaf in zip(("h0", "c0"), leaves[1:]):
        grads[name] = leaf.grad
    return out, finals, grads


@needs_torch
def test_pytorch_module_is_torch_nn_lstm_with_final_state_gradients():
    gen = module("pytorch")
    x, h0, c0, weights = _torch_case()
    rng = np.random.default_rng(1)
    output, (h_n, c_n), cache = gen.lstm_forward(x, h0, c0, *weights)
    d_output, dh_n, dc_n = rng.standard_normal(output.shape), rng.standard_normal(h_n.shape), rng.standard_normal(c_n.shape)
    grads = gen.lstm_backward(d_output, cache, dh_n=dh_n, dc_n=dc_n)
    assert list(grads) == ["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    net = torch.nn.LSTM(x.shape[2], h0.shape[2]).to(torch.float64)
    out_t, (hn_t, cn_t), ref = _torch_module_grads(net, x, (h0, c0), weights, d_output, (dh_n, dc_n))
    assert rel_err(output, out_t.detach().numpy()) <= 1e-12
    assert rel_err(h_n, hn_t.detach().numpy()) <= 1e-12 and rel_err(c_n, cn_t.detach().numpy()) <= 1e-12
    for key, value in ref.items():
        assert grads[key].shape == tuple(value.shape)
        assert rel_err(grads[key], value.numpy()) <= 1e-10, key
    assert grads["bias_ih"] is not grads["bias_hh"]


@needs_torch
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_gru_module_is_torch_nn_gru(dtype, tol):
    """gru_forward / gru_backward against torch.nn.GRU itself, its weights
    copied in: outputs, final state, and every gradient torch gives."""
    gen = module("gru")
    x, h0, weights = _gru_case(T=5, N=3, D=4, H=6, seed=3, dtype=dtype)
    rng = np.random.default_rng(2)
    output, h_n, cache = gen.gru_forward(x, h0, *weights)
    assert output.dtype == h_n.dtype == dtype and output.shape == (5, 3, 6) and h_n.shape == (1, 3, 6)
    d_output, dh_n = rng.standard_normal(output.shape), rng.standard_normal(h_n.shape)
    grads = gen.gru_backward(d_output.astype(dtype), cache, dh_n=dh_n.astype(dtype))
    assert list(grads) == ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert {g.dtype for g in grads.values()} == {np.dtype(dtype)}
    as64 = lambda a: np.asarray(a, np.float32).astype(np.float64) if dtype == np.float32 else a  # noqa: E731
    net = torch.nn.GRU(4, 6).to(torch.float64)
    out_t, (hn_t,), ref = _torch_module_grads(net, as64(x), (as64(h0),), [as64(w) for w in weights],
                                             as64(d_output.astype(dtype)), (as64(dh_n.astype(dtype)),))
    assert rel_err(output, out_t.detach().numpy()) <= tol and rel_err(h_n, hn_t.detach().numpy()) <= tol
    for key, value in ref.items():
        assert grads[key].shape == tuple(value.shape)
        assert rel_err(grads[key], value.numpy()) <= tol, key
    assert grads["bias_ih"] is not grads["bias_hh"]


@needs_torch
@pytest.mark.parametrize("name, nonlinearity", [("elman", "tanh"), ("elman_relu", "relu")])
def test_elman_module_is_torch_nn_rnn(name, nonlinearity):
    gen = module(name)
    x, h0, _, weights = _torch_case(T=6, N=2, D=3, H=5, seed=4, gates=1)
    rng = np.random.default_rng(5)
    output, h_n, cache = gen.rnn_forward(x, h0, *weights)
    d_output, dh_n = rng.standard_normal(output.shape), rng.standard_normal(h_n.shape)
    grads = gen.rnn_backward(d_output, cache, dh_n=dh_n)
    assert list(grads) == ["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    net = torch.nn.RNN(3, 5, nonlinearity=nonlinearity).to(torch.float64)
    out_t, (hn_t,), ref = _torch_module_grads(net, x, (h0,), weights, d_output, (dh_n,))
    assert rel_err(output, out_t.detach().numpy()) <= 1e-12 and rel_err(h_n, hn_t.detach().numpy()) <= 1e-12
    for key, value in ref.items():
        assert rel_err(grads[key], value.numpy()) <= 1e-10, key


@pytest.mark.parametrize(("arg", "bad", "message"), [
    ("x", np.zeros((4, 3)), "x: expected shape (T, N, input_size), got (4, 3)"),
    ("h0", np.zeros((1, 2, 6)), "h0: expected shape (1, N, hidden_size) = (1, 3, hidden_size), got (1, 2, 6)"),
    ("c0", np.zeros((1, 3, 5)), "c0: expected shape (1, N, hidden_size) = (1, 3, 6), got (1, 3, 5)"),
    ("weight_ih", np.zeros((24, 4)), "weight_ih: expected shape (4*hidden_size, input_size) = (24, 5), got (24, 4)"),
    ("bias_hh", np.zeros(23), "bias_hh: expected shape (4*hidden_size,) = (24,), got (23,)"),
])
def test_pytorch_bad_shapes_name_argument_expected_and_received(arg, bad, message):
    gen = module("pytorch")
    x, h0, c0, weights = _torch_case()
    args = dict(zip(["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], [x, h0, c0, *weights]))
    args[arg] = bad
    with pytest.raises(ValueError) as info:
        gen.lstm_forward(**args)
    assert str(info.value) == message


@pytest.mark.parametrize(("arg", "bad", "message"), [
    ("weight_hh", np.zeros((18, 5)), "weight_hh: expected shape (3*hidden_size, hidden_size) = (18, 6), got (18, 5)"),
    ("bias_ih", np.zeros(24), "bias_ih: expected shape (3*hidden_size,) = (18,), got (24,)"),
])
def test_gru_bad_shapes_name_argument_expected_and_received(arg, bad, message):
    gen = module("gru")
    x, h0, weights = _gru_case()
    args = dict(zip(["x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], [x, h0, *weights]))
    args[arg] = bad
    with pytest.raises(ValueError) as info:
        gen.gru_forward(**args)
    assert str(info.value) == message
    output, _, cache = gen.gru_forward(x, h0, *weights)
    with pytest.raises(ValueError, match=r"dh_n: expected shape \(1, N, hidden_size\) = \(1, 3, 6\), got \(3, 6\)"):
        gen.gru_backward(np.zeros_like(output), cache, dh_n=np.zeros((3, 6)))


@pytest.mark.parametrize("name", ["pytorch", "gru", "elman", "elman_relu"])
def test_a_cache_serves_one_backward_pass(name):
    gen = module(name)
    x, h0, c0, weights = _torch_case(gates={"pytorch": 4, "gru": 3, "elman": 1, "elman_relu": 1}[name])
    prefix = {"pytorch": "lstm", "gru": "gru"}.get(name, "rnn")
    forward, backward = getattr(gen, f"{prefix}_forward"), getattr(gen, f"{prefix}_backward")
    output, _, cache = forward(x, h0, c0, *weights) if name == "pytorch" else forward(x, h0, *weights)
    backward(np.ones_like(output), cache, truncate=2)
    with pytest.raises(ValueError, match="cache: already used by a backward pass"):
        backward(np.ones_like(output), cache)


def test_pytorch_backward_checks_its_gradient_shapes():
    gen = module("pytorch")
    x, h0, c0, weights = _torch_case()
    output, _, cache = gen.lstm_forward(x, h0, c0, *weights)
    with pytest.raises(ValueError, match=r"d_output: expected shape \(T, N, hidden_size\) = \(4, 3, 6\), got \(4, 3, 5\)"):
        gen.lstm_backward(np.zeros((4, 3, 5)), cache)
    with pytest.raises(ValueError, match=r"dh_n: expected shape"):
        gen.lstm_backward(np.zeros_like(output), cache, dh_n=np.zeros((3, 6)))


@pytest.mark.parametrize("name", CELLS, ids=short)
def test_stable_at_huge_pre_activations(name):
    """|z| = 1e4: no overflow warning, no NaN, forward and backward, full and truncated, in both dtypes.
    (An underflow to 0 is allowed: the stabilised sLSTM's exp(i~ - m) is 0 there, as it should be.)"""
    seq = sequence(name, dims_for(name, 2, 3, 2), 3, seed=3)
    for arrays in [seq.params, *seq.steps]:
        for k in arrays:
            arrays[k] = np.sign(arrays[k]) * 1e4
    for dtype in (np.float64, np.float32):
        for truncate in (None, 2):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with np.errstate(all="raise", under="ignore"):
                    grads = generated_grads(name, seq, dtype=dtype, truncate=truncate)
            assert all(np.all(np.isfinite(v)) for v in grads.values())


def test_integer_input_computes_in_float64_and_float32_stays_float32():
    gen = module("pytorch")
    x, h0, c0, weights = _torch_case(dtype=np.float32)
    output, (h_n, c_n), cache = gen.lstm_forward(x, h0, c0, *weights)
    assert output.dtype == h_n.dtype == c_n.dtype == np.float32
    grads = gen.lstm_backward(np.ones(output.shape, np.float64), cache)  # a float64 gradient does not promote
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    output, _, _ = gen.lstm_forward(np.ones((2, 1, 5), int), h0[:, :1].astype(int), c0[:, :1].astype(int),
                                    *[w.astype(int) for w in weights])
    assert output.dtype == np.float64


# ---------------------------------------------------------------------------
# coursera and coursera_rnn: the assignment's APIs


def _course(seed=0, n_x=3, n_a=5, m=4, n_y=2, T=6, lstm=False):
    rng = np.random.default_rng(seed)
    p = {}
    if lstm:
        for k in "fico":
            p["W" + k] = 0.5 * rng.standard_normal((n_a, n_a + n_x))
            p["b" + k] = 0.5 * rng.standard_normal((n_a, 1))
        p["Wy"], p["by"] = rng.standard_normal((n_y, n_a)), rng.standard_normal((n_y, 1))
    else:
        p["Wax"], p["Waa"] = 0.5 * rng.standard_normal((n_a, n_x)), 0.5 * rng.standard_normal((n_a, n_a))
        p["ba"] = 0.5 * rng.standard_normal((n_a, 1))
        p["Wya"], p["by"] = rng.standard_normal((n_y, n_a)), rng.standard_normal((n_y, 1))
    return rng.standard_normal((n_x, m, T)), rng.standard_normal((n_a, m)), p, rng


def test_coursera_has_the_assignments_api():
    gen = module("coursera")
    x, a0, p, rng = _course(lstm=True)
    n_x, m, T = x.shape
    n_a, n_y = a0.shape[0], p["Wy"].shape[0]
    a, y, c, caches = gen.lstm_forward(x, a0, p)
    assert a.shape == c.shape == (n_a, m, T) and y.shape == (n_y, m, T)
    assert np.allclose(y.sum(axis=0), 1.0)
    step_caches, x_cached = caches
    assert x_cached is x and len(step_caches) == T
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters) = step_caches[0]
    assert np.array_equal(a_prev, a0) and np.array_equal(c_prev, np.zeros_like(a0)) and np.array_equal(xt, x[:, :, 0])
    assert all(v.shape == (n_a, m) for v in (a_next, c_next, ft, it, cct, ot))

    # the sequence is the cell, step after step
    a_t, c_t = a0, np.zeros_like(a0)
    for t in range(T):
        a_t, c_t, y_t, cache = gen.lstm_cell_forward(x[:, :, t], a_t, c_t, p)
        assert len(cache) == 10
        assert rel_err(a_t, a[:, :, t]) <= 1e-14 and rel_err(y_t, y[:, :, t]) <= 1e-14

    da = rng.standard_normal((n_a, m, T))
    grads = gen.lstm_backward(da, caches)
    assert sorted(grads) == sorted(["dx", "da0", "dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"])
    assert grads["dx"].shape == x.shape and grads["da0"].shape == a0.shape
    assert grads["dWf"].shape == p["Wf"].shape and grads["dbf"].shape == (n_a, 1)

    # lstm_backward is lstm_cell_backward, step after step (the notebook's own loop)
    da_prevt, dc_prevt = np.zeros((n_a, m)), np.zeros((n_a, m))
    total = {k: 0 for k in ("dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo")}
    for t in reversed(range(T)):
        g = gen.lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, step_caches[t])
        assert sorted(g) == sorted(["dxt", "da_prev", "dc_prev", *total])
        assert rel_err(g["dxt"], grads["dx"][:, :, t]) <= 1e-12
        da_prevt, dc_prevt = g["da_prev"], g["dc_prev"]
        for k in total:
            total[k] = total[k] + g[k]
    assert rel_err(da_prevt, grads["da0"]) <= 1e-12
    for k in total:
        assert rel_err(total[k], grads[k]) <= 1e-12, k


def test_coursera_rnn_has_the_assignments_api():
    """Part 1 of the notebook: rnn_cell_forward / rnn_forward / rnn_cell_backward /
    rnn_backward, their caches and keys; rnn_backward is the notebook's loop of
    rnn_cell_backward; truncate=k is that loop with each da[:, :, t] carried k steps."""
    gen = module("coursera_rnn")
    x, a0, p, rng = _course(seed=1)
    n_x, m, T = x.shape
    n_a, n_y = a0.shape[0], p["Wya"].shape[0]
    a, y_pred, caches = gen.rnn_forward(x, a0, p)
    assert a.shape == (n_a, m, T) and y_pred.shape == (n_y, m, T) and np.allclose(y_pred.sum(axis=0), 1.0)
    step_caches, x_cached = caches
    assert x_cached is x and len(step_caches) == T
    a_next, a_prev, xt, parameters = step_caches[0]
    assert np.array_equal(a_prev, a0) and np.array_equal(xt, x[:, :, 0]) and set(parameters) == set(p)
    a_t = a0
    for t in range(T):
        a_t, yt, cache = gen.rnn_cell_forward(x[:, :, t], a_t, p)
        assert len(cache) == 4
        assert rel_err(a_t, a[:, :, t]) <= 1e-14 and rel_err(yt, y_pred[:, :, t]) <= 1e-14
        assert rel_err(a_t, np.tanh(p["Wax"] @ x[:, :, t] + p["Waa"] @ cache[1] + p["ba"])) <= 1e-14

    da = rng.standard_normal((n_a, m, T))
    for truncate in (None, 2):
        grads = gen.rnn_backward(da, caches, truncate=truncate)
        assert list(grads) == ["dx", "da0", "dWax", "dWaa", "dba"]
        assert grads["dx"].shape == x.shape and grads["da0"].shape == a0.shape and grads["dba"].shape == (n_a, 1)
        # the notebook's loop; BPTT(k): each da[:, :, t] carried through k steps only
        k = truncate or T
        total = {key: 0 for key in ("dWax", "dWaa", "dba")}
        dx, da0 = np.zeros_like(x), np.zeros_like(a0)
        for t in range(T):
            da_prevt = da[:, :, t]
            for u in range(t, max(t - k, -1), -1):
                g = gen.rnn_cell_backward(da_prevt, step_caches[u])
                assert list(g) == ["dxt", "da_prev", "dWax", "dWaa", "dba"]
                dx[:, :, u] += g["dxt"]
                for key in total:
                    total[key] = total[key] + g[key]
                da_prevt = g["da_prev"]
            if t - k < 0:
                da0 += da_prevt
        assert rel_err(dx, grads["dx"]) <= 1e-12 and rel_err(da0, grads["da0"]) <= 1e-12
        for key in total:
            assert rel_err(total[key], grads[key]) <= 1e-12, (truncate, key)


def test_coursera_cell_backward_accepts_a_learners_cache():
    """A cache the learner's own lstm_cell_forward / rnn_cell_forward built (plain arrays, a plain dict)."""
    gen = module("coursera")
    x, a0, p, rng = _course(seed=2, T=1, lstm=True)
    xt, c_prev = x[:, :, 0], rng.standard_normal(a0.shape)
    a_next, c_next, _, cache = gen.lstm_cell_forward(xt, a0, c_prev, p)
    learner = tuple(np.array(v) if isinstance(v, np.ndarray) else v for v in cache[:-1]) + (dict(p),)
    da_next, dc_next = rng.standard_normal(a0.shape), rng.standard_normal(a0.shape)
    assert all(rel_err(u, v) == 0 for u, v in zip(gen.lstm_cell_backward(da_next, dc_next, cache).values(),
                                                    gen.lstm_cell_backward(da_next, dc_next, learner).values()))
    rnn = module("coursera_rnn")
    x, a0, p, rng = _course(seed=3, T=1)
    a_next, _, cache = rnn.rnn_cell_forward(x[:, :, 0], a0, p)
    learner = (np.tanh(p["Wax"] @ x[:, :, 0] + p["Waa"] @ a0 + p["ba"]), a0.copy(), x[:, :, 0].copy(), dict(p))
    da_next = rng.standard_normal(a0.shape)
    for u, v in zip(rnn.rnn_cell_backward(da_next, cache).values(), rnn.rnn_cell_backward(da_next, learner).values()):
        assert rel_err(u, v) <= 1e-14


def test_coursera_bad_parameters_name_the_key():
    gen = module("coursera")
    x, a0, p, _ = _course(lstm=True)
    bad = dict(p, Wc=np.zeros((5, 7)))
    with pytest.raises(ValueError, match=r'parameters\["Wc"\]: expected shape \(n_a, n_a \+ n_x\) = \(5, 8\), got \(5, 7\)'):
        gen.lstm_forward(x, a0, bad)
    with pytest.raises(ValueError, match=r"parameters: expected a dict with the key `bo`"):
        gen.lstm_forward(x, a0, {k: v for k, v in p.items() if k != "bo"})
    with pytest.raises(ValueError, match=r"a0: expected shape \(n_a, m\) = \(n_a, 4\), got \(5, 3\)"):
        gen.lstm_forward(x, a0[:, :3], p)
    rnn = module("coursera_rnn")
    x, a0, p, _ = _course()
    with pytest.raises(ValueError, match=r'parameters\["Waa"\]: expected shape \(n_a, n_a\) = \(5, 5\), got \(5, 3\)'):
        rnn.rnn_forward(x, a0, dict(p, Waa=np.zeros((5, 3))))
    with pytest.raises(ValueError, match=r"parameters: expected a dict with the key `Wya`"):
        rnn.rnn_cell_forward(x[:, :, 0], a0, {k: v for k, v in p.items() if k != "Wya"})


def test_generic_api_checks_params_and_states():
    gen = module("graves")
    seq = sequence("graves", dims_for("graves", 2, 3, 2), 3, seed=0)
    xs = np.stack([s["x"] for s in seq.steps])
    with pytest.raises(ValueError, match=r'params\["W_co"\]: expected shape \(H, 1\) = \(3, 1\), got \(3,\)'):
        gen.lstm_forward(xs, dict(seq.params, W_co=np.zeros(3)))
    with pytest.raises(ValueError, match=r"c0: expected shape \(H, B\) = \(3, 2\), got \(2, 3\)"):
        gen.lstm_forward(xs, seq.params, None, np.zeros((2, 3)))
    h, (h_T, c_T), cache = gen.lstm_forward(xs, seq.params)  # zero initial states by default
    assert h.shape == (3, 3, 2) and np.array_equal(h[-1], h_T)
    with pytest.raises(ValueError, match=r"dl_dh: expected shape \(T, H, B\) = \(3, 3, 2\), got \(3, 2, 2\)"):
        gen.lstm_backward(np.zeros((3, 2, 2)), cache)


def test_generic_api_of_a_one_state_cell_is_rnn_forward():
    """cifg carries y and c (lstm_*); the MGU carries h alone (rnn_*, the final state not a tuple)."""
    assert module("cifg").__all__ == ["lstm_forward", "lstm_backward"]
    mgu = module(EXAMPLES[0])
    assert mgu.__all__ == ["rnn_forward", "rnn_backward"]
    seq = sequence(EXAMPLES[0], dims_for(EXAMPLES[0], 2, 3, 2), 3, seed=0)
    h, h_T, cache = mgu.rnn_forward(np.stack([s["x"] for s in seq.steps]), seq.params)
    assert np.array_equal(h[-1], h_T)

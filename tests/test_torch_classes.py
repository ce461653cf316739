"""generated/{pytorch,gru,elman}.py's classes LSTM, GRU and RNN against torch.nn.

Each class is built with torch's arguments, loads a torch module's
state_dict() and must give torch's output, final states and, through
``backward``, the gradients autograd gives for a random linear loss on the
output and the final states: every combination of num_layers, bidirectional,
batch_first, bias, proj_size (LSTM) and nonlinearity (RNN), with and without
per-sequence lengths (torch: pack_padded_sequence(..., enforce_sorted=False)
and pad_packed_sequence), in float64 to 1e-10; a sampled subset in float32 to
1e-4. Sizes are small and cycle through T = 1 and batch 1.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

import derive

if os.environ.get("CI") == "true":
    import torch
else:
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install '.[test]'")

from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

GENERATED = Path(__file__).resolve().parent.parent / "generated"
D_IN, HIDDEN, PROJ = 3, 4, 2
SIZES = [(4, 3), (1, 3), (5, 1), (3, 2), (1, 1)]  # (T, N), cycled through the cases


def _load(name):
    spec = importlib.util.spec_from_file_location(f"classes_{name}", GENERATED / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = {"LSTM": _load("pytorch").LSTM, "GRU": _load("gru").GRU, "RNN": _load("elman").RNN}


def _cases():
    cases = []
    for kind in ("LSTM", "GRU", "RNN"):
        extras = {"LSTM": [{"proj_size": 0}, {"proj_size": PROJ}], "GRU": [{}],
                  "RNN": [{"nonlinearity": "tanh"}, {"nonlinearity": "relu"}]}[kind]
        for layers, bidirectional, batch_first, bias, extra, packed in itertools.product(
                (1, 2, 3), (False, True), (False, True), (True, False), extras, (False, True)):
            options = dict(num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias, **extra)
            cases.append((kind, options, packed))
    return [(k, o, p, SIZES[i % len(SIZES)], i) for i, (k, o, p) in enumerate(cases)]


CASES = _cases()


def _id(case):
    kind, options, packed, (T, N), _ = case
    text = "-".join(f"{k}={v}" for k, v in options.items())
    return f"{kind}-{text}-".replace("=", "") + f"{'lengths' if packed else 'full'}-T{T}N{N}"


def compare(kind, options, packed, T, N, seed, dtype, tol):
    rng = np.random.default_rng(seed)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    torch.manual_seed(seed)
    theirs = getattr(torch.nn, kind)(D_IN, HIDDEN, **options).to(tdtype)
    ours = MODULES[kind](D_IN, HIDDEN, **options)
    ours.load_state_dict(theirs.state_dict())  # torch tensors, as np.asarray takes them
    directions = 2 if options["bidirectional"] else 1
    out_size = options.get("proj_size") or HIDDEN
    layers = options["num_layers"] * directions
    state_sizes = [out_size, HIDDEN] if kind == "LSTM" else [HIDDEN]
    batch_first = options["batch_first"]
    x = rng.standard_normal((N, T, D_IN) if batch_first else (T, N, D_IN)).astype(dtype)
    given = seed % 2 == 0  # hx given, or None (torch: zeros)
    hx = [(rng.standard_normal((layers, N, s)) if given else np.zeros((layers, N, s))).astype(dtype)
          for s in state_sizes]
    lengths = rng.integers(1, T + 1, size=N) if packed else None
    grad_out = rng.standard_normal((N, T, out_size * directions) if batch_first else
                                   (T, N, out_size * directions)).astype(dtype)
    grad_finals = [rng.standard_normal(h.shape).astype(dtype) for h in hx]

    x_t = torch.tensor(x, requires_grad=True)
    hx_t = [torch.tensor(h, requires_grad=True) for h in hx]
    hx_arg = tuple(hx_t) if kind == "LSTM" else hx_t[0]
    if packed:
        seqs = pack_padded_sequence(x_t, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        out_p, finals_t = theirs(seqs, hx_arg)
        out_t, _ = pad_packed_sequence(out_p, batch_first=batch_first, total_length=T)
    else:
        out_t, finals_t = theirs(x_t, hx_arg)
    finals_t = list(finals_t) if kind == "LSTM" else [finals_t]
    loss = (out_t * torch.tensor(grad_out)).sum() + sum((f * torch.tensor(g)).sum()
                                                       for f, g in zip(finals_t, grad_finals))
    loss.backward()

    out, finals = ours(x, (tuple(hx) if kind == "LSTM" else hx[0]) if given else None, lengths=lengths)
    finals = list(finals) if kind == "LSTM" else [finals]
    assert out.dtype == dtype
    check = lambda a, b, what: np.testing.assert_allclose(a, b.detach().numpy(), rtol=tol, atol=tol, err_msg=what)  # noqa: E731
    check(out, out_t, "output")
    for f, f_t in zip(finals, finals_t):
        check(f, f_t, "final state")
    grads = ours.backward(grad_out, *grad_finals)
    expected = {"input": x_t.grad, "h0": hx_t[0].grad, **({"c0": hx_t[1].grad} if kind == "LSTM" else {})}
    expected.update((name, p.grad) for name, p in theirs.named_parameters())
    assert set(grads) == set(expected)
    for name, value in expected.items():
        check(grads[name], value, name)


def _derived(options):
    """False for an option this build derives no step for (it must refuse clearly)."""
    if options.get("nonlinearity") == "relu" and "elman_relu" not in derive.presets():
        with pytest.raises(NotImplementedError, match="relu"):
            MODULES["RNN"](D_IN, HIDDEN, **options)
        return False
    return True


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_float64_matches_torch_autograd(case):
    kind, options, packed, (T, N), seed = case
    if not _derived(options):
        return
    compare(kind, options, packed, T, N, seed, np.float64, 1e-10)


@pytest.mark.parametrize("case", CASES[::7], ids=_id)
def test_float32_matches_torch_autograd(case):
    kind, options, packed, (T, N), seed = case
    if not _derived(options):
        return
    compare(kind, options, packed, T, N, seed, np.float32, 1e-4)


def test_the_comparison_can_fail():
    """A wrong reverse direction (the padded tail read backwards too) is caught."""
    kind, options = "LSTM", dict(num_layers=1, bidirectional=True, batch_first=False, bias=True)
    with pytest.raises(AssertionError):
        compare_wrong(kind, options)


def compare_wrong(kind, options):
    rng = np.random.default_rng(3)
    theirs = torch.nn.LSTM(D_IN, HIDDEN, **options).double()
    ours = MODULES[kind](D_IN, HIDDEN, **options)
    ours.load_state_dict(theirs.state_dict())
    x = rng.standard_normal((4, 2, D_IN))
    lengths = np.array([4, 2])
    out_p, _ = theirs(pack_padded_sequence(torch.tensor(x), torch.tensor(lengths), enforce_sorted=False))
    out_t, _ = pad_packed_sequence(out_p, total_length=4)
    out, _ = ours(x)  # the lengths forgotten: the reverse direction starts at the padding
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_a_fresh_instance_has_torchs_shapes_and_init_range():
    ours = MODULES["LSTM"](5, 4, num_layers=2, bidirectional=True, proj_size=0, seed=0)
    theirs = torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in ours.state_dict().items():
        assert value.shape == tuple(theirs.state_dict()[name].shape)
        assert value.dtype == np.float32 and np.all(np.abs(value) <= 0.5)
    assert not np.array_equal(ours.state_dict()["weight_ih_l0"], MODULES["LSTM"](5, 4, seed=1).state_dict()["weight_ih_l0"])


@pytest.mark.parametrize("bad, message", [
    (lambda m: m.load_state_dict({}), "missing keys"),
    (lambda m: m.load_state_dict({**m.state_dict(), "weight_ih_l0": np.zeros((3, 3))}), "weight_ih_l0: expected shape"),
    (lambda m: m(np.zeros((2, 3))), "3-D"),
    (lambda m: m(np.zeros((2, 1, 3)), lengths=[3]), "lengths"),
    (lambda m: m.backward(np.zeros((2, 1, 4))), "no forward pass"),
])
def test_bad_arguments_say_what_and_where(bad, message):
    module = MODULES["GRU"](3, 4)
    with pytest.raises((ValueError, KeyError), match=message):
        bad(module)

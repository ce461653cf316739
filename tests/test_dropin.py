"""The drop-in modules (issue 13, item 8): generated/cs231n.py,
generated/cs231n_rnn.py and generated/minchar.py have the course code's exact
functions, arguments and return tuples, and return the gradients torch
autograd gives for the forward the course writes (written here in torch, from
the assignment's and the gist's own formulation: one stacked affine map for
CS231n's LSTM, gates i, f, o, g; one-hot inputs and softmax cross-entropy for
min-char-rnn). Nothing here reads a derived equation."""

from __future__ import annotations

import importlib.util
import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install '.[test]'")

GENERATED = Path(__file__).resolve().parent.parent / "generated"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"dropin_{name}", GENERATED / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def leaves(*arrays):
    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]


def close(got, want, tol=1e-10):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.max(np.abs(got - want)) <= tol * max(1.0, np.max(np.abs(want)))


def lstm_step_torch(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H])
    o, g = torch.sigmoid(a[:, 2 * H:3 * H]), torch.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    return o * torch.tanh(next_c), next_c


def rnn_step_torch(x, prev_h, Wx, Wh, b):
    return torch.tanh(x @ Wx + prev_h @ Wh + b)


@pytest.fixture
def rng():
    return np.random.default_rng(13)


@pytest.mark.parametrize("name, functions", [
    ("cs231n", {"lstm_step_forward": "x, prev_h, prev_c, Wx, Wh, b", "lstm_step_backward": "dnext_h, dnext_c, cache",
                "lstm_forward": "x, h0, Wx, Wh, b", "lstm_backward": "dh, cache"}),
    ("cs231n_rnn", {"rnn_step_forward": "x, prev_h, Wx, Wh, b", "rnn_step_backward": "dnext_h, cache",
                    "rnn_forward": "x, h0, Wx, Wh, b", "rnn_backward": "dh, cache"}),
    ("minchar", {"lossFun": "inputs, targets, hprev, Wxh, Whh, Why, bh, by, clip"}),
])
def test_the_source_functions_and_arguments(name, functions):
    mod = load(name)
    assert mod.__all__ == list(functions)
    for f, args in functions.items():
        assert ", ".join(inspect.signature(getattr(mod, f)).parameters) == args


@pytest.mark.parametrize("N, T, D, H", [(1, 1, 2, 3), (3, 4, 5, 2), (2, 5, 3, 4)])
def test_cs231n_lstm_against_torch(rng, N, T, D, H):
    mod = load("cs231n")
    x, h0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H))
    Wx, Wh, b = rng.normal(size=(D, 4 * H)) * 0.5, rng.normal(size=(H, 4 * H)) * 0.5, rng.normal(size=4 * H)
    dh = rng.normal(size=(N, T, H))
    h, cache = mod.lstm_forward(x, h0, Wx, Wh, b)
    result = mod.lstm_backward(dh, cache)
    assert len(result) == 5
    X, H0, WX, WH, B = leaves(x, h0, Wx, Wh, b)
    prev_h, prev_c, hs = H0, torch.zeros(N, H, dtype=torch.float64), []  # the assignment: c0 = 0
    for t in range(T):
        prev_h, prev_c = lstm_step_torch(X[:, t], prev_h, prev_c, WX, WH, B)
        hs.append(prev_h)
    out = torch.stack(hs, 1)
    close(h, out.detach().numpy())
    (out * torch.from_numpy(dh)).sum().backward()
    for got, leaf in zip(result, (X, H0, WX, WH, B)):
        close(got, leaf.grad.numpy())


def test_cs231n_lstm_step_against_torch(rng):
    mod = load("cs231n")
    N, D, H = 3, 4, 5
    arrays = (rng.normal(size=(N, D)), rng.normal(size=(N, H)), rng.normal(size=(N, H)),
              rng.normal(size=(D, 4 * H)), rng.normal(size=(H, 4 * H)), rng.normal(size=4 * H))
    next_h, next_c, cache = mod.lstm_step_forward(*arrays)
    dnext_h, dnext_c = rng.normal(size=(N, H)), rng.normal(size=(N, H))
    result = mod.lstm_step_backward(dnext_h, dnext_c, cache)
    assert len(result) == 6
    tensors = leaves(*arrays)
    h, c = lstm_step_torch(*tensors)
    close(next_h, h.detach().numpy())
    close(next_c, c.detach().numpy())
    ((h * torch.from_numpy(dnext_h)).sum() + (c * torch.from_numpy(dnext_c)).sum()).backward()
    for got, leaf in zip(result, tensors):  # dx, dprev_h, dprev_c, dWx, dWh, db
        close(got, leaf.grad.numpy())


def test_cs231n_rnn_against_torch(rng):
    mod = load("cs231n_rnn")
    N, T, D, H = 3, 4, 5, 6
    x, h0 = rng.normal(size=(N, T, D)), rng.normal(size=(N, H))
    Wx, Wh, b = rng.normal(size=(D, H)), rng.normal(size=(H, H)) * 0.4, rng.normal(size=H)
    dh = rng.normal(size=(N, T, H))
    h, cache = mod.rnn_forward(x, h0, Wx, Wh, b)
    result = mod.rnn_backward(dh, cache)
    X, H0, WX, WH, B = leaves(x, h0, Wx, Wh, b)
    prev, hs = H0, []
    for t in range(T):
        prev = rnn_step_torch(X[:, t], prev, WX, WH, B)
        hs.append(prev)
    out = torch.stack(hs, 1)
    close(h, out.detach().numpy())
    (out * torch.from_numpy(dh)).sum().backward()
    assert len(result) == 5
    for got, leaf in zip(result, (X, H0, WX, WH, B)):
        close(got, leaf.grad.numpy())
    # one step
    step = (x[:, 0], h0, Wx, Wh, b)
    next_h, cache = mod.rnn_step_forward(*step)
    dnext_h = dh[:, 0]
    result = mod.rnn_step_backward(dnext_h, cache)
    tensors = leaves(*step)
    out = rnn_step_torch(*tensors)
    close(next_h, out.detach().numpy())
    (out * torch.from_numpy(dnext_h)).sum().backward()
    for got, leaf in zip(result, tensors):
        close(got, leaf.grad.numpy())


def test_cs231n_float32_kept_and_shapes_checked(rng):
    mod = load("cs231n")
    N, T, D, H = 2, 3, 4, 5
    args = [a.astype(np.float32) for a in (rng.normal(size=(N, T, D)), rng.normal(size=(N, H)),
                                            rng.normal(size=(D, 4 * H)), rng.normal(size=(H, 4 * H)),
                                            rng.normal(size=4 * H))]
    h, cache = mod.lstm_forward(*args)
    assert h.dtype == np.float32 and h.shape == (N, T, H)
    with pytest.raises(ValueError, match=r"Wx: expected shape \(D, 4H\)"):
        mod.lstm_forward(args[0], args[1], args[2][:, :3 * H], args[3], args[4])
    with pytest.raises(ValueError, match=r"b: expected shape \(4H,\)"):
        mod.lstm_forward(args[0], args[1], args[2], args[3], args[4][:H])


def minchar_torch(inputs, targets, hprev, Wxh, Whh, Why, bh, by):
    """The gist's forward, in torch: one-hot inputs, softmax cross-entropy."""
    V = Wxh.shape[1]
    h, loss = hprev, 0
    for i, j in zip(inputs, targets):
        x = torch.zeros(V, 1, dtype=torch.float64)
        x[i] = 1
        h = torch.tanh(Wxh @ x + Whh @ h + bh)
        loss = loss - torch.log_softmax(Why @ h + by, 0)[j, 0]
    return loss, h


def minchar_case(rng, scale=0.3, V=7, H=5):
    weights = (rng.normal(size=(H, V)) * scale, rng.normal(size=(H, H)) * scale, rng.normal(size=(V, H)) * scale,
               rng.normal(size=(H, 1)), rng.normal(size=(V, 1)))
    inputs = [int(i) for i in rng.integers(0, V, 9)]
    targets = inputs[1:] + [int(rng.integers(0, V))]
    return inputs, targets, rng.normal(size=(H, 1)), weights


def test_minchar_lossFun_against_torch(rng):
    mod = load("minchar")
    inputs, targets, hprev, weights = minchar_case(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # small gradients: nothing clipped, no warning
        result = mod.lossFun(inputs, targets, hprev, *weights)
    assert len(result) == 7
    loss, *grads, h = result
    tensors = leaves(*weights)
    want, last = minchar_torch(inputs, targets, torch.from_numpy(hprev), *tensors)
    want.backward()
    assert abs(loss - want.item()) <= 1e-10 * abs(want.item())
    close(h, last.detach().numpy())
    for got, leaf in zip(grads, tensors):  # dWxh, dWhh, dWhy, dbh, dby
        close(got, leaf.grad.numpy())


def test_minchar_clips_as_the_gist_and_says_so(rng):
    mod = load("minchar")
    inputs, targets, hprev, weights = minchar_case(rng, scale=3.0, V=6, H=8)
    inputs, targets = inputs * 6, targets * 6  # a longer sequence: gradients beyond 5
    with pytest.warns(mod.ClippedGradientWarning, match=r"clipped .*d\w+ to \[-5\.0, 5\.0\]"):
        clipped = mod.lossFun(inputs, targets, hprev, *weights)
    exact = mod.lossFun(inputs, targets, hprev, *weights, clip=None)
    tensors = leaves(*weights)
    want, _ = minchar_torch(inputs, targets, torch.from_numpy(hprev), *tensors)
    want.backward()
    assert any(np.max(np.abs(leaf.grad.numpy())) > 5 for leaf in tensors)
    for got, cut, leaf in zip(exact[1:6], clipped[1:6], tensors):
        close(got, leaf.grad.numpy())
        close(cut, np.clip(leaf.grad.numpy(), -5, 5))


@pytest.mark.parametrize("inputs, targets, message", [
    ([1, 2], [1], "targets: expected as many indices as inputs"),
    ([1, 9], [1, 2], "inputs: character index 9 is outside the vocabulary of 7"),
    ([], [], "inputs: expected at least one character"),
    ([0.5], [1], "inputs: expected integer character indices"),
])
def test_minchar_bad_indices(rng, inputs, targets, message):
    mod = load("minchar")
    _, _, hprev, weights = minchar_case(rng)
    with pytest.raises(ValueError, match=message):
        mod.lossFun(inputs, targets, hprev, *weights)

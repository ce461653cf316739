"""The torch presets' derivations against torch's own modules.

The engine's reference run (derive.numeric.evaluate, the backward equations through
time) gives the same gradients as autograd through torch.nn.LSTM, torch.nn.GRU
torch.nn.RNN(nonlinearity="tanh" and "relu") and torch.nn.LSTM(proj_size=k) with the same weights: each preset's
forward equations, layout and gate order are torch's, and its backward pass
is right.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import derive
from derive.numeric import evaluate as ev

if os.environ.get("CI") == "true":
    import torch
else:
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install '.[test]'")

MODULES = {
    "pytorch": lambda D, H: torch.nn.LSTM(D, H),
    "gru": lambda D, H: torch.nn.GRU(D, H),
    "elman": lambda D, H: torch.nn.RNN(D, H, nonlinearity="tanh"),
    "elman_relu": lambda D, H: torch.nn.RNN(D, H, nonlinearity="relu"),
    "lstm_proj": lambda D, H: torch.nn.LSTM(D, H, proj_size=H - 1),
}
SMALLER = {"proj_size": 1}  # a dimension this much below hidden_size (torch: proj_size < hidden_size)


@pytest.mark.parametrize("preset", sorted(MODULES))
@pytest.mark.parametrize("T,B,D,H", [(1, 1, 2, 3), (5, 3, 4, 2), (4, 2, 3, 5)])
def test_engine_gradients_equal_the_torch_module(preset, T, B, D, H):
    d = derive.derive(preset)
    cell = d.cell
    dims = {cell.batch_dim: B}
    for dim in cell.dims:
        if dim != cell.batch_dim:
            dims[dim] = D if "input" in dim else H - SMALLER.get(dim, 0)
    seq = ev.random_sequence(d, dims, T, np.random.default_rng(T * 100 + B))
    _, grads = ev.run(d, seq)

    module = MODULES[preset](D, H).double()
    with torch.no_grad():
        for stacked, parts in cell.stacks.items():
            getattr(module, stacked + "_l0").copy_(torch.from_numpy(np.concatenate([seq.params[p] for p in parts])))
    states = cell.names("state")
    x_name = cell.names("input")[0]
    x = torch.tensor(np.stack([s[x_name] for s in seq.steps]), requires_grad=True)
    initial = [torch.tensor(seq.initial[s][None], requires_grad=True) for s in states]
    out, _ = module(x, tuple(initial) if len(initial) > 1 else initial[0])
    g = torch.tensor(np.stack([s[cell.loss.external] for s in seq.steps]))
    (out * g).sum().backward()

    for stacked, parts in cell.stacks.items():
        ours = np.concatenate([grads[d.gradient_name(p)] for p in parts])
        theirs = getattr(module, stacked + "_l0").grad.numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12, err_msg=stacked)
    for name, tensor in zip(states, initial):
        np.testing.assert_allclose(grads[d.gradient_name(name)], tensor.grad.numpy()[0], rtol=1e-10, atol=1e-12)
    dx = np.stack([grads[(d.gradient_name(x_name), t)] for t in range(T)])
    np.testing.assert_allclose(dx, x.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_a_wrong_gate_order_is_caught():
    """The comparison can fail: torch's GRU stacks r, z, n; stacking z, r, n is wrong."""
    d = derive.derive("gru")
    cell = d.cell
    dims = {"N": 2, "input_size": 3, "hidden_size": 2}
    seq = ev.random_sequence(d, dims, 3, np.random.default_rng(7))
    _, grads = ev.run(d, seq)
    gru = torch.nn.GRU(3, 2).double()
    swapped = {k: [v[1], v[0], v[2]] for k, v in cell.stacks.items()}
    with torch.no_grad():
        for stacked, parts in swapped.items():
            getattr(gru, stacked + "_l0").copy_(torch.from_numpy(np.concatenate([seq.params[p] for p in parts])))
    x = torch.tensor(np.stack([s["x"] for s in seq.steps]))
    out, _ = gru(x, torch.tensor(seq.initial["h_prev"][None]))
    (out * torch.tensor(np.stack([s["doutput"] for s in seq.steps]))).sum().backward()
    ours = np.concatenate([grads[d.gradient_name(p)] for p in swapped["weight_ih"]])
    assert not np.allclose(ours, gru.weight_ih_l0.grad.numpy(), rtol=1e-6)

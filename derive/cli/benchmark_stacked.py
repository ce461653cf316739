"""The stacked rows of the benchmark: the classes of the torch presets' modules
(``LSTM(num_layers=L, bidirectional=True)``, ...) against the same torch.nn module.

Contract. :func:`stacked_call` builds, inside a benchmark worker, the call one
timed sample makes: forward + backward of the generated module's class (its
``__call__`` and ``backward``, with the parameters a fresh torch module
holds, loaded through ``load_state_dict``) or of the torch.nn module with
the same parameters and configuration. :func:`stacked_flops` is the matrix
product work of one forward + backward, summed over layers and directions.
"""

from __future__ import annotations

from typing import Callable


def stacked_flops(T: int, B: int, D: int, H: int, gates: int, layers: int, directions: int) -> float:
    """6g·T·B·H·(D_l+H) per layer and direction (D_l: the layer's input features)."""
    total = 0.0
    for layer in range(layers):
        width = D if layer == 0 else directions * H
        total += directions * 2.0 * 3 * T * B * gates * H * (width + H)
    return total


def stacked_call(impl: str, module, torch_module: str, dtype: str, size: tuple[int, int, int, int],
                 layers: int, bidirectional: bool, threads: int) -> Callable[[], object]:
    """forward + backward of ``impl`` (generated | torch) at ``size`` = (T, B, D, H)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    T, B, D, H = size
    torch.manual_seed(1234)
    net = getattr(torch.nn, torch_module)(D, H, num_layers=layers, bidirectional=bidirectional)
    net = net.to(getattr(torch, dtype))
    rng = np.random.default_rng(1234)
    directions = 2 if bidirectional else 1
    x = rng.standard_normal((T, B, D)).astype(dtype)
    d_output = rng.standard_normal((T, B, directions * H)).astype(dtype)
    if impl == "generated":
        ours = getattr(module, torch_module)(D, H, num_layers=layers, bidirectional=bidirectional)
        ours.load_state_dict({k: v.detach().numpy() for k, v in net.state_dict().items()})

        def call():
            ours(x)
            return ours.backward(d_output)
        return call
    if impl == "torch":
        xt = torch.from_numpy(x).requires_grad_()
        dt = torch.from_numpy(d_output)

        def call():
            for p in (xt, *net.parameters()):
                p.grad = None
            output, _ = net(xt)
            output.backward(dt)
        return call
    raise ValueError(f"no stacked {impl} (the naive reference is one layer only)")

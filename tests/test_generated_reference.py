"""Shared by the kernel and generated-module tests: independent torch
references, each generated module's API driven from one ``evaluate.Sequence``,
and the error measures.

The references never read a derived backward equation:

- ``pytorch``, ``gru``, ``elman`` and ``elman_relu`` run torch.nn.LSTM, torch.nn.GRU and
  torch.nn.RNN(nonlinearity='tanh' / 'relu') themselves, the sequence's weights copied in;
- the other five LSTM presets have their forward written by hand in torch;
- every other cell (``coursera_rnn``, ``cifg``, the examples, a user's spec)
  runs a small torch interpreter of its forward equations (``d.forward``);

and torch autograd differentiates the loss. ``truncate=k`` gives the
BPTT(k) reference: the loss of step t is differentiated through a forward
restarted at step t-k+1 from the (detached) state the full forward reached
there, and the losses of all steps are summed; that is exactly Williams and
Peng's BPTT(k).

torch is optional for a user, but the `test` extra installs it: where it is
missing these comparisons skip with a visible reason, except under CI=true,
where a missing torch is an error.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import derive
from derive.numeric import evaluate
from derive.spec import functions, ops

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"
EXAMPLES = [str(ROOT / "examples" / f"{name}.toml") for name in ("mgu", "janet", "indrnn", "slstm")]
CELLS = derive.presets() + EXAMPLES
TORCH_MODULES = {"pytorch": "LSTM", "gru": "GRU", "elman": "RNN", "elman_relu": "RNN"}  # presets that are a torch.nn module
NONLINEARITY = {"elman": "tanh", "elman_relu": "relu"}
HAND_WRITTEN = {"coursera", "graves", "lipton", "nicodjimenez", "tmva", "cs231n"}
# CS231n's stacked Wx, Wh, b: the gates' column blocks in the assignment's order i, f, o, g
CS231N_BLOCKS = {"Wx": ("Wx_i", "Wx_f", "Wx_o", "Wx_g"), "Wh": ("Wh_i", "Wh_f", "Wh_o", "Wh_g"), "b": ("b_i", "b_f", "b_o", "b_g")}

try:
    import torch
except ImportError:  # pragma: no cover - exercised only without the test extra
    if os.environ.get("CI") == "true":
        raise
    torch = None

needs_torch = pytest.mark.skipif(
    torch is None, reason="torch is not installed: pip install '.[test]' (it pins the CPU build torch==2.13.0)")


def short(name: str) -> str:
    """A preset's name, or a spec file's stem (for messages and ids)."""
    return Path(name).stem


def dims_for(name: str, d_in: int, hidden: int, batch: int, classes: int = 3) -> dict[str, int]:
    """Sizes by role: the inputs' feature dimensions get d_in, the states' get
    hidden, the batch dimension batch, anything else (classes) classes."""
    cell = derive.derive(name).cell
    axis = -1 if cell.layout == "rows" else 0

    def features(role):
        out = set()
        for n in cell.names(role):
            shape = cell.symbols[n].shape
            if shape and isinstance(shape[axis], sp.Symbol):
                out.add(shape[axis].name)
        return out

    inputs, states = features("input"), features("state")
    out = {}
    for dim in cell.dims:
        out[dim] = (batch if dim == cell.batch_dim else hidden if dim in states else d_in if dim in inputs
                    else classes)
    return out


def sequence(name: str, dims: dict[str, int], T: int, seed: int, loss: str | None = "upstream"):
    """A random sequence of the cell (the course's c0 is zero, as its API has it)."""
    d = derive.derive(name, loss=loss)
    seq = evaluate.random_sequence(d, dims, T, np.random.default_rng(seed))
    if name == "coursera":
        seq.initial["c_prev"] = np.zeros_like(seq.initial["c_prev"])
    return seq


def rel_err(a, b) -> float:
    """max |a - b| over the scale of b (max |b|, at least 1e-8)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-8))


def worst(grads: dict, ref: dict) -> tuple[float, object]:
    assert set(grads) == set(ref), set(grads) ^ set(ref)
    errs = {k: rel_err(grads[k], ref[k]) for k in ref}
    key = max(errs, key=errs.get)
    return errs[key], key


# ---------------------------------------------------------------------------
# the generated modules, driven through their public API


_RENDERED = Path(tempfile.mkdtemp(prefix="derive-generated-"))


@functools.lru_cache(maxsize=None)
def module(name: str):
    """generated/<preset>.py, or the module ``lstm-derive build --spec`` renders for a spec file."""
    path = GENERATED / f"{name}.py"
    if name not in derive.presets():
        from derive.codegen.render import render_module

        path = _RENDERED / f"{short(name)}.py"
        path.write_text(render_module(derive.derive(name)), "utf-8")
    spec = importlib.util.spec_from_file_location(f"generated_{short(name)}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def api(mod) -> str:
    """coursera | coursera_rnn | torch | generic, read off the module's functions."""
    names = set(mod.__all__)
    if hasattr(mod, "_sequence_forward"):
        return "generic"  # a drop-in API (CS231n, min-char-rnn) over the generic pair: tests/test_dropin.py
    if "lstm_cell_forward" in names:
        return "coursera"
    if "rnn_cell_forward" in names:
        return "coursera_rnn"
    forward = next(n for n in mod.__all__ if n.endswith("_forward") and "_cell_" not in n)
    args = getattr(mod, forward).__code__.co_varnames[:2]
    return "torch" if args == ("x", "h0") else "generic"


def _call(mod, suffix):
    """The module's sequence function ending in ``suffix`` (not a one-step ``*_cell_*``);
    a drop-in module's generic pair, ``_sequence_forward`` / ``_sequence_backward``."""
    if hasattr(mod, "_sequence" + suffix):
        return getattr(mod, "_sequence" + suffix)
    return getattr(mod, next(n for n in mod.__all__ if n.endswith(suffix) and "_cell_" not in n))


def _stack(seq, key, axis=0):
    return np.stack([step[key] for step in seq.steps], axis=axis)


def generated_grads(name: str, seq, dtype=np.float64, module_=None, truncate=None, finals=None) -> dict:
    """Forward and backward through the module's public API; the gradients in
    evaluate.run's keys (parameters, initial states, (input, t)). ``finals``
    maps a state (h_prev, c_prev) to the gradient on its last value."""
    mod = module_ or module(name)
    d = derive.derive(name, loss="upstream")
    cell = d.cell
    cast = {k: np.asarray(v, dtype) for k, v in seq.params.items()}
    T = len(seq.steps)
    (x,) = cell.names("input")
    ext = cell.loss.external
    finals = finals or {}
    out: dict = {}
    kind = api(mod)
    if kind == "torch":
        stacks = {k: np.concatenate([cast[p] for p in v]) for k, v in cell.stacks.items()}
        initial = [seq.initial[l.prev][None].astype(dtype) for l in cell.links]
        output, _, cache = mod.__dict__[mod.__all__[0]](_stack(seq, x).astype(dtype), *initial, stacks["weight_ih"],
                                                         stacks["weight_hh"], stacks["bias_ih"], stacks["bias_hh"])
        last = [None if l.prev not in finals else finals[l.prev][None].astype(dtype) for l in cell.links]
        g = mod.__dict__[mod.__all__[1]](_stack(seq, ext).astype(dtype), cache, *last, truncate=truncate)
        for stack, members in cell.stacks.items():
            for p, part in zip(members, np.split(g[stack], len(members))):
                out[d.gradient_name(p)] = part
        for k, l in enumerate(cell.links):
            out[d.gradient_name(l.prev)] = g[l.out + "0"][0]
        for t in range(T):
            out[(d.gradient_name(x), t)] = g["x"][t]
    elif kind in ("coursera", "coursera_rnn"):
        xs = _stack(seq, x, axis=-1).astype(dtype)
        params = dict(cast)
        (a_link, *_) = cell.links
        n_a = seq.initial[a_link.prev].shape[0]
        head = [n for n in derive.derive(name).cell.names("param") if n not in params]
        params.update({h: np.ones((2, n_a), dtype) if h.startswith("W") else np.zeros((2, 1), dtype) for h in head})
        result = _call(mod, "_forward")(xs, seq.initial[a_link.prev].astype(dtype), params)
        g = _call(mod, "_backward")(_stack(seq, ext, axis=-1).astype(dtype), result[-1], truncate=truncate)
        for p in cell.names("param"):
            out[d.gradient_name(p)] = g[d.gradient_name(p)]
        out[d.gradient_name(a_link.prev)] = g["da0"]
        for t in range(T):
            out[(d.gradient_name(x), t)] = g["dx"][:, :, t]
    else:
        xs = _stack(seq, x).astype(dtype)
        initial = [seq.initial[l.prev].astype(dtype) for l in cell.links]
        h, _, cache = _call(mod, "_forward")(xs, cast, *initial)
        last = [None if l.prev not in finals else finals[l.prev].astype(dtype) for l in cell.links]
        g = _call(mod, "_backward")(_stack(seq, ext).astype(dtype), cache, *last, truncate=truncate)
        for p in cell.names("param"):
            out[d.gradient_name(p)] = g[d.gradient_name(p)]
        for l in cell.links:
            out[d.gradient_name(l.prev)] = g[d.gradient_name(l.prev)]
        for t in range(T):
            out[(d.gradient_name(x), t)] = g[d.gradient_name(x)][t]
    return out


def expected(name: str, ref: dict) -> dict:
    """The reference without what the module's API does not return (the
    course's lstm_backward returns dx, da0 and the weights, not dc0)."""
    if name == "coursera":
        ref = {k: v for k, v in ref.items() if k != "dc_prev"}
    return ref


def generated_loss(name: str, seq, module_=None):
    """sum_t <external gradient_t, output_t> through the module's forward, in the sequence's dtype."""
    mod = module_ or module(name)
    cell = derive.derive(name, loss="upstream").cell
    (x,) = cell.names("input")
    ext = cell.loss.external
    p = dict(seq.params)
    kind = api(mod)
    if kind == "torch":
        stacks = {k: np.concatenate([p[q] for q in v]) for k, v in cell.stacks.items()}
        initial = [seq.initial[l.prev][None] for l in cell.links]
        output, _, _ = mod.__dict__[mod.__all__[0]](_stack(seq, x), *initial, stacks["weight_ih"], stacks["weight_hh"],
                                                     stacks["bias_ih"], stacks["bias_hh"])
        return np.sum(output * _stack(seq, ext))
    if kind in ("coursera", "coursera_rnn"):
        a_prev = cell.links[0].prev
        n_a = seq.initial[a_prev].shape[0]
        head = [n for n in derive.derive(name).cell.names("param") if n not in p]
        p.update({h: np.ones((2, n_a)) if h.startswith("W") else np.zeros((2, 1)) for h in head})
        a = _call(mod, "_forward")(_stack(seq, x, axis=-1), seq.initial[a_prev], p)[0]
        return np.sum(a * _stack(seq, ext, axis=-1))
    h, _, _ = _call(mod, "_forward")(_stack(seq, x), p, *[seq.initial[l.prev] for l in cell.links])
    return np.sum(h * _stack(seq, ext))


# ---------------------------------------------------------------------------
# the forward passes in torch: by hand, torch.nn itself, or interpreted


def _sig(z):
    return torch.sigmoid(z)


def hand_written_step(name: str, P: dict, x, state: dict) -> tuple[dict, dict]:
    """One step of each LSTM preset as its source writes it; returns (new state, values)."""
    if name == "coursera":
        a_prev, c_prev = state["a_prev"], state["c_prev"]
        concat = torch.cat([a_prev, x], 0)
        ft = _sig(P["Wf"] @ concat + P["bf"])
        it = _sig(P["Wi"] @ concat + P["bi"])
        cct = torch.tanh(P["Wc"] @ concat + P["bc"])
        c = ft * c_prev + it * cct
        ot = _sig(P["Wo"] @ concat + P["bo"])
        a = ot * torch.tanh(c)
        values = {"a_next": a}
        if "Wy" in P:
            values["yt_pred"] = torch.softmax(P["Wy"] @ a + P["by"], dim=0)
        return {"a_prev": a, "c_prev": c}, values
    if name == "graves":
        h_prev, c_prev = state["h_prev"], state["c_prev"]
        i = _sig(P["W_xi"] @ x + P["W_hi"] @ h_prev + P["W_ci"] * c_prev + P["b_i"])
        f = _sig(P["W_xf"] @ x + P["W_hf"] @ h_prev + P["W_cf"] * c_prev + P["b_f"])
        c = f * c_prev + i * torch.tanh(P["W_xc"] @ x + P["W_hc"] @ h_prev + P["b_c"])
        o = _sig(P["W_xo"] @ x + P["W_ho"] @ h_prev + P["W_co"] * c + P["b_o"])
        h = o * torch.tanh(c)
        return {"h_prev": h, "c_prev": c}, {"h": h}
    if name == "lipton":
        h_prev, s_prev = state["h_prev"], state["s_prev"]
        g = torch.tanh(P["W_gx"] @ x + P["W_gh"] @ h_prev + P["b_g"])
        i = _sig(P["W_ix"] @ x + P["W_ih"] @ h_prev + P["b_i"])
        f = _sig(P["W_fx"] @ x + P["W_fh"] @ h_prev + P["b_f"])
        o = _sig(P["W_ox"] @ x + P["W_oh"] @ h_prev + P["b_o"])
        s = g * i + s_prev * f
        h = torch.tanh(s) * o
        return {"h_prev": h, "s_prev": s}, {"h": h}
    if name == "nicodjimenez":
        h_prev, s_prev = state["h_prev"], state["s_prev"]
        xc = torch.cat([x, h_prev])
        g = torch.tanh(P["wg"] @ xc + P["bg"])
        i = _sig(P["wi"] @ xc + P["bi"])
        f = _sig(P["wf"] @ xc + P["bf"])
        o = _sig(P["wo"] @ xc + P["bo"])
        s = g * i + s_prev * f
        h = s * o
        return {"h_prev": h, "s_prev": s}, {"h": h}
    if name == "tmva":
        h_prev, c_prev = state["h_prev"], state["c_prev"]
        i = _sig(x @ P["W_i"].T + h_prev @ P["U_i"].T + P["b_i"])
        f = _sig(x @ P["W_f"].T + h_prev @ P["U_f"].T + P["b_f"])
        ct = torch.tanh(x @ P["W_c"].T + h_prev @ P["U_c"].T + P["b_c"])
        o = _sig(x @ P["W_o"].T + h_prev @ P["U_o"].T + P["b_o"])
        c = f * c_prev + i * ct
        h = o * torch.tanh(c)
        return {"h_prev": h, "c_prev": c}, {"h": h}
    if name == "cs231n":  # as the assignment writes it: one stacked affine map, then the blocks
        prev_h, prev_c = state["prev_h"], state["prev_c"]
        Wx, Wh, b = (torch.cat([P[m] for m in CS231N_BLOCKS[k]], dim=-1) for k in ("Wx", "Wh", "b"))
        H = prev_h.shape[-1]
        a = x @ Wx + prev_h @ Wh + b
        i, f, o, g = _sig(a[..., :H]), _sig(a[..., H:2 * H]), _sig(a[..., 2 * H:3 * H]), torch.tanh(a[..., 3 * H:])
        next_c = f * prev_c + i * g
        next_h = o * torch.tanh(next_c)
        return {"prev_h": next_h, "prev_c": next_c}, {"next_h": next_h}
    raise KeyError(name)


_TORCH_FUNCTIONS = {ops.sigmoid: lambda a: torch.sigmoid(a), sp.tanh: lambda a: torch.tanh(a),
                    sp.exp: lambda a: torch.exp(a), sp.log: lambda a: torch.log(a),
                    functions.relu: lambda a: torch.relu(a), functions.absolute: lambda a: torch.abs(a),
                    functions.softplus: lambda a: torch.nn.functional.softplus(a), functions.sqrt: lambda a: torch.sqrt(a),
                    functions.maximum: lambda a, b: torch.maximum(a, b), functions.minimum: lambda a, b: torch.minimum(a, b)}


def _tensor(a):
    return a if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=torch.float64)


def torch_eval(expr: sp.Expr, env: dict):
    """A forward equation's right side on torch tensors (the ops of a spec, nothing derived)."""
    if isinstance(expr, sp.Symbol):
        return env[expr.name]
    if expr.is_Number:
        return float(expr)
    args = expr.args
    if isinstance(expr, sp.Add):
        return functools.reduce(lambda a, b: a + b, (torch_eval(a, env) for a in args))
    if isinstance(expr, sp.Mul):
        return functools.reduce(lambda a, b: a * b, (torch_eval(a, env) for a in args))
    if isinstance(expr, sp.Pow):
        return torch_eval(args[0], env) ** float(args[1])
    if expr.func in _TORCH_FUNCTIONS:
        return _TORCH_FUNCTIONS[expr.func](*(_tensor(torch_eval(a, env)) for a in args))
    if isinstance(expr, ops.matmul):
        return torch.matmul(torch_eval(args[0], env), torch_eval(args[1], env))
    if isinstance(expr, ops.transpose):
        a = torch_eval(args[0], env)
        return a.T if a.dim() == 2 else a
    if isinstance(expr, ops.concat):
        parts = [torch_eval(a, env) for a in args[1:]]
        return torch.cat(parts, dim=min(int(args[0]), parts[0].dim() - 1))
    if isinstance(expr, ops.softmax):
        z = torch_eval(args[0], env)
        return torch.softmax(z, dim=min(int(args[1]), z.dim() - 1))
    if isinstance(expr, ops.pick):
        z = torch_eval(args[0], env)
        axis = min(int(args[1]), z.dim() - 1)
        return z.narrow(axis, int(args[2]), 1)
    raise TypeError(f"the torch interpreter has no rule for {expr.func}")


def interpreted_step(cell, P: dict, x: dict, state: dict) -> tuple[dict, dict]:
    """One step of a cell from its spec's forward equations, in torch."""
    env = {**P, **x, **state}
    for eq in cell.equations:
        env[eq.target] = torch_eval(eq.rhs, env)
    return {l.prev: env[l.out] for l in cell.links}, env


def _leaf(a):
    return torch.tensor(np.asarray(a, np.float64), dtype=torch.float64, requires_grad=True)


def _step_loss(cell, values: dict, step: dict):
    loss = cell.loss
    if loss.kind == "upstream":
        return (values[loss.on] * torch.from_numpy(np.asarray(step[loss.external], np.float64))).sum()
    if loss.kind == "cross_entropy":
        return -(torch.from_numpy(step[loss.target]) * torch.log(values[loss.prediction])).sum()
    if loss.kind == "squared_error":
        return (values[loss.prediction][loss.unit] - float(step[loss.target])) ** 2
    raise KeyError(loss.kind)


def torch_grads(name: str, seq, loss: str | None = "upstream", truncate: int | None = None,
                finals: dict | None = None) -> tuple[float, dict]:
    """(loss, gradients) by torch autograd, float64, in evaluate.run's keys.
    ``truncate=k``: BPTT(k) (module docstring); ``finals``: gradients on the
    last states, as a loss of the last step."""
    d = derive.derive(name, loss=loss)
    cell = d.cell
    (x,) = cell.names("input")
    T = len(seq.steps)
    k = T if truncate is None else min(truncate, T)
    xs = [_leaf(step[x]) for step in seq.steps]
    initial = {n: _leaf(v) for n, v in seq.initial.items()}
    finals = finals or {}
    if short(name) in TORCH_MODULES:
        net, run = _torch_module(name, d, seq, xs)
        params = {p: None for p in cell.names("param")}
    else:
        P = {n: _leaf(v) for n, v in seq.params.items()}
        params = P
        stepper = functools.partial(hand_written_step, name) if name in HAND_WRITTEN else \
            functools.partial(interpreted_step, cell)

        def run(start: int, stop: int, state: dict):
            values = None
            for u in range(start, stop):
                state, values = stepper(P, xs[u] if name in HAND_WRITTEN else {x: xs[u]}, state)
            return state, values

    # the states the full forward reaches: a window of BPTT(k) starts from them, detached
    with torch.no_grad():
        reached = [initial]
        for t in range(T):
            reached.append(run(t, t + 1, reached[-1])[0])
    total = 0
    for t in range(T):
        start = t - k + 1
        state = initial if start <= 0 else {n: v.detach() for n, v in reached[start].items()}
        state, values = run(max(start, 0), t + 1, state)
        total = total + _step_loss(cell, values, seq.steps[t])
        if t == T - 1:
            for prev, g in finals.items():
                total = total + (state[prev] * torch.from_numpy(np.asarray(g, np.float64))).sum()
    total.backward()
    grads = {}
    if short(name) in TORCH_MODULES:
        for stack, members in cell.stacks.items():
            for p, part in zip(members, np.split(getattr(net, stack + "_l0").grad.numpy(), len(members))):
                grads[d.gradient_name(p)] = part
    else:
        grads = {d.gradient_name(n): v.grad.numpy() for n, v in params.items()}
    for n, v in initial.items():
        grads[d.gradient_name(n)] = v.grad.numpy()
    for t, v in enumerate(xs):
        grads[(d.gradient_name(x), t)] = v.grad.numpy()
    return float(total.detach()), grads


def _torch_module(name: str, d, seq, xs):
    """torch.nn.LSTM / GRU / RNN with the sequence's weights copied in, and a
    runner of steps start..stop-1 of the inputs ``xs`` from a state (one call
    of the module)."""
    cell = d.cell
    P = seq.params
    W_ih = np.concatenate([P[p] for p in cell.stacks["weight_ih"]])
    D, H = W_ih.shape[1], P[cell.stacks["weight_hh"][0]].shape[0]
    kind = TORCH_MODULES[short(name)]
    net = (torch.nn.RNN(D, H, nonlinearity=NONLINEARITY[short(name)]) if kind == "RNN" else getattr(torch.nn, kind)(D, H)).to(torch.float64)
    with torch.no_grad():
        for stack, members in cell.stacks.items():
            getattr(net, stack + "_l0").copy_(torch.from_numpy(np.concatenate([P[p] for p in members])))
    prevs = [l.prev for l in cell.links]

    def run(start: int, stop: int, state: dict):
        hidden = tuple(state[p][None] for p in prevs)
        output, last = net(torch.stack(xs[start:stop]), hidden if kind == "LSTM" else hidden[0])
        last = last if kind == "LSTM" else (last,)
        return {p: v[0] for p, v in zip(prevs, last)}, {cell.loss.on: output[-1]}

    return net, run


# ---------------------------------------------------------------------------
# finite differences


def seven_point(f, value: float, h: float) -> float:
    """f'(value) by the central seven-point stencil: error O(h⁶), so that
    h = 5e-3 leaves both truncation and rounding near 1e-12."""
    d = [f(value + k * h) - f(value - k * h) for k in (1, 2, 3)]
    return (45 * d[0] - 9 * d[1] + d[2]) / (60 * h)


def finite_differences(loss, seq, derivation, h: float | None = None) -> dict:
    """Central (seven-point) differences of ``loss(seq)`` in every entry of every
    parameter, initial state and input; evaluate.run's keys. The loss is
    evaluated in extended precision (np.longdouble, the kernels and modules keep
    any float dtype), so that rounding stays far below 1e-10 even where a
    gradient is a thousandth of the loss. The step is 5e-3, or 1e-5 for a cell
    with a kink (relu, abs, maximum, minimum), so that no difference straddles
    one (a random sequence puts no argument within 3e-5 of a kink)."""
    d = derivation
    if h is None:
        h = 1e-5 if any(functions.kinks(eq.rhs) for eq in d.forward) else 5e-3
    out = {}
    wide = np.longdouble
    seq = evaluate.Sequence(
        {k: np.asarray(v, wide) for k, v in seq.params.items()},
        [{k: np.asarray(v, wide) for k, v in step.items()} for step in seq.steps],
        {k: np.asarray(v, wide) for k, v in seq.initial.items()},
        seq.dims,
    )

    def entries(array, key):
        grad = np.zeros(array.shape, dtype=np.float64)
        for index in np.ndindex(array.shape):
            old = array[index]

            def f(v):
                array[index] = v
                return loss(seq)

            grad[index] = float(seven_point(f, old, wide(h)))
            array[index] = old
        out[key] = grad

    for name, array in seq.params.items():
        entries(array, d.gradient_name(name))
    for name, array in seq.initial.items():
        entries(array, d.gradient_name(name))
    (x,) = d.cell.names("input")
    for t, step in enumerate(seq.steps):
        entries(step[x], (d.gradient_name(x), t))
    return out


@pytest.mark.skipif(torch is None, reason="torch is not installed: pip install '.[test]'")
@pytest.mark.parametrize("name", CELLS, ids=short)
def test_the_torch_references_agree_with_the_reference_interpreter(name):
    """The torch forwards (by hand, torch.nn, interpreted) are the cells the
    specs describe: their losses equal the engine's own evaluation of the
    forward equations."""
    for loss in ("upstream", None):
        seq = sequence(name, dims_for(name, 2, 3, 2), 3, seed=5, loss=loss)
        value, _ = torch_grads(name, seq, loss=loss)
        ref = evaluate.loss(derive.derive(name, loss=loss), seq)
        assert abs(value - ref) <= 1e-12 * max(1.0, abs(ref)), (name, loss, value, ref)

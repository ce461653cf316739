"""Recognition: which bundled cell the user's forward computes, and how its arrays map onto it.

Contract. :func:`describe` takes one pair as the child measured it (the random
inputs the user's forward was called with and what it returned) and says, in
one line, which bundled cell that forward computes and how: the gate order of
stacked weights, one bias or two, batch in rows or columns, initial states given
or zero ("lstm_step_forward computes the pytorch LSTM: Wx (D, 4H) stacked i, f,
o, g, one bias, batch in rows"). Where no layout of the cell it claims
reproduces the user's numbers, it says so and names the first output that
differs ("your lstm_cell_forward does not compute the coursera LSTM: a_next
differs"). It never changes a verdict: referee (a) decides right or wrong.

The table :data:`RECOGNISERS` maps (API family, forward) to a
:class:`Recogniser`: the bundled preset, how to read the user's inputs as that
preset's values under each hypothesis, and which outputs to compare. A later
preset (cs231n) is one more row. A row may hold several recognisers, tried in
order: a GRU class is first tried as torch's GRU (every gate order, both update
conventions), then as the GRU whose reset gate multiplies h_prev before its
product, a cell no preset bundles (``cell`` computes its step; the line says so).
A loss row (min-char-rnn's ``lossFun``) replays the steps over the indices the
forward was given and compares the summed cross-entropy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from derive.numeric.evaluate import evaluate

TOL = 1e-8
TOL_FLOAT32 = 1e-5  # a forward that computes in float32 (DLFS2's Time* layers): its rounding, not another cell


def _zero_state(inp: dict, x: str, Wh: str) -> np.ndarray:
    """A state a sequence forward starts at zero itself: (N, H), batch in rows."""
    return np.zeros((inp[x].shape[0], inp[Wh].shape[0]))


def _step(derivation, env: dict) -> dict:
    env = dict(env)
    for eq in derivation.forward:
        try:
            env[str(eq.lhs)] = evaluate(eq.rhs, env)
        except KeyError:  # the output head (yt_pred) needs weights the cell's functions do not take
            continue
    return env


@dataclass(frozen=True)
class Recogniser:
    """``preset``: the bundled cell; ``hypotheses(inputs)`` yields (description,
    {preset name: value} per step builder); ``outputs``: (user output, preset
    name, how the user stacks steps)."""

    preset: str
    title: str
    hypotheses: Callable[[dict], Iterator[tuple[str, Callable[[int, dict], dict]]]]
    outputs: tuple  # (user output name, preset quantity)
    steps: Callable[[dict], int]  # how many steps the user's inputs hold
    take: Callable[[np.ndarray, int], np.ndarray]  # one step of a user's stacked output
    carry: tuple = ()  # (preset state, preset output) pairs carried to the next step
    zero: tuple = ()  # preset states that start at zero in the user's forward
    cell: Callable[[dict], dict] | None = None  # a step no bundled preset has (preset ""): env -> env
    loss: bool = False  # the forward returns a summed cross-entropy over the given targets (min-char-rnn)


def _blocks(W: np.ndarray, order: str, gate: str) -> np.ndarray:
    H = W.shape[-1] // len(order)
    k = order.index(gate)
    return W[..., k * H:(k + 1) * H]


def _stacked_lstm(names: tuple, seq_axis: int | None):
    """CS231n's and DLFS2's LSTM: x, h, [c], Wx (D, 4H), Wh (H, 4H), b (4H,),
    batch in rows, onto the pytorch preset, for each of the 24 gate orders."""
    x, h, c, Wx, Wh, b = names

    def hypotheses(inp: dict):
        for perm in itertools.permutations("ifgo"):
            order = "".join(perm)

            def build(t: int, state: dict, order=order) -> dict:
                h0 = inp[h] if h else _zero_state(inp, x, Wh)
                env = {"x": inp[x] if seq_axis is None else np.take(inp[x], t, axis=seq_axis),
                       "h_prev": state.get("h_prev", h0), "c_prev": state.get("c_prev", inp[c] if c else 0 * h0)}
                for g in "ifgo":
                    env[f"W_i{g}"] = _blocks(inp[Wx], order, g).T
                    env[f"W_h{g}"] = _blocks(inp[Wh], order, g).T
                    env[f"b_i{g}"] = _blocks(inp[b], order, g)
                    env[f"b_h{g}"] = np.zeros_like(env[f"b_i{g}"])
                return env

            shown = ", ".join(order)
            yield f"{Wx} (D, 4H) stacked {shown}, one bias, batch in rows", build

    return hypotheses


def _identity(names: dict[str, str], axis: int = -1):
    """Notation names = the user's names (the course's functions)."""

    def hypotheses(inp: dict):
        def build(t: int, state: dict) -> dict:
            env = {}
            for user, preset in names.items():
                env[preset] = np.take(inp[user], t, axis=axis) if user in ("x",) else inp[user]
            env.update(state)
            for k, v in list(env.items()):
                if k.startswith("_zero_"):
                    del env[k]
            return env

        yield "the course's names, batch in columns", build

    return hypotheses


def _elman(x: str, h: str, Wx: str, Wh: str, b: str, seq_axis: int | None):
    def hypotheses(inp: dict):
        def build(t: int, state: dict) -> dict:
            return {"x": inp[x] if seq_axis is None else np.take(inp[x], t, axis=seq_axis),
                    "h_prev": state.get("h_prev", inp[h] if h else _zero_state(inp, x, Wh)),
                    "W_ih": inp[Wx].T, "W_hh": inp[Wh].T,
                    "b_ih": inp[b], "b_hh": np.zeros_like(inp[b])}

        yield f"{Wx} (D, H), {Wh} (H, H), one bias, batch in rows", build

    return hypotheses


def _stacked_gru(names: tuple, seq_axis: int | None = None):
    """DLFS2's GRU class: x, h, Wx (D, 3H), Wh (H, 3H), b (3H,), batch in rows,
    onto the gru preset (torch's), for each gate order and both conventions of
    the update gate (torch's h = (1 - z) * n + z * h_prev, or z and 1 - z swapped:
    the same cell with the update gate's weights negated)."""
    x, h, Wx, Wh, b = names

    def hypotheses(inp: dict):
        for perm in itertools.permutations("rzn"):
            order = "".join(perm)
            for swapped in (False, True):
                def build(t: int, state: dict, order=order, swapped=swapped) -> dict:
                    env = {"x": inp[x] if seq_axis is None else np.take(inp[x], t, axis=seq_axis),
                           "h_prev": state.get("h_prev", inp[h] if h else _zero_state(inp, x, Wh))}
                    for g in "rzn":
                        sign = -1.0 if swapped and g == "z" else 1.0
                        env[f"W_i{g}"] = sign * _blocks(inp[Wx], order, g).T
                        env[f"W_h{g}"] = sign * _blocks(inp[Wh], order, g).T
                        env[f"b_i{g}"] = sign * _blocks(inp[b], order, g)
                        env[f"b_h{g}"] = np.zeros_like(env[f"b_i{g}"])
                    return env

                update = "h = z * n + (1 - z) * h_prev" if swapped else "h = (1 - z) * n + z * h_prev"
                yield f"{Wx} (D, 3H) stacked {', '.join(order)}, one bias, batch in rows, {update}", build

    return hypotheses


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _gru_reset_before(env: dict) -> dict:
    """A GRU whose reset gate multiplies h_prev before its product (Cho et al.
    2014, DLFS2): n = tanh(x W_in + b_in + (r * h_prev) W_hn). No bundled preset
    computes it (the gru preset is torch's, reset after the product)."""
    x, hp = env["x"], env["h_prev"]
    r = _sigmoid(x @ env["W_ir"].T + env["b_ir"] + hp @ env["W_hr"].T)
    z = _sigmoid(x @ env["W_iz"].T + env["b_iz"] + hp @ env["W_hz"].T)
    n = np.tanh(x @ env["W_in"].T + env["b_in"] + (r * hp) @ env["W_hn"].T)
    return {**env, "r": r, "z": z, "n": n, "h": (1 - z) * n + z * hp}


def _minchar(Wxh: str, Whh: str, Why: str, bh: str, by: str):
    """min-char-rnn's lossFun: the weights by its names, one-hot inputs from the
    given indices, h0 the given state."""

    def hypotheses(inp: dict, given: dict):
        V = inp[Wxh].shape[1]

        def build(t: int, state: dict) -> dict:
            x = np.zeros((V, 1))
            x[given["inputs"][t], 0] = 1.0
            h0 = np.asarray(given["states"][0], dtype=float) if given.get("states") else np.zeros((inp[Whh].shape[0], 1))
            return {"x": x, "h_prev": state.get("h_prev", h0), "Wxh": inp[Wxh], "Whh": inp[Whh], "Why": inp[Why],
                    "bh": inp[bh], "by": inp[by]}

        yield (f"{Wxh} (H, V), {Whh} (H, H), {Why} (V, H), {bh}, {by} columns, one-hot inputs from indices, "
               "softmax cross-entropy summed over the steps, h0 given"), build

    return hypotheses


_CO_LSTM = {n: n for g in "fico" for n in (f"W{g}", f"b{g}")}
_CO_RNN = {n: n for n in ("Wax", "Waa", "ba")}

RECOGNISERS: dict[tuple[str, str], Recogniser | tuple[Recogniser, ...]] = {
    ("coursera", "rnn_cell_forward"): Recogniser(
        "coursera_rnn", "RNN", _identity({"xt": "xt", "a_prev": "a_prev", **_CO_RNN}), (("a_next", "a_next"),),
        lambda inp: 1, lambda out, t: out),
    ("coursera", "rnn_forward"): Recogniser(
        "coursera_rnn", "RNN", _identity({"x": "xt", "a0": "a_prev", **_CO_RNN}), (("a", "a_next"),),
        lambda inp: inp["x"].shape[-1], lambda out, t: out[..., t], carry=(("a_prev", "a_next"),)),
    ("coursera", "lstm_cell_forward"): Recogniser(
        "coursera", "LSTM", _identity({"xt": "xt", "a_prev": "a_prev", "c_prev": "c_prev", **_CO_LSTM}),
        (("a_next", "a_next"), ("c_next", "c_next")), lambda inp: 1, lambda out, t: out),
    ("coursera", "lstm_forward"): Recogniser(
        "coursera", "LSTM", _identity({"x": "xt", "a0": "a_prev", **_CO_LSTM}), (("a", "a_next"),),
        lambda inp: inp["x"].shape[-1], lambda out, t: out[..., t],
        carry=(("a_prev", "a_next"), ("c_prev", "c_next")), zero=("c_prev",)),
    ("cs231n", "rnn_step_forward"): Recogniser(
        "elman", "Elman RNN", _elman("x", "prev_h", "Wx", "Wh", "b", None), (("next_h", "h"),),
        lambda inp: 1, lambda out, t: out),
    ("cs231n", "rnn_forward"): Recogniser(
        "elman", "Elman RNN", _elman("x", "h0", "Wx", "Wh", "b", 1), (("h", "h"),),
        lambda inp: inp["x"].shape[1], lambda out, t: out[:, t], carry=(("h_prev", "h"),)),
    ("cs231n", "lstm_step_forward"): Recogniser(
        "pytorch", "LSTM", _stacked_lstm(("x", "prev_h", "prev_c", "Wx", "Wh", "b"), None),
        (("next_h", "h"), ("next_c", "c")), lambda inp: 1, lambda out, t: out),
    ("cs231n", "lstm_forward"): Recogniser(
        "pytorch", "LSTM", _stacked_lstm(("x", "h0", None, "Wx", "Wh", "b"), 1), (("h", "h"),),
        lambda inp: inp["x"].shape[1], lambda out, t: out[:, t], carry=(("h_prev", "h"), ("c_prev", "c")),
        zero=("c_prev",)),
    # layer classes built from stacked weights (Deep Learning from Scratch 2's LSTM and RNN): the
    # inputs in the order forward's arguments, then __init__'s
    ("class", "stacked_lstm_step"): Recogniser(
        "pytorch", "LSTM", lambda inp: _stacked_lstm(tuple(inp), None)(inp), (("h", "h"), ("c", "c")),
        lambda inp: 1, lambda out, t: out),
    ("class", "stacked_gru_step"): (
        Recogniser("gru", "GRU", lambda inp: _stacked_gru(tuple(inp))(inp), (("h", "h"),), lambda inp: 1,
                   lambda out, t: out),
        Recogniser("", "GRU with the reset gate applied to h_prev before its product (Cho et al. 2014), "
                   "which no bundled cell computes (the gru preset is torch's: reset after the product)",
                   lambda inp: _stacked_gru(tuple(inp))(inp), (("h", "h"),), lambda inp: 1, lambda out, t: out,
                   cell=_gru_reset_before)),
    ("minchar", "lossFun"): Recogniser(
        "minchar", "min-char-rnn", _minchar("Wxh", "Whh", "Why", "bh", "by"), (("loss", "loss"),),
        lambda inp: 0, lambda out, t: out, carry=(("h_prev", "h"),), loss=True),
    ("class", "rnn_step"): Recogniser(
        "elman", "Elman RNN", lambda inp: _elman(*tuple(inp)[:2], *tuple(inp)[2:5], None)(inp), (("h", "h"),),
        lambda inp: 1, lambda out, t: out),
    # their whole-sequence layers (TimeLSTM(Wx, Wh, b).forward(xs), xs (N, T, D)): the states start at zero
    ("class", "stacked_lstm_seq"): Recogniser(
        "pytorch", "LSTM", lambda inp: _stacked_lstm((tuple(inp)[0], None, None, *tuple(inp)[1:4]), 1)(inp),
        (("h", "h"),), lambda inp: next(iter(inp.values())).shape[1], lambda out, t: out[:, t],
        carry=(("h_prev", "h"), ("c_prev", "c")), zero=("h_prev", "c_prev")),
    ("class", "stacked_gru_seq"): (
        Recogniser("gru", "GRU", lambda inp: _stacked_gru((tuple(inp)[0], None, *tuple(inp)[1:4]), 1)(inp),
                   (("h", "h"),), lambda inp: next(iter(inp.values())).shape[1], lambda out, t: out[:, t],
                   carry=(("h_prev", "h"),), zero=("h_prev",)),
        Recogniser("", "GRU with the reset gate applied to h_prev before its product (Cho et al. 2014), "
                   "which no bundled cell computes (the gru preset is torch's: reset after the product)",
                   lambda inp: _stacked_gru((tuple(inp)[0], None, *tuple(inp)[1:4]), 1)(inp), (("h", "h"),),
                   lambda inp: next(iter(inp.values())).shape[1], lambda out, t: out[:, t],
                   carry=(("h_prev", "h"),), zero=("h_prev",), cell=_gru_reset_before)),
    ("class", "rnn_seq"): Recogniser(
        "elman", "Elman RNN", lambda inp: _elman(tuple(inp)[0], None, *tuple(inp)[1:4], 1)(inp), (("h", "h"),),
        lambda inp: next(iter(inp.values())).shape[1], lambda out, t: out[:, t], carry=(("h_prev", "h"),),
        zero=("h_prev",)),
}


def _states_note(rec: Recogniser, raw: dict) -> str:
    if rec.zero:
        return ", " + ", ".join(f"{z.replace('_prev', '')}0 = 0" for z in rec.zero)
    return ""


def _try(rec: Recogniser, inp: dict, outs: dict, given: dict, tol: float = TOL) -> tuple[str, tuple | None]:
    """(the first hypothesis that reproduces the user's outputs, None) or ('', the first difference)."""
    from derive.verifier.cache import load

    d = load(rec.preset) if rec.preset else None
    steps = len(given.get("inputs", ())) if rec.loss else rec.steps(inp)
    worst = None
    for desc, build in (rec.hypotheses(inp, given) if rec.loss else rec.hypotheses(inp)):
        state: dict = {}
        bad = None
        loss = 0.0
        for t in range(steps):
            env = build(t, state)
            for z in rec.zero:
                if t == 0:
                    env[z] = np.zeros_like(env["a_prev" if "a_prev" in env else "h_prev"])
            try:
                env = _step(d, env) if d is not None else rec.cell(env)
            except Exception:
                bad = ("", float("inf"))
                break
            if rec.loss:
                loss -= float(np.log(env["p"][given["targets"][t], 0]))
            else:
                bad = _compare(rec, outs, env, t, steps, tol)
            if bad:
                break
            state = {prev: env[out] for prev, out in rec.carry}
        if bad is None and rec.loss:
            want = float(np.asarray(outs["loss"]))
            if abs(loss - want) > tol * max(1.0, abs(want)):
                bad = ("loss", abs(loss - want))
        if bad is None:
            return desc, None
        if worst is None:
            worst = bad
    return "", worst or ("", float("inf"))


def _compare(rec: Recogniser, outs: dict, env: dict, t: int, steps: int, tol: float = TOL) -> tuple | None:
    for user, name in rec.outputs:
        got = rec.take(outs[user], t) if steps > 1 else outs[user]
        want = env[name]
        if np.shape(got) != np.shape(want):
            return (user, float("inf"))
        err = float(np.max(np.abs(got - want)) / max(1e-12, float(np.max(np.abs(want)))))
        if err > tol:
            return (user, err)
    return None


def describe(raw: dict) -> str:
    """One line on what the user's forward computes ('' when no row applies)."""
    family, fwd = raw.get("family"), raw.get("forward")
    row = RECOGNISERS.get((family, raw.get("api_forward", fwd)))
    sample = raw.get("sample")
    if row is None or not sample or any(v is None for v in sample["outputs"].values()):
        return ""
    recs = row if isinstance(row, tuple) else (row,)
    inp = {k: np.asarray(v, dtype=float) for k, v in sample["inputs"].items()}
    outs = {k: np.asarray(v, dtype=float) for k, v in sample["outputs"].items()}
    given = sample.get("given") or {}
    if recs[0].loss and not all(k in inp for k in ("Wxh", "Whh", "Why", "bh", "by")):
        return ""  # a lossFun over other weights (an LSTM's): no bundled loss cell to name
    first = None
    for rec in recs:
        desc, bad = _try(rec, inp, outs, given, TOL_FLOAT32 if raw.get("float32") else TOL)
        if bad is None:
            if not rec.preset:
                return f"{fwd} computes a {rec.title}: {desc}{_states_note(rec, raw)}"
            return f"{fwd} computes the {_named(rec)}: {desc}{_states_note(rec, raw)}"
        first = first or bad
    user, err = first
    what = f": {user} differs" if user else ""
    return f"your {fwd} does not compute the {_named(recs[0])}{what} (no layout tried matches)"


def _named(rec) -> str:
    """``pytorch LSTM``, ``coursera_rnn RNN``; ``Elman RNN``, not ``elman Elman RNN``."""
    if rec.title.lower().startswith(rec.preset.lower()):
        return rec.title
    return f"{rec.preset} {rec.title}"

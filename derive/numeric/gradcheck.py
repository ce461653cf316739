r"""The write-ups' answer to "does a gradient check pass with truncated BPTT?"

Contract. ``measure(derivation)`` runs the reference interpreter
(:func:`derive.numeric.evaluate.run`, float64) on one fixed sequence (T = 4 steps,
every size 2, numbers of ``numpy.random.default_rng(SEED)``, parameters of
scale 0.3) and returns a :class:`GradCheck`: one row per backward pass,
full BPTT (k = T) first, then BPTT(k) for k = T-1, ..., 1. Each row holds the
relative error of the pass's parameter gradients

    max |g - g_FD| / max |g_FD|          (every entry of every parameter)

against central finite differences (h = 1e-6) of

- ``vs_loss``: the loss L of the sequence, what a gradient check differences;
- ``vs_restarted``: L_k = Σ_t ℓ_t with each step's loss computed from a
  forward restarted at step t-k+1 from the states the full forward reached
  there, held constant: the function BPTT(k) is the exact gradient of.

The numbers are printed with two significant digits; an error below
``PASS`` (1e-6) is printed as that bound, because its digits are rounding
noise that differs between machines. A printed number is checked not to sit
within 1e-7 (relative) of a rounding boundary, so the text is the same
wherever float64 is IEEE (:func:`two_digits` raises otherwise). ``measure``
raises ``AssertionError`` if full BPTT or any BPTT(k) against its own L_k
fails, so a write-up never states a check that did not hold.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from derive.numeric import evaluate as ev

STEPS = 4
SIZE = 2
SEED = 2
SCALE = 0.3
H = 1e-6
PASS = 1e-6  # a float64 gradient check with h = 1e-6 resolves about 1e-9 here
PASS_TEX = "10^{-6}"


@dataclass(frozen=True)
class Row:
    k: int  # the truncation length; k = steps is full BPTT
    vs_loss: float
    vs_restarted: float
    vs_loss_tex: str  # LaTeX: "0.17", "3.1 \times 10^{-3}", "< 10^{-6}"
    vs_restarted_tex: str
    passes: bool  # vs_loss < PASS: a gradient check of L would pass


@dataclass(frozen=True)
class GradCheck:
    steps: int
    size: int
    seed: int
    scale: float
    rows: tuple[Row, ...]  # full BPTT first, then k = T-1 .. 1
    shrinking: bool  # vs_loss never grows with k (true on these numbers; not a theorem)
    clear: bool  # every truncated gradient misses L by 100 x PASS or more
    pass_tex: str = PASS_TEX


# ---------------------------------------------------------------------------
# the two objectives, from the forward equations alone


def restarted_loss(derivation, seq: ev.Sequence, k: int, frozen: list[dict]) -> float:
    """L_k: each step t's loss from a forward restarted at max(0, t-k+1).
    ``frozen[s]`` are the states entering step s in the unperturbed forward:
    the restart reads them as constants, except at 0, where it reads the
    sequence's own initial states (which are differentiated)."""
    total = 0.0
    # the steps t < k all start at 0: one forward serves them (its step t is the
    # last step of the forward over steps 0..t, the same operations)
    first = ev.forward(derivation, ev.Sequence(seq.params, seq.steps[:k], seq.initial, seq.dims))
    for t in range(len(seq.steps)):
        if t < k:
            env = first[t]
        else:
            start = t - k + 1
            restart = ev.Sequence(seq.params, seq.steps[start:t + 1], frozen[start], seq.dims)
            env = ev.forward(derivation, restart)[-1]
        total += float(ev.step_loss(derivation, env, dims=seq.dims))
    return total


def states_entering(derivation, seq: ev.Sequence) -> list[dict]:
    """The states entering each step in the forward pass (and after the last)."""
    states = [dict(seq.initial)]
    for env in ev.forward(derivation, seq):
        states.append({link.prev: env[link.out] for link in derivation.cell.links})
    return states


def parameter_differences(derivation, seq: ev.Sequence, objective) -> dict[str, np.ndarray]:
    """Central differences of ``objective(seq)`` for every parameter entry,
    keyed by the parameter's gradient name."""
    out = {}
    for name in derivation.cell.names("param"):
        arr = seq.params[name]
        grad = np.zeros_like(arr)
        for i in np.ndindex(*arr.shape):
            old = arr[i]
            arr[i] = old + H
            plus = objective(seq)
            arr[i] = old - H
            minus = objective(seq)
            arr[i] = old
            grad[i] = (plus - minus) / (2 * H)
        out[derivation.gradient_name(name)] = grad
    return out


def relative_error(grads: dict, reference: dict[str, np.ndarray]) -> float:
    worst = max(float(np.max(np.abs(grads[g] - ref))) for g, ref in reference.items())
    scale = max(float(np.max(np.abs(ref))) for ref in reference.values())
    return worst / scale


# ---------------------------------------------------------------------------
# printing


def two_digits(x: float) -> str:
    """``x`` to two significant digits in LaTeX; raises ValueError when x is
    so close to a rounding boundary that another machine could round it the
    other way."""
    text = f"{x:.1e}"
    if {f"{x * (1 - 1e-7):.1e}", f"{x * (1 + 1e-7):.1e}"} != {text}:
        raise ValueError(f"{x!r} is at a rounding boundary of two significant digits; choose another SEED")
    mantissa, exponent = text.split("e")
    e = int(exponent)
    if -3 <= e <= 0:
        return f"{float(text):.{1 - e}f}"
    return rf"{mantissa} \times 10^{{{e}}}"


def _shown(x: float) -> str:
    return "< " + PASS_TEX if x < PASS else two_digits(x)


# ---------------------------------------------------------------------------
# the measurement


@functools.lru_cache(maxsize=16)
def measure(derivation) -> GradCheck:
    d = derivation
    dims = {name: SIZE for name in d.cell.dims}
    seq = ev.random_sequence(d, dims, STEPS, np.random.default_rng(SEED), scale=SCALE)
    frozen = states_entering(d, seq)
    full_fd = parameter_differences(d, seq, lambda s: float(ev.loss(d, s)))
    rows = []
    for k in range(STEPS, 0, -1):
        _, grads = ev.run(d, seq, truncate=k)
        own_fd = full_fd if k == STEPS else parameter_differences(d, seq, lambda s: restarted_loss(d, s, k, frozen))
        vs_loss, vs_own = relative_error(grads, full_fd), relative_error(grads, own_fd)
        if vs_own >= PASS:
            raise AssertionError(f"{d.name}: BPTT({k}) is not the gradient of its restarted loss: {vs_own:.2g}")
        rows.append(Row(k, vs_loss, vs_own, _shown(vs_loss), _shown(vs_own), vs_loss < PASS))
    if not rows[0].passes:
        raise AssertionError(f"{d.name}: full BPTT fails the gradient check: {rows[0].vs_loss:.2g}")
    errors = [r.vs_loss for r in rows]  # k = T, T-1, ..., 1
    shrinking = all(a <= b + PASS for a, b in zip(errors, errors[1:]))
    clear = all(e >= 100 * PASS for e in errors[1:])
    return GradCheck(STEPS, SIZE, SEED, SCALE, tuple(rows), shrinking, clear)

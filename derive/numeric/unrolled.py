"""The write-ups' check of backpropagation through time on a two-step sequence.

Contract. ``check(derivation)`` runs the engine on a fixed, deterministic
sequence (T = 2, every size 2, every number a small rational k/36 chosen by
formula, no random generator; positive in a cell with a kink, relu's or
maximum's, so that every unit is on) and returns an :class:`UnrolledCheck` for one
weight entry w (the output gate's recurrent weight when the cell has one, else
a weight on the previous state: the question of seed 003):

- ``per_step``: the contribution of each step t to dL/dw, the per-step
  formulas run from t = T down to 1 with the carried gradients
  (``evaluate`` in 40-digit mpmath);
- ``engine``: their sum, as :func:`derive.numeric.evaluate.run` computes it;
- ``unrolled``: SymPy's derivative d/dw of the loss written out over both
  steps as one expression in w (the other numbers fixed), no backward
  formula involved, evaluated in 40-digit mpmath: the chain rule over the
  expression's distinct subexpressions, each node's local derivative SymPy's
  ``diff`` of its head (:func:`derivative`; ``sympy.diff`` of the whole
  expression gives the same number, tests/test_unrolled_derivative.py, in
  about a hundred times the time);
- ``truncated``: the same per-step formulas with the carried gradients
  dropped (each step differentiates its own loss only): what one gets
  without backpropagation through time.

The values are printed to 12 significant digits; :func:`check` raises
``AssertionError`` when engine and unrolled derivative differ by more than
1e-25 relative, so a write-up never states a check that failed. Output is
identical on every machine (mpmath and SymPy arithmetic only).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from derive.numeric import evaluate as ev
from derive.spec import functions, ops
from derive.numeric.judge import backward_steps

DPS = 40
STEPS = 2
SIZE = 2
DIGITS = 12
TOLERANCE = sp.Float("1e-25")


@dataclass(frozen=True)
class UnrolledCheck:
    param: str  # the parameter whose entry is checked
    grad: str  # the name of its gradient
    index: tuple[int, ...]  # 0-based entry
    dims: dict
    steps: int
    per_step: tuple[str, ...]  # contribution of t = 1 .. T
    engine: str
    unrolled: str
    truncated: str
    agree: str  # "1e-25": the bound the difference was checked against


def _value(k: int) -> sp.Rational:
    """The k-th number of the check: a rational in [-1/2, 1/2], by formula."""
    return sp.Rational(((k * 29 + 7) % 37) - 18, 36)


def _positive(k: int) -> sp.Rational:
    return sp.Rational((k * 7) % 5 + 1, 1)


class _Numbers:
    """The numbers in order; ``away_from_kinks``: every value in [1/36, 1/2] (a cell
    with relu: every unit on, so that the checked gradient is not a dead unit's 0)."""

    def __init__(self, away_from_kinks: bool = False):
        self.k = 0
        self.away = away_from_kinks

    def array(self, shape, positive=False):
        out = np.empty(shape, dtype=object)
        for idx in np.ndindex(*shape):
            if positive:
                out[idx] = _positive(self.k)
            else:
                out[idx] = abs(_value(self.k)) + sp.Rational(1, 36) if self.away else _value(self.k)
            self.k += 1
        return out


def _sequence(derivation, dims) -> ev.Sequence:
    """The check's numbers, exact rationals, in a fixed order."""
    cell = derivation.cell
    nums = _Numbers(any(functions.kinks(eq.rhs) for eq in cell.equations))

    def shape(name):
        return ev.concrete_shape(cell.symbols[name].shape, dims)

    params = {n: nums.array(shape(n)) for n in cell.names("param")}
    initial = {n: nums.array(shape(n)) for n in cell.names("state")}
    steps = []
    for _ in range(STEPS):
        inputs = {n: nums.array(shape(n)) for n in cell.names("input")}
        for n in cell.names("target"):
            if cell.loss.kind == "cross_entropy":
                p = nums.array(shape(n), positive=True)
                axis = min(cell.feature_axis, p.ndim - 1)
                inputs[n] = p / p.sum(axis=axis, keepdims=True)
            else:
                inputs[n] = nums.array(shape(n))
        if cell.loss.kind == "upstream":
            inputs[cell.loss.external] = nums.array(shape(cell.loss.on))
        steps.append(inputs)
    return ev.Sequence(params, steps, initial, dict(dims))


def _convert(seq: ev.Sequence, f) -> ev.Sequence:
    conv = np.frompyfunc(f, 1, 1)

    def tree(d):
        return {k: conv(v) if isinstance(v, np.ndarray) else f(v) for k, v in d.items()}

    return ev.Sequence(tree(seq.params), [tree(s) for s in seq.steps], tree(seq.initial), seq.dims)


def choose(derivation) -> tuple[str, tuple[int, ...]]:
    """The weight entry to check: by concept (the output gate's recurrent
    weights, else its weights), else a matrix of the gate the output reads,
    else the first matrix parameter; entry (0, 0)."""
    cell = derivation.cell
    by_concept = {s.concept: n for n, s in cell.symbols.items() if s.concept and s.role == "param"}
    for concept in ("output_gate_recurrent_weights", "output_gate_weights"):
        if concept in by_concept:
            name = by_concept[concept]
            return name, (0,) * len(cell.symbols[name].shape)
    used = {str(s) for e in cell.cell_equations() for s in e.rhs.free_symbols}
    matrices = [n for n in cell.names("param") if len(cell.symbols[n].shape) == 2 and n in used]
    out_eq = next((e for e in cell.equations if e.target == cell.loss.on), None)
    if out_eq is not None:
        states = set(cell.names("state"))
        recurrent = _recurrent_weight(out_eq.rhs, matrices, states)
        if recurrent:  # an Elman cell: the output's own equation reads W h(t-1)
            return recurrent, (0, 0)
        gates = {str(s) for s in out_eq.rhs.free_symbols}
        for e in cell.equations:
            if e.target in gates:
                own = [n for n in matrices if sp.Symbol(n) in e.rhs.free_symbols]
                # prefer the weight that multiplies a previous state directly
                recurrent = _recurrent_weight(e.rhs, own, states)
                if recurrent:
                    return recurrent, (0, 0)
                if own:
                    return own[0], (0, 0)
    name = matrices[0] if matrices else cell.names("param")[0]
    return name, (0,) * len(cell.symbols[name].shape)


def _recurrent_weight(rhs: sp.Expr, matrices: list[str], states: set[str]) -> str | None:
    """A weight of ``matrices`` that multiplies a previous state in ``rhs``:
    ``W @ h_prev`` (columns) or ``h_prev @ W.T`` (rows)."""
    for m in sorted(rhs.atoms(ops.matmul), key=sp.default_sort_key):
        a, b = m.args[:2]
        if isinstance(a, sp.Symbol) and isinstance(b, sp.Symbol) and a.name in matrices and b.name in states:
            return a.name
        if isinstance(a, sp.Symbol) and a.name in states and isinstance(b, ops.transpose) \
                and isinstance(b.args[0], sp.Symbol) and b.args[0].name in matrices:
            return b.args[0].name
    return None


def _per_step(derivation, seq, grad: str, index, carry: bool) -> list:
    """Each step's contribution to ``grad[index]``, the backward equations run
    from t = T to 1 (``later`` bound to step t+1's values, or to zero)."""
    envs = ev.forward(derivation, seq, ev.MP)
    steps, _ = backward_steps(derivation, seq, envs, carry=None if carry else (), backend=ev.MP)
    return [step[grad][index] for step in steps]


def _mp_value(expr: sp.Expr, env: dict, cache: dict | None = None):
    """The value of a SymPy expression in mpmath at the current precision, each
    shared subexpression once (``evalf`` re-walks them: minutes, not ms);
    ``cache``: values already known, filled as the walk goes."""
    cache = {} if cache is None else cache

    def val(e):
        r = cache.get(e)
        if r is not None:
            return r
        if e.is_Symbol:
            r = env[e]
        elif e.is_Rational:
            r = mpmath.mpf(e.p) / e.q
        elif e.is_Float:
            r = mpmath.mpf(e._mpf_)
        elif e.is_Add:
            r = mpmath.fsum(val(a) for a in e.args)
        elif e.is_Mul:
            r = mpmath.fprod(val(a) for a in e.args)
        elif e.is_Pow:
            r = val(e.base) ** (int(e.exp) if e.exp.is_Integer else val(e.exp))
        elif isinstance(e, (sp.exp, sp.tanh, sp.log)):
            r = {sp.exp: mpmath.exp, sp.tanh: mpmath.tanh, sp.log: mpmath.log}[e.func](val(e.args[0]))
        else:
            r = mpmath.mpf(sp.Float(e.xreplace({k: sp.Float(str(v), DPS) for k, v in env.items()}).evalf(DPS), DPS)._mpf_)
        cache[e] = r
        return r

    return val(expr)


@functools.lru_cache(maxsize=None)
def local_partials(head, arity: int) -> tuple[tuple[sp.Dummy, ...], tuple[sp.Expr, ...]]:
    """The placeholders a_1..a_n (real) and SymPy's partial derivatives
    d head(a_1..a_n) / d a_i, i = 1..n: the local derivatives of one node."""
    holders = tuple(sp.Dummy(f"a{i}", real=True) for i in range(arity))
    node = head(*holders)
    return holders, tuple(sp.diff(node, a) for a in holders)


def derivative(expr: sp.Expr, w: sp.Symbol, at) -> mpmath.mpf:
    """SymPy's derivative d expr/dw at ``w = at``, in mpmath at the current
    precision, by the chain rule over the distinct subexpressions of ``expr``,
    each once however often it is shared:

        d f(a_1, ..., a_n)/dw = sum_i (df/da_i)(a) * da_i/dw

    over the arguments a_i that contain w, where df/da_i is SymPy's ``diff`` of
    the node's own head applied to placeholders (:func:`local_partials`).
    These are the rules ``sympy.diff(expr, w)`` applies; it writes the result
    out as a tree, in which a subexpression read by k consumers is
    differentiated k times, and the unrolled loss reads each state many times."""
    env = {w: at}
    values: dict = {}
    slopes: dict = {w: mpmath.mpf(1)}
    holds: dict = {w: True}

    def has_w(e) -> bool:
        r = holds.get(e)
        if r is None:
            r = holds[e] = any(has_w(a) for a in e.args)
        return r

    def slope(e):
        r = slopes.get(e)
        if r is None:
            if not has_w(e):
                r = mpmath.mpf(0)
            else:
                try:
                    holders, partials = local_partials(e.func, len(e.args))
                except (TypeError, ValueError):  # a head that does not take expressions as its arguments
                    r = _mp_value(sp.diff(e, w), env)  # (none in the presets): SymPy's diff of the node whole
                else:
                    at_args = {a: _mp_value(x, env, values) for a, x in zip(holders, e.args)}
                    r = mpmath.fsum(_mp_value(partials[i], at_args) * slope(x)
                                    for i, x in enumerate(e.args) if has_w(x))
            slopes[e] = r
        return r

    return slope(expr)


def _fmt(x) -> str:
    return mpmath.nstr(mpmath.mpf(x), DIGITS, min_fixed=-12, max_fixed=12)


@functools.lru_cache(maxsize=16)
def check(derivation) -> UnrolledCheck:
    cell = derivation.cell
    dims = {d: SIZE for d in cell.dims}
    param, index = choose(derivation)
    grad = derivation.gradient_name(param)
    exact = _sequence(derivation, dims)
    with mpmath.workdps(DPS):
        seq = _convert(exact, lambda r: mpmath.mpf(r.p) / r.q)
        steps = _per_step(derivation, seq, grad, index, carry=True)
        truncated = _per_step(derivation, seq, grad, index, carry=False)
        _, grads = ev.run(derivation, seq, ev.MP)
        engine = grads[grad][index]
        total = mpmath.fsum(steps)
        assert abs(total - engine) <= abs(engine) * mpmath.mpf("1e-30") + mpmath.mpf("1e-35")

        w = sp.Symbol("w", real=True)
        symbolic = _convert(exact, lambda r: sp.Float(r, DPS))
        arr = symbolic.params[param].copy()
        arr[index] = w
        symbolic.params[param] = arr
        loss = ev.loss(derivation, symbolic, ev.SYMBOLIC)
        value = exact.params[param][index]
        unrolled = derivative(loss, w, mpmath.mpf(value.p) / value.q)
        scale = max(abs(unrolled), mpmath.mpf("1e-30"))
        if abs(unrolled - engine) > scale * mpmath.mpf(str(TOLERANCE)):
            raise AssertionError(f"{cell.name}: BPTT check failed for {grad}{list(index)}: "
                                 f"engine {engine}, unrolled {unrolled}")
        return UnrolledCheck(
            param=param, grad=grad, index=index, dims=dims, steps=STEPS,
            per_step=tuple(_fmt(v) for v in steps), engine=_fmt(engine), unrolled=_fmt(unrolled),
            truncated=_fmt(mpmath.fsum(truncated)), agree="10^{-25}",
        )

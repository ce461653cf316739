"""Evaluate a derivation on numbers: one step, or a whole sequence with BPTT.

Contract. :func:`evaluate` interprets an array expression of
:mod:`derive.spec.ops` on NumPy arrays of one of three number kinds (a
:class:`Backend`): ``FLOAT`` (float64), ``MP`` (mpmath at the current
``mp.dps``, as object arrays) and ``SYMBOLIC`` (SymPy scalars, as object
arrays). The same walker serves all three, so a formula means the same thing
at every precision.

:func:`run` executes the derivation on a sequence: the forward equations for
t = 1..T, then the backward equations for t = T..1 with ``later(x)`` bound to
x of step t+1 (zero after the last step) and every ``Sum`` over t
accumulated. It returns the loss and the gradient of every parameter, every
step's input and every initial state. This is the reference semantics of a
Derivation; the tests prove it against SymPy's derivative of the unrolled
loss and against finite differences. It is not the fast path (see kernels).
``run(..., truncate=k)`` is truncated BPTT(k) (Williams and Peng): the
gradient of the loss at step t flows back through steps t, ..., t-k+1 only.

:func:`bptt` is the one backward loop of the project: it runs the two laws
of one step (:class:`Laws`) through time, optionally truncated, for this
interpreter, for the kernels of :mod:`derive.numeric.kernels` and for the verifier's
:func:`derive.numeric.judge.backward_steps`; :func:`gradients` sums what it yields.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import mpmath
import numpy as np
import sympy as sp

from derive.errors import DomainError
from derive.spec import functions, ops
from derive.spec.pyprint import equation_text
from derive.engine.rules import LOSS_RULES


@dataclass(frozen=True)
class Backend:
    name: str
    functions: Mapping[Any, Callable]
    number: Callable[[sp.Expr], Any]
    softmax: Callable[[np.ndarray, int], np.ndarray]
    # x**n for an integer n, elementwise (None: Python's ** and 1/x)
    power: Callable[[Any, int], Any] | None = None


def _float_softmax(z, axis):
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _object_softmax(exp, reciprocal=None):
    def softmax(z, axis):
        e = exp(z)
        total = np.sum(e, axis=axis, keepdims=True)
        return e / total if reciprocal is None else reciprocal(e, total)

    return softmax


# The elementwise functions on each kind of number: the rows of derive.spec.functions.
_rows = functions.FUNCTIONS.values()


def _within(row: functions.Function, f: Callable, elementwise: bool) -> Callable:
    """``f``, refusing an argument outside the row's domain (a NaN, or an mpmath
    complex number, is outside too). ``elementwise``: the test runs on float
    arrays at once; otherwise number by number (object arrays of mpmath numbers)."""
    if row.domain is None:
        return f
    condition, inside = row.domain
    if elementwise:
        def test(x):
            x = np.asarray(x, dtype=float)
            return np.isfinite(x) & inside(x)
    else:
        test = np.frompyfunc(lambda x: bool(isinstance(x, mpmath.mpf) and inside(x)), 1, 1)

    def checked(x):
        ok = np.asarray(test(x), dtype=bool)
        if not ok.all():
            bad = np.asarray(x)[~ok].flat[0] if np.ndim(x) else x
            raise DomainError(f"{row.name}(x) needs {condition}, and here x = {_short(bad)}")
        return f(x)

    return checked


def _short(x) -> str:
    try:
        return f"{complex(x):.3g}".strip("()") if isinstance(x, mpmath.mpc) else f"{float(x):.3g}"
    except (TypeError, ValueError):
        return str(x)[:20]


_mp = {row.function: _within(row, np.frompyfunc(row.mpmath, row.arity, 1), elementwise=False)
       for row in _rows}
_sym = {row.function: np.frompyfunc(row.sympy, row.arity, 1) for row in _rows}

FLOAT = Backend(
    "float",
    {row.function: _within(row, row.float64, elementwise=True) for row in _rows},
    lambda x: float(x),
    _float_softmax,
)
MP = Backend("mp", _mp, lambda x: mpmath.mpf(x.p) / x.q if x.is_Rational else mpmath.mpf(str(x)), _object_softmax(_mp[sp.exp]))
SYMBOLIC = Backend("symbolic", _sym, lambda x: x,
                   _object_softmax(_sym[sp.exp], np.frompyfunc(functions.sym_quotient, 2, 1)),
                   np.frompyfunc(functions.sym_power, 2, 1))


def evaluate(expr: sp.Expr, env: Mapping[str, Any], backend: Backend = FLOAT, dims: Mapping[str, int] | None = None):
    """The value of ``expr`` with symbols bound by ``env`` (name -> array)."""
    return compiled(expr, backend, dims)(env)


_COMPILED: dict[tuple, tuple[Backend, Callable[[Mapping[str, Any]], Any]]] = {}


def compiled(expr: sp.Expr, backend: Backend = FLOAT, dims: Mapping[str, int] | None = None
             ) -> Callable[[Mapping[str, Any]], Any]:
    """``expr`` as a function of the environment: the tree walked once into
    nested closures that do, call after call, the operations of the walk in
    the same order (the same numbers, bit for bit), without asking each node
    what it is again. Kept per (expression, backend, dims, mpmath precision):
    the constants of the MP backend are numbers at the precision they were made at."""
    key = (expr, id(backend), tuple(sorted((dims or {}).items())), mpmath.mp.prec)
    hit = _COMPILED.get(key)
    if hit is None or hit[0] is not backend:  # (an id can be reused by a later backend)
        if len(_COMPILED) > 20000:
            _COMPILED.clear()
        hit = _COMPILED[key] = (backend, _compile(expr, backend, dict(dims or {})))
    return hit[1]


def _compile(e: sp.Expr, backend: Backend, dims: Mapping[str, int]) -> Callable[[Mapping[str, Any]], Any]:
    def dim(x: sp.Expr) -> int:
        return int(x.xreplace({s: sp.Integer(dims[s.name]) for s in x.free_symbols}))

    def sub(x):
        return _compile(x, backend, dims)

    if isinstance(e, sp.Symbol):
        name = e.name

        def symbol(env):
            try:
                return env[name]
            except KeyError:
                raise KeyError(f"no value for `{name}`") from None

        return symbol
    if e.is_Number:
        value = backend.number(e)
        return lambda env: value
    if isinstance(e, (sp.Add, sp.Mul)):
        first, *rest = [sub(a) for a in e.args]
        add = isinstance(e, sp.Add)

        def fold(env):
            out = first(env)
            for g in rest:
                out = out + g(env) if add else out * g(env)
            return out

        return fold
    if isinstance(e, sp.Pow):
        base, exp = sub(e.base), e.exp
        if exp.is_Integer:
            n = int(exp)
            if backend.power is not None:
                power = backend.power
                return lambda env: power(base(env), n)
            if n == -1:
                return lambda env: 1 / base(env)
            if n < 0:
                return lambda env: 1 / base(env) ** (-n)
            return lambda env: base(env) ** n
        power = backend.number(exp)
        return lambda env: base(env) ** power
    f = backend.functions.get(e.func)
    if f is not None:
        args = [sub(a) for a in e.args]
        if len(args) == 1:
            only = args[0]
            return lambda env: f(only(env))
        return lambda env: f(*[a(env) for a in args])
    if isinstance(e, ops.matmul):
        x, y = sub(e.args[0]), sub(e.args[1])
        return lambda env: np.matmul(x(env), y(env))
    if isinstance(e, ops.transpose):
        x = sub(e.args[0])
        return lambda env: np.transpose(x(env))
    if isinstance(e, ops.outer):
        x, y = sub(e.args[0]), sub(e.args[1])
        return lambda env: np.outer(x(env), y(env))
    if isinstance(e, ops.concat):
        parts_of = [sub(p) for p in e.args[1:]]
        axis = int(e.args[0])

        def concat(env):
            parts = [p(env) for p in parts_of]
            return np.concatenate(parts, axis=min(axis, np.ndim(parts[0]) - 1))

        return concat
    if isinstance(e, ops.take):
        x_of, axis, start, stop = sub(e.args[0]), int(e.args[1]), dim(e.args[2]), dim(e.args[3])

        def take(env):
            x = x_of(env)
            index = [slice(None)] * np.ndim(x)
            index[min(axis, np.ndim(x) - 1)] = slice(start, stop)
            return x[tuple(index)]

        return take
    if isinstance(e, ops.batch_sum):
        x, axis, keep = sub(e.args[0]), int(e.args[1]), bool(e.args[2])
        return lambda env: np.sum(x(env), axis=axis, keepdims=keep)
    if isinstance(e, ops.softmax):
        x_of, axis = sub(e.args[0]), int(e.args[1])

        def softmax(env):
            x = x_of(env)
            return backend.softmax(x, min(axis, np.ndim(x) - 1))

        return softmax
    if isinstance(e, ops.pick):
        x_of, axis, k = sub(e.args[0]), int(e.args[1]), dim(e.args[2])

        def pick(env):
            x = x_of(env)
            return np.take(x, [k], axis=min(axis, np.ndim(x) - 1))

        return pick
    if isinstance(e, ops.basis):
        axis, ndim, k, n = (dim(a) for a in e.args)
        shape = [1] * ndim
        shape[axis] = n
        at = tuple(k if i == axis else 0 for i in range(ndim))
        zero, one = backend.number(sp.Integer(0)), backend.number(sp.Integer(1))

        def basis(env):
            out = np.zeros(shape, dtype=float if backend is FLOAT else object)
            if backend is not FLOAT:
                out[...] = zero
            out[at] = one
            return out

        return basis
    raise TypeError(f"cannot evaluate `{e.func.__name__}`")


# ---------------------------------------------------------------------------
# sequences


@dataclass
class Sequence:
    """Numbers for one run: parameters, the per-step inputs and loss data
    (``steps[t]`` maps input/target/external-gradient names to arrays), and
    the initial states."""

    params: dict[str, Any]
    steps: list[dict[str, Any]]
    initial: dict[str, Any]
    dims: dict[str, int]


def step_loss(derivation, env: Mapping[str, Any], backend: Backend = FLOAT, dims=None):
    """The loss of one step, summed over units and batch."""
    cell = derivation.cell
    loss = cell.loss
    if loss.kind == "upstream":
        value = env[loss.external] * env[loss.on]
    else:
        shapes = cell.symbols[loss.prediction].shape
        axis = sp.Integer(min(cell.feature_axis, max(len(shapes) - 1, 0)))
        n = shapes[axis] if shapes else sp.Integer(1)
        value = evaluate(_loss_value(loss.kind, loss.prediction, loss.target, axis, loss.unit, n), env, backend, dims)
    return np.sum(value)


@functools.lru_cache(maxsize=256)
def _loss_value(kind: str, prediction: str, target: str, axis: sp.Integer, unit, n: sp.Expr) -> sp.Expr:
    """The expression of one step's loss (built once per head, not once per step)."""
    return LOSS_RULES[kind].value(sp.Symbol(prediction), sp.Symbol(target), axis, unit, n)


def forward(derivation, seq: Sequence, backend: Backend = FLOAT) -> list[dict[str, Any]]:
    """Every step's environment after the forward equations."""
    cell = derivation.cell
    envs = []
    state = dict(seq.initial)
    # each equation's target and compiled right side once per call, not once per step
    program = [(eq, eq.lhs.name if isinstance(eq.lhs, sp.Symbol) else str(eq.lhs), compiled(eq.rhs, backend, seq.dims))
               for eq in derivation.forward]
    for inputs in seq.steps:
        env = {**seq.params, **inputs, **state}
        for eq, target, rhs in program:
            try:
                env[target] = rhs(env)
            except DomainError as exc:
                written = {e.target: e.text for e in cell.equations}.get(str(eq.lhs)) or equation_text(eq)
                raise DomainError(f"{cell.name}, equation `{written}`: {exc} at the random "
                                  "states the numeric checks draw; the forward must be defined for every "
                                  "input and state (e.g. sqrt(softplus(z)) or log(1 + exp(z)))") from None
        envs.append(env)
        state = {link.prev: env[link.out] for link in cell.links}
    return envs


def loss(derivation, seq: Sequence, backend: Backend = FLOAT):
    envs = forward(derivation, seq, backend)
    total = 0
    for env in envs:
        total = total + step_loss(derivation, env, backend, seq.dims)
    return total


def run(derivation, seq: Sequence, backend: Backend = FLOAT, truncate: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(loss, gradients) of the sequence ``seq``.

    ``gradients`` is keyed by the derivation's gradient names
    (``derivation.gradient_name(x)``), not by the arrays' own names: each
    parameter's gradient summed over t (``"dWf"``), each initial state's
    (``"da_prev"``, ``"dc_prev"``: the gradient of the state entering step 0),
    and ``("dxt", t)`` for the input of each step (t from 0). ``truncate=k``:
    BPTT(k), see :func:`bptt`.

    ``seq`` is a :class:`Sequence`: the parameters, one dict of inputs (and
    targets) per step, the initial states and the sizes of the cell's dimensions
    (``derivation.cell.dims``). :func:`random_sequence` draws one::

        d = derive.derive("coursera")
        seq = random_sequence(d, {"n_x": 2, "n_a": 3, "n_y": 2, "m": 4}, 5, np.random.default_rng(0))
        loss, grads = run(d, seq, truncate=2)

    or build it from your arrays, named as the spec names them
    (``d.cell.names("param")``, ``"input"``, ``"target"``, ``"state"``)::

        Sequence(params={"Wf": Wf, ...}, steps=[{"xt": x[:, :, t], "y": y[:, :, t]} for t in range(T)],
                 initial={"a_prev": a0, "c_prev": c0}, dims={"n_x": 2, "n_a": 3, "n_y": 2, "m": 4})
    """
    check_truncate(truncate)
    envs = forward(derivation, seq, backend)
    total = 0
    for env in envs:
        total = total + step_loss(derivation, env, backend, seq.dims)
    laws = interpreter(derivation, backend, seq.dims)
    sweep = bptt(derivation, envs, laws.step, laws.chain, truncate=truncate)
    return total, gradients(derivation, ((t, values) for t, values, _ in sweep))


# ---------------------------------------------------------------------------
# backpropagation through time: one sweep for every evaluator
#
# The interpreter below, the lambdified kernels and the verifier's judge each
# supply the two laws of one step; the sweep runs them from t = T-1 down to 0.
#
#   step(env, later)   every backward equation of one step, ``later`` mapping
#                      x to the value later(x) reads (x of step t+1);
#   chain(env, grads)  the cell alone, given the gradients that reach it from
#                      outside (``derivation.cell_inputs``: da_next, dc_next, ...),
#                      returning at least the gradients of the previous states.
#
# Both are linear in the gradients they are given, which is what lets BPTT(k)
# evaluate the step once, on the summed adjoint, for parameters and inputs.


def check_truncate(truncate) -> None:
    """``truncate`` is None or an int >= 1 (a ValueError says why not)."""
    if truncate is None:
        return
    if isinstance(truncate, bool) or not isinstance(truncate, numbers.Integral):
        raise ValueError(f"truncate must be None or an int >= 1 (the number of steps the gradient of each step's "
                         f"loss flows back through), not {truncate!r}")
    if truncate < 1:
        raise ValueError(f"truncate must be >= 1 (1: no gradient carried between steps; None: full BPTT), "
                         f"not {truncate}")


def state_gradients(derivation) -> dict[str, str]:
    """{d(prev): prev} for every recurrent link: the names ``later(x)`` reads."""
    return {derivation.gradient_name(link.prev): link.prev for link in derivation.cell.links}


def bptt(derivation, envs: list[Mapping[str, Any]], step: Callable, chain: Callable | None = None, *,
         carry: Iterable[str] | None = None, truncate: int | None = None) -> Iterator[tuple[int, dict, dict]]:
    """Backpropagation through time over the forward environments ``envs``.

    Yields ``(t, values, later)`` for t = T-1 .. 0: ``values`` are step t's
    backward values (a parameter's entry is the step's contribution to its
    Sum; at t = 0 the state gradients are those of the initial states) and
    ``later`` the values its ``later(x)`` read. After the last step later(x)
    is zeros shaped like the state x is the gradient of.

    ``carry``: the names x whose later(x) is carried (all by default; the
    others read zeros). ``truncate=k``: Williams and Peng's BPTT(k). The
    gradient of the loss at step t flows back through steps t, t-1, ...,
    t-k+1 only; k = 1 carries nothing, None or k >= T is full BPTT. Each
    loss's gradient is followed as a chain of its own (at most k live), fed to
    ``chain`` with the loss's external gradient entering at its own step only;
    ``step`` runs once per t on the chains' sum, so parameter and input
    gradients sum every surviving contribution and the initial states get
    those of the losses at t < k.
    """
    check_truncate(truncate)  # here, not at the first next(): a bad argument fails where it is given
    if truncate is not None and 1 < truncate < len(envs) and chain is None:
        raise ValueError("bptt: truncating to 1 < k < T steps needs the cell's `chain` law")
    return _sweep(derivation, envs, step, chain, None if carry is None else set(carry), truncate)


def _sweep(derivation, envs, step, chain, carried, truncate) -> Iterator[tuple[int, dict, dict]]:
    every = state_gradients(derivation)
    prev_of = {g: p for g, p in every.items() if carried is None or g in carried}
    T = len(envs)
    chains: dict[int, dict[str, Any]] = {}  # origin step -> its gradients of the states, from step t+1
    for t in reversed(range(T)):
        env = envs[t]
        later = {g: _summed([c[g] for c in chains.values() if g in c], env[p]) for g, p in every.items()}
        values = step(env, later)
        yield t, values, later
        if truncate is None or truncate >= T:
            chains = {t: {g: values[g] for g in prev_of}}  # one chain: the sum is all there is
        elif truncate > 1 and t > 0:
            chains = _advance(derivation, env, values, chains, chain, t, truncate, prev_of)
        else:
            chains = {}


def _summed(parts: list, like):
    if not parts:
        return np.zeros_like(like)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def _advance(derivation, env, values, chains, chain, t: int, k: int, prev_of) -> dict[int, dict[str, Any]]:
    """The chains alive at step t-1: every origin whose gradient has run
    through fewer than k steps, the loss of step t among them."""
    cell = derivation.cell
    links = {derivation.gradient_name(link.prev): link for link in cell.links}
    external = cell.loss.external
    own = {}  # what the loss of step t sends into the cell: its external gradient, on the output it reads
    for link in cell.links:
        if link.out == cell.loss.on:
            own[link.grad] = values[external] if external in values else env[external]
        else:
            own[link.grad] = np.zeros_like(env[link.prev])
    feeds = {t: own}
    for origin, grads in chains.items():
        feeds[origin] = {link.grad: grads.get(g, np.zeros_like(env[link.prev])) for g, link in links.items()}
    alive = {}
    for origin, feed in feeds.items():
        # the loss of step `origin` has flowed through origin - t + 1 steps; it goes on to t-1 while fewer than k
        if origin - t + 1 < k:
            through_cell = chain(env, feed)
            alive[origin] = {g: through_cell[g] for g in prev_of}
    return alive


def gradients(derivation, steps: Iterable[tuple[int, Mapping[str, Any]]]) -> dict[Any, Any]:
    """The gradients of a whole sequence from ``(t, values)`` of every step (in
    the order :func:`bptt` yields them): parameters (summed over t), initial
    states (from t = 0) and ``(input gradient, t)``."""
    cell = derivation.cell
    sums = [str(eq.lhs) for eq in derivation.backward if isinstance(eq.rhs, sp.Sum)]
    inputs = [derivation.gradient_name(x) for x in cell.names("input")]
    out: dict[Any, Any] = {}
    first = None
    for t, values in steps:
        for name in sums:
            out[name] = out[name] + values[name] if name in out else values[name]
        for g in inputs:
            out[(g, t)] = values[g]
        first = values if t == 0 else first
    for g in state_gradients(derivation):
        out[g] = first[g]
    return out


LATER = "later__"  # later(x) is read from the name later__x


def _later_free(rhs: sp.Expr) -> sp.Expr:
    return rhs.xreplace({a: sp.Symbol(LATER + str(a.args[0])) for a in rhs.atoms(ops.later)})


@dataclass(frozen=True)
class Laws:
    """The two laws of one backward step (see :func:`bptt`)."""

    step: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]
    chain: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]


def chain_equations(derivation, kinds: tuple[str, ...] = ("cell", "state")) -> list:
    """The backward equations of the ``chain`` law: the cell's, from the
    gradients that reach it from outside down to the state gradients."""
    outside = set(derivation.cell_inputs)
    out, glued = [], set()
    for eq in derivation.backward:
        name = str(eq.lhs)
        if name in outside and name not in glued:  # the gluing equation (dc = later(dc_prev)): the chain's input
            glued.add(name)
            continue
        # a state gradient the cell adds to (dc = dc + dh*o/n when h reads c) stays in the chain
        if derivation.kind(name) in kinds:
            out.append(eq)
    return out


def interpreter(derivation, backend: Backend = FLOAT, dims: Mapping[str, int] | None = None) -> Laws:
    """The laws of one step, by evaluating the backward equations with
    :func:`evaluate` (``later(x)`` read from a name of its own)."""
    equations = [(str(eq.lhs), _later_free(eq.rhs.function if isinstance(eq.rhs, sp.Sum) else eq.rhs))
                 for eq in derivation.backward]
    chained = {id(eq) for eq in chain_equations(derivation)}
    in_cell = [pair for pair, eq in zip(equations, derivation.backward) if id(eq) in chained]

    def run_equations(eqs, env):
        env = dict(env)
        values = {}
        for name, rhs in eqs:
            values[name] = env[name] = evaluate(rhs, env, backend, dims)
        return values

    def step(env, later):
        return run_equations(equations, {**env, **{LATER + g: v for g, v in later.items()}})

    def chain(env, grads):
        return run_equations(in_cell, {**env, **grads})

    return Laws(step, chain)


def concrete_shape(shape, dims: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(int(d.xreplace({s: sp.Integer(dims[s.name]) for s in d.free_symbols})) for d in shape)


def random_sequence(derivation, dims: Mapping[str, int], steps: int, rng: np.random.Generator,
                    scale: float = 0.5) -> Sequence:
    """A random, consistent sequence in float64: parameters, inputs, initial
    states, targets (one-hot rows of a softmax head, random reals otherwise)
    and, for an upstream head, the given gradients."""
    cell = derivation.cell
    missing = [d for d in cell.dims if d not in dims]
    if missing:
        raise ValueError(f"{cell.name}: give sizes for the dimensions {', '.join(missing)}")

    def draw(name):
        return rng.normal(0.0, scale, concrete_shape(cell.symbols[name].shape, dims))

    params = {n: draw(n) for n in cell.names("param")}
    initial = {n: draw(n) for n in cell.names("state")}
    per_step = []
    for _ in range(steps):
        inputs = {n: draw(n) for n in cell.names("input")}
        for n in cell.names("target"):
            if cell.loss.kind == "cross_entropy":
                shape = concrete_shape(cell.symbols[n].shape, dims)
                axis = min(cell.feature_axis, len(shape) - 1)
                p = rng.random(shape)
                inputs[n] = p / p.sum(axis=axis, keepdims=True)  # soft labels: any distribution
            else:
                inputs[n] = draw(n)
        if cell.loss.kind == "upstream":
            inputs[cell.loss.external] = draw(cell.loss.external)
        per_step.append(inputs)
    return Sequence(params, per_step, initial, dict(dims))

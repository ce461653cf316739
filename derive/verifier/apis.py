"""The APIs ``lstm-derive check FILE`` knows, as a table: how to call a user's forward and backward.

Contract. Runs inside the child process (:mod:`derive.verifier.child`) and needs
only NumPy. Each row of :data:`ROWS` finds, in the user's loaded modules, the
functions or classes of one API family by name and signature, and builds for
each forward/backward pair a :class:`Problem`: random inputs at the chosen
sizes, ``forward(inputs) -> (outputs, cache)`` calling the user's own forward
(so the backward gets the user's own cache, whatever its layout), and
``backward(upstream, cache) -> {returned key: gradient}`` calling the user's
backward. Nothing here judges: :mod:`derive.verifier.child` differentiates the
forward numerically, and the parent compares.

Sizes are the letters ``D`` (input features), ``H`` (hidden), ``N`` (batch), ``T``
(steps), ``V`` (vocabulary / output); a shape is written with them
(``("H", "H+D")``, ``("D", "4H")``). To add an API, add a row: a
:class:`FunctionPairs` for functions that return their cache, or another class
with ``find(names)`` and ``build(pair, dims, rng)``.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class Problem:
    """One forward/backward pair, ready to be refereed."""

    family: str
    preset: str  # the bundled cell this API's functions claim to compute
    forward_name: str
    backward_name: str
    sequence: bool
    inputs: dict[str, np.ndarray]  # the differentiable inputs, by the API's names
    forward: Callable[[dict], tuple[dict, Any]]  # -> ({output: array}, cache)
    backward: Callable[[dict, Any], dict]  # (upstream {output: gradient}, cache) -> {input name: (key, gradient)}
    required: list[str]  # inputs whose gradient the API's backward returns
    notes: list[str] = field(default_factory=list)
    loss_output: bool = False  # the forward returns a scalar loss: the upstream gradient is 1
    api: str = ""  # what recognition knows this pair as, when not by its forward's name
    given: dict = field(default_factory=dict)  # what else the forward was called with (indices, states), for recognition


def size(spec: str, dims: dict[str, int]) -> int:
    """``"4H"``, ``"H+D"``, ``"H"`` -> an int."""
    total = 0
    for part in spec.split("+"):
        part = part.strip()
        if part.isdigit():
            total += int(part)
            continue
        m = re.fullmatch(r"(\d*)([A-Z])", part)
        if not m:
            raise ValueError(spec)
        total += int(m.group(1) or 1) * dims[m.group(2)]
    return total


def shape(spec: tuple, dims: dict[str, int]) -> tuple[int, ...]:
    return tuple(size(s, dims) for s in spec)


def returned_names(fn) -> list[str] | None:
    """The names in the last ``return a, b, c`` of ``fn``'s source, or None."""
    try:
        tree = ast.parse(inspect.getsource(fn).strip() if not hasattr(fn, "__derive_src__") else fn.__derive_src__)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    names = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
            names = [n.id if isinstance(n, ast.Name) else ast.unparse(n) for n in node.value.elts]
    return names


def free_names(fn) -> set[str]:
    """Names ``fn`` reads that it never assigns: its globals."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return set()
    out = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            out |= set(const.co_names)
    return out


def params(fn) -> list[str]:
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        return []


def named_input(name: str, known) -> str | None:
    """The input a returned name is the gradient of, if ``known`` has it: ``dWh``
    names the gradient of ``Wh``; a name without the ``d`` names its input itself."""
    bare = name[1:] if name.startswith("d") else name
    return bare if bare in known else None


def map_returned(result, order: tuple[str, ...], fn, known: set[str]) -> dict[str, tuple[str, Any]]:
    """A backward's result -> {input name: (the key it came under, value)}.
    A dict by its keys (``dWf`` -> ``Wf``). A tuple of the API's length by the
    API's order: callers unpack it by position, so ``return dx, dWh, dWx`` where
    the API has ``dx, dWx, dWh`` hands dWh to whoever expects dWx, whatever its
    name. A tuple of an API without an order, or of another length, by the names
    of its return statement where they name an input, else by position."""
    out: dict[str, tuple[str, Any]] = {}

    def target(key: str) -> str | None:
        return named_input(re.sub(r"\.T$", "", re.sub(r"^self\.", "", key)), known)

    if isinstance(result, dict):
        for key, value in result.items():
            t = target(str(key))
            out[t or f"?{key}"] = (str(key), value)
        return out
    values = list(result) if isinstance(result, (tuple, list)) else [result]
    names = returned_names(fn) or []
    if len(names) != len(values):
        names = []
    if order and len(values) == len(order):
        for i, value in enumerate(values):
            key = names[i] if names else f"output {i + 1}"
            out[order[i]] = (key, value)
        return out
    claimed = {target(n) for n in names} - {None}
    for i, value in enumerate(values):
        t = target(names[i]) if names else None
        key = names[i] if names else f"output {i + 1}"
        if t is None and i < len(order) and order[i] not in claimed:
            t = order[i]  # an expression or another spelling: the API's order decides
        out[t or f"?{key}"] = (key, value)
    return out


# ---------------------------------------------------------------------------
# functions that return (outputs..., cache): the course's and CS231n's


@dataclass(frozen=True)
class FunctionPairs:
    """A forward that returns its outputs and a cache, and a backward that
    takes the upstream gradients and that cache."""

    family: str
    preset: str
    forward: str
    backward: str
    args: tuple  # (name, shape) per forward parameter; a dict parameter: (name, {key: shape})
    outputs: tuple  # what the forward returns, in order: an output name, "cache", or None (ignored)
    upstream: tuple  # the outputs whose gradients the backward takes first, in order
    grads: tuple  # what the backward returns, in order (input names)
    sequence: bool = False
    zero: tuple = ()  # states the forward starts at zero itself
    extra_globals: bool = False  # notebook code may read parameters as globals

    def find(self, names: dict) -> list[tuple]:
        f, b = names.get(self.forward), names.get(self.backward)
        if not (callable(f) and callable(b)):
            return []
        if len(params(f)) != len(self.args) or len(params(b)) != len(self.upstream) + 1:
            return []
        return [(self.forward, self.backward)]

    def build(self, pair, names: dict, dims: dict, rng) -> Problem:
        f, b = names[pair[0]], names[pair[1]]
        inputs: dict[str, np.ndarray] = {}
        containers: dict[str, tuple] = {}
        for name, spec in self.args:
            if isinstance(spec, dict):
                containers[name] = tuple(spec)
                for key, s in spec.items():
                    inputs[key] = rng.normal(0.0, 0.6, shape(s, dims))
            else:
                inputs[name] = rng.normal(0.0, 0.6, shape(spec, dims))
        notes = []
        if self.extra_globals:
            notes += _set_missing_globals(b, {k for c in containers.values() for k in c}, inputs, pair[1])

        def call_forward(vals: dict):
            args = []
            for name, spec in self.args:
                if isinstance(spec, dict):
                    args.append({k: vals[k] for k in spec})
                else:
                    args.append(vals[name])
            result = f(*args)
            seq = list(result) if isinstance(result, tuple) else [result]
            if len(seq) != len(self.outputs):
                raise _ApiError(f"{pair[0]} returned {len(seq)} value(s), the API has {len(self.outputs)}: "
                                f"{', '.join(o or '…' for o in self.outputs)}")
            outs, cache = {}, None
            for name, value in zip(self.outputs, seq):
                if name == "cache":
                    cache = value
                elif name:
                    outs[name] = value
            return outs, cache

        def call_backward(up: dict, cache):
            result = b(*[up[o] for o in self.upstream], cache)
            return map_returned(result, self.grads, b, set(inputs))

        required = [g for g in self.grads if g in inputs]
        if self.zero:
            notes.append(f"{pair[0]} starts {', '.join(self.zero)} at zero itself")
        return Problem(self.family, self.preset, pair[0], pair[1], self.sequence, inputs, call_forward,
                       call_backward, required, notes)


class _ApiError(Exception):
    """The user's function does not have the API's shape (told, not a crash)."""


def _set_missing_globals(fn, wanted: set, inputs: dict, fname: str) -> list[str]:
    """Notebook code reading the parameters as globals (set by the notebook's
    test cells, which do not run here): give them the values of the parameters."""
    g = getattr(fn, "__globals__", None)
    if g is None:
        return []
    missing = sorted(n for n in free_names(fn) if n in wanted and n not in g)
    for n in missing:
        g[n] = inputs[n]
    if not missing:
        return []
    return [f"{fname} reads {', '.join(missing)} as globals (the notebook's variables), not from its arguments; "
            "they were set to the parameters' values"]


_CO_RNN = {"Waa": ("H", "H"), "Wax": ("H", "D"), "Wya": ("V", "H"), "ba": ("H", "1"), "by": ("V", "1")}
_CO_LSTM = {**{k: s for g in "fico" for k, s in ((f"W{g}", ("H", "H+D")), (f"b{g}", ("H", "1")))},
            "Wy": ("V", "H"), "by": ("V", "1")}

ROWS: list = [
    # Coursera "Building a Recurrent Neural Network Step by Step" (the `coursera_rnn` and `coursera` presets)
    FunctionPairs("coursera", "coursera_rnn", "rnn_cell_forward", "rnn_cell_backward",
                  (("xt", ("D", "N")), ("a_prev", ("H", "N")), ("parameters", _CO_RNN)),
                  ("a_next", None, "cache"), ("a_next",), ("xt", "a_prev", "Wax", "Waa", "ba"),
                  extra_globals=True),
    FunctionPairs("coursera", "coursera_rnn", "rnn_forward", "rnn_backward",
                  (("x", ("D", "N", "T")), ("a0", ("H", "N")), ("parameters", _CO_RNN)),
                  ("a", None, "cache"), ("a",), ("x", "a0", "Wax", "Waa", "ba"), sequence=True, extra_globals=True),
    FunctionPairs("coursera", "coursera", "lstm_cell_forward", "lstm_cell_backward",
                  (("xt", ("D", "N")), ("a_prev", ("H", "N")), ("c_prev", ("H", "N")), ("parameters", _CO_LSTM)),
                  ("a_next", "c_next", None, "cache"), ("a_next", "c_next"),
                  ("xt", "a_prev", "c_prev", "Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo"), extra_globals=True),
    FunctionPairs("coursera", "coursera", "lstm_forward", "lstm_backward",
                  (("x", ("D", "N", "T")), ("a0", ("H", "N")), ("parameters", _CO_LSTM)),
                  ("a", None, None, "cache"), ("a",),
                  ("x", "a0", "Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo"), sequence=True, zero=("c0",),
                  extra_globals=True),
    # CS231n assignment 3, rnn_layers.py (batch in rows, Wx (D, H) or (D, 4H) with the gates stacked)
    FunctionPairs("cs231n", "elman", "rnn_step_forward", "rnn_step_backward",
                  (("x", ("N", "D")), ("prev_h", ("N", "H")), ("Wx", ("D", "H")), ("Wh", ("H", "H")), ("b", ("H",))),
                  ("next_h", "cache"), ("next_h",), ("x", "prev_h", "Wx", "Wh", "b")),
    FunctionPairs("cs231n", "elman", "rnn_forward", "rnn_backward",
                  (("x", ("N", "T", "D")), ("h0", ("N", "H")), ("Wx", ("D", "H")), ("Wh", ("H", "H")), ("b", ("H",))),
                  ("h", "cache"), ("h",), ("x", "h0", "Wx", "Wh", "b"), sequence=True),
    FunctionPairs("cs231n", "pytorch", "lstm_step_forward", "lstm_step_backward",
                  (("x", ("N", "D")), ("prev_h", ("N", "H")), ("prev_c", ("N", "H")), ("Wx", ("D", "4H")),
                   ("Wh", ("H", "4H")), ("b", ("4H",))),
                  ("next_h", "next_c", "cache"), ("next_h", "next_c"), ("x", "prev_h", "prev_c", "Wx", "Wh", "b")),
    FunctionPairs("cs231n", "pytorch", "lstm_forward", "lstm_backward",
                  (("x", ("N", "T", "D")), ("h0", ("N", "H")), ("Wx", ("D", "4H")), ("Wh", ("H", "4H")),
                   ("b", ("4H",))),
                  ("h", "cache"), ("h",), ("x", "h0", "Wx", "Wh", "b"), sequence=True, zero=("c0",)),
]


# ---------------------------------------------------------------------------
# min-char-rnn: lossFun(inputs, targets, hprev[, cprev]) over module globals

# The names code uses for the sizes, by letter: a module constant of one of
# these names that the checked code reads sets that size.
SIZE_NAMES: dict[str, tuple[str, ...]] = {
    "D": ("n_x", "x_dim", "input_dim", "input_size", "in_dim", "D"),
    "H": ("n_a", "n_h", "h_dim", "hidden_dim", "hidden_size", "mem_cell_ct", "H"),
    "N": ("m", "batch_size", "N"),
    "T": ("T_x", "seq_length", "seq_len", "T"),
    "V": ("n_y", "vocab_size", "V"),
}


@dataclass(frozen=True)
class ScriptLoss:
    """karpathy's min-char-rnn and its learners' copies: ``lossFun`` runs the
    forward and the backward in one call over weights that are module globals
    (set at top level from the data's vocabulary, so never run here: the
    assignments are run again at the chosen sizes, the arrays then made random)."""

    family: str = "minchar"
    preset: str = "elman"
    function: str = "lossFun"

    def find(self, names: dict) -> list[tuple]:
        fn = names.get(self.function)
        if not callable(fn) or params(fn)[:2] != ["inputs", "targets"] or len(params(fn)) not in (3, 4):
            return []
        return [(self.function, self.function)]

    def build(self, pair, names: dict, dims: dict, rng) -> Problem:
        fn = names[self.function]
        g = fn.__globals__
        deferred = dict(g.get("__derive_deferred__", {}))
        read = free_names(fn)
        sizes = {s for spellings in SIZE_NAMES.values() for s in spellings}
        needed, todo = set(), [n for n in read if n in deferred and n not in sizes]
        read_by_needed: set[str] = set()
        while todo:
            n = todo.pop()
            if n in needed:
                continue
            needed.add(n)
            try:
                used = [x.id for x in ast.walk(ast.parse(deferred[n])) if isinstance(x, ast.Name)]
            except SyntaxError:
                used = []
            read_by_needed.update(used)
            todo += [u for u in used if u in deferred and u not in sizes]
        for letter, spellings in SIZE_NAMES.items():
            for s in spellings:
                if s in read_by_needed or s in read:
                    g[s] = dims[letter]
        for n, src in deferred.items():  # file order
            if n in needed:
                exec(compile(src, f"<{n}>", "exec"), g)  # the user's own top-level line, in the child
        inputs = {n: rng.normal(0.0, 0.3, np.shape(g[n])) for n in sorted(read)
                  if isinstance(g.get(n), np.ndarray) and g[n].dtype.kind == "f"}
        if not inputs:
            raise _ApiError(f"{self.function} reads no weight arrays from module globals")
        V = next((g[s] for s in SIZE_NAMES["V"] if isinstance(g.get(s), int)), dims["V"])
        T = dims["T"]
        xs = [int(i) for i in rng.integers(0, V, T)]
        ys = [int(i) for i in rng.integers(0, V, T)]
        states = [rng.normal(0.0, 0.5, (dims["H"], 1)) for _ in params(fn)[2:]]

        def call_forward(vals: dict):
            for n, v in vals.items():
                g[n] = v
            result = fn(list(xs), list(ys), *[s.copy() for s in states])
            if not isinstance(result, tuple) or not result:
                raise _ApiError(f"{self.function} should return (loss, gradients..., last state)")
            return {"loss": np.asarray(result[0], dtype=float)}, result

        def call_backward(_up: dict, cache):
            return map_returned(cache, (), fn, set(inputs))

        required = sorted(inputs)
        notes = [f"{self.function}: inputs and targets as character indices, {len(states)} carried state(s) given; "
                 "the weights are its module globals"]
        p = Problem(self.family, self.preset, self.function, self.function, True, inputs, call_forward, call_backward,
                    required, notes, loss_output=True, api=self.function,
                    given={"inputs": xs, "targets": ys, "states": [s.tolist() for s in states]})
        return p


def _self_reads(fn) -> list[str]:
    """The attributes ``self.X`` a method reads, in order of appearance."""
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return []
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and node.attr not in out:
            out.append(node.attr)
    return out


@dataclass(frozen=True)
class MethodLoss:
    """min-char-rnn reorganised as a class (``RNN(vocab_size, hidden_size,
    learning_rate).train(inputs, targets, vocab_size, hprev)``): a method whose
    first arguments are ``inputs, targets`` runs the forward and the backward
    in one call over weights that are attributes of ``self``. The object is
    built from the sizes its ``__init__`` names (:data:`SIZE_NAMES`; a float
    argument such as a learning rate gets 0.1, an argument with a default keeps
    it); the method's other arguments are sizes by name, else carried states."""

    family: str = "minchar"
    preset: str = "minchar"

    def find(self, names: dict) -> list[tuple]:
        out = []
        for cname, cls in names.items():
            if not isinstance(cls, type) or getattr(cls, "__module__", "") == "builtins":
                continue
            for mname, meth in vars(cls).items():
                if callable(meth) and params(meth)[1:3] == ["inputs", "targets"] and 3 <= len(params(meth)) <= 6:
                    out.append((f"{cname}.{mname}", f"{cname}.{mname}"))
        return out

    def build(self, pair, names: dict, dims: dict, rng) -> Problem:
        cname, mname = pair[0].split(".")
        cls = names[cname]
        letter_of = {s: letter for letter, spellings in SIZE_NAMES.items() for s in spellings}
        args = []
        for prm in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if prm.name in letter_of:
                args.append(dims[letter_of[prm.name]])
            elif prm.default is not inspect.Parameter.empty:
                break
            elif prm.annotation in (float, "float") or "rate" in prm.name:
                args.append(0.1)
            else:
                raise _ApiError(f"{cname}({prm.name}=...): no size of that name to build it with")
        probe = cls(*args)
        meth = getattr(cls, mname)
        inputs = {a: rng.normal(0.0, 0.3, np.shape(getattr(probe, a))) for a in _self_reads(meth)
                  if isinstance(getattr(probe, a, None), np.ndarray) and getattr(probe, a).dtype.kind == "f"}
        if not inputs:
            raise _ApiError(f"{pair[0]} reads no weight arrays from self")
        V, T = next((v for k, v in vars(probe).items() if k in SIZE_NAMES["V"] and isinstance(v, int)), dims["V"]), dims["T"]
        xs = [int(i) for i in rng.integers(0, V, T)]
        ys = [int(i) for i in rng.integers(0, V, T)]
        rest = params(meth)[3:]
        states = {n: rng.normal(0.0, 0.5, (dims["H"], 1)) for n in rest if n not in letter_of}

        def call_forward(vals: dict):
            obj = cls(*args)
            for n, v in vals.items():
                setattr(obj, n, v)
            extra = [dims[letter_of[n]] if n in letter_of else states[n].copy() for n in rest]
            result = getattr(obj, mname)(list(xs), list(ys), *extra)
            if not isinstance(result, tuple) or not result:
                raise _ApiError(f"{pair[0]} should return (loss, gradients..., last state)")
            return {"loss": np.asarray(result[0], dtype=float)}, result

        def call_backward(_up: dict, cache):
            return map_returned(cache, (), meth, set(inputs))

        notes = [f"{cname}({', '.join(map(str, args))}).{mname}: inputs and targets as character indices, "
                 f"{len(states)} carried state(s) given; the weights are attributes of self"]
        return Problem(self.family, self.preset, pair[0], pair[1], True, inputs, call_forward, call_backward,
                       sorted(inputs), notes, loss_output=True, api="lossFun",
                       given={"inputs": xs, "targets": ys, "states": [s.tolist() for s in states.values()]})


# ---------------------------------------------------------------------------
# layer classes: forward/backward methods, state kept on self


@dataclass(frozen=True)
class LayerClasses:
    """Classes with ``forward`` and ``backward`` methods: built from weight
    arrays (``RNN(Wx, Wh, b)``, gradients in ``self.grads`` in the order of
    ``self.params``, as in "Deep Learning from Scratch 2"), or from sizes
    (``GRU_Cell(in_dim, hidden_dim)``, the weights as attributes ``self.Wzh``
    and their gradients as ``self.dWzh``). Batch in rows; the stacked width of
    the weights is read from the class name (LSTM 4H, GRU 3H, else H)."""

    family: str = "class"

    def find(self, names: dict) -> list[tuple]:
        out = []
        for name, obj in names.items():
            if isinstance(obj, type) and callable(getattr(obj, "forward", None)) \
                    and callable(getattr(obj, "backward", None)) and getattr(obj, "__module__", "") != "builtins":
                init = params(obj.__init__)[1:]
                fwd = params(obj.forward)[1:]
                sizes = {s for spellings in SIZE_NAMES.values() for s in spellings}
                by_sizes = len(init) == 2 and all(p in sizes or "dim" in p or "size" in p for p in init)
                if (len(init) == 3 or by_sizes) and 1 <= len(fwd) <= 3:
                    out.append((name, name))
        return out

    def build(self, pair, names: dict, dims: dict, rng) -> Problem:
        cls = names[pair[0]]
        init = params(cls.__init__)[1:]
        fwd = params(cls.forward)[1:]
        k = 4 if "LSTM" in cls.__name__.upper() else 3 if "GRU" in cls.__name__.upper() else 1
        by_sizes = len(init) == 2
        D, H, N, T = dims["D"], dims["H"], dims["N"], dims["T"]
        inputs: dict[str, np.ndarray] = {}
        if len(fwd) == 1:  # a whole sequence: xs (N, T, D), the state starts at zero
            inputs[fwd[0]] = rng.normal(0.0, 0.6, (N, T, D))
            preset = {4: "pytorch", 3: "gru"}.get(k, "elman")
        else:
            inputs[fwd[0]] = rng.normal(0.0, 0.6, (D,) if by_sizes else (N, D))
            for s in fwd[1:]:
                inputs[s] = rng.normal(0.0, 0.6, (H,) if by_sizes else (N, H))
            preset = {4: "pytorch", 3: "gru"}.get(k, "elman")
        weight_names: list[str] = []
        if by_sizes:
            probe = cls(D, H)
            for attr, value in sorted(vars(probe).items()):
                if isinstance(value, np.ndarray) and value.dtype.kind == "f" and isinstance(
                        getattr(probe, "d" + attr, None), np.ndarray):
                    inputs[attr] = rng.normal(0.0, 0.6, value.shape)
                    weight_names.append(attr)
        else:
            for s, shp in zip(init, ((D, k * H), (H, k * H), (k * H,))):
                inputs[s] = rng.normal(0.0, 0.6, shp)
                weight_names.append(s)

        def make(vals):
            if by_sizes:
                obj = cls(D, H)
                for w in weight_names:
                    setattr(obj, w, vals[w])
                return obj
            return cls(*[vals[w] for w in weight_names])

        outs_names = ["h", "c"] if len(fwd) == 3 else ["h"]

        def call_forward(vals: dict):
            obj = make(vals)
            result = obj.forward(*[vals[s] for s in fwd])
            seq = list(result) if isinstance(result, tuple) else [result]
            return {n: np.asarray(v) for n, v in zip(outs_names, seq)}, obj

        def call_backward(up: dict, obj):
            try:
                result = obj.backward(*[up[n] for n in outs_names])
            except Exception:
                if not by_sizes or any(np.ndim(up[n]) != 1 for n in outs_names):
                    raise
                # a one-example cell whose backward takes its gradient as a row (1, H)
                result = obj.backward(*[up[n][None, :] for n in outs_names])
            got = map_returned(result, tuple(fwd), obj.backward, set(fwd))
            if by_sizes:
                for w in weight_names:
                    got[w] = ("self.d" + w, getattr(obj, "d" + w))
            else:
                grads = getattr(obj, "grads", None)
                if isinstance(grads, (list, tuple)) and len(grads) == len(weight_names):
                    for w, v in zip(weight_names, grads):
                        got[w] = (f"self.grads[{weight_names.index(w)}]", v)
            return got

        notes = [f"{cls.__name__} built from {'its sizes' if by_sizes else 'weights ' + ', '.join(weight_names)}"
                 + (" (state starts at zero)" if len(fwd) == 1 else "")]
        api = "" if by_sizes else {(4, 3): "stacked_lstm_step", (3, 2): "stacked_gru_step", (1, 2): "rnn_step",
                                   (4, 1): "stacked_lstm_seq", (3, 1): "stacked_gru_seq",
                                   (1, 1): "rnn_seq"}.get((k, len(fwd)), "")
        return Problem(self.family, preset, f"{cls.__name__}.forward", f"{cls.__name__}.backward", len(fwd) == 1,
                       inputs, call_forward, call_backward, list(inputs), notes, api=api)


# ---------------------------------------------------------------------------
# nicodjimenez/lstm: LstmNode(param, state).bottom_data_is(x, s_prev, h_prev) and
# top_diff_is(top_diff_h, top_diff_s), gradients accumulated into param.*_diff


@dataclass(frozen=True)
class NodeClasses:
    """A node object wired to a parameter object and a state object: the forward
    and the backward are methods that store their results on those objects."""

    family: str = "nicodjimenez"
    preset: str = "nicodjimenez"
    node: str = "LstmNode"
    param: str = "LstmParam"
    state: str = "LstmState"
    forward: str = "bottom_data_is"
    backward: str = "top_diff_is"

    def find(self, names: dict) -> list[tuple]:
        node = names.get(self.node)
        if all(isinstance(names.get(c), type) for c in (self.node, self.param, self.state)) \
                and callable(getattr(node, self.forward, None)) and callable(getattr(node, self.backward, None)):
            return [(f"{self.node}.{self.forward}", f"{self.node}.{self.backward}")]
        return []

    def build(self, pair, names: dict, dims: dict, rng) -> Problem:
        Node, Param, State = names[self.node], names[self.param], names[self.state]
        H, D = dims["H"], dims["D"]

        def make(cls, *args):
            # LstmParam(H, D) today; LstmParam() in early versions, sized by module constants (mem_cell_ct, x_dim)
            return cls(*args[:len(params(cls))])

        probe = make(Param, H, D)
        weights = [a for a, v in sorted(vars(probe).items()) if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                   and isinstance(getattr(probe, a + "_diff", None), np.ndarray)]
        inputs = {"x": rng.normal(0.0, 0.6, (D,)), "s_prev": rng.normal(0.0, 0.6, (H,)),
                  "h_prev": rng.normal(0.0, 0.6, (H,)),
                  **{w: rng.normal(0.0, 0.6, np.shape(getattr(probe, w))) for w in weights}}

        def call_forward(vals: dict):
            param = make(Param, H, D)
            for w in weights:
                setattr(param, w, vals[w])
            node = make(Node, param, make(State, H, D))  # an early LSTM(param) makes its own state
            getattr(node, self.forward)(vals["x"], vals["s_prev"], vals["h_prev"])
            return {"h": np.asarray(node.state.h), "s": np.asarray(node.state.s)}, node

        def call_backward(up: dict, node):
            getattr(node, self.backward)(up["h"], up["s"])
            got = {w: (f"param.{w}_diff", getattr(node.param, w + "_diff")) for w in weights}
            for name, target in (("bottom_diff_x", "x"), ("bottom_diff_h", "h_prev"), ("bottom_diff_s", "s_prev")):
                for holder, where in ((node.state, "state"), (node, "self")):
                    if isinstance(getattr(holder, name, None), np.ndarray):
                        got[target] = (f"{where}.{name}", getattr(holder, name))
                        break
            return got

        sized = "(H, D)" if params(Param) else "()"
        state = f", {self.state}{'(H, D)' if params(State) else '()'}" if len(params(Node)) > 1 else ""
        notes = [f"{self.node}({self.param}{sized}{state}); the weights' gradients read from "
                 f"{self.param}.*_diff, which start at zero"]
        return Problem(self.family, self.preset, pair[0], pair[1], False, inputs, call_forward, call_backward,
                       list(inputs), notes)


ROWS += [ScriptLoss(), MethodLoss(), LayerClasses(), NodeClasses(),
         NodeClasses(node="LSTM")]  # nicodjimenez/lstm's first commits: class LSTM, sizes in module constants

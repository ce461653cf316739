"""The verifier: is a hand-derived formula, or a backward function, right — and
if not, which term is wrong?

Contract.

``verify(preset, quantity, formula, syntax="python" | "latex", loss=None)``
reads ``formula`` (Python: the formula language of :mod:`derive.expr` with the
notation's names and aliases; LaTeX: :mod:`derive.latex_reader`) for the
backward quantity ``quantity`` of the preset or spec file, and returns a
:class:`Verdict`: ``ok``, the maximum relative error, the diagnosis (a list of
:class:`~derive.diagnose.Finding`), a message. ``quantity`` may be left out
when the formula has a left side (``"dft = ..."``); when both are given they
must agree. User text is read by whitelisted parsers only, never by ``eval``,
``exec``, ``sympify``, ``parse_expr``, ``lambdify`` or ``parse_latex``.
Formulas that cannot be read raise :class:`~derive.errors.ExprError` (the CLI's
exit status 2); a formula that can be read but does not compute the quantity,
a shape mismatch included, is a verdict with ``ok = False`` (exit status 1).

How it judges.

- Numbers first: the formula and the engine's quantity are evaluated in
  float64 at every step of three random *consistent* sequences (the forward
  run from random inputs, weights and initial states; the backward values of
  the same run), with pairwise different sizes and a batch of more than one,
  so a formula equal only at special points, or on a transposed array, fails.
  The tolerance is a relative error of 1e-9.
- A parameter gradient is a sum over steps: a formula without ``sum_t`` is
  compared with one step's contribution (the formula a learner writes for
  ``dWf``), one written ``sum_t(...)`` with the total. With ``total=True``
  (``--total``) the formula claims to be the whole sequence's gradient, and
  one step's contribution is wrong (label ``per_step``).
- An elementwise formula that is right is also proven symbolically (SymPy,
  after expanding both sides to forward values and the gradients reaching
  the cell).
- A wrong formula is diagnosed by :mod:`derive.diagnose`: split into one term per
  gradient it is linear in, each term compared with the engine's; or
  recognised as the right formula of another quantity of the same cell; or,
  for a shape mismatch, repaired (weights without their block of columns,
  slices along the wrong axis, a transposed result). When no finding names a
  classic mistake, the formula's numbers are matched against the engine's
  formula with each classic mistake made.
- Nothing assumes an LSTM: the gradients reaching the cell, the recurrent
  links, the activations (``v = sigmoid(...)``/``tanh(...)``) and the paths
  through the forward equations are read from the derivation, so a preset and
  a user's spec file are judged alike.

``check_function(preset, fn)`` calls a user's backward function on a
consistent random state, filling its parameters by name (see
:mod:`derive.funcheck`), and compares what it returns with the engine.

The command line (registered through ``derive.cli.PLUGINS``)::

    lstm-derive verify PRESET [QUANTITY] FORMULA [--latex] [--json] [--file F] [--total]
    lstm-derive verify --spec FILE.toml [QUANTITY] FORMULA ...
    lstm-derive check PRESET path/to/file.py:NAME [--json] [--returns a,b] [--sequence]
    lstm-derive check --spec FILE.toml path/to/file.py:NAME ...

exit status 0 = right, 1 = wrong, 2 = the input could not be read. Derivations
come from the disk cache of :mod:`derive.dcache`; only the asked preset is
derived.

Speed and safety. :func:`prescan` checks everything about a formula that does
not depend on the notation (size, depth, syntax, the whitelist; for LaTeX the
tokens and TeX programming commands) before any derivation is loaded, so
hostile input costs milliseconds. NumPy and the analysis modules are imported
only when a formula is judged: building the command line imports nothing
heavy from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import sympy as sp

from . import ops
from .cell import ShapeError, fmt_shape
from .errors import DeriveError, ExprError
from .expr import MAX_LENGTH, Scope, default_functions, parse, suggest
from .shapes import FormulaShapeError, all_shapes, shape_of

# NumPy and the analysis are imported when a formula is judged, not when the
# command line is built (``derive.cli`` imports this module for every command).


def _dg():
    from . import diagnose

    return diagnose


def _judge():
    from . import judge

    return judge

TOL = 1e-9
_t = sp.Symbol("t", integer=True, positive=True)
_T = sp.Symbol("T", integer=True, positive=True)

# Characters people paste from rendered pages, spelled the way the Python
# formula language writes them.
_UNICODE = {"−": "-", "–": "-", "⊙": "*", "∘": "*", "·": "*", "×": "*", "ᵀ": ".T", "σ": "sigmoid"}


# ---------------------------------------------------------------------------
# the verdict


@dataclass
class Verdict:
    """The answer to "is this formula right?"."""

    ok: bool
    preset: str
    quantity: str
    formula: str
    syntax: str
    max_rel_error: float | None
    message: str
    diagnosis: list = field(default_factory=list)
    method: str = "numeric"
    expected: str = ""  # the engine's equation for the quantity, Python spelling
    expected_closed: str = ""  # its closed form in forward values and the gradients reaching the cell
    notes: list = field(default_factory=list)
    samples: int = 0
    _latex: dict = field(default_factory=dict, repr=False)

    @property
    def status(self) -> int:
        """The CLI's exit status: 0 right, 1 wrong."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict:
        err = self.max_rel_error
        return {
            "ok": self.ok,
            "preset": self.preset,
            "quantity": self.quantity,
            "formula": self.formula,
            "syntax": self.syntax,
            "max_rel_error": None if err is None or not math.isfinite(err) else err,
            "method": self.method,
            "samples": self.samples,
            "message": self.message,
            "diagnosis": [f.to_dict() for f in self.diagnosis],
            "notes": list(self.notes),
            "expected": self.expected,
            "expected_closed": self.expected_closed,
        }

    def __str__(self) -> str:
        return self.message

    # Jupyter: rendered math, the differing term highlighted
    def _repr_markdown_(self) -> str:
        head = "**right**" if self.ok else "**wrong**"
        lines = [f"{head} — `{self.quantity}` ({self.preset})"]
        formula = self._latex.get("formula")
        if formula:
            lines.append(f"$$ {self._latex.get('lhs', '')} = {formula} $$")
        for f in self.diagnosis:
            lines.append(f"- {f.text}")
            if f.latex:
                lines.append(f"  $$ {f.latex} $$")
        for note in self.notes:
            lines.append(f"- {note}")
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        formula = self._latex.get("formula", "")
        mark = r"\color{green}{\checkmark}" if self.ok else r"\color{red}{\times}"
        return f"$$ {mark}\\quad {self._latex.get('lhs', '')} = {formula} $$"


# ---------------------------------------------------------------------------
# one derivation's context, cached per process


class Context:
    """Everything the verifier needs about one derivation, built lazily."""

    def __init__(self, derivation):
        self.derivation = d = derivation
        self.cell = d.cell
        self.backward_names = set(d.names())
        self._shapes = None
        self._rhs = None
        self._gate_acts = None
        self._bench = None
        self._latex = None
        self._scope = None
        self._blocks: dict[str, dict] = {}

    # NumPy comes in with the shapes and the bench, on first use: a formula
    # rejected by the reader never pays for it.
    @property
    def shapes(self) -> dict:
        if self._shapes is None:
            self._shapes = all_shapes(self.derivation)
        return self._shapes

    @property
    def gate_acts(self) -> dict:
        if self._gate_acts is None:
            self._gate_acts = _dg().gate_acts(self.derivation)
        return self._gate_acts

    @property
    def bench(self):
        if self._bench is None:
            self._bench = _judge().Bench(self.derivation, shapes=self.shapes)
        return self._bench

    @property
    def latex_reader(self):
        if self._latex is None:
            from .latex_reader import LatexReader

            self._latex = LatexReader(self.derivation, shapes=lambda: self.shapes)
        return self._latex

    # -- facts ----------------------------------------------------------------
    def kind(self, name: str) -> str | None:
        if name not in self.backward_names:
            return None
        kind = self.derivation.kind(name)
        if kind == "book":
            return self.derivation.kind(self.resolve_book(name))
        return kind

    def resolve_book(self, name: str) -> str:
        seen = set()
        while name in self.backward_names and self.derivation.kind(name) == "book" and name not in seen:
            seen.add(name)
            name = str(self.rhs(name))
        return name

    def rhs(self, name: str) -> sp.Expr:
        """The right side of a backward equation (``Derivation.equation`` builds
        an evaluated ``Eq`` each time, which is slow)."""
        if self._rhs is None:
            self._rhs = {str(eq.lhs): eq.rhs for eq in self.derivation.backward}
        return self._rhs[name]

    def role(self, name: str) -> str | None:
        s = self.cell.symbols.get(name)
        if s is not None:
            return s.role
        return "backward" if name in self.backward_names else None

    def is_sum(self, name: str) -> bool:
        return name in self.backward_names and isinstance(self.rhs(name), sp.Sum)

    def shape_or_none(self, e):
        try:
            return shape_of(e, self.shapes)
        except ShapeError:
            return None

    def time_pairs(self) -> list[tuple[str, str]]:
        return [(link.prev, link.out) for link in self.cell.links]

    def time_pair(self, got, want) -> str | None:
        if isinstance(got, sp.Symbol) and isinstance(want, sp.Symbol):
            for prev, out in self.time_pairs():
                if {got.name, want.name} == {prev, out}:
                    return (f"wrong time index: `{got.name}` is {self._when(got.name)}, but this factor is "
                            f"`{want.name}`, {self._when(want.name)}")
        return None

    def _when(self, name: str) -> str:
        for prev, out in self.time_pairs():
            if name == prev:
                return "the value of the previous step (t-1)"
            if name == out:
                return "the value of this step (t)"
        return name

    def missing_term_label(self, u) -> str:
        if isinstance(u, ops.later):
            return "no_chaining"
        name = getattr(u, "name", "")
        for link in self.cell.links:
            if link.grad == name and link.out != self.cell.loss.on:
                return "carried_state"
        return ""

    def direct_path_note(self, name: str, u) -> str:
        """For a state gradient missing the term in ``u``: when u is the gradient
        of the state this one is the previous value of, and the cell uses the
        previous value elementwise (GRU's ``h = (1 - z) * n + z * h_prev``), the
        sentence that says so; else ''."""
        if not isinstance(u, sp.Symbol) or self.kind(name) != "state":
            return ""
        d = self.derivation
        for link in self.cell.links:
            if d.gradient_name(link.prev) != name:
                continue
            try:
                of_out = d.gradient_name(link.out)
            except KeyError:
                of_out = link.grad
            if u.name not in (link.grad, of_out):
                continue
            for eq in d.forward:
                if eq.lhs.name == link.out and eq.rhs.has(sp.Symbol(link.prev)):
                    return (f"`{link.out}` uses `{link.prev}` directly, elementwise (`{link.out} = "
                            f"{_dg()._py(eq.rhs)}`), not only through the weights")
            return f"`{link.prev}` reaches `{link.out}` directly, not only through the weights"
        return ""

    def path_note(self, name: str, u) -> str:
        """For ``name`` missing the term in the adjoint ``u``: the forward
        equation that uses ``name``'s value and sends ``u`` back into it (CIFG's
        ``i = 1 - f`` for ``delta_i`` in ``delta_f``); else ''."""
        if not isinstance(u, sp.Symbol):
            return ""
        of = {step.name: step.of for step in self.derivation.steps}
        book = self.resolve_book(name)
        if u.name not in of or book not in of:
            return ""
        forward = {eq.lhs.name: eq.rhs for eq in self.derivation.forward}
        user, used = of[u.name], of[book]
        if user not in forward and user.startswith("z_"):
            user = user[2:]  # the gradient at the pre-activation of `user`
        rhs = forward.get(user)
        if rhs is None or not rhs.has(sp.Symbol(used)):
            return ""
        return f"`{user} = {_dg()._py(rhs)}` uses `{used}`: through that use `{u.name}` flows back into `{name}`"

    def factor_label(self, S, u, missing, extra, coeffs) -> tuple[str, str]:
        """The classic mistake behind a factor difference, and a sentence."""
        show = S.show
        # a derivative applied to an already activated value: sigmoid(ft), tanh(cct)
        for f in extra:
            for node in sp.preorder_traversal(show(f)):
                if isinstance(node, (ops.sigmoid, sp.tanh)) and isinstance(node.args[0], sp.Symbol) \
                        and node.args[0].name in self.gate_acts:
                    g = node.args[0].name
                    act = self.gate_acts[g]
                    right = _dg().derivative_of(g, act)
                    fn = "sigmoid" if isinstance(node, ops.sigmoid) else "tanh"
                    return "activated_twice", (
                        f"`{g}` is already {act}(…), the stored gate value: `{fn}({g})` applies the activation a "
                        f"second time; the derivative of the {act} is `{_dg()._py(right)}`")
        # a wrong time index: c_next where c_prev belongs (also inside tanh(c_next), ...)
        m = [show(x) for x in missing]
        x = [show(y) for y in extra]
        if len(m) == 1 and len(x) == 1:
            note = self.time_pair(x[0], m[0])
            if note:
                return "time_index", note
        if m and x:
            mp = sp.Mul(*[show(b) ** k for b, k in missing.items()])
            xp = sp.Mul(*[show(b) ** k for b, k in extra.items()])
            for prev, out in self.time_pairs():
                swap = {sp.Symbol(prev): sp.Symbol(out), sp.Symbol(out): sp.Symbol(prev)}
                if xp.xreplace(swap) == mp:
                    wrong = prev if xp.has(sp.Symbol(prev)) else out
                    right = out if wrong == prev else prev
                    return "time_index", ("wrong time index: " + self.time_pair(sp.Symbol(wrong), sp.Symbol(right))
                                          .split("wrong time index: ", 1)[1])
        # a missing activation derivative, possibly present on the other terms
        dg = _dg()
        mprod = sp.Mul(*[show(b) ** k for b, k in missing.items()])
        for g, act in self.gate_acts.items():
            deriv = dg.derivative_of(g, act)
            dfactors = dg.factors(deriv)[1]
            if mprod == deriv or (not extra and all(show(b) in dfactors for b in missing)):
                # the same derivative present on another term of the sum: a parenthesis left out
                others = [v for v in coeffs if v != u and dg.factors(show(coeffs[v][0]))[1] >= dfactors]
                if others:
                    return "parenthesis", (
                        f"the other term has it: the derivative of the {act} in `{g}` multiplies the whole sum "
                        "(a missing parenthesis?)")
                return "missing_derivative", f"it is the derivative of the {act} in `{g}`, `{dg._py(deriv)}`"
        return "", ""

    def param_blocks(self, name: str) -> dict[str, tuple[int, Any, Any]]:
        """{param: (axis, start, stop)}: the block of each weight the engine's
        ``name`` uses (``Wf -> (1, 0, n_a)`` for ``da_prev``)."""
        if name in self._blocks:
            return self._blocks[name]
        keep = set(self.derivation.cell_inputs) | set(self.cell.preact_names.values())
        R = _dg().expand(self, _dg().reference(self, name), keep)
        grads = {sp.Symbol(n) for n in keep}
        out: dict[str, tuple[int, Any, Any]] = {}
        try:
            terms, _ = _dg().linear_terms(R, grads, sp.Symbol("__P"))
        except (_dg().NotLinear, _dg().Unsupported):
            terms = []
        for tmpl, _core in terms:
            for node in sp.preorder_traversal(_dg().normalize(tmpl)):
                if isinstance(node, ops.take) and isinstance(node.args[0], sp.Symbol) \
                        and self.role(node.args[0].name) == "param":
                    out[node.args[0].name] = (int(node.args[1]), node.args[2], node.args[3])
        self._blocks[name] = out
        return out

    # -- reading ----------------------------------------------------------------
    def scope(self) -> Scope:
        if self._scope is None:
            cell = self.cell
            symbols = {n: sp.Symbol(n) for n in list(cell.symbols) + sorted(self.backward_names)}
            functions = default_functions(cell.feature_axis)
            functions["sum_t"] = lambda x: sp.Sum(x, (_t, 1, _T))
            self._scope = Scope(
                symbols=symbols,
                dims=cell.dim_symbols(),
                functions=functions,
                aliases=dict(cell.aliases),
                feature_axis=cell.feature_axis,
                shape_of=lambda e: shape_of(e, self.shapes),
            )
        return self._scope

    def read(self, text: str, syntax: str) -> tuple[str | None, sp.Expr, str]:
        """(left-side name or None, right side, right side's text)."""
        text = check_text(text)
        if syntax == "latex":
            lhs, rhs = self.latex_reader.parse_equation(text)
            return lhs, rhs, text
        if syntax != "python":
            raise DeriveError(f"syntax `{syntax}` is not one of python, latex")
        text = "".join(_UNICODE.get(ch, ch) for ch in text).strip()
        lhs_text, rhs_text, accumulate = split_equation(text)
        lhs = None
        if lhs_text is not None:
            target = parse(lhs_text, self.scope())
            if not isinstance(target, sp.Symbol):
                raise ExprError("the left side must be the name of a gradient", lhs_text, 0)
            lhs = target.name
            if accumulate and not self.is_sum(lhs):
                raise ExprError(f"`+=` accumulates a parameter gradient over the steps; `{lhs}` is not one", text, 0)
        memo: dict = {}
        stripped = rhs_text.strip()

        def check(node, expr):
            try:
                shape_of(expr, self.shapes, memo)
            except ShapeError as exc:
                raise FormulaShapeError(str(exc), stripped, _column(node, stripped)) from None

        rhs = parse(rhs_text, self.scope(), on_node=check)
        return lhs, rhs, rhs_text

    def quantity(self, q: str | None, lhs: str | None, syntax: str) -> str:
        name = None
        if q is not None:
            name = self.resolve_name(q, syntax)
        if lhs is not None:
            lhs_name = self.resolve_name(lhs, "python")
            if name is not None and lhs_name != name and self.resolve_book(lhs_name) != self.resolve_book(name):
                raise DeriveError(f"the formula's left side is `{lhs_name}` but the quantity asked is `{name}`")
            name = name or lhs_name
        if name is None:
            raise DeriveError("say which gradient the formula is for: a quantity, or a left side (`dft = ...`)")
        return name

    def resolve_name(self, q: str, syntax: str) -> str:
        q = q.strip()
        if q in self.backward_names:
            return q
        alias = self.cell.aliases.get(q)
        if alias in self.backward_names:
            return alias
        if syntax == "latex" or "\\" in q or "{" in q:
            try:
                e = self.latex_reader.parse(q)
            except ExprError:
                e = None
            if isinstance(e, sp.Symbol) and e.name in self.backward_names:
                return e.name
        target = alias or q
        if target in self.cell.symbols and target not in self.backward_names:
            try:
                g = self.derivation.gradient_name(target)
                hint = f"; its gradient is `{g}`"
            except KeyError:
                hint = ""
            raise DeriveError(f"`{q}` is a value of the forward pass, not a gradient{hint}")
        names = sorted(self.backward_names) + sorted(k for k, v in self.cell.aliases.items() if v in self.backward_names)
        raise DeriveError(f"{self.cell.name} has no gradient `{q}`{suggest(q, names)}")


def _column(node, text: str) -> int | None:
    """Where to put the caret: under the operator of a binary operation, else
    at the start of the node."""
    import ast

    if isinstance(node, ast.BinOp) and getattr(node.left, "end_col_offset", None) is not None:
        i = node.left.end_col_offset
        while i < len(text) and text[i] in " )":
            i += 1
        return i if i < len(text) else node.col_offset
    return getattr(node, "col_offset", None)


_CONTEXTS: dict[int, Context] = {}


def context(derivation) -> Context:
    ctx = _CONTEXTS.get(id(derivation))
    if ctx is None or ctx.derivation is not derivation:
        ctx = _CONTEXTS[id(derivation)] = Context(derivation)
    return ctx


def load_context(preset, loss: str | None = None) -> Context:
    from .dcache import load

    return context(load(preset, loss))


def check_text(text) -> str:
    """Reject what no formula is, before any parsing; returns the text."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExprError(f"the formula is not UTF-8 text (byte {exc.start})") from None
    if not isinstance(text, str):
        raise ExprError(f"a formula must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"formula too long: {len(text)} characters (the limit is {MAX_LENGTH})")
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            raise ExprError(f"the formula is not UTF-8 text (an undecodable byte at character {i})")
    if not text.strip():
        raise ExprError("the formula is empty")
    return text


class _AnyName(dict):
    """A permissive table for :func:`prescan`: every plain name is a symbol."""

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and not name.startswith("__")

    def __missing__(self, name):
        return sp.Symbol(name)

    def get(self, name, default=None):
        return name if name in self else default


def prescan(text: str, syntax: str) -> None:
    """Everything about a formula that does not depend on the notation: its
    syntax, the whitelist, sizes and depth. Raises ExprError; no derivation is
    loaded, so hostile input is turned away in milliseconds."""
    if syntax == "latex":
        from .latex_reader import prepare

        prepare(text)
        return
    if syntax != "python":
        raise DeriveError(f"syntax `{syntax}` is not one of python, latex")
    text = "".join(_UNICODE.get(ch, ch) for ch in text).strip()
    lhs_text, rhs_text, _ = split_equation(text)
    functions = default_functions(0)
    functions["sum_t"] = lambda x: sp.Sum(x, (_t, 1, _T))
    n = sp.Symbol("n", positive=True, integer=True)
    scope = Scope(symbols=_AnyName(), functions=functions, aliases=_AnyName(), shape_of=lambda e: (n, n))
    if lhs_text is not None:
        parse(lhs_text, scope)
    parse(rhs_text, scope)


def split_equation(text: str) -> tuple[str | None, str, bool]:
    """Split ``lhs = rhs`` (or ``lhs += rhs``) at a top-level ``=``; keyword
    arguments inside calls (``axis=1``) are not split."""
    depth = 0
    cut = []
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "=" and depth == 0:
            before = text[i - 1] if i else ""
            after = text[i + 1] if i + 1 < len(text) else ""
            if after == "=" or before in "=<>!":
                continue
            cut.append(i)
    if not cut:
        return None, text, False
    if len(cut) > 1:
        raise ExprError("one equation at a time: `name = formula`", text, cut[1])
    i = cut[0]
    lhs, rhs = text[:i], text[i + 1:]
    accumulate = lhs.endswith("+")
    if accumulate:
        lhs = lhs[:-1]
    elif lhs and lhs[-1] in "-*/@%&|^":
        raise ExprError(f"`{lhs[-1]}=` is not an equation; write `name = formula`", text, i - 1)
    if not lhs.strip():
        raise ExprError("nothing on the left of `=`", text, i)
    return lhs.strip(), rhs, accumulate


# ---------------------------------------------------------------------------
# the judgement


def verify(preset, quantity: str | None = None, formula: str | None = None, syntax: str = "python", *,
           loss: str | None = None, total: bool = False) -> Verdict:
    """Is ``formula`` the derivation's ``quantity``? See the module docstring.
    ``total=True``: the formula claims to be a parameter gradient of the whole
    sequence, so one step's contribution without ``sum_t`` is wrong."""
    if formula is None:
        quantity, formula = None, quantity
    if formula is None:
        raise ExprError("no formula given")
    formula = check_text(formula)
    prescan(formula, syntax)  # malformed or hostile text fails here, before any derivation is loaded
    ctx = load_context(preset, loss)
    try:
        lhs, rhs, rhs_text = ctx.read(formula, syntax)
    except FormulaShapeError as exc:
        name = ctx.quantity(quantity, _lhs_only(ctx, formula, syntax), syntax)
        return _shape_verdict(ctx, name, None, formula, syntax, exc)
    name = ctx.quantity(quantity, lhs, syntax)
    return judge(ctx, name, rhs, formula, syntax, claim_total=total)


def _lhs_only(ctx, formula, syntax):
    try:
        if syntax == "latex":
            return ctx.latex_reader.lhs_name(formula)
        lhs_text, _, _ = split_equation(formula)
        if lhs_text is None:
            return None
        e = parse(lhs_text, ctx.scope())
        return e.name if isinstance(e, sp.Symbol) else None
    except DeriveError:
        return None


def judge(ctx: Context, name: str, F: sp.Expr, formula: str, syntax: str, claim_total: bool = False) -> Verdict:
    d = ctx.derivation
    name_eff = ctx.resolve_book(name)
    if sp.Symbol(name) in F.xreplace({a: sp.Dummy() for a in F.atoms(ops.later)}).free_symbols:
        raise ExprError(f"the formula for `{name}` uses `{name}` itself")
    F = _tidy(ctx, F)
    is_param = ctx.is_sum(name_eff)
    total = isinstance(F, sp.Sum)
    for s in sorted(F.free_symbols, key=str):
        if ctx.is_sum(s.name):
            raise ExprError(f"`{s.name}` is a parameter gradient, a sum over all steps; a formula cannot use it")
    if any(isinstance(a, sp.Sum) for a in sp.preorder_traversal(F) if a is not F):
        raise ExprError("`sum_t(...)` must enclose the whole formula")
    if total and not is_param:
        raise ExprError(f"`{name}` is not a sum over steps; only a parameter gradient is written with `sum_t(...)`")
    if claim_total and not is_param:
        raise DeriveError(f"`{name}` is not a parameter gradient: only those are sums over the whole sequence")
    verdict = Verdict(False, ctx.cell.name, name, formula, syntax, None, "")
    verdict.expected = f"{name} = {_dg()._py(ctx.rhs(name))}"
    try:
        verdict.expected_closed = _dg()._py(d.closed_form(name))
    except Exception:
        verdict.expected_closed = ""
    verdict._latex = _latex_parts(ctx, name, F)

    if F.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        verdict.diagnosis.append(_dg().Finding("not_finite", "the formula divides by zero (SymPy reads it as "
                                               f"`{sp.sstr(F)}`)"))
        verdict.message = _message(verdict)
        return verdict

    # shapes
    want = ctx.shapes[name_eff]
    try:
        got_shape = shape_of(F, ctx.shapes)
    except ShapeError as exc:
        return _shape_verdict(ctx, name, F, formula, syntax, FormulaShapeError(str(exc), "", None), verdict)
    if not _fits(got_shape, want):
        exc = FormulaShapeError(
            f"the formula gives an array of shape {fmt_shape(got_shape)}, but `{name}` has shape {fmt_shape(want)}", "", None)
        return _shape_verdict(ctx, name, F, formula, syntax, exc, verdict)

    if claim_total and not total:
        return _one_step_as_total(ctx, verdict, name_eff, F)

    # numbers
    bench = ctx.bench
    import numpy as np

    try:
        with np.errstate(all="ignore"):  # an overflow is reported as a non-finite value, not a warning
            got = bench.values(F)
    except (ArithmeticError, ValueError, TypeError) as exc:
        verdict.message = f"wrong: the formula cannot be evaluated ({exc})"
        verdict.diagnosis.append(_dg().Finding("not_finite", verdict.message))
        return verdict
    want_values = bench.reference(name_eff, total=total)
    err = _judge().relative_error(got, want_values)
    verdict.max_rel_error = err
    verdict.samples = len(want_values)
    if err <= TOL:
        verdict.ok = True
        verdict.method = "numeric"
        if _symbolic_equal(ctx, name_eff, F):
            verdict.method = "symbolic and numeric"
        verdict.notes += _notes_right(ctx, name_eff, F, total)
        verdict.message = _message(verdict)
        return verdict
    if not math.isfinite(err):
        verdict.diagnosis.append(_dg().Finding("not_finite", "the formula's value is not finite (an overflow or a "
                                            "division by zero) at a random state"))
    else:
        other = _other_quantity(ctx, name_eff, got, total)
        if other is not None and other.got.name not in _dg().on_path(ctx, name_eff):
            verdict.diagnosis.append(other)
        else:
            verdict.diagnosis += _analyse(ctx, name_eff, F)
            if other is not None and not verdict.diagnosis:
                verdict.diagnosis.append(other)
        if not any(f.label for f in verdict.diagnosis):
            mistake = _classic_mistake(ctx, name_eff, got, total)
            if mistake is not None:
                verdict.diagnosis.append(mistake)
    verdict.notes += _notes_wrong(ctx, name_eff, F, total, verdict.diagnosis)
    _highlight(ctx, verdict, F)
    verdict.message = _message(verdict)
    return verdict


def _one_step_as_total(ctx, verdict: Verdict, name: str, F) -> Verdict:
    """A formula without ``sum_t`` given as a whole-sequence parameter gradient
    (the mistake of seed 003's question): wrong, and said to be one step's
    contribution when it is that."""
    bench, judge_ = ctx.bench, _judge()
    import numpy as np

    with np.errstate(all="ignore"):
        per_step = bench.values(F)
    totals = [tot for run, tot in zip(bench.runs, bench.reference(name, total=True)) for _ in run.envs]
    verdict.max_rel_error = judge_.relative_error(per_step, totals)
    verdict.samples = len(per_step)
    step_right = judge_.relative_error(per_step, bench.reference(name)) <= TOL
    param = _param_of(ctx, name)
    summed = f"`{name} = sum_t({_dg()._py(F)})`"
    if step_right:
        text = (f"this is one step's contribution, not the whole sequence's gradient: {param} is used at every step, "
                f"so `{name}` is the sum of this over t = 1..T, {summed} (as one step's contribution it is right)")
    else:
        verdict.diagnosis += _analyse(ctx, name, F)
        text = (f"it is not summed over the steps either: `{name}` of the whole sequence is `sum_t(...)` of one "
                "step's contribution")
    verdict.diagnosis.append(_dg().Finding("per_step", text, label="per_step", explained=step_right))
    _highlight(ctx, verdict, F)
    verdict.message = _message(verdict)
    return verdict


def _classic_mistake(ctx, name, got, total):
    """When the term-by-term comparison named no classic mistake: is the
    formula, in numbers, the engine's with exactly one classic mistake made
    (:func:`derive.diagnose.mutations`)? A formula written out in full, where
    one change shows up in many places, is recognised this way."""
    try:
        candidates = _dg().mutations(ctx, name)
    except Exception:
        return None
    for label, desc, expr in candidates:
        try:
            want = ctx.bench.values(sp.Sum(expr, (_t, 1, _T)) if total else expr)
        except Exception:
            continue
        if _judge().relative_error(got, want) <= TOL:
            return _dg().Finding("mistake", f"it is `{name}` with one classic mistake made: it {desc}",
                                 label=label if label in _dg().LABELS else "")
    return None


def _analyse(ctx, name, F) -> list:
    try:
        findings = _dg().analyse(ctx, name, F)
    except (ShapeError, _dg().NotLinear, _dg().Unsupported, ArithmeticError, ValueError, TypeError):
        findings = []
    return findings


def _fits(got, want) -> bool:
    """got equals want, or broadcasts to it (a number for a zero gradient)."""
    if len(got) > len(want):
        return False
    from .cell import same_dim

    for g, w in zip(reversed(got), reversed(want)):
        if not (same_dim(g, w) or g == 1):
            return False
    return True


def _tidy(ctx, F: sp.Expr) -> sp.Expr:
    """Floats that are short decimals become rationals (``1.`` -> 1); a
    forward value written out in full is folded to its name."""
    floats = {f: sp.Rational(str(f)) for f in F.atoms(sp.Float) if len(str(f).rstrip("0")) <= 12}
    F = F.xreplace({f: r for f, r in floats.items()})
    for eq in ctx.derivation.forward:
        if F.has(eq.rhs) and eq.rhs != eq.lhs:
            F = F.xreplace({eq.rhs: eq.lhs})
    books = {s: sp.Symbol(ctx.resolve_book(s.name)) for s in F.free_symbols
             if s.name in ctx.backward_names and ctx.derivation.kind(s.name) == "book"}
    F = F.xreplace(books) if books else F
    return _gather_later(ctx, F) if F.has(ops.later) else F


def _gather_later(ctx, F: sp.Expr) -> sp.Expr:
    """Values at step t+1 written one by one (Greff et al.'s ``delta c^{t+1} *
    f^{t+1} + delta fbar^{t+1} * p_f``) become one ``later(...)``, and
    ``later(rhs)`` of a backward equation ``later(name)``: the form the
    engine's own equations carry from step t+1."""
    def time_invariant(e) -> bool:
        return all(ctx.role(s.name) == "param" or s.name in ctx.cell.dims for s in e.free_symbols)

    def gather(e):
        if not e.args or isinstance(e, ops.later):
            return e
        e = e.func(*[gather(a) for a in e.args])
        if isinstance(e, sp.Mul) and e.has(ops.later):
            inside = [a.args[0] if isinstance(a, ops.later) else a for a in e.args]
            if all(isinstance(a, ops.later) or time_invariant(a) for a in e.args):
                return ops.later(sp.Mul(*inside))
        if isinstance(e, sp.Add):
            carried = [a for a in e.args if isinstance(a, ops.later)]
            if len(carried) > 1:
                rest = [a for a in e.args if not isinstance(a, ops.later)]
                return sp.Add(*rest, ops.later(sp.Add(*[a.args[0] for a in carried])))
        return e

    F = gather(F)
    named = {}
    for a in F.atoms(ops.later):
        for n in ctx.backward_names:
            if not ctx.is_sum(n) and ctx.rhs(n) == a.args[0]:
                named[a] = ops.later(sp.Symbol(n))
                break
    return F.xreplace(named) if named else F


def _shape_verdict(ctx, name, F, formula, syntax, exc, verdict: Verdict | None = None) -> Verdict:
    if verdict is None:
        verdict = Verdict(False, ctx.cell.name, name, formula, syntax, None, "")
        verdict.expected = f"{name} = {_dg()._py(ctx.rhs(name))}"
    where = exc.render()
    verdict.diagnosis.append(_dg().Finding("shape", f"shape mismatch: {where}", data={"column": exc.col}))
    if F is None:
        # the formula could not be built; read it again without the shape check to try repairs
        try:
            if syntax == "latex":
                _, F = ctx.latex_reader.parse_equation(formula, check_shapes=False)
            else:
                _, rhs_text, _ = split_equation("".join(_UNICODE.get(ch, ch) for ch in formula).strip())
                F = parse(rhs_text, ctx.scope())
            F = _tidy(ctx, F)
        except (DeriveError, ShapeError):
            F = None
    name_eff = ctx.resolve_book(name)
    if F is not None:
        best = None
        for label, desc, G in _dg().repairs(ctx, name_eff, F):
            try:
                gs = shape_of(G, ctx.shapes)
            except ShapeError:
                continue
            if not _fits(gs, ctx.shapes[name_eff]):
                continue
            try:
                err = _judge().relative_error(ctx.bench.values(G), ctx.bench.reference(name_eff, total=isinstance(G, sp.Sum)))
            except Exception:
                continue
            if err <= TOL:
                best = (label, desc + "; with that change the formula is right", G, [])
                break
            if best is None:
                best = (label, desc, G, None)
        if best is None:
            hint = _structure_hint(ctx, name_eff, F)
            if hint is not None:
                verdict.diagnosis.append(hint)
        if best is not None:
            label, desc, G, rest = best
            verdict.diagnosis.append(_dg().Finding("repair", desc, label=label, got=F, expected=G))
            if rest is None:
                more = _analyse(ctx, name_eff, G)
                for f in more:
                    f.text = "after that: " + f.text
                verdict.diagnosis += more
    verdict.message = _message(verdict)
    return verdict


def _structure_hint(ctx, name, F):
    """For a formula of the wrong shape built like the engine's: the one part that differs."""
    dg = _dg()
    try:
        S = dg.setup(ctx, name, F)
        got, want = dg.tree_diff(S.show(dg.normalize(S.F)), S.show(dg.normalize(S.R)))
    except Exception:
        return None
    if got == S.show(S.F) or isinstance(got, (sp.Add, sp.Mul)) and isinstance(want, (sp.Add, sp.Mul)):
        return None
    text = f"it has `{dg._py(got)}` where `{dg._py(want)}` belongs"
    note = ctx.time_pair(got, want)
    return dg.Finding("map", text + (f"; {note}" if note else ""), label="time_index" if note else "",
                      got=got, expected=want, explained=bool(note))


def _other_quantity(ctx, name, got, total):
    """A right formula for another quantity of the same cell?"""
    bench = ctx.bench
    same = {ctx.resolve_book(name)}
    for other in sorted(ctx.backward_names):
        o = ctx.resolve_book(other)
        if o in same or other != o:
            continue
        if total and not ctx.is_sum(o):
            continue
        try:
            ref = bench.reference(o, total=total)
        except KeyError:
            continue
        if len(ref) != len(got):
            continue
        if _judge().relative_error(got, ref) <= TOL:
            same.add(o)
            return _dg().Finding(
                "different_quantity",
                f"this is the formula of `{o}`{_meaning(ctx, o)}, not of `{name}`",
                label="different_quantity", expected=sp.Symbol(name), got=sp.Symbol(o))
    return None


def _meaning(ctx, name) -> str:
    for step in ctx.derivation.steps:
        if step.name == name:
            array = step.of
            base = array[2:] if array.startswith("z_") else array
            what = "pre-activation of " if array.startswith("z_") else ""
            return f" (the gradient with respect to the {what}{base})"
    return ""


def _symbolic_equal(ctx, name, F) -> bool:
    """For elementwise formulas: SymPy proves F = R once both are written in
    forward values and the gradients reaching the cell."""
    try:
        keep = set(ctx.derivation.cell_inputs) | {n for n in ctx.backward_names if ctx.kind(n) in ("glue", "head")}
        Fc = _dg().expand(ctx, F.function if isinstance(F, sp.Sum) else F, keep)
        Rc = _dg().expand(ctx, _dg().reference(ctx, name), keep)
        if not (_dg().is_elementwise(Fc) and _dg().is_elementwise(Rc)):
            return False
        if sp.count_ops(Fc) + sp.count_ops(Rc) > 400 or any(
                p.exp.is_Number and abs(p.exp) > 4 for p in Fc.atoms(sp.Pow)):
            return False
        if sp.expand(Fc - Rc) == 0:
            return True
        subs = {}
        for eq in ctx.derivation.forward:
            if eq.lhs.name not in ctx.gate_acts and _dg().is_elementwise(eq.rhs):
                subs[eq.lhs] = eq.rhs
        for _ in range(len(subs)):
            Fc, Rc = Fc.xreplace(subs), Rc.xreplace(subs)
        return sp.expand(Fc - Rc) == 0
    except Exception:
        return False


def _notes_right(ctx, name, F, total) -> list[str]:
    notes = []
    if ctx.is_sum(name) and not total:
        param = _param_of(ctx, name)
        notes.append(
            f"this is the contribution of one step t; `{name}` is its sum over t = 1..T "
            f"(`{name} = sum_t({_dg()._py(F)})`). {param} is used at every step, and its influence through the "
            f"earlier steps reaches this formula through {', '.join(ctx.derivation.cell_inputs)} "
            "(backpropagation through time)")
    return notes


def _notes_wrong(ctx, name, F, total, findings) -> list[str]:
    notes = []
    if not findings:
        notes.append("no single term could be singled out; compare with the derivation (`lstm-derive show "
                     f"{ctx.cell.name} {name} --closed`)")
    return notes


def _param_of(ctx, name) -> str:
    for param in ctx.cell.names("param"):
        try:
            if ctx.derivation.gradient_name(param) == name:
                return f"`{param}`"
        except KeyError:
            continue
    return "The parameter"


def _message(v: Verdict) -> str:
    err = v.max_rel_error
    if v.ok:
        how = "proven symbolically and " if v.method.startswith("symbolic") else ""
        where = "sequences" if "sum_t" in v.formula or v.formula.lstrip().startswith("\\sum") else "states"
        lines = [f"right: the formula is {v.quantity} ({how}checked at {v.samples} random consistent {where}, "
                 f"max relative error {err:.1e})"]
    else:
        what = f" (max relative error {err:.2g})" if err is not None and math.isfinite(err) else ""
        lines = [f"wrong: the formula is not {v.quantity}{what}"]
        for f in v.diagnosis:
            label = f" [{_dg().LABELS[f.label]}]" if f.label in _dg().LABELS and not f.explained else ""
            lines.append(f"  - {f.text}{label}")
    for note in v.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _highlight(ctx, verdict: Verdict, F) -> None:
    """LaTeX for Jupyter: each finding's difference, and the formula with the
    parts the findings name coloured."""
    try:
        from .latex import to_latex
    except Exception:
        return

    def tex(e):
        try:
            return to_latex(e, ctx.cell)
        except Exception:
            return r"\text{" + _dg()._py(e).replace("_", r"\_") + "}"

    marks: dict = {}
    for f in verdict.diagnosis:
        parts = []
        if f.kind == "missing_term" and f.expected is not None:
            parts.append(r"\text{missing: }\color{red}{" + tex(f.expected) + "}")
        elif f.kind == "extra_term" and f.got is not None:
            parts.append(r"\text{extra: }\color{red}{" + tex(f.got) + "}")
            marks[f.got] = True
        elif f.got is not None and f.expected is not None and isinstance(f.got, sp.Basic):
            parts.append(r"\text{yours: }\color{red}{" + tex(f.got) + r"}\quad\text{derivation: }\color{green}{"
                         + tex(f.expected) + "}")
            if isinstance(f.extra, sp.Basic):
                for factor in sp.Mul.make_args(f.extra):
                    marks[factor] = True
            else:
                marks[f.got] = True
        f.latex = "".join(parts)
    hl = {}
    G = F
    for i, target in enumerate(marks):
        if isinstance(target, sp.Basic) and target != 1 and G.has(target):
            sym = sp.Symbol(f"__hl{i}")
            G = G.xreplace({target: sym})
            body = tex(target)
            if isinstance(target, sp.Add):
                body = r"\left(" + body + r"\right)"
            hl[sym.name] = r"\color{red}{" + body + "}"
    if hl:
        try:
            verdict._latex["formula"] = to_latex(G, ctx.cell, extra=hl)
        except Exception:
            pass


def _latex_parts(ctx, name, F) -> dict:
    try:
        from .latex import to_latex

        return {"lhs": to_latex(sp.Symbol(name), ctx.cell), "formula": to_latex(F, ctx.cell)}
    except Exception:
        return {}


# ---------------------------------------------------------------------------
# functions


def check_function(preset, fn: Callable, *, loss: str | None = None, returns=None, sequence: bool | None = None):
    """Call a user's backward function on a consistent random state and compare
    its outputs with the engine (see :mod:`derive.funcheck`). ``sequence=True``:
    ``fn`` runs backward through a whole sequence, its per-step arguments
    stacked over time."""
    from .funcheck import check

    return check(preset, fn, loss=loss, returns=returns, sequence=sequence)


# ---------------------------------------------------------------------------
# the command line


def register_cli(sub) -> None:
    import argparse

    v = sub.add_parser(
        "verify",
        help="is a hand-derived gradient formula right? which term is wrong?",
        description="Check a formula for one backward quantity against the derivation, numerically at random "
                    "consistent states and symbolically where it is elementwise. Exit status 0 right, 1 wrong, "
                    "2 the input could not be read. The formula is read by a whitelisted parser; it is never run.",
    )
    v.add_argument("preset", help="preset name or spec file (with --spec: the quantity)")
    # REMAINDER: a formula may start with `-` (`-y + yt_pred`), and the options
    # may come after the formula; _cmd_verify separates them.
    v.add_argument("args", nargs=argparse.REMAINDER, metavar="[QUANTITY] FORMULA",
                   help="the quantity and its formula, or one equation `name = formula`")
    v.add_argument("--spec", metavar="FILE", help="your own spec file (TOML) instead of a preset")
    v.add_argument("--latex", action="store_true", help="the formula is LaTeX (the notation's LaTeX names)")
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")
    v.add_argument("--file", metavar="PATH", help="read the formula from a file (`-` for standard input)")
    v.add_argument("--loss", choices=["upstream"], help="replace the loss head by a given gradient")
    v.add_argument("--total", action="store_true",
                   help="the formula is a parameter gradient of the whole sequence (one step's term is then wrong)")
    v.set_defaults(run=_cmd_verify)

    c = sub.add_parser(
        "check",
        help="run a backward function and compare its outputs with the derivation (RUNS the file's code)",
        description="Import FILE (this RUNS its code, as python would: check only code you trust), call NAME with "
                    "its parameters filled by name from a random consistent state, and compare what it returns "
                    "with the derivation. Exit status 0 right, 1 wrong, 2 the input could not be read.",
    )
    c.add_argument("preset", nargs="?", help="preset name or spec file (leave out with --spec)")
    c.add_argument("target", metavar="FILE.py:NAME", help="the function to check")
    c.add_argument("--spec", metavar="FILE", help="your own spec file (TOML) instead of a preset")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--returns", metavar="NAMES", help="comma-separated names of what the function returns, in order")
    c.add_argument("--sequence", action="store_true",
                   help="the function runs backward through a whole sequence (inputs stacked over time)")
    c.set_defaults(run=_cmd_check)


MAX_INPUT_BYTES = 1_000_000


def _read_formula_file(path: str) -> str:
    import sys

    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise DeriveError(f"{path}: {exc.strerror}") from None
    if len(data) > MAX_LENGTH * 4:
        raise ExprError(f"formula too long: more than {MAX_LENGTH} characters")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExprError(f"the formula is not UTF-8 text (byte {exc.start})") from None


def _emit_error(args, exc: Exception) -> int:
    import json
    import sys

    message = exc.render() if isinstance(exc, ExprError) else str(exc)
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if getattr(args, "json", False):
        print(json.dumps({"ok": None, "error": message}))
    else:
        print(f"lstm-derive: {message}", file=sys.stderr)
    return 2


def _split_options(args) -> list[str]:
    """Options given after the preset come through REMAINDER: take them out."""
    parts, rest = list(args.args), []
    i = 0
    while i < len(parts):
        a = parts[i]
        if a == "--":
            rest += parts[i + 1:]
            break
        if a in ("--latex", "--json", "--total"):
            setattr(args, a[2:], True)
        elif a in ("--file", "--loss", "--spec"):
            if i + 1 >= len(parts):
                raise DeriveError(f"{a} needs a value")
            setattr(args, a[2:], parts[i + 1])
            i += 1
        elif a.startswith(("--file=", "--loss=", "--spec=")):
            key, _, value = a[2:].partition("=")
            setattr(args, key, value)
        else:
            rest.append(a)
        i += 1
    if args.loss not in (None, "upstream"):
        raise DeriveError(f"--loss {args.loss}: the only choice is `upstream`")
    return rest


def _cmd_verify(args) -> int:
    import json

    try:
        parts = _split_options(args)
        source = args.preset
        if args.spec is not None:
            # with --spec the first word is not a preset: it belongs to [QUANTITY] FORMULA
            source, parts = args.spec, [args.preset] + parts
        if args.file is not None:
            parts.append(_read_formula_file(args.file))
        if len(parts) == 1:
            quantity, formula = None, parts[0]
        elif len(parts) == 2:
            quantity, formula = parts
        else:
            raise DeriveError("give QUANTITY FORMULA, or one equation `name = formula`")
        verdict = verify(source, quantity, formula, "latex" if args.latex else "python", loss=args.loss,
                         total=args.total)
    except (DeriveError, RecursionError, MemoryError) as exc:
        if isinstance(exc, (RecursionError, MemoryError)):
            exc = ExprError("the formula is too deeply nested or too large")
        return _emit_error(args, exc)
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        print(verdict.message)
    return verdict.status


def _check_source(args) -> str:
    """The preset or spec file of `check`: PRESET, or --spec FILE (not both)."""
    if args.spec is not None and args.preset is not None:
        raise DeriveError(f"give a preset or --spec FILE, not both (`{args.preset}` and --spec {args.spec})")
    source = args.spec if args.spec is not None else args.preset
    if source is None:
        raise DeriveError("say which cell: a preset name, or --spec FILE")
    return source


def _cmd_check(args) -> int:
    import json

    try:
        from .funcheck import check, load_function

        source = _check_source(args)
        fn = load_function(args.target)
        returns = [r.strip() for r in args.returns.split(",")] if args.returns else None
        report = check(source, fn, returns=returns, sequence=True if args.sequence else None)
    except DeriveError as exc:
        return _emit_error(args, exc)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(report.message)
    return report.status

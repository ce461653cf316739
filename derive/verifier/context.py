"""What the verifier knows about one derivation, and the front door for formula text.

:class:`Context` holds, built lazily and once per derivation, what judging needs:
shapes, the right-hand sides, the gate activations, a bench of consistent random
states, the LaTeX symbol table, the parsing scope. :func:`context` and
:func:`load_context` hand out one Context per derivation (``load_context`` reads
the derivation from the disk cache). :func:`check_text`, :func:`prescan` and
:func:`split_equation` check formula text before any derivation is loaded, so
hostile input costs milliseconds. The formula verdict (:mod:`derive.verifier.formula`)
and the function checker (:mod:`derive.verifier.function`) both start here.
"""

from __future__ import annotations

from typing import Any

import sympy as sp

from derive.spec import ops
from derive.spec.shapes import ShapeError
from derive.errors import DeriveError, ExprError
from derive.spec.expr import MAX_LENGTH, Scope, default_functions, parse, suggest
from derive.spec.shapes import FormulaShapeError, all_shapes, shape_of

# NumPy and the analysis are imported when a formula is judged, not when the
# command line is built (``derive.cli.main`` imports the verifier for every command).


def _dg():
    from derive.verifier import diagnose

    return diagnose


def _terms():
    from derive.verifier import terms

    return terms


def _mutations():
    from derive.verifier import mutations

    return mutations


def _judge():
    from derive.numeric import judge

    return judge


TOL = 1e-9


_t = sp.Symbol("t", integer=True, positive=True)


_T = sp.Symbol("T", integer=True, positive=True)


# Characters people paste from rendered pages, spelled the way the Python
# formula language writes them.
_UNICODE = {"−": "-", "–": "-", "⊙": "*", "∘": "*", "·": "*", "×": "*", "ᵀ": ".T", "σ": "sigmoid"}


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
            self._gate_acts = _terms().gate_acts(self.derivation)
        return self._gate_acts

    @property
    def bench(self):
        if self._bench is None:
            self._bench = _judge().Bench(self.derivation, shapes=self.shapes)
        return self._bench

    @property
    def latex_reader(self):
        if self._latex is None:
            from derive.verifier.latex_reader import LatexReader

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
                            f"{_terms()._py(eq.rhs)}`), not only through the weights")
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
        return f"`{user} = {_terms()._py(rhs)}` uses `{used}`: through that use `{u.name}` flows back into `{name}`"

    def factor_label(self, S, u, missing, extra, coeffs) -> tuple[str, str]:
        """The classic mistake behind a factor difference, and a sentence."""
        show = S.show
        # a derivative applied to an already activated value: sigmoid(ft), tanh(cct)
        for f in extra:
            for node in sp.preorder_traversal(show(f)):
                if isinstance(node, tuple(_terms()._ACTS)) and isinstance(node.args[0], sp.Symbol) \
                        and node.args[0].name in self.gate_acts:
                    g = node.args[0].name
                    act = self.gate_acts[g]
                    right = _terms().derivative_of(g, act)
                    fn = _terms()._ACTS[node.func]
                    return "activated_twice", (
                        f"`{g}` is already {act}(…), the stored gate value: `{fn}({g})` applies the activation a "
                        f"second time; the derivative of the {act} is `{_terms()._py(right)}`")
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
        # the right term's own factors: a factor of a derivative is missing only where the derivative belongs
        # (ft in dc_prev = dc*ft is the gate's value; in dft = dc*c_prev*ft*(1 - ft) it is half its derivative)
        right = dg.factors(show(coeffs[u][1]))[1] if u in coeffs else None
        for g, act in self.gate_acts.items():
            deriv = _terms().derivative_of(g, act)
            dfactors = dg.factors(deriv)[1]
            if mprod == deriv or (not extra and all(show(b) in dfactors for b in missing)
                                  and (right is None or right >= dfactors)):
                # the same derivative present on another term of the sum: a parenthesis left out
                others = [v for v in coeffs if v != u and dg.factors(show(coeffs[v][0]))[1] >= dfactors]
                if others:
                    return "parenthesis", (
                        f"the other term has it: the derivative of the {act} in `{g}` multiplies the whole sum "
                        "(a missing parenthesis?)")
                return "missing_derivative", f"it is the derivative of the {act} in `{g}`, `{_terms()._py(deriv)}`"
        if not extra and isinstance(mprod, sp.Symbol) and mprod.name in self.gate_acts:
            return "missing_value", f"`{mprod.name}` is the gate's value here, not its derivative"
        return "", ""

    def param_blocks(self, name: str) -> dict[str, tuple[int, Any, Any]]:
        """{param: (axis, start, stop)}: the block of each weight the engine's
        ``name`` uses (``Wf -> (1, 0, n_a)`` for ``da_prev``)."""
        if name in self._blocks:
            return self._blocks[name]
        keep = set(self.derivation.cell_inputs) | set(self.cell.preact_names.values())
        R = _terms().expand(self, _terms().reference(self, name), keep)
        grads = {sp.Symbol(n) for n in keep}
        out: dict[str, tuple[int, Any, Any]] = {}
        try:
            terms, _ = _terms().linear_terms(R, grads, sp.Symbol("__P"))
        except (_terms().NotLinear, _terms().Unsupported):
            terms = []
        for tmpl, _core in terms:
            for node in sp.preorder_traversal(_terms().normalize(tmpl)):
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
    from derive.verifier.cache import load

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
        from derive.verifier.latex_reader import prepare

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

r"""The chain rule of every step of a derivation, as rows of LaTeX.

Contract. ``explain(derivation)`` returns an :class:`Explanation`: the forward
equations and, for every named adjoint of ``derivation.steps`` in the
engine's (reverse) order, a :class:`StepView` whose rows read

    ∂L/∂v  = Σ_{consumers u of v} ∂L/∂u ⊙ ∂u/∂v   (+ what step t+1 sends back)   the chain rule
           = Σ (u's adjoint) ⊙ (the local partial, substituted)                    partials substituted
    dv     = the engine's result                                                   numbered (B k)

Everything comes from the engine's data: the terms of each
:class:`~derive.engine.backprop.Step` (consumer, partial, contribution), the lowered
graph for the names of the consumers, the derivative rules of
:mod:`derive.engine.rules` for an adjoint the engine inlined (``∂L/∂Γ_f`` when only
``dγ_f`` is named), and the step at t+1 for a carried term (``dc_next`` is
``dc^{⟨t+1⟩} ⊙ Γ_f^{⟨t+1⟩}``). The rows that state a numbered equation print
it with :func:`derive.spec.latex.to_latex`'s conventions, so the project's LaTeX
reader reads them back (the tests check this).

Equations are numbered F1, F2, … (forward, in the cell's order) and B1, B2, …
(backward, in ``derivation.backward``'s order, the book's aliases left out):
:func:`equation_tags` gives the number of every name and
:func:`equation_label` its LaTeX label (``eq:dft``), stable as long as the
spec's equations keep their order.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import sympy as sp

from derive.spec import ops
from derive.spec.expr import Scope, default_functions, parse_equation
from derive.spec.latex import Notation, label_key, paren, shift_time, to_latex
from derive.engine.backprop import gate_values
from derive.engine.rules import RULES, Term


# ---------------------------------------------------------------------------
# numbering


def equation_tags(derivation) -> dict[str, str]:
    """``{name: "F3" | "B7"}`` for every forward target and every backward
    quantity (the book's aliases excepted)."""
    tags = {str(eq.lhs): f"F{i}" for i, eq in enumerate(derivation.forward, 1)}
    k = 0
    for eq in derivation.backward:
        name = str(eq.lhs)
        if derivation.kind(name) == "book":
            continue
        k += 1
        tags[name] = f"B{k}"
    return tags


def equation_label(derivation, name: str) -> str:
    """The LaTeX label (and Markdown anchor) of ``name``'s equation."""
    return "eq:" + label_key(name)


# ---------------------------------------------------------------------------
# views


@dataclass
class Row:
    lhs: str  # LaTeX, "" for a continuation row
    rhs: str  # LaTeX


@dataclass
class Display:
    """Aligned rows; the last row carries ``tag`` (None: unnumbered)."""

    rows: list[Row]
    tag: str | None = None
    label: str | None = None
    name: str = ""  # the quantity the numbered row defines


@dataclass
class StepView:
    name: str  # the adjoint's name in the spec (dft)
    of: str  # the array or node it is the adjoint of
    kind: str  # head | glue | cell | param | state | input
    title: str  # LaTeX: the quantity, ∂L/∂v
    meaning: str  # text: what v is
    name_tex: str  # LaTeX: the notation's name of the gradient
    of_tex: str  # LaTeX: v
    consumers: list[tuple[str, str, str]]  # (LaTeX of the consumer, its equation tag, "" or "at t+1")
    display: Display
    where: list[Display] = field(default_factory=list)  # inlined adjoints, spelled out
    note: str = ""  # "" | "softmax_cross_entropy" | "squared_error": the loss head's own rule


@dataclass
class Explanation:
    derivation: object
    notation: Notation
    tags: dict[str, str]
    forward: list[Display]
    steps: list[StepView]
    numbered: list[tuple[str, str, str]]  # (name, LaTeX lhs, LaTeX rhs) of every numbered equation
    adjoints: dict[str, str] = field(default_factory=dict)  # graph node or array -> its adjoint's name
    adjoint_names: dict[str, str] = field(default_factory=dict)  # adjoint name -> its node or array
    link_by_grad: dict = field(default_factory=dict)  # a link's grad name -> the link
    preacts: dict[str, str] = field(default_factory=dict)  # gate -> its pre-activation node (z_<gate>)

    def adjoint_of(self, array: str) -> str:
        """The name of dL/d(array) for a parameter, state or input."""
        return self.derivation.gradient_name(array)


# ---------------------------------------------------------------------------
# line breaking

_CMD_WIDTH = {r"\odot": 1.6, r"\otimes": 1.6, r"\top": 0.8, r"\quad": 1.5, r"\qquad": 3}
_ZERO = {r"\left", r"\right", r"\mathrm", r"\mathit", r"\operatorname", r"\begin", r"\end", r"\tilde", r"\hat"}


def width(tex: str) -> float:
    """A rough width of a LaTeX formula, in characters of the body font."""
    total, i, n = 0.0, 0, len(tex)
    while i < n:
        ch = tex[i]
        if tex.startswith(r"\frac", i):
            j = i + 5
            parts = []
            for _ in range(2):
                end = _group_end(tex, j)
                parts.append(tex[j + 1:end])
                j = end + 1
            total += max(width(p) for p in parts) * 0.75 + 0.5
            i = j
            continue
        if tex.startswith(r"\begin{bmatrix}", i):
            end = tex.find(r"\end{bmatrix}", i)
            body = tex[i + 15:end]
            cells = [c for row in body.split(r"\\") for c in row.split("&")]
            cols = max(len(row.split("&")) for row in body.split(r"\\"))
            total += max(width(c) for c in cells) * cols + 1.5
            i = end + 13
            continue
        if ch == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", tex[i:])
            cmd = m.group(0)
            total += 0 if cmd in _ZERO else _CMD_WIDTH.get(cmd, 1.0)
            i += len(cmd)
            if cmd == r"\begin" or cmd == r"\end":
                i = _group_end(tex, i) + 1
            continue
        if ch in "_^":
            j = i + 1
            if j < n and tex[j] == "{":
                end = _group_end(tex, j)
                total += width(tex[j + 1:end]) * 0.7
                i = end + 1
            else:
                total += 0.7
                i = j + 1
            continue
        if ch in "{} ":
            i += 1
            continue
        total += 1.6 if ch in "+-=" else 1.0
        i += 1
    return total


def _group_end(tex: str, start: int) -> int:
    depth = 0
    for j in range(start, len(tex)):
        if tex[j] == "{" and (j == 0 or tex[j - 1] != "\\"):
            depth += 1
        elif tex[j] == "}" and tex[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return j
    return len(tex) - 1


def split_terms(tex: str) -> list[str]:
    """Top-level ``+``/``-`` terms of a formula, each with its sign (``- x``)."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(tex):
        if tex.startswith(r"\left", i):
            depth += 1
            i += 5
            continue
        if tex.startswith(r"\right", i):
            depth -= 1
            i += 6
            continue
        if tex.startswith(r"\begin", i):
            depth += 1
        if tex.startswith(r"\end", i):
            depth -= 1
        ch = tex[i]
        if ch == "{" and (i == 0 or tex[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and tex[i - 1] != "\\":
            depth -= 1
        elif depth == 0 and tex.startswith((" + ", " - "), i) and i > 0:
            out.append(tex[start:i].strip())
            start = i + 1
            i += 3
            continue
        i += 1
    out.append(tex[start:].strip())
    return [t[2:] if t.startswith("+ ") else t for t in out if t]


def break_rows(lhs: str, rhs: str, limit: float) -> list[Row]:
    """``lhs = rhs`` as rows no wider than ``limit``, broken before a top-level
    ``+`` or ``-`` (continuation rows indented by a quad)."""
    if width(rhs) <= limit:
        return [Row(lhs, rhs)]
    rows: list[Row] = []
    line = ""
    for term in split_terms(rhs):
        piece = term if not line else (term if term.startswith("- ") else "+ " + term)
        candidate = (line + " " + piece).strip()
        if line and width(candidate) > limit:
            rows.append(Row(lhs if not rows else "", line))
            line = piece
        else:
            line = candidate
    rows.append(Row(lhs if not rows else "", line))
    for r in rows[1:]:
        r.rhs = r"\quad " + r.rhs
    return rows


# ---------------------------------------------------------------------------
# the explainer


def _strip_sums(expr):
    """(core, n): ``expr`` without its outer ``batch_sum`` wrappers."""
    n = 0
    while isinstance(expr, ops.batch_sum):
        expr, n = expr.args[0], n + 1
    return expr, n


def _divide(expr: sp.Expr, by: sp.Expr) -> sp.Expr | None:
    """``expr / by`` factor by factor (no expansion); None if ``by`` is not a factor."""
    if by == 1:
        return expr
    have: dict = {}
    for f in sp.Mul.make_args(expr):
        b, e = f.as_base_exp()
        have[b] = have.get(b, 0) + e
    for f in sp.Mul.make_args(by):
        b, e = f.as_base_exp()
        if have.get(b, 0) == 0:
            return None
        have[b] -= e
    return sp.Mul(*[b**e for b, e in have.items() if e != 0])


class Explainer:
    """Builds the :class:`Explanation` of one derivation (see the module doc)."""

    LIMIT = 58.0  # the right side's width in characters before a row breaks

    def __init__(self, derivation):
        d = self.d = derivation
        cell = self.cell = d.cell
        self.nt = Notation(cell)
        self.tags = equation_tags(d)
        self.nodes = list(d.head_nodes) + list(d.nodes)
        self.by_name = {n.name: n for n in self.nodes}
        self.head = {n.name for n in d.head_nodes}
        self.order = {n.name: i for i, n in enumerate(self.nodes)}
        self.steps = {s.name: s for s in d.steps}
        # adjoint name -> the node/array it belongs to; node -> its adjoint's name
        self.of = {s.name: s.of for s in d.steps}
        # in the cell a link's output has the adjoint the cell names (dc), or
        # else the gradient that reaches it (da_next); the head's own come last
        self.adjoint: dict[str, str] = {}
        for s in d.steps:
            if d.kind(s.name) not in ("glue", "head"):
                self.adjoint.setdefault(s.of, s.name)
        for link in cell.links:
            self.adjoint.setdefault(link.out, link.grad)
            self.of[link.grad] = link.out
        for s in d.steps:
            if d.kind(s.name) == "head":
                self.adjoint.setdefault(s.of, s.name)
        self.of.setdefault(cell.loss.external, cell.loss.on)
        self.link_by_grad = {link.grad: link for link in cell.links}
        self.link_by_prev_grad = {}
        for link in cell.links:
            try:
                self.link_by_prev_grad[d.gradient_name(link.prev)] = link
            except KeyError:
                pass
        self.forward_values = gate_values(self.nodes)
        self.eq_of_text = {e.text: e.target for e in cell.equations}
        self.placeholders: dict[str, str] = {}

    # -- names ------------------------------------------------------------------------
    def tex(self, name: str) -> str:
        return self.nt.tex(name)

    def is_head(self, node: str) -> bool:
        return node in self.head and node != self.cell.loss.on

    def D(self, node: str) -> str:
        """``\\frac{\\partial L}{\\partial node}`` (the step's loss in the head)."""
        return self.nt.grad(self.tex(node), step=self.is_head(node))

    def P(self, u: str, v: str) -> str:
        return self.nt.partial(self.tex(u), self.tex(v))

    def latex(self, expr) -> str:
        return to_latex(expr, self.cell, self.placeholders)

    def hold(self, tex: str, grad: bool = False) -> sp.Symbol:
        """A placeholder symbol that prints as ``tex``."""
        key = ("__D" if grad else "__P") + str(len(self.placeholders))
        self.placeholders[key] = tex
        return sp.Symbol(key)

    def factor(self, expr) -> str:
        text = self.latex(expr)
        if isinstance(expr, sp.Add):
            return paren(text)
        return text

    def eq_tag(self, node: str) -> str:
        """The forward equation that computes graph node ``node``."""
        n = self.by_name.get(node)
        if n is None:
            return ""
        target = self.eq_of_text.get(n.equation)
        return self.tags.get(target, "") if target else ""

    def consumer_name(self, node: str) -> str:
        """A graph node as its reader knows it: a hidden product is shown as
        the pre-activation (or value) it feeds."""
        seen = node
        while seen in self.by_name and self.by_name[seen].hidden:
            users = [u for u in self.nodes if seen in u.args]
            if len(users) != 1:
                break
            seen = users[0].name
        return seen

    # -- one term of a chain rule -----------------------------------------------------
    def adjoint_expr(self, node: str):
        """The adjoint of ``node`` as the engine has it: its name, or (inlined)
        the sum over its consumers, through the rules of derive.engine.rules."""
        name = self.adjoint.get(node)
        if name is not None:
            return sp.Symbol(name)
        total = sp.Integer(0)
        for term in self.consumer_terms(node):
            total += term.contribution
        return total

    def consumer_terms(self, node: str) -> list[Term]:
        out = []
        for u in self.nodes:
            if node in u.args:
                g = self.adjoint_expr(u.name)
                for term in RULES[u.kind](u, g, self.d.shapes, self.forward_values):
                    if term.arg == node:
                        out.append(term)
        return out

    def grad_symbols(self, expr) -> list[sp.Symbol]:
        return [s for s in sorted(expr.free_symbols, key=str) if s.name in self.of]

    def term(self, term: Term, v: str, where: list[Display]) -> tuple[str, str]:
        """(chain-rule form, substituted form) of one contribution to dL/dv."""
        core, sums = _strip_sums(term.contribution)
        node = self.by_name.get(term.node)
        if term.partial is not None and node is not None and not node.hidden:
            u = term.node
            named = self.adjoint.get(u)
            if named is not None:
                g = sp.Symbol(named)
            else:
                g = _divide(core, term.partial)
                if g is None:
                    g = sp.factor_terms(core / term.partial)
                self.spell_out(u, g, where)
            sym = self.D(u) + r" \odot " + self.P(u, v)
            sub = self.factor(g) if term.partial == 1 else self.factor(g) + r" \odot " + self.factor(term.partial)
        else:
            sym, sub = self.linear(core, v), self.latex(core)
        for _ in range(sums):
            sym = r"\sum_{\mathrm{batch}} " + (paren(sym) if " " in sym else sym)
            sub = r"\sum_{\mathrm{batch}} " + (paren(sub) if r" \odot " in sub or " + " in sub else sub)
        return sym, sub

    def linear(self, core, v: str) -> str:
        """The chain-rule form of a linear map's contribution (``W^T g``, ``g x^T``, a slice)."""
        grads = self.grad_symbols(core)
        if len(grads) != 1:
            return self.latex(core)
        g = grads[0]
        w = self.consumer_name(self.of[g.name])
        D = self.D(w)
        if self.cell.symbols.get(v) is not None and self.cell.symbols[v].role == "param":
            return D + r" \, " + self.P(w, v)
        if isinstance(core, ops.matmul):
            a, b = core.args
            if b == g and isinstance(a, ops.transpose):
                return r"\left(" + self.P(w, v) + r"\right)^{\top} " + D
            if a == g and not isinstance(b, ops.transpose):
                return D + r" \, " + self.P(w, v)
        # a slice of a stacked input's gradient, or anything else: g spelled as ∂L/∂w
        return self.latex(core.xreplace({g: self.hold(D, grad=True)}))

    def spell_out(self, u: str, g, where: list[Display]) -> None:
        """A row set for an inlined adjoint: ∂L/∂u = Σ ∂L/∂w ⊙ ∂w/∂u = g."""
        if any(disp.name == u for disp in where):
            return
        sym_parts, sub_parts = [], []
        total = sp.Integer(0)
        for term in self.consumer_terms(u):
            s, b = self.term(term, u, where)
            sym_parts.append(s)
            sub_parts.append(b)
            total += term.contribution
        if sp.simplify(total - g) != 0:  # the engine inlined something else: do not explain it
            return
        rows = [Row(self.D(u), " + ".join(sym_parts))]
        sub = " + ".join(sub_parts)
        if sub != rows[0].rhs:
            rows.append(Row("", sub))
        where.append(Display(rows, None, None, u))

    def carried(self, link, where) -> tuple[str, str]:
        """What step t+1 sends back along ``link``: its d(prev), moved to t+1."""
        name = self.d.gradient_name(link.prev)
        step = self.steps[name]
        syms, subs = [], []
        for term in sorted(step.terms, key=lambda tm: self.order.get(self.consumer_name(tm.node), 0)):
            s, b = self.term(term, link.prev, [])
            syms.append(s)
            subs.append(b)
        return shift_time(" + ".join(syms), 1), shift_time(" + ".join(subs), 1)

    # -- steps ---------------------------------------------------------------------------
    def step(self, s) -> StepView:
        d, cell = self.d, self.cell
        kind = d.kind(s.name)
        v = s.of
        where: list[Display] = []
        note = ""
        consumers: list[tuple[str, str, str]] = []
        lhs_sym = self.D(v) if not (kind == "head" and s.name == cell.loss.external) else self.nt.grad(self.tex(v), step=True)
        syms, subs = [], []
        terms = sorted(s.terms, key=lambda tm: self.order.get(self.consumer_name(tm.node), 0))
        for term in terms:
            a, b = self.term(term, v, where)
            syms.append(a)
            subs.append(b)
            c = self.consumer_name(term.node)
            consumers.append((self.tex(c), self.eq_tag(c), ""))
        if kind == "glue":
            link = self.link_by_grad[s.name]
            if link.out == cell.loss.on and cell.loss.external in {str(x) for x in s.result.free_symbols}:
                syms.append(self.nt.grad(self.tex(link.out), step=True))
                subs.append(self.latex(sp.Symbol(cell.loss.external)))
                consumers.append((self.nt.step_loss, "", ""))
            a, b = self.carried(link, where)
            syms.append(a)
            subs.append(b)
            for term in self.steps[d.gradient_name(link.prev)].terms:
                c = self.consumer_name(term.node)
                consumers.append((shift_time(self.tex(c), 1), self.eq_tag(c), "at t+1"))
        elif s.outside is not None:
            link = self.link_by_grad.get(str(s.outside))
            if link is not None:
                a, _ = self.carried(link, where)
                syms.append(a)
                subs.append(self.latex(s.outside))
                for term in self.steps[d.gradient_name(link.prev)].terms:
                    c = self.consumer_name(term.node)
                    consumers.append((shift_time(self.tex(c), 1), self.eq_tag(c), "at t+1"))
            else:  # the seed of the loss head
                note = self._seed_note()
        elif not terms:  # a head quantity the engine assembled directly
            pieces = sp.Add.make_args(s.result)
            if kind == "head" and s.name == cell.loss.external and cell.loss.prediction == cell.loss.on:
                note = self._seed_note()
            else:
                for p in pieces:
                    syms.append(self.linear(p, v))
                    subs.append(self.latex(p))
                    grads = self.grad_symbols(p)
                    if grads:
                        c = self.consumer_name(self.of[grads[0].name])
                        consumers.append((self.tex(c), self.eq_tag(c), ""))
        over_time = s.over_time
        result = self._ordered_result(s, terms)
        name_tex = self.latex(sp.Symbol(s.name))
        rows: list[Row] = []
        if syms:
            sym = " + ".join(syms)
            sub = " + ".join(subs)
            if over_time:
                sym = self._sum_t(sym, len(syms))
                sub = self._sum_t(sub, len(subs))
            rows += break_rows(lhs_sym, sym, self.LIMIT)
            if sub != sym and sub != result:
                rows += break_rows("", sub, self.LIMIT)
        elif lhs_sym != name_tex:
            rows.append(Row(lhs_sym, name_tex))
        rows += break_rows(name_tex, result, self.LIMIT)
        tag = self.tags.get(s.name)
        display = Display(rows, tag, equation_label(d, s.name), s.name)
        return StepView(s.name, v, kind, lhs_sym, self.meaning(v), name_tex, self.tex(v), consumers, display, where,
                        note)

    def _sum_t(self, text: str, n: int) -> str:
        if n > 1 or " + " in text or " - " in text:
            return r"\sum_{t=1}^{T} " + paren(text)
        return r"\sum_{t=1}^{T} " + text

    def _ordered_result(self, s, terms) -> str:
        """The step's result as the engine has it, its terms in graph order."""
        rhs = self.d.equation(s.name).rhs
        body = rhs.function if isinstance(rhs, sp.Sum) else rhs
        pieces = [t.contribution for t in terms]
        if s.outside is not None:
            pieces.append(s.outside)
        if pieces and len(pieces) > 1 and sp.expand(sp.Add(*pieces) - body) == 0:
            text = self.latex(pieces[0])
            for p in pieces[1:]:
                if p.could_extract_minus_sign():
                    text += " - " + self.factor(-p)
                else:
                    text += " + " + self.latex(p)
            if isinstance(rhs, sp.Sum):
                return r"\sum_{t=1}^{T} " + paren(text)
            return text
        return self.latex(rhs)

    def _seed_note(self) -> str:
        return {"cross_entropy": "softmax_cross_entropy", "squared_error": "squared_error"}.get(self.cell.loss.kind, "")

    def meaning(self, v: str) -> str:
        info = self.cell.symbols.get(v)
        if info is not None:
            return info.meaning
        n = self.by_name.get(v)
        if n is not None and n.preact_of is not None:
            gate = self.cell.symbols[n.preact_of]
            return f"the pre-activation of the {gate.meaning or n.preact_of}"
        return ""

    # -- forward ---------------------------------------------------------------------------
    def forward(self) -> list[Display]:
        out = []
        for e in self.cell.equations:
            lhs = self.tex(e.target)
            rhs = source_latex(e, self.cell)
            if rhs == lhs:  # a stacked input written as its own name: show the code name
                lhs = r"\mathrm{" + e.target.replace("_", r"\_") + "}"
            rows = break_rows(lhs, rhs, self.LIMIT)
            out.append(Display(rows, self.tags[e.target], equation_label(self.d, e.target), e.target))
        return out

    def explain(self) -> Explanation:
        forward = self.forward()
        steps = [self.step(s) for s in self.d.steps]
        numbered = [(disp.name, *numbered_equation(disp)) for disp in forward + [s.display for s in steps]]
        preacts = {n.preact_of: n.name for n in self.nodes if n.preact_of is not None}
        return Explanation(self.d, self.nt, self.tags, forward, steps, numbered, dict(self.adjoint), dict(self.of),
                           dict(self.link_by_grad), preacts)


def numbered_equation(display: Display) -> tuple[str, str]:
    """(lhs, rhs) of the equation a display numbers: its last row with a left
    side, joined with the continuation rows after it."""
    start = max(k for k, r in enumerate(display.rows) if r.lhs)
    parts = [display.rows[start].rhs] + [r.rhs.removeprefix(r"\quad ") for r in display.rows[start + 1:]]
    return display.rows[start].lhs, " ".join(parts)


def source_latex(equation, cell) -> str:
    """A forward equation's right side in the order the spec (the source) writes
    it: ``f_t \\odot c_{t-1} + i_t \\odot g_t`` rather than SymPy's order. Reads
    back to the same expression; falls back to SymPy's order if it cannot."""
    scope = Scope(symbols={n: sp.Symbol(n) for n in cell.symbols}, dims=cell.dim_symbols(),
                  functions=default_functions(cell.feature_axis), feature_axis=cell.feature_axis)
    try:
        with sp.evaluate(False):
            _, rhs = parse_equation(equation.text, scope)
        if sp.expand(rhs.doit() - equation.rhs) == 0:
            return to_latex(rhs, cell)
    except Exception:  # noqa: BLE001 - a display nicety, never a failure
        pass
    return to_latex(equation.rhs, cell)


@functools.lru_cache(maxsize=16)
def _cached(derivation) -> Explanation:
    return Explainer(derivation).explain()


def explain(derivation) -> Explanation:
    """The :class:`Explanation` of a derivation (cached per derivation)."""
    return _cached(derivation)

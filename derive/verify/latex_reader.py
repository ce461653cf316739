r"""Read LaTeX formulas written in a notation's own symbols: LaTeX -> SymPy.

Contract. ``LatexReader(derivation)`` builds the notation's table of LaTeX
names; ``reader.parse(text)`` returns the SymPy expression (the ops of
:mod:`derive.ops`, exactly as :mod:`derive.expr` builds them) and
``reader.parse_equation(text)`` returns ``(left-side name or None, right side)``.
Anything outside the language raises :class:`LatexError` (an
:class:`~derive.errors.ExprError`) with the column of the fault. Nothing is
evaluated: the text is tokenised and read by a recursive-descent parser against
the notation's symbol table; SymPy's ``parse_latex`` is never used (it reads
``\odot`` as a symbol, ``\tilde{c}`` as a product and ``W^{T}`` as a power).

Everything :func:`derive.latex.to_latex` prints reads back to the same
expression, and so does what learners paste:

- names: every symbol's and backward quantity's LaTeX from the spec (and the
  printer's default names such as ``\mathrm{d}W_f``), the spec's
  ``[latex_aliases]`` (``\Gamma_u``, ``da_{next}``, ``W_u``), each Python name
  in TeX spelling (``c_prev`` as ``c_{prev}``), each name without its
  current-time marker (``\Gamma_f`` for ``\Gamma_f^{\langle t \rangle}``), and
  ``d``/``\partial`` + a name, ``\frac{\partial L}{\partial X}``,
  ``\frac{dL}{dX}`` for the gradient of X. Spellings are compared after
  normalisation: braces around one token, ``\left``/``\right``, spacing,
  ``\mathrm``/``\text``/``\mathbf``/``\operatorname`` wrappers, ``\tag{..}``,
  ``\label{..}``, ``&`` and ``$`` are ignored; ``\widetilde`` is ``\tilde``.
  The longest name wins (``da_{next}`` before ``d``).
- ``*``, ``\odot``, ``\circ``, ``\ast``: elementwise product; ``/`` and
  ``\frac``: elementwise quotient; juxtaposition, ``\cdot`` and ``\times``: the
  matrix product when the shapes make one (a matrix times a vector or a
  matrix), else the elementwise product (numbers, a peephole vector, two
  vectors); ``\otimes``: outer product.
- ``^{T}``, ``^T``, ``^\top``, ``^{\intercal}``, ``^{\mathsf{T}}``: transpose;
  ``^{2}``: power (number literals up to 16); ``X[:, :n_a]``: slice;
  ``{X}_{[a:b]}``: rows a..b-1; ``{X}_{k}``: unit k.
- ``\sigma``, ``\tanh``, ``\exp``, ``\log``, ``\ln``, ``\operatorname{softmax}``
  (also spelled out, ``sigmoid(...)``), ``\tanh^2(x)``, ``\sigma'(x)`` and
  ``\tanh'(x)`` (the derivatives), arguments in ``( )``, ``\left( \right)``,
  ``{ }`` or a single atom; ``e^{x}``.
- ``\sum_{t}``/``\sum_{t=1}^{T}``: sum over steps; ``\sum_{batch}`` (any other
  index): sum over the batch; a sum covers the product that follows it, up to
  the next ``+`` or ``-``; ``\left. X \right|_{t+1}``: X at step t+1;
  ``\begin{bmatrix} a \\ x \end{bmatrix}`` and ``[a; x]``: concatenation.

Rejected quickly: more than ``MAX_LENGTH`` characters, nesting deeper than
``MAX_DEPTH``, unknown commands (``\input``, ``\def``, ...), characters outside
the language. :func:`prepare` runs these checks without a notation (the
verifier calls it before loading anything); the name table is built on first
use.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import sympy as sp

from . import ops
from .cell import ShapeError, fmt_shape
from .errors import ExprError
from .expr import MAX_EXPONENT

MAX_LENGTH = 10_000
MAX_DEPTH = 100

_t = sp.Symbol("t", integer=True, positive=True)
_T = sp.Symbol("T", integer=True, positive=True)


class LatexError(ExprError):
    """A LaTeX formula could not be read; ``col`` is the column of the fault."""


# ---------------------------------------------------------------------------
# tokens


@dataclass(frozen=True)
class Tok:
    kind: str  # cmd | chr | num | grp | env
    value: Any  # command name, character, number text; grp: tuple of Tok; env: (name, rows)
    start: int
    end: int

    @property
    def key(self):
        k = self.__dict__.get("_key")
        if k is None:
            if self.kind == "grp":
                k = ("g", tuple(t.key for t in self.value))
            elif self.kind == "env":
                name, rows = self.value
                k = ("e", name, tuple(tuple(tuple(t.key for t in cell) for cell in row) for row in rows))
            else:
                k = (self.kind, self.value)
            object.__setattr__(self, "_key", k)
        return k


def _c(name):
    return ("cmd", name)


_UNICODE = {
    "⊙": _c("\\odot"), "∘": _c("\\circ"), "·": _c("\\cdot"), "×": _c("\\times"), "⊗": _c("\\otimes"),
    "−": ("chr", "-"), "–": ("chr", "-"), "σ": _c("\\sigma"), "Γ": _c("\\Gamma"), "γ": _c("\\gamma"),
    "δ": _c("\\delta"), "∂": _c("\\partial"), "∑": _c("\\sum"), "ε": _c("\\epsilon"), "ι": _c("\\iota"),
    "φ": _c("\\phi"), "ω": _c("\\omega"), "⟨": _c("\\langle"), "⟩": _c("\\rangle"), "ℓ": _c("\\ell"),
    "τ": _c("\\tau"), "η": _c("\\eta"), "θ": _c("\\theta"), "λ": _c("\\lambda"), "μ": _c("\\mu"),
}
_SINGLE = set("+-*/=()[],;:|'!.^_&")

# commands dropped (with no argument), renamed, or dropped with their argument
_DROP = {
    "\\displaystyle", "\\textstyle", "\\scriptstyle", "\\limits", "\\nolimits", "\\nonumber", "\\notag",
    "\\quad", "\\qquad", "\\,", "\\;", "\\:", "\\!", "\\ ", "\\big", "\\Big", "\\bigg", "\\Bigg", "\\bigl",
    "\\bigr", "\\Bigl", "\\Bigr", "\\biggl", "\\biggr", "\\Biggl", "\\Biggr", "\\[", "\\]", "\\(", "\\)",
    "\\middle",
}
_DROP_WITH_ARG = {"\\tag", "\\tag*", "\\label", "\\hspace", "\\vspace", "\\phantom"}
_UNWRAP = {"\\mathrm", "\\mathit", "\\text", "\\textrm", "\\textit", "\\textnormal", "\\mathbf", "\\boldsymbol",
           "\\bm", "\\mathsf", "\\operatorname", "\\mathnormal", "\\textbf", "\\mathbfit"}
_RENAME = {"\\widetilde": "\\tilde", "\\widehat": "\\hat", "\\dfrac": "\\frac", "\\tfrac": "\\frac",
           "\\varepsilon": "\\epsilon", "\\varphi": "\\phi", "\\lbrack": "[", "\\rbrack": "]", "\\ast": "*",
           "\\lparen": "(", "\\rparen": ")", "\\{": "(", "\\}": ")", "\\_": "_", "\\vert": "|", "\\lvert": "|",
           "\\rvert": "|"}
_WRAPPERS = {"equation", "equation*", "align", "align*", "aligned", "gather", "gather*", "split", "displaymath",
             "math", "multline", "multline*"}
_MATRICES = {"bmatrix", "pmatrix", "matrix", "Bmatrix", "vmatrix", "array", "smallmatrix"}


def lex(text: str) -> list[Tok]:
    """Characters -> flat tokens (braces as chr tokens)."""
    out: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n~$":
            i += 1
            continue
        if ch == "%":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == "\\":
            j = i + 1
            if j < n and text[j].isascii() and text[j].isalpha():
                while j < n and text[j].isascii() and text[j].isalpha():
                    j += 1
                if j < n and text[j] == "*" and text[i:j] in ("\\tag",):
                    j += 1
            elif j < n:
                j += 1
            else:
                raise LatexError("a lone backslash at the end", text, i)
            out.append(Tok("cmd", text[i:j], i, j))
            i = j
            continue
        if ch.isascii() and ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            j = i
            seen_dot = False
            while j < n and (text[j].isdigit() or (text[j] == "." and not seen_dot and j + 1 < n and text[j + 1].isdigit())):
                seen_dot |= text[j] == "."
                j += 1
            if j - i > 15:
                raise LatexError("number too long", text, i)
            out.append(Tok("num", text[i:j], i, j))
            i = j
            continue
        if ch.isascii() and ch.isalpha():
            out.append(Tok("chr", ch, i, i + 1))
            i += 1
            continue
        if ch in _SINGLE or ch in "{}":
            out.append(Tok("chr", ch, i, i + 1))
            i += 1
            continue
        if ch in "<>":
            out.append(Tok("cmd", "\\langle" if ch == "<" else "\\rangle", i, i + 1))
            i += 1
            continue
        mapped = _UNICODE.get(ch)
        if mapped is not None:
            out.append(Tok(mapped[0], mapped[1], i, i + 1))
            i += 1
            continue
        if ch == "ᵀ":
            out += [Tok("chr", "^", i, i + 1), Tok("chr", "T", i, i + 1)]
            i += 1
            continue
        shown = repr(ch) if not ch.isprintable() else f"`{ch}`"
        raise LatexError(f"unexpected character {shown}", text, i)
    return out


def tree(tokens: list[Tok], text: str) -> list[Tok]:
    """Braces -> groups, \\begin{..}..\\end{..} -> environments (rows of cells)."""
    pos = 0

    def parse_seq(depth: int, closer: str | None, env: str | None) -> list[Tok]:
        nonlocal pos
        if depth > MAX_DEPTH:
            raise LatexError(f"the formula nests more than {MAX_DEPTH} deep", text, tokens[pos].start if pos < len(tokens) else None)
        seq: list[Tok] = []
        while pos < len(tokens):
            tok = tokens[pos]
            if tok.kind == "chr" and tok.value == "{":
                pos += 1
                inner = parse_seq(depth + 1, "}", None)
                end = tokens[pos - 1].end
                seq.append(Tok("grp", tuple(inner), tok.start, end))
                continue
            if tok.kind == "chr" and tok.value == "}":
                if closer == "}":
                    pos += 1
                    return seq
                raise LatexError("a `}` without its `{`", text, tok.start)
            if tok.kind == "cmd" and tok.value == "\\begin":
                name = _env_name(tokens, pos, text)
                pos += 3 + len(name)
                body = parse_seq(depth + 1, None, name)
                seq.append(Tok("env", (name, _rows(body)), tok.start, tokens[pos - 1].end))
                continue
            if tok.kind == "cmd" and tok.value == "\\end":
                name = _env_name(tokens, pos, text)
                if env != name:
                    raise LatexError(f"`\\end{{{name}}}` does not close " + (f"`\\begin{{{env}}}`" if env else "anything"),
                                     text, tok.start)
                pos += 3 + len(name)
                return seq
            seq.append(tok)
            pos += 1
        if closer == "}":
            raise LatexError("a `{` is never closed", text, len(text))
        if env is not None:
            raise LatexError(f"`\\begin{{{env}}}` is never closed", text, len(text))
        return seq

    return parse_seq(0, None, None)


def _env_name(tokens, pos, text) -> str:
    if pos + 1 >= len(tokens) or tokens[pos + 1].value != "{":
        raise LatexError("`\\begin`/`\\end` needs a name in braces", text, tokens[pos].start)
    name = ""
    j = pos + 2
    while j < len(tokens) and tokens[j].value != "}":
        if tokens[j].kind not in ("chr", "num"):
            raise LatexError("a bad environment name", text, tokens[j].start)
        name += tokens[j].value
        j += 1
    if j >= len(tokens):
        raise LatexError("a `{` is never closed", text, len(text))
    # the tokens consumed: \begin { n a m e } -> 3 + len(chars)
    if len(name) != j - (pos + 2):
        raise LatexError("a bad environment name", text, tokens[pos].start)
    return name


def _rows(body: list[Tok]) -> tuple:
    rows, row, cell = [], [], []
    for tok in body:
        if tok.kind == "cmd" and tok.value == "\\\\":
            row.append(tuple(cell))
            rows.append(tuple(row))
            row, cell = [], []
        elif tok.kind == "chr" and tok.value == "&":
            row.append(tuple(cell))
            cell = []
        else:
            cell.append(tok)
    if cell or row:
        row.append(tuple(cell))
        rows.append(tuple(row))
    return tuple(r for r in rows if any(c for c in r))


def canon(seq, top: bool = False) -> list[Tok]:
    """Normalise a token sequence (see the module docstring)."""
    out: list[Tok] = []
    i = 0
    seq = list(seq)
    while i < len(seq):
        tok = seq[i]
        if tok.kind == "cmd":
            name = _RENAME.get(tok.value, tok.value)
            if name in _DROP:
                i += 1
                continue
            if name in _DROP_WITH_ARG:
                i += 2 if i + 1 < len(seq) and seq[i + 1].kind == "grp" else 1
                continue
            if name in _UNWRAP:
                if i + 1 < len(seq) and seq[i + 1].kind == "grp":
                    out.extend(canon(seq[i + 1].value))
                    i += 2
                else:
                    i += 1
                continue
            if name == "\\left":
                nxt = seq[i + 1] if i + 1 < len(seq) else None
                if nxt is not None and nxt.kind == "chr" and nxt.value == ".":
                    out.append(Tok("cmd", "\\left.", tok.start, nxt.end))
                    i += 2
                    continue
                i += 1
                continue
            if name == "\\right":
                nxt = seq[i + 1] if i + 1 < len(seq) else None
                if nxt is not None and nxt.kind == "chr" and nxt.value == "|":
                    out.append(Tok("cmd", "\\right|", tok.start, nxt.end))
                    i += 2
                    continue
                if nxt is not None and nxt.kind == "chr" and nxt.value == ".":
                    i += 2
                    continue
                i += 1
                continue
            if len(name) == 1:  # renamed to a character
                out.append(Tok("chr", name, tok.start, tok.end))
            elif name != tok.value:
                out.append(Tok("cmd", name, tok.start, tok.end))
            else:
                out.append(tok)
            i += 1
            continue
        if tok.kind == "chr" and tok.value == "&" and top:
            i += 1
            continue
        if tok.kind == "grp":
            inner = canon(tok.value)
            if len(inner) == 1:
                out.append(inner[0])
            elif inner:
                out.append(Tok("grp", tuple(inner), tok.start, tok.end))
            i += 1
            continue
        if tok.kind == "env":
            name, rows = tok.value
            rows = tuple(tuple(tuple(canon(cell)) for cell in row) for row in rows)
            if name in _WRAPPERS:
                if len(rows) > 1:
                    raise LatexError("one equation at a time", "", tok.start)
                for cell in (rows[0] if rows else ()):
                    out.extend(cell)
                i += 1
                continue
            if name == "array" and rows and rows[0] and rows[0][0] and rows[0][0][0].kind in ("chr", "grp"):
                first = rows[0][0]
                # \begin{array}{c} ...: drop the column spec
                if first and first[0].kind == "grp" or (first and first[0].kind == "chr" and first[0].value in "lcr"):
                    rows = ((first[1:],) + rows[0][1:],) + rows[1:]
            out.append(Tok("env", (name, rows), tok.start, tok.end))
            i += 1
            continue
        out.append(tok)
        i += 1
    return out


def tokens_of(text: str, top: bool = True) -> list[Tok]:
    return canon(tree(lex(text), text), top=top)


def keys(seq) -> tuple:
    return tuple(t.key for t in seq)


# ---------------------------------------------------------------------------
# the notation's name table


@dataclass(frozen=True)
class Name:
    keys: tuple
    target: str  # a symbol, a backward quantity, a dimension, or a function (tanh, sigmoid)
    priority: int  # lower wins among names of the same length
    text: str  # as written, for did-you-mean


_TIME_MARKERS = [
    keys(tokens_of(r"\langle t \rangle")),
    keys(tokens_of("(t)")),
    keys(tokens_of("t")),
]
# a name at step t+1 (Greff et al.'s delta c^{t+1}): the value the next step computes, later(x)
_NEXT_MARKERS = [keys(tokens_of(r"\langle t+1 \rangle")), keys(tokens_of("(t+1)")), keys(tokens_of("t+1"))]
_STEP_MARKERS = _TIME_MARKERS + _NEXT_MARKERS + [keys(tokens_of("t-1")), keys(tokens_of("(t-1)"))]
_FUNCTION_TARGETS = {"tanh": sp.tanh, "sigmoid": ops.sigmoid, "exp": sp.exp, "log": sp.log}


def _marker_in_last_group(k: tuple) -> tuple | None:
    """Keys of a name whose last group ends in a time marker (``z_{\tilde{h}_t}``),
    with that marker dropped (``z_{\tilde{h}}``); else None."""
    if len(k) < 2 or k[-1][0] != "g":
        return None
    inner = k[-1][1]
    for marker in _TIME_MARKERS:
        tail = marker if len(marker) == 1 else (("g", marker),)
        for sep in (("chr", "_"), ("chr", "^")):
            n = len(tail) + 1
            if len(inner) > n and inner[-n:] == (sep,) + tail:
                rest = inner[:-n]
                return k[:-1] + (rest if len(rest) == 1 else (("g", rest),))
    return None


def python_as_tex(name: str) -> str:
    head, sep, tail = name.partition("_")
    if not sep:
        return name
    return head + "_{" + tail.replace("_", r"\_") + "}"


class LatexReader:
    """Reads LaTeX in one derivation's notation (see the module docstring)."""

    def __init__(self, derivation, shapes=None):
        """``shapes``: every name's shape (``judge.all_shapes``), or a function
        returning them when first needed; computed here if not given."""
        self.derivation = derivation
        self.cell = cell = derivation.cell
        self._shapes = shapes if shapes is None or callable(shapes) else dict(shapes)
        self.dims = cell.dim_symbols()
        self.feature_axis = cell.feature_axis
        self.backward = set(derivation.names())
        self._totals = None
        self._names: dict | None = None
        self.by_target: dict[str, str] = {}
        self.known_texts: list[str] = []

    # The shapes and the name table are built on first use, so that input
    # rejected by the tokenizer costs nothing.
    @property
    def shapes(self) -> dict:
        if self._shapes is None:
            from .shapes import all_shapes

            self._shapes = all_shapes(self.derivation)
        elif callable(self._shapes):
            self._shapes = self._shapes()
        return self._shapes

    @property
    def names(self) -> dict:
        if self._names is None:
            self._names = self._build_names()
        return self._names

    def _build_names(self) -> dict:
        from .latex import to_latex

        cell, derivation = self.cell, self.derivation
        entries: list[tuple[str, str, int]] = []
        for n in list(cell.symbols) + derivation.names():
            entries.append((to_latex(sp.Symbol(n), cell), n, 0))
        for d in cell.dims:
            entries.append((to_latex(self.dims[d], cell), d, 0))
        for tex, target in cell.latex_aliases.items():
            entries.append((tex, target, 1))
        for n in list(cell.symbols) + derivation.names() + list(cell.dims):
            entries.append((python_as_tex(n), n, 2))
            if "_" in n:
                entries.append((n.replace("_", r"\_"), n, 2))
        seen: dict[tuple, Name] = {}
        for tex, target, prio in entries:
            try:
                k = keys(tokens_of(tex))
            except ExprError:
                continue
            if not k:
                continue
            self._add(seen, Name(k, target, prio, tex))
            self.by_target.setdefault(target, tex)
        # each name without its current-time marker, where that is unambiguous
        stripped: dict[tuple, set] = {}
        for name in list(seen.values()):
            for marker in _TIME_MARKERS:
                if len(name.keys) > 2 and name.keys[-2] == ("chr", "^") and (
                        name.keys[-1] == marker[0] if len(marker) == 1 else name.keys[-1] == ("g", marker)):
                    stripped.setdefault(name.keys[:-2], set()).add(name.target)
                elif len(name.keys) > 3 and name.keys[-3:] == keys(tokens_of("(t)")) and marker is _TIME_MARKERS[1]:
                    stripped.setdefault(name.keys[:-3], set()).add(name.target)
            inner = _marker_in_last_group(name.keys)
            if inner is not None:  # dz_{\tilde{h}_t} -> dz_{\tilde{h}}
                stripped.setdefault(inner, set()).add(name.target)
        for k, targets in stripped.items():
            if len(targets) == 1 and k not in seen:
                self._add(seen, Name(k, next(iter(targets)), 3, ""))
        table: dict = {}
        for name in seen.values():
            table.setdefault(name.keys[0], []).append(name)
        for lst in table.values():
            lst.sort(key=lambda nm: (-len(nm.keys), nm.priority))
        self.known_texts = sorted({e[0] for e in entries if e[2] <= 1})
        return table

    @staticmethod
    def _add(seen, name: Name) -> None:
        old = seen.get(name.keys)
        if old is None or name.priority < old.priority:
            seen[name.keys] = name

    # -- public -----------------------------------------------------------------
    def parse(self, text: str, check_shapes: bool = True) -> sp.Expr:
        toks = self._prepare(text)
        p = _Parser(self, toks, text, check_shapes)
        expr = p.expr()
        p.expect_end()
        return expr

    def parse_equation(self, text: str, check_shapes: bool = True) -> tuple[str | None, sp.Expr]:
        toks = self._prepare(text)
        eqs = [i for i, t in enumerate(toks) if t.kind == "chr" and t.value == "="]
        if not eqs:
            p = _Parser(self, toks, text, check_shapes)
            expr = p.expr()
            p.expect_end()
            return None, expr
        if len(eqs) > 1:
            raise LatexError("one equation at a time: `name = formula`", text, toks[eqs[1]].start)
        lhs_toks, rhs_toks = toks[: eqs[0]], toks[eqs[0] + 1:]
        if not lhs_toks:
            raise LatexError("nothing on the left of `=`", text, toks[eqs[0]].start)
        lhs = self._lhs(lhs_toks, text)
        if not rhs_toks:
            raise LatexError("nothing on the right of `=`", text, toks[eqs[0]].end)
        p = _Parser(self, rhs_toks, text, check_shapes)
        rhs = p.expr()
        p.expect_end()
        if rhs == sp.Symbol(lhs):
            # `concat = [a; x]` prints both sides alike: read the right side without the name
            p = _Parser(self, rhs_toks, text, check_shapes, exclude={lhs})
            rhs = p.expr()
            p.expect_end()
        return lhs, rhs

    def lhs_name(self, text: str) -> str | None:
        toks = self._prepare(text)
        eqs = [i for i, t in enumerate(toks) if t.kind == "chr" and t.value == "="]
        if len(eqs) != 1:
            return None
        return self._lhs(toks[: eqs[0]], text)

    def _lhs(self, lhs_toks, text) -> str:
        p = _Parser(self, lhs_toks, text, False)
        lhs = p.expr()
        p.expect_end()
        if not isinstance(lhs, sp.Symbol):
            raise LatexError("the left side must be the name of a gradient", text, lhs_toks[0].start)
        return lhs.name

    def _prepare(self, text: str) -> list[Tok]:
        return prepare(text)


    # -- names --------------------------------------------------------------------
    def match(self, toks, i, exclude=()) -> tuple[int, Name | None]:
        if i >= len(toks):
            return 0, None
        cands = self.names.get(toks[i].key, ())
        for name in cands:
            n = len(name.keys)
            if name.target in exclude or i + n > len(toks):
                continue
            if all(toks[i + j].key == name.keys[j] for j in range(n)):
                return n, name
        return 0, None

    def gradient_of(self, target: str) -> str | None:
        """dL/d(target) in total at step t: the cell's own adjoint of it if the
        derivation names one (``dc`` for c⟨t⟩), else what reaches the cell
        (``da_next`` for a⟨t⟩), else the loss head's (``da``)."""
        if target in self.backward:
            return None
        if self._totals is None:
            rank = {"cell": 0, "glue": 1, "state": 2, "input": 2, "param": 2, "head": 3}
            best: dict[str, tuple[int, str]] = {}
            for step in self.derivation.steps:
                r = rank.get(self.derivation.kind(step.name), 4)
                if step.of not in best or r < best[step.of][0]:
                    best[step.of] = (r, step.name)
            self._totals = {k: v[1] for k, v in best.items()}
        return self._totals.get(target)

    def suggest(self, text: str) -> str:
        close = difflib.get_close_matches(text, self.known_texts, n=3, cutoff=0.6)
        return f"; did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""


def prepare(text: str) -> list[Tok]:
    """The checks that need no notation, and the canonical tokens: length,
    NUL, nesting depth, characters, braces and environments, TeX programming
    commands, one equation. Raises LatexError."""
    if not isinstance(text, str):
        raise LatexError(f"a formula must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise LatexError(f"formula too long: {len(text)} characters (the limit is {MAX_LENGTH})")
    if "\x00" in text:
        raise LatexError("formula contains a NUL character")
    depth = peak = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            peak = max(peak, depth)
        elif ch in ")]}":
            depth -= 1
    if peak > MAX_DEPTH:
        raise LatexError(f"formula nests brackets {peak} deep (the limit is {MAX_DEPTH})")
    toks = tokens_of(text, top=True)
    for t in _walk(toks):
        if t.kind == "cmd" and t.value in _TEX_PROGRAMMING:
            raise LatexError(f"unknown command `{t.value}`: TeX programming is not part of a formula", text, t.start)
    # a trailing line break or full stop is punctuation
    while toks and ((toks[-1].kind == "cmd" and toks[-1].value == "\\\\") or
                    (toks[-1].kind == "chr" and toks[-1].value in ".,;")):
        toks.pop()
    for t in toks:
        if t.kind == "cmd" and t.value == "\\\\":
            raise LatexError("one equation at a time (found a line break `\\\\`)", text, t.start)
    if not toks:
        raise LatexError("the formula is empty")
    return _split_time_transpose(toks)


def _split_time_transpose(toks: list[Tok]) -> list[Tok]:
    """``x^{\\langle t \\rangle T}`` (Coursera's spelling of a transposed
    value at step t) -> ``x^{\\langle t \\rangle}^T``, so that the name with
    its time marker is found and the transpose applied after it."""
    out: list[Tok] = []
    for i, t in enumerate(toks):
        if t.kind == "grp":
            t = Tok("grp", tuple(_split_time_transpose(list(t.value))), t.start, t.end)
        prev = out[-1] if out else None
        if (t.kind == "grp" and prev is not None and prev.key == ("chr", "^") and len(t.value) > 1
                and t.value[-1].key in _TRANSPOSE and _is_time_marker(t.value[:-1])):
            inner = t.value[:-1]
            marker = inner[0] if len(inner) == 1 else Tok("grp", tuple(inner), t.start, t.value[-1].start)
            last = t.value[-1]
            out += [marker, Tok("chr", "^", last.start, last.start), last]
            continue
        out.append(t)
    return out


def _is_time_marker(toks) -> bool:
    k = keys(toks)
    if k and k[0] == ("cmd", "\\langle") and k[-1] == ("cmd", "\\rangle"):
        return True
    return k in _STEP_MARKERS


# ---------------------------------------------------------------------------
# the parser

_ELEMENTWISE_OPS = {("chr", "*"), ("cmd", "\\odot"), ("cmd", "\\circ")}
_DOT_OPS = {("cmd", "\\cdot"), ("cmd", "\\times")}
_DIV_OPS = {("chr", "/"), ("cmd", "\\div")}
_OUTER_OPS = {("cmd", "\\otimes")}
_BINARY = _ELEMENTWISE_OPS | _DOT_OPS | _DIV_OPS | _OUTER_OPS
_STOP = {("chr", c) for c in "+-=,;&)]|:"} | _BINARY | {("cmd", "\\right|"), ("cmd", "\\\\")}
_FUNCTION_CMDS = {"\\sigma": ops.sigmoid, "\\tanh": sp.tanh, "\\exp": sp.exp, "\\log": sp.log, "\\ln": sp.log}
_FUNCTION_WORDS = {"sigmoid": ops.sigmoid, "sigma": ops.sigmoid, "tanh": sp.tanh, "exp": sp.exp, "log": sp.log,
                   "ln": sp.log, "softmax": "softmax"}
_TRANSPOSE = {("chr", "T"), ("cmd", "\\top"), ("cmd", "\\intercal")}
_LOSS = [keys(tokens_of(s)) for s in ("L", "J", "E", r"\ell", "l", r"\mathcal{L}", r"\mathcal{J}", "L(t)", "l(t)")]
_D = {("chr", "d"), ("cmd", "\\partial")}


class _Parser:
    def __init__(self, reader: LatexReader, toks: list[Tok], text: str, check_shapes: bool, exclude=()):
        self.r = reader
        self.toks = toks
        self.text = text
        self.i = 0
        self.check = check_shapes
        self.exclude = set(exclude)
        self.memo: dict = {}

    # -- helpers ----------------------------------------------------------------
    def fail(self, message: str, tok: Tok | None = None) -> LatexError:
        if tok is None and self.i < len(self.toks):
            tok = self.toks[self.i]
        col = tok.start if tok is not None else len(self.text)
        return LatexError(message, self.text, col)

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def at(self, kind: str, value=None, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.kind == kind and (value is None or t.value == value)

    def take(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect_end(self) -> None:
        if self.i < len(self.toks):
            t = self.toks[self.i]
            raise self.fail(f"cannot read `{self.text[t.start:t.end]}` here", t)

    def sub(self, toks) -> "_Parser":
        p = _Parser(self.r, list(toks), self.text, self.check, self.exclude)
        p.memo = self.memo
        return p

    def shape(self, e, tok=None):
        from .shapes import shape_of

        try:
            return shape_of(e, self.r.shapes, self.memo)
        except ShapeError as exc:
            if self.check:
                from .shapes import FormulaShapeError

                raise FormulaShapeError(str(exc), self.text, tok.start if tok is not None else None) from None
            return None

    # -- grammar ------------------------------------------------------------------
    def expr(self) -> sp.Expr:
        sign = None
        if self.at("chr", "-") or self.at("chr", "+"):
            sign = self.take().value
        value = self.term()
        if sign == "-":
            value = -value
        while self.at("chr", "+") or self.at("chr", "-"):
            op = self.take()
            rhs = self.term()
            value = value + rhs if op.value == "+" else value - rhs
            self.shape(value, op)
        return value

    def term(self) -> sp.Expr:
        value = self.juxt()
        while self.peek() is not None and self.peek().key in _BINARY:
            op = self.take()
            rhs = self.juxt()
            if op.key in _ELEMENTWISE_OPS:
                value = value * rhs
            elif op.key in _DIV_OPS:
                value = value / rhs
            elif op.key in _OUTER_OPS:
                value = ops.outer(value, rhs)
            else:
                value = self.product(value, rhs, op)
            self.shape(value, op)
        return value

    def juxt(self) -> sp.Expr:
        if self.at("chr", "-"):
            self.take()
            return -self.juxt()
        if self.at("chr", "+"):
            self.take()
            return self.juxt()
        if self.peek() is None:
            raise self.fail("the formula ends too early")
        value = self.postfix()
        while self.peek() is not None and self.peek().key not in _STOP:
            tok = self.peek()
            rhs = self.postfix()
            value = self.product(value, rhs, tok)
        return value

    def product(self, a: sp.Expr, b: sp.Expr, tok) -> sp.Expr:
        """Juxtaposition (and \\cdot, \\times): the matrix product when the shapes
        make one, else the elementwise product."""
        from .shapes import broadcast, same_dim

        sa, sb = self.shape(a, tok), self.shape(b, tok)
        if sa is None or sb is None:
            return ops.matmul(a, b)
        if not sa or not sb:
            return a * b
        if len(sa) == 2 and len(sb) in (1, 2) and same_dim(sa[1], sb[0]):
            out = ops.matmul(a, b)
            self.shape(out, tok)
            return out
        if len(sa) == 1 and len(sb) == 2 and same_dim(sa[0], sb[0]):
            return ops.matmul(a, b)
        try:
            broadcast(sa, sb, "")
            return a * b
        except ShapeError:
            pass
        if self.check:
            from .shapes import FormulaShapeError

            raise FormulaShapeError(
                f"`{self.snippet(tok)}`: a product of arrays of shapes {fmt_shape(sa)} and {fmt_shape(sb)}, which "
                "neither multiply as matrices nor elementwise", self.text, tok.start if tok is not None else None)
        return ops.matmul(a, b)

    def snippet(self, tok) -> str:
        return self.text[max(0, tok.start - 20): tok.end + 20].strip() if tok is not None else ""

    def postfix(self) -> sp.Expr:
        start = self.peek()
        value, was_name = self.primary()
        while True:
            if self.at("chr", "^"):
                self.take()
                arg = self.arg_tokens("^")
                k = keys(arg)
                if len(k) == 1 and k[0] in _TRANSPOSE:
                    value = ops.transpose(value)
                    self.shape(value, start)
                    continue
                if was_name and (k in _TIME_MARKERS or k == (("g", _TIME_MARKERS[0]),)):
                    continue
                if was_name and k in _NEXT_MARKERS:
                    value = ops.later(value)
                    continue
                value = value ** self.exponent(arg, start)
                continue
            if self.at("chr", "_"):
                self.take()
                arg = self.arg_tokens("_")
                k = keys(arg)
                if was_name and k in _TIME_MARKERS:
                    continue
                if was_name and k in _NEXT_MARKERS:
                    value = ops.later(value)
                    continue
                if arg and arg[0].kind == "chr" and arg[0].value == "[":
                    value = self.rows_slice(value, arg, start)
                    continue
                if len(arg) == 1 and arg[0].kind == "num" and "." not in arg[0].value:
                    axis = self.axis_for(value, start)
                    value = ops.pick(value, sp.Integer(axis), sp.Integer(int(arg[0].value)))
                    continue
                raise self.fail(f"cannot read the subscript `{self.text[arg[0].start:arg[-1].end] if arg else ''}` "
                                "here", arg[0] if arg else start)
            if self.at("chr", "[") and self._is_slice():
                value = self.slice(value, start)
                continue
            if self.at("chr", "'"):
                raise self.fail("a prime `'` is read only after \\sigma or \\tanh (their derivatives)")
            return value

    def arg_tokens(self, what: str) -> list[Tok]:
        if self.peek() is None:
            raise self.fail(f"`{what}` needs something after it")
        t = self.take()
        return list(t.value) if t.kind == "grp" else [t]

    def exponent(self, arg, start) -> sp.Expr:
        k = arg
        sign = 1
        if k and k[0].kind == "chr" and k[0].value == "-":
            sign, k = -1, k[1:]
        if len(k) == 1 and k[0].kind == "num":
            value = sp.Rational(k[0].value) * sign
            if abs(value) > MAX_EXPONENT:
                raise self.fail(f"exponent {value} is too large (at most {MAX_EXPONENT})", arg[0])
            return value
        shown = self.text[arg[0].start:arg[-1].end] if arg else ""
        raise self.fail(f"cannot read the superscript `{shown}`: a transpose is ^{{T}}, a power a number like ^{{2}}",
                        arg[0] if arg else start)

    def axis_for(self, value, tok) -> int:
        s = self.shape(value, tok)
        nd = len(s) if s else 1
        return min(self.r.feature_axis, max(nd - 1, 0))

    def rows_slice(self, value, arg, start) -> sp.Expr:
        if not (arg[-1].kind == "chr" and arg[-1].value == "]"):
            raise self.fail("a slice subscript reads `_{[a:b]}`", arg[0])
        inner = arg[1:-1]
        parts = _split(inner, ":")
        if len(parts) != 2:
            raise self.fail("a slice subscript reads `_{[a:b]}`", arg[0])
        a = self.sub(parts[0]).bound(sp.Integer(0))
        b = self.sub(parts[1]).bound(None)
        if b is None:
            b = self.extent(value, self.axis_for(value, start), start)
        return ops.take(value, sp.Integer(self.axis_for(value, start)), a, b)

    def _is_slice(self) -> bool:
        depth = 0
        for j in range(self.i, len(self.toks)):
            t = self.toks[j]
            if t.kind == "chr" and t.value in "[(":
                depth += 1
            elif t.kind == "chr" and t.value in "])":
                depth -= 1
                if depth == 0:
                    return False
            elif t.kind == "chr" and t.value == ":" and depth == 1:
                return True
        return False

    def bracket(self) -> list[Tok]:
        """Tokens inside the [ ... ] or ( ... ) starting here (consumed)."""
        open_tok = self.take()
        close = "]" if open_tok.value == "[" else ")"
        depth = 1
        start = self.i
        while self.i < len(self.toks):
            t = self.toks[self.i]
            if t.kind == "chr" and t.value in "[(":
                depth += 1
            elif t.kind == "chr" and t.value in "])":
                depth -= 1
                if depth == 0:
                    inner = self.toks[start:self.i]
                    if t.value != close:
                        raise self.fail(f"`{open_tok.value}` is closed by `{t.value}`", t)
                    self.i += 1
                    return inner
            self.i += 1
        raise self.fail(f"`{open_tok.value}` is never closed", open_tok)

    def slice(self, value, start) -> sp.Expr:
        tok = self.peek()
        inner = self.bracket()
        items = _split(inner, ",")
        chosen = []
        for axis, item in enumerate(items):
            k = keys(item)
            if k == (("chr", ":"),):
                continue
            chosen.append((axis, item))
        if len(chosen) != 1:
            raise self.fail("slice exactly one axis: `W[:, a:b]` or `x[a:b]`", tok)
        axis, item = chosen[0]
        if len(items) == 1:
            axis = self.r.feature_axis
        parts = _split(item, ":")
        if len(parts) == 1:
            k = self.sub(parts[0]).bound(None)
            return ops.pick(value, sp.Integer(axis), k)
        if len(parts) > 3 or (len(parts) == 3 and parts[2]):
            raise self.fail("slice steps are not allowed", tok)
        a = self.sub(parts[0]).bound(sp.Integer(0))
        b = self.sub(parts[1]).bound(None)
        extent = None
        if b is None or a.could_extract_minus_sign() or b.could_extract_minus_sign():
            extent = self.extent(value, axis, tok)
        if b is None:
            b = extent
        if a.could_extract_minus_sign():
            a = extent + a
        if b.could_extract_minus_sign():
            b = extent + b
        out = ops.take(value, sp.Integer(axis), a, b)
        self.shape(out, tok)
        return out

    def extent(self, value, axis, tok):
        s = self.shape(value, tok)
        if not s:
            raise self.fail("cannot slice a number", tok)
        return s[min(axis, len(s) - 1)]

    def bound(self, default):
        if self.peek() is None:
            return default
        e = self.expr()
        self.expect_end()
        if e.free_symbols - set(self.r.dims.values()):
            raise self.fail("a slice bound is a number or a size such as n_a")
        return e

    def primary(self) -> tuple[sp.Expr, bool]:
        tok = self.peek()
        if tok is None:
            raise self.fail("the formula ends too early")
        # 1. a name of the notation (the longest one)
        n, name = self.r.match(self.toks, self.i, self.exclude)
        grad = self.gradient_here()
        if grad is not None and grad[0] > n:
            self.i += grad[0]
            return sp.Symbol(grad[1]), True
        if name is not None:
            if name.target in _FUNCTION_TARGETS and name.target not in self.r.shapes:
                self.i += n
                return self.function(_FUNCTION_TARGETS[name.target], tok), False
            self.i += n
            if name.target in self.r.dims:
                return self.r.dims[name.target], True
            if name.target not in self.r.shapes:
                raise self.fail(f"the alias `{name.text}` names `{name.target}`, which {self.r.cell.name} does not have", tok)
            return sp.Symbol(name.target), True
        if tok.kind == "num":
            self.take()
            return (sp.Rational(tok.value) if "." in tok.value else sp.Integer(int(tok.value))), False
        if tok.kind == "grp":
            self.take()
            p = self.sub(tok.value)
            e = p.expr()
            p.expect_end()
            return e, False
        if tok.kind == "chr" and tok.value in "([":
            inner = self.bracket()
            parts = _split(inner, ",;")
            values = []
            for part in parts:
                p = self.sub(part)
                values.append(p.expr())
                p.expect_end()
            if len(values) == 1:
                return values[0], False
            out = ops.concat(sp.Integer(self.r.feature_axis), *values)
            self.shape(out, tok)
            return out, False
        if tok.kind == "env":
            return self.matrix(tok), False
        if tok.kind == "cmd":
            if tok.value == "\\frac":
                return self.frac(tok), False
            if tok.value in _FUNCTION_CMDS:
                self.take()
                return self.function(_FUNCTION_CMDS[tok.value], tok), False
            if tok.value == "\\sum":
                return self.summation(tok), False
            if tok.value == "\\left.":
                return self.later(tok), False
        if tok.kind == "chr" and tok.value.isalpha():
            word, width = self.word()
            if word in _FUNCTION_WORDS and self.i + width < len(self.toks):
                self.i += width
                f = _FUNCTION_WORDS[word]
                return self.function(f, tok), False
            if tok.value == "e" and self.at("chr", "^", 1):
                self.take()
                self.take()
                arg = self.arg_tokens("^")
                p = self.sub(arg)
                e = p.expr()
                p.expect_end()
                return sp.exp(e), False
            if tok.value == "e" and self.at("chr", "_", 1) and self.r.cell.loss.kind == "squared_error":
                return self.basis(tok), False
        raise self.unknown(tok)

    def unknown(self, tok) -> LatexError:
        # the span of the unknown name: the token and its sub/superscripts
        j = self.i + 1
        while j + 1 < len(self.toks) and self.toks[j].kind == "chr" and self.toks[j].value in "^_":
            j += 2
        end = self.toks[min(j, len(self.toks)) - 1].end
        shown = self.text[tok.start:end]
        if tok.kind == "cmd" and tok.value not in _KNOWN_CMDS and j == self.i + 1:
            return self.fail(f"unknown command `{tok.value}`{self.r.suggest(shown)}", tok)
        if tok.kind == "chr" and not tok.value.isalnum():
            return self.fail(f"cannot read `{shown}` here", tok)
        hint = getattr(self, "hint", "") or self.r.suggest(shown)
        return self.fail(f"unknown symbol `{shown}`{hint}", tok)

    def word(self) -> tuple[str, int]:
        j = self.i
        word = ""
        while j < len(self.toks) and self.toks[j].kind == "chr" and self.toks[j].value.isalpha():
            word += self.toks[j].value
            j += 1
        for w in sorted(_FUNCTION_WORDS, key=len, reverse=True):
            if word.startswith(w):
                return w, len(w)
        return word, len(word)

    def gradient_here(self) -> tuple[int, str] | None:
        """``d`` or ``\\partial`` followed by a name: that name's gradient."""
        tok = self.peek()
        if tok is None or tok.key not in _D:
            return None
        n, name = self.r.match(self.toks, self.i + 1, self.exclude)
        if name is None:
            return None
        g = self.r.gradient_of(name.target)
        if g is None:
            if name.target not in self.r.backward:
                self.hint = (f"; the derivation names no gradient with respect to `{name.target}` itself"
                             f"{self._preact_hint(name.target)}")
            return None
        return n + 1, g

    def frac(self, tok) -> sp.Expr:
        self.take()
        if self.peek() is None or self.peek(1) is None:
            raise self.fail("\\frac needs two arguments", tok)
        num = self.arg_tokens("\\frac")
        den = self.arg_tokens("\\frac")
        if num and den and num[0].key in _D and den[0].key in _D and keys(num[1:]) in _LOSS:
            n, name = self.r.match(den, 1, self.exclude)
            if name is not None and n == len(den) - 1:
                g = name.target if name.target in self.r.backward else self.r.gradient_of(name.target)
                if g is None:
                    raise self.fail(f"the derivation names no gradient with respect to `{self.text[den[1].start:den[-1].end]}`"
                                    f"{self._preact_hint(name.target)}", tok)
                return sp.Symbol(g)
        pn, pd = self.sub(num), self.sub(den)
        a = pn.expr()
        pn.expect_end()
        b = pd.expr()
        pd.expect_end()
        return a / b

    def _preact_hint(self, target: str) -> str:
        pre = self.r.cell.preact_names.get(target)
        return f"; the gradient at its pre-activation is `{pre}`" if pre else ""

    def function(self, f, tok) -> sp.Expr:
        power = None
        derivative = False
        while True:
            if self.at("chr", "^"):
                self.take()
                power = self.exponent(self.arg_tokens("^"), tok)
                continue
            if self.at("chr", "'"):
                self.take()
                derivative = True
                continue
            break
        nxt = self.peek()
        if nxt is None:
            raise self.fail("a function needs an argument", tok)
        if nxt.kind == "chr" and nxt.value in "([":
            inner = self.bracket()
            p = self.sub(inner)
            arg = p.expr()
            p.expect_end()
        elif nxt.kind == "grp":
            self.take()
            p = self.sub(nxt.value)
            arg = p.expr()
            p.expect_end()
        else:
            arg = self.postfix()
        if f == "softmax":
            out = ops.softmax(arg, sp.Integer(self.r.feature_axis))
        elif derivative:
            if f is ops.sigmoid:
                out = ops.sigmoid(arg) * (1 - ops.sigmoid(arg))
            elif f is sp.tanh:
                out = 1 - sp.tanh(arg) ** 2
            else:
                raise self.fail("a prime is read only after \\sigma or \\tanh", tok)
        else:
            out = f(arg)
        if power is not None:
            out = out ** power
        self.shape(out, tok)
        return out

    def summation(self, tok) -> sp.Expr:
        self.take()
        index = None
        while self.at("chr", "_") or self.at("chr", "^"):
            which = self.take().value
            arg = self.arg_tokens(which)
            if which == "_":
                index = arg
        if index is None:
            raise self.fail("say what the sum runs over: \\sum_{t} (the steps) or \\sum_{batch}", tok)
        body = self.term()  # a sum runs over the product that follows it, up to the next + or -
        if index and index[0].key == ("chr", "t"):
            return sp.Sum(body, (_t, 1, _T))
        cell = self.r.cell
        if cell.layout == "none":
            raise self.fail(f"{cell.name} has no batch to sum over", tok)
        axis, keep = (1, 1) if cell.layout == "columns" else (0, 0)
        out = ops.batch_sum(body, sp.Integer(axis), sp.Integer(keep))
        self.shape(out, tok)
        return out

    def later(self, tok) -> sp.Expr:
        self.take()
        start = self.i
        depth = 0
        while self.i < len(self.toks):
            t = self.toks[self.i]
            if t.kind == "cmd" and t.value == "\\left.":
                depth += 1
            if t.kind == "cmd" and t.value == "\\right|":
                if depth == 0:
                    break
                depth -= 1
            self.i += 1
        if self.i >= len(self.toks):
            raise self.fail("`\\left.` needs its `\\right|_{t+1}`", tok)
        inner = self.toks[start:self.i]
        self.i += 1
        if not (self.at("chr", "_") and self.peek(1) is not None and keys(self.arg_peek()) == keys(tokens_of("t+1"))):
            raise self.fail("`\\left. X \\right|` reads `\\right|_{t+1}`: X at step t+1", tok)
        self.take()
        self.take()
        p = self.sub(inner)
        e = p.expr()
        p.expect_end()
        return ops.later(e)

    def arg_peek(self):
        t = self.peek(1)
        return list(t.value) if t.kind == "grp" else [t]

    def matrix(self, tok) -> sp.Expr:
        self.take()
        name, rows = tok.value
        if name not in _MATRICES:
            raise self.fail(f"the environment `{name}` is not read here", tok)
        if not rows:
            raise self.fail("an empty matrix", tok)
        ncols = {len(r) for r in rows}
        if len(rows) > 1 and ncols != {1}:
            raise self.fail("stack blocks either as rows (`\\\\`) or as columns (`&`), not both", tok)
        cells = [r[0] for r in rows] if len(rows) > 1 else list(rows[0])
        axis = 0 if len(rows) > 1 else 1
        parts = []
        for cell in cells:
            p = self.sub(cell)
            parts.append(p.expr())
            p.expect_end()
        if len(parts) == 1:
            return parts[0]
        out = ops.concat(sp.Integer(axis), *parts)
        self.shape(out, tok)
        return out

    def basis(self, tok) -> sp.Expr:
        self.take()
        self.take()
        arg = self.arg_tokens("_")
        if not (len(arg) == 1 and arg[0].kind == "num"):
            raise self.fail("e_{k} is the unit vector of unit k: k must be a number", tok)
        loss = self.r.cell.loss
        shape = self.r.shapes[loss.prediction]
        ndim = len(shape)
        axis = min(self.r.feature_axis, max(ndim - 1, 0))
        return ops.basis(sp.Integer(axis), sp.Integer(ndim), sp.Integer(int(arg[0].value)), shape[axis])


_KNOWN_CMDS = set(_FUNCTION_CMDS) | {"\\frac", "\\sum", "\\left.", "\\right|", "\\odot", "\\circ", "\\cdot", "\\times",
                                    "\\otimes", "\\div", "\\partial", "\\top", "\\intercal"}


# Commands that program TeX rather than write mathematics: rejected before the
# notation's name table is even built.
_TEX_PROGRAMMING = {
    "\\input", "\\include", "\\def", "\\edef", "\\gdef", "\\xdef", "\\let", "\\csname", "\\endcsname",
    "\\write", "\\immediate", "\\openout", "\\openin", "\\read", "\\catcode", "\\newcommand",
    "\\renewcommand", "\\providecommand", "\\usepackage", "\\documentclass", "\\expandafter", "\\jobname",
    "\\special", "\\write18", "\\directlua", "\\loop", "\\repeat", "\\newenvironment", "\\makeatletter",
}


def _walk(toks):
    for t in toks:
        yield t
        if t.kind == "grp":
            yield from _walk(t.value)
        elif t.kind == "env":
            for row in t.value[1]:
                for cell in row:
                    yield from _walk(cell)


def _split(toks, seps: str) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "chr" and t.value in "([":
            depth += 1
        elif t.kind == "chr" and t.value in ")]":
            depth -= 1
        if depth == 0 and t.kind == "chr" and t.value in seps:
            parts.append([])
            continue
        parts[-1].append(t)
    return parts


def read_latex(text: str, derivation) -> sp.Expr:
    """Convenience: one expression in ``derivation``'s notation."""
    return LatexReader(derivation).parse(text)


def read_latex_equation(text: str, derivation) -> tuple[str | None, sp.Expr]:
    """Convenience: ``name = expression`` in ``derivation``'s notation."""
    return LatexReader(derivation).parse_equation(text)

r"""Read LaTeX formulas written in a notation's own symbols: LaTeX -> SymPy.

Contract. ``LatexReader(derivation)`` builds the notation's table of LaTeX
names; ``reader.parse(text)`` returns the SymPy expression (the ops of
:mod:`derive.spec.ops`, exactly as :mod:`derive.spec.expr` builds them) and
``reader.parse_equation(text)`` returns ``(left-side name or None, right side)``.
Anything outside the language raises :class:`LatexError` (an
:class:`~derive.errors.ExprError`) with the column of the fault. Nothing is
evaluated: the text is tokenised and read by a recursive-descent parser against
the notation's symbol table; SymPy's ``parse_latex`` is never used (it reads
``\odot`` as a symbol, ``\tilde{c}`` as a product and ``W^{T}`` as a power).

Everything :func:`derive.spec.latex.to_latex` prints reads back to the same
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
import functools
from dataclasses import dataclass

import sympy as sp

from derive.errors import ExprError
from derive.spec.expr import bracket_depth
from derive.verifier.latex_tokens import LatexError, MAX_DEPTH, MAX_LENGTH, Tok, _STEP_MARKERS, _TEX_PROGRAMMING, _TIME_MARKERS, _TRANSPOSE, _marker_in_last_group, _walk, keys, tokens_of
from derive.verifier.latex_parser import _Parser


# ---------------------------------------------------------------------------
# tokens


# ---------------------------------------------------------------------------
# the notation's name table


@dataclass(frozen=True)
class Name:
    keys: tuple
    target: str  # a symbol, a backward quantity, a dimension, or a function (tanh, sigmoid)
    priority: int  # lower wins among names of the same length
    text: str  # as written, for did-you-mean


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
            from derive.spec.shapes import all_shapes

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
        from derive.spec.latex import to_latex

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
    commands, one equation. Raises LatexError. The prescan and the reader both
    ask for the same text: it is tokenized once (tokens are frozen)."""
    if not isinstance(text, str):
        raise LatexError(f"a formula must be text, not {type(text).__name__}")
    return list(_prepare_once(text))


@functools.lru_cache(maxsize=8)
def _prepare_once(text: str) -> tuple[Tok, ...]:
    return tuple(_prepare_uncached(text))


def _prepare_uncached(text: str) -> list[Tok]:
    if not isinstance(text, str):
        raise LatexError(f"a formula must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise LatexError(f"formula too long: {len(text)} characters (the limit is {MAX_LENGTH})")
    if "\x00" in text:
        raise LatexError("formula contains a NUL character")
    peak = bracket_depth(text)
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


def read_latex(text: str, derivation) -> sp.Expr:
    """Convenience: one expression in ``derivation``'s notation."""
    return LatexReader(derivation).parse(text)


def read_latex_equation(text: str, derivation) -> tuple[str | None, sp.Expr]:
    """Convenience: ``name = expression`` in ``derivation``'s notation."""
    return LatexReader(derivation).parse_equation(text)

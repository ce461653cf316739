r"""LaTeX text -> a tree of tokens, normalised: the first stage of the LaTeX reader.

:func:`lex` splits text into tokens (commands, characters, names, numbers) and
rejects what is not mathematics: more than ``MAX_LENGTH`` characters, nesting
deeper than ``MAX_DEPTH``, TeX programming commands (``\input``, ``\def``, ...).
:func:`tree` groups braces and environments; :func:`canon` drops what does not
change the meaning (spacing, ``\left``/``\right``, ``\mathrm`` wrappers,
``\tag``, ``\label``, ``&``, a line break's spacing ``[8pt]``) and renames synonyms (``\widetilde`` is ``\tilde``).
:func:`keys` gives a token sequence a hashable spelling, so that names are
compared after normalisation. Nothing here knows a notation: the name table is
:mod:`derive.verifier.latex_reader`, the grammar :mod:`derive.verifier.latex_parser`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from derive.spec import functions
from derive.errors import ExprError

MAX_LENGTH = 10_000


MAX_DEPTH = 100


_t = sp.Symbol("t", integer=True, positive=True)


_T = sp.Symbol("T", integer=True, positive=True)


class LatexError(ExprError):
    """A LaTeX formula could not be read; ``col`` is the column of the fault."""


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
        if ch.isascii() and ch.isdigit() or (ch == "." and i + 1 < n and text[i + 1].isascii() and text[i + 1].isdigit()):
            j = i
            seen_dot = False
            while j < n and (text[j].isascii() and text[j].isdigit() or (text[j] == "." and not seen_dot and j + 1 < n and text[j + 1].isdigit())):
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
            if name == "\\\\":  # a line break's spacing, \\[8pt] or \\*[2mm], is layout
                out.append(tok)
                i = _after_break_spacing(seq, i + 1)
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


def _after_break_spacing(seq, i: int) -> int:
    """The index after the optional ``*`` and ``[dimension]`` that follow a ``\\\\``."""
    if i < len(seq) and seq[i].kind == "chr" and seq[i].value == "*":
        i += 1
    if i < len(seq) and seq[i].kind == "chr" and seq[i].value == "[":
        j = i + 1
        while j < len(seq) and (seq[j].kind == "num" or (seq[j].kind == "chr" and (seq[j].value.isalpha()
                                                                                      or seq[j].value in ".-"))):
            j += 1
        if j < len(seq) and j > i + 1 and seq[j].kind == "chr" and seq[j].value == "]":
            return j + 1
    return i


def tokens_of(text: str, top: bool = True) -> list[Tok]:
    return canon(tree(lex(text), text), top=top)


def keys(seq) -> tuple:
    return tuple(t.key for t in seq)


_TIME_MARKERS = [
    keys(tokens_of(r"\langle t \rangle")),
    keys(tokens_of("(t)")),
    keys(tokens_of("t")),
]


# a name at step t+1 (Greff et al.'s delta c^{t+1}): the value the next step computes, later(x)
_NEXT_MARKERS = [keys(tokens_of(r"\langle t+1 \rangle")), keys(tokens_of("(t+1)")), keys(tokens_of("t+1"))]


_STEP_MARKERS = _TIME_MARKERS + _NEXT_MARKERS + [keys(tokens_of("t-1")), keys(tokens_of("(t-1)"))]


# a notation name that stands for a function (the one-argument rows of derive.spec.functions)
_FUNCTION_TARGETS = {row.name: row.function for row in functions.FUNCTIONS.values() if row.arity == 1}


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


_TRANSPOSE = {("chr", "T"), ("cmd", "\\top"), ("cmd", "\\intercal")}


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

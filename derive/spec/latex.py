r"""LaTeX for expressions and equations, in the notation's own symbol names.

Contract. ``to_latex(expr, cell)`` prints an array expression with each symbol
replaced by its LaTeX name from the spec (``ft`` -> ``\Gamma_f^{\langle t
\rangle}``), adjoints by their declared LaTeX name or ``\mathrm{d}`` + the
symbol's, and reads back through :mod:`derive.verifier.latex_reader` to the same SymPy
expression. The conventions, one each:

- ``*`` (elementwise) is ``\odot``; a number multiplies by juxtaposition
  (``2 (h - y)``); the gradient factors of a product come first
  (``dc \odot c_{prev} \odot \Gamma_f \odot (1 - \Gamma_f)``);
- a sum prints its positive terms first (``\hat{y} - y``);
- the matrix product is juxtaposition, transpose ``^{\top}``, outer product
  ``\otimes`` (:mod:`derive.spec.ops` prints these);
- ``\sigma(x)``, ``\tanh(x)``, ``\tanh^{2}(x)``, ``\exp``, ``\log`` likewise;
  a parenthesis is ``\left( \right)`` around tall content (a fraction, a
  matrix, a sum), else plain ``( )``;
- ``\sum_{t=1}^{T}`` sums over the steps, ``\sum_{\mathrm{batch}}`` over the
  batch, ``\left.{x}\right|_{t+1}`` is x at step t+1;
- ``concat`` along the feature axis is a ``bmatrix`` whose blocks are rows
  (``\\``) in a column layout and columns (``&``) in a row layout;
- ``take`` is ``{x}_{[a:b]}`` (rows a..b-1 of the feature axis), or
  ``W[:,\,a{:}b]`` on another axis (columns of a weight; for display only,
  it appears in no derived equation); a size such
  as ``n_a`` prints as ``n_{a}``, a longer one as ``\mathit{mem\_cell\_ct}``.

Besides the printer: :class:`Notation` gives the derived names a write-up
needs (the loss ``L`` and the step's loss, pre-activations ``z_f``, the
``\frac{\partial L}{\partial X}`` form of a gradient, and :func:`shift_time`
to move a name to step t+1), and :func:`escape_text` /
:func:`escape_markdown` quote a user's text for LaTeX text mode and Markdown.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter

from derive.spec import functions, ops
from derive.spec.cell import Cell

# ---------------------------------------------------------------------------
# quoting text


_TEXT_ESCAPES = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\textasciicircum{}", "_": r"\_\allowbreak{}", "%": r"\%", "~": r"\textasciitilde{}", "/": r"/\allowbreak{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", '"': "''",
}
# Characters that are not in pdflatex's default (OT1) fonts, as LaTeX.
_UNICODE_TEXT = {
    "–": "--", "—": "---", "‘": "`", "’": "'", "“": "``", "”": "''", "…": r"\ldots{}", "−": r"\ensuremath{-}",
    "×": r"\ensuremath{\times}", "⊙": r"\ensuremath{\odot}", "⊗": r"\ensuremath{\otimes}", "·": r"\ensuremath{\cdot}",
    "²": r"\ensuremath{^2}", "ᵀ": r"\ensuremath{^\top}", "⟨": r"\ensuremath{\langle}", "⟩": r"\ensuremath{\rangle}",
    "∂": r"\ensuremath{\partial}", "∑": r"\ensuremath{\sum}", "→": r"\ensuremath{\to}", "←": r"\ensuremath{\leftarrow}",
    "≈": r"\ensuremath{\approx}", "≤": r"\ensuremath{\le}", "≥": r"\ensuremath{\ge}", "ℓ": r"\ensuremath{\ell}",
    "é": r"\'e", "è": r"\`e", "ü": r'\"u', "ö": r'\"o', "ä": r'\"a', "ñ": r"\~n", "ç": r"\c{c}",
}
_GREEK = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
    "tau upsilon phi chi psi omega"
).split()
for _i, _g in enumerate(_GREEK):
    if _g == "omicron":
        _UNICODE_TEXT["\u03bf"] = "o"
        continue
    _UNICODE_TEXT[chr(0x3B1 + _i + (1 if _i >= 17 else 0))] = r"\ensuremath{\%s}" % _g
    if _g[0].upper() + _g[1:] in ("Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi", "Omega"):
        _UNICODE_TEXT[chr(0x391 + _i + (1 if _i >= 17 else 0))] = r"\ensuremath{\%s}" % (_g[0].upper() + _g[1:])
_UNICODE_TEXT["ς"] = r"\ensuremath{\varsigma}"


def escape_text(text: str) -> str:
    """``text`` for LaTeX text mode: every special character quoted, every
    character outside ASCII either spelled in LaTeX or shown as ``[U+XXXX]``;
    a line may break after ``_`` and ``/`` (long code names and paths)."""
    out = []
    for ch in str(text):
        if ch in _TEXT_ESCAPES:
            out.append(_TEXT_ESCAPES[ch])
        elif ch.isascii():
            out.append(ch if ch.isprintable() or ch in "\n" else " ")
        else:
            out.append(_UNICODE_TEXT.get(ch, "[U+%04X]" % ord(ch)))
    return "".join(out)


def escape_code(text: str) -> str:
    r"""``text`` in typewriter type: ``\texttt{c\_prev}``."""
    return r"\texttt{" + escape_text(text) + "}"


_MD_SPECIALS = set("\\`*_[]<>|$#{}!~")


def escape_markdown(text: str) -> str:
    """``text`` for a Markdown paragraph or table cell (GitHub): Markdown's
    specials, the table's ``|`` and math's ``$`` are backslash-escaped."""
    return "".join("\\" + ch if ch in _MD_SPECIALS else (" " if ch in "\r\n" else ch) for ch in str(text))


def label_key(name: str) -> str:
    """A name as a LaTeX label / HTML anchor: ASCII letters, digits, ``_``."""
    return "".join(ch if (ch.isascii() and (ch.isalnum() or ch == "_")) else "u%04x" % ord(ch) for ch in name)


# ---------------------------------------------------------------------------
# the printer


def dim_latex(name: str) -> str:
    r"""A size: ``n_a`` -> ``n_{a}``, ``D`` -> ``D``, ``mem_cell_ct`` -> ``\mathit{mem\_cell\_ct}``."""
    head, sep, tail = name.partition("_")
    if not sep:
        return name if len(name) == 1 else r"\mathit{" + name + "}"
    if len(head) == 1 and tail.isalnum() and len(tail) <= 3:
        return head + "_{" + tail + "}"
    return r"\mathit{" + name.replace("_", r"\_") + "}"


def _needs_group(tex: str) -> bool:
    """Whether a name needs parentheses before a superscript (``x^{a}``, ``g(t)``)."""
    depth = 0
    for ch in tex:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "^" and depth == 0:
            return True
    return tex.endswith(")") or tex.startswith(r"\frac") or tex.startswith(r"\left.") or " " in tex.strip()


def paren(text: str) -> str:
    r"""``(text)``, with ``\left( \right)`` only around tall content (a
    fraction, a matrix, a sum)."""
    if any(k in text for k in (r"\frac", r"\begin", r"\sum", r"\left")):
        return r"\left(" + text + r"\right)"
    return "(" + text + ")"


class ArrayLatexPrinter(LatexPrinter):
    """SymPy's LaTeX printer with ⊙ for the elementwise product and the
    notation's names for symbols (see the module docstring)."""

    def __init__(self, names: dict[str, str], grads: frozenset[str] = frozenset(), feature_axis: int = 0):
        super().__init__({"mul_symbol": r"\odot"})
        self.names = names
        self.grads = grads
        self.feature_axis = feature_axis

    # -- atoms --------------------------------------------------------------------
    def _print_Symbol(self, expr, style="plain"):
        name = self.names.get(expr.name)
        if name is not None:
            return name
        return super()._print_Symbol(expr)

    # -- arithmetic ---------------------------------------------------------------
    def _is_grad(self, factor) -> bool:
        if isinstance(factor, sp.Symbol):
            return factor.name in self.grads
        return isinstance(factor, ops.later)

    def _print_Mul(self, expr):
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_negative:
            return "- " + self._print_Mul_positive(-coeff, rest)
        return self._print_Mul_positive(coeff, rest)

    def _print_Mul_positive(self, coeff, rest):
        factors = list(sp.Mul.make_args(rest)) if rest != 1 else []
        num = [f for f in factors if not (isinstance(f, sp.Pow) and f.exp.is_negative)]
        den = [1 / f for f in factors if isinstance(f, sp.Pow) and f.exp.is_negative]
        num.sort(key=lambda f: 0 if self._is_grad(f) else 1)  # stable: gradients first
        text = r" \odot ".join(self._factor(f) for f in num) if num else ""
        if den:
            text = r"\frac{" + (text or "1") + "}{" + r" \odot ".join(self._factor(f) for f in den) + "}"
        if coeff != 1 or not text:
            c = self._print(coeff)
            if not text:
                return c
            return c + " " + text
        return text

    def _factor(self, f) -> str:
        text = self._print(f)
        if isinstance(f, sp.Add) or (isinstance(f, sp.Mul) and f.as_coeff_Mul()[0].is_negative):
            return paren(text)
        return text

    def _print_Add(self, expr, order=None):
        terms = list(expr.args)
        positive = [a for a in terms if not a.could_extract_minus_sign()]
        negative = [a for a in terms if a.could_extract_minus_sign()]
        positive.sort(key=lambda a: 0 if a.is_Number else 1)  # 1 - f, not - f + 1
        out = ""
        for i, term in enumerate(positive + negative):
            if term in negative:
                text = self._print(-term)
                if isinstance(-term, sp.Add):
                    text = paren(text)
                out += (" - " if i else "- ") + text
            else:
                out += (" + " if i else "") + self._print(term)
        return out

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.base, expr.exp
        if exp.is_Integer and exp.is_negative:
            return r"\frac{1}{" + self._print(base**-exp) + "}"
        e = self._print(exp)
        if base.func in functions.BY_CLASS and exp.is_Integer and base.func is not sp.Heaviside:
            return self._function(base, power=e)
        b = self._print(base)
        if isinstance(base, (sp.Add, sp.Mul, sp.Pow)) or (isinstance(base, sp.Symbol) and _needs_group(b)) or (
                not isinstance(base, sp.Symbol) and not base.is_Number):
            b = paren(b)
        return b + "^{" + e + "}"

    # -- functions -----------------------------------------------------------------
    def _function(self, expr, power: str | None = None) -> str:
        """An elementwise function, with the LaTeX head of its row in derive.spec.functions."""
        if expr.func is sp.Heaviside:  # the step of relu' and of maximum/minimum at a tie
            x, at_zero = expr.args
            relation = "> 0" if at_zero == 0 else r"\geq 0" if at_zero == 1 else None
            if relation is not None:
                return r"\mathbb{1}\left[" + self._print(x) + " " + relation + r"\right]"
            return r"\operatorname{heaviside}" + paren(self._print(x) + ", " + self._print(at_zero))
        head = functions.BY_CLASS[expr.func].latex
        if power is not None:
            head += "^{" + power + "}"
        if expr.func is functions.sqrt and power is None:
            return head + "{" + self._print(expr.args[0]) + "}"
        return head + paren(", ".join(self._print(a) for a in expr.args))

    def _print(self, expr, **kwargs):
        if getattr(expr, "func", None) in functions.BY_CLASS:
            return self._function(expr)
        # array ops whose own _latex (in derive.spec.ops) this printer refines
        if isinstance(expr, ops.concat) and int(expr.args[0]) == 1 and self.feature_axis == 1:
            return r"\begin{bmatrix} " + " & ".join(self._print(p) for p in expr.args[1:]) + r" \end{bmatrix}"
        if isinstance(expr, ops.take) and int(expr.args[1]) != self.feature_axis:
            x, axis, start, stop = expr.args
            return (ops._wrap(self, x) + "[" + r":,\," * int(axis) + self._print(start) + "{:}"
                    + self._print(stop) + "]")
        if isinstance(expr, ops.transpose) and isinstance(expr.args[0], ops.take) and \
                int(expr.args[0].args[1]) != self.feature_axis:
            return r"\left(" + self._print(expr.args[0]) + r"\right)^{\top}"
        if isinstance(expr, ops.transpose):
            inner = self._print(expr.args[0])
            if isinstance(expr.args[0], sp.Symbol) and _needs_group(inner):
                return paren(inner) + r"^{\top}"
            return ops.transpose._latex(expr, self)
        return super()._print(expr, **kwargs)

    def _print_Sum(self, expr):
        (var, lo, hi) = expr.limits[0]
        body = self._print(expr.function)
        if isinstance(expr.function, (sp.Add, ops.outer)):
            body = paren(body)
        return r"\sum_{" + self._print(var) + "=" + self._print(lo) + "}^{" + self._print(hi) + "} " + body


# ---------------------------------------------------------------------------
# names


def symbol_names(cell: Cell) -> dict[str, str]:
    """name -> LaTeX for every symbol of the cell, every named adjoint and every size."""
    names = {n: s.latex for n, s in cell.symbols.items()}
    for n, tex in cell.adjoint_latex.items():
        names[n] = tex
    for d in cell.dims:
        names.setdefault(d, dim_latex(d))
    return names


def _adjoint_default(name: str, cell: Cell, names: dict[str, str]) -> str:
    if name in names:
        return names[name]
    base = name[1:] if name.startswith("d") else name
    if base in cell.symbols:
        return r"\mathrm{d}" + names[base]
    if base.startswith("z_") and base[2:] in cell.symbols:
        return r"\mathrm{d}z_{" + names[base[2:]] + "}"
    return sp.latex(sp.Symbol(name))


def _grad_names(cell: Cell) -> frozenset[str]:
    names = set(cell.adjoint_latex) | set(cell.adjoint_names.values()) | set(cell.preact_names.values())
    names |= {link.grad for link in cell.links} | {cell.loss.external} | set(cell.book_names)
    return frozenset(names)


def to_latex(expr: sp.Expr, cell: Cell, extra: dict[str, str] | None = None) -> str:
    names = symbol_names(cell)
    grads = set(_grad_names(cell))
    for s in expr.free_symbols:
        if s.name not in names:
            names[s.name] = _adjoint_default(s.name, cell, names)
            if s.name.startswith("d"):
                grads.add(s.name)
    if extra:
        names.update(extra)
        grads |= {k for k in extra if k.startswith("__D")}
    return ArrayLatexPrinter(names, frozenset(grads), cell.feature_axis).doprint(expr)


def equation_latex(eq: sp.Eq, cell: Cell) -> str:
    """``lhs = rhs`` in the notation (one line, no alignment mark)."""
    return to_latex(eq.lhs, cell) + " = " + to_latex(eq.rhs, cell)


def derivation_latex(derivation) -> str:
    """The forward and backward equations as one LaTeX ``aligned`` block (what a
    Derivation shows in Jupyter). An equation whose name is displayed as its own
    right side (the course's ``concat``, shown as the stacked vector) would read
    ``x = x`` and is left out."""
    cell = derivation.cell

    def rows(equations):
        out = []
        for eq in equations:
            lhs, rhs = to_latex(eq.lhs, cell), to_latex(eq.rhs, cell)
            if lhs != rhs:
                out.append(lhs + " &= " + rhs)
        return out

    return (r"\begin{aligned}" + r" \\ ".join(rows(derivation.forward) + [r"\\[4pt]"] + rows(derivation.backward))
            + r"\end{aligned}")


# ---------------------------------------------------------------------------
# time shifts and derived names

_TIME = re.compile(r"(?<![\\A-Za-z])t(?:\s*([+-])\s*(\d+))?(?![A-Za-z])")


def shift_time(tex: str, k: int) -> str:
    r"""Move a LaTeX name (or formula) ``k`` steps in time: every free ``t``,
    ``t-1``, ``t+1`` index gains ``k``. ``c^{\langle t-1 \rangle}`` -> (k=1)
    ``c^{\langle t \rangle}``; ``f_t`` -> ``f_{t+1}``; ``s(t)`` -> ``s(t+1)``.
    Commands (``\tilde``, ``\top``, ``\partial``) and words are left alone;
    a ``\sum_{t=1}^{T}`` would be shifted too, so shift names, not sums."""
    if k == 0:
        return tex

    def repl(m: re.Match) -> str:
        off = (int(m.group(2)) * (1 if m.group(1) == "+" else -1)) if m.group(1) else 0
        off += k
        text = "t" if off == 0 else f"t{'+' if off > 0 else '-'}{abs(off)}"
        before = tex[m.start() - 1] if m.start() else ""
        if before in "_^" and len(text) > 1:
            return "{" + text + "}"
        return text

    return _TIME.sub(repl, tex)


def at_step(tex: str, step: str) -> str:
    r"""A LaTeX name at a given step: ``step`` is ``"1"`` or ``"T"``;
    ``c^{\langle t-1 \rangle}`` at ``"1"`` is ``c^{\langle 0 \rangle}``, at ``"T"``
    ``c^{\langle T-1 \rangle}``."""

    def repl(m: re.Match) -> str:
        off = (int(m.group(2)) * (1 if m.group(1) == "+" else -1)) if m.group(1) else 0
        if step.isdigit():
            text = str(int(step) + off)
        else:
            text = step if off == 0 else f"{step}{'+' if off > 0 else '-'}{abs(off)}"
        before = tex[m.start() - 1] if m.start() else ""
        if before in "_^" and len(text) > 1:
            return "{" + text + "}"
        return text

    return _TIME.sub(repl, tex)


_FRAC = re.compile(r"^\\frac\{\s*(?:\\partial|d)\s*(?P<num>.+?)\}\{\s*(?:\\partial|d)\s*(?P<den>.+)\}$")


class Notation:
    """The derived LaTeX names of one cell that a write-up needs."""

    def __init__(self, cell: Cell):
        self.cell = cell
        self.names = symbol_names(cell)
        self.loss = self._loss_symbol()
        on = cell.symbols[cell.loss.on].latex
        m = re.match(r"^(\\[A-Za-z]+\{[^{}]*\}|\\[A-Za-z]+|[A-Za-z])", on)
        self.step_loss = (r"\ell" + on[m.end():]) if m else r"\ell_t"

    def _loss_symbol(self) -> str:
        votes: dict[str, int] = {}
        for tex in self.cell.adjoint_latex.values():
            for m in re.finditer(r"\\partial\s*(\\mathcal\{L\}|L|J)(?![A-Za-z_(])", tex):
                votes[m.group(1)] = votes.get(m.group(1), 0) + 1
        return max(sorted(votes), key=lambda k: votes[k]) if votes else "L"

    def tex(self, name: str) -> str:
        """The LaTeX of a symbol, an adjoint, or a pre-activation ``z_<gate>``."""
        if name.startswith("z_") and name[2:] in self.cell.symbols and name not in self.cell.symbols:
            return self.preact(name[2:])
        if name in self.names:
            return self.names[name]
        return _adjoint_default(name, self.cell, dict(self.names))

    def preact(self, gate: str) -> str:
        r"""The pre-activation of ``gate`` (the argument of σ, tanh or softmax):
        read off the spec's LaTeX for its gradient when that is
        ``\frac{\partial L}{\partial z_{f,t}}`` or ``dz_{i,t}``, else
        ``z_f^{\langle t \rangle}`` built from the gate's own name."""
        grad = self.cell.preact_names.get(gate)
        tex = self.cell.adjoint_latex.get(grad, "") if grad else ""
        m = _FRAC.match(tex.strip())
        if m and m.group("den").strip():
            return m.group("den").strip()
        m = re.match(r"^(?:\\mathrm\{d\}|d)\s*(z.*)$", tex.strip())
        if m:
            return m.group(1)
        g = self.cell.symbols[gate].latex.strip()
        m = re.match(r"^(\\[A-Za-z]+)_(\{[^{}]*\}|[A-Za-z0-9])(.*)$", g)  # \Gamma_f^{<t>}
        if m:
            return "z_" + m.group(2) + m.group(3)
        m = re.match(r"^(\\[A-Za-z]+\{[^{}]*\}|\\[A-Za-z]+|[A-Za-z])(\^.*|\(.*\))$", g)  # i^{(t)}, \tilde{c}^{..}, g(t)
        if m:
            return "z_{" + m.group(1) + "}" + m.group(2)
        m = re.match(r"^([A-Za-z])_(t|\{t[^{}]*\})$", g)  # f_t
        if m:
            return "z_{" + m.group(1) + "," + m.group(2).strip("{}") + "}"
        return "z_{" + g + "}"

    def partial(self, of: str, wrt: str, loss: str | None = None) -> str:
        r"""``\frac{\partial of}{\partial wrt}`` with LaTeX operands."""
        return r"\frac{\partial " + of + r"}{\partial " + wrt + "}"

    def grad(self, wrt_tex: str, step: bool = False) -> str:
        r"""``\frac{\partial L}{\partial X}`` (``\ell`` of the step if ``step``)."""
        return self.partial(self.step_loss if step else self.loss, wrt_tex)

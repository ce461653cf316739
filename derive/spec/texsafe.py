r"""LaTeX from a spec, checked against a whitelist of math commands.

Contract. :func:`check_math` returns a spec's LaTeX field (a symbol's
``latex``, an ``adjoint_latex`` entry) unchanged when it is mathematics that
can do nothing but typeset, else raises :class:`TexError` naming the first
offending command or character. A spec's LaTeX is pasted into the write-up's
``.tex`` and ``.md`` between ``$`` signs, so it must not be able to read or
write files (``\input``, ``\openin``, ``\write``, ``\read``, ``\include``),
redefine anything (``\def``, ``\catcode``, ``\csname``, ``\let``, ...), leave
math mode (``$``), comment out the rest of a line (``%``), spell a character
by code (``^^5c``), unbalance the braces, or be read as HTML or a code span
by Markdown (``<``, ``>``, a backtick: write ``\lt``, ``\gt``). It is checked by allowing, not by
forbidding: only the control words in :data:`MATH_COMMANDS`, the control
symbols in :data:`CONTROL_SYMBOLS` and the environments in
:data:`ENVIRONMENTS` pass (``\tag`` and ``\label`` are not among them).
"""

from __future__ import annotations

import re

from derive.errors import DeriveError

MAX_TEX = 300

_GREEK = """alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi
pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi
Sigma Upsilon Phi Psi Omega""".split()

MATH_COMMANDS = frozenset(_GREEK + """
frac dfrac tfrac sqrt partial nabla ell hbar imath jmath infty
mathrm mathbf mathit mathcal mathsf mathtt mathbb mathfrak boldsymbol bm operatorname text textrm textit
tilde hat bar vec dot ddot breve check acute grave widehat widetilde overline underline overrightarrow
left right big Big bigg Bigg bigl bigr Bigl Bigr middle
langle rangle lvert rvert lVert rVert vert Vert lfloor rfloor lceil rceil
odot circ cdot times ast star otimes oplus ominus top intercal dagger prime
sum prod log exp tanh sinh cosh sin cos max min
ldots cdots dots vdots ddots quad qquad
in to mapsto lt gt leftarrow rightarrow leq geq neq approx equiv sim
begin end
""".split())

CONTROL_SYMBOLS = frozenset(",;:! {}|_\\")

ENVIRONMENTS = frozenset("matrix bmatrix pmatrix vmatrix Bmatrix Vmatrix smallmatrix array".split())

_TOKEN = re.compile(r"\\([A-Za-z]+|.)|(\^\^)|([$%#~<>`])|([{}])", re.S)


class TexError(DeriveError):
    """A LaTeX field that is not plain mathematics."""


def check_math(tex: str) -> str:
    """``tex`` unchanged if it passes the whitelist, else :class:`TexError`."""
    if not isinstance(tex, str):
        raise TexError("LaTeX must be text")
    if len(tex) > MAX_TEX:
        raise TexError(f"LaTeX of {len(tex)} characters (the limit is {MAX_TEX})")
    for i, ch in enumerate(tex):
        if not (ch.isascii() and (ch.isprintable() or ch == " ")):
            raise TexError(f"character U+{ord(ch):04X} at column {i} is not printable ASCII "
                           "(write it as a LaTeX command)")
    depth = 0
    for m in _TOKEN.finditer(tex):
        word, caret, special, brace = m.groups()
        if caret:
            raise TexError(f"`^^` at column {m.start()} spells a character by its code; it is not allowed")
        if special:
            raise TexError(f"`{special}` at column {m.start()} is not allowed in a LaTeX field")
        if brace:
            depth += 1 if brace == "{" else -1
            if depth < 0:
                raise TexError(f"unbalanced `}}` at column {m.start()}")
            continue
        if word is None:
            continue
        if len(word) == 1 and not word.isalpha():
            if word not in CONTROL_SYMBOLS:
                raise TexError(f"`\\{word}` at column {m.start()} is not allowed")
            continue
        if word not in MATH_COMMANDS:
            raise TexError(f"`\\{word}` at column {m.start()} is not a math command this project allows")
        if word in ("begin", "end"):
            env = re.match(r"\{([A-Za-z*]+)\}", tex[m.end():])
            if env is None or env.group(1) not in ENVIRONMENTS:
                raise TexError(f"`\\{word}` at column {m.start()} opens no allowed environment "
                               f"({', '.join(sorted(ENVIRONMENTS))})")
    if depth:
        raise TexError("unbalanced braces: a `{` is never closed")
    return tex

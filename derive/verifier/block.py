r"""A block of equations as pasted from a page: one verdict per equation.

Contract. :func:`split_block` cuts the text of a LaTeX ``align`` block (or
``align*``, ``aligned``, ``eqnarray``, ``gather``, ``split``, ``$$ ... $$``,
``\[ ... \]``, or bare lines ending in ``\\``) into its equations, at the line
breaks ``\\`` that stand outside braces and inner environments (a
``bmatrix`` keeps its rows), dropping the spacing argument of a break
(``\\[8pt]``). A line with nothing left of its alignment point that goes on
with an operator (``& + \dots``, ``&\quad \odot \dots``) continues the
equation before it; a line ``&= \dots`` with nothing on its left is another
right side of the same quantity. Python text is cut at line ends; a line
goes on in the next when it leaves a bracket open or ends in ``\\``, or when
the next starts with an operator (``+``, ``*``, ``@``, ``/``).

:func:`verify_block` verifies each equation with
:func:`derive.verifier.formula.verify` and returns one :class:`LineVerdict`
per equation, in order: its verdict, or the reason it could not be read.
``block_status`` is the exit status of the whole: 0 when every equation is
right, else the worst of them (1 wrong, 2 could not be read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from derive.errors import DeriveError, ExprError
from derive.verifier.formula import Verdict, verify

# Environments that only arrange equations: their body is the block.
_WRAPPERS = ("align", "align*", "aligned", "alignat", "alignat*", "eqnarray", "eqnarray*", "gather", "gather*",
             "gathered", "split", "multline", "multline*", "equation", "equation*", "flalign", "flalign*")
_BEGIN = re.compile(r"\\begin\s*\{([^{}]*)\}")
_END = re.compile(r"\\end\s*\{([^{}]*)\}")
_BREAK_SPACING = re.compile(r"\s*\*?\s*\[[^\[\]{}]*\]")
_CONTINUES = re.compile(r"^(\\quad|\\qquad|\\;|\\,|\\:|\\!|\s)*(\+|-|\\odot|\\circ|\\cdot|\\times|\*|@|/)")


@dataclass
class LineVerdict:
    """One equation of a block: its number (from 1), its text, and the
    verdict, or the message saying why it could not be read."""

    number: int
    text: str
    verdict: Verdict | None = None
    error: str | None = None

    @property
    def status(self) -> int:
        return 2 if self.verdict is None else self.verdict.status

    @property
    def message(self) -> str:
        return self.verdict.message if self.verdict is not None else f"could not be read: {self.error}"

    def to_dict(self) -> dict:
        out = {"line": self.number, "text": self.text, "status": self.status}
        if self.verdict is not None:
            out["verdict"] = self.verdict.to_dict()
        else:
            out["error"] = self.error
        return out


def is_block(text: str, syntax: str) -> bool:
    """Whether ``text`` holds more than one equation (or an ``align``-like environment)."""
    if syntax == "latex":
        return bool(_outer_environment(text)) or len(split_block(text, syntax)) > 1
    return len(split_block(text, syntax)) > 1


def split_block(text: str, syntax: str = "latex") -> list[str]:
    """The equations of a block, each as the text to verify."""
    if syntax == "latex":
        pieces = _latex_lines(_unwrap(text))
    else:
        pieces = [line.split("#", 1)[0].rstrip() for line in text.splitlines()]
    out: list[str] = []
    last_lhs: str | None = None
    for piece in pieces:
        line = piece.strip()
        if not line or line.replace("\\nonumber", "").replace("\\notag", "").strip() == "":
            continue
        left, amp, right = line.partition("&") if syntax == "latex" else ("", "", line)
        if syntax == "latex" and amp and not left.strip():
            body = right.lstrip()
            if body.startswith("=") and last_lhs is not None:
                line = f"{last_lhs} {body}"
            elif _CONTINUES.match(body) and out:
                out[-1] = f"{out[-1]} {body}"
                continue
        elif syntax != "latex" and out and ((_CONTINUES.match(line) and not line.startswith("-"))
                                            or _open_brackets(out[-1]) or out[-1].endswith("\\")):
            out[-1] = f"{out[-1].rstrip(chr(92)).rstrip()} {line}"
            continue
        lhs = _left_side(line)
        if lhs is not None:
            last_lhs = lhs
        out.append(line)
    return out


def verify_block(preset, text: str, syntax: str = "latex", *, loss: str | None = None,
                 total: bool = False) -> list[LineVerdict]:
    """Verify every equation of a block (see the module docstring). Each
    equation names its quantity on its left side; one that cannot be read
    gets its reason, and the others are still verified."""
    lines = split_block(text, syntax)
    if not lines:
        raise ExprError("the block holds no equation")
    out = []
    for k, line in enumerate(lines, 1):
        try:
            out.append(LineVerdict(k, line, verdict=verify(preset, None, line, syntax, loss=loss, total=total)))
        except (RecursionError, MemoryError):
            out.append(LineVerdict(k, line, error="the formula is too deeply nested or too large"))
        except ExprError as exc:
            out.append(LineVerdict(k, line, error=exc.render()))
        except DeriveError as exc:
            if "preset" in str(exc) or "spec" in str(exc):
                raise  # the cell itself cannot be read: not a fault of one line
            out.append(LineVerdict(k, line, error=str(exc)))
    return out


def block_status(results: list[LineVerdict]) -> int:
    """0 when every equation is right, else the worst status (1 wrong, 2 unreadable)."""
    return max((r.status for r in results), default=2)


# ---------------------------------------------------------------------------
# cutting LaTeX


def _outer_environment(text: str) -> str | None:
    m = _BEGIN.search(text)
    return m.group(1).strip() if m and m.group(1).strip() in _WRAPPERS and not text[:m.start()].strip("$ \n\t\\[") \
        else None


def _unwrap(text: str) -> str:
    """The body of an outer arranging environment, ``$$ ... $$`` or ``\\[ ... \\]``."""
    body = text.strip()
    name = _outer_environment(body)
    if name is not None:
        start = _BEGIN.search(body)
        ends = [m for m in _END.finditer(body) if m.group(1).strip() == name]
        body = body[start.end():ends[-1].start()] if ends else body[start.end():]
    for opener, closer in (("$$", "$$"), ("\\[", "\\]")):
        if body.startswith(opener) and body.endswith(closer) and len(body) >= len(opener) + len(closer):
            body = body[len(opener):len(body) - len(closer)]
    return body


def _latex_lines(body: str) -> list[str]:
    """Cut at the ``\\`` outside braces and inner environments; drop ``[8pt]``."""
    lines, start, depth, env, i = [], 0, 0, 0, 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if body.startswith("\\\\", i):
                if depth == 0 and env == 0:
                    lines.append(body[start:i])
                    m = _BREAK_SPACING.match(body, i + 2)
                    i = m.end() if m else i + 2
                    start = i
                    continue
                i += 2
                continue
            if _BEGIN.match(body, i):
                env += 1
            elif _END.match(body, i):
                env -= 1
            i += 2 if i + 1 < len(body) and body[i + 1] in "{}[]" else 1
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        i += 1
    lines.append(body[start:])
    return lines


def _open_brackets(text: str) -> bool:
    """Whether a Python line leaves a bracket open (the equation goes on)."""
    return sum(text.count(c) for c in "([{") > sum(text.count(c) for c in ")]}")


def _left_side(line: str) -> str | None:
    """The text left of the first ``=`` (without ``&``), if the line has one."""
    depth = 0
    for i, ch in enumerate(line):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == "=" and depth == 0 and line[i + 1:i + 2] != "=" and line[i - 1:i] not in ("<", ">", "!", "="):
            lhs = line[:i].replace("&", "").strip()
            return lhs or None
    return None

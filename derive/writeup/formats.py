"""The two output formats of a write-up: LaTeX and GitHub Markdown.

A :class:`Format` says how a piece of mathematics, a display, a row of the chain
rule and a code span are written in one format; :class:`TexFormat` and
:class:`MarkdownFormat` are the two. The templates receive one and call it, so a
template never escapes anything itself.
"""

from __future__ import annotations

import re

from derive.writeup.explain import Display, Row
from derive.spec.latex import escape_code, escape_markdown, escape_text


class Format:
    """How one output format writes text, math and displays."""

    name = ""

    def esc(self, text: str) -> str:
        raise NotImplementedError

    def code(self, text: str) -> str:
        raise NotImplementedError

    def m(self, tex: str) -> str:
        raise NotImplementedError

    def display(self, disp: Display) -> str:
        raise NotImplementedError

    def displays(self, disps: list[Display]) -> str:
        raise NotImplementedError

    def rows(self, rows: list[Row], note: str = "") -> str:
        raise NotImplementedError

    def ref(self, tag: str, label: str) -> str:
        raise NotImplementedError


class TexFormat(Format):
    name = "tex"

    def esc(self, text):
        return escape_text(text)

    def code(self, text):
        return escape_code(text)

    def m(self, tex):
        return "$" + tex + "$" if tex else ""

    def ref(self, tag: str, label: str) -> str:
        return r"(\ref{" + label + "})" if label else f"({tag})"

    def mref(self, tag: str, label: str) -> str:
        return r"\text{" + self.ref(tag, label) + "}"

    def _rows(self, disp: Display) -> list[str]:
        lines = []
        for i, row in enumerate(disp.rows):
            last = i == len(disp.rows) - 1
            if last and disp.tag:
                end = r" \tag{" + disp.tag + "}" + (r"\label{" + disp.label + "}" if disp.label else "")
            else:
                end = r" \notag"
            lines.append(f"  {_row(row)}{end}")
        return lines

    def display(self, disp: Display) -> str:
        return "\\begin{align}\n" + " \\\\\n".join(self._rows(disp)) + "\n\\end{align}"

    def displays(self, disps: list[Display]) -> str:
        lines = [line for disp in disps for line in self._rows(disp)]
        return "\\begin{align}\n" + " \\\\\n".join(lines) + "\n\\end{align}"

    def rows(self, rows: list[Row], note: str = "") -> str:
        lines = [f"  {_row(r)}" for r in rows]
        if note:
            lines[-1] += r" && \text{" + note + "}"
        return "\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}"


class MarkdownFormat(Format):
    name = "md"

    def esc(self, text):
        return escape_markdown(text)

    def code(self, text):
        return "`" + str(text).replace("`", "'") + "`"

    def m(self, tex):
        if not tex:
            return ""
        tex = _md_math(tex)
        if _MARKDOWN_ESCAPE.search(tex) or "*" in tex or "`" in tex:
            return "$`" + tex + "`$"
        return "$" + tex + "$"

    def ref(self, tag: str, label: str) -> str:
        return f"([{tag}](#{label.replace(':', '-')}))" if label else f"({tag})"

    def mref(self, tag: str, label: str) -> str:
        return r"\text{(" + tag + ")}"

    def display(self, disp: Display) -> str:
        anchor = f'<a id="{disp.label.replace(":", "-")}"></a>\n\n' if disp.label else ""
        return anchor + self._math(disp.rows, r"\tag{" + disp.tag + "}" if disp.tag else "")

    def displays(self, disps: list[Display]) -> str:
        return "\n\n".join(self.display(d) for d in disps)

    def rows(self, rows: list[Row], note: str = "") -> str:
        return self._math(rows, r"\tag{" + _tag_text(note) + "}" if note else "")

    @staticmethod
    def _math(rows: list[Row], tag: str) -> str:
        # a ```math block, not $$: GitHub reads $$...$$ as Markdown first and drops
        # the backslash of \\ (the line break), \{, \, ...; a math block is raw TeX
        if len(rows) == 1:
            return f"```math\n{_md_math(rows[0].lhs)} = {_md_math(rows[0].rhs)}{tag}\n```"
        body = " \\\\\n".join(_md_math(_row(r)) for r in rows)
        return "```math\n\\begin{aligned}\n" + body + "\n\\end{aligned}" + tag + "\n```"


def _row(row: Row) -> str:
    r"""An aligned row: ``lhs &= rhs``, or ``& \quad + …`` continuing a sum."""
    if not row.lhs and row.rhs.startswith("\\quad "):
        return "& " + row.rhs
    return f"{row.lhs} &= {row.rhs}"


# a backslash before ASCII punctuation: a Markdown escape, which GitHub takes out
# of $...$ before MathJax sees it (\\ \{ \} \_ \, \; \! \|); such math goes in $`...`$
_MARKDOWN_ESCAPE = re.compile(r"\\[!-/:-@[-`{-~]")


def _tag_text(note: str) -> str:
    r"""A ``\tag``'s text: MathJax reads it in text mode, where ``\text``,
    ``\texttt`` and ``_`` are errors: ``\text{from B12}`` -> ``from B12``,
    ``\texttt{weight\_ih}`` -> ``$\texttt{weight\_ih}$`` (math inside the tag)."""
    m = re.fullmatch(r"\\text\{([^{}$_]*)\}", note)
    if m:
        return m.group(1)
    return "$" + note + "$" if "\\" in note or "_" in note else note


def _md_math(tex: str) -> str:
    """LaTeX as GitHub's MathJax reads it inside Markdown: no bare ``|``."""
    return tex.replace(r"\right|", r"\right\vert ").replace("|", r"\vert ")

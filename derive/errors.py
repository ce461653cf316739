"""Error types. Every error says what is wrong and where.

``ExprError`` is raised by the expression parser and points at a column of the
text with a caret. ``SpecError`` is raised while loading a cell spec and names
the file, the equation (when there is one) and the symbol.
"""

from __future__ import annotations


class DeriveError(Exception):
    """Base class of every error this package raises on purpose."""


class ExprError(DeriveError):
    """A formula could not be read; ``col`` is the 0-based column of the fault."""

    def __init__(self, message: str, text: str = "", col: int | None = None):
        self.message = message
        self.text = text
        self.col = col
        super().__init__(self.render())

    def render(self) -> str:
        if self.col is None or not self.text or "\n" in self.text or len(self.text) > 400:
            return self.message
        return f"{self.message}\n    {self.text}\n    {' ' * self.col}^"


class DomainError(DeriveError):
    """A function met an argument outside its domain (``log`` of a negative
    number, ``sqrt`` of one) where the numeric proofs or checks evaluate a cell
    or a formula at random states."""


class SpecError(DeriveError):
    """A cell spec is invalid. Nothing of it is loaded."""

    def __init__(self, path: str, message: str, equation: str | None = None):
        self.path = path
        self.equation = equation
        self.message = message
        where = f"{path}"
        if equation is not None:
            where += f", equation `{equation}`"
        super().__init__(f"{where}: {message}")

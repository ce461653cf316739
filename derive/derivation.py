"""The public result: a Derivation of one cell, and where cells come from.

Contract. ``derive(name_or_path, loss=None)`` returns a :class:`Derivation`
for a bundled preset (``presets()`` lists them) or a spec file. A Derivation
holds the forward equations and the backward equations as ordered lists of
``sympy.Eq``, left sides named as the notation names them, and answers
``closed_form(name)``: the right side with every intermediate adjoint
substituted, down to forward values and the gradients that reach the cell
from outside. Derivations are cached per (spec text, loss).
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path

import sympy as sp

from derive.spec import ops
from derive.engine.backprop import Step, Sweep, derive_cell
from derive.spec.cell import Cell, load
from derive.errors import DeriveError
from derive.spec.expr import suggest


def presets() -> list[str]:
    """The bundled cell names, sorted."""
    return sorted(p.name[:-5] for p in resources.files("derive.spec.cells").iterdir() if p.name.endswith(".toml"))


def spec_text(name_or_path: str | Path) -> tuple[str, str]:
    """(label, text) of a preset name or a spec path."""
    name = str(name_or_path)
    if name in presets():
        return f"{name}.toml", resources.files("derive.spec.cells").joinpath(f"{name}.toml").read_text("utf-8")
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise DeriveError(f"{path}: no such spec file")
        try:
            return str(path), path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DeriveError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    hint = suggest(name, presets())
    listed = f"the presets are {', '.join(presets())}"
    raise DeriveError(f"`{name}` is neither a preset nor a spec file{hint} ({listed})" if hint else
                      f"`{name}` is neither a preset nor a spec file; {listed}")


def load_cell(name_or_path: str | Path, loss: str | None = None) -> Cell:
    label, text = spec_text(name_or_path)
    return _load_cached(label, text, loss)


@functools.lru_cache(maxsize=32)
def _load_cached(label: str, text: str, loss: str | None) -> Cell:
    cell = load(label, text)
    if loss is None or loss == cell.loss.kind:
        return cell
    if loss != "upstream":
        raise DeriveError(f"{label}: a loss of kind `{loss}` cannot replace `{cell.loss.kind}`; use `upstream`")
    return cell.with_upstream_loss()


def derive(name_or_path: str | Path, loss: str | None = None) -> "Derivation":
    """Derive backpropagation through time for a preset or a spec file.

    ``loss="upstream"`` replaces the cell's loss head by a given gradient on
    its hidden output (the form of the course's ``lstm_backward(da, caches)``).
    """
    label, text = spec_text(name_or_path)
    return _derive_cached(label, text, loss)


@functools.lru_cache(maxsize=32)
def _derive_cached(label: str, text: str, loss: str | None) -> "Derivation":
    return Derivation(derive_cell(_load_cached(label, text, loss)))


class Derivation:
    """Forward and backward equations of one cell, in its own notation."""

    def __init__(self, sweep: Sweep):
        self._sweep = sweep
        self.cell: Cell = sweep.cell
        self.forward: list[sp.Eq] = [sp.Eq(sp.Symbol(e.target), e.rhs, evaluate=False) for e in sweep.cell.equations]
        self.backward: list[sp.Eq] = list(sweep.backward)
        self.steps: list[Step] = list(sweep.steps)
        self._rhs = {str(eq.lhs): eq.rhs for eq in self.backward}

    # -- lookup -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.cell.name

    def names(self) -> list[str]:
        """The left sides of the backward equations, in order."""
        return [str(eq.lhs) for eq in self.backward]

    def equation(self, name: str) -> sp.Eq:
        if name not in self._rhs:
            raise KeyError(f"{self.name} has no backward quantity `{name}`{suggest(name, self._rhs)}")
        return sp.Eq(sp.Symbol(name), self._rhs[name], evaluate=False)

    def __getitem__(self, name: str) -> sp.Expr:
        return self.equation(name).rhs

    def kind(self, name: str) -> str:
        """head | glue | cell | param | state | input | book"""
        return self._sweep.kind_of[name]

    def gradient_name(self, array: str) -> str:
        """The name of dL/d(array) for a parameter, a state or an input."""
        return self._sweep.grad_of[array]

    @property
    def nodes(self):
        """The lowered forward graph of the cell (``rules.Node``), in topological
        order; ``head_nodes`` likewise for the loss head. Pre-activation nodes are
        named ``z_<gate>``; hidden temporaries ``_1``, ``_2``, …"""
        return list(self._sweep.nodes)

    @property
    def head_nodes(self):
        return list(self._sweep.head_nodes)

    @property
    def shapes(self) -> dict:
        """Symbolic shape of every array, temporaries included."""
        return dict(self._sweep.shapes)

    @property
    def cell_inputs(self) -> list[str]:
        """The gradients that reach the cell from outside (da_next, dc_next, …)."""
        return [link.grad for link in self.cell.links]

    # -- closed forms -------------------------------------------------------------
    def closed_form(self, name: str) -> sp.Expr:
        """``name``'s right side with every intermediate adjoint substituted.

        What remains: forward values, the loss's targets, and the gradients that
        reach the cell from outside (``cell_inputs``), so ``closed_form('dft')``
        is the formula a learner writes for ``dft``. A gluing equation's carried
        term ``later(x)`` is kept as it is: it belongs to step t+1.
        """
        expr = self.equation(name).rhs
        stop = set(self.cell_inputs) | {self.cell.loss.external} if self.kind(name) in ("cell", "param", "state", "input", "book") else set()
        subs = {sp.Symbol(k): v for k, v in self._rhs.items() if k not in stop and self.kind(k) != "book"}
        for _ in range(len(subs) + 1):
            held = {a: sp.Dummy() for a in expr.atoms(ops.later)}
            new = expr.xreplace(held).xreplace(subs).xreplace({v: k for k, v in held.items()})
            if new == expr:
                return new
            expr = new
        return expr

    # -- kernels ------------------------------------------------------------------
    def kernels(self):
        """NumPy callables built from these equations with ``sympy.lambdify``
        (one step forward and backward, whole sequences): see :mod:`derive.numeric.kernels`."""
        if getattr(self, "_kernels", None) is None:
            from derive.numeric.kernels import kernels

            self._kernels = kernels(self)
        return self._kernels

    # -- display ------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<Derivation {self.name}: {len(self.forward)} forward, {len(self.backward)} backward equations>"

    def _repr_latex_(self) -> str:
        from derive.spec.latex import derivation_latex

        return "$$" + derivation_latex(self) + "$$"


def is_preset(cell) -> bool:
    """Whether ``cell`` is a bundled preset (and not a user's spec of the same name)."""
    return cell.path == f"{cell.name}.toml" and cell.name in presets()


def command_path(path: str | Path) -> str:
    """``path`` as a command line in a generated file spells it: as the user gave
    it when relative; an absolute path relative to the current folder, so that no
    generated file carries a path of this machine."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = Path(os.path.relpath(p))
        except ValueError:  # another drive
            p = Path(p.name)
    return comment_safe(p.as_posix())


def comment_safe(text: str) -> str:
    """``text`` fit to stand in a comment of a generated file (Python, TeX, HTML)
    and in a command line: every character outside ``[A-Za-z0-9._+,=@/-]`` is
    shown as ``?``, so a newline, ``%``, a quote or ``-->`` in a path cannot end
    the comment or the command."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._+,=@/-") else "?" for ch in text)


def command_argument(cell) -> str:
    """How the command line names this cell: the preset's name, or the spec's path
    as the user gave it (:func:`command_path`)."""
    return cell.name if is_preset(cell) else command_path(cell.path)


def regenerate_command(cell, out: str | Path = "generated") -> str:
    """The command that rewrites a cell's generated files, for their headers: run
    from where the user ran ``lstm-derive build``, it writes them again into ``out``."""
    if is_preset(cell):
        return "lstm-derive build" if Path(out) == Path("generated") else f"lstm-derive build -o {command_path(out)}"
    return f"lstm-derive build --spec {command_argument(cell)} -o {command_path(out)}"

"""The cell language: the elementwise functions (one table, functions.py),
formula text -> SymPy (never eval), the cell reader and checker, printing back to Python and LaTeX, and the bundled cells as TOML (cells/).

Submodules load on first attribute access (``derive.spec.ops``), so that
``import derive`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = ['ops', 'functions', 'expr', 'pyprint', 'cell', 'shapes', 'latex', 'checks', 'texsafe']


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

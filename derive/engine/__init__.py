"""The derivation engine: the rule table (one row per node kind and loss head)
and the reverse sweep that turns a cell's forward equations into named
backward equations.

Submodules load on first attribute access (``derive.engine.rules``), so that
``import derive`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = ['rules', 'backprop']


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The verifier: is a hand-derived formula, or a backward function, right, and
if not, which term is wrong.

Submodules load on first attribute access (``derive.verifier.formula``), so that
``import derive`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = ['formula', 'block', 'latex_reader', 'diagnose', 'function', 'cache', 'apis', 'check_files', 'child', 'context', 'function_fill', 'function_report', 'function_sequence', 'latex_parser', 'latex_tokens', 'mutations', 'recognise', 'sandbox', 'terms', 'userfiles']


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

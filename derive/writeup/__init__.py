"""Write-ups of a derivation: the chain rule step by step, the unrolled graph,
the LaTeX article, the Markdown page and the plain listing.

Submodules load on first attribute access (``derive.writeup.document``), so that
``import derive`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = ['document', 'explain', 'graph', 'listing', 'crosswalk', 'formats', 'pdf']


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

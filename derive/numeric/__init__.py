"""Numbers from a derivation: evaluation through time (full and truncated BPTT),
lambdified kernels, gradient checks and the unrolled symbolic proof.

Submodules load on first attribute access (``derive.numeric.evaluate``), so that
``import derive`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = ['evaluate', 'kernels', 'judge', 'gradcheck', 'unrolled']


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

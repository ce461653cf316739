"""The NumPy modules in generated/: the fused plan read off a derivation,
the emitted core functions, each notation's API, and the unfused fallback.

Submodules load on first attribute access (``derive.codegen.render``), so that
``import derive`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = ['render', 'plan', 'emit', 'api', 'unfused', 'numpy_printer', 'cse', 'dropin', 'products', 'step_body', 'torch_classes']


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The command line (``lstm-derive``, ``python -m derive``): its subcommands,
``build`` and the benchmark driver.

Submodules load on first attribute access (``derive.cli.main``), so that
``import derive`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = ['main', 'build', 'benchmark', 'benchmark_stacked', 'emit', 'files', 'options', 'verify']


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

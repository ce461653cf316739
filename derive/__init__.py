"""derive: backpropagation through time for recurrent cells, derived symbolically.

    >>> import derive
    >>> d = derive.derive("coursera")
    >>> d.closed_form("dft")           # the formula for dft, in the notebook's names

The package follows the flow of the data, one folder a part:

    spec/          formula text and TOML cells -> a checked Cell   (never eval)
    engine/        Cell -> named backward equations                (rule table, reverse sweep)
    numeric/       equations -> numbers                            (BPTT, kernels, gradient checks)
    derivation.py  the public result, Derivation, and where cells come from
    codegen/ writeup/ verifier/   what is made from a derivation (none imports another)
    cli/           the command line

A layer imports only the layers above it in this list (the import-linter
contracts in pyproject.toml).

Every subpackage, and the modules a user reaches for most (``derive.evaluate``,
``derive.pyprint``, ``derive.explain``, ``derive.kernels``), load on first use. See
the README for the tour; each module's docstring states its contract.
"""

from __future__ import annotations

import importlib

from derive.derivation import Derivation, derive, presets
from derive.errors import DeriveError, ExprError, SpecError
from derive.verifier.formula import check_function, verify
from derive.verifier.block import verify_block

__all__ = ["Derivation", "derive", "presets", "verify", "verify_block", "check_function", "DeriveError", "ExprError", "SpecError"]

# name -> module, loaded on first attribute access
_LAZY = {
    **{pkg: f"derive.{pkg}" for pkg in ("spec", "engine", "numeric", "codegen", "writeup", "verifier", "cli")},
    "evaluate": "derive.numeric.evaluate",
    "kernels": "derive.numeric.kernels",
    "pyprint": "derive.spec.pyprint",
    "explain": "derive.writeup.explain",
}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    raise AttributeError(f"module 'derive' has no attribute {name!r}")

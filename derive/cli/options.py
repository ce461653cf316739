"""The options several subcommands share, spelled once.

Contract. Every subcommand names its cell argument :data:`CELL` (a preset name
or a spec file) with :data:`CELL_HELP`, its own spec file ``--spec FILE`` with
:data:`SPEC_HELP`, and its output ``-o/--output`` (:func:`add_output`), which
also accepts the old spelling ``--out``, hidden from the help.
"""

from __future__ import annotations

import argparse

CELL = "CELL"
CELL_HELP = "preset name (see `lstm-derive presets`) or spec file (.toml)"
SPEC_HELP = "your own spec file (TOML) instead of a preset"


def add_output(p: argparse.ArgumentParser, metavar: str, help_text: str, default=None) -> None:
    """``-o/--output``, and the old spelling ``--out`` as a hidden alias."""
    p.add_argument("-o", "--output", dest="output", metavar=metavar, default=default, help=help_text)
    p.add_argument("--out", dest="output", metavar=metavar, default=argparse.SUPPRESS, help=argparse.SUPPRESS)



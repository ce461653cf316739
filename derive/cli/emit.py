"""The emitters' commands: ``lstm-derive numpy``, ``latex``, ``markdown`` and ``bench``.

Each writes one artefact of one cell to standard output or to ``-o FILE``; the
artefacts themselves are made by :mod:`derive.codegen` and :mod:`derive.writeup`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from derive.cli.options import CELL, CELL_HELP, add_output
from derive.codegen.plan import CodegenError
from derive.codegen.render import fused_module, numba_module
from derive.writeup.document import render_markdown, render_tex
from derive.writeup.pdf import LatexNotFound, compile_pdf


def register_cli(sub) -> None:
    register_codegen(sub)
    register_writeup(sub)


def register_codegen(subparsers) -> None:
    n = subparsers.add_parser("numpy", help="emit the NumPy module of one cell (fused when it fits the frame)")
    n.add_argument("cell", metavar=CELL, help=CELL_HELP)
    add_output(n, "FILE", "write it here (default: standard output)")
    n.add_argument("--backend", choices=["numpy", "numba"], default="numpy",
                   help="numba: the compiled twin (its time loops compiled; needs pip install 'derive[fast]' to run)")
    n.set_defaults(run=_cmd_numpy)

    b = subparsers.add_parser("bench", help="time a generated module against torch.nn.LSTM / GRU (needs torch)")
    from derive.cli.benchmark import add_arguments

    add_arguments(b)
    b.set_defaults(run=_cmd_bench)


def _cmd_numpy(args) -> int:
    import sys

    from derive.derivation import derive

    d = derive(args.cell)
    if args.backend == "numba":
        try:  # a cell outside the compiled frame: no module, one line, status 2
            text = numba_module(d, _regenerate_one(args))
        except CodegenError as exc:
            print(f"lstm-derive: {exc}", file=sys.stderr)
            return 2
    else:
        try:
            text = fused_module(d, _regenerate_one(args))
        except CodegenError as exc:
            from derive.codegen.unfused import unfused_module

            print(f"lstm-derive: {exc}; writing the unfused module", file=sys.stderr)
            text = unfused_module(d, str(exc), _regenerate_one(args))
    if args.output:
        _write_one(text, Path(args.output), "-o")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _regenerate_one(args) -> str | None:
    """The command a spec's module written by ``numpy -o FILE`` names in its header:
    the one that wrote it. None (the default, ``regenerate_command``) for a preset,
    whose module is generated/<preset>.py byte for byte, and for standard output."""
    from derive.derivation import command_path, is_preset, load_cell

    if not args.output or is_preset(load_cell(args.cell)):
        return None
    backend = " --backend numba" if getattr(args, "backend", "numpy") == "numba" else ""
    return f"lstm-derive numpy {command_path(args.cell)}{backend} -o {command_path(args.output)}"


def _write_one(text: str, out: Path, option: str) -> None:
    """``text`` into ``out`` whole or not at all (exit 2 when ``out`` is a folder or not writable)."""
    from derive.cli.files import OutputError, write_files

    if out.is_dir() or not out.name:
        raise OutputError(f"{option} {out}: is a folder, not a file")
    write_files({out.name: text}, out.parent if str(out.parent) else Path("."), option)


def _cmd_bench(args) -> int:
    from derive.cli.benchmark import run

    return run(args)


def register_writeup(sub) -> None:
    for name, help_text in (("latex", "write the LaTeX article of a derivation"),
                            ("markdown", "write the Markdown page of a derivation")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("cell", metavar=CELL, help=CELL_HELP)
        add_output(p, "FILE", "output file (default: standard output)")
        p.add_argument("--loss", choices=["upstream"], help="replace the loss head by a given gradient")
        if name == "latex":
            p.add_argument("--pdf", action="store_true", help="also run pdflatex and leave the PDF beside FILE")
        p.set_defaults(run=_cmd_write, format=name)


def _cmd_write(args) -> int:
    from derive.derivation import derive

    d = derive(args.cell, loss=args.loss)
    text = render_tex(d) if args.format == "latex" else render_markdown(d)
    if getattr(args, "pdf", False) and not args.output:
        print("lstm-derive: --pdf needs -o FILE (the PDF is written beside it)", file=sys.stderr)
        return 2
    if not args.output:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    _write_one(text, out, "-o")
    print(f"wrote {out}")
    if getattr(args, "pdf", False):
        try:
            pdf = compile_pdf(out)
        except LatexNotFound as exc:
            print(f"lstm-derive: cannot make the PDF: {exc}", file=sys.stderr)
            return 2
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"lstm-derive: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {pdf}")
    return 0

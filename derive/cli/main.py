"""The command line: ``lstm-derive`` (also ``python -m derive``).

Contract. Exit status 0 on success, 1 when a check finds a difference, 2 when
the input could not be read (a bad spec, an unknown preset, a bad formula);
errors go to stderr as one clear message, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from derive.cli.options import CELL, CELL_HELP, add_output
from derive.errors import DeriveError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("derive")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _progress(done: int, total: int, name: str) -> None:
    """One line on the terminal, rewritten as each cell is done (stderr, a terminal only)."""
    end = "\n" if done == total else ""
    print(f"\r\033[Kbuilt {done}/{total}: {name}", end=end, file=sys.stderr, flush=True)


def _cmd_build(args) -> int:
    from derive.cli import build as build_mod
    from derive.derivation import load_cell, presets

    from derive.cli.files import check_folder

    out = Path(args.output)
    if args.jobs is not None and args.jobs < 1:
        print(f"lstm-derive: --jobs must be 1 or more, not {args.jobs}", file=sys.stderr)
        return 2
    if args.check and not out.is_dir():
        where = "here" if args.output == build_mod.DEFAULT_OUT else f"at {args.output}"
        print(f"lstm-derive: no {out.as_posix()}/ {where}: `build --check` compares the generated files of a "
              "checkout; run it at the top of one, or give -o DIR", file=sys.stderr)
        return 2
    if not args.check:
        check_folder(out)  # a file or a read-only folder: exit 2 before any work
    if args.spec:  # only the user's cells: their four files each, not the presets' forty
        names = [load_cell(spec).name for spec in args.spec]  # a bad spec fails here, before any work
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            print(f"lstm-derive: two --spec files have the name `{twice[0]}`; their files would overwrite "
                  "each other", file=sys.stderr)
            return 2
    names = args.spec or presets()
    digest = None
    if not args.check:  # nothing changed since the last build here: say so without rendering
        from derive.cli import stamp

        digest = stamp.inputs_digest(names, args.output)
        count = stamp.fresh(out, digest)
        if count is not None:
            print(f"{out.as_posix()}/ is up to date ({count} files)")
            return 0
    progress = _progress if sys.stderr.isatty() else None
    jobs = args.jobs if args.jobs is not None else build_mod.default_jobs()
    files = build_mod.render_all(names, out=args.output, jobs=jobs, progress=progress)
    if args.check:
        diffs = build_mod.stale(files, out)
        if diffs:
            sys.stdout.write("".join(diffs))
            print(f"{len(diffs)} generated file(s) are stale: run `lstm-derive build` and commit.", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files are up to date in {out.as_posix()}/")
        return 0
    written = build_mod.write(files, out)
    stamp.save(out, digest, files)
    if not written:
        print(f"{out.as_posix()}/ is up to date ({len(files)} files)")
    else:
        print(f"wrote {len(written)} of {len(files)} files to {out.as_posix()}/ (the others were up to date)"
              if len(written) < len(files) else f"wrote {len(written)} files to {out.as_posix()}/")
    return 0


def _cmd_presets(args) -> int:
    from derive.derivation import presets

    for name in presets():
        print(name)
    return 0


def _cmd_show(args) -> int:
    from derive.derivation import derive
    from derive.spec.pyprint import equation_text, to_python

    d = derive(args.cell, loss=args.loss)
    if args.quantity:
        for q in args.quantity:
            eq = d.equation(q)
            print(equation_text(eq))
            if args.closed:
                print(f"  closed form: {to_python(d.closed_form(q))}")
        return 0
    from derive.writeup.listing import render_listing

    sys.stdout.write(render_listing(d, banner=False))
    return 0


# Feature modules that add subcommands, with the commands each adds: each has
# ``register_cli(subparsers)``, which adds its parsers with
# ``set_defaults(run=...)``. Only the module of the command asked for is
# imported, so that `lstm-derive verify` does not pay for the code generators.
PLUGINS = {
    "derive.cli.verify": ("verify", "check"),
    "derive.cli.emit": ("numpy", "bench", "latex", "markdown"),
}


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lstm-derive", description="Backpropagation through time for recurrent cells, derived symbolically.")
    p.add_argument("--version", action="version", version=f"lstm-derive {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    command = next((a for a in (argv or []) if not a.startswith("-")), None)
    for module, commands in PLUGINS.items():
        if command is None or command in commands:
            importlib.import_module(module).register_cli(sub)
    b = sub.add_parser(
        "build", help="(re)generate every file in generated/",
        description="Render the four files of every preset (or of each --spec file): the listing (.txt), the "
                    "NumPy module (.py), the LaTeX article (.tex) and the Markdown page (.md), and for a "
                    "fused cell its compiled twin (_numba.py), into generated/ or -o DIR. Only files whose text changed are written. With --check, write "
                    "nothing: exit 1 with a diff when a file on disk differs.")
    b.add_argument("--check", action="store_true", help="compare with the files on disk instead; exit 1 with a diff if stale")
    add_output(b, "DIR", "output folder (default: generated)", default="generated")
    b.add_argument("--spec", action="append", metavar="FILE",
                   help="build this spec file (TOML) instead of the presets (repeatable)")
    b.add_argument("-j", "--jobs", type=int, metavar="N",
                   help="worker processes (default: one per CPU); the files are the same for any N")
    b.set_defaults(run=_cmd_build)

    pr = sub.add_parser("presets", help="list the bundled cells",
                        description="Print the name of every bundled cell, one a line: the names every "
                                    "command takes as CELL.")
    pr.set_defaults(run=_cmd_presets)

    s = sub.add_parser("show", help="print a derivation, or chosen quantities of it")
    s.add_argument("cell", metavar=CELL, help=CELL_HELP)
    s.add_argument("quantity", nargs="*", help="backward quantities to print (default: the whole listing)")
    s.add_argument("--closed", action="store_true", help="also print each quantity's closed form")
    s.add_argument("--loss", choices=["upstream"], help="replace the loss head by a given gradient")
    s.set_defaults(run=_cmd_show)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser(argv).parse_args(argv)
    try:
        return args.run(args)
    except DeriveError as exc:
        print(f"lstm-derive: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"lstm-derive: {exc.args[0]}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `lstm-derive check ... | head`: the reader left; stop quietly, as other command-line tools do
        # (and point stdout at nothing, so that Python's flush at exit does not raise again)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe


if __name__ == "__main__":
    raise SystemExit(main())

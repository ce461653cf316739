"""``lstm-derive verify`` and ``lstm-derive check``: the verifier's commands.

Parsing arguments, reading a formula from a file or standard input, and turning a
verdict or an error into output and an exit status (0 right, 1 wrong, 2 the
input could not be read). The judging itself is :mod:`derive.verifier`.
"""

from __future__ import annotations

from derive.cli.options import CELL, CELL_HELP, SPEC_HELP
from derive.errors import DeriveError, ExprError
from derive.spec.expr import MAX_LENGTH
from derive.verifier.formula import verify


def register_cli(sub) -> None:
    import argparse

    v = sub.add_parser(
        "verify",
        help="is a hand-derived gradient formula right? which term is wrong?",
        description="Check a formula for one backward quantity against the derivation, numerically at random "
                    "consistent states and symbolically where it is elementwise. Exit status 0 right, 1 wrong, "
                    "2 the input could not be read. The formula is read by a whitelisted parser; it is never run.",
    )
    v.add_argument("preset", metavar=CELL, help=CELL_HELP + " (with --spec: the quantity)")
    # REMAINDER: a formula may start with `-` (`-y + yt_pred`), and the options
    # may come after the formula; _cmd_verify separates them.
    v.add_argument("args", nargs=argparse.REMAINDER, metavar="[QUANTITY] FORMULA",
                   help="the quantity and its formula, or one equation `name = formula`")
    v.add_argument("--spec", metavar="FILE", help=SPEC_HELP)
    v.add_argument("--latex", action="store_true", help="the formula is LaTeX (the notation's LaTeX names)")
    v.add_argument("--json", action="store_true", help="print the verdict as JSON")
    v.add_argument("--file", metavar="PATH", help="read the formula from a file (`-` for standard input)")
    v.add_argument("--loss", choices=["upstream"], help="replace the loss head by a given gradient")
    v.add_argument("--total", action="store_true",
                   help="the formula is a parameter gradient of the whole sequence (one step's term is then wrong)")
    v.set_defaults(run=_cmd_verify)

    c = sub.add_parser(
        "check",
        help="is my backward code right? check FILE.py/.ipynb ... (RUNS your functions, in a child process)",
        description="lstm-derive check FILE [FILE ...]: read your .py files or Jupyter notebook (only imports, "
                    "definitions and constants are run, in a child process with a time and a memory limit), find "
                    "every forward/backward pair of a known API (the Coursera notebook, CS231n, min-char-rnn, layer "
                    "classes), feed each backward the cache your own forward made, and compare every gradient with "
                    "central differences of your forward. Or, for one function against a preset or spec: "
                    "lstm-derive check CELL FILE.py:NAME (its parameters filled by the notation's names; only the file's "
                    "definitions run, in the child process too). Your code RUNS: check only code you trust. Exit status 0 all right, 1 something wrong or "
                    "incomplete, 2 nothing could be checked.",
    )
    c.add_argument("items", nargs="+", metavar="FILE | CELL FILE.py:NAME",
                   help="your files (.py, .ipynb), or CELL FILE.py:NAME, CELL being a " + CELL_HELP)
    c.add_argument("--spec", metavar="FILE", help=SPEC_HELP + " (with FILE.py:NAME)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--returns", metavar="NAMES", help="comma-separated names of what the function returns, in order")
    c.add_argument("--sequence", action="store_true",
                   help="the function runs backward through a whole sequence (inputs stacked over time)")
    c.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="time limit for your code (default 5 s)")
    c.add_argument("--sizes", metavar="NAME=N,...", help="sizes your code needs, e.g. n_a=5,n_x=3")
    c.add_argument("--forward", metavar="NAME",
                   help="with FILE.py:NAME and no preset: your forward function, whose cache NAME takes")
    c.add_argument("--allow-missing", action="store_true",
                   help="a backward that returns only some gradients may still be right")
    c.set_defaults(run=_cmd_check)


MAX_INPUT_BYTES = 1_000_000


def _read_formula_file(path: str) -> str:
    import sys

    if path == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
    else:
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise DeriveError(f"{path}: {exc.strerror}") from None
    if len(data) > MAX_LENGTH * 4:
        raise ExprError(f"formula too long: more than {MAX_LENGTH} characters")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExprError(f"the formula is not UTF-8 text (byte {exc.start})") from None


def _emit_error(args, exc: Exception) -> int:
    import json
    import sys

    message = exc.render() if isinstance(exc, ExprError) else str(exc)
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if getattr(args, "json", False):
        print(json.dumps({"ok": None, "error": message}))
    else:
        print(f"lstm-derive: {message}", file=sys.stderr)
    return 2


def _split_options(args) -> list[str]:
    """Options given after the preset come through REMAINDER: take them out."""
    parts, rest = list(args.args), []
    i = 0
    while i < len(parts):
        a = parts[i]
        if a == "--":
            rest += parts[i + 1:]
            break
        if a in ("--latex", "--json", "--total"):
            setattr(args, a[2:], True)
        elif a in ("--file", "--loss", "--spec"):
            if i + 1 >= len(parts):
                raise DeriveError(f"{a} needs a value")
            setattr(args, a[2:], parts[i + 1])
            i += 1
        elif a.startswith(("--file=", "--loss=", "--spec=")):
            key, _, value = a[2:].partition("=")
            setattr(args, key, value)
        else:
            rest.append(a)
        i += 1
    if args.loss not in (None, "upstream"):
        raise DeriveError(f"--loss {args.loss}: the only choice is `upstream`")
    return rest


def _cmd_verify(args) -> int:
    import json

    try:
        parts = _split_options(args)
        source = args.preset
        if args.spec is not None:
            # with --spec the first word is not a preset: it belongs to [QUANTITY] FORMULA
            source, parts = args.spec, [args.preset] + parts
        if args.file is not None:
            parts.append(_read_formula_file(args.file))
        if len(parts) == 1:
            quantity, formula = None, parts[0]
        elif len(parts) == 2:
            quantity, formula = parts
        else:
            raise DeriveError("give QUANTITY FORMULA, or one equation `name = formula`")
        syntax = "latex" if args.latex else "python"
        if _is_block(formula, syntax):
            if quantity is not None:
                raise DeriveError("a block of equations names each quantity on its left side: give no QUANTITY")
            return _cmd_verify_block(args, source, formula, syntax)
        verdict = verify(source, quantity, formula, "latex" if args.latex else "python", loss=args.loss,
                         total=args.total)
    except (DeriveError, RecursionError, MemoryError) as exc:
        if isinstance(exc, (RecursionError, MemoryError)):
            exc = ExprError("the formula is too deeply nested or too large")
        return _emit_error(args, exc)
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        print(verdict.message)
    return verdict.status


def _check_source(preset, spec) -> str:
    """The preset or spec file of `check PRESET FILE:NAME`: PRESET, or --spec FILE (not both)."""
    if spec is not None and preset is not None:
        raise DeriveError(f"give a preset or --spec FILE, not both (`{preset}` and --spec {spec})")
    source = spec if spec is not None else preset
    if source is None:
        raise DeriveError("say which cell: a preset name, or --spec FILE")
    return source


def _is_target(item: str) -> bool:
    """`file.py:NAME` (a function named in a file), as opposed to a file to scan."""
    path, sep, name = item.rpartition(":")
    return bool(sep and path and name and not name.startswith(("\\", "/")))


def _cmd_check(args) -> int:
    """`check FILE [FILE ...]` scans files; `check [PRESET] FILE.py:NAME` checks one function."""
    targets = [i for i in args.items if _is_target(i)]
    if targets and args.forward is not None and args.spec is None and len(targets) == len(args.items):
        return _cmd_check_files(args, targets)
    if targets:
        return _cmd_check_function(args, targets)
    return _cmd_check_files(args)


def _cmd_check_function(args, targets: list[str]) -> int:
    import json

    try:
        from derive.verifier.check_files import check_named_function

        rest = [i for i in args.items if not _is_target(i)]
        if len(targets) != 1 or len(rest) > 1:
            raise DeriveError("give PRESET FILE.py:NAME (one function), or only files to scan")
        source = _check_source(rest[0] if rest else None, args.spec)
        returns = [r.strip() for r in args.returns.split(",")] if args.returns else None
        status, report, message = check_named_function(source, targets[0], returns=returns,
                                                       sequence=True if args.sequence else None,
                                                       timeout=args.timeout)
    except DeriveError as exc:
        return _emit_error(args, exc)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(message)
    return status


def _cmd_check_files(args, targets: list[str] | None = None) -> int:
    import json

    try:
        from derive.verifier.check_files import check_files, parse_sizes

        pair = None
        files = list(args.items)
        if targets:  # FILE.py:BACKWARD [FILE ...] --forward FORWARD
            backward = {t.rpartition(":")[2] for t in targets}
            if len(backward) != 1:
                raise DeriveError("with --forward, name one backward function: FILE.py:NAME")
            files = [t.rpartition(":")[0] for t in targets]
            pair = (args.forward, backward.pop())
        elif args.forward is not None:
            raise DeriveError("--forward NAME goes with FILE.py:NAME, the backward that takes its cache")
        if args.spec is not None:
            raise DeriveError("--spec goes with FILE.py:NAME (one function); to scan files give only the files")
        if not (0 < args.timeout <= 3600):
            raise DeriveError("--timeout: give a number of seconds between 0 and 3600")
        report = check_files(list(dict.fromkeys(files)), sizes=parse_sizes(args.sizes), timeout=args.timeout,
                             allow_missing=args.allow_missing, pair=pair)
    except DeriveError as exc:
        return _emit_error(args, exc)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(report)
    return report.status


# ---------------------------------------------------------------------------
# a block of equations (an `align` block pasted from a page): one verdict each


def _is_block(formula: str, syntax: str) -> bool:
    from derive.verifier.block import is_block

    return is_block(formula, syntax)


def _cmd_verify_block(args, source: str, text: str, syntax: str) -> int:
    """One verdict per equation of the block, then the overall status: 0 when
    every equation is right, else the worst (1 wrong, 2 could not be read)."""
    import json

    from derive.verifier.block import block_status, verify_block

    results = verify_block(source, text, syntax, loss=args.loss, total=args.total)
    status = block_status(results)
    if args.json:
        print(json.dumps({"ok": status == 0, "status": status, "lines": [r.to_dict() for r in results]},
                         ensure_ascii=False))
        return status
    for r in results:
        print(f"equation {r.number}: {r.text}")
        print("    " + r.message.replace("\n", "\n    "))
    right = sum(r.status == 0 for r in results)
    print(f"{right} of {len(results)} equations right"
          + ("" if status == 0 else f"; {sum(r.status == 1 for r in results)} wrong, "
                                    f"{sum(r.status == 2 for r in results)} could not be read"))
    return status

"""Read a user's files for ``lstm-derive check FILE [FILE ...]`` without running them.

Contract. :func:`prepare` reads ``.py`` files and Jupyter ``.ipynb`` notebooks
(several files of one project together) and writes, into a fresh temporary
folder, one filtered copy per file under the file's own module name, so that the
files import each other (``from lstm_forward import *``) inside the child
process that runs them (:mod:`derive.verifier.sandbox`); an import that names a
sibling by a package path or relatively (``from course5.week_01.lstm_network
import *``) falls back to the sibling given. Nothing here runs the
user's code: it is parsed with :mod:`ast` only.

What a filtered copy keeps, in the file's order: imports, function and class
definitions, and assignments of constants (literals and arithmetic of names:
``x_dim = 2``, ``HV = H + V``, also with an annotation ``H: int = 128``) and of
type aliases (``IntList = list[int]``: names and subscripts, no call). Every kept statement that is not a definition is
wrapped so that its failure (a helper module that is not there, a name a skipped
statement would have set) is recorded instead of raised; the child reports a
failed import only when a name the checked code needs is then missing. Top-level
tests, prints, file reads and training loops are dropped. Other top-level
assignments to plain names (``Wxh = np.random.randn(hidden_size, vocab_size)``)
are kept aside, unrun, in ``__derive_deferred__`` (with the constants) (name -> source): the child may
run them with the sizes it chose when a checked function reads the name as a
global (min-char-rnn's weights).

A notebook is read cell by cell: a cell that does not parse (pasted outputs,
IPython magics) is skipped and said so. A ``.py`` file that does not parse as a
whole (a notebook export with pasted outputs) is read in top-level blocks
instead, each block starting at a line with no indentation.
"""

from __future__ import annotations

import ast
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from derive.errors import DeriveError

MAX_FILE_BYTES = 20_000_000  # notebooks carry their outputs (images): a few MB is usual


@dataclass
class Prepared:
    """The filtered copies, ready for the child process."""

    folder: Path  # holds one module per file; put it on sys.path
    modules: list[str]  # module names in the order the files were given
    sources: dict[str, str]  # module name -> the file it came from
    notes: list[str] = field(default_factory=list)  # what was skipped, said once


def module_name(path: Path) -> str:
    """The name a sibling file imports this one by (``lstm_forward.py`` -> ``lstm_forward``);
    a name that is not an identifier is made one."""
    stem = path.stem
    name = re.sub(r"\W", "_", stem)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


def read_source(path: Path) -> tuple[list[str], list[str]]:
    """(source blocks to parse, notes). A notebook gives its code cells; a
    ``.py`` file gives itself, or its top-level blocks when it does not parse."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DeriveError(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise DeriveError(f"{path}: larger than {MAX_FILE_BYTES // 1_000_000} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DeriveError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if path.suffix == ".ipynb":
        return _notebook_cells(path, text), []
    try:
        ast.parse(text)
        return [text], []
    except SyntaxError as exc:
        blocks = _top_level_blocks(text)
        return blocks, [f"{path.name} is not valid Python as a whole (line {exc.lineno}: {exc.msg}); "
                        "read block by block"]


def _notebook_cells(path: Path, text: str) -> list[str]:
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeriveError(f"{path}: not a Jupyter notebook (JSON error at line {exc.lineno})") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if cells is None and isinstance(nb, dict):  # nbformat 3
        cells = [c for ws in nb.get("worksheets", []) for c in ws.get("cells", [])]
    if not isinstance(cells, list):
        raise DeriveError(f"{path}: not a Jupyter notebook (no cells)")
    out = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        src = cell.get("source", cell.get("input", ""))
        out.append("".join(src) if isinstance(src, list) else str(src))
    return out


def _top_level_blocks(text: str) -> list[str]:
    """Split at lines that start a top-level statement (no indentation, not a
    continuation, not a comment), so that one bad line loses only its block.
    A block keeps its line numbers by padding with empty lines."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines)
              if line[:1].strip() and not line.startswith("#") and not line[:1] in ")]}"]
    starts = [0] + [s for s in starts if s]
    blocks = []
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        blocks.append("\n" * a + "".join(lines[a:b]))
    return _merge_decorated(blocks)


def _merge_decorated(blocks: list[str]) -> list[str]:
    """A block that is only a decorator (``@staticmethod``) or a lone ``else:``
    cannot stand alone: join it to the next (the joined text still parses, or
    is skipped as a whole)."""
    out: list[str] = []
    carry = ""
    for b in blocks:
        head = b.lstrip("\n")
        if head.startswith("@"):
            carry += head if carry else b
            continue
        if carry:
            b, carry = carry + head, ""
        if head.startswith(("else", "elif", "except", "finally")) and out:
            out[-1] = out[-1] + head
            continue
        out.append(b)
    if carry:
        out.append(carry)
    return out


# ---------------------------------------------------------------------------
# the filter


def _is_constant(node: ast.AST) -> bool:
    """Literals, names and arithmetic of them: no call, no attribute, no subscript."""
    allowed = (ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop,
               ast.Tuple, ast.List)
    return all(isinstance(n, allowed) for n in ast.walk(node))


def _is_type_alias(node: ast.AST) -> bool:
    """A type alias (``IntList = list[int]``, ``FloatArray = npt.NDArray[np.float64]``):
    names, attributes and subscripts of them, no call; annotations elsewhere in the
    file read it when the definitions run."""
    allowed = (ast.Name, ast.Load, ast.Attribute, ast.Subscript, ast.Tuple, ast.Constant, ast.BinOp, ast.BitOr)
    return isinstance(node, ast.Subscript) and all(isinstance(n, allowed) for n in ast.walk(node))


def _guarded(stmt: ast.stmt, what: str) -> ast.stmt:
    """``try: <stmt> except Exception as e: __derive_failed__.append((what, line, repr))``."""
    handler = ast.parse(
        "try:\n    pass\nexcept Exception as _derive_exc:\n"
        f"    __derive_failed__.append(({what!r}, {stmt.lineno}, type(_derive_exc).__name__ + ': ' + str(_derive_exc)))\n"
    ).body[0]
    handler.body = [stmt]
    return handler


def _sibling_import(stmt: ast.stmt, siblings: frozenset[str]) -> ast.stmt | None:
    """The same import from a file given beside this one, when the import names it
    by a package path or relatively (``from course5.week_01.lstm_network import *``,
    ``from .lstm_network import lstm_cell_forward``, ``import pkg.lstm_network as ln``):
    the filtered copies sit side by side in one folder, without the packages."""
    if isinstance(stmt, ast.ImportFrom) and stmt.module and (stmt.level or "." in stmt.module):
        last = stmt.module.rsplit(".", 1)[-1]
        if last in siblings:
            return ast.copy_location(ast.ImportFrom(module=last, names=stmt.names, level=0), stmt)
    if isinstance(stmt, ast.Import) and all(a.asname and "." in a.name for a in stmt.names):
        if all(a.name.rsplit(".", 1)[-1] in siblings for a in stmt.names):
            return ast.copy_location(ast.Import(names=[ast.alias(a.name.rsplit(".", 1)[-1], a.asname)
                                                       for a in stmt.names]), stmt)
    return None


def _import(stmt: ast.stmt, siblings: frozenset[str]) -> ast.stmt:
    """The import, guarded; when it names a sibling file by a path the folder does
    not have, that file is imported instead (and only that failure is recorded)."""
    fallback = _sibling_import(stmt, siblings)
    if fallback is None:
        return _guarded(stmt, "import")
    outer = ast.parse("try:\n    pass\nexcept ImportError:\n    pass\n").body[0]
    outer.body = [stmt]
    outer.handlers[0].body = [_guarded(fallback, "import")]
    return outer


def filter_module(blocks: list[str], filename: str,
                  siblings: frozenset[str] = frozenset()) -> tuple[str, dict[str, str], list[str]]:
    """(the filtered module's source, deferred assignments name -> source, notes);
    ``siblings``: the module names of the other files given with this one."""
    kept: list[ast.stmt] = []
    deferred: dict[str, str] = {}
    skipped_blocks = 0
    for text in blocks:
        try:
            tree = ast.parse(text, filename)
        except (SyntaxError, ValueError):
            if text.strip():
                skipped_blocks += 1
            continue
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kept.append(_guarded(stmt, "definition") if stmt.decorator_list else stmt)
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
                    continue  # must be first in a file; Python 3 needs none of them
                kept.append(_import(stmt, siblings))
            elif isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
                if _is_constant(stmt.value) or _is_type_alias(stmt.value):
                    kept.append(_guarded(stmt, "assignment"))
                for t in stmt.targets:  # constants too: the child may run them again at its own sizes
                    deferred[t.id] = ast.get_source_segment(text, stmt) or ast.unparse(stmt)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                # ``HIDDEN_SIZE: int = 128``: an assignment with a type annotation, read the same way
                plain = ast.copy_location(ast.Assign(targets=[stmt.target], value=stmt.value), stmt)
                if _is_constant(stmt.value) or _is_type_alias(stmt.value):
                    kept.append(_guarded(plain, "assignment"))
                deferred[stmt.target.id] = ast.unparse(plain)
    notes = []
    if skipped_blocks:
        notes.append(f"{filename}: {skipped_blocks} cell(s) or block(s) that are not valid Python were skipped")
    body = ast.parse("__derive_failed__ = []").body + kept
    module = ast.Module(body=body, type_ignores=[])
    ast.fix_missing_locations(module)
    return ast.unparse(module) + "\n", deferred, notes


def prepare(paths: list[str]) -> Prepared:
    """Filtered copies of ``paths`` in a new temporary folder (the caller removes it)."""
    if not paths:
        raise DeriveError("give one or more .py or .ipynb files")
    files = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise DeriveError(f"{p}: no such file")
        if path.suffix not in (".py", ".ipynb"):
            raise DeriveError(f"{p}: give a .py file or a Jupyter .ipynb notebook")
        files.append(path)
    folder = Path(tempfile.mkdtemp(prefix="lstm-derive-check-"))
    prepared = Prepared(folder, [], {})
    siblings = frozenset(module_name(path) for path in files)
    try:
        for path in files:
            name = module_name(path)
            if name in prepared.sources:
                raise DeriveError(f"{path} and {prepared.sources[name]} have the same module name `{name}`")
            blocks, notes = read_source(path)
            source, deferred, more = filter_module(blocks, path.name, siblings - {name})
            source += f"__derive_deferred__ = {deferred!r}\n"
            (folder / f"{name}.py").write_text(source, encoding="utf-8")
            prepared.modules.append(name)
            prepared.sources[name] = str(path)
            prepared.notes += notes + more
    except BaseException:
        cleanup(prepared)
        raise
    return prepared


def cleanup(prepared: Prepared) -> None:
    import shutil

    shutil.rmtree(prepared.folder, ignore_errors=True)

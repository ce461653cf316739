"""A cell spec, read and checked: symbols, shapes, equations, links, loss head.

Contract. :func:`load` reads a TOML spec (the format is documented in
the project README, section "Write your own cell") and returns a frozen
:class:`Cell`, or raises :class:`~derive.errors.SpecError` naming the file,
the equation and the symbol. A cell is never half-loaded: every check runs
before the object is built.

The checks: every key is known; every name on a right side is declared or
defined by an equation (with a did-you-mean); no name is defined twice or
declared and defined; the equations have no cycle; every shape agrees
(broadcasting, matrix products, concatenation), and a declared shape of a
defined value matches the inferred one; every parameter is used; the
recurrent links join a defined value to a declared state of the same shape;
the loss head names things that exist.

Hostile input. A spec is data from anywhere, so: every value has the type the
format says (text, a list of names, a table), every table's keys are known;
every name that becomes code (``name``, symbols, dimensions, gradient names) is
an ASCII identifier that is no Python keyword; a LaTeX field uses only the math
commands of :mod:`derive.spec.texsafe`; shape entries are positive integers up
to ``MAX_DIM`` or sums and products of dimensions; and the spec's size is
bounded (``MAX_BYTES``, ``MAX_EQUATIONS``, ``MAX_SYMBOLS``), each refusal
naming its limit.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import sympy as sp

from derive.spec import functions, ops
from derive.errors import ExprError, SpecError
from derive.spec.expr import Scope, default_functions, parse_equation, suggest
from derive.spec.shapes import Shape, ShapeError, fmt_shape, infer_shape, same_shape
from derive.spec.checks import (MAX_BYTES, MAX_DIM, MAX_EQUATIONS, MAX_NESTED_CALLS, MAX_SYMBOLS, RESERVED,
                                 ValueChecks, type_name, shown)

ROLES = ("input", "state", "param", "target", "value")
LAYOUTS = {"columns": 0, "rows": 1, "none": 0}
LOSS_KINDS = ("upstream", "cross_entropy", "squared_error")



@dataclass(frozen=True)
class SymbolInfo:
    """One named array of the notation."""

    name: str
    role: str  # input | state | param | target | value | grad
    shape: Shape
    latex: str
    meaning: str
    concept: str = ""  # the same quantity across notations: "forget_gate", "cell_state", …


@dataclass(frozen=True)
class Equation:
    """``target = rhs``, as the spec wrote it (``text``) and parsed."""

    target: str
    rhs: sp.Expr
    text: str
    tag: str


@dataclass(frozen=True)
class Link:
    """``out`` at step t becomes ``prev`` at step t+1.

    ``grad`` names dL/d(out) as it reaches the cell from outside: the loss head's
    contribution at t plus the adjoint of ``prev`` carried back from t+1.
    """

    out: str
    prev: str
    grad: str


@dataclass(frozen=True)
class Loss:
    """The loss head. ``external`` names dl(t)/d(on), the head's gradient on the
    cell output ``on``; for ``upstream`` it is given, otherwise derived."""

    kind: str
    on: str
    external: str
    prediction: str | None = None
    target: str | None = None
    unit: int | None = None


@dataclass(frozen=True)
class Cell:
    """A parsed, checked cell. Symbols are SymPy symbols named as the notation
    names them; ``shapes`` holds the (inferred) shape of every symbol."""

    name: str
    title: str
    source: str
    path: str
    layout: str
    dims: Mapping[str, str]
    batch_dim: str | None
    symbols: Mapping[str, SymbolInfo]
    equations: tuple[Equation, ...]
    links: tuple[Link, ...]
    loss: Loss
    adjoint_names: Mapping[str, str]
    preact_names: Mapping[str, str]
    adjoint_latex: Mapping[str, str]
    book_names: Mapping[str, str]
    stacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Other spellings of the notation's names, for reading formulas people paste:
    # ``aliases`` for Python text (``self.state.o`` -> ``o``, ``Gamma_u`` -> ``it``),
    # ``latex_aliases`` for LaTeX (``\Gamma_u^{\langle t \rangle}`` -> ``it``).
    # Targets may be symbols or backward quantities; the verifier checks them.
    aliases: Mapping[str, str] = field(default_factory=dict)
    latex_aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def feature_axis(self) -> int:
        return LAYOUTS[self.layout]

    def sym(self, name: str) -> sp.Symbol:
        return sp.Symbol(name)

    def shape(self, name: str) -> Shape:
        return self.symbols[name].shape

    def role(self, name: str) -> str:
        return self.symbols[name].role

    def names(self, role: str) -> list[str]:
        return [n for n, s in self.symbols.items() if s.role == role]

    def dim_symbols(self) -> dict[str, sp.Symbol]:
        return {d: sp.Symbol(d, positive=True, integer=True) for d in self.dims}

    def head_equations(self) -> tuple[Equation, ...]:
        """Equations of the loss head: those no recurrent output depends on."""
        needed = _ancestors(self.equations, {link.out for link in self.links})
        return tuple(e for e in self.equations if e.target not in needed)

    def cell_equations(self) -> tuple[Equation, ...]:
        head = {e.target for e in self.head_equations()}
        return tuple(e for e in self.equations if e.target not in head)

    def with_upstream_loss(self) -> "Cell":
        """The same cell with the head replaced by a given gradient on ``loss.on``."""
        if self.loss.kind == "upstream":
            return self
        head = {e.target for e in self.head_equations()}
        symbols = {n: s for n, s in self.symbols.items() if n not in head and s.role != "target"}
        used = _free_names(self.cell_equations())
        symbols = {n: s for n, s in symbols.items() if s.role != "param" or n in used}
        return replace(
            self,
            symbols=symbols,
            equations=self.cell_equations(),
            loss=Loss("upstream", self.loss.on, self.loss.external),
        )


# ---------------------------------------------------------------------------
# loading


def load(path: str | Path, text: str | None = None) -> Cell:
    """Read and check a spec file (or ``text`` given for it)."""
    label = str(path)
    try:
        if text is None:
            text = Path(path).read_text(encoding="utf-8")
        if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
            raise SpecError(label, f"the spec is {len(text.encode('utf-8', 'surrogatepass'))} bytes "
                                   f"(the limit is MAX_BYTES = {MAX_BYTES})")
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise SpecError(label, "no such file") from None
    except (IsADirectoryError, PermissionError, OSError) as exc:
        raise SpecError(label, f"cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise SpecError(label, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(label, f"not valid TOML: {exc}") from None
    return _Loader(label, data).build()


_TOP_KEYS = {
    "name", "title", "source", "layout", "dims", "batch", "symbols", "forward",
    "recurrent", "loss", "adjoints", "preact", "adjoint_latex", "book_names", "stacks",
    "aliases", "latex_aliases",
}
_SYMBOL_KEYS = {"role", "shape", "latex", "meaning", "concept"}


class _Loader(ValueChecks):
    def __init__(self, path: str, data: dict[str, Any]):
        self.path = path
        self.data = data

    def fail(self, message: str, equation: str | None = None) -> SpecError:
        return SpecError(self.path, message, equation)

    def table(self, key: str, default: Any = None, kind: type = dict) -> Any:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(f"missing `{key}`")
        if not isinstance(value, kind):
            raise self.fail(f"`{key}` must be a {kind.__name__}")
        return value

    def build(self) -> Cell:
        unknown = set(self.data) - _TOP_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise self.fail(f"unknown key `{shown(key)}`{suggest(key, _TOP_KEYS)}")
        name = self.name("`name`", self.data.get("name"))
        if name in RESERVED:
            raise self.fail(f"`name = {name}` is reserved; choose another")
        for key in ("title", "source"):
            self.text(f"`{key}`", self.data.get(key))
        for d, meaning in (self.data.get("dims") or {}).items() if isinstance(self.data.get("dims"), dict) else ():
            self.text(f"dimension `{shown(d)}`", meaning)
        layout = self.table("layout", kind=str)
        if layout not in LAYOUTS:
            raise self.fail(f"layout `{layout}` is not one of {', '.join(LAYOUTS)}")
        feature_axis = LAYOUTS[layout]
        dims: dict[str, str] = self.table("dims")
        for d, meaning in dims.items():
            self.name("dimension", d)
            if d in RESERVED:
                raise self.fail(f"dimension `{d}` has a reserved name; choose another")
            if not isinstance(meaning, str):
                raise self.fail(f"dimension `{d}` must be a name with a text meaning")
        batch = self.data.get("batch")
        if batch is not None and not isinstance(batch, str):
            raise self.fail(f"`batch` must be the name of a dimension (text), not {type_name(batch)}")
        if layout == "none":
            if batch is not None:
                raise self.fail("layout `none` has no batch dimension; drop `batch`")
        elif batch not in dims:
            raise self.fail(f"layout `{layout}` needs `batch`, the name of a dimension in [dims]")
        dim_syms = {d: sp.Symbol(d, positive=True, integer=True) for d in dims}

        declared = self.read_symbols(dim_syms, layout, batch)
        equations = self.equations = self.read_equations(declared, feature_axis, dim_syms)
        defined = {e.target for e in equations}
        order = self.sort(equations, declared)

        shapes = {n: s.shape for n, s in declared.items() if s.role != "value"}
        for eq in order:
            try:
                shapes[eq.target] = infer_shape(eq.rhs, shapes)
            except ShapeError as exc:
                raise self.fail(str(exc), eq.text) from None
            want = declared.get(eq.target)
            if want is not None and want.shape and not same_shape(want.shape, shapes[eq.target]):
                raise self.fail(
                    f"`{eq.target}` is declared with shape {fmt_shape(want.shape)} but the "
                    f"equation gives {fmt_shape(shapes[eq.target])}",
                    eq.text,
                )
        symbols: dict[str, SymbolInfo] = {}
        for n, info in declared.items():
            symbols[n] = replace(info, shape=shapes[n]) if n in defined else info
        for eq in order:
            if eq.target not in symbols:
                symbols[eq.target] = SymbolInfo(eq.target, "value", shapes[eq.target], _tex_name(eq.target), "")

        used = _free_names(order)
        for n, info in symbols.items():
            if info.role in ("param", "input", "state") and n not in used:
                raise self.fail(f"{info.role} `{n}` is declared but no equation uses it")

        links = self.read_links(symbols)
        loss = self.read_loss(symbols, links, dim_syms, layout, batch)
        symbols[loss.external] = SymbolInfo(
            loss.external, "grad", symbols[loss.on].shape,
            str(self.data.get("adjoint_latex", {}).get(loss.external, _tex_name(loss.external))),
            f"gradient of the step's loss with respect to {loss.on}",
        )
        for link in links:
            symbols[link.grad] = SymbolInfo(
                link.grad, "grad", symbols[link.out].shape,
                str(self.data.get("adjoint_latex", {}).get(link.grad, _tex_name(link.grad))),
                f"gradient with respect to {link.out} arriving from outside the cell",
            )

        names = self.read_names(symbols)
        stacks = self.read_stacks(symbols)
        aliases = {key: self.read_alias_table(key) for key in ("aliases", "latex_aliases")}
        return Cell(
            name=name,
            title=str(self.data.get("title", name)),
            source=str(self.data.get("source", "")),
            path=self.path,
            layout=layout,
            dims=dict(dims),
            batch_dim=batch,
            symbols=symbols,
            equations=tuple(order),
            links=tuple(links),
            loss=loss,
            adjoint_names=names["adjoints"],
            preact_names=names["preact"],
            adjoint_latex=names["adjoint_latex"],
            book_names=names["book_names"],
            stacks=stacks,
            aliases=aliases["aliases"],
            latex_aliases=aliases["latex_aliases"],
        )

    # -- pieces ---------------------------------------------------------------
    def read_symbols(self, dim_syms, layout, batch) -> dict[str, SymbolInfo]:
        out: dict[str, SymbolInfo] = {}
        dim_scope = Scope(symbols={}, dims=dim_syms)
        table = self.table("symbols")
        if len(table) > MAX_SYMBOLS:
            raise self.fail(f"{len(table)} symbols (the limit is MAX_SYMBOLS = {MAX_SYMBOLS})")
        for name, entry in table.items():
            self.name("symbol", name)
            if name.startswith("_"):
                raise self.fail(f"symbol `{name}` must be a name not starting with `_`")
            if name in RESERVED:
                raise self.fail(f"symbol `{name}` has a name the generated code uses itself; choose another")
            if name in dim_syms:
                raise self.fail(f"symbol `{name}` has the name of a dimension")
            if not isinstance(entry, dict):
                raise self.fail(f"symbol `{name}` must be a table")
            bad = set(entry) - _SYMBOL_KEYS
            if bad:
                key = sorted(bad)[0]
                raise self.fail(f"symbol `{name}`: unknown key `{key}`{suggest(key, _SYMBOL_KEYS)}")
            role = entry.get("role", "value")
            if not isinstance(role, str) or role not in ROLES:
                raise self.fail(f"symbol `{name}`: role `{role}` is not one of {', '.join(ROLES)}")
            raw_shape = entry.get("shape")
            if raw_shape is None and role != "value":
                raise self.fail(f"{role} `{name}` needs a shape")
            shape: Shape = ()
            if raw_shape is not None:
                if not isinstance(raw_shape, list):
                    raise self.fail(f"symbol `{name}`: shape must be a list of dimensions")
                shape = tuple(self.shape_entry(name, d, dim_scope) for d in raw_shape)
            latex = entry.get("latex")
            latex = _tex_name(name) if latex is None else self.latex(f"symbol `{name}`: latex",
                                                                     self.text(f"symbol `{name}`: latex", latex))
            out[name] = SymbolInfo(
                name, role, shape, latex, self.text(f"symbol `{name}`: meaning", entry.get("meaning")),
                self.text(f"symbol `{name}`: concept", entry.get("concept")),
            )
        return out

    def read_equations(self, declared, feature_axis, dim_syms) -> list[Equation]:
        raw = self.table("forward", kind=list)
        if len(raw) > MAX_EQUATIONS:
            raise self.fail(f"{len(raw)} forward equations (the limit is MAX_EQUATIONS = {MAX_EQUATIONS})")
        texts: list[tuple[str, str]] = []
        for i, item in enumerate(raw):
            if isinstance(item, str):
                texts.append((item, ""))
            elif isinstance(item, dict) and isinstance(item.get("eq"), str):
                bad = set(item) - {"eq", "tag"}
                if bad:
                    raise self.fail(f"forward equation {i + 1}: unknown key `{shown(sorted(bad)[0])}`")
                tag = self.text(f"forward equation {i + 1}: tag", item.get("tag"))
                if len(tag) > 32 or any(ch in tag for ch in "\\\"'`$%#{}"):
                    raise self.fail(f"forward equation {i + 1}: a tag is a short label like `8a` "
                                    "(at most 32 characters, no quotes, backslashes or TeX specials)")
                texts.append((item["eq"], tag))
            else:
                raise self.fail(f"forward equation {i + 1} must be a string or a table with `eq`")
        for i, (text, tag) in enumerate(texts):
            if "#" in text:
                raise self.fail("an equation has no comments (`#`)", shown(text))
            # one line: the text is quoted in generated comments and docstrings
            texts[i] = (" ".join(text.split()), tag)
        targets: dict[str, str] = {}
        for text, _ in texts:
            lhs = text.split("=")[0].strip()
            if lhs.isidentifier():
                self.name("the left side of an equation", lhs)
                if lhs in RESERVED or lhs.startswith("_"):
                    raise self.fail(f"`{lhs}` is a name the generated code uses itself; choose another", text)
            if lhs in targets:
                raise self.fail(f"`{lhs}` is defined twice (also by `{targets[lhs]}`)", text)
            if lhs in declared and declared[lhs].role != "value":
                raise self.fail(f"`{lhs}` is declared as {declared[lhs].role}; an equation cannot define it", text)
            targets[lhs] = text
        symbols = {n: sp.Symbol(n) for n in list(declared) + list(targets)}
        scope = Scope(symbols=symbols, dims=dim_syms, functions=default_functions(feature_axis),
                      feature_axis=feature_axis)
        equations = []
        for text, tag in texts:
            try:
                name, rhs = parse_equation(text, scope)
            except ExprError as exc:
                raise self.fail(exc.render(), text) from None
            if rhs.has(ops.take):
                # the engine has no rule for a slice's adjoint (a scatter into zeros): refuse it
                # here rather than print an unevaluated Derivative(take(...)) as a gradient
                raise self.fail("a slice `x[a:b]` is read in formulas to check, not in a cell's equations: "
                                "declare the parts as symbols of their own (e.g. W_x and W_h instead of "
                                "W[:, :n] and W[:, n:]), or join arrays with concat(...)", text)
            depth = _call_depth(rhs)
            if depth > MAX_NESTED_CALLS:
                raise self.fail(f"the equation nests functions {depth} deep (the limit is MAX_NESTED_CALLS = "
                                f"{MAX_NESTED_CALLS}); write the inner part as an equation of its own", text)
            equations.append(Equation(name, rhs, text.strip(), tag))
        return equations

    def sort(self, equations: list[Equation], declared) -> list[Equation]:
        """Topological order, stable with respect to the spec's order."""
        by_target = {e.target: e for e in equations}
        done: list[Equation] = []
        state: dict[str, int] = {}

        def visit(eq: Equation, trail: list[str]) -> None:
            mark = state.get(eq.target)
            if mark == 2:
                return
            if mark == 1:
                cycle = trail[trail.index(eq.target):] + [eq.target]
                raise self.fail(f"cyclic definition: {' -> '.join(cycle)}", eq.text)
            state[eq.target] = 1
            for s in sorted(eq.rhs.free_symbols, key=str):
                name = str(s)
                if name in by_target:
                    visit(by_target[name], trail + [eq.target])
            state[eq.target] = 2
            done.append(eq)

        for eq in equations:
            visit(eq, [])
        return done

    def read_links(self, symbols) -> list[Link]:
        links = []
        for i, entry in enumerate(self.table("recurrent", kind=list)):
            if not isinstance(entry, dict) or not {"out", "prev", "grad"} <= set(entry):
                raise self.fail(f"recurrent link {i + 1} needs `out`, `prev` and `grad`")
            bad = set(entry) - {"out", "prev", "grad"}
            if bad:
                key = sorted(bad)[0]
                raise self.fail(f"recurrent link {i + 1}: unknown key `{shown(key)}`"
                                f"{suggest(key, ('out', 'prev', 'grad'))}")
            out, prev, grad = (self.name(f"recurrent link {i + 1}: `{k}`", entry[k]) for k in ("out", "prev", "grad"))
            if out not in symbols or symbols[out].role != "value":
                raise self.fail(f"recurrent link: `out = {out}` is not defined by an equation")
            if prev not in symbols or symbols[prev].role != "state":
                raise self.fail(f"recurrent link: `prev = {prev}` is not a declared state")
            if not same_shape(symbols[out].shape, symbols[prev].shape):
                raise self.fail(
                    f"recurrent link {out} -> {prev}: shapes {fmt_shape(symbols[out].shape)} and "
                    f"{fmt_shape(symbols[prev].shape)} differ"
                )
            if not str(grad).isidentifier() or grad in symbols:
                raise self.fail(f"recurrent link: `grad = {grad}` must be a new name")
            links.append(Link(out, prev, grad))
        states = {l.prev for l in links}
        for n, s in symbols.items():
            if s.role == "state" and n not in states:
                raise self.fail(f"state `{n}` is not the `prev` of any [[recurrent]] link")
        if not links:
            raise self.fail("a recurrent cell needs at least one [[recurrent]] link")
        return links

    def read_loss(self, symbols, links, dim_syms, layout, batch) -> Loss:
        spec = self.table("loss")
        bad = set(spec) - _LOSS_KEYS
        if bad:
            key = sorted(bad)[0]
            raise self.fail(f"[loss]: unknown key `{shown(key)}`{suggest(key, _LOSS_KEYS)}")
        for key in ("on", "external", "prediction", "target"):
            if spec.get(key) is not None:
                self.name(f"[loss] `{key}`", spec[key])
        kind = spec.get("kind")
        if not isinstance(kind, str) or kind not in LOSS_KINDS:
            raise self.fail(f"loss kind `{kind}` is not one of {', '.join(LOSS_KINDS)}")
        on, external = spec.get("on"), spec.get("external")
        if on not in {l.out for l in links}:
            raise self.fail(f"loss: `on = {on}` must be the `out` of a recurrent link")
        if not isinstance(external, str) or not external.isidentifier() or external in symbols:
            raise self.fail(f"loss: `external = {external}` must be a new name")
        prediction, target, unit = spec.get("prediction"), spec.get("target"), spec.get("unit")
        if unit is not None and kind != "squared_error":
            raise self.fail("loss: `unit` applies to `squared_error` only")
        if kind == "upstream":
            return Loss(kind, on, external)
        if prediction not in symbols or symbols[prediction].role != "value":
            raise self.fail(f"loss: `prediction = {prediction}` is not defined by an equation")
        if target not in symbols or symbols[target].role != "target":
            raise self.fail(f"loss: `target = {target}` is not a declared symbol with role `target`")
        if kind == "cross_entropy":
            eq = next(e for e in self.equations if e.target == prediction)
            if not isinstance(eq.rhs, ops.softmax):
                raise self.fail("cross_entropy needs the prediction to be `softmax(...)`", eq.text)
            if not same_shape(symbols[target].shape, symbols[prediction].shape):
                raise self.fail(f"loss: target `{target}` and prediction `{prediction}` differ in shape")
        if kind == "squared_error" and unit is not None:
            if not isinstance(unit, int) or isinstance(unit, bool) or unit < 0 or unit >= MAX_DIM:
                raise self.fail("loss: `unit` must be a unit index (0, 1, ...)")
        return Loss(kind, on, external, prediction, target, unit)

    def read_names(self, symbols) -> dict[str, dict[str, str]]:
        out = {}
        for key in ("adjoints", "preact", "adjoint_latex", "book_names"):
            table = self.data.get(key, {})
            if not isinstance(table, dict):
                raise self.fail(f"`{key}` must be a table")
            for k, v in table.items():
                if not isinstance(v, str):
                    raise self.fail(f"[{key}] `{k}` must map to text")
                if key in ("adjoints", "preact") and k not in symbols:
                    raise self.fail(f"[{key}] names an unknown symbol `{k}`{suggest(k, symbols)}")
                if key in ("adjoints", "preact", "book_names"):
                    self.name(f"[{key}] `{shown(k)}`", v)
                    if v in RESERVED or v.startswith("_"):
                        raise self.fail(f"[{key}] `{k} = {v}`: `{v}` is a name the generated code uses itself")
                if key == "adjoint_latex":
                    self.latex(f"[{key}] `{shown(k)}`", v)
            out[key] = dict(table)
        return out

    def read_alias_table(self, key: str) -> dict[str, str]:
        table = self.data.get(key, {})
        if not isinstance(table, dict) or not all(isinstance(v, str) and v.isascii() and v.isidentifier()
                                                  for v in table.values()):
            raise self.fail(f"[{key}] must map spellings to names")
        return dict(table)

    def read_stacks(self, symbols) -> dict[str, tuple[str, ...]]:
        table = self.data.get("stacks", {})
        if not isinstance(table, dict):
            raise self.fail(f"[stacks] must be a table of lists of symbols, not {type_name(table)}")
        out = {}
        for k, parts in table.items():
            self.name("[stacks] name", k)
            if not isinstance(parts, list) or not all(isinstance(p, str) and p in symbols for p in parts):
                raise self.fail(f"[stacks] `{k}` must list declared symbols")
            out[k] = tuple(parts)
        return out


_LOSS_KEYS = {"kind", "on", "external", "prediction", "target", "unit"}


def _tex_name(name: str) -> str:
    """A plain name as LaTeX: ``c_prev`` -> ``c_{prev}``, specials escaped."""
    head, _, tail = name.partition("_")
    head = escape_tex(head)
    if tail:
        return head + r"_{\mathrm{" + escape_tex(tail) + "}}"
    return head


def escape_tex(text: str) -> str:
    table = {"\\": r"\backslash{}", "_": r"\_", "#": r"\#", "%": r"\%", "&": r"\&",
             "$": r"\$", "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}"}
    return "".join(table.get(ch, ch) for ch in text)


def _free_names(equations) -> set[str]:
    return {str(s) for e in equations for s in e.rhs.free_symbols}


def _ancestors(equations, roots: set[str]) -> set[str]:
    by_target = {e.target: e for e in equations}
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in by_target:
            stack.extend(str(s) for s in by_target[n].rhs.free_symbols)
    return seen


# ---------------------------------------------------------------------------
# nesting


def _call_depth(expr: sp.Expr) -> int:
    """How deep the activation functions of the table nest in ``expr`` (iterative:
    the expression is whatever a spec wrote)."""
    deepest, stack = 0, [(expr, 0)]
    while stack:
        e, d = stack.pop()
        if e.func in functions.BY_CLASS:
            d += 1
            deepest = max(deepest, d)
        stack.extend((a, d) for a in e.args)
    return deepest

"""The plain-text listing of a derivation (generated/<preset>.txt).

Contract. ``render_listing(derivation)`` returns the listing: symbols with
role, shape and meaning; the forward equations; the backward equations grouped
by what they compute; the closed form of every gate and state gradient. It is
deterministic: no dates, no versions.
"""

from __future__ import annotations

from derive.spec.shapes import fmt_shape
from derive.derivation import regenerate_command
from derive.spec.pyprint import equation_text, to_python
from derive.templating import render

_GROUPS = [
    ("head", "loss head: its parameters and dl(t)/d(output)"),
    ("glue", "backpropagation through time: what reaches the cell from outside"),
    ("cell", "the cell's adjoints"),
    ("param", "parameter gradients, summed over time"),
    ("state", "gradients carried to step t-1"),
    ("input", "gradients of the step's inputs"),
    ("book", "the source's own names for the same quantities"),
]


def render_listing(derivation, regenerate: str | None = None, banner: bool = True) -> str:
    """The plain-text listing of a derivation (generated/<name>.txt). ``banner``:
    the generated file's first lines (DO NOT EDIT, the command that regenerates it);
    ``lstm-derive show`` prints it without them. ``regenerate``: that command
    (default: ``regenerate_command``)."""
    cell = derivation.cell
    symbols = [
        {"name": s.name, "role": s.role, "shape": fmt_shape(s.shape), "meaning": s.meaning}
        for s in cell.symbols.values()
    ]
    groups = []
    for kind, title in _GROUPS:
        lines = [equation_text(eq) for eq in derivation.backward if derivation.kind(str(eq.lhs)) == kind]
        if lines:
            groups.append({"title": title, "lines": lines})
    closed = []
    for eq in derivation.backward:
        name = str(eq.lhs)
        if derivation.kind(name) in ("cell", "state") or name in cell.preact_names.values():
            closed.append(f"{name} = {to_python(derivation.closed_form(name))}")
    return render(
        "listing.txt.j2",
        regenerate=regenerate or regenerate_command(cell),
        banner=banner,
        title=cell.title,
        source=cell.source or "user spec",
        layout=cell.layout,
        symbols=symbols,
        width=max(len(s["name"]) for s in symbols),
        shape_width=max(len(s["shape"]) for s in symbols),
        forward=[{"tag": f"({e.tag})" if e.tag else "", "text": e.text} for e in cell.equations],
        backward=groups,
        closed=closed,
    )

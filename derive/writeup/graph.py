r"""The cell's computation graph unrolled over t-1, t, t+1: TikZ and mermaid.

Contract. ``unrolled(derivation)`` reads the engine's lowered graph
(``derivation.nodes`` and ``head_nodes``) and returns an :class:`Unrolled`:
three copies of the cell side by side, one per step, each laid out by depth
(inputs left, outputs right, the gates of one depth in one column). The
recurrent links join the output of one step to the consumers of the previous
state in the next along a lane above the cell (the cell state) or below it
(the state the loss reads), and each carried link has an adjoint edge running
back beside it, labelled with the gradient it carries (the later step's
d(prev)). A loss vertex per step reads the cell's output (or the head's
prediction) and sends its gradient back. Weights and biases are left out;
hidden temporaries (a matrix product inside a pre-activation) and
pre-activations are folded into the vertex they feed.

``tikz(u)`` prints a ``tikzpicture`` (library ``arrows.meta``) and
``mermaid(u)`` a mermaid flowchart. Both are deterministic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from derive.writeup.explain import width
from derive.spec.latex import Notation, shift_time

STEPS = (-1, 0, 1)
_COLORS = ["blue!70!black", "red!70!black", "green!45!black", "orange!85!black"]
_MERMAID_COLORS = ["#1f4fb4", "#b22222", "#2e7d32", "#c77700"]
_LABEL = {-1: "t-1", 0: "t", 1: "t+1"}
PER_ROW = 3  # mermaid: vertices of one depth side by side, at most

CM_PER_CHAR = 0.2  # body-font math, roughly
GAP = 0.45  # cm between two columns' boxes
DY = 0.95  # cm between rows
LANE = 0.85  # cm from the outermost row to a lane
BLOCK_GAP = 0.7  # cm between two steps
# The PDF's figure is a landscape page (A4, 2 cm margins): 25.7 cm of line. A
# wider picture is first squeezed along x (the gaps between the boxes shrink,
# the labels keep their size), by at most SQUEEZE, and only then scaled down
# as a whole by the template; labels stay near body size.
LINE_CM = 25.2
SQUEEZE = 0.8


@dataclass
class Vertex:
    id: str
    name: str  # the cell's name of the value (or "loss", or a state for a stub)
    step: int  # -1, 0, 1 (t-1, t, t+1); stubs at -2 / 2
    col: int
    row: float
    kind: str  # input | value | gate | loss | stub
    tex: str  # LaTeX label (math)
    text: str  # plain label
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0  # estimated box width, cm


@dataclass
class Edge:
    src: str
    dst: str
    kind: str  # forward | carried | adjoint | loss
    tex: str = ""
    text: str = ""
    link: int = -1


@dataclass
class Unrolled:
    vertices: list[Vertex] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    lanes: dict[int, float] = field(default_factory=dict)  # link index -> y of its lane
    sides: dict[int, int] = field(default_factory=dict)  # link index -> +1 (above) / -1 (below)
    blocks: list[tuple[int, float, float]] = field(default_factory=list)  # (step, x0, x1)
    top: float = 0.0
    bottom: float = 0.0

    def vertex(self, vid: str) -> Vertex:
        return next(v for v in self.vertices if v.id == vid)


def _visible(derivation):
    """The equation-level graph: value -> its visible parents (values, inputs,
    states), walking through hidden products and pre-activation nodes."""
    cell = derivation.cell
    nodes = list(derivation.head_nodes) + list(derivation.nodes)
    by_name = {n.name: n for n in nodes}
    targets = [e.target for e in cell.equations]

    def leaves(name, own):
        n = by_name.get(name)
        if n is None:
            role = cell.symbols[name].role if name in cell.symbols else ""
            return [name] if role in ("input", "state") else []
        if name in targets and name != own:
            return [name]
        out = []
        for a in n.args:
            for x in leaves(a, own):
                if x not in out:
                    out.append(x)
        return out

    return targets, {v: [p for p in leaves(v, v) if p != v] for v in targets}


@functools.lru_cache(maxsize=16)
def unrolled(derivation) -> Unrolled:
    cell = derivation.cell
    nt = Notation(cell)
    targets, parents = _visible(derivation)
    prev_to_out = {link.prev: link.out for link in cell.links}
    link_index = {link.prev: i for i, link in enumerate(cell.links)}
    inputs = [n for n in cell.names("input") if any(n in ps for ps in parents.values())]
    gates = {n.preact_of for n in list(derivation.nodes) + list(derivation.head_nodes) if n.preact_of}

    depth: dict[str, int] = {n: 0 for n in inputs}
    for v in targets:
        depth[v] = 1 + max((depth.get(p, 0) for p in parents[v] if p not in prev_to_out), default=0)
    loss_reads = cell.loss.prediction if cell.loss.kind == "cross_entropy" else cell.loss.on
    loss_col = depth[loss_reads] + 1

    # rows: by column, ordered by the mean row of the parents, then spec order
    columns: dict[int, list[str]] = {}
    for n in inputs + targets:
        columns.setdefault(depth[n], []).append(n)
    order = {n: i for i, n in enumerate(inputs + targets)}
    rows: dict[str, float] = {}
    for c in sorted(columns):
        members = columns[c]
        if c > 0:
            members.sort(key=lambda n: (sum(rows.get(p, 0.0) for p in parents[n] if p in rows)
                                        / max(1, sum(1 for p in parents[n] if p in rows)), order[n]))
        for i, n in enumerate(members):
            rows[n] = (len(members) - 1) / 2 - i
    top = max(rows.values()) * DY
    bottom = min(rows.values()) * DY

    u = Unrolled(top=top + LANE + 0.6, bottom=bottom - LANE - 0.6)
    # lanes: the state the loss reads runs below the cell, the others above
    above = below = 0
    for i, link in enumerate(cell.links):
        if link.out == cell.loss.on:
            u.sides[i], u.lanes[i] = -1, bottom - LANE - 0.45 * below
            below += 1
        else:
            u.sides[i], u.lanes[i] = 1, top + LANE + 0.45 * above
            above += 1
    u.top = max([top] + list(u.lanes.values())) + 0.65
    u.bottom = min([bottom] + list(u.lanes.values())) - 0.65

    def vid(name, k):
        return "s" + str(k + 2) + "".join(ch if ch.isalnum() else "x" for ch in name)

    def tex(name, k):
        return shift_time(nt.tex(name), k)

    # column widths from the labels
    ncols = loss_col + 1
    col_w = [0.0] * ncols
    for n in inputs + targets:
        col_w[depth[n]] = max(col_w[depth[n]], width(nt.tex(n)) * CM_PER_CHAR + 0.35)
    col_w[loss_col] = max(col_w[loss_col], width(nt.step_loss) * CM_PER_CHAR + 0.35)
    col_x, x = [], 0.0
    for w in col_w:
        col_x.append(x + w / 2)
        x += w + GAP
    block_w = x - GAP + BLOCK_GAP
    x0 = 1.4  # room for the incoming states
    for k in STEPS:
        off = x0 + (k + 1) * block_w
        u.blocks.append((k, off - BLOCK_GAP / 2, off + block_w - BLOCK_GAP / 2))
        for n in inputs + targets:
            kind = "input" if n in inputs else ("gate" if n in gates else "value")
            c = depth[n]
            u.vertices.append(Vertex(vid(n, k), n, k, c, rows[n], kind, tex(n, k), n,
                                     off + col_x[c], rows[n] * DY, col_w[c]))
        u.vertices.append(Vertex(vid("loss", k), "loss", k, loss_col, rows[loss_reads], "loss",
                                 shift_time(nt.step_loss, k), "loss", off + col_x[loss_col],
                                 rows[loss_reads] * DY, col_w[loss_col]))
    end = x0 + 3 * block_w
    for i, link in enumerate(cell.links):
        u.vertices.append(Vertex(vid(link.prev, -2), link.prev, -2, -1, 0, "stub", tex(link.prev, -1), link.prev,
                                 0.55, u.lanes[i], 1.0))
        u.vertices.append(Vertex(vid(link.out, 2), link.out, 2, ncols, 0, "stub", r"t+2",
                                 f"{link.out} to step t+2", end - BLOCK_GAP / 2 + 0.55, u.lanes[i], 0.8))

    def first_consumer(prev, k):
        cs = [t for t in targets if prev in parents[t]]
        return vid(min(cs, key=lambda t: (depth[t], -rows[t])), k)

    for k in STEPS:
        for v in targets:
            for p in parents[v]:
                if p in prev_to_out:
                    src = vid(p, -2) if k == STEPS[0] else vid(prev_to_out[p], k - 1)
                    u.edges.append(Edge(src, vid(v, k), "carried", tex(p, k), p, link_index[p]))
                else:
                    u.edges.append(Edge(vid(p, k), vid(v, k), "forward"))
        u.edges.append(Edge(vid(loss_reads, k), vid("loss", k), "loss"))
    for i, link in enumerate(cell.links):
        u.edges.append(Edge(vid(link.out, STEPS[-1]), vid(link.out, 2), "carried", tex(link.prev, 2), link.prev, i))
    # adjoints: what each later step sends back along a carried link (its
    # d(prev), computed there), and what each step's loss sends to the cell
    for i, link in enumerate(cell.links):
        dprev = derivation.gradient_name(link.prev)
        for k in STEPS[1:]:
            u.edges.append(Edge(first_consumer(link.prev, k), vid(link.out, k - 1), "adjoint",
                                tex(dprev, k), dprev, i))
    head = next((s.name for s in derivation.steps if derivation.kind(s.name) == "head"), cell.loss.external)
    for k in STEPS:
        u.edges.append(Edge(vid("loss", k), vid(loss_reads, k), "adjoint", tex(head, k), head))
    return u


# ---------------------------------------------------------------------------
# TikZ


def _f(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if abs(x) >= 0.005 else "0"


def tikz(u: Unrolled) -> str:
    """A ``tikzpicture`` of the unrolled graph."""
    vs = {v.id: v for v in u.vertices}
    natural = max(v.x + v.w / 2 for v in u.vertices) - min(v.x - v.w / 2 for v in u.vertices)
    squeeze = max(SQUEEZE, min(1.0, LINE_CM / natural))
    out = [rf"\begin{{tikzpicture}}[x={_f(squeeze)}cm, >={{Stealth[length=1.8mm]}}, font=\small,",
           r"  v/.style={draw, rounded corners=2pt, inner sep=2pt, minimum height=5.5mm, fill=white},",
           r"  gate/.style={v, fill=yellow!25}, input/.style={v, fill=green!12},",
           r"  loss/.style={v, fill=red!10}, stub/.style={font=\footnotesize, text=gray},",
           r"  adj/.style={->, densely dashed, semithick}, lab/.style={font=\scriptsize, inner sep=1pt}]"]
    for k, x0, x1 in u.blocks:
        out.append(rf"\fill[gray!7, rounded corners=4pt] ({_f(x0 + 0.05)},{_f(u.bottom)}) rectangle "
                   rf"({_f(x1 - 0.05)},{_f(u.top)});")
        out.append(rf"\node[anchor=south, font=\footnotesize\bfseries, text=gray] at ({_f((x0 + x1) / 2)},"
                   rf"{_f(u.top)}) {{step ${_LABEL[k]}$}};")
    for v in u.vertices:
        style = {"input": "input", "gate": "gate", "value": "v", "loss": "loss", "stub": "stub"}[v.kind]
        out.append(rf"\node[{style}] ({v.id}) at ({_f(v.x)},{_f(v.y)}) {{${v.tex}$}};")
    # consumers of each carried edge, to draw a bus when there are several
    fan: dict[tuple[str, int], list[str]] = {}
    for e in u.edges:
        if e.kind == "carried":
            fan.setdefault((e.src, e.link), []).append(e.dst)
    for e in u.edges:
        a, b = vs[e.src], vs[e.dst]
        if e.kind == "forward" and b.col - a.col > 1:  # around the columns it skips
            bend = "left" if b.y >= a.y else "right"
            out.append(rf"\draw[->] ({e.src}) to[bend {bend}=22] ({e.dst});")
        elif e.kind == "forward":
            out.append(rf"\draw[->] ({e.src}) -- ({e.dst});")
        elif e.kind == "loss":
            out.append(rf"\draw[->, red!60!black] ({e.src}) -- ({e.dst});")
        elif e.kind == "carried":
            out.append(_carried(u, a, b, e, len(fan[(e.src, e.link)])))
        elif e.link >= 0:
            out.append(_adjoint(u, a, b, e))
        else:
            out.append(rf"\draw[adj, red!60!black] ({e.src}.south) to[out=-100, in=-80] node[lab, below] "
                       rf"{{${e.tex}$}} ({e.dst}.south);")
    out.append(r"\end{tikzpicture}")
    return "\n".join(out)


def _carried(u: Unrolled, a: Vertex, b: Vertex, e: Edge, fan: int) -> str:
    """Up (or down) to the link's lane, along it, and into the consumer: from
    above or below when it is the only one, else along a bus on its left."""
    color = _COLORS[e.link % len(_COLORS)]
    lane = u.lanes[e.link]
    anchor = "north" if u.sides[e.link] > 0 else "south"
    if a.kind == "stub":  # the stub sits on the lane
        path = f"({a.id}.east) -- "
    else:
        path = f"({a.id}.{anchor}) -- ({_f(a.x)},{_f(lane)}) -- "
    if b.kind == "stub":
        path += f"({b.id}.west)"
    elif fan > 1:
        bus = b.x - b.w / 2 - 0.16 - 0.13 * e.link
        path += f"({_f(bus)},{_f(lane)}) -- ({_f(bus)},{_f(b.y)}) -- ({b.id}.west)"
    else:
        path += f"({_f(b.x)},{_f(lane)}) -- ({b.id}.{anchor})"
    return rf"\draw[->, very thick, {color}, rounded corners=3pt] {path};"


def _adjoint(u: Unrolled, a: Vertex, b: Vertex, e: Edge) -> str:
    """From a consumer at the later step back to the carried output."""
    color = _COLORS[e.link % len(_COLORS)]
    side = u.sides[e.link]
    lane = u.lanes[e.link] + side * 0.3
    x_from = a.x - a.w / 2 - 0.22
    pos = "above" if side > 0 else "below"
    return (rf"\draw[adj, {color}, rounded corners=3pt] ({_f(x_from)},{_f(lane)}) -- "
            rf"node[lab, {pos}, pos=0.5] {{${e.tex}$}} ({_f(b.x + 0.12)},{_f(lane)}) -- ({_f(b.x + 0.12)},"
            rf"{_f(b.y + side * 0.28)});")


# ---------------------------------------------------------------------------
# mermaid


def mermaid(u: Unrolled) -> str:
    """A mermaid ``flowchart`` (GitHub renders it), top to bottom, one subgraph
    per step: three steps side by side would be scaled down to the page's width
    until no label can be read; stacked, they keep their size. A state carried
    into a step enters it once, as a vertex of its own (``h_prev (t)``) that
    feeds the step's consumers and sends the step's d(prev) back: one thick edge
    and one dashed edge between two steps per carried state, not one per
    consumer, so the steps stack straight instead of drifting right (the
    projection LSTM's graph was drawn at 0.49 of its size)."""
    step_of = {v.id: v.step for v in u.vertices}
    suffix = {-1: " (t-1)", 0: " (t)", 1: " (t+1)"}
    # (step, link) -> the vertex a carried state enters that step by: the stub
    # before the first step, a vertex of its own in the later ones
    entry: dict[tuple[int, int], str] = {}
    entry_text: dict[tuple[int, int], str] = {}
    for e in u.edges:
        if e.kind == "carried" and step_of[e.dst] in STEPS:
            key = (step_of[e.dst], e.link)
            if key not in entry:
                entry[key] = e.src if step_of[e.src] == -2 else f"s{key[0] + 2}in{e.link}"
                entry_text[key] = e.text
    links: list[tuple[str, tuple[str, bool] | None]] = []  # (line, (color, dashed) or None)
    for key, vid in entry.items():
        if key[0] != STEPS[0]:
            src = next(e.src for e in u.edges if e.kind == "carried" and e.link == key[1]
                       and step_of[e.dst] == key[0])
            links.append((f"  {src} ==> {vid}", (_MERMAID_COLORS[key[1] % len(_MERMAID_COLORS)], False)))
    for e in u.edges:
        color = _MERMAID_COLORS[e.link % len(_MERMAID_COLORS)] if e.link >= 0 else "#b22222"
        if e.kind in ("forward", "loss"):
            links.append((f"  {e.src} --> {e.dst}", None))
        elif e.kind == "carried" and step_of[e.dst] in STEPS:
            links.append((f"  {entry[(step_of[e.dst], e.link)]} --> {e.dst}", (color, False)))
        elif e.kind == "carried":  # out of the last step, to the stub of step t+2
            links.append((f"  {e.src} ==> {e.dst}", (color, False)))
        elif e.link >= 0:  # a later step's d(prev), sent back from where the state entered it
            links.append((f'  {entry[(step_of[e.src], e.link)]} -.->|"{e.text}"| {e.dst}', (color, True)))
        else:
            links.append((f'  {e.src} -.->|"{e.text}"| {e.dst}', (color, True)))
    # an invisible edge from each entry vertex to a first consumer of the step's
    # inputs puts it in the step's top row, beside the inputs, not in a column
    # of its own beside the gates (last: linkStyle counts invisible edges too)
    drawn = {(line.split()[0], line.split()[-1]) for line, _ in links}
    inputs = {v.id for v in u.vertices if v.kind == "input"}
    for (step, _), vid in entry.items():
        if step == STEPS[0]:
            continue
        first = next((e.dst for e in u.edges if e.kind == "forward" and e.src in inputs and step_of[e.src] == step
                      and (vid, e.dst) not in drawn), None)
        if first is not None:
            links.append((f"  {vid} ~~~ {first}", None))
    # at most PER_ROW vertices of one depth side by side: each further one is
    # held a row lower by an invisible edge (an LSTM's four gates: o beside c)
    for k in STEPS:
        columns: dict[int, list[str]] = {}
        for v in u.vertices:
            if v.step == k and v.kind in ("gate", "value"):
                columns.setdefault(v.col, []).append(v.id)
        for ids in columns.values():
            for i in range(PER_ROW, len(ids)):
                links.append((f"  {ids[i - PER_ROW]} ~~~ {ids[i]}", None))
    lines = ["flowchart TB"]
    for v in u.vertices:
        if v.kind == "stub" and v.step == -2:
            lines.append(f'  {v.id}(["{v.text} (t-1)"])')
    for k in STEPS:
        lines.append(f'  subgraph band{k + 2}["step {_LABEL[k]}"]')
        for (step, _), vid in entry.items():
            if step == k and step != STEPS[0]:
                lines.append(f'    {vid}(["{entry_text[(step, _)]}{suffix[k]}"])')
        for v in u.vertices:
            if v.step == k and v.kind != "stub":
                shape = ('(["', '"])') if v.kind == "input" else (('[/"', '"/]') if v.kind == "loss" else ('["', '"]'))
                lines.append(f"    {v.id}{shape[0]}{v.text}{suffix[k]}{shape[1]}")
        lines.append("  end")
    for v in u.vertices:
        if v.kind == "stub" and v.step == 2:
            lines.append(f'  {v.id}(["{v.text}"])')
    lines += [line for line, _ in links]
    for i, (_, style) in enumerate(links):
        if style:
            color, dashed = style
            lines.append(f"  linkStyle {i} stroke:{color},stroke-width:{'1.5' if dashed else '2.5'}px"
                         + (",stroke-dasharray:4 3" if dashed else ""))
    lines.append("  classDef gate fill:#fff7cc,stroke:#8a6d00")
    lines.append("  classDef input fill:#e8f5e9,stroke:#2e7d32")
    lines.append("  classDef loss fill:#fdecea,stroke:#b22222")
    lines.append("  classDef state fill:#eef3fc,stroke:#1f4fb4")
    lines.append("  classDef stub fill:#ffffff,stroke:#999999,stroke-dasharray:3 3,color:#777777")
    for kind in ("gate", "input", "loss", "stub"):
        ids = [v.id for v in u.vertices if v.kind == kind]
        if ids:
            lines.append(f"  class {','.join(ids)} {kind}")
    inner = [vid for (step, _), vid in entry.items() if step != STEPS[0]]
    if inner:
        lines.append(f"  class {','.join(inner)} state")
    return "\n".join(lines)

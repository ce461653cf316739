"""The unfused module: every spec the engine derives gets a NumPy module.

Contract. :func:`unfused_module` renders, for a cell outside the fused frame
of :mod:`derive.codegen.plan` (the reason is passed in and printed in the
module's docstring), a pure-NumPy module with the generic API
(``rnn_forward``/``rnn_backward``, or ``lstm_*`` for a cell with two states)
that runs the derivation as it stands: per step the forward equations as the
spec writes them, and per step backwards every derived equation in order,
the parameter gradients accumulated inside the loop. It is slower than a
fused module (a product per weight and step) and exactly as correct; like
the fused modules it keeps the dtype, checks shapes, and takes
``truncate=k`` (BPTT(k), on stacks of adjoints by age: derive.codegen.render).
"""

from __future__ import annotations

import re

import sympy as sp

from derive.spec import functions, ops
from derive.codegen.api import Checks, _param_source, _wrap, api_prefix, common_context
from derive.codegen.plan import CodegenError, Names, RESERVED, upstream
from derive.derivation import Derivation
from derive.codegen.numpy_printer import Lines, numpy_text, shape_text
from derive.spec.pyprint import equation_text
from derive.templating import render


def unfused_module(derivation: Derivation, reason: str, regenerate: str | None = None) -> str:
    """The unfused module of ``derivation``; ``reason`` says why it is not fused;
    ``regenerate``: the command its header names (default: ``regenerate_command``)."""
    context = unfused_context(derivation, reason)
    if regenerate is not None:
        context["regenerate"] = regenerate
    return render("numpy_unfused.py.j2", **context)


def unfused_context(full: Derivation, reason: str) -> dict:
    """The template's context: the derivation as it stands, with the loss taken from upstream."""
    d = upstream(full)
    cell = d.cell
    layout = cell.layout
    fresh = Names(set(cell.symbols) | set(cell.dims) | set(d.names()) | set(full.names()) | RESERVED)
    inputs = cell.names("input")
    params = cell.names("param")
    links = cell.links
    T = sp.Symbol(fresh("T"))
    ext = cell.loss.external
    kind = {str(eq.lhs): d.kind(str(eq.lhs)) for eq in d.backward}
    backward = [eq for eq in d.backward if kind[str(eq.lhs)] != "book"]
    adjoints = {str(eq.lhs) for eq in backward} | {ext}

    # the forward values the backward pass reads
    forward_names = [e.target for e in cell.equations]
    read = set()
    for eq in backward:
        read |= {s.name for s in eq.rhs.free_symbols}
    kept = [n for n in forward_names if n in read or n in {l.out for l in links}]
    kept_prev = [l.prev for l in links if l.prev in read]
    seqs = {n: fresh(n + "_seq") for n in kept + kept_prev + inputs}

    fwd = Lines()
    for x in inputs:
        fwd.add(f"{x} = {seqs[x]}[t]")
    for e in cell.equations:
        fwd.add(f"{e.target} = {numpy_text(e.rhs)}", (f"({e.tag}) " if e.tag else "") + e.text)
    for n in kept_prev:
        fwd.add(f"{seqs[n]}[t] = {n}")
    for n in kept:
        fwd.add(f"{seqs[n]}[t] = {n}")
    for l in links:
        fwd.add(f"{l.prev} = {l.out}")
    dims_fwd = [f"{seqs[n]} = np.empty(({T},) + {shape_text(full.shapes[n])}, dtype)" for n in kept + kept_prev]

    initial = {l.prev: fresh(l.out + "0") for l in links}
    out_T = {l.prev: fresh(l.out + "_T") for l in links}
    finals = ["d" + out_T[l.prev] for l in links]  # in the truncated loop the final gradients join step T-1's loss
    grads = {p: d.gradient_name(p) for p in params if _has(d, p)}
    state_grads = [d.gradient_name(l.prev) for l in links]
    input_grads = {x: d.gradient_name(x) for x in inputs if _has(d, x)}

    def body(stacked: bool) -> Lines:
        opts = {"feature_from_end": 1 if layout == "columns" else 0} if stacked else {}
        if stacked and layout == "none":
            opts["vector_right"] = adjoints
        summed = {a: f"{a}.sum(axis=0)" for a in adjoints - {ext}} if stacked else {}
        lines = Lines()
        names = sorted({s.name for eq in backward for s in eq.rhs.free_symbols} & set(seqs), key=list(seqs).index)
        for n in names:
            lines.add(f"{n} = {seqs[n]}[t]")
        if any(sp.Symbol(ext) in eq.rhs.free_symbols for eq in backward):
            lines.add(f"{ext} = {ext}_seq[t]")
        finals_of = dict(zip(state_grads, finals))
        glued: set[str] = set()
        for eq in backward:
            name, k = str(eq.lhs), kind[str(eq.lhs)]
            if name in d.cell_inputs and name not in glued:  # its gluing equation (dc = later(dc_prev)),
                glued.add(name)                                # though the cell adds to dc later (dc = dc + …)
                k = "glue"
            text = equation_text(eq)
            if k == "param":
                contribution = eq.rhs.function if isinstance(eq.rhs, sp.Sum) else eq.rhs
                lines.add(f"{name} += {numpy_text(contribution, summed)}", text)
            elif k == "input":
                value = numpy_text(eq.rhs, **opts)
                lines.add(f"{name}[t] = " + (f"({value}).sum(axis=0)" if stacked else value), text)
            elif k == "glue" and stacked:
                carried = [a.args[0].name for a in sp.Add.make_args(eq.rhs) if isinstance(a, ops.later)]
                rest = sp.Add(*[a for a in sp.Add.make_args(eq.rhs) if not isinstance(a, ops.later)])
                args = carried + ([numpy_text(rest)] if rest != 0 else []) + [finals_of[carried[0]]]
                lines.add(f"{name} = _aged({', '.join(args)})", text)
            else:
                lines.add(f"{name} = {numpy_text(eq.rhs, **opts)}", text)
        if stacked:
            lines.add(" = ".join(finals) + " = None", "the final states' gradients joined the last step's loss")
        return lines

    full_body, stacked_body = body(False), body(True)

    # the public API: the generic one
    checks = Checks()
    for x in inputs:
        checks.arg(x, x, (T,) + tuple(d.shapes[x]))
    for name in params:
        checks.arg(name, f'params["{name}"]', d.shapes[name], _param_source("params", name))
    for l in links:
        checks.arg(initial[l.prev], initial[l.prev], d.shapes[l.prev], optional=True)
    last = [f"{seqs[l.out]}[-1].copy()" for l in links]
    prefix = api_prefix(cell)
    lines_all = "\n".join(full_body + stacked_body + fwd)
    # the dimensions the backward statements name, read off the cached arrays
    holders = [(f'cache["params"]["{q}"]', d.shapes[q]) for q in params]
    holders += [(f'cache["{seqs[x]}"]', (T,) + tuple(d.shapes[x])) for x in inputs]
    holders += [(f'cache["initial"][{k}]', d.shapes[l.prev]) for k, l in enumerate(links)]
    code = "\n".join(line.split("  # ")[0] for line in full_body + stacked_body)
    back_dims = []
    for dim in cell.dims:
        if re.search(rf"\b{re.escape(dim)}\b", code):
            where = next(((h, k) for h, shape in holders for k, s in enumerate(shape) if str(s) == dim), None)
            if where is None:
                raise CodegenError(f"{cell.path}: cannot read `{dim}` off the cached arrays")
            back_dims.append(f"{dim} = {where[0]}.shape[{where[1]}]")
    context = common_context(full, d)
    context.update({
        "reason": _wrap("Why it is not fused: " + reason.split(": no fused NumPy module: ")[-1] + ".", 78),
        "structure": _wrap(
            "How it runs. Per step, the forward equations as the spec writes them; backwards, per step, every "
            "derived equation in order, each parameter gradient accumulated inside the loop (a product per "
            "weight and step: slower than a fused module, as exact).", 78),
        "api_names": [f"{prefix}_forward", f"{prefix}_backward"],
        "prefix": prefix, "inputs": inputs, "params": params, "T": str(T), "ext": ext, "out": cell.loss.on,
        "checks": list(checks.lines),
        "arrays": [a for a in checks.arrays if a not in initial.values()],
        "zeros": [(initial[l.prev], shape_text(d.shapes[l.prev])) for l in links],
        "initial": [initial[l.prev] for l in links],
        "link_info": [{"prev": l.prev, "initial": initial[l.prev], "out_T": out_T[l.prev], "grad": g, "final": f}
                      for l, g, f in zip(links, state_grads, finals)],
        "out_T": [out_T[l.prev] for l in links],
        "finals_text": out_T[links[0].prev] if len(links) == 1 else "(" + ", ".join(out_T[l.prev] for l in links) + ")",
        "finals_value": last[0] if len(last) == 1 else "(" + ", ".join(last) + ")",
        "seqs": seqs, "kept": kept + kept_prev, "dims_fwd": dims_fwd, "fwd": list(fwd),
        "output": seqs[cell.loss.on],
        "grads": grads, "state_grads": state_grads, "input_grads": input_grads, "finals": finals,
        "body": list(full_body), "back_dims": back_dims, "stacked": list(stacked_body),
        "ext_shape": shape_text((T,) + tuple(d.shapes[cell.loss.on])),
        "input_shapes": [(x, shape_text((T,) + tuple(d.shapes[x]))) for x in inputs],
        "state_shapes": [(initial[l.prev], out_T[l.prev], l.out, l.prev, shape_text(d.shapes[l.prev])) for l in links],
        "needs_softmax": "softmax(" in lines_all,
        "needs_basis": "_basis(" in lines_all,
        "helpers": functions.helpers_for(lines_all),
        "grad_names": [(v, k) for k, v in grads.items()] + [(v, k) for k, v in input_grads.items()]
        + [(g, initial[l.prev]) for g, l in zip(state_grads, links)],
    })
    context["grad_width"] = max(len(n) for n, _ in context["grad_names"])
    return context


def _has(d: Derivation, name: str) -> bool:
    """Whether the derivation has a gradient for ``name``."""
    try:
        return d.gradient_name(name) in d.names()
    except KeyError:
        return False

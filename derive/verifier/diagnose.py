"""Which term of a wrong formula is wrong: the verifier's diagnosis.

Contract. :func:`analyse` compares a formula ``F`` for a backward quantity with
the engine's right side ``R`` of the same quantity and returns
:class:`Finding` objects, in the notation's names, that say which term is
missing, extra, or has a different factor. It is only called once the numbers
have shown that ``F`` is wrong (see :mod:`derive.verifier.formula`).

The method rests on one fact: a gradient is linear in the gradients that reach
it (``da_next``, ``dc_next``, …, or whatever intermediate adjoints the formula
itself uses, such as ``dft``).

1. The *keep set* G: the gradients that reach the quantity from outside the cell
   (for the cell's own quantities) plus every backward quantity the formula
   uses that lies on the engine's path to the quantity. Both ``F`` and ``R`` are
   expanded, by the engine's own equations, until only forward values and G
   remain, and each member of G (and each ``later(x)``) becomes an independent
   placeholder.
2. Both sides are split into terms ``L(core)``: ``L`` a linear array map made of
   forward values (``Wf[:, 0:n_a].T @ □``, ``□ @ concat.T``,
   ``np.sum(□, axis=1, keepdims=True)``, or the identity) and ``core`` an
   elementwise expression linear in the placeholders. Terms whose maps agree
   numerically on a random argument are grouped; a map found on one side only
   is a missing or extra term, or, when its core equals the core of an unpaired
   map of the other side, the same term with the wrong map (a slice by rows
   instead of columns, ``a_prev`` where ``concat`` belongs).
3. Inside a group the cores are split by placeholder, ``∂core/∂u`` being the
   coefficient of u, and the coefficients compared as multisets of factors:
   "the dc_next term lacks the factor ft*(1 - ft)", "has c_next where c_prev
   belongs", "the dc_next term is missing"; when the coefficient is a sum that
   differs in one part, that part ("in the dh term, the part `W_co*dh*tanh(c)`
   lacks the factor o*(1 - o)"). The same difference in several terms is one
   finding ("every term has ...").
4. Each finding is labelled with the mistake it most likely is: the carried
   cell-state term left out, an activation derivative on only one of the summed
   terms (a missing parenthesis), a derivative applied to an already activated
   value, a derivative written wrong (``1 - h`` for tanh's ``1 - h**2``), a
   wrong time index, a weight sliced by rows instead of columns or used
   untransposed, a missing activation derivative, a factor with the wrong
   sign or a summand left out (GRU's ``b_hn`` in the reset product), a
   state's direct elementwise path left out (GRU's ``dh*z``), a use of the
   value in the forward pass whose gradient is not added (CIFG's ``-delta_i``
   through ``i = 1 - f``), a backward pass that does not carry the gradient
   back from step t+1. Nothing here knows the cell: the names come from the
   derivation.

:func:`repairs` proposes edits that make a formula of the wrong *shape* right
(weights without their block of columns, a slice along the wrong axis, a
transposed result); :func:`mutations` lists the engine's formula with each
classic mistake made, which :mod:`derive.verifier.function` matches against a wrong
output of a user's function.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy as sp

from derive.spec import ops
from derive.spec.shapes import ShapeError, same_shape
from derive.numeric.judge import concrete
from derive.spec.shapes import shape_of
from derive.verifier.terms import Finding, NotLinear, Probe, Unsupported, _ACTS, _py, close, derivative_of, expand, is_elementwise, keep_set, linear_terms, normalize, reference


# ---------------------------------------------------------------------------
# findings


# ---------------------------------------------------------------------------
# the context the analysis needs (built by verify.Context)


# ---------------------------------------------------------------------------
# expansion to a common vocabulary


# ---------------------------------------------------------------------------
# linear structure


# ---------------------------------------------------------------------------
# numbers


# ---------------------------------------------------------------------------
# the analysis


@dataclass
class Setup:
    F: sp.Expr  # formula, placeholders in
    R: sp.Expr  # engine, placeholders in
    atoms: dict  # placeholder -> original atom (for printing)
    shapes: dict  # placeholder name -> shape
    probe: Probe
    show: Callable[[sp.Expr], sp.Expr]  # placeholders back to atoms
    name: str = ""  # the quantity judged


def setup(ctx, name: str, F: sp.Expr, extra_keep: frozenset = frozenset()) -> Setup:
    R = reference(ctx, name)
    if isinstance(F, sp.Sum):
        F = F.function
    keep = keep_set(ctx, name, F) | set(extra_keep)
    # a kept gradient written out as what it carries (`later(dc_prev)` for CIFG's delta_c_next): its name
    carried = {reference(ctx, g): sp.Symbol(g) for g in keep
               if g in ctx.backward_names and isinstance(reference(ctx, g), ops.later)}
    F = F.xreplace({a: carried[a] for a in F.atoms(ops.later) if a in carried}) if carried else F
    Fc, Rc = expand(ctx, F, keep), expand(ctx, R, keep)
    atoms: dict = {}
    back: dict = {}
    for e in (Rc, Fc):
        for a in sorted(e.atoms(ops.later), key=sp.default_sort_key) + sorted(
                (s for s in e.free_symbols if s.name in keep), key=sp.default_sort_key):
            if a not in back:
                p = sp.Symbol(f"__g{len(back)}")
                back[a] = p
                atoms[p] = a
    shapes = {p.name: shape_of(a, ctx.shapes) for p, a in atoms.items()}
    ctx_shapes = {**ctx.shapes, **shapes}
    probe = Probe(ctx, {p: shapes[p.name] for p in atoms})
    probe.shapes = ctx_shapes
    return Setup(Fc.xreplace(back), Rc.xreplace(back), atoms, shapes, probe, lambda e: e.xreplace(atoms), name)


_MISSING_TERMS = {"missing_term", "missing_map_term"}
_EXTRA_TERMS = {"extra_term", "extra_map_term"}


def analyse(ctx, name: str, F: sp.Expr) -> list[Finding]:
    """Findings for a formula already known to be wrong (shapes agree).

    Two readings are tried. The first expands everything the formula does not
    itself use down to the gradients reaching the cell. The second also keeps,
    as placeholders, the intermediate adjoints the engine's own equation is
    written in: a formula that leaves out a whole term in one of them (CIFG's
    ``- delta_i``, MGU's ``W_f[:, :m].T @ dz_f``) then reads as that term
    missing, not as a changed factor of another term. The second reading is
    kept when it explains the formula by whole terms only left out (or only
    added), in no more findings (its terms are then in the engine's own names).
    """
    plain = _analyse_with(ctx, name, F, frozenset())
    direct = _engine_intermediates(ctx, name, F)
    if not direct:
        return plain
    try:
        alt = _analyse_with(ctx, name, F, direct)
    except (ShapeError, NotLinear, Unsupported, ArithmeticError, ValueError, TypeError):
        return plain
    kinds = {f.kind for f in alt}
    # terms only left out, or only added: a term missing and another extra is a term rewritten
    if alt and (kinds <= _MISSING_TERMS or kinds <= _EXTRA_TERMS) and len(alt) <= len(plain):
        return alt
    return plain


def _engine_intermediates(ctx, name: str, F: sp.Expr) -> frozenset:
    """Backward quantities the engine's equation of ``name`` uses directly that
    the plain reading would expand (not the carried ``later(x)``, not sums)."""
    R = reference(ctx, name)
    R = R.xreplace({a: sp.Dummy() for a in R.atoms(ops.later)})
    keep = keep_set(ctx, name, F)
    return frozenset(s.name for s in R.free_symbols
                     if s.name in ctx.backward_names and s.name not in keep and not ctx.is_sum(s.name))


def _analyse_with(ctx, name: str, F: sp.Expr, extra_keep: frozenset) -> list[Finding]:
    S = setup(ctx, name, F, extra_keep)
    grads = set(S.atoms)
    P = sp.Symbol("__P")
    try:
        fterms, fconst = linear_terms(S.F, grads, P)
    except NotLinear as exc:
        bad = S.show(exc.expr)
        return [Finding("not_linear", f"the formula is not linear in the gradients: `{_py(bad)}` multiplies "
                        "a gradient by a gradient or applies a function to one; every gradient is a linear "
                        "function of the gradients it is computed from", got=bad)]
    except Unsupported:
        return []
    try:
        rterms, rconst = linear_terms(S.R, grads, P)
    except (NotLinear, Unsupported):
        return []
    findings: list[Finding] = []
    classes = _group(ctx, S, P, [(normalize(t), c, "F") for t, c in fterms] + [(normalize(t), c, "R") for t, c in rterms])
    identity_only = all(_is_identity(cls["tmpl"], P) for cls in classes)
    unpaired_r, unpaired_f = [], []
    for cls in classes:
        fc, rc = cls["F"], cls["R"]
        where = None if _is_identity(cls["tmpl"], P) else cls
        if fc and rc:
            Fcore, Rcore = sp.Add(*fc), sp.Add(*rc)
            if not S.probe.same(Fcore, Rcore):
                findings += core_findings(ctx, S, Fcore, Rcore, where, P)
        elif rc:
            unpaired_r.append(cls)
        elif fc:
            unpaired_f.append(cls)
    F0, R0 = sp.Add(*fconst), sp.Add(*rconst)
    for side, lst in (("R", unpaired_r), ("F", unpaired_f)):
        for cls in [c for c in lst if _is_identity(c["tmpl"], P)]:
            lst.remove(cls)
            Fcore = sp.Add(*cls["F"]) + (F0 if side == "R" else 0)
            Rcore = sp.Add(*cls["R"]) + (R0 if side == "F" else 0)
            if side == "R":
                F0 = sp.Integer(0)
            else:
                R0 = sp.Integer(0)
            findings += core_findings(ctx, S, Fcore, Rcore, None, P)
    findings += _pair_maps(ctx, S, P, unpaired_r, unpaired_f)
    # constants (terms with no gradient at all)
    if not S.probe.same(F0, R0):
        findings += _constant_findings(ctx, S, F0, R0, findings, identity_only)
    return findings


def _is_identity(t, P) -> bool:
    return t == P


def _group(ctx, S: Setup, P, items):
    """Group terms whose array maps are equal: structurally, or numerically on
    the same random argument (``Wc[:, 0:n_a].T @ □`` and ``(Wc.T @ □)[0:n_a]``)."""
    classes: list[dict] = []
    for tmpl, core, side in items:
        try:
            cshape = shape_of(core, S.probe.shapes)
        except ShapeError:
            cshape = None
        home = None
        for cls in classes:
            if cls["tmpl"] == tmpl:
                home = cls
                break
            if cshape is not None and cls["cshape"] is not None and same_shape(cls["cshape"], cshape) \
                    and _same_map(S, cls["tmpl"], tmpl, cshape):
                home = cls
                break
        if home is None:
            home = {"tmpl": tmpl, "cshape": cshape, "F": [], "R": []}
            classes.append(home)
        home[side].append(core)
    return classes


def _same_map(S, a, b, cshape) -> bool:
    Z = np.random.default_rng(5).normal(0.0, 1.0, concrete(cshape, S.probe.dims))
    try:
        return close(S.probe.values(a, {"__P": Z}), S.probe.values(b, {"__P": Z}))
    except Exception:
        return False


def _show_map(S: Setup, tmpl, core=None) -> str:
    if core is not None:
        text = _py(S.show(tmpl.xreplace({sp.Symbol("__P"): core})))
        if len(text) <= 90:
            return text
    return _py(S.show(tmpl.xreplace({sp.Symbol("__P"): sp.Symbol("(…)")})))


def _pair_maps(ctx, S, P, only_r, only_f) -> list[Finding]:
    out = []
    used_f = set()
    for r in only_r:
        rcore = sp.Add(*r["R"])
        match = None
        for i, f in enumerate(only_f):
            if i in used_f:
                continue
            fcore = sp.Add(*f["F"])
            if (r["cshape"] is not None and f["cshape"] is not None and same_shape(r["cshape"], f["cshape"])
                    and S.probe.same(fcore, rcore)):
                match = i
                break
        if match is not None:
            used_f.add(match)
            f = only_f[match]
            out.append(map_finding(ctx, S, f["tmpl"], r["tmpl"], rcore))
        else:
            term = _show_map(S, r["tmpl"], rcore)
            f = Finding("missing_map_term", f"the term `{term}` is missing", term=S.show(r["tmpl"]),
                        expected=S.show(r["tmpl"].xreplace({P: rcore})))
            grads = [S.show(a) for a in S.atoms if rcore.has(a)]
            if len(grads) == 1:
                _add_path_note(ctx, S.name, f, grads[0])
            out.append(f)
    for i, f in enumerate(only_f):
        if i in used_f:
            continue
        fcore = sp.Add(*f["F"])
        term = _show_map(S, f["tmpl"], fcore)
        out.append(Finding("extra_map_term", f"the term `{term}` does not belong in it", term=S.show(f["tmpl"]),
                           got=S.show(f["tmpl"].xreplace({P: fcore}))))
    return out


def tree_diff(a: sp.Expr, b: sp.Expr):
    """The smallest differing pair of subtrees of a and b (a from the formula)."""
    if a == b:
        return None
    if a.func == b.func and len(a.args) == len(b.args) and a.args and not isinstance(a, (sp.Add, sp.Mul)):
        diffs = [(x, y) for x, y in zip(a.args, b.args) if x != y]
        if len(diffs) == 1:
            inner = tree_diff(*diffs[0])
            if inner is not None and not (inner[0].is_Integer or inner[1].is_Integer):
                return inner
    return (a, b)


def map_finding(ctx, S, ftmpl, rtmpl, core) -> Finding:
    # both maps applied to the same core: the differing part never shows the placeholder
    P = sp.Symbol("__P")
    got, want = tree_diff(S.show(ftmpl.xreplace({P: core})), S.show(rtmpl.xreplace({P: core})))
    label = ""
    note = ""
    if got == ops.transpose(want) or want == ops.transpose(got):
        label = "transposed"
        note = f"; `{_py(got)}` is the transpose of `{_py(want)}`"
        weight = want.args[0] if isinstance(want, ops.transpose) else got.args[0]
        if isinstance(weight, sp.Symbol) and ctx.role(weight.name) == "param":
            note += (f": a gradient flows back through `{weight.name}` by its transpose (`y = W @ x` gives "
                     "`dx = W.T @ dy`; `y = x @ W.T` gives `dx = dy @ W`)")
    if isinstance(got, ops.take) and isinstance(want, ops.take) and got.args[0] == want.args[0]:
        if got.args[1] != want.args[1]:
            label = "slice_axis"
            note = (f"; `{_py(got)}` slices along axis {int(got.args[1])}, but the block of "
                    f"`{_py(got.args[0])}` that acts on this part is along axis {int(want.args[1])}: `{_py(want)}`")
        else:
            label = "slice_block"
            note = f"; `{_py(got)}` is the wrong block of `{_py(got.args[0])}`: this term needs `{_py(want)}`"
    elif isinstance(want, ops.take) and want.args[0] == got:
        label = "missing_slice"
    pair = ctx.time_pair(got, want)
    if pair:
        label = "time_index"
        note = "; " + pair
    explained = bool(note)
    text = f"the term `{_show_map(S, rtmpl, core)}` is written `{_show_map(S, ftmpl, core)}`: it has `{_py(got)}` where `{_py(want)}` belongs{note}"
    return Finding("map", text, label=label, got=got, expected=want, where=S.show(rtmpl), explained=explained)


def core_findings(ctx, S: Setup, Fcore, Rcore, where, P) -> list[Finding]:
    """Split two elementwise cores by placeholder and compare term by term."""
    us = sorted((u for u in S.atoms if Fcore.has(u) or Rcore.has(u)), key=lambda s: s.name)
    prefix = f"in the term `{_show_map(S, where['tmpl'])}`, " if where is not None else ""
    out: list[Finding] = []
    coeffs = {}
    for u in us:
        fu = sp.diff(Fcore, u)
        ru = sp.diff(Rcore, u)
        if fu.has(*us) or ru.has(*us):
            return [Finding("not_linear", f"{prefix}the formula is not linear in `{_py(S.show(u))}`", term=S.show(u))]
        coeffs[u] = (fu, ru)
    swapped = _part_for_whole(ctx, S, coeffs)
    for u, v in swapped.items():
        out.append(_part_for_whole_finding(ctx, S, u, v, coeffs[u][1], prefix))
    for u, (fu, ru) in coeffs.items():
        if u in swapped or u in swapped.values() or S.probe.same(fu, ru, {}):
            continue
        label_u = _py(S.show(u))
        if S.probe.zero(fu):
            atom = S.show(u)
            term = S.show(factor_terms(ru * u))
            if isinstance(atom, ops.later):
                text = (f"{prefix}the term carried back from step t+1, `{_py(term)}` (`{_py(atom.args[0])}` as step t+1 "
                        "computes it), is missing: backpropagation through time adds it")
            else:
                text = f"{prefix}the {label_u} term is missing: it is `{_py(term)}`"
            f = Finding("missing_term", text, term=atom, expected=term, coef=ru)
            f.label = ctx.missing_term_label(atom)
            if not f.label and where is None:
                note = ctx.direct_path_note(S.name, atom)
                if note:
                    f.label, f.text, f.explained = "direct_path", f.text + "; " + note, True
            if not f.label:
                _add_path_note(ctx, S.name, f, atom)
            out.append(f)
        elif S.probe.zero(ru):
            out.append(Finding("extra_term", f"{prefix}the {label_u} term `{_py(S.show(factor_terms(fu * u)))}` does not belong in it",
                               term=S.show(u), got=S.show(factor_terms(fu * u))))
        else:
            out.append(factor_finding(ctx, S, u, fu, ru, prefix, coeffs))
    out = _merge(out, [u for u, (fu, ru) in coeffs.items() if not S.probe.zero(ru)], S, prefix)
    # terms without any gradient inside this map
    f0 = Fcore.xreplace({u: 0 for u in us})
    r0 = Rcore.xreplace({u: 0 for u in us})
    if not S.probe.same(f0, r0):
        out += _constant_findings(ctx, S, f0, r0, out, where is None, prefix)
    return out


def _add_path_note(ctx, name, f: Finding, u) -> None:
    note = ctx.path_note(name, u) if name else ""
    if note:
        f.label, f.text, f.explained = "missing_path", f.text + "; " + note, True


def _part_for_whole(ctx, S, coeffs) -> dict:
    """{u: v}: the formula has, with u's coefficient, a gradient v that is only a
    part of u (``doutput`` where ``dh = doutput + later(dh_prev)`` belongs), or
    a carried gradient with a part left out (``later(delta_c*f)`` where CIFG's
    ``delta_c_next = later(dc_prev)`` belongs)."""
    out = {}
    for u, (fu, ru) in coeffs.items():
        whole = S.show(u)
        if not (isinstance(whole, sp.Symbol) and whole.name in ctx.backward_names) or not S.probe.zero(fu):
            continue
        for v, (fv, rv) in coeffs.items():
            if v in out.values() or not S.probe.zero(rv) or S.probe.zero(fv):
                continue
            if _is_part(ctx, whole.name, S.show(v)) and S.probe.same(fv, ru):
                out[u] = v
                break
    return out


def _is_part(ctx, whole: str, part) -> bool:
    ref = reference(ctx, whole)
    if part in ref.free_symbols:
        return True
    carried = _carried_sum(ctx, ref)
    return carried is not None and isinstance(part, ops.later) and _sub_sum(part.args[0], carried) is not None


def _carried_sum(ctx, ref):
    """``later(n)``'s right side when ``ref`` is ``later(n)``, else None."""
    if isinstance(ref, ops.later) and isinstance(ref.args[0], sp.Symbol) and ref.args[0].name in ctx.backward_names:
        return reference(ctx, ref.args[0].name)
    return None


def _sub_sum(part, whole):
    """The terms of ``whole`` that ``part`` leaves out, when part is some of them."""
    terms = list(sp.Add.make_args(whole))
    mine = list(sp.Add.make_args(part))
    if not all(t in terms for t in mine) or len(mine) >= len(terms):
        return None
    return sp.Add(*[t for t in terms if t not in mine])


def _part_for_whole_finding(ctx, S, u, v, coef, prefix) -> Finding:
    whole, part = S.show(u), S.show(v)
    ref = reference(ctx, whole.name)
    carried_rhs = _carried_sum(ctx, ref)
    if isinstance(part, ops.later) and carried_rhs is not None:
        n = ref.args[0]
        rest = _sub_sum(part.args[0], carried_rhs)
        return Finding("factor", f"{prefix}the gradient carried from step t+1 is `{_py(part)}`, where "
                       f"`{whole.name} = later({n})` belongs: `{n} = {_py(carried_rhs)}`, so it lacks "
                       f"`{_py(ops.later(rest))}`", label="summand", term=whole, got=part, expected=whole,
                       explained=True)
    eq = f"`{whole.name} = {_py(ref)}`"
    carried = ref.atoms(ops.later)
    why = (" also carries the gradient back from step t+1: the formula is backpropagation through this step only, "
           "not through time") if carried else ""
    return Finding("factor", f"{prefix}it uses `{part.name}` where `{whole.name}` belongs; {eq}{why}",
                   label="no_chaining" if carried else "", term=whole, got=part, expected=whole,
                   explained=bool(carried))


def _merge(findings, nonzero, S, prefix) -> list[Finding]:
    """One finding for a factor difference shared by several terms."""
    groups: dict = {}
    for f in findings:
        if f.kind == "factor" and f.predicate and (f.missing is not None or f.extra is not None):
            groups.setdefault((f.missing, f.extra, f.label), []).append(f)
    out = []
    done = set()
    for f in findings:
        key = (f.missing, f.extra, f.label)
        group = groups.get(key, [])
        if f.kind != "factor" or not f.predicate or len(group) < 2:
            out.append(f)
            continue
        if key in done:
            continue
        done.add(key)
        names = [_py(g.term) for g in group]
        who = "every term" if len(group) == len(nonzero) else "the " + " and ".join(names) + " terms"
        first = group[0]
        rest = first.predicate or first.text
        if who != "every term":
            rest = rest.replace("lacks", "lack", 1) if rest.startswith("lacks") else rest.replace("has ", "have ", 1)
        merged = Finding("factor", f"{prefix}{who} {rest}", label=first.label, term=tuple(g.term for g in group),
                         expected=first.expected, got=first.got, missing=first.missing, extra=first.extra,
                         explained=first.explained)
        out.append(merged)
    return out


def factor_terms(e):
    try:
        return sp.factor_terms(e)
    except Exception:
        return e


def factors(e: sp.Expr):
    e = factor_terms(e)
    coeff, rest = e.as_coeff_Mul()
    out: Counter = Counter()
    for f in sp.Mul.make_args(rest):
        if f == 1:
            continue
        b, x = f.as_base_exp()
        if x.is_Integer and 0 < x <= 16:
            out[b] += int(x)
        elif f != 1:
            out[f] += 1
    return coeff, out


def _product(c: Counter) -> sp.Expr:
    return sp.Mul(*[b**k for b, k in c.items()])


def _factor_diff(S, fu, ru):
    """(coefficient ratio, missing factors, extra factors) of two products."""
    fc, ff = factors(fu)
    rc, rf = factors(ru)
    missing = rf - ff
    extra = ff - rf
    # cancel factors that are equal in value though written differently
    for m in list(missing):
        for x in list(extra):
            if missing[m] and extra[x] and S.probe.same(m, x):
                k = min(missing[m], extra[x])
                missing[m] -= k
                extra[x] -= k
    missing = +missing
    extra = +extra
    if missing and extra and S.probe.same(_product(missing), _product(extra)):
        missing, extra = Counter(), Counter()
    ratio = sp.nsimplify(rc / fc) if fc != 0 else None
    return ratio, missing, extra


def _inside_sum(S, missing, extra, fu=None, ru=None):
    """When the difference is one part of a sum, that part: (its engine form,
    ratio, missing, extra) or None. The sums are the two coefficients as
    written, or the one sum factor left on each side."""
    if isinstance(fu, sp.Add) and isinstance(ru, sp.Add):
        a_r, a_f = ru, fu
    elif len(missing) == 1 and len(extra) == 1:
        (a_r, k_r), (a_f, k_f) = next(iter(missing.items())), next(iter(extra.items()))
        if k_r != 1 or k_f != 1 or not (isinstance(a_r, sp.Add) and isinstance(a_f, sp.Add)):
            return None
    else:
        return None
    left_r, left_f = list(sp.Add.make_args(a_r)), list(sp.Add.make_args(a_f))
    for t in list(left_r):
        match = next((x for x in left_f if x == t or S.probe.same(x, t)), None)
        if match is not None:
            left_r.remove(t)
            left_f.remove(match)
    if len(left_r) != 1 or len(left_f) != 1:
        return None
    ratio, m, x = _factor_diff(S, left_f[0], left_r[0])
    if not m and not x and ratio in (1, None):
        return None
    return left_r[0], ratio, m, x


def _whole_factor_finding(ctx, S, u, missing, extra, subject, got_term, want_term) -> Finding | None:
    """A factor that differs as a whole, read before the difference is split
    into parts of a sum: a factor with its sign flipped (GRU's ``n - h_prev``
    for ``h_prev - n``), or an activation derivative written wrong (``1 - h``
    for tanh's ``1 - h**2``)."""
    if not (missing and extra):
        return None
    mprod, xprod = _product(missing), _product(extra)
    shown_m, shown_x = _py(S.show(mprod)), _py(S.show(xprod))

    def found(text, label, predicate=""):
        return Finding("factor", text, label=label, term=S.show(u), expected=want_term, got=got_term,
                       missing=S.show(mprod), extra=S.show(xprod), explained=True, predicate=predicate)

    if S.probe.same(xprod, -mprod):
        pred = f"has the wrong sign: `{shown_x}` is the negative of `{shown_m}`, which belongs there"
        return found(f"{subject} {pred}: it is `{_py(want_term)}`", "sign", pred)
    part = _summand_left_out(S, missing, extra)
    if part is not None:
        whole, left_out, sign = part
        what = "lacks its part" if sign > 0 else "has an extra part"
        return found(f"{subject}: the factor `{_py(S.show(whole))}` {what} `{_py(S.show(left_out))}` "
                     f"(written `{shown_x}`): it is `{_py(want_term)}`", "summand")
    shown = S.show(xprod)
    reactivated = any(isinstance(a, tuple(_ACTS)) for a in sp.preorder_traversal(shown))
    for g, act in ctx.gate_acts.items():
        deriv = derivative_of(g, act)
        if not all(S.show(b) in factors(deriv)[1] for b in missing):
            continue
        if {s.name for s in shown.free_symbols} == {g} and not reactivated:  # sigmoid(ft): activated_twice
            pred = (f"has `{shown_x}` where `{shown_m}` belongs: the derivative of the {act} in `{g}` = {act}(…) is "
                    f"`{_py(deriv)}`, written in the stored value `{g}`")
            return found(f"{subject} {pred}", "wrong_derivative", pred)
    return None


def _summand_left_out(S, missing, extra):
    """One factor written with a summand left out (``h_prev @ W_hn.T`` for
    ``b_hn + h_prev @ W_hn.T``) or added: (the right factor, the summand, +1 if
    left out, -1 if added), else None."""
    if len(missing) != 1 or len(extra) != 1:
        return None
    (want, k_w), (got, k_g) = next(iter(missing.items())), next(iter(extra.items()))
    if k_w != 1 or k_g != 1:
        return None
    for big, small, sign in ((want, got, 1), (got, want, -1)):
        if not isinstance(big, sp.Add):
            continue
        rest = [a for a in big.args if a not in sp.Add.make_args(small)]
        if rest and len(rest) < len(big.args) and S.probe.same(big - sp.Add(*rest), small):
            return want, sp.Add(*rest), sign
    return None


def factor_finding(ctx, S, u, fu, ru, prefix, coeffs) -> Finding:
    label_u = _py(S.show(u))
    ratio, missing, extra = _factor_diff(S, fu, ru)
    subject = f"the {label_u} term"
    got_term = S.show(factor_terms(fu * u))
    want_term = S.show(factor_terms(ru * u))
    whole = _whole_factor_finding(ctx, S, u, missing, extra, prefix + subject, got_term, want_term)
    if whole is not None:
        return whole
    part = _inside_sum(S, missing, extra, fu, ru) or _inside_sum(S, missing, extra)
    if part is not None:
        where_part, ratio, missing, extra = part
        subject = f"in the {label_u} term, the part `{_py(S.show(factor_terms(where_part * u)))}`"
    mprod, xprod = S.show(_product(missing)), S.show(_product(extra))
    if not missing and not extra:
        if ratio == -1:
            return Finding("factor", f"{prefix}{subject} has the wrong sign: it is `{_py(want_term)}`",
                           label="sign", term=S.show(u), expected=want_term, got=got_term)
        return Finding("factor", f"{prefix}{subject} is off by the factor {_py(ratio)}: it is `{_py(want_term)}`",
                       term=S.show(u), expected=want_term, got=got_term, missing=ratio)
    if len(missing) + len(extra) > 6:
        return Finding("term_differs", f"{prefix}the {label_u} term should be `{_py(want_term)}`, not `{_py(got_term)}`",
                       term=S.show(u), expected=want_term, got=got_term)
    scale = "" if ratio in (1, None) else f" (and the factor {_py(ratio)})"
    if missing and not extra:
        pred = f"lacks the factor {_py(mprod)}{scale}"
    elif extra and not missing:
        pred = f"has an extra factor {_py(xprod)}{scale}"
    else:
        pred = f"has {_py(xprod)} where {_py(mprod)} belongs{scale}"
    text = f"{prefix}{subject} {pred}"
    f = Finding("factor", text, term=S.show(u), expected=want_term, got=got_term,
                missing=mprod if missing else None, extra=xprod if extra else None,
                predicate=pred if part is None else "")
    f.label, note = ctx.factor_label(S, u, missing, extra, coeffs)
    if note:
        f.text += "; " + note
        f.predicate += "; " + note
        f.explained = True
    return f


def _constant_findings(ctx, S, F0, R0, findings, elementwise, prefix="") -> list[Finding]:
    out = []
    if S.probe.zero(R0):
        # an extra term without gradient: often a term that lost its gradient factor
        for f in findings:
            if f.kind == "missing_term" and f.coef is not None and f.term is not None:
                if S.probe.same(sp.sympify(F0), f.coef):
                    f.kind = "factor"
                    f.text = (f"{prefix}the term `{_py(S.show(F0))}` lacks the gradient factor {_py(f.term)}")
                    f.got = S.show(F0)
                    f.missing = f.term
                    return out
        out.append(Finding("constant_term", f"{prefix}the term `{_py(S.show(F0))}` contains no gradient; every term of a "
                           "gradient carries one of the gradients it is computed from", got=S.show(F0)))
        return out
    if elementwise and is_elementwise(F0) and is_elementwise(R0) and not S.probe.zero(F0):
        fc, ff = factors(F0)
        rc, rf = factors(R0)
        missing, extra = +(rf - ff), +(ff - rf)
        if missing or extra:
            text = f"{prefix}it should be `{_py(S.show(R0))}`, not `{_py(S.show(F0))}`"
            if missing and not extra:
                text = f"{prefix}it lacks the factor {_py(S.show(_product(missing)))}"
            elif extra and not missing:
                text = f"{prefix}it has an extra factor {_py(S.show(_product(extra)))}"
            elif len(missing) + len(extra) <= 6:
                text = f"{prefix}it has {_py(S.show(_product(extra)))} where {_py(S.show(_product(missing)))} belongs"
            out.append(Finding("factor", text, expected=S.show(R0), got=S.show(F0)))
            return out
    out.append(Finding("term_differs", f"{prefix}it should be `{_py(S.show(R0))}`, not `{_py(S.show(F0))}`",
                       expected=S.show(R0), got=S.show(F0)))
    return out


# ---------------------------------------------------------------------------
# repairs for formulas of the wrong shape


# ---------------------------------------------------------------------------
# the classic mistakes, made on purpose (for matching a function's wrong output)



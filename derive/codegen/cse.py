"""Common subexpressions of the emitted statements, each named for reading (``tanh_c``, ``one_minus_f``)."""



import sympy as sp

from derive.codegen.numpy_printer import FUNCTION_NAMES



def shared_subexpressions(exprs: list[sp.Expr], fresh) -> tuple[list[tuple[str, sp.Expr]], list[sp.Expr]]:
    """``sympy.cse`` of consecutive statements, its temporaries named for
    reading: ``tanh_c`` for tanh(c), ``dh_o`` for dh*o."""
    pairs, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_cse"), order="none")
    rename: dict[sp.Symbol, sp.Symbol] = {}
    out = []
    for sym, value in pairs:
        value = value.xreplace(rename)
        new = sp.Symbol(fresh(_readable(value)))
        rename[sym] = new
        out.append((new.name, value))
    return out, [r.xreplace(rename) for r in reduced]


def _readable(value: sp.Expr) -> str:
    if value.func in FUNCTION_NAMES and isinstance(value.args[0], sp.Symbol):
        return f"{FUNCTION_NAMES[value.func].removeprefix('np.')}_{value.args[0].name}"
    if isinstance(value, sp.Mul) and all(isinstance(a, sp.Symbol) for a in value.args):
        return "_".join(a.name for a in value.args)
    if isinstance(value, sp.Pow) and isinstance(value.base, sp.Symbol) and value.exp == 2:
        return f"{value.base.name}_sq"
    return "tmp"

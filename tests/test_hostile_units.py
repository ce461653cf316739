"""The pieces that keep hostile text data (issue 12), one by one: the LaTeX
whitelist, the docstring escaper, bounded powers, sanitised file names."""

from __future__ import annotations

import ast
import glob
import tomllib

import pytest
import sympy as sp

from derive.codegen.api import doc_text
from derive.spec.expr import MAX_CONSTANT_BITS, ExprError, Scope, bounded_power, parse
from derive.spec.texsafe import TexError, check_math


@pytest.mark.parametrize("tex", [r"\input{x}", r"\include{x}", r"\openin1", r"\write18{x}", r"\read1to\x",
                                 r"\catcode`\^=7", r"\def\x{}", r"\csname x\endcsname", r"\tag{1}", r"\label{x}",
                                 r"\let\x\y", r"\expandafter", r"\immediate", r"\special{x}", "^^5cinput", "$x$",
                                 "a % b", "a # b", "}{", "{", r"\begin{verbatim}", "<b>", "`x`", "a\nb", "é"])
def test_the_latex_whitelist_refuses(tex):
    with pytest.raises(TexError):
        check_math(tex)


def test_every_presets_latex_passes_the_whitelist():
    for path in glob.glob("derive/spec/cells/*.toml") + glob.glob("examples/*.toml"):
        data = tomllib.load(open(path, "rb"))
        for sym in data["symbols"].values():
            if "latex" in sym:
                assert check_math(sym["latex"]) == sym["latex"]
        for tex in data.get("adjoint_latex", {}).values():
            assert check_math(tex) == tex


@pytest.mark.parametrize("text", ['a"""b', 'x\\ny', 'ends"', '"""', '\\N{BULLET}', "a\nb\rc\x00d", '""""""""',
                                  "say \"hi\" there", "\u2028", "\\"])
def test_doc_text_keeps_text_inside_a_docstring(text):
    source = '"""' + doc_text(text) + ': rest"""'
    tree = ast.parse(source)
    assert len(tree.body) == 1 and ast.literal_eval(source) == text + ": rest"


def test_powers_are_bounded_by_their_result():
    assert bounded_power(sp.Integer(9), sp.Integer(16)) == 9**16
    with pytest.raises(ValueError, match="bits"):
        bounded_power(sp.Integer(9**16), sp.Integer(16))
    x = sp.Symbol("x")
    assert bounded_power(bounded_power(x, sp.Integer(16)), sp.Integer(16)) == x**256
    with pytest.raises(ValueError, match="exponent"):
        bounded_power(x**256, sp.Integer(2))
    scope = Scope(symbols={"x": x})
    for text in ("((((9**16)**16)**16)**16)", "((x**16)**16)**2", "2**16*2**16*2**16*2**16*2**16*2**16*2**16*2**16*2**16"
                 "*2**16*2**16*2**16*2**16*2**16*2**16*2**16*2"):
        with pytest.raises(ExprError):
            parse(text, scope)
    assert parse("2**16*2**16", scope) == 2**32
    assert MAX_CONSTANT_BITS >= 64


def test_fullwidth_letters_are_not_read_as_ascii():
    with pytest.raises(ExprError, match="read it as `h`"):
        parse("\uff48", Scope(symbols={"h": sp.Symbol("h")}))

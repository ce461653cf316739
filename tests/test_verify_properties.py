"""Property tests (hypothesis): whatever text comes in, the readers raise
nothing but their own error type, and the verifier nothing but DeriveError
(a verdict otherwise)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import derive
from derive.errors import DeriveError, ExprError
from derive.verifier.latex_reader import LatexReader
from derive.verifier.context import load_context
from derive.verifier.formula import Verdict, verify


PY_TOKENS = ["ft", "it", "cct", "ot", "c_prev", "c_next", "dc", "dc_next", "da_next", "dft", "Wf", "concat", "n_a",
             "n_x", "*", "+", "-", "/", "@", "**", "2", "1.", "(", ")", "[", "]", ":", ",", ".T", "np.", "sum",
             "tanh", "sigmoid", "exp", "axis=1", "keepdims=True", "later", "sum_t", "self.state.", "=", " ", "__",
             "lambda", "'", "{", "}", "np.concatenate", "[:, :n_a]", "9", "**9", "x", "$", "\\", "\x00"]
TEX_TOKENS = [r"\Gamma_f", r"\Gamma_u^{\langle t \rangle}", r"\tilde{c}", "c_{prev}", "c_{next}", "dc_{next}",
              "da_{next}", r"d\gamma_f", "W_f", "^{T}", "^T", "^2", "^{", "_{", "{", "}", "(", ")", "[", "]",
              r"\left(", r"\right)", r"\odot", "*", "+", "-", r"\cdot", r"\frac", r"\sigma", r"\tanh", r"\sum_{batch}",
              r"\sum_{t=1}^{T}", r"\begin{bmatrix}", r"\end{bmatrix}", r"\\", "&", "=", r"\left.", r"\right|_{t+1}",
              "n_a", ":", ",", "'", r"\partial", "L", "d", r"\mathrm{d}", r"\tag{1}", "$", "%", r"\input", "é", " "]

SCOPE_ERRORS = (ExprError,)


@pytest.fixture(scope="module")
def ctx():
    return load_context("coursera")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_python_reader_raises_only_its_error(ctx, text):
    try:
        ctx.read(text, "python")
    except ExprError:
        pass
    except Exception as exc:  # a shape error is a verdict, not a crash
        from derive.spec.shapes import FormulaShapeError

        assert isinstance(exc, (FormulaShapeError, DeriveError)), repr(exc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PY_TOKENS), max_size=25).map("".join))
def test_python_reader_on_token_soup(ctx, text):
    from derive.spec.shapes import FormulaShapeError

    try:
        ctx.read(text, "python")
    except (ExprError, FormulaShapeError, DeriveError):
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(TEX_TOKENS), max_size=30).map("".join)))
def test_latex_reader_raises_only_its_error(text):
    from derive.spec.shapes import FormulaShapeError

    reader = _reader()
    for check in (True, False):
        try:
            reader.parse_equation(text, check_shapes=check)
        except (ExprError, FormulaShapeError):
            pass


_READER = {}


def _reader():
    if "r" not in _READER:
        _READER["r"] = LatexReader(derive.derive("coursera"))
    return _READER["r"]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.sampled_from(PY_TOKENS[:40]), min_size=1, max_size=12).map("".join),
       st.sampled_from(["dft", "dc", "dWf", "da_prev", "dbf", "da_next"]))
def test_verify_returns_a_verdict_or_raises_derive_error(text, quantity):
    try:
        v = verify("coursera", quantity, text)
    except DeriveError:
        return
    assert isinstance(v, Verdict)
    assert v.ok in (True, False) and v.message


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_bytes_and_undecodable_text_are_input_errors(data):
    text = data.decode("utf-8", "surrogateescape")  # what Python makes of a non-UTF-8 argv
    for arg in (data, text):
        try:
            verify("coursera", "dft", arg)
        except DeriveError:
            pass

"""Bad specs get a clear error naming the file, the equation and the symbol,
and nothing of them is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

import derive
from derive.spec.cell import load
from derive.errors import DeriveError, SpecError

GOOD = Path(derive.__file__).parent / "spec" / "cells" / "coursera.toml"


def spec(tmp_path: Path, old: str = "", new: str = "", text: str | None = None) -> Path:
    source = GOOD.read_text("utf-8")
    if old:
        assert old in source, old
        source = source.replace(old, new, 1)
    path = tmp_path / "cell.toml"
    path.write_text(text if text is not None else source, "utf-8")
    return path


def error(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        derive.derive(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_unknown_function_names_file_equation_and_function(tmp_path):
    m = error(spec(tmp_path, "ft = sigmoid(Wf @ concat + bf)", "ft = sigmod(Wf @ concat + bf)"))
    assert "ft = sigmod(Wf @ concat + bf)" in m and "unknown function `sigmod`" in m and "`sigmoid`" in m


def test_undefined_symbol_with_did_you_mean_and_caret(tmp_path):
    m = error(spec(tmp_path, "it = sigmoid(Wi @ concat + bi)", "it = sigmoid(Wi @ concat + bii)"))
    assert "unknown symbol `bii`" in m and "did you mean `bi`" in m and "^" in m


def test_duplicated_definition(tmp_path):
    m = error(spec(tmp_path, '{ eq = "it = sigmoid(Wi @ concat + bi)", tag = "2" },',
                   '{ eq = "it = sigmoid(Wi @ concat + bi)", tag = "2" },\n  { eq = "it = tanh(Wi @ concat)" },'))
    assert "`it` is defined twice" in m


def test_equation_cannot_redefine_a_parameter(tmp_path):
    m = error(spec(tmp_path, '{ eq = "concat = concat(a_prev, xt)" },', '{ eq = "concat = concat(a_prev, xt)" },\n  { eq = "bf = xt" },'))
    assert "`bf` is declared as param" in m


def test_cyclic_definition(tmp_path):
    m = error(spec(tmp_path, "ft = sigmoid(Wf @ concat + bf)", "ft = sigmoid(Wf @ concat + bf + c_next)"))
    assert "cyclic definition" in m and "ft" in m and "c_next" in m


def test_shape_mismatch_names_both_shapes(tmp_path):
    path = spec(tmp_path, 'Wf      = { role = "param", shape = ["n_a", "n_a + n_x"]',
                'Wf      = { role = "param", shape = ["n_a", "n_x"]')
    m = error(path)
    assert "ft = sigmoid(Wf @ concat + bf)" in m
    assert "(n_a, n_x)" in m and "(n_a + n_x, m)" in m and "inner dimensions" in m


def test_broadcast_mismatch(tmp_path):
    m = error(spec(tmp_path, 'bf      = { role = "param", shape = ["n_a", 1]', 'bf      = { role = "param", shape = ["n_x", 1]'))
    assert "do not broadcast" in m and "(n_x, 1)" in m


def test_unused_parameter(tmp_path):
    m = error(spec(tmp_path, "[symbols]\n", '[symbols]\nWz = { role = "param", shape = ["n_a", 1] }\n'))
    assert "param `Wz` is declared but no equation uses it" in m


def test_unknown_key_with_suggestion(tmp_path):
    m = error(spec(tmp_path, 'layout = "columns"', 'layout = "columns"\nrecurent = 1'))
    assert "unknown key `recurent`" in m and "`recurrent`" in m


def test_state_without_link_and_bad_link(tmp_path):
    m = error(spec(tmp_path, 'out = "c_next"\nprev = "c_prev"', 'out = "c_next"\nprev = "a_prev"'))
    assert "c_prev" in m


def test_hostile_equation_text_is_rejected_not_run(tmp_path, capsys):
    m = error(spec(tmp_path, "ft = sigmoid(Wf @ concat + bf)", "ft = __import__('os').system('echo pwned')"))
    assert "ft = __import__" in m
    assert "pwned" not in capsys.readouterr().out


def test_not_toml_not_utf8_and_missing(tmp_path):
    assert "not valid TOML" in error(spec(tmp_path, text="name = \n"))
    bad = tmp_path / "bytes.toml"
    bad.write_bytes(b"name = '\xff\xfe'\n")
    with pytest.raises(DeriveError, match="not UTF-8"):
        derive.derive(bad)
    with pytest.raises(DeriveError, match="no such spec file"):
        derive.derive(tmp_path / "missing.toml")
    with pytest.raises(DeriveError, match="did you mean `coursera`"):
        derive.derive("coursra")


def test_adjoint_name_collision_is_reported(tmp_path):
    m = error(spec(tmp_path, "[adjoints]\nc_next = \"dc\"", "[adjoints]\nc_next = \"dft\""))
    assert "`dft`" in m and "[adjoints]" in m


def test_a_failed_load_leaves_nothing_behind(tmp_path):
    path = spec(tmp_path, "ft = sigmoid(Wf @ concat + bf)", "ft = sigmod(Wf @ concat + bf)")
    with pytest.raises(SpecError):
        derive.derive(path)
    path.write_text(GOOD.read_text("utf-8"), "utf-8")  # fixed in place: loads cleanly
    assert derive.derive(path).names() == derive.derive("coursera").names()


@pytest.mark.parametrize("preset", derive.presets())
def test_every_bundled_spec_loads_and_derives(preset):
    d = derive.derive(preset)
    assert d.cell.name == preset
    assert not any(str(s).startswith("_") for eq in d.backward for s in eq.rhs.free_symbols)
    load(f"{preset}.toml", (GOOD.parent / f"{preset}.toml").read_text("utf-8"))


def test_a_slice_in_a_cell_equation_is_refused_not_printed_as_a_derivative(tmp_path):
    # the engine has no adjoint rule for a slice: before, dWf printed `Derivative(Wf[:, 0:n_a], Wf)`
    m = error(spec(tmp_path, "ft = sigmoid(Wf @ concat + bf)",
                   "ft = sigmoid(Wf[:, 0:n_a] @ a_prev + Wf[:, n_a:n_a + n_x] @ xt + bf)"))
    assert "a slice" in m and "ft = sigmoid(Wf[:, 0:n_a] @ a_prev" in m and "concat" in m


def test_a_link_gradient_named_as_the_carried_gradient_is_refused(tmp_path):
    # grad = "dc_prev" would give two equations for dc_prev (the one arriving at c_next and
    # the one carried back to c_prev), and BPTT would read one for the other
    m = error(spec(tmp_path, 'grad = "dc_next"', 'grad = "dc_prev"'))
    assert "[[recurrent]] `c_next`" in m and "`dc_prev`" in m and "c_prev" in m

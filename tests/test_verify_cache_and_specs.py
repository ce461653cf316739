"""The derivation cache the verifier reads (derive.verifier.cache), and the alias
tables each notation declares for pasted formulas."""

from __future__ import annotations

import os

import pytest
import sympy as sp

import derive
from derive.verifier import cache as dcache
from derive.spec.expr import Scope, default_functions, parse
from derive.verifier.latex_reader import LatexReader


@pytest.fixture
def cache(monkeypatch):
    monkeypatch.setattr(dcache, "_MEMORY", {})


def test_one_derivation_per_process_and_nothing_on_disk(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_DERIVE_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = dcache.load("coursera")
    assert dcache.load("coursera") is d
    fresh = derive.derive("coursera")
    assert d.backward == fresh.backward and d.forward == fresh.forward
    assert dcache.load("coursera", loss="upstream") is not d
    assert not (tmp_path / "c").exists() and not (tmp_path / "xdg").exists()


def test_a_planted_pickle_is_never_opened(cache, tmp_path, monkeypatch):
    """An old cache folder another user can write: whatever lies there is not read."""
    import pickle

    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for k in range(3):
        (folder / f"{k:040x}.pickle").write_bytes(pickle.dumps(Payload()))
    monkeypatch.setenv("LSTM_DERIVE_CACHE", str(folder))
    assert dcache.load("elman").name == "elman"
    assert not marker.exists()


def test_the_key_follows_the_spec_text(cache, tmp_path):
    spec = tmp_path / "mine.toml"
    text = derive.derivation.spec_text("lipton")[1]
    spec.write_text(text)
    first = dcache.load(str(spec))
    spec.write_text(text.replace('title = "', 'title = "changed '))
    assert dcache.load(str(spec)).cell.title.startswith("changed")
    assert first.cell.title != dcache.load(str(spec)).cell.title
    from derive.verifier.formula import verify

    assert verify(str(spec), "dz_f", "ds*s_prev*f*(1-f)").ok  # a user's own spec file


@pytest.mark.parametrize("preset", derive.presets())
def test_alias_tables_name_things_the_notation_has(preset):
    d = derive.derive(preset)
    cell = d.cell
    targets = set(cell.symbols) | set(d.names()) | set(cell.dims)
    for alias, target in cell.aliases.items():
        assert target in targets, (preset, alias, target)
        symbols = {n: sp.Symbol(n) for n in targets if n not in cell.dims}
        got = parse(alias, Scope(symbols=symbols, dims=cell.dim_symbols(), aliases=dict(cell.aliases),
                                 functions=default_functions(cell.feature_axis), feature_axis=cell.feature_axis))
        assert got == (cell.dim_symbols()[target] if target in cell.dims else sp.Symbol(target))
    LatexReader(d)  # the reader builds its tables from this notation without complaint
    for tex, target in cell.latex_aliases.items():
        assert target in targets or target in ("tanh", "sigmoid", "exp", "log"), (preset, tex, target)


def test_the_seed_blogs_names_and_the_courses_names_are_declared():
    nico = derive.derive("nicodjimenez").cell
    for name in ("self.state.o", "self.param.wi_diff", "self.xc", "self.s_prev", "self.param.x_dim"):
        assert name in nico.aliases
    course = derive.derive("coursera").cell
    assert course.aliases["Gamma_u"] == "it"
    assert course.latex_aliases[r"\Gamma_u^{\langle t \rangle}"] == "it"
    assert course.latex_aliases["W_u"] == "Wi"

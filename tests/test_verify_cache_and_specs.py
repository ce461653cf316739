"""The derivation cache the verifier reads (derive.verifier.cache), and the alias
tables each notation declares for pasted formulas."""

from __future__ import annotations

import os
import pickle

import pytest
import sympy as sp

import derive
from derive.verifier import cache as dcache
from derive.spec.expr import Scope, default_functions, parse
from derive.verifier.latex_reader import LatexReader


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_DERIVE_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(dcache, "_MEMORY", {})
    return tmp_path / "c"


def entries(folder):
    return sorted(folder.glob("*.pickle")) if folder.exists() else []


def test_cache_stores_once_and_reads_back_the_same_derivation(cache):
    d = dcache.load("coursera")
    (entry,) = entries(cache)
    assert oct(entry.stat().st_mode & 0o777) == oct(0o600)
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)
    dcache._MEMORY.clear()
    again = dcache.load("coursera")
    assert again is not d
    fresh = derive.derive("coursera")
    assert again.backward == fresh.backward and again.forward == fresh.forward
    assert again.closed_form("dft") == fresh.closed_form("dft")
    assert dcache.load("coursera") is again  # one read per process
    dcache.load("coursera", loss="upstream")
    assert len(entries(cache)) == 2  # keyed by the loss too; only what was asked is derived


def test_the_key_follows_the_spec_text(cache, tmp_path):
    spec = tmp_path / "mine.toml"
    text = derive.derivation.spec_text("lipton")[1]
    spec.write_text(text)
    dcache.load(str(spec))
    spec.write_text(text.replace('title = "', 'title = "changed '))
    dcache._MEMORY.clear()
    assert dcache.load(str(spec)).cell.title.startswith("changed")
    assert len(entries(cache)) == 2
    from derive.verifier.formula import verify

    assert verify(str(spec), "dz_f", "ds*s_prev*f*(1-f)").ok  # a user's own spec file


def test_untrusted_or_damaged_entries_are_ignored(cache):
    dcache.load("graves")
    (entry,) = entries(cache)
    dcache._MEMORY.clear()
    os.chmod(entry, 0o666)  # writable by others: never unpickled
    with open(entry, "wb") as fh:
        pickle.dump("not a derivation", fh)
    os.chmod(entry, 0o666)
    assert dcache.load("graves").name == "graves"
    dcache._MEMORY.clear()
    os.chmod(entry, 0o600)
    entry.write_bytes(b"garbage")
    assert dcache.load("graves").name == "graves"  # rebuilt and rewritten
    dcache._MEMORY.clear()
    assert dcache.load("graves").name == "graves"


def test_cache_can_be_switched_off(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_DERIVE_CACHE", "off")
    monkeypatch.setattr(dcache, "_MEMORY", {})
    assert dcache.cache_dir() is None
    assert dcache.load("lipton").name == "lipton"
    monkeypatch.delenv("LSTM_DERIVE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert dcache.cache_dir() == tmp_path / "lstm-derive"


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

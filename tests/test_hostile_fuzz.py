"""Fuzzing the whole path (issue 12): formulas in both syntaxes through
``derive.verify``, and mutated spec TOML through loading and deriving. The only
exceptions allowed out are the project's own (DeriveError); the generators are
bench/fuzz.py's, which runs 100 000 formulas and 10 000 specs (BENCHMARKS.md).
A few hundred examples here keep CI cheap."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("derive_fuzz", ROOT / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), preset=st.sampled_from(["coursera", "graves", "gru", "elman"]),
       latex=st.booleans())
def test_generated_formulas_give_a_verdict_or_the_projects_error(seed, preset, latex):
    rng = random.Random(seed)
    text = fuzz.damage(rng, fuzz.latex_formula(rng) if latex else fuzz.formula(rng))
    exc = fuzz.check_formula(preset, text, "latex" if latex else "python")
    assert exc is None, f"{type(exc).__name__}: {exc} <- {text!r}"


@SETTINGS
@given(text=st.text(max_size=200))
def test_any_text_as_a_python_formula(text):
    exc = fuzz.check_formula("coursera", text, "python")
    assert exc is None, f"{type(exc).__name__}: {exc} <- {text!r}"


@SETTINGS
@given(text=st.lists(st.sampled_from(["\\", "{", "}", "^", "_", "[", "]", "(", ")", "+", "-", "*", "/", " ", "0",
                                       "7", "16", "a", "c", "f", "t", "T", "x", r"\Gamma", r"\sigma", r"\left",
                                       r"\right", r"\frac", r"\langle", r"\rangle", r"\odot", r"\input"])
                      | st.text(max_size=3), max_size=60).map("".join))
def test_any_text_as_a_latex_formula(text):
    exc = fuzz.check_formula("coursera", text, "latex")
    assert exc is None, f"{type(exc).__name__}: {exc} <- {text!r}"


_TEXTS = fuzz._spec_texts()


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(_TEXTS) - 1))
def test_mutated_specs_load_and_derive_or_give_a_spec_error(seed, which):
    text = fuzz.mutate_spec(random.Random(seed), _TEXTS[which])
    exc = fuzz.check_spec(text)
    assert exc is None, f"{type(exc).__name__}: {exc}\n{text}"

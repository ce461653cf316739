"""The compiled twins (generated/<preset>_numba.py): the same API and the same
numbers as their NumPy modules, in both dtypes, full and truncated BPTT, at
extreme inputs, against torch autograd; and a clear ImportError without numba.

Compiling costs seconds per module and dtype: the kernels are cached on disk
(numba's cache=True, beside the generated files), each module is imported once
per session, a representative subset (PyTorch's LSTM, the GRU, Graves'
peepholes in columns, nicodjimenez's 1-D layout, the LSTM with a projection:
a readout of its own size) is tested exhaustively and
the rest in float64 at one size.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import derive
from derive.cli.main import main as cli_main
from derive.codegen.render import numba_module, render_numba_module
from test_generated_reference import (
    EXAMPLES,
    GENERATED,
    ROOT,
    dims_for,
    expected,
    generated_grads,
    generated_loss,
    module,
    needs_torch,
    sequence,
    short,
    torch_grads,
    worst,
)

numba = pytest.importorskip("numba")
pytest.importorskip("scipy")

# the presets whose module is fused have a compiled twin (test_committed_compiled_modules_...)
PRESETS = [name for name in derive.presets() if (GENERATED / f"{name}_numba.py").is_file()]
THOROUGH = ["pytorch", "gru", "graves", "nicodjimenez", "lstm_proj"]
LIGHT = [name for name in PRESETS if name not in THOROUGH]


@functools.lru_cache(maxsize=None)
def compiled(name: str):
    """generated/<name>_numba.py, imported once per session, by name (so that
    numba's disk cache serves the next session)."""
    path = GENERATED / f"{name}_numba.py"
    spec = importlib.util.spec_from_file_location(f"generated_{name}_numba", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_fused_preset_has_a_compiled_twin_with_the_same_api():
    for name in PRESETS:
        twin, numpy_module = compiled(name), module(name)
        assert twin.__all__ == numpy_module.__all__, name
        for function in twin.__all__:
            a, b = getattr(twin, function), getattr(numpy_module, function)
            assert inspect.signature(a) == inspect.signature(b), (name, function)


def _agree(name, dtype, truncate=None, T=4, sizes=(2, 3, 2), seed=0):
    seq = sequence(name, dims_for(name, *sizes), T, seed)
    twin = generated_grads(name, seq, dtype=dtype, module_=compiled(name), truncate=truncate)
    ref = generated_grads(name, seq, dtype=dtype, module_=module(name), truncate=truncate)
    assert {np.asarray(v).dtype for v in twin.values()} == {np.dtype(dtype)}
    return worst(twin, ref)


@pytest.mark.parametrize("name", THOROUGH)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("truncate", [None, 1, 2])
def test_compiled_equals_its_numpy_module(name, dtype, tol, truncate):
    for seed, (T, sizes) in enumerate([(4, (2, 3, 2)), (1, (1, 1, 1)), (6, (3, 5, 4))]):
        err, key = _agree(name, dtype, truncate, T, sizes, seed)
        assert err <= tol, (name, key, err)


@pytest.mark.parametrize("name", LIGHT)
def test_compiled_equals_its_numpy_module_lightly(name):
    err, key = _agree(name, np.float64, None)
    assert err <= 1e-12, (name, key, err)


@pytest.mark.parametrize("name", THOROUGH + LIGHT)
def test_compiled_forward_equals_the_numpy_forward(name):
    seq = sequence(name, dims_for(name, 2, 3, 2), 3, seed=5)
    a, b = generated_loss(name, seq, module_=compiled(name)), generated_loss(name, seq, module_=module(name))
    assert abs(a - b) <= 1e-12 * max(1.0, abs(b)), (name, a, b)


@needs_torch
@pytest.mark.parametrize("name", THOROUGH)
def test_compiled_equals_torch_autograd(name):
    seq = sequence(name, dims_for(name, 3, 4, 2), 5, seed=7)
    _, ref = torch_grads(name, seq)
    err, key = worst(generated_grads(name, seq, module_=compiled(name)), expected(name, ref))
    assert err <= 1e-10, (name, key, err)


@pytest.mark.parametrize("name", THOROUGH)
def test_compiled_is_stable_at_huge_pre_activations(name):
    """|z| = 1e4: no warning, no NaN, full and truncated, both dtypes; in float64 the NumPy
    module's numbers to 1e-6 of the largest gradient (or absolutely, when all are below 1): weights
    of 1e4 amplify the eps-sized difference of saturated gates (the NumPy module's np.tanh gives
    exactly 1, the vectorised one 1 - eps), so this is a stability check; the agreement to 1e-12
    is the other tests', at ordinary inputs. Not compared in float32: the NumPy module's
    float32 sigmoid saturates to exactly 0 and 1 (through tanh), the compiled one to eps, and
    weights and inputs of 1e4 multiply that difference by 1e8."""
    seq = sequence(name, dims_for(name, 2, 3, 2), 3, seed=3)
    for arrays in [seq.params, *seq.steps]:
        for k in arrays:
            arrays[k] = np.sign(arrays[k]) * 1e4
    for dtype, tol in ((np.float64, 1e-6), (np.float32, None)):
        for truncate in (None, 2):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with np.errstate(all="raise"):
                    grads = generated_grads(name, seq, dtype=dtype, module_=compiled(name), truncate=truncate)
            assert all(np.all(np.isfinite(v)) for v in grads.values())
            if tol is None:
                continue
            ref = generated_grads(name, seq, dtype=dtype, module_=module(name), truncate=truncate)
            scale = max(1.0, max(float(np.max(np.abs(v))) for v in ref.values()))
            diff = max(float(np.max(np.abs(np.asarray(grads[k], np.float64) - ref[k]))) for k in ref)
            assert diff <= tol * scale, (name, dtype, truncate, diff, scale)


def test_other_dtypes_are_a_type_error_naming_the_numpy_module():
    twin = compiled("pytorch")
    x = np.zeros((2, 1, 3), np.longdouble)
    h = np.zeros((1, 1, 2))
    with pytest.raises(TypeError, match="float32 or float64"):
        twin.lstm_forward(x, h, h, np.zeros((8, 3)), np.zeros((8, 2)), np.zeros(8), np.zeros(8))


def test_the_compiled_text_is_the_derived_statements():
    """Every scalar statement of the backward kernel is a derived line: the equations are its comments."""
    text = (GENERATED / "pytorch_numba.py").read_text()
    for line in ["dc = dc_next + dh*o*(1 - tanh(c)**2)", "dz_f = c_prev*dc*f*(1 - f)", "h = o * tanh(c)"]:
        assert f"# {line}" in text
    assert "math.exp" not in text and "np.exp(" not in text.split("# the compiled loops")[1]


def test_import_without_numba_names_the_extra():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import importlib.util as u\n"
            f"s = u.spec_from_file_location('m', {str(GENERATED / 'gru_numba.py')!r}); m = u.module_from_spec(s)\n"
            "s.loader.exec_module(m)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    assert "ImportError" in out.stderr and "pip install 'derive[fast]'" in out.stderr


def test_a_cache_location_that_cannot_be_written_still_computes(tmp_path):
    """NUMBA_CACHE_DIR under a regular file: no cache, the module compiles and runs."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = ("import importlib.util as u, numpy as np\n"
            f"s = u.spec_from_file_location('m', {str(GENERATED / 'elman_numba.py')!r}); m = u.module_from_spec(s)\n"
            "s.loader.exec_module(m)\n"
            "x = np.ones((2, 1, 3)); h = np.zeros((1, 1, 2))\n"
            "out, h_n, cache = m.rnn_forward(x, h, np.ones((2, 3)), np.ones((2, 2)), np.zeros(2), np.zeros(2))\n"
            "print(float(out.sum()))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(blocker / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert abs(float(out.stdout) - 2 * (np.tanh(3.0) + np.tanh(3.0 + 2 * np.tanh(3.0)))) < 1e-12


def test_the_disk_cache_serves_the_next_process_under_any_name(tmp_path):
    """The first process compiles and writes the cache beside the module; a second one,
    importing the same file under another name, still computes (the entries it cannot
    load, the loop's and those of the helpers it calls, are left alone). The GRU: its
    loops call BLAS through an external symbol (_gemm) that a cached loop finds again
    in the next process."""
    path = tmp_path / "gru_numba.py"
    path.write_text((GENERATED / "gru_numba.py").read_text())
    code = ("import importlib.util as u, sys, numpy as np\n"
            f"s = u.spec_from_file_location(sys.argv[1], {str(path)!r}); m = u.module_from_spec(s)\n"
            "sys.modules[s.name] = m; s.loader.exec_module(m)\n"
            "x = np.ones((2, 1, 3)); h = np.zeros((1, 1, 2))\n"
            "w = [np.full((6, 3), 0.1), np.full((6, 2), 0.2), np.zeros(6), np.zeros(6)]\n"
            "out, h_n, cache = m.gru_forward(x, h, *w); g = m.gru_backward(np.ones_like(out), cache)\n"
            "print(float(out.sum()), float(g['weight_hh'].sum()))\n")
    runs = [subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True)
            for name in ("first_name", "first_name", "another_name")]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    assert len({run.stdout for run in runs}) == 1
    assert list((tmp_path / "__pycache__").glob("*.nbi")), "no cache index beside the module"


def test_cli_backend_numba_writes_the_compiled_module_of_a_spec(tmp_path, capsys):
    out = tmp_path / "janet_numba.py"
    assert cli_main(["numpy", EXAMPLES[1], "--backend", "numba", "-o", str(out)]) == 0
    written = out.read_text().splitlines()
    assert written[1].startswith("# Regenerate with: lstm-derive numpy ") and "--backend numba -o " in written[1]
    assert written[2:] == numba_module(derive.derive(EXAMPLES[1])).splitlines()[2:]
    spec = importlib.util.spec_from_file_location("janet_numba", out)
    twin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twin)
    name = EXAMPLES[1]
    seq = sequence(name, dims_for(name, 2, 3, 2), 3, seed=1)
    err, key = worst(generated_grads(name, seq, module_=twin), generated_grads(name, seq))
    assert err <= 1e-12, (short(name), key, err)


def test_cli_backend_numba_on_a_cell_outside_the_frame_is_one_line_and_status_2(tmp_path, capsys):
    out = tmp_path / "mgu_numba.py"
    assert cli_main(["numpy", EXAMPLES[0], "--backend", "numba", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstm-derive:") and "no compiled module" in err and "Traceback" not in err
    assert not out.exists()


def test_committed_compiled_modules_are_what_the_build_renders():
    for name in derive.presets():
        text = render_numba_module(derive.derive(name))
        path = GENERATED / f"{name}_numba.py"
        assert (path.read_text("utf-8") if path.is_file() else None) == text, name
    assert {"pytorch", "gru", "graves", "nicodjimenez", "elman"} <= set(PRESETS)
    assert not (ROOT / "generated" / "mgu_numba.py").exists()


@pytest.mark.parametrize("name", ["pytorch", "gru", "graves", "nicodjimenez"])
def test_both_blas_libraries_give_the_numpy_module_numbers(name, monkeypatch):
    """The loops' products go through NumPy's own CBLAS when found (token int64), else
    scipy's Fortran gemm (token int32): both, in both dtypes, agree with the NumPy module
    (rows, strided column blocks, the columns and 1-D layouts)."""
    twin = compiled(name)
    assert np.asarray(twin._BLAS).dtype in (np.int64, np.int32)
    for token in (np.int64(0), np.int32(0)):
        if token.dtype == np.int64 and np.asarray(twin._BLAS).dtype != np.int64:  # NumPy's CBLAS not found
            continue
        monkeypatch.setattr(twin, "_BLAS", token)
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            err, key = _agree(name, dtype, None, 5, (3, 4, 3), seed=2)
            assert err <= tol, (name, token.dtype, dtype, key, err)


@pytest.mark.parametrize("name", ["pytorch", "gru"])
def test_the_unit_loops_are_marked_for_the_widest_vectors(name):
    """Each compiled loop carries the attribute that lets LLVM use 512-bit vectors
    (``_wide_vectors``); compiled afresh (a loop loaded from the disk cache keeps no IR)."""
    twin = compiled(name)
    seq = sequence(name, dims_for(name, 3, 4, 2), 3, seed=1)
    generated_grads(name, seq, module_=twin)
    for loop in ("_forward_steps_f64", "_bptt_steps_f64"):
        kernel = getattr(twin, loop)
        fresh = numba.njit(**twin._OPTIONS)(kernel.py_func)
        signature = kernel.signatures[0]
        fresh.compile(signature)
        ir = fresh.inspect_llvm(signature)
        assert '"prefer-vector-width"="512"' in ir, (name, loop)


# Cells of a user's spec that apply the other functions of the language in the
# step (IndRNN's frame, examples/indrnn.toml, with its equation replaced).
FUNCTION_CELLS = {
    "spelled": ["a = relu(W @ x + u * h_prev + b)",
                "h = maximum(tanh(a), minimum(abs(a - 1), softplus(a))) + log(1 + sqrt(1 + a*a))"],
    "steps": ["a = relu(W @ x + u * h_prev + b)", "h = sign(a) * softplus(a - 1) + heaviside(a - 1, 0.5)"],
}


@pytest.mark.parametrize("cell", sorted(FUNCTION_CELLS))
def test_a_users_cell_with_every_function_compiles_to_the_numbers_of_its_numpy_module(cell, tmp_path):
    """Each function of the language in a compiled loop (its row of SCALAR_FUNCTIONS):
    the twin of a spec that applies them gives its NumPy module's gradients (1e-12
    in float64, 1e-5 in float32) and central differences' (1e-6)."""
    import re

    from derive.numeric import evaluate, gradcheck

    text = (ROOT / "examples" / "indrnn.toml").read_text("utf-8").replace('name = "indrnn"', f'name = "{cell}"')
    forward = "forward = [\n" + "".join(f'  {{ eq = "{eq}" }},\n' for eq in FUNCTION_CELLS[cell]) + "]\n"
    text = re.sub(r"forward = \[\n.*?\]\n", forward, text, flags=re.S)
    text = text.replace("h      = { latex", "a      = { latex = 'a_t', meaning = \"the gate\" }\nh      = { latex")
    spec = tmp_path / f"{cell}.toml"
    spec.write_text(text, "utf-8")
    out = tmp_path / f"{cell}_numba.py"
    assert cli_main(["numpy", str(spec), "--backend", "numba", "-o", str(out)]) == 0
    loaded = importlib.util.spec_from_file_location(f"user_{cell}_numba", out)
    twin = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(twin)
    d = derive.derive(str(spec), loss="upstream")
    seq = evaluate.random_sequence(d, {"n": 3, "m": 4, "B": 2}, 4, np.random.default_rng(11), scale=0.5)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        err, key = worst(generated_grads(str(spec), seq, dtype=dtype, module_=twin),
                         generated_grads(str(spec), seq, dtype=dtype))
        assert err <= tol, (cell, dtype, key, err)
    grads = generated_grads(str(spec), seq, module_=twin)
    fd = gradcheck.parameter_differences(d, seq, lambda s: float(evaluate.loss(d, s)))
    for name, want in fd.items():
        np.testing.assert_allclose(grads[name], want, rtol=1e-6, atol=1e-8, err_msg=name)


@needs_torch
def test_the_twins_classes_are_torchs_and_their_options_use_the_compiled_siblings(monkeypatch):
    """The twins' LSTM, GRU and RNN classes against torch.nn (tests/test_torch_classes.py's
    comparison, a sample of its cases, float64 to 1e-10): RNN(nonlinearity='relu') runs
    generated/elman_relu_numba.py, LSTM(proj_size>0) generated/lstm_proj_numba.py."""
    import test_torch_classes as classes

    twins = {"LSTM": compiled("pytorch"), "GRU": compiled("gru"), "RNN": compiled("elman")}
    assert twins["RNN"]._sibling("elman_relu").__file__.endswith("elman_relu_numba.py")
    assert twins["LSTM"]._sibling("lstm_proj").__file__.endswith("lstm_proj_numba.py")
    monkeypatch.setattr(classes, "MODULES", {kind: getattr(m, kind) for kind, m in twins.items()})
    for kind, options, packed, (T, N), seed in classes.CASES[::15]:
        classes.compare(kind, options, packed, T, N, seed, np.float64, 1e-10)
    options_of_siblings = [c for c in classes.CASES if c[1].get("nonlinearity") == "relu"][:4] + \
        [c for c in classes.CASES if c[1].get("proj_size")][:4]
    for kind, options, packed, (T, N), seed in options_of_siblings:
        classes.compare(kind, options, packed, T, N, seed, np.float64, 1e-10)

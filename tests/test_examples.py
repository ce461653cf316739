"""The specs in examples/ run exactly as a user runs them: from their paths,
through the command line, with no code of the user's.

Each gives a derivation, the four generated files (listing, NumPy module,
LaTeX, Markdown), a module whose gradients agree with finite differences, and
the verifier. A user's spec with a mistake gets the same errors as a preset:
file, equation, place, exit status 2, and nothing written.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import derive

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


def lstm_derive(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "derive", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_there_are_at_least_two_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_build_spec_writes_the_four_files_of_the_users_cell_only(spec, tmp_path):
    (tmp_path / "specs").mkdir()
    shutil.copy(spec, tmp_path / "specs" / spec.name)
    out = tmp_path / "gen"
    run = lstm_derive("build", "--spec", f"specs/{spec.name}", "--out", "gen", cwd=tmp_path)  # the old --out
    assert run.returncode == 0, run.stderr
    name = derive.derive(spec).name
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}{s}" for s in (".txt", ".py", ".tex", ".md"))
    command = f"lstm-derive build --spec specs/{spec.name} -o gen"
    for path in out.iterdir():  # the files say how to rebuild them, and carry no path of this machine
        text = path.read_text("utf-8")
        assert f"Regenerate with: {command}" in text, path.name
        assert str(ROOT) not in text and str(tmp_path) not in text, path.name
    # the command in the header works from where the user ran build: nothing changes
    again = lstm_derive(*command.split()[1:], cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == "gen/ is up to date (4 files)\n", again.stdout + again.stderr
    assert lstm_derive(*command.split()[1:], "--check", cwd=tmp_path).returncode == 0
    # absolute paths give the same files (relative to where build runs), so --check agrees
    assert lstm_derive("build", "--spec", str(tmp_path / "specs" / spec.name), "-o", str(out), "--check",
                       cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_show_lists_the_users_derivation(spec):
    run = lstm_derive("show", str(spec))
    assert run.returncode == 0, run.stderr
    d = derive.derive(spec)
    for eq in d.backward:
        assert str(eq.lhs) in run.stdout


MISTAKES = {
    "misspelt symbol": (
        ("concat(f * h_prev, x)", "concat(f * h_prv, x)"),
        ["unknown symbol `h_prv`", "did you mean `h_prev`?", "equation `h_tilde = tanh("], "^"),
    "shape mismatch": (
        ('W_h     = { role = "param", shape = ["m", "m + n"]', 'W_h     = { role = "param", shape = ["m", "n"]'),
        ["shape mismatch", "W_h is (m, n)", "inner dimensions"], None),
    "unclosed parenthesis": (
        ("f = sigmoid(W_f", "f = sigmoid((W_f"),
        ["not a formula", "'(' was never closed"], "^"),
    "unused parameter": (
        ("[[recurrent]]", '[symbols.b_k]\nrole = "param"\nshape = ["m", 1]\n\n[[recurrent]]'),
        ["param `b_k` is declared but no equation uses it"], None),
    "code instead of a formula": (
        ("h = (1 - f) * h_prev + f * h_tilde", "h = __import__('os').system('true')"),
        ["h = __import__"], None),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_users_mistake_gets_a_clear_error_and_nothing_is_written(mistake, tmp_path):
    (old, new), expected, caret = MISTAKES[mistake]
    text = (ROOT / "examples" / "mgu.toml").read_text("utf-8")
    assert old in text
    text = text.replace(old, new)
    spec = tmp_path / "my_mgu.toml"
    spec.write_text(text, "utf-8")
    out = tmp_path / "gen"
    for args in (("build", "--spec", str(spec), "--out", str(out)), ("show", str(spec))):
        run = lstm_derive(*args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert run.stderr.startswith("lstm-derive: my_mgu.toml") or "my_mgu.toml" in run.stderr.splitlines()[0]
        for piece in expected:
            assert piece in run.stderr, (piece, run.stderr)
        if caret:
            assert caret in run.stderr
        assert "Traceback" not in run.stderr
        assert not out.exists()


# A correct formula and the same formula with one classic mistake, per example:
# the verifier is run on the user's spec path, as the README shows.
VERDICTS = {
    "mgu": ("dz_f", "df*f*(1 - f)", "df*(1 - f)"),
    "janet": ("dz_c_tilde", "dc*(1 - c_tilde**2)*(1 - sigmoid(s - 1))", "dc*(1 - c_tilde)*(1 - sigmoid(s - 1))"),
    "indrnn": ("dz_h", "dh*heaviside(h, 0)", "dh"),
    "slstm": ("dz_i", "di*i", "di"),
}


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_the_verifier_judges_the_users_cell(spec):
    quantity, right, wrong = VERDICTS[spec.stem]
    ok = lstm_derive("verify", "--spec", str(spec), quantity, right)
    assert ok.returncode == 0 and ok.stdout.startswith("right"), ok.stdout + ok.stderr
    bad = lstm_derive("verify", str(spec), quantity, wrong)
    assert bad.returncode == 1 and bad.stdout.startswith("wrong"), bad.stdout + bad.stderr
    assert "  - " in bad.stdout  # a diagnosis line names the term


def _import(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem + "_built", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_the_built_module_gives_the_gradient_of_its_own_forward(spec, tmp_path):
    """The user's module, imported from where `build --spec` wrote it: its
    rnn_backward is the gradient of sum(outputs * upstream) computed by its own
    rnn_forward, entry by entry by central differences, and truncate=T is full BPTT."""
    assert lstm_derive("build", "--spec", str(spec), "--out", str(tmp_path)).returncode == 0
    d = derive.derive(spec)
    module = _import(tmp_path / f"{d.name}.py")
    rng = np.random.default_rng(11)
    sizes = {dim: 3 + k for k, dim in enumerate(d.cell.dims)}
    sizes[d.cell.batch_dim] = 2
    T = 4

    def shaped(name):
        return tuple(int(sp.sympify(str(n)).subs(sizes)) for n in d.cell.symbols[name].shape)

    params = {p: rng.normal(scale=0.5, size=shaped(p)) for p in d.cell.names("param")}
    (x_name,) = d.cell.names("input")
    state, *others = d.cell.names("state")
    x = rng.normal(size=(T, *shaped(x_name)))
    h0 = rng.normal(scale=0.5, size=shaped(state))
    # further states (the sLSTM's c, n, m) start positive: its normaliser n stays away from 0
    initial = [h0] + [np.abs(rng.normal(scale=0.5, size=shaped(s))) + 0.5 for s in others]
    upstream = rng.normal(size=(T, *shaped(state)))

    def loss():
        out, _, _ = module.rnn_forward(x, params, *initial)
        return float(np.sum(out * upstream))

    _, _, cache = module.rnn_forward(x, params, *initial)
    grads = module.rnn_backward(upstream, cache)
    _, _, cache = module.rnn_forward(x, params, *initial)
    assert all(np.array_equal(grads[k], v) for k, v in module.rnn_backward(upstream, cache, truncate=T).items())
    checked = 0
    for name, array in [*params.items(), (x_name, x), *zip([state, *others], initial)]:
        key = d.gradient_name(name)
        for i in list(np.ndindex(*array.shape))[::5 if array.size > 10 else 1]:
            old = array[i]
            array[i] = old + 1e-6
            plus = loss()
            array[i] = old - 1e-6
            minus = loss()
            array[i] = old
            numeric = (plus - minus) / 2e-6
            assert abs(grads[key][i] - numeric) <= 1e-6 * max(1.0, abs(numeric)), (name, i, grads[key][i], numeric)
            checked += 1
    assert checked > 20

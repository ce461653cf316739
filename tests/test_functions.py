"""The table of elementwise functions (derive.spec.functions), row by row.

Each row's stated derivative is the SymPy class's own, its numeric forms
(float64, mpmath, SymPy, the NumPy text of an emitted module, the lambdified
kernels) agree with each other and with a central difference away from the
kinks, and at each kink the convention is torch autograd's: relu'(0) = 0,
|x|'(0) = 0, maximum and minimum split a tie 1/2, 1/2.
"""

from __future__ import annotations

import os

import mpmath
import numpy as np
import pytest
import sympy as sp

from derive.codegen.numpy_printer import numpy_text
from derive.numeric import evaluate as ev
from derive.numeric.kernels import NUMPY_OPS
from derive.spec import functions, ops
from derive.spec.expr import Scope, default_functions, parse
from derive.spec.latex import ArrayLatexPrinter
from derive.spec.pyprint import to_python

if os.environ.get("CI") == "true":
    import torch
else:
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install '.[test]'")

ROWS = [r for r in functions.FUNCTIONS.values() if r.name not in ("heaviside", "sign")]  # not helpers
X = [sp.Symbol(f"x{i}") for i in range(2)]
# points away from every kink (0 for relu/abs, ties for maximum/minimum) and inside every domain (log, sqrt)
POINTS = [(0.7, 0.3), (1.9, 2.4), (0.05, 1.3)]


def call(row, xs=X):
    return row.function(*xs[: row.arity])


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_the_stated_derivative_is_the_classes_own(row):
    y = call(row)
    for i, stated in enumerate(functions.partials(y)):
        own = sp.diff(y, X[i])
        for point in POINTS:
            at = {x: sp.Float(v) for x, v in zip(X, point)}
            assert abs(float((own - stated).xreplace(at).evalf(30))) < 1e-25, (row.name, i, point)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_numeric_forms_agree_with_each_other_and_with_a_central_difference(row):
    mpmath.mp.dps = 30
    y = call(row)
    names = {f"x{i}": f"x{i}" for i in range(2)}
    text = numpy_text(y, names)
    kernel = sp.lambdify(X[: row.arity], y, modules=[NUMPY_OPS, "numpy"])
    for point in POINTS:
        xs = point[: row.arity]
        f64 = float(row.float64(*(np.float64(v) for v in xs)))
        mp = float(row.mpmath(*(mpmath.mpf(v) for v in xs)))
        sym = float(sp.Float(row.sympy(*(sp.Float(v, 30) for v in xs))))
        printed = float(eval(text, {"np": np, "sigmoid": NUMPY_OPS["sigmoid"], row.numpy: row.float64},
                             {f"x{i}": np.float64(v) for i, v in enumerate(xs)}))
        assert f64 == pytest.approx(mp, rel=1e-14) and sym == pytest.approx(mp, rel=1e-14)
        assert printed == pytest.approx(mp, rel=1e-14) and float(kernel(*xs)) == pytest.approx(mp, rel=1e-14)
        for i in range(row.arity):
            stated = functions.partials(y)[i]
            env = {f"x{k}": np.float64(v) for k, v in enumerate(xs)}
            value = ev.evaluate(stated.xreplace({y: sp.Symbol("y")}), {**env, "y": f64})
            h = 1e-6
            up = list(xs); up[i] += h
            down = list(xs); down[i] -= h
            fd = (row.float64(*map(np.float64, up)) - row.float64(*map(np.float64, down))) / (2 * h)
            assert float(value) == pytest.approx(float(fd), rel=1e-7, abs=1e-9), (row.name, i, point)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_every_function_reads_back_from_its_printed_python(row):
    scope = Scope({f"x{i}": X[i] for i in range(2)}, functions=default_functions(0))
    y = call(row)
    assert parse(to_python(y), scope) == y
    for d in functions.partials(y):
        d = sp.sympify(d)
        assert parse(to_python(d), scope) == d
    assert parse("np." + to_python(y), scope) == y


def _torch_grads(name, *values):
    xs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    getattr(torch, name)(*xs).backward()
    return [float(x.grad) for x in xs]


@pytest.mark.parametrize("name, torch_name, at", [
    ("relu", "relu", (0.0,)),
    ("abs", "abs", (0.0,)),
    ("maximum", "maximum", (0.4, 0.4)),
    ("minimum", "minimum", (-1.5, -1.5)),
    ("relu", "relu", (-0.3,)),
    ("maximum", "maximum", (0.4, 0.1)),
    ("minimum", "minimum", (0.4, 0.1)),
])
def test_the_convention_at_a_kink_is_torchs(name, torch_name, at):
    """relu'(0) = 0, |x|'(0) = sign(0) = 0, a tie of maximum/minimum gives 1/2 each: as
    torch autograd, in the engine's evaluation (float64 and mpmath) and in the emitted NumPy text."""
    row = functions.FUNCTIONS[name]
    theirs = _torch_grads(torch_name, *at)
    y = call(row)
    value = row.float64(*map(np.float64, at))
    env = {f"x{i}": np.float64(v) for i, v in enumerate(at)}
    for i, stated in enumerate(functions.partials(y)):
        d = sp.sympify(stated).xreplace({y: sp.Symbol("y")})
        assert float(ev.evaluate(d, {**env, "y": value})) == theirs[i]
        mp_env = {k: mpmath.mpf(float(v)) for k, v in env.items()}
        assert float(ev.evaluate(d, {**mp_env, "y": mpmath.mpf(float(value))}, ev.MP)) == theirs[i]
        text = numpy_text(d, {"y": "y", **{k: k for k in env}})
        assert float(eval(text, {"np": np, "sigmoid": NUMPY_OPS["sigmoid"]}, {**env, "y": value})) == theirs[i]


def test_a_relu_gate_reads_its_derivative_from_its_output():
    import derive

    d = derive.derive("elman_relu")
    text = {str(eq.lhs): to_python(eq.rhs) for eq in d.backward}
    assert text["dz_h"] == "dh*heaviside(h, 0)"
    assert "> 0" in numpy_text(sp.Heaviside(sp.Symbol("h"), 0))


def test_every_row_prints_in_latex():
    printer = ArrayLatexPrinter({"x0": "a", "x1": "b"})
    assert printer.doprint(functions.relu(X[0])) == r"\operatorname{relu}(a)"
    assert printer.doprint(functions.maximum(X[0], X[1])) == r"\max(a, b)"
    assert printer.doprint(functions.sqrt(X[0])) == r"\sqrt{a}"
    assert printer.doprint(sp.Heaviside(X[0], 0)) == r"\mathbb{1}\left[a > 0\right]"
    assert printer.doprint(ops.sigmoid(X[0])) == r"\sigma(a)"


def test_gates_are_the_one_argument_functions_whose_derivative_the_engine_can_store():
    assert {r.name for r in functions.FUNCTIONS.values() if r.gate} == {
        "sigmoid", "tanh", "exp", "log", "relu", "softplus", "abs", "sqrt"}
    assert {r.name for r in functions.FUNCTIONS.values() if r.gate and r.in_value} == {
        "sigmoid", "tanh", "exp", "relu", "sqrt"}


# ---------------------------------------------------------------------------
# the verifier reads the new functions in a learner's Python and LaTeX

SLSTM = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "examples" / "slstm.toml")
INDRNN = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "examples" / "indrnn.toml")


@pytest.mark.parametrize("cell, quantity, formula, syntax", [
    ("elman_relu", "dz_h", "dh*heaviside(h, 0)", "python"),
    ("elman_relu", "dz_h", r"\frac{\partial L}{\partial h_t} \odot \mathbb{1}\left[h_t > 0\right]", "latex"),
    ("elman_relu", "dz_h", r"\frac{\partial L}{\partial h_t} \odot \operatorname{relu}'(x_t W_{ih}^{\top} + b_{ih} + h_{t-1} W_{hh}^{\top} + b_{hh})", "latex"),
    (INDRNN, "du", "sum_t(np.sum(dz_h*h_prev, axis=1, keepdims=True))", "python"),
    (SLSTM, "dz_i", "di*i", "python"),
    (SLSTM, "dz_i", "di*exp(i_tilde - m)", "python"),
    (SLSTM, "di_tilde", "dz_i + dm*heaviside(i_tilde - m_prev + softplus(-f_tilde), 0.5)", "python"),
])
def test_the_verifier_reads_the_new_functions(cell, quantity, formula, syntax):
    from derive.verifier.formula import verify

    v = verify(cell, quantity, formula, syntax, total=quantity.startswith("d") and quantity in ("du",))
    assert v.ok, v.message


def test_the_verifier_says_what_is_wrong_with_a_relu_derivative():
    from derive.verifier.formula import verify

    v = verify("elman_relu", "dz_h", "dh")
    assert not v.ok and v.status == 1
    v = verify("elman_relu", "dz_h", "dh*heaviside(h, 0.5)")  # the wrong convention at the kink: same almost everywhere
    assert v.ok or v.status == 1


@pytest.mark.parametrize("rhs", [
    "relu(W @ x + u * h_prev + b)",
    "softplus(W @ x + u * h_prev + b)",
    "abs(W @ x + u * h_prev + b)",
    "exp(W @ x + u * h_prev + b)",
    "sqrt(1 + (W @ x + u * h_prev + b)**2)",
    "maximum(W @ x, u * h_prev + b)",
    "minimum(tanh(W @ x), u * h_prev + b)",
    # the steps written in a forward equation: held constant (their rows' derivative 0), no DiracDelta
    "sign(W @ x + b) * tanh(u * h_prev + b) + heaviside(u * h_prev, 0.5) * softplus(W @ x)",
])
def test_each_function_as_a_cell_agrees_with_sympy_and_finite_differences(rhs, tmp_path):
    """A one-line cell per function: the engine's gradients against SymPy's derivative of
    the unrolled loss (derive.numeric.unrolled, 1e-25) and central differences (random
    points, none within 1e-3 of a kink)."""
    import derive
    from derive.numeric import gradcheck, unrolled

    text = open(INDRNN, encoding="utf-8").read().replace("relu(W @ x + u * h_prev + b)", rhs)
    spec = tmp_path / "cell.toml"
    spec.write_text(text.replace('name = "indrnn"', 'name = "cell"'), "utf-8")
    d = derive.derive(str(spec))
    unrolled.check(d)
    seq = ev.random_sequence(d, {"n": 2, "m": 3, "B": 2}, 4, np.random.default_rng(7), scale=0.3)
    _, grads = ev.run(d, seq)
    fd = gradcheck.parameter_differences(d, seq, lambda s: float(ev.loss(d, s)))
    for name, want in fd.items():
        np.testing.assert_allclose(grads[name], want, rtol=1e-6, atol=1e-8, err_msg=name)


def _refused_build(rhs: str, tmp_path) -> str:
    """``lstm-derive build --spec`` of IndRNN's frame with ``h = rhs``, as a user runs it:
    it must fail with one line (returned), exit 2, no traceback and no output folder."""
    import subprocess
    import sys

    text = open(INDRNN, encoding="utf-8").read().replace("relu(W @ x + u * h_prev + b)", rhs)
    spec = tmp_path / "cell.toml"
    spec.write_text(text.replace('name = "indrnn"', 'name = "cell"'), "utf-8")
    proc = subprocess.run([sys.executable, "-m", "derive", "build", "--spec", str(spec), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists()
    return proc.stderr


@pytest.mark.parametrize("rhs, function", [("sqrt(W @ x + u * h_prev + b)", "sqrt"),
                                           ("log(W @ x) + u * h_prev + b", "log")])
def test_a_cell_outside_a_functions_domain_is_refused_with_its_equation(rhs, function, tmp_path):
    """sqrt and log of a value that can be negative: the build's numeric proofs meet it at
    their random states; one message naming the equation and the function, exit 2, no file."""
    message = _refused_build(rhs, tmp_path)
    assert f"equation `h = {rhs}`" in message and f"{function}(x) needs" in message


def test_a_parameter_that_reaches_the_loss_only_through_a_step_is_refused_with_its_equation(tmp_path):
    """sign and heaviside have derivative 0 (as torch's): a parameter whose every path to
    the loss passes through one would get a gradient of 0 everywhere. One message naming
    it and its equation, exit 2, no file (it was a KeyError, ``lstm-derive: W``)."""
    rhs = "sign(W @ x + b) * tanh(u * h_prev)"
    message = _refused_build(rhs, tmp_path)
    assert "param `W` gets no gradient" in message and f"equation `h = {rhs}`" in message


def test_the_evaluators_refuse_an_argument_outside_the_domain_and_accept_one_inside():
    from derive.errors import DomainError

    x = sp.Symbol("x")
    for row, inside, outside in ((functions.FUNCTIONS["sqrt"], 0.0, -1e-12), (functions.FUNCTIONS["log"], 1e-300, 0.0)):
        for backend, number in ((ev.FLOAT, float), (ev.MP, mpmath.mpf)):
            arr = np.array([number(1.0), number(outside)], dtype=float if backend is ev.FLOAT else object)
            with pytest.raises(DomainError, match=f"{row.name}\\(x\\) needs"):
                ev.evaluate(row.function(x), {"x": arr}, backend)
            ok = np.array([number(2.0), number(inside)], dtype=arr.dtype)
            assert np.all(np.isfinite(np.asarray(ev.evaluate(row.function(x), {"x": ok}, backend), dtype=float))
                          | (np.asarray(ok, dtype=float) == 0))
    with pytest.raises(DomainError):  # a NaN is outside every domain
        ev.evaluate(functions.FUNCTIONS["sqrt"].function(x), {"x": np.array([np.nan])}, ev.FLOAT)


def test_a_formula_outside_a_domain_is_wrong_not_unreadable():
    from derive.verifier.formula import verify

    v = verify("coursera", "dft", "dc*sqrt(ft - 2)")
    assert v.status == 1 and "sqrt(x) needs x >= 0" in v.message

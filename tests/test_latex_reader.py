"""derive.verifier.latex_reader: LaTeX in a notation's own symbols -> the same SymPy
expressions derive.spec.expr builds; what derive.spec.latex prints reads back; what
learners paste reads as they mean it; errors point at the place."""

from __future__ import annotations

import pytest
import sympy as sp

import derive
from derive.spec import ops
from derive.errors import ExprError
from derive.spec.expr import Scope, default_functions, parse
from derive.spec.latex import to_latex
from derive.verifier.latex_reader import LatexError, LatexReader


@pytest.fixture(scope="module")
def readers():
    return {p: LatexReader(derive.derive(p)) for p in derive.presets()}


def py(preset, text):
    """The same formula written in the Python formula language."""
    d = derive.derive(preset)
    cell = d.cell
    symbols = {n: sp.Symbol(n) for n in list(cell.symbols) + d.names()}
    functions = default_functions(cell.feature_axis)
    t, T = sp.Symbol("t", integer=True, positive=True), sp.Symbol("T", integer=True, positive=True)
    functions["sum_t"] = lambda x: sp.Sum(x, (t, 1, T))
    return parse(text, Scope(symbols=symbols, dims=cell.dim_symbols(), functions=functions,
                             aliases=dict(cell.aliases), feature_axis=cell.feature_axis))


@pytest.mark.parametrize("preset", derive.presets())
def test_every_printed_equation_reads_back(readers, preset):
    d = derive.derive(preset)
    r = readers[preset]
    for eq in d.forward + d.backward:
        tex = to_latex(eq.lhs, d.cell) + " = " + to_latex(eq.rhs, d.cell)
        name, rhs = r.parse_equation(tex)
        assert name == str(eq.lhs), tex
        assert rhs == eq.rhs, tex
    for name in d.names():
        closed = d.closed_form(name)
        assert r.parse(to_latex(closed, d.cell)) == closed, name


LEARNER = [
    # (preset, LaTeX as pasted, the same in Python)
    ("coursera", r"da_{next}*\tanh(c_{next}) * \Gamma_o^{\langle t \rangle}*\left(1-\Gamma_o^{\langle t \rangle}\right)",
     "da_next*tanh(c_next)*ot*(1-ot)"),
    ("coursera", r"\left(1-\left(\widetilde c^{\langle t \rangle}\right)^2\right)", "1 - cct**2"),
    ("coursera", r"\tilde{c} + \tilde c + \widetilde{c}^{\langle t \rangle} + \tilde{c}^{<t>}", "4*cct"),
    ("coursera", r"\Gamma_u^{\langle t \rangle} + \Gamma_u + \Gamma_i", "3*it"),
    ("coursera", r"\tanh^2(c_{next}) + \tanh^{2}{\left(c^{\langle t \rangle} \right)}", "2*tanh(c_next)**2"),
    ("coursera", r"d\gamma_f^{\langle t \rangle} \begin{bmatrix} a_{prev} \\ x_t\end{bmatrix}^T",
     "dft @ concat(a_prev, xt).T"),
    ("coursera", r"W_f^T d\gamma_f + W_u^{\top} d\gamma_u + {W_c}^{\intercal} dp\tilde{c} + W_o^{\mathsf{T}} d\gamma_o",
     "Wf.T @ dft + Wi.T @ dit + Wc.T @ dcct + Wo.T @ dot"),
    ("coursera", r"W_f[:, :n_a]^{T} d\gamma_f", "Wf[:, :n_a].T @ dft"),
    ("coursera", r"W_f[:, n_a:]^{T} d\gamma_f", "Wf[:, n_a:n_a+n_x].T @ dft"),
    ("coursera", r"\sum_{batch} d\gamma_f^{\langle t \rangle}", "np.sum(dft, axis=1, keepdims=True)"),
    ("coursera", r"\frac{\partial L}{\partial W_f} + dW_f + \mathrm{d}W_f", "3*dWf"),
    ("coursera", r"\frac{\partial \mathcal{L}}{\partial c^{\langle t \rangle}}", "dc"),
    ("coursera", r"\frac{\partial L}{\partial a^{\langle t \rangle}}", "da_next"),
    ("coursera", r"dc_{next} + dc_{prev} + da_{prev}", "dc_next + dc_prev + da_prev"),
    ("coursera", r"dx^{\langle t \rangle} + dx_t + \frac{\partial L}{\partial x^{\langle t \rangle}}", "3*dxt"),
    ("coursera", r"\sigma\left(W_f [a^{\langle t-1 \rangle}; x^{\langle t \rangle}] + b_f\right)",
     "sigmoid(Wf @ concat(a_prev, xt) + bf)"),
    ("coursera", r"\sigma'(\Gamma_f) + \tanh'(c_{next})",
     "sigmoid(ft)*(1 - sigmoid(ft)) + 1 - tanh(c_next)**2"),
    ("coursera", r"\frac{1}{2} \Gamma_f \cdot \Gamma_i", "ft*it/2"),
    ("coursera", r"W_f \cdot \begin{bmatrix} a_{prev} \\ x_t \end{bmatrix}", "Wf @ concat(a_prev, xt)"),
    ("coursera", r"e^{\Gamma_f} + \exp(\Gamma_f) + \log(\Gamma_f) + \ln \Gamma_f", "2*exp(ft) + 2*log(ft)"),
    ("coursera", r"\operatorname{softmax}\left(W_y a^{\langle t \rangle} + b_y\right)", "softmax(Wy @ a_next + by)"),
    ("coursera", r"\text{sigmoid}(z) ", None),
    ("coursera", r"\sum_{t=1}^{T} d\gamma_f \begin{bmatrix} a_{prev} \\ x_t\end{bmatrix}^T", "sum_t(dft @ concat(a_prev, xt).T)"),
    ("coursera", "Γ_f ⊙ (1 − Γ_f) · dc", "ft*(1-ft)*dc"),
    ("graves", r"\epsilon_s^t \odot c_{t-1} \odot f_t \odot (1 - f_t)", "epsilon_s*c_prev*f*(1-f)"),
    ("graves", r"\varepsilon_s^t + \delta_\phi^t", "epsilon_s + delta_phi"),
    ("graves", r"W_{ci} c_{t-1}", "W_ci * c_prev"),  # a peephole: a diagonal matrix, an elementwise product
    ("graves", r"W_{hi} h_{t-1} + w_{c\iota} s_c^{t-1}", "W_hi @ h_prev + W_ci*c_prev"),
    ("lipton", r"\phi(s(t)) \odot o(t) + \phi\left(s^{(t)}\right)", "tanh(s)*o + tanh(s)"),
    ("lipton", r"\delta f^{(t)} + \frac{\partial L}{\partial s^{(t-1)}}", "dz_f + ds_prev"),
    ("nicodjimenez", r"\frac{dL}{dx_c(t)} + \frac{dL(t)}{dx_c(t)}", "2*dxc"),
    ("nicodjimenez", r"W_i^T \delta i(t)", "wi.T @ di_input"),
    ("nicodjimenez", r"\delta i(t) \otimes x_c(t)", "np.outer(di_input, xc)"),
    ("pytorch", r"dz_i W_{hi} + \frac{\partial L}{\partial z_{f,t}} W_{hf}", "dz_i @ W_hi + dz_f @ W_hf"),
    ("tmva", r"\tilde{c}_t + \tilde{c} + c\_tilde", "3*c_tilde"),
]


@pytest.mark.parametrize("preset,tex,python", LEARNER)
def test_what_learners_paste(readers, preset, tex, python):
    r = readers[preset]
    if python is None:
        with pytest.raises(ExprError):
            r.parse(tex)
        return
    want = py(preset, python)
    got = r.parse(tex)
    if got != want:
        assert sp.simplify(got - want) == 0 if not got.atoms(ops.matmul) else False, (got, want)


def test_equation_wrappers_are_ignored(readers):
    r = readers["coursera"]
    for tex in (
        r"d\gamma_f^{\langle t \rangle} &= dc \odot c_{prev} \tag{10}",
        r"$$d\gamma_f = dc \odot c_{prev}$$",
        r"\begin{equation} d\gamma_f = dc \odot c_{prev} \label{eq:dft} \end{equation}",
        r"\displaystyle d\gamma_f = dc \odot c_{prev} \\",
        r"\[ d\gamma_f = dc \odot c_{prev}. \]",
    ):
        name, rhs = r.parse_equation(tex)
        assert name == "dft" and rhs == py("coursera", "dc*c_prev"), tex


def test_concat_symbol_and_its_definition(readers):
    r = readers["coursera"]
    d = derive.derive("coursera")
    tex = to_latex(d.forward[0].lhs, d.cell) + " = " + to_latex(d.forward[0].rhs, d.cell)
    assert r.parse_equation(tex) == ("concat", d.forward[0].rhs)
    assert r.parse(to_latex(sp.Symbol("concat"), d.cell)) == sp.Symbol("concat")


def test_juxtaposition_is_the_matrix_product_only_when_shapes_make_one(readers):
    r = readers["coursera"]
    assert r.parse(r"W_f^T d\gamma_f") == ops.matmul(ops.transpose(sp.Symbol("Wf")), sp.Symbol("dft"))
    assert r.parse(r"\Gamma_o (1 - \Gamma_o)") == sp.Symbol("ot") * (1 - sp.Symbol("ot"))
    assert r.parse(r"2 \Gamma_o") == 2 * sp.Symbol("ot")
    nico = readers["nicodjimenez"]
    assert nico.parse(r"s(t) o(t)") == sp.Symbol("s") * sp.Symbol("o")  # two vectors: elementwise


ERRORS = [
    (r"\Gamma_z^{\langle t \rangle} dc", "unknown symbol", 0, "did you mean"),
    (r"dc \odot \Gamma_q", "unknown symbol", len(r"dc \odot "), None),
    (r"\input{/etc/passwd}", "unknown command `\\input`", 0, None),
    (r"dc \odot {c_{prev}", "never closed", None, None),
    (r"dc } c_{prev}", "without its", 3, None),
    (r"\frac{dc}", "two arguments", 0, None),
    (r"dc^{9^{9}}", "superscript", None, None),
    (r"dc^{99}", "too large", None, None),
    (r"dc = dc = dc", "one equation", None, None),
    (r"\sum dc", "runs over", 0, None),
    (r"\begin{bmatrix} a & b \\ c & d \end{bmatrix}", "either as rows", 0, None),
    ("dc \\\\ dc", "one equation", None, None),
    ("", "empty", None, None),
    ("dc \x00", "NUL", None, None),
    (r"d\Gamma_f", "pre-activation is `dft`", None, None),
    (r"\frac{\partial L}{\partial \Gamma_f}", "pre-activation is `dft`", 0, None),
    ("dc ☃", "unexpected character", 3, None),
]


@pytest.mark.parametrize("tex,message,col,extra", ERRORS)
def test_errors_point_at_the_place(readers, tex, message, col, extra):
    r = readers["coursera"]
    with pytest.raises(LatexError) as exc:
        r.parse_equation(tex)
    assert message in str(exc.value)
    if col is not None:
        assert exc.value.col == col
    if extra:
        assert extra in str(exc.value)
    assert isinstance(exc.value, ExprError)


def test_absurd_input_is_rejected_before_any_work(readers):
    r = readers["coursera"]
    for tex in ("{" * 10_000 + "x" + "}" * 10_000, "x" * 1_000_000, "(" * 101 + "dc" + ")" * 101,
                "\\left(" * 120 + "dc" + "\\right)" * 120):
        with pytest.raises(LatexError):
            r.parse(tex)
    with pytest.raises(LatexError):
        r.parse(b"dc")  # bytes are not text


def test_function_aliases_and_alias_targets(readers):
    # lipton writes phi for tanh: an alias whose target is a function
    assert readers["lipton"].parse(r"\phi(s^{(t)})") == sp.tanh(sp.Symbol("s"))
    for preset, r in readers.items():
        d = derive.derive(preset)
        for tex, target in d.cell.latex_aliases.items():
            got = r.parse(tex + ("(x)" if target in ("tanh", "sigmoid") else ""))
            if target in ("tanh", "sigmoid"):
                continue
            assert got == (d.cell.dim_symbols()[target] if target in d.cell.dims else sp.Symbol(target)), (preset, tex)


def test_a_function_word_beats_a_shorter_name_it_starts_with():
    # elman_relu has a symbol `h`: `\operatorname{heaviside}(h, 0)` is the step function,
    # not h times e, a, v, ... (the longest reading wins)
    assert derive.verify("elman_relu", "dz_h", r"dh \odot \operatorname{heaviside}(h, 0)", "latex").status == 0
    assert derive.verify("elman_relu", "dz_h", r"dh \odot \operatorname{heaviside}(-h, 0)", "latex").status == 1
    # the form the write-ups print still reads
    assert derive.verify("elman_relu", "dz_h", r"dh \odot \mathbb{1}\left[h > 0\right]", "latex").status == 0

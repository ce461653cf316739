r"""LaTeX as pasted from a page (issue 13, item 11): a line of an ``align``
block (``&=``, a trailing ``\\[8pt]``, ``\nonumber``, ``\tag``), a whole block
verified line by line (Python API and CLI, one verdict each and an overall
exit status), and the derivative notations ``\sigma'(z)``, ``\sigma^{\prime}(z)``,
``\tanh'(x)``. Which formula is right is the engine's answer (itself proven
against unrolled SymPy, finite differences and torch autograd elsewhere); a
mutated line must be found wrong."""

from __future__ import annotations

import json

import pytest

from derive.cli import main as cli
from derive.verifier.block import block_status, split_block, verify_block
from derive.verifier.formula import verify

G_O = r"\Gamma_o^{\langle t \rangle}"
G_U = r"\Gamma_u^{\langle t \rangle}"
G_F = r"\Gamma_f^{\langle t \rangle}"
C_T = r"\widetilde{c}^{\langle t \rangle}"
A_CONCAT = r"\begin{bmatrix} a_{prev} \\ x_t \end{bmatrix}"

# The course's backward equations as a learner types them into an align block
# (the notebook's names: \Gamma_u, \widetilde{c}, c_{next}, da_{next}, `*` elementwise).
D_GAMMA_O = rf"d\gamma_o^{{\langle t \rangle}} &= da_{{next}} * \tanh(c_{{next}}) * {G_O} * (1 - {G_O})"
D_C_TILDE = (rf"dp\widetilde{{c}}^{{\langle t \rangle}} &= \left(dc_{{next}} * {G_U} + {G_O} (1 - \tanh^2(c_{{next}})) "
             rf"* {G_U} * da_{{next}}\right) * (1 - ({C_T})^2)")
D_GAMMA_U = (rf"d\gamma_u^{{\langle t \rangle}} &= \left(dc_{{next}} * {C_T} + {G_O} (1 - \tanh^2(c_{{next}})) "
             rf"* {C_T} * da_{{next}}\right) * {G_U} * (1 - {G_U})")
D_GAMMA_F = (rf"d\gamma_f^{{\langle t \rangle}} &= \left(dc_{{next}} * c_{{prev}} + {G_O} (1 - \tanh^2(c_{{next}})) "
             rf"* c_{{prev}} * da_{{next}}\right) * {G_F} * (1 - {G_F})")
D_C_PREV = rf"dc_{{prev}} &= dc_{{next}} * {G_F} + {G_O} * (1 - \tanh^2(c_{{next}})) * {G_F} * da_{{next}}"
D_W_F = rf"dW_f &= d\gamma_f^{{\langle t \rangle}} {A_CONCAT}^T"

ALIGN = "\n".join([
    r"\begin{align}",
    D_GAMMA_O + r" \tag{7} \\[8pt]",
    D_C_TILDE + r" \tag{8} \\[8pt]",
    D_GAMMA_U + r" \tag{9} \\[8pt]",
    D_GAMMA_F + r" \tag{10} \\[8pt]",
    D_W_F + r" \nonumber \\",
    D_C_PREV + r" \label{eq:dcprev}",
    r"\end{align}",
])


@pytest.mark.parametrize("suffix", [r" \\[8pt]", r" \\", r" \nonumber \\", r" \tag{7} \\[2mm]", r" \\*[4pt]",
                                    r" \notag", r",", r". \\"])
def test_one_line_of_an_align_block(suffix):
    v = verify("coursera", D_GAMMA_O + suffix, syntax="latex")
    assert v.ok and v.quantity == "dot", v.message


def test_a_line_with_a_mistake_is_still_wrong():
    v = verify("coursera", D_GAMMA_O.replace(r"* (1 - " + G_O + ")", "") + r" \\[8pt]", syntax="latex")
    assert not v.ok and v.quantity == "dot"


def test_an_align_block_verifies_line_by_line():
    results = verify_block("coursera", ALIGN)
    assert [r.verdict.quantity for r in results] == ["dot", "dcct", "dit", "dft", "dWf", "dc_prev"]
    assert all(r.status == 0 for r in results), [r.message for r in results]
    assert block_status(results) == 0
    # one line broken: its verdict alone says wrong, the block's status is 1
    broken = ALIGN.replace(r"dc_{next} * c_{prev} +", r"dc_{next} +")
    results = verify_block("coursera", broken)
    assert [r.status for r in results] == [0, 0, 0, 1, 0, 0]
    assert block_status(results) == 1


def test_a_bmatrix_inside_a_line_keeps_its_rows():
    assert len(split_block(ALIGN)) == 6
    assert split_block(D_W_F + r" \\") == [D_W_F]


def test_continuation_lines_and_a_repeated_left_side():
    text = "\n".join([
        r"\begin{align*}",
        rf"dc_{{prev}} &= dc_{{next}} * {G_F} \nonumber \\",
        rf"&\quad + {G_O} * (1 - \tanh^2(c_{{next}})) * {G_F} * da_{{next}} \\",
        rf"&= dc_{{next}} * {G_F} + {G_O} * \tanh'(c_{{next}}) * {G_F} * da_{{next}}",
        r"\end{align*}",
    ])
    lines = split_block(text)
    assert len(lines) == 2 and lines[1].startswith("dc_{prev} = dc_{next}") and "\\quad +" in lines[0]
    results = verify_block("coursera", text)
    assert [(r.verdict.quantity, r.status) for r in results] == [("dc_prev", 0), ("dc_prev", 0)]


def test_an_unreadable_line_gets_its_reason_and_the_others_their_verdicts():
    text = ALIGN.replace(D_W_F, r"dq &= 1")
    results = verify_block("coursera", text)
    assert [r.status for r in results] == [0, 0, 0, 0, 2, 0]
    assert "unknown symbol" in results[4].message
    assert block_status(results) == 2


@pytest.mark.parametrize("derivative", [r"\sigma'", r"\sigma^{\prime}", r"\sigma^\prime", r"\mathrm{sigmoid}'",
                                        r"\operatorname{sigmoid}'"])
def test_sigma_prime_notation(derivative):
    preact = rf"\left(W_o {A_CONCAT} + b_o\right)"
    text = rf"d\gamma_o^{{\langle t \rangle}} = da_{{next}} \odot \tanh(c_{{next}}) \odot {derivative}{preact}"
    assert verify("coursera", text, syntax="latex").ok
    # the derivative at another point is wrong
    wrong = text.replace("+ b_o", "+ b_f")
    assert not verify("coursera", wrong, syntax="latex").ok


@pytest.mark.parametrize("derivative", [r"\tanh'", r"\tanh^{\prime}"])
def test_tanh_prime_notation(derivative):
    text = rf"dc_{{prev}} = dc_{{next}} \odot {G_F} + {G_O} \odot {derivative}(c_{{next}}) \odot {G_F} \odot da_{{next}}"
    assert verify("coursera", text, syntax="latex").ok


def test_a_prime_after_a_name_that_is_no_function_is_a_clear_error():
    with pytest.raises(Exception, match="prime"):
        verify("coursera", r"dc_{prev} = c_{next}'", syntax="latex")


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_one_verdict_per_equation(tmp_path, capsys):
    path = tmp_path / "block.tex"
    path.write_text(ALIGN)
    code, out, _ = run(capsys, "verify", "coursera", "--latex", "--file", path)
    assert code == 0, out
    assert out.count("right: the formula is") == 6 and "6 of 6 equations right" in out
    path.write_text(ALIGN.replace(r"dc_{next} * c_{prev} +", r"dc_{next} +"))
    code, out, _ = run(capsys, "verify", "coursera", "--latex", "--file", path)
    assert code == 1 and "equation 4:" in out and "5 of 6 equations right; 1 wrong" in out
    code, out, _ = run(capsys, "verify", "coursera", "--latex", "--json", "--file", path)
    d = json.loads(out)
    assert code == 1 and d["status"] == 1 and [line["status"] for line in d["lines"]] == [0, 0, 0, 1, 0, 0]


def test_cli_block_of_python_lines(capsys):
    code, out, _ = run(capsys, "verify", "coursera", "dft = dc*c_prev*ft*(1-ft)\ndot = da_next*tanh(c_next)*ot")
    assert code == 1 and "1 of 2 equations right" in out


def test_cli_block_with_a_quantity_is_an_input_error(capsys):
    code, _, err = run(capsys, "verify", "coursera", "--latex", "dft", ALIGN)
    assert code == 2 and "give no QUANTITY" in err


def test_python_lines_go_on_in_open_brackets():
    text = ("dft = (dc_next*c_prev\n"
            "       + ot*(1 - tanh(c_next)**2)*c_prev*da_next)*ft*(1 - ft)   # the notebook's dft\n"
            "\n"
            "dot = da_next*tanh(c_next) \\\n"
            "      *ot*(1 - ot)\n")
    results = verify_block("coursera", text, "python")
    assert [(r.verdict.quantity, r.status) for r in results] == [("dft", 0), ("dot", 0)]

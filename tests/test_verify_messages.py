"""What `verify` and `check PRESET FILE:NAME` say where a learner was misled before:

- a gate's VALUE left out of a product is not called its missing derivative
  (`dc_prev = dc_next*ft + ...` where the da_next term lacks ft), while half of a
  derivative left out still is (`dft` with `(1 - ft)` but no `ft`);
- a function that raises is "could not check" (exit 2), never "wrong";
- a parameter the notation has no name for gets the likely reason: an initial
  state (`h0`: a whole-sequence function, --sequence) or a cache (`lstm-derive
  check FILE`).
The verdicts themselves are the derivation's (compared on numbers); these tests
pin what the sentences claim, against the structure of the formulas offered.
"""

from __future__ import annotations

import pytest

from derive.cli import main as cli

DC_TERM = "ot*(1-tanh(c_next)**2)*da_next"


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_missing_gate_value_is_not_a_missing_derivative(capsys):
    code, out, _ = run(capsys, "verify", "coursera", "dc_prev", f"dc_next*ft + {DC_TERM}")
    assert code == 1
    assert "lacks the factor ft" in out and "gate's value here, not its derivative" in out
    assert "derivative of the sigmoid" not in out


def test_half_a_derivative_left_out_is_still_named_as_the_derivative(capsys):
    code, out, _ = run(capsys, "verify", "coursera", "dft", f"(dc_next*c_prev + {DC_TERM}*c_prev)*(1-ft)")
    assert code == 1 and "the derivative of the sigmoid in `ft`" in out and "gate's value" not in out


SEQUENCE_RNN = '''import numpy as np


def backward(dh, x, h, W_ih, W_hh, b_ih, b_hh{extra}):
    T = x.shape[0]
    dh_next = np.zeros_like(h[0])
    for t in reversed(range(T)):
        dh_next = dh[t] + dh_next
    return x, h, W_ih, W_hh, b_ih, b_hh
'''


def test_a_function_that_raises_could_not_be_checked(tmp_path, capsys):
    path = tmp_path / "seq.py"
    path.write_text(SEQUENCE_RNN.format(extra="").replace("T = x.shape[0]", "T = x.shape[0] @ np.ones((5, 5))"))
    code, out, _ = run(capsys, "check", "elman", f"{path}:backward")
    assert code == 2 and out.startswith("could not check") and "--sequence" in out


@pytest.mark.parametrize("extra, words", [(", h0", "looks like an initial state"),
                                          (", cache", "comes from your own forward")])
def test_an_unknown_parameter_gets_its_likely_reason(tmp_path, capsys, extra, words):
    path = tmp_path / "seq.py"
    path.write_text(SEQUENCE_RNN.format(extra=extra))
    code, out, err = run(capsys, "check", "elman", f"{path}:backward")
    assert code == 2 and words in err

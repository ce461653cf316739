"""A learner's day with the tool (issue 16): the small promises the docs and the
command line make, each checked as a user meets it."""

from __future__ import annotations

import numpy as np

import derive
from derive.numeric import evaluate


def test_evaluate_run_keys_are_the_ones_its_docstring_names():
    d = derive.derive("coursera")
    T = 3
    seq = evaluate.random_sequence(d, {"n_x": 2, "n_a": 3, "n_y": 2, "m": 4}, T, np.random.default_rng(0))
    _, grads = evaluate.run(d, seq, truncate=2)
    cell = d.cell
    expected = {d.gradient_name(p) for p in cell.names("param")}
    expected |= {d.gradient_name(s) for s in cell.names("state")}
    expected |= {(d.gradient_name(x), t) for x in cell.names("input") for t in range(T)}
    assert set(grads) == expected
    assert {"dWf", "da_prev", "dc_prev", ("dxt", 0)} <= set(grads)
    for word in ('"dWf"', '"da_prev"', '("dxt", t)', "random_sequence", "Sequence("):
        assert word in evaluate.run.__doc__

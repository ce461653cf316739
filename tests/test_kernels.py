"""Derivation.kernels(): the in-memory NumPy kernels (sympy.lambdify, cse=True).

Proven against torch autograd (the forward written in torch, loss heads
included), seven-point finite differences in float64 and the reference
interpreter, on random sizes (hypothesis) including T = 1 and a batch of 1.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import derive
from derive.numeric import evaluate
from derive.numeric.kernels import Kernels, stable_sigmoid
from test_generated_reference import (
    dims_for,
    finite_differences,
    generated_grads,
    module,
    needs_torch,
    rel_err,
    sequence,
    torch_grads,
    worst,
)

PRESETS = derive.presets()
LOSSES = [None, "upstream"]  # the preset's own loss head, and a given gradient on the output
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cases = st.tuples(
    st.sampled_from(PRESETS),
    st.sampled_from(LOSSES),
    st.integers(1, 5),  # T
    st.integers(1, 4),  # input size
    st.integers(1, 4),  # hidden size
    st.integers(1, 3),  # batch
    st.integers(0, 2**16),
)


def test_kernels_is_a_cached_method_of_the_derivation():
    d = derive.derive("coursera")
    k = d.kernels()
    assert isinstance(k, Kernels) and d.kernels() is k


@needs_torch
@FAST
@given(cases)
@example(("pytorch", None, 1, 1, 1, 1, 0))
@example(("coursera", None, 1, 2, 2, 1, 1))
@example(("nicodjimenez", None, 1, 2, 2, 1, 2))
@example(("graves", "upstream", 1, 1, 2, 1, 3))
def test_kernels_equal_torch_autograd_float64(case):
    name, loss, T, d_in, hidden, batch, seed = case
    seq = sequence(name, dims_for(name, d_in, hidden, batch), T, seed, loss=loss)
    d = derive.derive(name, loss=loss)
    value, ref = torch_grads(name, seq, loss=loss)
    total, grads = d.kernels().run(seq)
    assert abs(total - value) <= 1e-12 * max(1.0, abs(value))
    err, key = worst(grads, ref)
    assert err <= 1e-10, (name, loss, key, err)


@needs_torch
@FAST
@given(cases)
@example(("tmva", "upstream", 1, 2, 2, 1, 0))
def test_kernels_float32_stay_float32_and_close_to_torch_float64(case):
    name, loss, T, d_in, hidden, batch, seed = case
    seq = sequence(name, dims_for(name, d_in, hidden, batch), T, seed, loss=loss)
    _, ref = torch_grads(name, seq, loss=loss)
    single = evaluate.Sequence(
        {k: v.astype(np.float32) for k, v in seq.params.items()},
        [{k: np.asarray(v, np.float32) for k, v in step.items()} for step in seq.steps],
        {k: v.astype(np.float32) for k, v in seq.initial.items()},
        seq.dims,
    )
    _, grads = derive.derive(name, loss=loss).kernels().run(single)
    assert {np.asarray(v).dtype for v in grads.values()} == {np.dtype(np.float32)}
    err, key = worst(grads, ref)
    assert err <= 1e-4, (name, loss, key, err)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", PRESETS)
def test_kernels_equal_finite_differences(name, loss):
    seq = sequence(name, dims_for(name, 2, 2, 2), 3, seed=21, loss=loss)
    d = derive.derive(name, loss=loss)
    k = d.kernels()
    fd = finite_differences(lambda s: k.loss(k.forward(s)), seq, d)
    _, grads = k.run(seq)
    err, key = worst(grads, fd)
    assert err <= 1e-10, (name, loss, key, err)


@FAST
@given(cases)
def test_kernels_equal_the_reference_interpreter(case):
    name, loss, T, d_in, hidden, batch, seed = case
    seq = sequence(name, dims_for(name, d_in, hidden, batch), T, seed, loss=loss)
    d = derive.derive(name, loss=loss)
    ref_loss, ref = evaluate.run(d, seq)
    total, grads = d.kernels().run(seq)
    assert abs(total - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss))
    err, key = worst(grads, ref)
    assert err <= 1e-12, (name, loss, key, err)


def test_one_step_kernels_are_the_courses_cell_functions():
    """cell_backward(da_next, dc_next, cache values) is lstm_cell_backward."""
    k = derive.derive("coursera", loss="upstream").kernels()
    gen = module("coursera")
    rng = np.random.default_rng(4)
    n_x, n_a, m = 3, 4, 2
    p = {f"W{g}": rng.standard_normal((n_a, n_a + n_x)) for g in "fico"}
    p.update({f"b{g}": rng.standard_normal((n_a, 1)) for g in "fico"})
    p.update(Wy=rng.standard_normal((2, n_a)), by=rng.standard_normal((2, 1)))
    xt, a_prev, c_prev = rng.standard_normal((n_x, m)), rng.standard_normal((n_a, m)), rng.standard_normal((n_a, m))
    env = {**p, "xt": xt, "a_prev": a_prev, "c_prev": c_prev}
    values = k.step_forward(env)
    a_next, c_next, _, cache = gen.lstm_cell_forward(xt, a_prev, c_prev, p)
    assert rel_err(values["a_next"], a_next) <= 1e-14 and rel_err(values["c_next"], c_next) <= 1e-14
    da_next, dc_next = rng.standard_normal((n_a, m)), rng.standard_normal((n_a, m))
    mine = k.cell_backward({**env, **values, "da_next": da_next, "dc_next": dc_next})
    theirs = gen.lstm_cell_backward(da_next, dc_next, cache)
    for key, value in theirs.items():
        assert rel_err(mine[key], value) <= 1e-12, key
    # step_backward: the same step with the gluing equations, later(x) given by name
    full = k.step_backward({**env, **values, "da": da_next, "later:da_prev": np.zeros((n_a, m)),
                            "later:dc_prev": dc_next})
    assert rel_err(full["dWf"], theirs["dWf"]) <= 1e-12


def test_kernels_match_the_generated_modules():
    for name in PRESETS:
        seq = sequence(name, dims_for(name, 3, 2, 2), 4, seed=8)
        _, grads = derive.derive(name, loss="upstream").kernels().run(seq)
        theirs = generated_grads(name, seq)
        for key, value in theirs.items():
            assert rel_err(grads[key], value) <= 1e-12, (name, key)


def test_kernel_sigmoid_is_stable():
    z = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            s = stable_sigmoid(z)
            s32 = stable_sigmoid(z.astype(np.float32))
    assert np.array_equal(s, [0.0, s[1], 0.5, s[3], 1.0]) and s32.dtype == np.float32
    assert abs(s[3] - 1 / (1 + np.exp(-50.0))) <= 1e-16


def test_kernels_read_dimensions_off_the_arrays():
    k = derive.derive("nicodjimenez").kernels()
    seq = sequence("nicodjimenez", {"x_dim": 3, "mem_cell_ct": 5}, 2, seed=1, loss=None)
    env = {**seq.params, **seq.steps[0], **seq.initial}
    values = k.step_forward(env)  # no dimension given: x_dim and mem_cell_ct come from the shapes
    assert values["h"].shape == (5,)
    with pytest.raises(KeyError, match="no value for `x`"):
        k.step_forward({**seq.params, **seq.initial})


def test_cell_backward_with_the_softmax_head_needs_only_the_gradients_from_outside():
    """derive("coursera").kernels().cell_backward (the default loss: a softmax head)
    takes the step's forward values and da_next, dc_next only, and gives the course's
    own printed numbers on the notebook's lstm_cell_backward / rnn_cell_backward test
    cells (tests/test_course_protocol.py names the source); the head's gradients are
    not part of it."""
    np.random.seed(1)
    xt, a_prev, c_prev = np.random.randn(3, 10), np.random.randn(5, 10), np.random.randn(5, 10)
    p = {}
    for g in "fioc":
        p[f"W{g}"], p[f"b{g}"] = np.random.randn(5, 8), np.random.randn(5, 1)
    p["Wy"], p["by"] = np.random.randn(2, 5), np.random.randn(2, 1)
    k = derive.derive("coursera").kernels()
    env = {**p, "xt": xt, "a_prev": a_prev, "c_prev": c_prev}
    env.update(k.step_forward(env))
    da_next, dc_next = np.random.randn(5, 10), np.random.randn(5, 10)
    g = k.cell_backward({**env, "da_next": da_next, "dc_next": dc_next})
    assert not {"dzy", "dWy", "dby"} & g.keys()
    assert abs(g["dxt"][1][2] - 3.23055911511) <= 1e-11
    assert abs(g["da_prev"][2][3] - -0.0639621419711) <= 1e-13
    assert abs(g["dc_prev"][2][3] - 0.797522038797) <= 1e-12
    assert abs(g["dWo"][1][2] - 0.331311595289) <= 1e-12
    assert abs(g["dbc"][4][0] - 0.25587763) <= 1e-8

    np.random.seed(1)
    xt, a_prev = np.random.randn(3, 10), np.random.randn(5, 10)
    p = {"Wax": np.random.randn(5, 3), "Waa": np.random.randn(5, 5), "Wya": np.random.randn(2, 5),
         "ba": np.random.randn(5, 1), "by": np.random.randn(2, 1)}
    k = derive.derive("coursera_rnn").kernels()
    env = {**p, "xt": xt, "a_prev": a_prev}
    env.update(k.step_forward(env))
    g = k.cell_backward({**env, "da_next": np.random.randn(5, 10)})
    assert not {"dz_yt_pred", "dWya", "dby"} & g.keys()
    assert abs(g["dxt"][1][2] - -1.3872130506) <= 1e-10
    assert abs(g["dWaa"][1][2] - 1.15034506685) <= 1e-11
    assert abs(g["dba"][4][0] - 0.20023491) <= 1e-8

"""The course's own test cells, run against generated/coursera.py and generated/coursera_rnn.py.

Coursera Deep Learning Specialization, Sequence Models, week 1, "Building your
Recurrent Neural Network - Step by Step" (2021 edition). Every test cell of both
parts (forward: Exercises 1-4, graded; backward: Exercises 5-8, optional) is
re-typed here with the notebook's seeds, the same order of ``np.random.randn``
draws, the same shapes and calls; each printed value is compared with the
notebook's "Expected Output" to the precision the notebook printed it (one unit in
the last printed digit), shapes and lengths exactly. The forward cells also call
the course's ``public_tests.py``; its assertions (``np.allclose`` with numpy's
defaults, ``atol=1e-4`` where it says so, exact shapes) are re-typed below, with
``rnn_utils.softmax`` as the course wrote it.

Sources (the expected numbers are the notebook's, not this project's):
  * notebook, "Expected Output" cells and ``public_tests.py``:
    github.com/amanchadha/coursera-deep-learning-specialization @
    24a54d7d32e733a48fade00e6035381355254d0c, ``C5 - Sequence Models/Week 1/Building a
    Recurrent Neural Network - Step by Step/`` (``Building_a_Recurrent_Neural_Network_
    Step_by_Step.ipynb``, ``public_tests.py``, ``rnn_utils.py`` @ 3f055e4a8db0d76efbfb6f5a0e7e854535a3e2ec);
  * the same notebook executed, whose stored outputs print the same numbers:
    github.com/YueyangJiang97/Building_a_Recurrent_Neural_Network_Step_by_Step @
    57f9b06c4e840fbc411bbe4c2205c21b5412e519.

The lstm_backward cell runs a 7-step forward and hands lstm_backward a ``da`` of 4
steps; the course's reference takes ``T_x`` from ``da.shape`` and back-propagates
through ``caches[:4]`` only (its expected dx has 4 steps). The 2018 edition's
tables for rnn_cell_backward and lstm_backward are stale (its own executed cell
prints other numbers) and are not used.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

GENERATED = Path(__file__).resolve().parent.parent / "generated"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"course_protocol_{name}", GENERATED / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def lstm():
    return _load("coursera")


@pytest.fixture(scope="module")
def rnn():
    return _load("coursera_rnn")


def course_softmax(x):
    """rnn_utils.softmax, as the course wrote it (the GLOBAL max is subtracted)."""
    e_x = np.exp(x - np.max(x))
    return e_x / e_x.sum(axis=0)


_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def as_printed(actual, printed: str) -> None:
    """``actual`` equals the numbers of ``printed`` (the notebook's text) to one unit
    in the last digit printed of each."""
    tokens = _NUMBER.findall(printed)
    expected = np.array([float(t) for t in tokens])
    unit = np.array([10.0 ** -len(t.split(".")[1]) if "." in t else 1.0 for t in tokens])
    got = np.asarray(actual, dtype=np.float64).ravel()
    assert got.size == expected.size, f"{got} has {got.size} numbers, the notebook printed {printed}"
    assert np.all(np.abs(got - expected) <= unit), f"got {got}, the notebook printed {printed}"


def expect(printed_values: dict, actual_values: dict) -> None:
    """Every ``label: printed`` of a cell's Expected Output against the value computed."""
    assert printed_values.keys() == actual_values.keys()
    for label, printed in printed_values.items():
        actual = actual_values[label]
        if isinstance(printed, str):
            as_printed(actual, printed)
        else:
            assert actual == printed, f"{label}: {actual} != {printed}"


# --------------------------------------------------------------------- forward (graded)


def test_rnn_cell_forward(rnn):
    """Cell 16 / Expected Output cell 17, then public_tests.rnn_cell_forward_tests
    (which does not reseed: the RNG stream continues)."""
    np.random.seed(1)
    xt_tmp = np.random.randn(3, 10)
    a_prev_tmp = np.random.randn(5, 10)
    p = {}
    p['Waa'] = np.random.randn(5, 5)
    p['Wax'] = np.random.randn(5, 3)
    p['Wya'] = np.random.randn(2, 5)
    p['ba'] = np.random.randn(5, 1)
    p['by'] = np.random.randn(2, 1)
    a_next_tmp, yt_pred_tmp, cache_tmp = rnn.rnn_cell_forward(xt_tmp, a_prev_tmp, p)
    expect({
        "a_next[4]": "[ 0.59584544  0.18141802  0.61311866  0.99808218  0.85016201  0.99980978"
                     " -0.18887155  0.99815551  0.6531151   0.82872037]",
        "a_next.shape": (5, 10),
        "yt_pred[1]": "[ 0.9888161   0.01682021  0.21140899  0.36817467  0.98988387  0.88945212"
                      "  0.36920224  0.9966312   0.9982559   0.17746526]",
        "yt_pred.shape": (2, 10),
    }, {
        "a_next[4]": a_next_tmp[4], "a_next.shape": a_next_tmp.shape,
        "yt_pred[1]": yt_pred_tmp[1], "yt_pred.shape": yt_pred_tmp.shape,
    })

    # public_tests.rnn_cell_forward_tests: only the bias
    a_prev_tmp = np.zeros((5, 10))
    xt_tmp = np.zeros((3, 10))
    p = {}
    p['Waa'] = np.random.randn(5, 5)
    p['Wax'] = np.random.randn(5, 3)
    p['Wya'] = np.random.randn(2, 5)
    p['ba'] = np.random.randn(5, 1)
    p['by'] = np.random.randn(2, 1)
    p['Wya'] = np.zeros((2, 5))
    a_next_tmp, yt_pred_tmp, cache_tmp = rnn.rnn_cell_forward(xt_tmp, a_prev_tmp, p)
    assert a_next_tmp.shape == (5, 10)
    assert yt_pred_tmp.shape == (2, 10)
    assert cache_tmp[0].shape == (5, 10)
    assert cache_tmp[1].shape == (5, 10)
    assert cache_tmp[2].shape == (3, 10)
    assert len(cache_tmp[3].keys()) == 5
    assert np.allclose(np.tanh(p['ba']), a_next_tmp)
    assert np.allclose(course_softmax(p['by']), yt_pred_tmp)
    # only xt
    a_prev_tmp = np.zeros((5, 10))
    xt_tmp = np.random.randn(3, 10)
    p['Wax'] = np.random.randn(5, 3)
    p['ba'] = np.zeros((5, 1))
    p['by'] = np.zeros((2, 1))
    a_next_tmp, yt_pred_tmp, cache_tmp = rnn.rnn_cell_forward(xt_tmp, a_prev_tmp, p)
    assert np.allclose(np.tanh(np.dot(p['Wax'], xt_tmp)), a_next_tmp)
    assert np.allclose(course_softmax(np.dot(p['Wya'], a_next_tmp)), yt_pred_tmp)
    # only a_prev
    a_prev_tmp = np.random.randn(5, 10)
    xt_tmp = np.zeros((3, 10))
    p['Waa'] = np.random.randn(5, 5)
    p['ba'] = np.zeros((5, 1))
    p['by'] = np.zeros((2, 1))
    a_next_tmp, yt_pred_tmp, cache_tmp = rnn.rnn_cell_forward(xt_tmp, a_prev_tmp, p)
    assert np.allclose(np.tanh(np.dot(p['Waa'], a_prev_tmp)), a_next_tmp)
    assert np.allclose(course_softmax(np.dot(p['Wya'], a_next_tmp)), yt_pred_tmp)


def test_rnn_forward(rnn):
    """Cell 21 / Expected Output cell 22, then public_tests.rnn_forward_test (seed 17)."""
    np.random.seed(1)
    x_tmp = np.random.randn(3, 10, 4)
    a0_tmp = np.random.randn(5, 10)
    p = {}
    p['Waa'] = np.random.randn(5, 5)
    p['Wax'] = np.random.randn(5, 3)
    p['Wya'] = np.random.randn(2, 5)
    p['ba'] = np.random.randn(5, 1)
    p['by'] = np.random.randn(2, 1)
    a_tmp, y_pred_tmp, caches_tmp = rnn.rnn_forward(x_tmp, a0_tmp, p)
    expect({
        "a[4][1]": "[-0.99999375  0.77911235 -0.99861469 -0.99833267]",
        "a.shape": (5, 10, 4),
        "y_pred[1][3]": "[ 0.79560373  0.86224861  0.11118257  0.81515947]",
        "y_pred.shape": (2, 10, 4),
        "caches[1][1][3]": "[-1.1425182  -0.34934272 -0.20889423  0.58662319]",
        "len(caches)": 2,
    }, {
        "a[4][1]": a_tmp[4][1], "a.shape": a_tmp.shape,
        "y_pred[1][3]": y_pred_tmp[1][3], "y_pred.shape": y_pred_tmp.shape,
        "caches[1][1][3]": caches_tmp[1][1][3], "len(caches)": len(caches_tmp),
    })

    np.random.seed(17)
    T_x, m, n_x, n_a, n_y = 13, 8, 4, 7, 3
    x_tmp = np.random.randn(n_x, m, T_x)
    a0_tmp = np.random.randn(n_a, m)
    p = {}
    p['Waa'] = np.random.randn(n_a, n_a)
    p['Wax'] = np.random.randn(n_a, n_x)
    p['Wya'] = np.random.randn(n_y, n_a)
    p['ba'] = np.random.randn(n_a, 1)
    p['by'] = np.random.randn(n_y, 1)
    a, y_pred, caches = rnn.rnn_forward(x_tmp, a0_tmp, p)
    assert a.shape == (n_a, m, T_x)
    assert y_pred.shape == (n_y, m, T_x)
    assert len(caches[0]) == T_x
    assert np.allclose(a[5, 2, 2:6], [0.99999291, 0.99332189, 0.9921928, 0.99503445])
    assert np.allclose(y_pred[2, 1, 1:5], [0.19428, 0.14292, 0.24993, 0.00119], atol=1e-4)
    assert np.allclose(caches[1], x_tmp)


def _lstm_parameters(n_a, n_x, n_y, head=True):
    """The LSTM cells' draw order: f, i, o, c (o before c), then the head."""
    p = {}
    p['Wf'] = np.random.randn(n_a, n_a + n_x)
    p['bf'] = np.random.randn(n_a, 1)
    p['Wi'] = np.random.randn(n_a, n_a + n_x)
    p['bi'] = np.random.randn(n_a, 1)
    p['Wo'] = np.random.randn(n_a, n_a + n_x)
    p['bo'] = np.random.randn(n_a, 1)
    p['Wc'] = np.random.randn(n_a, n_a + n_x)
    p['bc'] = np.random.randn(n_a, 1)
    if head:
        p['Wy'] = np.random.randn(n_y, n_a)
        p['by'] = np.random.randn(n_y, 1)
    return p


def test_lstm_cell_forward(lstm):
    """Cell 35 / Expected Output cell 36, then public_tests.lstm_cell_forward_test (seed 212)."""
    np.random.seed(1)
    xt_tmp = np.random.randn(3, 10)
    a_prev_tmp = np.random.randn(5, 10)
    c_prev_tmp = np.random.randn(5, 10)
    p = _lstm_parameters(5, 3, 2)
    a_next_tmp, c_next_tmp, yt_tmp, cache_tmp = lstm.lstm_cell_forward(xt_tmp, a_prev_tmp, c_prev_tmp, p)
    expect({
        "a_next[4]": "[-0.66408471  0.0036921   0.02088357  0.22834167 -0.85575339  0.00138482"
                     "  0.76566531  0.34631421 -0.00215674  0.43827275]",
        "a_next.shape": (5, 10),
        "c_next[2]": "[ 0.63267805  1.00570849  0.35504474  0.20690913 -1.64566718  0.11832942"
                     "  0.76449811 -0.0981561  -0.74348425 -0.26810932]",
        "c_next.shape": (5, 10),
        "yt[1]": "[ 0.79913913  0.15986619  0.22412122  0.15606108  0.97057211  0.31146381"
                 "  0.00943007  0.12666353  0.39380172  0.07828381]",
        "yt.shape": (2, 10),
        "cache[1][3]": "[-0.16263996  1.03729328  0.72938082 -0.54101719  0.02752074 -0.30821874"
                       "  0.07651101 -1.03752894  1.41219977 -0.37647422]",
        "len(cache)": 10,
    }, {
        "a_next[4]": a_next_tmp[4], "a_next.shape": a_next_tmp.shape,
        "c_next[2]": c_next_tmp[2], "c_next.shape": c_next_tmp.shape,
        "yt[1]": yt_tmp[1], "yt.shape": yt_tmp.shape,
        "cache[1][3]": cache_tmp[1][3], "len(cache)": len(cache_tmp),
    })

    np.random.seed(212)
    m, n_x, n_a, n_y = 8, 4, 7, 3
    x = np.random.randn(n_x, m)
    a0 = np.random.randn(n_a, m)
    c0 = np.random.randn(n_a, m)
    p = _lstm_parameters(n_a, n_x, n_y)
    a_next, c_next, y_pred, cache = lstm.lstm_cell_forward(x, a0, c0, p)
    assert len(cache) == 10
    for i, shape in [(4, (n_a, m)), (5, (n_a, m)), (6, (n_a, m)), (1, (n_a, m)), (7, (n_a, m)),
                     (0, (n_a, m)), (8, (n_x, m)), (2, (n_a, m)), (3, (n_a, m))]:
        assert cache[i].shape == shape, i
    assert a_next.shape == (n_a, m)
    assert c_next.shape == (n_a, m)
    assert y_pred.shape == (n_y, m)
    assert np.allclose(cache[4][0, 0:2], [0.32969833, 0.0574555])     # ft
    assert np.allclose(cache[5][0, 0:2], [0.0036446, 0.9806943])      # it
    assert np.allclose(cache[6][0, 0:2], [0.99903873, 0.57509956])    # cct
    assert np.allclose(cache[1][0, 0:2], [0.1352798, 0.39884899])     # c_next
    assert np.allclose(cache[7][0, 0:2], [0.7477249, 0.71588751])     # ot
    assert np.allclose(cache[0][0, 0:2], [0.10053951, 0.27129536])    # a_next
    assert np.allclose(y_pred[1], [0.417098, 0.449528, 0.223159, 0.278376, 0.68453, 0.419221, 0.564025, 0.538475])


def test_lstm_forward(lstm):
    """Cell 39 / Expected Output cell 40, then public_tests.lstm_forward_test (seed 45)."""
    np.random.seed(1)
    x_tmp = np.random.randn(3, 10, 7)
    a0_tmp = np.random.randn(5, 10)
    p = _lstm_parameters(5, 3, 2)
    a_tmp, y_tmp, c_tmp, caches_tmp = lstm.lstm_forward(x_tmp, a0_tmp, p)
    expect({
        "a[4][3][6]": "0.172117767533",
        "a.shape": (5, 10, 7),
        "y[1][4][3]": "0.95087346185",
        "y.shape": (2, 10, 7),
        "caches[1][1][1]": "[ 0.82797464  0.23009474  0.76201118 -0.22232814 -0.20075807  0.18656139"
                           "  0.41005165]",
        "c[1][2][1]": "-0.855544916718",
        "len(caches)": 2,
    }, {
        "a[4][3][6]": a_tmp[4][3][6], "a.shape": a_tmp.shape,
        "y[1][4][3]": y_tmp[1][4][3], "y.shape": y_tmp.shape,
        "caches[1][1][1]": caches_tmp[1][1][1], "c[1][2][1]": c_tmp[1][2][1],
        "len(caches)": len(caches_tmp),
    })

    np.random.seed(45)
    n_x, m, T_x, n_a, n_y = 4, 13, 16, 3, 2
    x_tmp = np.random.randn(n_x, m, T_x)
    a0_tmp = np.random.randn(n_a, m)
    p = _lstm_parameters(n_a, n_x, n_y)
    a, y, c, caches = lstm.lstm_forward(x_tmp, a0_tmp, p)
    assert a.shape == (n_a, m, T_x)
    assert c.shape == (n_a, m, T_x)
    assert y.shape == (n_y, m, T_x)
    assert len(caches[0]) == T_x
    assert len(caches[0][0]) == 10
    assert np.allclose(a[2, 1, 4:6], [-0.01606022, 0.0243569])
    assert np.allclose(c[2, 1, 4:6], [-0.02753855, 0.05668358])
    assert np.allclose(y[1, 1, 4:6], [0.70444592, 0.70648935])


# --------------------------------------------------------------------- backward (optional)


def _gradients(gradients, picks):
    """{'gradients["k"][i][j]': value, 'gradients["k"].shape': shape} for each (k, index)."""
    out = {}
    for key, index in picks:
        value = gradients[key]
        for i in index:
            value = value[i]
        out[f'gradients["{key}"]' + "".join(f"[{i}]" for i in index)] = value
        out[f'gradients["{key}"].shape'] = gradients[key].shape
    return out


def test_rnn_cell_backward(rnn):
    """Exercise 5's test cell (Wax drawn before Waa here) and its Expected Output."""
    np.random.seed(1)
    xt_tmp = np.random.randn(3, 10)
    a_prev_tmp = np.random.randn(5, 10)
    p = {}
    p['Wax'] = np.random.randn(5, 3)
    p['Waa'] = np.random.randn(5, 5)
    p['Wya'] = np.random.randn(2, 5)
    p['ba'] = np.random.randn(5, 1)
    p['by'] = np.random.randn(2, 1)
    a_next_tmp, yt_tmp, cache_tmp = rnn.rnn_cell_forward(xt_tmp, a_prev_tmp, p)
    da_next_tmp = np.random.randn(5, 10)
    gradients = rnn.rnn_cell_backward(da_next_tmp, cache_tmp)
    expect({
        'gradients["dxt"][1][2]': "-1.3872130506",
        'gradients["dxt"].shape': (3, 10),
        'gradients["da_prev"][2][3]': "-0.152399493774",
        'gradients["da_prev"].shape': (5, 10),
        'gradients["dWax"][3][1]': "0.410772824935",
        'gradients["dWax"].shape': (5, 3),
        'gradients["dWaa"][1][2]': "1.15034506685",
        'gradients["dWaa"].shape': (5, 5),
        'gradients["dba"][4]': "[ 0.20023491]",
        'gradients["dba"].shape': (5, 1),
    }, _gradients(gradients, [("dxt", (1, 2)), ("da_prev", (2, 3)), ("dWax", (3, 1)),
                              ("dWaa", (1, 2)), ("dba", (4,))]))


def test_rnn_backward(rnn):
    """Exercise 6's test cell and its Expected Output."""
    np.random.seed(1)
    x_tmp = np.random.randn(3, 10, 4)
    a0_tmp = np.random.randn(5, 10)
    p = {}
    p['Wax'] = np.random.randn(5, 3)
    p['Waa'] = np.random.randn(5, 5)
    p['Wya'] = np.random.randn(2, 5)
    p['ba'] = np.random.randn(5, 1)
    p['by'] = np.random.randn(2, 1)
    a_tmp, y_tmp, caches_tmp = rnn.rnn_forward(x_tmp, a0_tmp, p)
    da_tmp = np.random.randn(5, 10, 4)
    gradients = rnn.rnn_backward(da_tmp, caches_tmp)
    expect({
        'gradients["dx"][1][2]': "[-2.07101689 -0.59255627  0.02466855  0.01483317]",
        'gradients["dx"].shape': (3, 10, 4),
        'gradients["da0"][2][3]': "-0.314942375127",
        'gradients["da0"].shape': (5, 10),
        'gradients["dWax"][3][1]': "11.2641044965",
        'gradients["dWax"].shape': (5, 3),
        'gradients["dWaa"][1][2]': "2.30333312658",
        'gradients["dWaa"].shape': (5, 5),
        'gradients["dba"][4]': "[-0.74747722]",
        'gradients["dba"].shape': (5, 1),
    }, _gradients(gradients, [("dx", (1, 2)), ("da0", (2, 3)), ("dWax", (3, 1)),
                              ("dWaa", (1, 2)), ("dba", (4,))]))


def test_lstm_cell_backward(lstm):
    """Exercise 7's test cell and its Expected Output."""
    np.random.seed(1)
    xt_tmp = np.random.randn(3, 10)
    a_prev_tmp = np.random.randn(5, 10)
    c_prev_tmp = np.random.randn(5, 10)
    p = _lstm_parameters(5, 3, 2)
    a_next_tmp, c_next_tmp, yt_tmp, cache_tmp = lstm.lstm_cell_forward(xt_tmp, a_prev_tmp, c_prev_tmp, p)
    da_next_tmp = np.random.randn(5, 10)
    dc_next_tmp = np.random.randn(5, 10)
    gradients = lstm.lstm_cell_backward(da_next_tmp, dc_next_tmp, cache_tmp)
    expect({
        'gradients["dxt"][1][2]': "3.23055911511",
        'gradients["dxt"].shape': (3, 10),
        'gradients["da_prev"][2][3]': "-0.0639621419711",
        'gradients["da_prev"].shape': (5, 10),
        'gradients["dc_prev"][2][3]': "0.797522038797",
        'gradients["dc_prev"].shape': (5, 10),
        'gradients["dWf"][3][1]': "-0.147954838164",
        'gradients["dWf"].shape': (5, 8),
        'gradients["dWi"][1][2]': "1.05749805523",
        'gradients["dWi"].shape': (5, 8),
        'gradients["dWc"][3][1]': "2.30456216369",
        'gradients["dWc"].shape': (5, 8),
        'gradients["dWo"][1][2]': "0.331311595289",
        'gradients["dWo"].shape': (5, 8),
        'gradients["dbf"][4]': "[ 0.18864637]",
        'gradients["dbf"].shape': (5, 1),
        'gradients["dbi"][4]': "[-0.40142491]",
        'gradients["dbi"].shape': (5, 1),
        'gradients["dbc"][4]': "[ 0.25587763]",
        'gradients["dbc"].shape': (5, 1),
        'gradients["dbo"][4]': "[ 0.13893342]",
        'gradients["dbo"].shape': (5, 1),
    }, _gradients(gradients, [("dxt", (1, 2)), ("da_prev", (2, 3)), ("dc_prev", (2, 3)), ("dWf", (3, 1)),
                              ("dWi", (1, 2)), ("dWc", (3, 1)), ("dWo", (1, 2)), ("dbf", (4,)),
                              ("dbi", (4,)), ("dbc", (4,)), ("dbo", (4,))]))


def _lstm_backward_cell_inputs(lstm):
    """Exercise 8's test cell up to the call: a 7-step forward, Wy and by zeros
    (2021: "unused, but needed for lstm_forward"), then a da of 4 steps."""
    np.random.seed(1)
    x_tmp = np.random.randn(3, 10, 7)
    a0_tmp = np.random.randn(5, 10)
    p = _lstm_parameters(5, 3, 2, head=False)
    p['Wy'] = np.zeros((2, 5))
    p['by'] = np.zeros((2, 1))
    a_tmp, y_tmp, c_tmp, caches_tmp = lstm.lstm_forward(x_tmp, a0_tmp, p)
    da_tmp = np.random.randn(5, 10, 4)
    return x_tmp, a0_tmp, p, caches_tmp, da_tmp


def test_lstm_backward(lstm):
    """Exercise 8's test cell (da has 4 steps, the forward 7) and its Expected Output."""
    x_tmp, a0_tmp, p, caches_tmp, da_tmp = _lstm_backward_cell_inputs(lstm)
    gradients = lstm.lstm_backward(da_tmp, caches_tmp)
    expect({
        'gradients["dx"][1][2]': "[0.00218254  0.28205375 -0.48292508 -0.43281115]",
        'gradients["dx"].shape': (3, 10, 4),
        'gradients["da0"][2][3]': "0.312770310257",
        'gradients["da0"].shape': (5, 10),
        'gradients["dWf"][3][1]': "-0.0809802310938",
        'gradients["dWf"].shape': (5, 8),
        'gradients["dWi"][1][2]': "0.40512433093",
        'gradients["dWi"].shape': (5, 8),
        'gradients["dWc"][3][1]': "-0.0793746735512",
        'gradients["dWc"].shape': (5, 8),
        'gradients["dWo"][1][2]': "0.038948775763",
        'gradients["dWo"].shape': (5, 8),
        'gradients["dbf"][4]': "[-0.15745657]",
        'gradients["dbf"].shape': (5, 1),
        'gradients["dbi"][4]': "[-0.50848333]",
        'gradients["dbi"].shape': (5, 1),
        'gradients["dbc"][4]': "[-0.42510818]",
        'gradients["dbc"].shape': (5, 1),
        'gradients["dbo"][4]': "[ -0.17958196]",
        'gradients["dbo"].shape': (5, 1),
    }, _gradients(gradients, [("dx", (1, 2)), ("da0", (2, 3)), ("dWf", (3, 1)), ("dWi", (1, 2)),
                              ("dWc", (3, 1)), ("dWo", (1, 2)), ("dbf", (4,)), ("dbi", (4,)),
                              ("dbc", (4,)), ("dbo", (4,))]))


def test_shorter_da_is_the_backward_of_the_forward_cut_there(lstm, rnn):
    """A da of T steps after a longer forward: exactly the full backward of a
    forward that stopped after T steps (the course reference's semantics)."""
    x, a0, p, caches, da = _lstm_backward_cell_inputs(lstm)
    T = da.shape[2]
    _, _, _, short_caches = lstm.lstm_forward(x[:, :, :T], a0, p)
    got, want = lstm.lstm_backward(da, caches), lstm.lstm_backward(da, short_caches)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-14)

    np.random.seed(3)
    x = np.random.randn(3, 4, 6)
    a0 = np.random.randn(5, 4)
    p = {'Wax': np.random.randn(5, 3), 'Waa': np.random.randn(5, 5), 'Wya': np.random.randn(2, 5),
         'ba': np.random.randn(5, 1), 'by': np.random.randn(2, 1)}
    da = np.random.randn(5, 4, 2)
    got = rnn.rnn_backward(da, rnn.rnn_forward(x, a0, p)[2])
    want = rnn.rnn_backward(da, rnn.rnn_forward(x[:, :, :2], a0, p)[2])
    assert got["dx"].shape == (3, 4, 2)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["coursera", "coursera_rnn"])
def test_da_longer_than_the_forward_is_a_clear_error(name, lstm, rnn):
    np.random.seed(0)
    x, a0 = np.random.randn(3, 2, 4), np.random.randn(5, 2)
    if name == "coursera":
        caches = lstm.lstm_forward(x, a0, _lstm_parameters(5, 3, 2))[3]
        backward = lstm.lstm_backward
    else:
        p = {'Wax': np.random.randn(5, 3), 'Waa': np.random.randn(5, 5), 'Wya': np.random.randn(2, 5),
             'ba': np.random.randn(5, 1), 'by': np.random.randn(2, 1)}
        caches = rnn.rnn_forward(x, a0, p)[2]
        backward = rnn.rnn_backward
    with pytest.raises(ValueError, match=r"da: expected 1 to 4 steps \(the forward pass had 4;.*got shape \(5, 2, 6\)"):
        backward(np.zeros((5, 2, 6)), caches)
    with pytest.raises(ValueError, match=r"da: expected 1 to 4 steps"):
        backward(np.zeros((5, 2, 0)), caches)
    with pytest.raises(ValueError, match=r"da: expected shape \(n_a, m, T_x\) = \(5, 2, T_x\), got \(4, 2, 3\)"):
        backward(np.zeros((4, 2, 3)), caches)

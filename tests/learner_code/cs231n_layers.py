# A learner's CS231n-style rnn_layers.py (batch in rows, Wx (D, 4H) stacked
# i, f, o, g, its own cache tuples, c0 = 0 inside lstm_forward), written for
# lstm-derive's tests.
from __future__ import print_function
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    x, prev_h, Wx, Wh, next_h = cache
    dz = dnext_h * (1 - next_h ** 2)
    return dz @ Wx.T, dz @ Wh.T, x.T @ dz, prev_h.T @ dz, dz.sum(axis=0)


def rnn_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    h, caches, prev = np.zeros((N, T, h0.shape[1])), [], h0
    for t in range(T):
        prev, cache = rnn_step_forward(x[:, t, :], prev, Wx, Wh, b)
        h[:, t, :] = prev
        caches.append(cache)
    return h, caches


def rnn_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0][0].shape[1]
    dx, dWx, dWh, db = np.zeros((N, T, D)), 0, 0, 0
    dprev = np.zeros((N, H))
    for t in reversed(range(T)):
        dxt, dprev, dWxt, dWht, dbt = rnn_step_backward(dh[:, t, :] + dprev, cache[t])
        dx[:, t, :] = dxt
        dWx, dWh, db = dWx + dWxt, dWh + dWht, db + dbt
    return dx, dprev, dWx, dWh, db


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, {"gates": (i, f, o, g), "c": (prev_c, next_c), "x": x, "h": prev_h, "W": (Wx, Wh)}


def lstm_step_backward(dnext_h, dnext_c, cache):
    i, f, o, g = cache["gates"]
    prev_c, next_c = cache["c"]
    Wx, Wh = cache["W"]
    tc = np.tanh(next_c)
    dnext_c += dnext_h * o * (1 - tc ** 2)          # in place, as many solutions do
    da = np.hstack((dnext_c * g * i * (1 - i), dnext_c * prev_c * f * (1 - f),
                    dnext_h * tc * o * (1 - o), dnext_c * i * (1 - g ** 2)))
    return da @ Wx.T, da @ Wh.T, dnext_c * f, cache["x"].T @ da, cache["h"].T @ da, da.sum(axis=0)


def lstm_forward(x, h0, Wx, Wh, b):
    N, T, D = x.shape
    H = h0.shape[1]
    h, caches = np.zeros((N, T, H)), []
    prev_h, prev_c = h0, np.zeros_like(h0)
    for t in range(T):
        prev_h, prev_c, cache = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(cache)
    return h, caches


def lstm_backward(dh, cache):
    N, T, H = dh.shape
    D = cache[0]["x"].shape[1]
    dx, dWx, dWh, db = np.zeros((N, T, D)), 0, 0, 0
    dprev_h, dprev_c = np.zeros((N, H)), np.zeros((N, H))
    for t in reversed(range(T)):
        dxt, dprev_h, dprev_c, dWxt, dWht, dbt = lstm_step_backward(dh[:, t, :] + dprev_h, dprev_c, cache[t])
        dx[:, t, :] = dxt
        dWx, dWh, db = dWx + dWxt, dWh + dWht, db + dbt
    return dx, dprev_h, dWx, dWh, db

# CS231n's lstm_step_forward / lstm_step_backward (batch in rows, Wx (D, 4H),
# Wh (H, 4H), b (4H,) stacked i, f, o, g), written per gate the way many
# solutions are, for lstm-derive's diagnosis tests. With BUG = () it is right;
# the tests write copies with BUG naming the mistakes to make.
import numpy as np

BUG = ()


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tc ** 2)
    da_i = dc * g * i * (1 - i)
    if "da_i_parenthesis" in BUG:
        da_i = dnext_c * g + dnext_h * o * (1 - tc ** 2) * g * i * (1 - i)
    da_f = dc * prev_c * f * (1 - f)
    if "da_f_no_derivative" in BUG:
        da_f = dc * prev_c
    da_o = dnext_h * tc * o * (1 - o)
    if "da_o_no_derivative" in BUG:
        da_o = dnext_h * tc
    da_g = dc * i * (1 - g ** 2)
    da = np.hstack((da_i, da_f, da_o, da_g))
    Wh_i, Wh_f, Wh_o, Wh_g = np.split(Wh, 4, axis=1)
    dprev_h = da_i @ Wh_i.T + da_f @ (Wh_i if "da_f_with_Wh_i" in BUG else Wh_f).T + da_o @ Wh_o.T + da_g @ Wh_g.T
    dx = da @ Wx.T
    dprev_c = dc if "dprev_c_no_f" in BUG else dc * f
    return dx, dprev_h, dprev_c, x.T @ da, prev_h.T @ da, da.sum(axis=0)

# A CS231n-style RNN step whose backward never returns normally (exit), for lstm-derive's tests.
import numpy as np


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h, cache):
    import sys
    sys.exit(0)

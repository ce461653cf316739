# Course-style RNN cell functions that hard-code the hidden size 7, for lstm-derive's tests (--sizes).
import numpy as np


def rnn_cell_forward(xt, a_prev, parameters):
    a_next = np.tanh(parameters["Wax"] @ xt + parameters["Waa"] @ a_prev + parameters["ba"])
    return a_next, None, (a_next, a_prev, xt, parameters)


def rnn_cell_backward(da_next, cache):
    a_next, a_prev, xt, parameters = cache
    dtanh = (1 - a_next ** 2) * da_next
    return {"dxt": parameters["Wax"].T @ dtanh, "da_prev": parameters["Waa"].T @ dtanh,
            "dWax": dtanh @ xt.T, "dWaa": dtanh @ a_prev.T, "dba": dtanh.sum(axis=1).reshape(7, 1)}

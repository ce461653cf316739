# A learner's backward functions (split from the forward file, as learners do);
# lstm_backward has the classic bug: da_prevt and dc_prevt are never carried
# from step t+1 back to step t. Written for lstm-derive's tests.
from coursera_forward import *


def rnn_cell_backward(da_next, cache):
    a_next, a_prev, xt, parameters = cache
    dtanh = (1 - a_next ** 2) * da_next
    return {"dxt": parameters["Wax"].T @ dtanh, "da_prev": parameters["Waa"].T @ dtanh,
            "dWax": dtanh @ xt.T, "dWaa": dtanh @ a_prev.T, "dba": np.sum(dtanh, axis=1, keepdims=True)}


def rnn_backward(da, caches):
    caches, x = caches
    n_x, m, T_x = x.shape
    n_a = da.shape[0]
    g = {"dx": np.zeros((n_x, m, T_x)), "dWax": 0, "dWaa": 0, "dba": 0}
    da_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        step = rnn_cell_backward(da[:, :, t] + da_prevt, caches[t])
        g["dx"][:, :, t] = step["dxt"]
        da_prevt = step["da_prev"]
        for k in ("dWax", "dWaa", "dba"):
            g[k] = g[k] + step[k]
    g["da0"] = da_prevt
    return g


def lstm_cell_backward(da_next, dc_next, cache):
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    n_a = a_next.shape[0]
    tc = np.tanh(c_next)
    dot = da_next * tc * ot * (1 - ot)
    dc = dc_next + da_next * ot * (1 - tc ** 2)
    dcct = dc * it * (1 - cct ** 2)
    dit = dc * cct * it * (1 - it)
    dft = dc * c_prev * ft * (1 - ft)
    concat = np.concatenate((a_prev, xt), axis=0)
    g = {}
    dconcat = 0
    for gate, dz in (("f", dft), ("i", dit), ("c", dcct), ("o", dot)):
        g["dW" + gate] = dz @ concat.T
        g["db" + gate] = np.sum(dz, axis=1, keepdims=True)
        dconcat = dconcat + parameters["W" + gate].T @ dz
    g["da_prev"] = dconcat[:n_a]
    g["dxt"] = dconcat[n_a:]
    g["dc_prev"] = dc * ft
    return g


def lstm_backward(da, caches):
    caches, x = caches
    n_x, m, T_x = x.shape
    n_a = da.shape[0]
    g = {"dx": np.zeros((n_x, m, T_x))}
    da_prevt = np.zeros((n_a, m))
    dc_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        step = lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, caches[t])   # the bug: never updated
        g["dx"][:, :, t] = step["dxt"]
        for k in ("dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo"):
            g[k] = g.get(k, 0) + step[k]
    g["da0"] = step["da_prev"]
    return g

# The Coursera assignment's lstm_forward / lstm_backward (batch in columns, the
# course's names and cache tuples), self-contained, for lstm-derive's diagnosis
# tests of whole-sequence functions. With BUG = () it is right; the tests write
# copies with BUG naming the mistakes to make (in the loop over time, or in the
# step's lstm_cell_backward).
import numpy as np

BUG = ()


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e = np.exp(x - np.max(x, axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    p = parameters
    concat = np.concatenate((a_prev, xt), axis=0)
    ft = sigmoid(p["Wf"] @ concat + p["bf"])
    it = sigmoid(p["Wi"] @ concat + p["bi"])
    cct = np.tanh(p["Wc"] @ concat + p["bc"])
    c_next = ft * c_prev + it * cct
    ot = sigmoid(p["Wo"] @ concat + p["bo"])
    a_next = ot * np.tanh(c_next)
    yt_pred = softmax(p["Wy"] @ a_next + p["by"])
    return a_next, c_next, yt_pred, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)


def lstm_forward(x, a0, parameters):
    caches = []
    n_x, m, T_x = x.shape
    n_y, n_a = parameters["Wy"].shape
    a = np.zeros((n_a, m, T_x))
    c = np.zeros((n_a, m, T_x))
    y = np.zeros((n_y, m, T_x))
    a_next, c_next = a0, np.zeros((n_a, m))
    for t in range(T_x):
        a_next, c_next, yt, cache = lstm_cell_forward(x[:, :, t], a_next, c_next, parameters)
        a[:, :, t], c[:, :, t], y[:, :, t] = a_next, c_next, yt
        caches.append(cache)
    return a, y, c, (caches, x)


def lstm_cell_backward(da_next, dc_next, cache):
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    n_a = a_next.shape[0]
    tc = np.tanh(c_next)
    dot = da_next * tc * ot * (1 - ot)
    dc = dc_next + da_next * ot * (1 - tc ** 2)
    dcct = dc * it * (1 - cct ** 2)
    dit = dc * cct if "dit_no_derivative" in BUG else dc * cct * it * (1 - it)
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
    g["dc_prev"] = dc if "dc_prev_no_ft" in BUG else dc * ft
    return g


def lstm_backward(da, caches):
    (caches, x) = caches
    n_a, m, T_x = da.shape
    n_x = x.shape[0]
    dx = np.zeros((n_x, m, T_x))
    da_prevt = np.zeros((n_a, m))
    dc_prevt = np.zeros((n_a, m))
    grads = {k: 0 for k in ("dWf", "dbf", "dWi", "dbi", "dWc", "dbc", "dWo", "dbo")}
    for t in reversed(range(T_x)):
        da_in = da[:, :, t] if "no_da_carry" in BUG else da[:, :, t] + da_prevt
        gradients = lstm_cell_backward(da_in, dc_prevt, caches[t])
        if "no_carry" not in BUG:  # the course's classic: the carried gradients never updated
            da_prevt, dc_prevt = gradients["da_prev"], gradients["dc_prev"]
        dx[:, :, t] = gradients["dxt"]
        for k in grads:
            grads[k] = grads[k] + gradients[k]
    return {"dx": dx, "da0": gradients["da_prev"], **grads}

# Buggy versions of the Coursera assignment's lstm_cell_backward, one classic
# mistake (or two) each, for lstm-derive's diagnosis tests. `backward` is the
# right one; each other function differs from it where its comment says.
import numpy as np


def backward(da_next, dc_next, cache, bug=()):
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    n_a = a_next.shape[0]
    tc = np.tanh(c_next)
    dot = da_next * tc * ot * (1 - ot)
    if "dot_no_derivative" in bug:
        dot = da_next * tc
    dc = dc_next + da_next * ot * (1 - tc ** 2)
    dcct = dc * it * (1 - cct ** 2)
    dit = dc * cct * it * (1 - it)
    if "dit_parenthesis" in bug:
        dit = dc_next * cct + da_next * ot * (1 - tc ** 2) * cct * it * (1 - it)
    if "dit_no_derivative" in bug:
        dit = dc * cct
    if "dit_tanh_derivative" in bug:
        dit = dc * cct * (1 - it ** 2)
    dft = dc * c_prev * ft * (1 - ft)
    concat = np.concatenate((a_prev, xt), axis=0)
    g = {}
    dconcat = 0
    weight = {"f": "Wf", "i": "Wi", "c": "Wc", "o": "Wo"}
    if "dft_with_Wi" in bug:
        weight["f"] = "Wi"
    for gate, dz in (("f", dft), ("i", dit), ("c", dcct), ("o", dot)):
        g["dW" + gate] = dz @ concat.T
        g["db" + gate] = np.sum(dz, axis=1, keepdims=True)
        dconcat = dconcat + parameters[weight[gate]].T @ dz
    g["da_prev"] = dconcat[:n_a]
    g["dxt"] = dconcat[n_a:]
    g["dc_prev"] = dc if "dc_prev_no_ft" in bug else dc * ft
    return g


def lstm_cell_backward(da_next, dc_next, cache):
    return backward(da_next, dc_next, cache)


def dit_parenthesis(da_next, dc_next, cache):
    """(a) dit = dc_next*cct + da_next*ot*(1 - tanh(c_next)**2)*cct*it*(1 - it)."""
    return backward(da_next, dc_next, cache, ("dit_parenthesis",))


def dc_prev_without_ft(da_next, dc_next, cache):
    """(b) dc_prev = dc: the gate value ft left out."""
    return backward(da_next, dc_next, cache, ("dc_prev_no_ft",))


def dit_without_derivative(da_next, dc_next, cache):
    """(b) dit = dc*cct: the sigmoid derivative it*(1 - it) left out."""
    return backward(da_next, dc_next, cache, ("dit_no_derivative",))


def dft_with_Wi(da_next, dc_next, cache):
    """(c) dconcat gets Wi.T @ dft: the input gate's weight with the forget gate's gradient."""
    return backward(da_next, dc_next, cache, ("dft_with_Wi",))


def two_bugs(da_next, dc_next, cache):
    """(d) the dit parenthesis of (a) and dot without its sigmoid derivative."""
    return backward(da_next, dc_next, cache, ("dit_parenthesis", "dot_no_derivative"))


def dit_with_tanh_derivative(da_next, dc_next, cache):
    """A mistake no candidate fits: dit = dc*cct*(1 - it**2), tanh's derivative on a sigmoid gate."""
    return backward(da_next, dc_next, cache, ("dit_tanh_derivative",))

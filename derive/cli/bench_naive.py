"""The benchmark's naive references: each cell the way the course notebook writes it.

Contract. Each function takes torch's arguments (x, the initial states, weight_ih,
weight_hh, bias_ih, bias_hh) and d_output and returns torch's gradient keys;
per step, separate gate products, the weight gradients accumulated inside the
backward loop. :mod:`derive.cli.benchmark` times them as its ``naive`` side.
"""

from __future__ import annotations


def naive_forward_backward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, d_output):
    """Per step: concat = [h_prev, x_t], four separate gate products, the
    gradients of every weight accumulated inside the backward loop."""
    import numpy as np

    T, N, D = x.shape
    H = h0.shape[-1]
    W = np.concatenate([weight_hh, weight_ih], axis=1)  # acts on [h_prev, x_t]
    Wi, Wf, Wg, Wo = (np.ascontiguousarray(W[k * H:(k + 1) * H]) for k in range(4))
    b = bias_ih + bias_hh
    bi, bf, bg, bo = (b[k * H:(k + 1) * H] for k in range(4))

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    h, c = h0[0], c0[0]
    caches = []
    for t in range(T):
        concat = np.concatenate([h, x[t]], axis=1)
        i = sigmoid(concat @ Wi.T + bi)
        f = sigmoid(concat @ Wf.T + bf)
        g = np.tanh(concat @ Wg.T + bg)
        o = sigmoid(concat @ Wo.T + bo)
        c_prev = c
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        caches.append((concat, i, f, g, o, c_prev, c))
    dWi, dWf, dWg, dWo = (np.zeros_like(w) for w in (Wi, Wf, Wg, Wo))
    dbi, dbf, dbg, dbo = (np.zeros_like(v) for v in (bi, bf, bg, bo))
    dx = np.empty_like(x)
    dh_next = np.zeros_like(h)
    dc_next = np.zeros_like(c)
    for t in reversed(range(T)):
        concat, i, f, g, o, c_prev, c = caches[t]
        dh = d_output[t] + dh_next
        tc = np.tanh(c)
        dc = dc_next + dh * o * (1 - tc**2)
        dzo = dh * tc * o * (1 - o)
        dzg = dc * i * (1 - g**2)
        dzf = dc * c_prev * f * (1 - f)
        dzi = dc * g * i * (1 - i)
        dWi += dzi.T @ concat
        dWf += dzf.T @ concat
        dWg += dzg.T @ concat
        dWo += dzo.T @ concat
        dbi += dzi.sum(axis=0)
        dbf += dzf.sum(axis=0)
        dbg += dzg.sum(axis=0)
        dbo += dzo.sum(axis=0)
        dconcat = dzi @ Wi + dzf @ Wf + dzg @ Wg + dzo @ Wo
        dh_next = dconcat[:, :H]
        dx[t] = dconcat[:, H:]
        dc_next = dc * f
    dW = np.concatenate([dWi, dWf, dWg, dWo])
    db = np.concatenate([dbi, dbf, dbg, dbo])
    return {"x": dx, "h0": dh_next[None], "c0": dc_next[None], "weight_ih": dW[:, H:], "weight_hh": dW[:, :H],
            "bias_ih": db, "bias_hh": db.copy()}


def naive_gru_forward_backward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, d_output):
    """torch.nn.GRU's equations the notebook's way: per step six separate gate
    products, the weight gradients accumulated inside the backward loop."""
    import numpy as np

    T, N, D = x.shape
    H = h0.shape[-1]
    Wir, Wiz, Win = (np.ascontiguousarray(weight_ih[k * H:(k + 1) * H]) for k in range(3))
    Whr, Whz, Whn = (np.ascontiguousarray(weight_hh[k * H:(k + 1) * H]) for k in range(3))
    bir, biz, bin_ = (bias_ih[k * H:(k + 1) * H] for k in range(3))
    bhr, bhz, bhn = (bias_hh[k * H:(k + 1) * H] for k in range(3))

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    h = h0[0]
    caches = []
    for t in range(T):
        r = sigmoid(x[t] @ Wir.T + bir + h @ Whr.T + bhr)
        z = sigmoid(x[t] @ Wiz.T + biz + h @ Whz.T + bhz)
        hn = h @ Whn.T + bhn
        n = np.tanh(x[t] @ Win.T + bin_ + r * hn)
        caches.append((h, r, z, n, hn))
        h = (1 - z) * n + z * h
    grads = {k: np.zeros_like(v) for k, v in (("Wir", Wir), ("Wiz", Wiz), ("Win", Win), ("Whr", Whr), ("Whz", Whz),
                                              ("Whn", Whn), ("bir", bir), ("biz", biz), ("bin", bin_), ("bhr", bhr),
                                              ("bhz", bhz), ("bhn", bhn))}
    dx = np.empty_like(x)
    dh_next = np.zeros_like(h)
    for t in reversed(range(T)):
        h_prev, r, z, n, hn = caches[t]
        dh = d_output[t] + dh_next
        dzn = dh * (1 - z) * (1 - n**2)
        dzz = dh * (h_prev - n) * z * (1 - z)
        dhn = dzn * r
        dzr = dzn * hn * r * (1 - r)
        for name, g, inp in (("Wir", dzr, x[t]), ("Wiz", dzz, x[t]), ("Win", dzn, x[t]),
                             ("Whr", dzr, h_prev), ("Whz", dzz, h_prev), ("Whn", dhn, h_prev)):
            grads[name] += g.T @ inp
        for name, g in (("bir", dzr), ("biz", dzz), ("bin", dzn), ("bhr", dzr), ("bhz", dzz), ("bhn", dhn)):
            grads[name] += g.sum(axis=0)
        dx[t] = dzr @ Wir + dzz @ Wiz + dzn @ Win
        dh_next = dh * z + dzr @ Whr + dzz @ Whz + dhn @ Whn
    g = grads
    return {"x": dx, "h0": dh_next[None], "weight_ih": np.concatenate([g["Wir"], g["Wiz"], g["Win"]]),
            "weight_hh": np.concatenate([g["Whr"], g["Whz"], g["Whn"]]),
            "bias_ih": np.concatenate([g["bir"], g["biz"], g["bin"]]),
            "bias_hh": np.concatenate([g["bhr"], g["bhz"], g["bhn"]])}


def naive_elman_forward_backward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, d_output):
    """torch.nn.RNN's equations per step, the weight gradients accumulated inside the loop."""
    import numpy as np

    T = x.shape[0]
    h = h0[0]
    hs = []
    for t in range(T):
        h = np.tanh(x[t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)
        hs.append(h)
    dW_ih, dW_hh, db = np.zeros_like(weight_ih), np.zeros_like(weight_hh), np.zeros_like(bias_ih)
    dx = np.empty_like(x)
    dh_next = np.zeros_like(h)
    for t in reversed(range(T)):
        h_prev = hs[t - 1] if t else h0[0]
        dz = (d_output[t] + dh_next) * (1 - hs[t] ** 2)
        dW_ih += dz.T @ x[t]
        dW_hh += dz.T @ h_prev
        db += dz.sum(axis=0)
        dx[t] = dz @ weight_ih
        dh_next = dz @ weight_hh
    return {"x": dx, "h0": dh_next[None], "weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}



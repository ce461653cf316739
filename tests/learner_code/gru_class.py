# A class-based GRU cell (one example, vectors), the weights as attributes and
# their gradients as d-attributes, written for lstm-derive's tests.
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class GRUCell:
    def __init__(self, input_dim, hidden_dim):
        rng = np.random.default_rng(0)
        self.Wz, self.Wr, self.Wn = (rng.normal(size=(hidden_dim, input_dim)) for _ in range(3))
        self.Uz, self.Ur, self.Un = (rng.normal(size=(hidden_dim, hidden_dim)) for _ in range(3))
        for name in ("Wz", "Wr", "Wn", "Uz", "Ur", "Un"):
            setattr(self, "d" + name, np.zeros_like(getattr(self, name)))

    def forward(self, x, h):
        self.x, self.h = x, h
        self.z = sigmoid(self.Wz @ x + self.Uz @ h)
        self.r = sigmoid(self.Wr @ x + self.Ur @ h)
        self.n = np.tanh(self.Wn @ x + self.Un @ (self.r * h))
        return (1 - self.z) * self.n + self.z * self.h

    def backward(self, delta):
        x, h, z, r, n = self.x, self.h, self.z, self.r, self.n
        dn = delta * (1 - z) * (1 - n ** 2)
        dz = delta * (h - n) * z * (1 - z)
        drh = self.Un.T @ dn
        dr = drh * h * r * (1 - r)
        self.dWn, self.dUn = np.outer(dn, x), np.outer(dn, r * h)
        self.dWz, self.dUz = np.outer(dz, x), np.outer(dz, h)
        self.dWr, self.dUr = np.outer(dr, x), np.outer(dr, h)
        dx = self.Wn.T @ dn + self.Wz.T @ dz + self.Wr.T @ dr
        dh = delta * z + drh * r + self.Uz.T @ dz + self.Ur.T @ dr
        return dx, dh

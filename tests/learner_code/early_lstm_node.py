# An LSTM node in the style of nicodjimenez/lstm's first commits (written for
# lstm-derive's tests): the node class is called LSTM, LstmParam() and LstmState()
# take no sizes (they read the module constants mem_cell_ct and x_dim), and LSTM(param)
# makes its own state. h = s * o, as in those commits (no tanh on the cell state).
import numpy as np

mem_cell_ct = 20
x_dim = 2
concat_len = x_dim + mem_cell_ct


def sigmoid(x):
    return 1. / (1 + np.exp(-x))


def rand_arr(a, b, *args):
    np.random.seed(0)
    return np.random.rand(*args) * (b - a) + a


class LstmParam:
    def __init__(self):
        self.wg = rand_arr(-0.1, 0.1, mem_cell_ct, concat_len)
        self.wi = rand_arr(-0.1, 0.1, mem_cell_ct, concat_len)
        self.wf = rand_arr(-0.1, 0.1, mem_cell_ct, concat_len)
        self.wo = rand_arr(-0.1, 0.1, mem_cell_ct, concat_len)
        self.bg = rand_arr(-0.1, 0.1, mem_cell_ct)
        self.bi = rand_arr(-0.1, 0.1, mem_cell_ct)
        self.bf = rand_arr(-0.1, 0.1, mem_cell_ct)
        self.bo = rand_arr(-0.1, 0.1, mem_cell_ct)
        for name in ("wg", "wi", "wf", "wo", "bg", "bi", "bf", "bo"):
            setattr(self, name + "_diff", np.zeros_like(getattr(self, name)))


class LstmState:
    def __init__(self):
        for name in ("g", "i", "f", "o", "s", "h", "bottom_diff_h", "bottom_diff_s", "bottom_diff_x"):
            setattr(self, name, np.zeros(x_dim if name == "bottom_diff_x" else mem_cell_ct))


class LSTM:
    def __init__(self, lstm_param):
        self.state = LstmState()
        self.param = lstm_param

    def bottom_data_is(self, x, s_prev=None, h_prev=None):
        if s_prev is None:
            s_prev = np.zeros_like(self.state.s)
        if h_prev is None:
            h_prev = np.zeros_like(self.state.h)
        self.s_prev, self.h_prev = s_prev, h_prev
        xc = np.hstack((x, h_prev))
        self.state.g = np.tanh(np.dot(self.param.wg, xc) + self.param.bg)
        self.state.i = sigmoid(np.dot(self.param.wi, xc) + self.param.bi)
        self.state.f = sigmoid(np.dot(self.param.wf, xc) + self.param.bf)
        self.state.o = sigmoid(np.dot(self.param.wo, xc) + self.param.bo)
        self.state.s = self.state.g * self.state.i + s_prev * self.state.f
        self.state.h = self.state.s * self.state.o
        self.xc = xc

    def top_diff_is(self, top_diff_h, top_diff_s):
        ds = self.state.o * top_diff_h + top_diff_s
        do = self.state.s * top_diff_h
        di = self.state.g * ds
        dg = self.state.i * ds
        df = self.s_prev * ds
        di_input = (1. - self.state.i) * self.state.i * di
        df_input = (1. - self.state.f) * self.state.f * df
        do_input = (1. - self.state.o) * self.state.o * do
        dg_input = (1. - self.state.g ** 2) * dg
        for w, d in (("wi", di_input), ("wf", df_input), ("wo", do_input), ("wg", dg_input)):
            getattr(self.param, w + "_diff").__iadd__(np.outer(d, self.xc))
        self.param.bi_diff += di_input
        self.param.bf_diff += df_input
        self.param.bo_diff += do_input
        self.param.bg_diff += dg_input
        dxc = (np.dot(self.param.wi.T, di_input) + np.dot(self.param.wf.T, df_input)
               + np.dot(self.param.wo.T, do_input) + np.dot(self.param.wg.T, dg_input))
        self.state.bottom_diff_s = ds * self.state.f
        self.state.bottom_diff_x = dxc[:x_dim]
        self.state.bottom_diff_h = dxc[x_dim:]

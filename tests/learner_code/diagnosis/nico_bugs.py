# Buggy versions of nicodjimenez's LstmNode.top_diff_is, one classic mistake
# (or two) each, for lstm-derive's diagnosis tests. LstmNode is the right one.
import numpy as np


def backward(self, top_diff_h, top_diff_s, bug=()):
    ds = self.state.o * top_diff_h + top_diff_s
    if "ds_no_o" in bug:
        ds = top_diff_h + top_diff_s
    do = self.state.s * top_diff_h
    di = self.state.g * ds
    dg = self.state.i * ds
    df = self.s_prev * ds
    di_input = (1. - self.state.i) * self.state.i * di
    if "di_tanh_derivative" in bug:
        di_input = (1. - self.state.i ** 2) * di
    df_input = (1. - self.state.f) * self.state.f * df
    if "df_no_derivative" in bug:
        df_input = df
    do_input = (1. - self.state.o) * self.state.o * do
    if "do_no_derivative" in bug:
        do_input = do
    dg_input = (1. - self.state.g ** 2) * dg
    self.param.wi_diff += np.outer(di_input, self.xc)
    self.param.wf_diff += np.outer(df_input, self.xc)
    self.param.wo_diff += np.outer(do_input, self.xc)
    self.param.wg_diff += np.outer(dg_input, self.xc)
    self.param.bi_diff += di_input
    self.param.bf_diff += df_input
    self.param.bo_diff += do_input
    self.param.bg_diff += dg_input
    dxc = np.zeros_like(self.xc)
    dxc += np.dot(self.param.wi.T, di_input)
    dxc += np.dot(self.param.wi.T if "df_with_wi" in bug else self.param.wf.T, df_input)
    dxc += np.dot(self.param.wo.T, do_input)
    dxc += np.dot(self.param.wg.T, dg_input)
    self.state.bottom_diff_s = ds if "bottom_diff_s_no_f" in bug else ds * self.state.f
    self.state.bottom_diff_x = dxc[:self.param.x_dim]
    self.state.bottom_diff_h = dxc[self.param.x_dim:]


class LstmNode:
    def top_diff_is(self, top_diff_h, top_diff_s):
        backward(self, top_diff_h, top_diff_s)


class DsWithoutO:
    """(a) ds = top_diff_h + top_diff_s: the gate value o left out of one intermediate."""

    def top_diff_is(self, top_diff_h, top_diff_s):
        backward(self, top_diff_h, top_diff_s, ("ds_no_o",))


class BottomDiffSWithoutF:
    """(b) bottom_diff_s = ds: the forget gate's value f left out."""

    def top_diff_is(self, top_diff_h, top_diff_s):
        backward(self, top_diff_h, top_diff_s, ("bottom_diff_s_no_f",))


class DfInputWithoutDerivative:
    """(b) df_input = df: the sigmoid derivative f*(1 - f) left out."""

    def top_diff_is(self, top_diff_h, top_diff_s):
        backward(self, top_diff_h, top_diff_s, ("df_no_derivative",))


class DfInputWithWi:
    """(c) dxc gets wi.T @ df_input: the input gate's weight with the forget gate's gradient."""

    def top_diff_is(self, top_diff_h, top_diff_s):
        backward(self, top_diff_h, top_diff_s, ("df_with_wi",))


class TwoBugs:
    """(d) ds without o and do_input without its sigmoid derivative."""

    def top_diff_is(self, top_diff_h, top_diff_s):
        backward(self, top_diff_h, top_diff_s, ("ds_no_o", "do_no_derivative"))


class DiInputWithTanhDerivative:
    """A mistake no candidate fits: di_input = (1 - i**2)*di, tanh's derivative on a sigmoid gate."""

    def top_diff_is(self, top_diff_h, top_diff_s):
        backward(self, top_diff_h, top_diff_s, ("di_tanh_derivative",))

"""Recurrent cells written from their equations: the report's vanilla RNN, LSTM, GRU.

Each cell maps a whole sequence ``x`` of shape (B, T, I) to its last hidden state
h_T of shape (B, H). The RNN and the GRU leave their backward pass to autograd;
their speed on a CPU comes from keeping the Python loop over time small: the
input projection ``W_x x_t + b`` is computed for every t at once, in one matmul,
before the loop; the loop body is one ``addmm`` plus the pointwise gate
arithmetic; ``unbind`` hands out the time steps (its backward is one ``stack``,
where indexing ``xw[:, t]`` would allocate a full-size gradient per step). The
LSTM, with the most pointwise ops per step, has its backpropagation through time
written out by hand from the same equations (``LSTMSequence``), tested against
finite differences and ``torch.nn.LSTM`` in ``tests/test_rnn.py``.

Gate rows are stacked in PyTorch's order (LSTM: i, f, g, o; GRU: r, z, n), so a
cell's weights copy straight into ``torch.nn.LSTM``/``GRU`` (see ``rnn.py``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable


class ElmanCell(nn.Module):
    """The course report's cell: h_0 = 0, h_t = tanh(W_hx x_t + W_hh h_{t-1} + b_h)."""

    n_gates = 1

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.W_hx = nn.Parameter(torch.empty(hidden, input_size))
        self.W_hh = nn.Parameter(torch.empty(hidden, hidden))
        self.b_h = nn.Parameter(torch.zeros(hidden))

    def layout(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(W_x, W_h, input-side bias, hidden-side bias or None), in torch.nn.RNN's layout."""
        return self.W_hx, self.W_hh, self.b_h, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, H)
        # (B, T, H): every W_hx x_t + b_h at once
        xw = torch.nn.functional.linear(x, self.W_hx, self.b_h)
        h = x.new_zeros(x.shape[0], self.W_hh.shape[0])  # h_0 = 0
        w_hh = self.W_hh.t()
        for xw_t in xw.unbind(1):
            h = torch.tanh(torch.addmm(xw_t, h, w_hh))  # (B, H)
        return h


class LSTMCell(nn.Module):
    """The LSTM of the course's next assignment, with gates g, i, f, o.

    g_t = tanh(W_gx x_t + W_gh h_{t-1} + b_g)      candidate
    i_t = sigmoid(W_ix x_t + W_ih h_{t-1} + b_i)   input gate
    f_t = sigmoid(W_fx x_t + W_fh h_{t-1} + b_f)   forget gate
    o_t = sigmoid(W_ox x_t + W_oh h_{t-1} + b_o)   output gate
    c_t = g_t * i_t + c_{t-1} * f_t,   h_t = tanh(c_t) * o_t,   h_0 = c_0 = 0

    Its backward pass is written out by hand (``LSTMSequence``): autograd through
    the time loop made a training step 2.1-2.5x torch.nn.LSTM's on a CPU, most of
    it per-op bookkeeping (docs/palindrome.md, "Speed").
    """

    n_gates = 4

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.W_x = nn.Parameter(torch.empty(4 * hidden, input_size))  # rows: i, f, g, o
        self.W_h = nn.Parameter(torch.empty(4 * hidden, hidden))
        self.b = nn.Parameter(torch.zeros(4 * hidden))

    def layout(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.W_x, self.W_h, self.b, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, H)
        return LSTMSequence.apply(x, self.W_x, self.W_h, self.b)


def _sigmoid_grad(
    u: torch.Tensor, s: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """u * s * (1 - s): u carried back through s = sigmoid(a), in one pass (torch's kernel for it)."""
    if out is None:
        return torch.ops.aten.sigmoid_backward(u, s)
    return torch.ops.aten.sigmoid_backward(u, s, grad_input=out)


def _tanh_grad(u: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """u * (1 - y * y): u carried back through y = tanh(a), in one pass."""
    if out is None:
        return torch.ops.aten.tanh_backward(u, y)
    return torch.ops.aten.tanh_backward(u, y, grad_input=out)


class LSTMSequence(torch.autograd.Function):
    """``LSTMCell`` over a whole sequence, (x, W_x, W_h, b) -> h_T, with backpropagation through time by hand.

    Forward: the cell's equations, step by step, outside autograd, keeping the
    gates and c_t, tanh(c_t) of every step. Backward: from dh_T (and dc_T = 0),
    for t = T..1, with a_t the gates' pre-activations:

        dc_t  += dh_t * o_t * (1 - tanh^2 c_t)
        da_o   = dh_t * tanh(c_t) * o_t (1 - o_t)
        da_i   = dc_t * g_t * i_t (1 - i_t)
        da_f   = dc_t * c_{t-1} * f_t (1 - f_t)
        da_g   = dc_t * i_t * (1 - g_t^2)
        dh_{t-1} = W_h^T da_t,   dc_{t-1} = dc_t * f_t

    then the weight gradients of all steps in one matmul, dW = sum_t da_t z_t^T,
    as fused kernels do (autograd would run one small matmul and an accumulation
    per step). Why it is laid out as it is, all of it for CPU speed:

    * feature-major, (features, B) per step: each gate is a block of contiguous rows;
    * W = [W_h | W_x | b] (4H, H+I+1) and z_t = [h_{t-1}; x_t; 1]: a_t = W z_t is
      one matmul, and dW the one matmul above, with z (H+I+1, T, B) and
      da (4H, T, B) viewed as (., T*B) matrices;
    * the products in da that do not depend on dh or dc are computed for all t
      before the loop, which keeps 4 pointwise ops and one matmul per step.
    """

    @staticmethod
    def forward(ctx, x, w_x, w_h, b):  # (B, T, I), (4H, I), (4H, H), (4H,) -> (B, H)
        B, T, _ = x.shape
        H = w_h.shape[1]
        w = torch.cat((w_h, w_x, b[:, None]), 1)  # (4H, H+I+1)
        z = x.new_empty(w.shape[1], T, B)  # z[:, t] = [h_{t-1}; x_t; 1]
        z[:H, 0] = 0  # h_0
        z[H:-1] = x.permute(2, 1, 0)
        z[-1] = 1
        acts = x.new_empty(T, 4 * H, B)  # i, f, g, o
        cs = x.new_empty(T + 1, H, B)  # c_0 .. c_T
        cs[0] = 0
        tanh_cs = x.new_empty(T, H, B)
        h_T = x.new_empty(H, B)
        hs = (*z[:H, 1:].unbind(1), h_T)  # where h_1 .. h_T go
        gates = zip(*(blk.unbind(0) for blk in acts.split(H, 1)), strict=True)
        steps = zip(z.unbind(1), acts, gates, cs[:-1], cs[1:], tanh_cs, hs, strict=True)
        for z_t, act, (i, f, g, o), c_prev, c, tanh_c, h in steps:
            a = torch.mm(w, z_t)  # (4H, B)
            torch.sigmoid(a, out=act)  # one call for i, f, o (g's rows are overwritten next)
            torch.tanh(a[2 * H : 3 * H], out=g)
            torch.mul(f, c_prev, out=c)
            c.addcmul_(g, i)  # c_t = g * i + c_{t-1} * f
            torch.tanh(c, out=tanh_c)
            torch.mul(tanh_c, o, out=h)
        ctx.save_for_backward(w, z, acts, cs, tanh_cs)
        return h_T.t()

    @staticmethod
    @once_differentiable
    def backward(ctx, dh_T):
        w, z, acts, cs, tanh_cs = ctx.saved_tensors
        T, H, B = tanh_cs.shape
        i, f, g, o = acts.split(H, 1)  # each (T, H, B)
        # da_i, da_f, da_g = dc_t * p_t;  da_o = dh_t * r_t;  dc_t += dh_t * k_t
        p = acts.new_empty(T, 3, H, B)
        _sigmoid_grad(g, i, out=p[:, 0])
        _sigmoid_grad(cs[:-1], f, out=p[:, 1])
        _tanh_grad(i, g, out=p[:, 2])
        r = _sigmoid_grad(tanh_cs, o)
        k = _tanh_grad(o, tanh_cs)
        da = acts.new_empty(4 * H, T, B)  # da[:, t] = dL/da_t
        da_ifg = da[: 3 * H].unflatten(0, (3, H)).unbind(2)
        da_o = da[3 * H :].unbind(1)
        da_t = da.unbind(1)
        w_h_t = w[:, :H].t()
        dh = dh_T.t().contiguous()  # (H, B)
        dc = torch.zeros_like(dh)
        for t in range(T - 1, -1, -1):
            dc.addcmul_(dh, k[t])
            torch.mul(dc, p[t], out=da_ifg[t])
            torch.mul(dh, r[t], out=da_o[t])
            dc.mul_(f[t])
            dh = torch.mm(w_h_t, da_t[t])  # dh_{t-1}
        da = da.view(4 * H, T * B)
        dw = da @ z.view(-1, T * B).t()  # (4H, H+I+1): [dW_h | dW_x | db], all steps at once
        dx = None
        if ctx.needs_input_grad[0]:
            dx = (w[:, H:-1].t() @ da).view(-1, T, B).permute(2, 1, 0)  # (B, T, I)
        return dx, dw[:, H:-1], dw[:, :H], dw[:, -1]


class GRUCell(nn.Module):
    """The GRU as cuDNN and torch.nn.GRU define it (the reset gate acts after W_nh).

    r_t = sigmoid(W_rx x_t + b_rx + W_rh h_{t-1} + b_rh)   reset gate
    z_t = sigmoid(W_zx x_t + b_zx + W_zh h_{t-1} + b_zh)   update gate (1 = keep h_{t-1})
    n_t = tanh(W_nx x_t + b_nx + r_t * (W_nh h_{t-1} + b_nh))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1},   h_0 = 0

    It needs two biases: b_nh sits inside the reset gate's product.
    """

    n_gates = 3

    def __init__(self, input_size: int, hidden: int) -> None:
        super().__init__()
        self.W_x = nn.Parameter(torch.empty(3 * hidden, input_size))  # rows: r, z, n
        self.W_h = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.b_x = nn.Parameter(torch.zeros(3 * hidden))
        self.b_h = nn.Parameter(torch.zeros(3 * hidden))

    def layout(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        return self.W_x, self.W_h, self.b_x, self.b_h

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, H)
        xw = torch.nn.functional.linear(x, self.W_x, self.b_x)  # (B, T, 3H)
        h = x.new_zeros(x.shape[0], self.W_h.shape[1])
        w_h = self.W_h.t()
        hid = h.shape[1]
        for xw_t in xw.unbind(1):
            hw = torch.addmm(self.b_h, h, w_h)  # (B, 3H)
            rz = torch.sigmoid(xw_t[:, : 2 * hid] + hw[:, : 2 * hid])  # r and z in one call
            r, z = rz[:, :hid], rz[:, hid:]
            n = torch.tanh(torch.addcmul(xw_t[:, 2 * hid :], r, hw[:, 2 * hid :]))
            h = torch.lerp(n, h, z)  # n + z * (h - n) = (1 - z) * n + z * h
        return h


CELLS: dict[str, type[nn.Module]] = {"rnn": ElmanCell, "lstm": LSTMCell, "gru": GRUCell}

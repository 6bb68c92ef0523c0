"""Recurrent cells written from their equations: the report's vanilla RNN, LSTM, GRU.

Each cell maps a whole sequence ``x`` of shape (B, T, I) to its last hidden state
h_T of shape (B, H). Speed on a CPU comes from keeping the Python loop over time
small: the input projection ``W_x x_t + b`` is computed for every t at once, in
one matmul, before the loop; the loop body is one ``addmm`` plus the pointwise
gate arithmetic; ``unbind`` hands out the time steps (its backward is one
``stack``, where indexing ``xw[:, t]`` would allocate a full-size gradient per step).

Gate rows are stacked in PyTorch's order (LSTM: i, f, g, o; GRU: r, z, n), so a
cell's weights copy straight into ``torch.nn.LSTM``/``GRU`` (see ``rnn.py``).
"""

from __future__ import annotations

import torch
from torch import nn


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
        xw = torch.nn.functional.linear(x, self.W_x, self.b)  # (B, T, 4H)
        h = x.new_zeros(x.shape[0], self.W_h.shape[1])
        c = h
        w_h = self.W_h.t()
        hid = h.shape[1]
        for xw_t in xw.unbind(1):
            gates = torch.addmm(xw_t, h, w_h)  # (B, 4H)
            # One sigmoid over all four blocks (g's is unused) costs less than three
            # separate calls: on a CPU each kernel launch, not the arithmetic, dominates.
            s = torch.sigmoid(gates)
            i, f, o = s[:, :hid], s[:, hid : 2 * hid], s[:, 3 * hid :]
            g = torch.tanh(gates[:, 2 * hid : 3 * hid])
            c = torch.addcmul(c * f, g, i)  # g * i + c * f
            h = torch.tanh(c) * o
        return h


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

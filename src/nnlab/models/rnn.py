"""Recurrent classifiers for sequences: vanilla RNN, LSTM and GRU, read out at the last step.

``RecurrentClassifier`` runs a recurrent core over (B, T, I) inputs and maps the
last hidden state to logits, o = W_ph h_T + b_o; softmax belongs inside the loss
(the course report applied it before ``CrossEntropyLoss``, which then trained
at chance). The core is either

* ``impl = "scratch"``: the cell's equations in ``rnn_cells.py``, or
* ``impl = "fused"``: ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (cuDNN on a GPU).

Both hold the same numbers in the same layout (``layout()``), are initialised by
the same function, and compute the same function: ``copy_weights`` moves weights
between them, and the tests check outputs and gradients agree to 1e-6 in float64.
The fused modules carry a second, hidden-side bias (cuDNN's convention) that is
initialised to zero, so at initialisation it adds nothing the scratch cell lacks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from nnlab.errors import ConfigError
from nnlab.models.rnn_cells import CELLS

if TYPE_CHECKING:
    from nnlab.config import ModelConfig

FUSED: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
Layout = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


class FusedCore(nn.Module):
    """``torch.nn.RNN/LSTM/GRU`` (one layer, batch first), returning only h_T like the cells."""

    def __init__(self, kind: str, input_size: int, hidden: int) -> None:
        super().__init__()
        self.n_gates = CELLS[kind].n_gates
        self.net = FUSED[kind](input_size, hidden, batch_first=True)

    def layout(self) -> Layout:
        n = self.net
        return n.weight_ih_l0, n.weight_hh_l0, n.bias_ih_l0, n.bias_hh_l0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, H)
        _, state = self.net(x)  # state: h_n (1, B, H), or (h_n, c_n) for the LSTM
        h_n = state[0] if isinstance(state, tuple) else state
        return h_n[0]


class RecurrentClassifier(nn.Module):
    """A one-layer recurrent core over (B, T, I) and a linear read-out of h_T: (B, n_classes) logits."""

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden: int,
        n_classes: int,
        *,
        impl: str = "scratch",
        init: str = "default",
        forget_bias: float = 1.0,
        update_bias: float = 1.0,
        chrono: int = 0,
    ) -> None:
        super().__init__()
        self.kind, self.impl = kind, impl
        self.core = (
            CELLS[kind](input_size, hidden)
            if impl == "scratch"
            else FusedCore(kind, input_size, hidden)
        )
        self.head = nn.Linear(hidden, n_classes)  # o = W_ph h_T + b_o
        init_recurrent(self.core.layout(), kind, init, forget_bias, update_bias, chrono)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, n_classes)
        return self.head(self.core(x))

    def extra_repr(self) -> str:
        return f"kind={self.kind}, impl={self.impl}"


@torch.no_grad()
def init_recurrent(
    layout: Layout,
    kind: str,
    init: str,
    forget_bias: float = 1.0,
    update_bias: float = 1.0,
    chrono: int = 0,
) -> None:
    """Initialise a core's weights in place, identically for both implementations.

    ``default``: every weight ~ U(-1/sqrt(H), 1/sqrt(H)) as torch.nn.RNN does;
    ``orthogonal``: each gate's W_h block orthogonal (its singular values are 1,
    so signals neither blow up nor die over many steps), W_x Xavier-uniform;
    ``identity`` (rnn only): W_hh = I, h carries itself forward unchanged until
    the inputs teach it otherwise (Le et al., 2015, "IRNN");
    ``auto``: orthogonal for the vanilla RNN, default for the LSTM and GRU. On the
    palindromes (docs/palindrome.md, 3 seeds a length) the RNN with the default
    init failed a seed at T=18 and held 1.00 to T=25 with orthogonal, while the
    orthogonal GRU failed a seed at T=3 that the default one did not: the gated
    cells carry the signal through their gates and need no help from W_h.
    ``chrono`` > 0 (the sequence length T) replaces those two constants by chrono
    initialisation, which scales the gates' memory to T (see the code).
    Biases start at 0, except ``forget_bias`` on the LSTM's forget gate and
    ``update_bias`` on the GRU's update gate: with them the cell starts out
    remembering (Jozefowicz et al., 2015) instead of halving its memory at every
    step. The two are separate because they want different values: on the
    palindromes the LSTM needed 3 at T=50, while 3 made the GRU worse at both
    ends (one seed in six memorised a wrong rule at T=3; 0.993 against 0.9999
    at T=50 with 1; docs/palindrome.md).
    """
    w_x, w_h, b_x, b_h = layout
    hidden = w_h.shape[1]
    if init == "auto":
        init = "orthogonal" if kind == "rnn" else "default"
    if init == "identity" and kind != "rnn":
        raise ConfigError(f"model.init: identity is for model.name = rnn only, got it with {kind}")
    bound = 1 / math.sqrt(hidden)
    for w in (w_x, w_h):
        nn.init.uniform_(w, -bound, bound)
    if init in ("orthogonal", "identity"):
        for block_x, block_h in zip(w_x.split(hidden), w_h.split(hidden), strict=True):
            nn.init.xavier_uniform_(block_x)
            if init == "orthogonal":
                nn.init.orthogonal_(block_h)
            else:
                block_h.copy_(torch.eye(hidden))
    for b in (b_x, b_h):
        if b is not None:
            b.zero_()
    if kind in ("lstm", "gru"):  # LSTM rows i, f, g, o; GRU rows r, z, n: rows H..2H either way
        keep = b_x[hidden : 2 * hidden]  # the forget gate's bias (LSTM), the update gate's (GRU)
        if chrono:
            # Chrono init (Tallec & Ollivier, 2018): unit j keeps its state for about u_j
            # steps, u_j ~ U(1, T-1): b = log u, so sigmoid(b) = u / (1 + u). The LSTM's
            # input gate gets -b (it writes as little as the unit keeps).
            keep.copy_(torch.empty(hidden).uniform_(1.0, max(chrono - 1.0, 1.0)).log_())
            if kind == "lstm":
                b_x[:hidden] = -keep
        else:
            keep.fill_(forget_bias if kind == "lstm" else update_bias)


@torch.no_grad()
def copy_weights(src: RecurrentClassifier, dst: RecurrentClassifier) -> None:
    """Make ``dst`` compute what ``src`` computes, across implementations.

    A core with one bias (the scratch RNN and LSTM) equals a fused one whose
    two biases sum to it; the GRU has two biases in both implementations.
    """
    if src.kind != dst.kind:
        raise ValueError(f"cannot copy {src.kind} weights into {dst.kind}")
    sx, sh, sbx, sbh = src.core.layout()
    dx, dh, dbx, dbh = dst.core.layout()
    dx.copy_(sx)
    dh.copy_(sh)
    if dbh is None:  # into one bias: fold the source's two together
        dbx.copy_(sbx if sbh is None else sbx + sbh)
    else:
        dbx.copy_(sbx)
        dbh.copy_(torch.zeros_like(dbh) if sbh is None else sbh)
    dst.head.load_state_dict(src.head.state_dict())


def _builder(kind: str):
    def build(
        cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int
    ) -> RecurrentClassifier:
        if len(input_shape) != 2:
            raise ConfigError(
                f"model.name: {kind} needs sequences of shape (T, features), e.g. data.name = palindrome; "
                f"got examples of shape {tuple(input_shape)}"
            )
        if len(cfg.hidden) != 1:
            raise ConfigError(
                f"model.hidden: {kind} has one recurrent layer, give one width like 64, got {cfg.hidden}"
            )
        return RecurrentClassifier(
            kind,
            input_shape[-1],
            cfg.hidden[0],
            n_classes,
            impl=cfg.impl,
            init=cfg.init,
            forget_bias=cfg.forget_bias,
            update_bias=cfg.update_bias,
            chrono=input_shape[0] if cfg.chrono else 0,  # T, the sequence length
        )

    return build


build_rnn, build_lstm, build_gru = _builder("rnn"), _builder("lstm"), _builder("gru")

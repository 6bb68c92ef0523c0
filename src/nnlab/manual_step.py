"""A training step for small MLPs with hand-derived gradients: no autograd, no optimizer wrapper.

Why it exists: for a network like the course report's 2-20-2 MLP at batch 100, a
step's arithmetic takes a few microseconds; what costs is fixed overhead per
call. Autograd records a graph during the forward pass and walks it in
``backward`` (about 40% of an autograd step here), and ``optimizer.step()``'s
wrapper (profiler hooks, regrouping the tensors by device and dtype) costs more
than the update itself (about 25%). This step does the same arithmetic with
plain tensor ops under ``no_grad`` (the backward pass of an MLP is short enough
to write out) and, for SGD, applies the update in place.

For the MLP ``h_0 = x``, ``z_l = h_{l-1} W_l^T + b_l``, ``h_l = act(z_l)``,
logits ``z_L`` and mean cross-entropy over a batch of B:

    dL/dz_L   = (softmax(z_L) - target) / B      target = one-hot(y), smoothed by eps
    dL/dW_l   = (dL/dz_l)^T h_{l-1}              dL/db_l = sum over the batch of dL/dz_l
    dL/dh_l-1 = dL/dz_l W_l                      dL/dz_l-1 = dL/dh_l-1 * act'(z_l-1)

``fit`` uses it when ``train.manual_step`` is ``auto`` (the default) and the run
qualifies (``unsupported`` says why not); ``on`` insists, ``off`` never uses it.
The optimizer keeps its state where torch.optim keeps it (SGD's momentum
buffers in ``optimizer.state``), so checkpoints and resume do not change, and
optimizers other than SGD get the gradients in ``.grad`` and their own
``step()``. ``tests/test_manual_step.py`` checks gradients and whole runs
against autograd with torch.optim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from nnlab import distributed

if TYPE_CHECKING:
    from nnlab.config import Config

# Each activation's derivative through the ATen kernel autograd itself uses
# (one call, the same arithmetic): sigmoid' = h (1 - h), tanh' = 1 - h^2 (both
# from the output h), relu' = [z > 0], and gelu' = Phi(z) + z phi(z) (from the input z).
_ACTIVATION_BACKWARD = {
    "sigmoid": lambda grad, z, h: torch.ops.aten.sigmoid_backward(grad, h),
    "tanh": lambda grad, z, h: torch.ops.aten.tanh_backward(grad, h),
    "relu": lambda grad, z, h: torch.ops.aten.threshold_backward(grad, h, 0),
    "gelu": lambda grad, z, h: torch.ops.aten.gelu_backward(grad, z),
}
_ACTIVATION_FORWARD = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu}


def applies(cfg: Config, amp: bool) -> bool:
    """Whether ``fit`` trains this run with the hand-derived step."""
    return cfg.train.manual_step != "off" and unsupported(cfg, amp) is None


def unsupported(cfg: Config, amp: bool) -> str | None:
    """Why this run cannot use the hand-derived step, or None if it can (decided from the config alone)."""
    m, t = cfg.model, cfg.train
    if m.name != "mlp" or m.backend != "torch":
        return f"it is written for the torch MLP, not model {m.name!r} (backend {m.backend})"
    if m.batchnorm or m.dropout:
        return "it has no BatchNorm or dropout (set model.batchnorm=false, model.dropout=0)"
    if m.activation not in _ACTIVATION_BACKWARD:
        return f"it has no derivative for activation {m.activation!r}"
    if amp:
        return "it runs in full precision (set train.amp=off)"
    if t.compile:
        return "torch.compile needs autograd's graph (set train.compile=false)"
    if t.ema:
        return "weight averaging follows the autograd step (set train.ema=0)"
    if distributed.is_distributed():
        return "DDP averages gradients through autograd hooks (train in one process)"
    return None


class ManualMLPStep:
    """``step(x, y, track)`` = forward, hand-derived backward and optimizer update for an ``MLP``.

    Returns ``(loss, logits)`` like the autograd path: the batch's mean
    cross-entropy (only with ``track``, else None; the gradient needs no loss
    value) and the logits.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        activation: str,
        *,
        label_smoothing: float = 0.0,
        clip_norm: float = 0.0,
    ) -> None:
        self.linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.params = [p for lin in self.linears for p in (lin.weight, lin.bias)]
        given = [p for g in optimizer.param_groups for p in g["params"]]
        if len(optimizer.param_groups) != 1 or [id(p) for p in given] != [id(p) for p in self.params]:
            raise ValueError("the optimizer must hold the MLP's weights and biases, in order, in one group")
        self.optimizer = optimizer
        self.group = optimizer.param_groups[0]
        self.sgd = isinstance(optimizer, torch.optim.SGD) and not self.group.get("maximize", False)
        self.act = _ACTIVATION_FORWARD[activation]
        self.act_backward = _ACTIVATION_BACKWARD[activation]
        self.label_smoothing = label_smoothing
        self.clip_norm = clip_norm
        self._minus: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}  # label smoothing is fixed

    def step(self, x: torch.Tensor, y: torch.Tensor, track: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """One training step on the batch ``(x, y)``; returns ``(mean loss if track else None, logits)``."""
        if torch.is_grad_enabled():  # train_one_epoch runs whole epochs under no_grad (it costs per call)
            with torch.no_grad():
                return self.step(x, y, track)
        logits, grads = self.gradients(x, y)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing) if track else None
        self._update(grads)
        return loss, logits

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(logits, [dL/dW_0, dL/db_0, dL/dW_1, ...])`` of the mean cross-entropy on ``(x, y)``, by hand."""
        if x.dim() > 2:
            x = x.flatten(1)
        # forward, keeping every layer's input (and pre-activation) for the backward pass
        inputs, pre = [x], []
        h = x
        for lin in self.linears[:-1]:
            z = torch.addmm(lin.bias, h, lin.weight.t())
            h = self.act(z)
            pre.append(z)
            inputs.append(h)
        last = self.linears[-1]
        logits = torch.addmm(last.bias, h, last.weight.t())

        # dL/dlogits = (softmax - target) / B; the target's 1 - eps goes in with one scatter
        batch, n_classes = logits.shape
        grad = torch.softmax(logits, 1)
        if self.label_smoothing:
            grad.sub_(self.label_smoothing / n_classes)
        grad.scatter_add_(1, y.unsqueeze(1), self._minus_column(batch, grad, 1 - self.label_smoothing))
        grad.div_(batch)

        grads: list[torch.Tensor] = [grad] * len(self.params)  # placeholders: W_0, b_0, W_1, b_1, ...
        for i in range(len(self.linears) - 1, -1, -1):
            grads[2 * i] = torch.mm(grad.t(), inputs[i])  # dL/dW_i
            grads[2 * i + 1] = grad.sum(0)  # dL/db_i
            if i:  # on to the layer below: through W_i, then the activation
                grad = self.act_backward(torch.mm(grad, self.linears[i].weight), pre[i - 1], inputs[i])
        return logits, grads

    def _minus_column(self, batch: int, like: torch.Tensor, value: float) -> torch.Tensor:
        """A cached (batch, 1) column of -value: scatter_add_ needs a source tensor."""
        key = (batch, like.device, like.dtype)
        if key not in self._minus:
            self._minus[key] = torch.full((batch, 1), -value, device=like.device, dtype=like.dtype)
        return self._minus[key]

    def _update(self, grads: list[torch.Tensor]) -> None:
        params = self.params
        if self.clip_norm > 0 or not self.sgd:
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            if self.clip_norm > 0:
                nn.utils.clip_grad_norm_(params, self.clip_norm)
            if not self.sgd:
                self.optimizer.step()
                return
            grads = [p.grad for p in params]
        # torch.optim.SGD's update (dampening as given; momentum buffers where SGD keeps them):
        #   g += wd * p;  buf = momentum * buf + (1 - dampening) * g  (buf = g at first);
        #   g = g + momentum * buf (nesterov) or buf;  p -= lr * g
        group = self.group
        lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
        if isinstance(lr, torch.Tensor):
            lr = lr.item()
        for p, g in zip(params, grads, strict=True):
            if wd:
                g = g.add_(p, alpha=wd)
            if momentum:
                state = self.optimizer.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(momentum).add_(g, alpha=1 - group["dampening"])
                g = g.add_(buf, alpha=momentum) if group["nesterov"] else buf
            p.add_(g, alpha=-lr)
        # What optimizer.step() would have flagged for the LR scheduler, which otherwise
        # warns that it was stepped before the optimizer ever was.
        self.optimizer._opt_called = True

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
qualifies (``engine/plan.py`` decides, and says why not); ``on`` insists, ``off``
never uses it. It is a step like ``engine/steps.py``'s: ``step(x, y, track)``.
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

if TYPE_CHECKING:
    pass

# Each activation's derivative through the ATen kernel autograd itself uses (one call,
# the same arithmetic): sigmoid' = h (1 - h), tanh' = 1 - h^2, relu' = [h > 0] (all
# from the output h), gelu' = Phi(z) + z phi(z) (from the input z). Entries:
# (kernel, whether it takes z rather than h, extra arguments). ``.default`` picks the
# overload up front: resolving it per call costs more than the kernel here.
_aten = torch.ops.aten
_DERIVATIVES = {
    "sigmoid": (_aten.sigmoid_backward.default, False, ()),
    "tanh": (_aten.tanh_backward.default, False, ()),
    "relu": (_aten.threshold_backward.default, False, (0,)),
    "gelu": (_aten.gelu_backward.default, True, ()),
}
_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "gelu": F.gelu}


class ManualMLPStep:
    """``step(x, y, track)`` = forward, hand-derived backward and optimizer update for an ``MLP``.

    ``needs_grad`` is false: ``train_one_epoch`` runs the epoch without autograd.

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
        self.model = self.train_model = model
        self.linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self.params = [p for lin in self.linears for p in (lin.weight, lin.bias)]
        given = [p for g in optimizer.param_groups for p in g["params"]]
        if len(optimizer.param_groups) != 1 or [id(p) for p in given] != [
            id(p) for p in self.params
        ]:
            raise ValueError(
                "the optimizer must hold the MLP's weights and biases, in order, in one group"
            )
        self.optimizer = optimizer
        self.group = optimizer.param_groups[0]
        self.sgd = isinstance(optimizer, torch.optim.SGD) and not self.group.get("maximize", False)
        self.act = _ACTIVATIONS[activation]
        self.derivative, self.derivative_of_input, self.derivative_args = _DERIVATIVES[activation]
        self.label_smoothing = label_smoothing
        self.clip_norm = clip_norm
        # (B, 1) column of -(1 - eps) for scatter_add_, kept between steps
        self._target = torch.empty(0)

    needs_grad = False

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, track: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        return self.step(x, y, track)

    def step(
        self, x: torch.Tensor, y: torch.Tensor, track: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """One training step on the batch ``(x, y)``; returns ``(mean loss if track else None, logits)``."""
        # train_one_epoch runs whole epochs under no_grad (it costs per call)
        if torch.is_grad_enabled():
            with torch.no_grad():
                return self.step(x, y, track)
        logits, grads = self.gradients(x, y)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing) if track else None
        self._update(grads)
        return loss, logits

    def gradients(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(logits, [dL/dW_0, dL/db_0, dL/dW_1, ...])`` of the mean cross-entropy on ``(x, y)``, by hand."""
        if x.dim() > 2:
            x = x.flatten(1)
        # forward, keeping every layer's input (and pre-activation) for the backward pass
        inputs, pre = [x], []
        h = x
        for lin in self.linears[:-1]:
            z = F.linear(h, lin.weight, lin.bias)
            h = self.act(z)
            pre.append(z)
            inputs.append(h)
        last = self.linears[-1]
        logits = F.linear(h, last.weight, last.bias)

        # dL/dlogits = (softmax - target) / B; the target's 1 - eps goes in with one scatter
        batch, n_classes = logits.shape
        grad = torch.softmax(logits, 1)
        if self.label_smoothing:
            grad.sub_(self.label_smoothing / n_classes)
        if (
            self._target.shape[0] != batch
            or self._target.device != grad.device
            or self._target.dtype != grad.dtype
        ):
            self._target = torch.full(
                (batch, 1), self.label_smoothing - 1, device=grad.device, dtype=grad.dtype
            )
        grad.scatter_add_(1, y.unsqueeze(1), self._target)
        grad.div_(batch)

        # placeholders: W_0, b_0, W_1, b_1, ...
        grads: list[torch.Tensor] = [grad] * len(self.params)
        for i in range(len(self.linears) - 1, -1, -1):
            grads[2 * i] = torch.mm(grad.t(), inputs[i])  # dL/dW_i
            grads[2 * i + 1] = grad.sum(0)  # dL/db_i
            if i:  # on to the layer below: through W_i, then the activation
                at = pre[i - 1] if self.derivative_of_input else inputs[i]
                grad = self.derivative(
                    torch.mm(grad, self.linears[i].weight), at, *self.derivative_args
                )
        return logits, grads

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
        # torch.optim.SGD's update (dampening as given; momentum buffers where SGD keeps them),
        # elementwise, with public in-place ops: for these few small tensors a call per
        # tensor costs little, and the arithmetic is SGD's own:
        #   g += wd * p;  buf = momentum * buf + (1 - dampening) * g  (buf = g at first);
        #   g = g + momentum * buf (nesterov) or buf;  p -= lr * g
        group = self.group
        lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
        if isinstance(lr, torch.Tensor):
            lr = lr.item()
        if wd:
            for g, p in zip(grads, params, strict=True):
                g.add_(p, alpha=wd)
        if momentum:
            state = self.optimizer.state
            bufs = [state[p].get("momentum_buffer") for p in params]
            if any(b is None for b in bufs):  # the first step
                bufs = [g.clone() for g in grads]
                for p, b in zip(params, bufs, strict=True):
                    state[p]["momentum_buffer"] = b
            else:
                for b, g in zip(bufs, grads, strict=True):
                    b.mul_(momentum).add_(g, alpha=1 - group["dampening"])
            if group["nesterov"]:
                for g, b in zip(grads, bufs, strict=True):
                    g.add_(b, alpha=momentum)
            else:
                grads = bufs
        for p, g in zip(params, grads, strict=True):
            p.add_(g, alpha=-lr)

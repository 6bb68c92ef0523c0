"""Gradient descent for the NumPy MLP: batch orders, optimizers, learning-rate schedules.

The three forms of gradient descent are one loop with different batch sizes
(``minibatches``): per-sample SGD (``batch_size=1``, N updates per epoch),
mini-batch (``1 < batch_size < N``) and full-batch (``batch_size=None`` or
``>= N``, one update per epoch on the whole training set).

The optimizers follow ``torch.optim``'s update rules exactly (same defaults,
same order of operations), and work in place on flat arrays: ``params`` and
``grads`` of shape (P,) or (S, P) for S stacked networks. Every rule is
elementwise, so stacked networks are updated independently, as separate
optimizers would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


def minibatches(
    n: int, batch_size: int | None, rng: np.random.Generator | None
) -> Iterator[np.ndarray]:
    """Index arrays for one epoch: shuffled by ``rng`` (if given), in batches of ``batch_size``."""
    if batch_size is None or batch_size >= n:
        yield np.arange(n)  # full-batch: the order inside one batch does not change the gradient
        return
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def clip_grad_norm(grads: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale each network's gradient (last axis) to norm <= ``max_norm``, as torch's ``clip_grad_norm_``."""
    norm = np.sqrt((grads * grads).sum(axis=-1, keepdims=True))
    grads *= np.minimum(max_norm / (norm + 1e-6), 1.0)
    return norm[..., 0]


class Optimizer:
    """Updates ``params`` in place from ``grads``; ``lr`` may be changed between steps."""

    def __init__(
        self, params: np.ndarray, grads: np.ndarray, lr: float, weight_decay: float = 0.0
    ) -> None:
        self.params, self.grads, self.lr, self.weight_decay = params, grads, lr, weight_decay

    def step(self) -> None:
        raise NotImplementedError

    def _grad(self) -> np.ndarray:
        # L2 weight decay as torch adds it: to the gradient, before the update rule.
        return self.grads + self.weight_decay * self.params if self.weight_decay else self.grads


class SGD(Optimizer):
    def __init__(self, params, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0) -> None:
        super().__init__(params, grads, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov
        self.buf: np.ndarray | None = None

    def step(self) -> None:
        g = self._grad()
        if self.momentum:
            if self.buf is None:
                self.buf = g.copy()  # torch starts the momentum buffer at the first gradient
            else:
                self.buf *= self.momentum
                self.buf += g
            g = g + self.momentum * self.buf if self.nesterov else self.buf
        self.params -= self.lr * g


class Adam(Optimizer):
    """Adam; with ``decoupled=True`` AdamW (weight decay shrinks the weights, not the gradient)."""

    def __init__(
        self, params, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False
    ) -> None:
        super().__init__(params, grads, lr, weight_decay)
        self.beta1, self.beta2 = betas
        self.eps, self.decoupled = eps, decoupled
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.t = 0

    def step(self) -> None:
        self.t += 1
        if self.decoupled:
            g = self.grads
            if self.weight_decay:
                self.params *= 1.0 - self.lr * self.weight_decay
        else:
            g = self._grad()
        self.m += (1.0 - self.beta1) * (g - self.m)  # m = b1 m + (1 - b1) g, as torch's lerp
        self.v *= self.beta2
        self.v += (1.0 - self.beta2) * g * g
        bias1 = 1.0 - self.beta1**self.t
        bias2 = 1.0 - self.beta2**self.t
        denom = np.sqrt(self.v) / math.sqrt(bias2) + self.eps
        self.params -= (self.lr / bias1) * self.m / denom


class RMSprop(Optimizer):
    def __init__(
        self, params, grads, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0
    ) -> None:
        super().__init__(params, grads, lr, weight_decay)
        self.alpha, self.eps, self.momentum = alpha, eps, momentum
        self.v = np.zeros_like(params)
        self.buf = np.zeros_like(params) if momentum else None

    def step(self) -> None:
        g = self._grad()
        self.v *= self.alpha
        self.v += (1.0 - self.alpha) * g * g
        update = g / (np.sqrt(self.v) + self.eps)
        if self.buf is not None:
            self.buf *= self.momentum
            self.buf += update
            update = self.buf
        self.params -= self.lr * update


def build_optimizer(
    name: str,
    params: np.ndarray,
    grads: np.ndarray,
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    nesterov: bool = False,
    alpha: float = 0.99,
    betas: tuple[float, float] = (0.9, 0.999),
) -> Optimizer:
    """The optimizer ``name`` (sgd, adam, adamw, rmsprop) with torch's defaults for the rest."""
    if name == "sgd":
        return SGD(
            params, grads, lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
        )
    if name in ("adam", "adamw"):
        return Adam(
            params,
            grads,
            lr,
            betas=tuple(betas),
            weight_decay=weight_decay,
            decoupled=name == "adamw",
        )
    if name == "rmsprop":
        return RMSprop(params, grads, lr, alpha=alpha, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of sgd, adam, adamw, rmsprop, got {name!r}")


SCHEDULES = ("none", "step", "cosine")


def scheduled_lr(
    name: str,
    base_lr: float,
    *,
    epoch: int,
    step: int,
    total_steps: int,
    step_size: int = 100,
    gamma: float = 0.1,
    min_lr: float = 0.0,
) -> float:
    """The learning rate for optimizer step ``step`` (0-based) of epoch ``epoch`` (1-based).

    Matches the torch backend: ``step`` decays by ``gamma`` every ``step_size``
    epochs; ``cosine`` anneals per batch from ``base_lr`` to ``min_lr`` over all
    ``total_steps``.
    """
    if name == "none":
        return base_lr
    if name == "step":
        return base_lr * gamma ** ((epoch - 1) // step_size)
    if name == "cosine":
        return (
            min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * step / max(1, total_steps))) / 2
        )
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")

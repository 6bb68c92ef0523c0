"""Layers with an explicit forward and backward pass, in NumPy only.

Each module caches in ``forward`` what its ``backward`` needs, and ``backward``
takes dL/d(output) and returns dL/d(input), storing parameter gradients on the
way. Every module accepts a batch ``x`` of shape ``(B, D)`` or a *stack* of
independent batches ``(S, B, D)``: one per network when ``S`` networks (one per
seed) train at once. Parameters then carry the same leading axis ``S`` and
every operation below is batched along it, so ``S`` networks cost a handful of
NumPy calls per step instead of ``S`` times as many.

Tested against PyTorch autograd in float64 (``tests/test_numpy_mlp_grad.py``).
"""

from __future__ import annotations

import numpy as np

# Why the helpers below: NumPy's reductions (sum, max) along a short last axis, such
# as 2 classes, cost ~10x a matmul with a vector of ones; at this model size they
# were most of the training step. These give the same values, faster.


def sum_last(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=-1)`` as a matmul."""
    return x @ np.ones(x.shape[-1], dtype=x.dtype)


def sum_batch(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x.sum(axis=-2)`` (over the batch of (..., B, D)) as a matmul, optionally in place."""
    return np.matmul(np.ones(x.shape[-2], dtype=x.dtype), x, out=out)


def max_last(x: np.ndarray) -> np.ndarray:
    """``x.max(axis=-1)``: elementwise maxima over the columns when there are few."""
    if x.shape[-1] > 16:
        return x.max(axis=-1)
    out = x[..., 0].copy()
    for c in range(1, x.shape[-1]):
        np.maximum(out, x[..., c], out=out)
    return out


def one_hot(
    labels: np.ndarray, n_classes: int, label_smoothing: float = 0.0, dtype: type = np.float64
) -> np.ndarray:
    """Integer labels (...,) -> targets (..., n_classes), mixed with the uniform distribution by ``label_smoothing``."""
    target = (labels[..., None] == np.arange(n_classes)).astype(dtype)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / n_classes
    return target


class Module:
    """Base class: ``forward(x)`` then ``backward(dout)``; no parameters by default."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Module):
    """``y = x W + b``: ``x`` (..., B, in), ``W`` (..., in, out), ``b`` (..., out).

    Weights start like ``torch.nn.Linear``'s (``U(-1/sqrt(in), 1/sqrt(in))`` for
    ``W`` and ``b``), so both backends share one initialisation scheme. ``MLP``
    may rebind ``W``/``b``/``dW``/``db`` to views of one flat buffer; the
    backward pass writes gradients in place (``out=``) so such views stay valid.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        stack: int | None = None,
        rng: np.random.Generator | None = None,
        dtype: type = np.float64,
    ) -> None:
        self.in_features, self.out_features, self.stack = in_features, out_features, stack
        lead = () if stack is None else (stack,)
        rng = rng if rng is not None else np.random.default_rng()
        bound = 1.0 / np.sqrt(in_features)
        self.W = rng.uniform(-bound, bound, (*lead, in_features, out_features)).astype(dtype)
        self.b = rng.uniform(-bound, bound, (*lead, out_features)).astype(dtype)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self.x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        out = x @ self.W  # (..., B, out)
        out += self.b[..., None, :]  # the bias broadcast over the batch axis
        return out

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        # dL/dW = x^T dout and dL/db = sum over the batch; written in place (see class doc).
        np.matmul(np.swapaxes(self.x, -1, -2), dout, out=self.dW)
        sum_batch(dout, out=self.db)
        return dout @ np.swapaxes(self.W, -1, -2) if input_grad else None  # (..., B, in)

    def __repr__(self) -> str:
        stack = "" if self.stack is None else f", stack={self.stack}"
        return f"Linear({self.in_features}, {self.out_features}{stack})"


class ReLU(Module):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.mask


class Sigmoid(Module):
    def forward(self, x: np.ndarray) -> np.ndarray:
        # exp(-|x|) never overflows; 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0 keep
        # full relative precision at both ends (sigmoid(-50) is 2e-22, not 0).
        e = np.exp(-np.abs(x))
        self.y = np.where(x >= 0, 1.0, e) / (1.0 + e)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * self.y * (1.0 - self.y)


class Tanh(Module):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1.0 - self.y * self.y)


class SoftMax(Module):
    """Probabilities over the last axis; subtracting the row maximum keeps ``exp`` finite."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        e = np.exp(x - max_last(x)[..., None])
        self.p = e / sum_last(e)[..., None]
        return self.p

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # The Jacobian diag(p) - p p^T applied to dout, row by row.
        return self.p * (dout - sum_last(dout * self.p)[..., None])


class CrossEntropy:
    """Mean cross-entropy of *logits* against the targets; its gradient is ``(p - y) / B``.

    Takes logits (..., B, C), not probabilities: log-softmax is computed here
    stably, as ``torch.nn.functional.cross_entropy`` does. Targets are integer
    labels (..., B) or, precomputed with ``one_hot``, distributions (..., B, C).
    ``forward`` returns one loss per stacked network (shape
    ``logits.shape[:-2]``; a 0-d array for one network). ``label_smoothing``
    mixes integer labels' one-hot targets with the uniform distribution, like
    torch's argument of that name.
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def forward(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        z = logits - max_last(logits)[..., None]
        e = np.exp(z)
        total = sum_last(e)[..., None]
        self.p = e / total  # (..., B, C) softmax probabilities
        log_p = z - np.log(total)
        if target.ndim != logits.ndim:  # integer labels
            target = one_hot(target, logits.shape[-1], self.label_smoothing, logits.dtype)
        self.target = target
        per_example = -sum_last(target * log_p)  # (..., B)
        return sum_last(per_example) / per_example.shape[-1]

    def backward(self) -> np.ndarray:
        """dL/dlogits for the mean over the batch of each stacked network."""
        return (self.p - self.target) / self.p.shape[-2]

    __call__ = forward

    def __repr__(self) -> str:
        return f"CrossEntropy(label_smoothing={self.label_smoothing})"


ACTIVATIONS: dict[str, type[Module]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}

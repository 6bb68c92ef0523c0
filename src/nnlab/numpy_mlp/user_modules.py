"""``model.modules = "path/modules.py"``: the from-scratch MLP built from the user's own modules.

The file defines classes that follow ``nnlab.numpy_mlp.modules``' protocol
(docs/user-models.md):

- ``Linear(in_features, out_features)`` with ``W`` ``(in, out)`` and ``b`` ``(out,)``;
  ``forward(x)`` returns ``x @ W + b`` for ``x`` ``(B, in)``, ``backward(dout)`` returns
  dL/dx and sets ``dW`` and ``db``;
- the activation ``model.activation`` names: ``ReLU``, ``Sigmoid`` or ``Tanh``, with
  ``forward(x)`` and ``backward(dout)``;
- ``CrossEntropy()``: ``forward(logits, target)`` is the mean loss over the batch of
  logits ``(B, C)`` against target rows ``(B, C)`` (one-hot, or smoothed by
  ``train.label_smoothing``); ``backward()`` returns dL/dlogits ``(B, C)``.

``UserModulesMLP`` wraps them so that ``numpy_mlp/fit.py`` trains them exactly as it
trains nnlab's own MLP: a stack of one network whose parameters are views of one flat
buffer, initialised by the same generator (so the same seed starts from the same
weights), updated by the same optimizers. The user's ``W`` and ``b`` are rebound to
those views; gradients the user's ``backward`` stores are copied into the flat buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nnlab.errors import ConfigError
from nnlab.models.user_code import import_user_code, raised
from nnlab.numpy_mlp.mlp import MLP
from nnlab.numpy_mlp.modules import Linear, one_hot

# model.activation -> the class the user's file must define for it
ACTIVATION_CLASSES = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}
KEY = "model.modules"


def _make(modules: Any, name: str, path: str, *args: int) -> Any:
    cls = getattr(modules, name, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigError(f"{KEY}: {path} has no class {name!r} (the MLP needs Linear, {name})")
    try:
        return cls(*args)
    except Exception as exc:
        raise ConfigError(f"{KEY}: {name}{args} in {path} {raised(exc)}") from None


class UserModulesMLP:
    """One network ``n_inputs -> hidden... -> n_classes`` of the user's modules, presented as
    nnlab's ``MLP`` with ``stack=1``: ``params`` / ``grads`` ``(1, P)``, inputs ``(1, B, D)``."""

    def __init__(
        self,
        path: str,
        n_inputs: int,
        hidden: Sequence[int],
        n_classes: int,
        *,
        activation: str,
        rng: Sequence[np.random.Generator] | int | None = None,
        dtype: type = np.float32,
    ) -> None:
        modules = import_user_code(path, KEY)
        self.path = path
        # nnlab's network of one owns the flat buffers and their initialisation
        self.inner = MLP(
            n_inputs, hidden, n_classes, activation=activation, stack=1, rng=rng, dtype=dtype
        )
        self.sizes, self.activation, self.stack = self.inner.sizes, activation, 1
        self.params, self.grads, self.n_params = (
            self.inner.params,
            self.inner.grads,
            self.inner.n_params,
        )
        self.layers: list[Any] = []
        self.linears: list[tuple[Any, Linear]] = []  # (the user's Linear, nnlab's views)
        for mine in self.inner.layers:
            if isinstance(mine, Linear):
                theirs = _make(modules, "Linear", path, mine.in_features, mine.out_features)
                self._bind(theirs, mine)
                self.linears.append((theirs, mine))
            else:
                theirs = _make(modules, ACTIVATION_CLASSES[activation], path)
            self.layers.append(theirs)

    def _bind(self, theirs: Any, mine: Linear) -> None:
        """The user's ``W`` and ``b`` become views of the flat buffer (written by the optimizer)."""
        for name in ("W", "b"):
            want = getattr(mine, name).shape[1:]
            have = getattr(theirs, name, None)
            if not isinstance(have, np.ndarray) or have.shape != want:
                got = have.shape if isinstance(have, np.ndarray) else type(have).__name__
                raise ConfigError(
                    f"{KEY}: {self.path}: Linear({mine.in_features}, {mine.out_features}) must hold "
                    f"an array {name} of shape {want}, got {got} (W is (in, out): y = x @ W + b)"
                )
            setattr(theirs, name, getattr(mine, name)[0])

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(1, B, n_inputs) -> logits (1, B, n_classes), through the user's modules."""
        y = x[0]
        for layer in self.layers:
            y = layer.forward(y)
        return np.asarray(y)[None]

    __call__ = forward

    def backward(self, dlogits: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Back-propagate through the user's modules; their ``dW``, ``db`` land in ``grads``."""
        d = dlogits[0]
        for layer in reversed(self.layers):
            d = layer.backward(d)
        for theirs, mine in self.linears:
            for name in ("dW", "db"):
                grad, view = getattr(theirs, name), getattr(mine, name)[0]
                if not np.shares_memory(grad, view):
                    view[...] = grad
        return np.asarray(d)[None] if input_grad else None

    def load_lone_state(self, state: dict[str, np.ndarray]) -> None:
        """Weights ``W0, b0, ...`` of one network (``MLP.state_dict`` of a lone network)."""
        for i, (_, mine) in enumerate(self.linears):
            mine.W[0], mine.b[0] = state[f"W{i}"], state[f"b{i}"]

    def __repr__(self) -> str:
        inner = ", ".join(type(layer).__name__ for layer in self.layers)
        return f"UserModulesMLP({self.path}: {inner}; {self.n_params} parameters)"


class UserLoss:
    """The user's ``CrossEntropy`` on a stack of one: logits ``(1, B, C)``, targets ``(1, B, C)``
    rows or ``(1, B)`` labels (made one-hot here) -> losses ``(1,)``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.criterion = _make(import_user_code(path, KEY), "CrossEntropy", path)

    def forward(self, logits: np.ndarray, target: np.ndarray) -> np.ndarray:
        rows = target[0]
        if rows.ndim == 1:  # labels (evaluation): the user's loss takes target rows
            rows = one_hot(rows, logits.shape[-1], dtype=logits.dtype)
        return np.asarray([float(np.asarray(self.criterion.forward(logits[0], rows)))])

    __call__ = forward

    def backward(self) -> np.ndarray:
        return np.asarray(self.criterion.backward())[None]


def build_user_network(
    path: str,
    n_inputs: int,
    hidden: Sequence[int],
    n_classes: int,
    *,
    activation: str,
    rng: Sequence[np.random.Generator] | int | None,
    dtype: type,
) -> tuple[UserModulesMLP, UserLoss, UserLoss]:
    """The network, its training loss and its evaluation loss, checked on a small batch:
    shapes the protocol promises (logits, dL/dx, dW, db, dL/dlogits) or one ConfigError line."""
    net = UserModulesMLP(
        path, n_inputs, hidden, n_classes, activation=activation, rng=rng, dtype=dtype
    )
    loss, test_loss = UserLoss(path), UserLoss(path)
    x = np.zeros((1, 3, n_inputs), dtype=dtype)
    target = one_hot(np.zeros((1, 3), dtype=np.int64), n_classes, dtype=dtype)
    step = "forward"
    try:
        logits = net.forward(x)
        _expect(logits.shape, (1, 3, n_classes), "the network's logits", path)
        step = "CrossEntropy"
        value = loss.forward(logits, target)
        dlogits = loss.backward()
        _expect(dlogits.shape, logits.shape, "CrossEntropy.backward()", path)
        step = "backward"
        dx = net.backward(dlogits)
        _expect(dx.shape, x.shape, "the first Linear's backward (dL/dx)", path)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{KEY}: {path}: the MLP's {step} on a batch of 3 {raised(exc)}"
        ) from None
    if not np.isfinite(value).all():
        raise ConfigError(f"{KEY}: {path}: CrossEntropy returns {value[0]} on a batch of zeros")
    net.grads[...] = 0.0
    return net, loss, test_loss


def check_user_modules(model: Any, n_inputs: int, n_classes: int) -> None:
    """Build the network of ``model.modules`` (a ModelConfig's) once and check it on a small
    batch, so that a bad file is one line before a run folder is created."""
    build_user_network(
        model.modules,
        n_inputs,
        model.hidden,
        n_classes,
        activation=model.activation,
        rng=0,
        dtype=np.float32,
    )


def _expect(got: tuple, want: tuple, what: str, path: str) -> None:
    if tuple(got) != tuple(want):
        raise ConfigError(
            f"{KEY}: {path}: {what} has shape {tuple(got)[1:]} for a batch of 3, expected {tuple(want)[1:]}"
        )


__all__ = [
    "ACTIVATION_CLASSES",
    "UserLoss",
    "UserModulesMLP",
    "build_user_network",
    "check_user_modules",
]

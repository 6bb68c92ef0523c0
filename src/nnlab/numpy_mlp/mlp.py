"""The from-scratch MLP: ``Linear -> activation -> ... -> Linear``, returning logits.

All weights and biases live in one flat buffer ``params`` (and their gradients
in ``grads``), each layer's ``W`` and ``b`` being a view of it. An optimizer
then updates every parameter with a few whole-array operations per step, which
is what makes small networks fast in NumPy, where each call costs microseconds
however little it computes.

With ``stack=S`` the object holds ``S`` independent networks (one per seed):
``params`` is ``(S, P)``, inputs are ``(S, B, D)`` and logits ``(S, B, C)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnlab.numpy_mlp.modules import ACTIVATIONS, Linear, Module


class MLP:
    """``n_inputs -> hidden[0] -> ... -> hidden[-1] -> n_classes`` with explicit backward.

    ``rng`` seeds the initial weights: one ``np.random.Generator`` (or an int),
    or for a stack one generator per network, so that network ``s`` of a stack
    starts exactly as a lone network built with ``rng[s]`` would.
    """

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int],
        n_classes: int,
        *,
        activation: str = "relu",
        stack: int | None = None,
        rng: np.random.Generator | int | Sequence[np.random.Generator] | None = None,
        dtype: type = np.float64,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        self.sizes = [n_inputs, *hidden, n_classes]
        self.activation, self.stack = activation, stack
        self.layers: list[Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            self.layers.append(Linear(fan_in, fan_out, stack=stack, dtype=dtype))
            if i < len(self.sizes) - 2:
                self.layers.append(ACTIVATIONS[activation]())
        self.linears = [layer for layer in self.layers if isinstance(layer, Linear)]

        # One flat buffer per network for parameters and one for gradients; W, b, dW, db are views.
        lead = () if stack is None else (stack,)
        self.n_params = sum(
            lin.W[(0,) * len(lead)].size + lin.b[(0,) * len(lead)].size for lin in self.linears
        )
        self.params = np.zeros((*lead, self.n_params), dtype=dtype)
        self.grads = np.zeros_like(self.params)
        offset = 0
        for lin in self.linears:
            for name, grad_name in (("W", "dW"), ("b", "db")):
                shape = getattr(lin, name).shape[len(lead) :]
                end = offset + math.prod(shape)
                view = self.params[..., offset:end].reshape(*lead, *shape)
                grad_view = self.grads[..., offset:end].reshape(*lead, *shape)
                assert np.shares_memory(view, self.params) and np.shares_memory(
                    grad_view, self.grads
                )
                setattr(lin, name, view)
                setattr(lin, grad_name, grad_view)
                offset = end
        self.reset_parameters(rng)

    def reset_parameters(
        self, rng: np.random.Generator | int | Sequence[np.random.Generator] | None = None
    ) -> None:
        """torch.nn.Linear's default scheme: W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), layer by layer."""
        if self.stack is None:
            rngs: list = [
                np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
            ]
        elif isinstance(rng, Sequence):
            if len(rng) != self.stack:
                raise ValueError(
                    f"need one generator per stacked network ({self.stack}), got {len(rng)}"
                )
            rngs = list(rng)
        else:
            shared = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
            rngs = [shared] * self.stack
        for s, gen in enumerate(rngs):
            index = () if self.stack is None else (s,)
            for lin in self.linears:
                bound = 1.0 / math.sqrt(lin.in_features)
                lin.W[index] = gen.uniform(-bound, bound, lin.W[index].shape)
                lin.b[index] = gen.uniform(-bound, bound, lin.b[index].shape)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, n_inputs) -> logits (B, n_classes); with a stack (S, B, ...) -> (S, B, ...)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dlogits: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Back-propagate dL/dlogits; fills ``grads`` (overwriting) and returns dL/dx.

        ``input_grad=False`` skips dL/dx (one matmul): training does not need it.
        """
        for layer in reversed(self.layers[1:]):
            dlogits = layer.backward(dlogits)
        return self.layers[0].backward(dlogits, input_grad=input_grad)

    def state_dict(self) -> dict[str, np.ndarray]:
        """``W0, b0, W1, b1, ...`` (copies), W of shape ([S,] in, out): ``x @ W + b``."""
        out = {}
        for i, lin in enumerate(self.linears):
            out[f"W{i}"], out[f"b{i}"] = lin.W.copy(), lin.b.copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for i, lin in enumerate(self.linears):
            for name in ("W", "b"):
                value = np.asarray(state[f"{name}{i}"])
                if value.shape != getattr(lin, name).shape:
                    raise ValueError(
                        f"{name}{i}: expected shape {getattr(lin, name).shape}, got {value.shape}"
                    )
                getattr(lin, name)[...] = value

    def __getstate__(self) -> dict:
        # W and b are views of ``params``; pickled as they are, they would come back as
        # separate copies. Pickle the flat buffer and rebuild the views instead.
        return {
            "sizes": self.sizes,
            "activation": self.activation,
            "stack": self.stack,
            "params": self.params,
        }

    def __setstate__(self, state: dict) -> None:
        sizes = state["sizes"]
        dtype = state["params"].dtype.type
        self.__init__(
            sizes[0],
            sizes[1:-1],
            sizes[-1],
            activation=state["activation"],
            stack=state["stack"],
            rng=0,
            dtype=dtype,
        )
        self.params[...] = state["params"]

    def __repr__(self) -> str:
        stack = "" if self.stack is None else f", stack={self.stack}"
        inner = ", ".join(map(repr, self.layers))
        return f"MLP({inner}{stack}; {self.n_params} parameters per network)"


def load_model(path: Path) -> MLP:
    """The MLP saved in a ``last.npz`` / ``best.npz`` checkpoint (``check_arrays`` first)."""
    from nnlab.runs import load_arrays

    state = load_arrays(path)
    sizes = check_arrays(state, path)
    model = MLP(
        sizes[0],
        sizes[1:-1],
        sizes[-1],
        activation=str(state["activation"]),
        rng=0,
        dtype=state["W0"].dtype.type,
    )
    model.load_state_dict(state)
    return model


def check_arrays(state: dict[str, np.ndarray], path: Path) -> list[int]:
    """The layer sizes of a NumPy checkpoint's ``W0, b0, W1, b1, ...``, or a one-line RunError
    naming ``path`` and what is wrong: a missing array, a wrong number of dimensions, shapes
    that do not chain (``W{i}`` is (in, out), ``b{i}`` is (out,)), an unknown activation."""
    from nnlab.errors import RunError

    def bad(what: str) -> RunError:
        return RunError(f"{path}: not an nnlab NumPy checkpoint ({what})")

    n_layers = sum(1 for k in state if k[:1] == "W" and k[1:].isdigit())
    if n_layers == 0:
        raise bad("no weight array W0")
    missing = [f"{n}{i}" for i in range(n_layers) for n in "Wb" if f"{n}{i}" not in state]
    if missing:
        raise bad(f"missing array(s) {', '.join(missing[:5])}")
    sizes: list[int] = []
    for i in range(n_layers):
        W, b = state[f"W{i}"], state[f"b{i}"]
        if W.ndim != 2 or b.ndim != 1:
            raise bad(f"W{i} must be 2-D and b{i} 1-D, got {W.ndim}-D and {b.ndim}-D")
        if W.dtype.kind != "f" or b.dtype.kind != "f":
            raise bad(f"W{i} and b{i} must be float arrays, got {W.dtype} and {b.dtype}")
        if 0 in W.shape:
            raise bad(f"W{i} is empty, shape {W.shape}")
        if i and W.shape[0] != sizes[-1]:
            raise bad(f"W{i} takes {W.shape[0]} inputs but W{i - 1} gives {sizes[-1]}")
        if b.shape[0] != W.shape[1]:
            raise bad(f"b{i} has {b.shape[0]} entries but W{i} has {W.shape[1]} outputs")
        sizes += [W.shape[0], W.shape[1]] if i == 0 else [W.shape[1]]
    activation = state.get("activation")
    if activation is None or activation.ndim != 0 or str(activation) not in ACTIVATIONS:
        raise bad(f"activation must be one of {', '.join(ACTIVATIONS)}")
    return sizes

"""Numerical gradient checks of NumPy modules: each backward against its own forward.

For a module following ``nnlab.numpy_mlp.modules``' protocol (``forward(x)`` then
``backward(dout)`` -> dL/dx, parameter gradients stored as ``d<name>`` beside each
parameter array ``<name>``, or in a ``grads`` dict beside a ``params`` dict), the
backward pass is compared, in float64 on random shapes, with central differences of
the forward pass:

    dL/dv ~ (L(v + h) - L(v - h)) / 2h,   L = sum(forward(x) * dout),   h = 1e-5

for every entry v of the input and of each parameter. A loss (``forward(logits,
target)`` -> the mean loss, ``backward()`` -> dL/dlogits) is differentiated directly,
and its forward must be the mean over the batch (a batch given twice has the same
loss). The error is the course unit tests' relative error, the largest over entries
of ``|a - b| / max(1e-8, |a| + |b|)``; a check passes below ``TOLERANCE`` (1e-5).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnlab.models.user_code import raised

STEP = 1e-5  # central-difference step (the course's unit tests use the same)
TOLERANCE = 1e-5  # relative error below which a gradient passes
TINY = 1e-8  # floor of the denominator: entries that are both ~0 compare absolutely
TRIALS = 3  # random shapes per module


@dataclass
class GradCheck:
    """One check of one module: ``status`` is pass, fail, error or skip; ``error`` the relative error."""

    module: str
    check: str
    status: str
    error: float | None = None
    detail: str = ""


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    """The largest ``|a - b| / max(TINY, |a| + |b|)`` over entries (the course's definition)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(TINY, np.abs(a) + np.abs(b)), initial=0.0))


def numerical_gradient(f: Callable[[], float], v: np.ndarray) -> np.ndarray:
    """dF/dv by central differences, perturbing ``v`` in place (``f`` reads it each call)."""
    grad = np.zeros_like(v, dtype=np.float64)
    for i in np.ndindex(v.shape):
        keep = v[i]
        v[i] = keep + STEP
        plus = f()
        v[i] = keep - STEP
        minus = f()
        v[i] = keep
        grad[i] = (plus - minus) / (2 * STEP)
    return grad


def is_protocol_class(cls: type) -> bool:
    """A NumPy module: a class with ``forward`` and ``backward`` methods (a torch
    ``nn.Module`` has no ``backward``)."""
    return callable(getattr(cls, "forward", None)) and callable(getattr(cls, "backward", None))


def _required(func: Any) -> int:
    """The number of required positional arguments of a bound method or a class."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def check_module(cls: type, seed: int = 0) -> list[GradCheck]:
    """Every gradient check of the NumPy module ``cls`` over ``TRIALS`` random shapes.

    The constructor is called with no arguments, or with ``(in_features, out_features)``
    when it needs two (a Linear); one that needs others is skipped."""
    name = cls.__name__
    n_args = _required(cls)
    if n_args not in (0, 2):
        return [
            GradCheck(name, "construct", "skip", detail=f"its constructor needs {n_args} arguments")
        ]
    is_loss = _required(cls.forward) - 1 == 2  # forward(self, logits, target)
    worst: dict[str, float] = {}
    notes: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for trial in range(TRIALS):
        stage = "construct"
        try:
            b, d, out = (int(v) for v in rng.integers(2, 7, size=3))
            module = cls(d, out) if n_args == 2 else cls()
            stage = "forward/backward"
            found = _check_loss(module, rng, b, d) if is_loss else _check_layer(module, rng, b, d)
        except _ShapeError as exc:
            return [GradCheck(name, exc.check, "fail", detail=str(exc))]
        except NotImplementedError:  # a base class whose subclasses implement the methods
            return [GradCheck(name, stage, "skip", detail="abstract: raises NotImplementedError")]
        except Exception as exc:
            return [GradCheck(name, stage, "error", detail=raised(exc))]
        for check, (error, note) in found.items():
            if error >= worst.get(check, -1.0):
                worst[check], notes[check] = error, f"{note} (trial {trial + 1} of {TRIALS})"
    if not worst:
        return [GradCheck(name, "gradients", "skip", detail="no gradient to check")]
    return [
        GradCheck(name, check, "pass" if error < TOLERANCE else "fail", error, notes[check])
        for check, error in worst.items()
    ]


class _ShapeError(Exception):
    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


def _check_layer(
    module: Any, rng: np.random.Generator, b: int, d: int
) -> dict[str, tuple[float, str]]:
    """dL/dx and each parameter's gradient of a layer, ``L = sum(forward(x) * dout)``."""
    x = rng.normal(size=(b, d))
    x += 0.05 * np.sign(x)  # away from kinks (ReLU at 0), where a derivative is one-sided
    # a first pass creates what backward sets (dW may not exist before it), then the
    # parameters get fresh float64 values and the pass that is checked runs
    module.backward(np.ones_like(np.asarray(module.forward(x.copy())), dtype=np.float64))
    params = _parameters(module)
    for get, put in params.values():
        put(rng.normal(size=get().shape) * 0.5)
    y = np.asarray(module.forward(x.copy()))
    dout = rng.normal(size=y.shape)
    dx = module.backward(dout.copy())
    if not isinstance(dx, np.ndarray) or dx.shape != x.shape:
        got = getattr(dx, "shape", type(dx).__name__)
        raise _ShapeError("dx", f"backward returned {got} for an input of shape {x.shape}")
    grads = {key: np.array(_gradient(module, key)) for key in params}

    def loss() -> float:
        return float(np.sum(np.asarray(module.forward(x)) * dout))

    shape = f"x {x.shape} -> {y.shape}"
    found = {"dx": (rel_error(dx, numerical_gradient(loss, x)), shape)}
    for key, (get, _) in params.items():
        if grads[key].shape != get().shape:
            raise _ShapeError(
                f"d{key}", f"d{key} has shape {grads[key].shape}, {key} has {get().shape}"
            )
        found[f"d{key}"] = (rel_error(grads[key], numerical_gradient(loss, get())), shape)
    return found


def _check_loss(
    module: Any, rng: np.random.Generator, b: int, c: int
) -> dict[str, tuple[float, str]]:
    """dL/dlogits of a loss, and that its forward is the mean over the batch."""
    logits = rng.normal(size=(b, c)) * 2.0
    target = np.eye(c)[rng.integers(0, c, size=b)]  # one-hot rows
    value = np.asarray(module.forward(logits.copy(), target.copy()), dtype=np.float64)
    if value.size != 1:
        raise _ShapeError("loss", f"forward returned shape {value.shape}, not one number")
    takes = _required(module.backward)
    grad = module.backward() if takes == 0 else module.backward(logits.copy(), target.copy())
    if not isinstance(grad, np.ndarray) or grad.shape != logits.shape:
        got = getattr(grad, "shape", type(grad).__name__)
        raise _ShapeError("dlogits", f"backward returned {got} for logits of shape {logits.shape}")
    grad = np.array(grad)

    def loss() -> float:
        return float(np.asarray(module.forward(logits, target)))

    twice = float(
        np.asarray(module.forward(np.vstack([logits, logits]), np.vstack([target, target])))
    )
    ratio = twice / float(value) if float(value) else 1.0
    shape = f"logits {logits.shape}"
    return {
        "dlogits": (rel_error(grad, numerical_gradient(loss, logits)), shape),
        "mean over batch": (
            rel_error(twice, float(value)),
            f"{shape}: loss of the batch given twice / loss = {ratio:.3g} (1 for a mean)",
        ),
    }


def _parameters(module: Any) -> dict[str, tuple[Callable, Callable]]:
    """``name -> (get, put)`` of each parameter array: ``W`` with an array ``dW`` of its shape
    beside it (nnlab's protocol), or an entry of a ``params`` dict with one in ``grads``."""
    found: dict[str, tuple[Callable, Callable]] = {}
    attrs = vars(module)
    for key, value in attrs.items():
        grad = attrs.get(f"d{key}")
        if (
            isinstance(value, np.ndarray)
            and value.dtype.kind == "f"
            and isinstance(grad, np.ndarray)
            and grad.shape == value.shape
        ):
            found[key] = (lambda k=key: getattr(module, k), lambda v, k=key: setattr(module, k, v))
    params, grads = getattr(module, "params", None), getattr(module, "grads", None)
    if isinstance(params, dict) and isinstance(grads, dict):
        for key, value in params.items():
            if isinstance(value, np.ndarray) and key in grads:
                found[key] = (lambda k=key: params[k], lambda v, k=key: params.__setitem__(k, v))
    return found


def _gradient(module: Any, key: str) -> Any:
    grads = getattr(module, "grads", None)
    if isinstance(grads, dict) and key in grads and not hasattr(module, f"d{key}"):
        return grads[key]
    return getattr(module, f"d{key}")


__all__ = [
    "TOLERANCE",
    "GradCheck",
    "check_module",
    "is_protocol_class",
    "numerical_gradient",
    "rel_error",
]

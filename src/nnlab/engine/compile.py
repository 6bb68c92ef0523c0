"""Speed options of ``fit`` that need checks or set-up: ``train.compile`` and friends (docs/performance.md).

- ``compile_unavailable`` says why torch.compile cannot run here (``engine/plan.py``
  turns it into a one-line error before a run folder is written).
- ``compile_and_warm_up`` wraps the training model in ``torch.compile`` and
  runs the one-off compilation on purpose, on throw-away forward/backward
  passes for every batch shape an epoch will use, then puts back every state
  those passes touched (BatchNorm statistics, gradients, random number
  generators). The compile time is thus measured apart from training time, and
  a compiled run trains exactly like an uncompiled one.

Only the training forward/backward is compiled; evaluation runs eagerly on the
same weights (it is a small share of a run, and an eval-mode graph would cost
a second compilation).
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.errors import ConfigError, first_line

if TYPE_CHECKING:
    pass


def compile_unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, or None if it can."""
    if not hasattr(torch, "compile"):
        return f"this PyTorch ({torch.__version__}) has no torch.compile"
    try:
        from torch import _dynamo

        if not _dynamo.is_dynamo_supported():
            return "TorchDynamo does not support this Python version"
    except Exception as exc:  # an import failure of dynamo itself
        return f"TorchDynamo failed to load ({type(exc).__name__})"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "its GPU backend needs the triton package, which is not installed"
    if device.type == "cpu":
        compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in compilers):
            return "its CPU backend needs a C++ compiler (g++ or clang++), and none is on PATH"
    return None


def _snapshot(
    model: nn.Module,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[torch.Tensor] | None]:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return state, torch.get_rng_state(), cuda_rng


def _restore(model: nn.Module, snapshot) -> None:
    state, rng, cuda_rng = snapshot
    model.load_state_dict(state)
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)
    for p in model.parameters():
        p.grad = None


def compile_and_warm_up(
    train_model: nn.Module,
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    mode: str = "default",
    amp: bool = False,
    label_smoothing: float = 0.0,
) -> tuple[nn.Module, float]:
    """``(compiled train_model, compile seconds)``; ``batches``: one batch of each shape an epoch yields.

    ``model`` is the unwrapped module (``train_model`` may be its DDP wrapper):
    its state is snapshotted before the warm-up passes and restored after them.
    A failure inside the compiler becomes a one-line ConfigError.
    """
    from torch import _dynamo

    # Each run compiles from a clean slate: runs that follow each other in one process (seeds,
    # sweeps, benchmarks) would otherwise pile recompilations up to dynamo's cache limit, past
    # which it falls back to eager without an error. Inductor's on-disk cache still speeds them up.
    _dynamo.reset()
    compiled = torch.compile(train_model, mode=None if mode == "default" else mode)
    # nothing to warm up on: the first training step compiles (inside train_seconds)
    if not batches:
        return compiled, 0.0
    snapshot = _snapshot(model)
    device = batches[0][0].device
    start = time.perf_counter()
    try:
        model.train()
        # CUDA graphs are recorded on a second call
        for _ in range(2 if mode == "reduce-overhead" else 1):
            for x, y in batches:
                # Cleared as the training step clears them: a backward that accumulated into the
                # last pass's gradients would read CUDA-graph outputs a later replay overwrote.
                for p in model.parameters():
                    p.grad = None
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss = F.cross_entropy(compiled(x), y, label_smoothing=label_smoothing)
                loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        first = first_line(exc)[:200]
        raise ConfigError(
            f"train.compile: torch.compile failed here ({type(exc).__name__}: {first}); set train.compile=false"
        ) from None
    seconds = time.perf_counter() - start
    _restore(model, snapshot)
    return compiled, seconds


def warm_up_batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One batch of each size a training epoch of ``loader`` yields (full and last partial).

    Sliced from the loader's resident tensors and passed through its own transform
    (so dtype, shape and memory layout match the real batches), with random draws
    from a private generator: building them changes no generator a run uses.
    Empty for loaders that draw their own batches (no resident ``x``).
    """
    if not hasattr(loader, "x"):
        return []
    k = loader.batch_size // loader.world_size  # this rank's share of a global batch
    sizes = {min(k, loader.num_examples)}
    last = loader.num_examples - (len(loader) - 1) * k
    if 0 < last < k:
        sizes.add(last)
    out = []
    for n in sorted(sizes, reverse=True):
        x, y = loader.x[:n], loader.y[:n]
        if loader.transform is not None:
            x = loader.transform(x, torch.Generator().manual_seed(0))
        out.append((x, y))
    return out

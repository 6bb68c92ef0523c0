"""Run set-up: device, seeds, determinism, CPU threads and the amp/channels_last policy."""

from __future__ import annotations

import random

import numpy as np
import torch

from nnlab.config import Config
from nnlab.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable device is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"train.device: '{name}' requested but CUDA is not available here; use auto or cpu"
            )
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device: '{name}' requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError(
            "train.device: 'mps' requested but Apple's MPS is not available here; use auto or cpu"
        )
    return torch.device(name)


def set_determinism(deterministic: bool) -> None:
    """``train.deterministic``: deterministic kernels everywhere (cuDNN autotuning picks kernels by timing, so off)."""
    import os

    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; must be set before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only when it changes: the call imports torch's compiler stack (about a second, on
    # every run's start-up) even to set the default.
    if torch.are_deterministic_algorithms_enabled() != deterministic:
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


# This process's CPU thread budget, read before any run lowers the count: a tiny model sets
# one thread, and a larger model trained later in the same process (`nnlab reproduce`, a
# sweep) must get the whole budget back. A sweep worker's budget is its share of the cores.
_THREAD_BUDGET = torch.get_num_threads()


def limit_cpu_threads(threads: int) -> None:
    """Cap this process at ``threads`` CPU threads (a sweep worker's share: no oversubscription)."""
    global _THREAD_BUDGET
    _THREAD_BUDGET = max(1, threads)
    torch.set_num_threads(_THREAD_BUDGET)


def set_cpu_threads(threads: int, n_params: int, input_shape: tuple[int, ...] = ()) -> None:
    """Tiny models run fastest on one thread: their matmuls are too small to split.

    Images are the exception: a small conv net has few parameters but plenty of
    work per step, so it keeps every thread. Never more than the process's
    budget (``limit_cpu_threads``), even if ``train.threads`` asks.
    """
    if threads == 0:
        tiny = n_params < 200_000 and len(input_shape) < 3
        threads = 1 if tiny else _THREAD_BUDGET
    torch.set_num_threads(min(threads, _THREAD_BUDGET))


def speed_settings(
    cfg: Config, device: torch.device, input_shape: tuple[int, ...]
) -> tuple[bool, bool]:
    """``(amp, channels_last)`` for this run (see ``speed_policy``)."""
    return speed_policy(cfg, device, input_shape)[:2]


def speed_policy(
    cfg: Config, device: torch.device, input_shape: tuple[int, ...]
) -> tuple[bool, bool, str]:
    """``(amp, channels_last, why)`` for this run.

    ``auto`` turns both on for CUDA (bf16 autocast where the GPU has bf16;
    channels_last for image inputs, where cuDNN's NHWC kernels are faster), and
    for image models on CPUs with native bf16 arithmetic (AMX tiles or
    AVX512-BF16): there oneDNN's bf16 NHWC convolutions ran the report's CNN
    2.4-2.8x faster than float32 (docs/cifar10.md). Elsewhere (other CPUs, MPS,
    non-image models) they are off unless set to ``on``.
    """
    t = cfg.train
    image = len(input_shape) == 3
    cpu_bf16 = _cpu_bf16_units() if device.type == "cpu" else ""
    fast_bf16 = (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (
        image and bool(cpu_bf16)
    )
    amp = t.amp == "on" or (t.amp == "auto" and fast_bf16)
    channels_last = image and (
        t.channels_last == "on"
        or (t.channels_last == "auto" and (device.type == "cuda" or fast_bf16))
    )
    if t.amp != "auto":
        why = f"train.amp={t.amp}"
    elif device.type == "cuda":
        why = "auto: bf16 on a CUDA GPU" if amp else "auto: this GPU has no bf16"
    elif not image:
        why = "auto: off for non-image models (their steps are too small to gain)"
    elif amp:
        why = f"auto: the CPU has native bf16 ({cpu_bf16})"
    else:
        why = f"auto: off, {device.type} has no native bf16 units (AMX or AVX512-BF16)"
    return amp, channels_last, why


def _cpu_bf16_units() -> str:
    """The CPU's native bf16 units as named in /proc/cpuinfo ("amx_bf16 avx512_bf16"), or "".

    Read from the kernel's flags (Linux); elsewhere assumed absent. AMX tiles and
    AVX512-BF16 both gained 2.4x or more on the CIFAR CNNs (docs/cifar10.md).
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return " ".join(u for u in ("amx_bf16", "avx512_bf16") if u in flags)
    except OSError:
        pass
    return ""

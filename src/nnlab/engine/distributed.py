"""Data-parallel training across processes: torchrun sets the stage, DistributedDataParallel does the work.

``torchrun --nproc-per-node=N -m nnlab train PRESET`` starts N copies of the
ordinary CLI and gives each the environment variables ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. Every
function here reads that environment; without it (a plain ``nnlab train``) the
world size is 1 and every function is a no-op, so single-process runs keep their
exact behaviour and results.

What happens under torchrun (WORLD_SIZE > 1), in the order ``run_training`` does it:

1. ``check_launch``: bad launches fail before anything starts - a world size
   that does not divide ``train.batch_size`` (the *global* batch), more
   processes on a node than it has GPUs, ``--seeds``, the NumPy backend.
2. ``setup``: the process group (nccl on CUDA, one GPU per process at
   ``cuda:LOCAL_RANK``; gloo on the CPU), then every rank's resolved config is
   gathered and compared, so mismatched configs stop the job at once.
3. ``wrap``: the model in ``DistributedDataParallel``, which averages gradients
   over ranks during ``backward``. Each rank trains on its share of every global
   batch (``TensorLoader(rank=, world_size=)``) and evaluates its share of the
   test set (``shard``); ``average`` all-reduces the metrics.
4. Only rank 0 (``is_main``) writes the run folder, checkpoints and output;
   on resume every rank loads the same ``last.pt``.
5. ``finish`` (or, on an error, the ``atexit`` hook) destroys the process group.

A rank that dies closes its connections: gloo peers blocked in a collective
fail at once, and torchrun's agent stops the remaining workers when one exits
non-zero; ``NNLAB_DIST_TIMEOUT`` (seconds, default 300) bounds any other wait.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from nnlab.errors import ConfigError, DataError

if TYPE_CHECKING:
    from nnlab.config import Config

DEFAULT_TIMEOUT_S = 300  # a collective that waits longer than this fails instead of hanging
# Test-only fault injection, e.g. "rank=1,step=3": that rank raises at its 3rd training step.
FAULT_ENV = "NNLAB_TEST_FAULT"
QUIET_EXIT_PAUSE_S = 3.0  # see announce_error


# --------------------------------------------------------------------------- where am I


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={value!r}: expected an integer (torchrun sets it)"
        ) from None


def world_size() -> int:
    """Processes in the job (1 without torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's index in the job, 0..world_size-1."""
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's index on its node: under CUDA, the GPU it drives."""
    return _env_int("LOCAL_RANK", 0)


def local_world_size() -> int:
    """Processes on this node (torchrun's ``--nproc-per-node``)."""
    return _env_int("LOCAL_WORLD_SIZE", world_size())


def is_distributed() -> bool:
    """True under torchrun with more than one process."""
    return world_size() > 1


def is_main() -> bool:
    """Rank 0: the one process that writes files and prints results."""
    return rank() == 0


def reports_errors() -> bool:
    """Whether this process prints one-line errors: the first process of each node (see ``announce_error``)."""
    return local_rank() == 0


def announce_error(line: str) -> None:
    """Print a one-line error on stderr from the first process of each node; the others stay quiet.

    Bad input (a config, a preset, a device) is the same for every process of a
    node, so one of them says it. The quiet ones pause before exiting: torchrun
    stops the whole job when the first process exits, which could otherwise cut
    the reporting process off before it prints.
    """
    if reports_errors():
        print(line, file=sys.stderr, flush=True)
    else:
        time.sleep(QUIET_EXIT_PAUSE_S)


# --------------------------------------------------------------------------- start-up


def check_launch(cfg: Config, *, seeds: int | None = None) -> None:
    """Reject a launch that cannot work, before any process group or file exists. No-op without torchrun."""
    if not is_distributed():
        return
    world, t = world_size(), cfg.train
    if seeds is not None:
        raise ConfigError(
            "--seeds: not available under torchrun; launch one torchrun job per seed with --seed N"
        )
    if t.batch_size % world:
        lower = t.batch_size - t.batch_size % world
        higher = lower + world
        raise ConfigError(
            f"train.batch_size: {t.batch_size} is the global batch (all ranks together) and must be divisible by "
            f"the world size {world}; use e.g. {lower or higher} or {higher}"
        )
    if cfg.model.backend != "torch":
        raise ConfigError(
            f"model.backend: {cfg.model.backend} trains in one process; torchrun needs model.backend=torch"
        )
    device = t.device
    if device.startswith("cuda:"):
        raise ConfigError(
            f"train.device: '{device}' pins one GPU, but under torchrun each process takes cuda:LOCAL_RANK; use cuda or auto"
        )
    if device == "mps":
        raise ConfigError("train.device: 'mps' cannot be shared by torchrun processes; use cpu")
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus == 0:
            raise ConfigError(
                "train.device: 'cuda' requested under torchrun but no CUDA device is visible here; use --device cpu"
            )
        if local_world_size() > gpus:
            raise ConfigError(
                f"--nproc-per-node: {local_world_size()} processes on this node but only {gpus} CUDA device(s); "
                f"use --nproc-per-node={gpus} (one process per GPU)"
            )


def setup(cfg: Config, device: torch.device) -> torch.device:
    """Join the process group and check the config; returns this rank's device. No-op without torchrun."""
    if not is_distributed():
        return device
    check_launch(cfg)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())  # one GPU per process
        torch.cuda.set_device(device)
        backend = "nccl"
    else:  # the CPU (also where auto would pick Apple's mps, which processes cannot share)
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        timeout = timedelta(seconds=_env_int("NNLAB_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
        dist.init_process_group(
            backend, timeout=timeout, device_id=device if backend == "nccl" else None
        )
        # On error paths too: no "process group was not destroyed" warnings, no stuck peers.
        atexit.register(shutdown)
    _check_same_config(cfg)
    return device


def _check_same_config(cfg: Config) -> None:
    """Gather every rank's resolved config; any difference is a ConfigError on every rank (rank 0 says which)."""
    mine = {
        f"{section}.{key}": value
        for section, values in cfg.to_dict().items()
        for key, value in values.items()
    }
    gathered: list[dict | None] = [None] * world_size()
    dist.all_gather_object(gathered, mine)
    reference = gathered[0]
    diffs = [
        f"{key} is {reference.get(key)!r} on rank 0 but {other.get(key)!r} on rank {r}"
        for r, other in enumerate(gathered)
        for key in sorted(set(reference) | set(other))
        if other.get(key) != reference.get(key)
    ]
    if diffs:
        more = f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else ""
        raise ConfigError(
            f"config differs across ranks: {diffs[0]}{more}; start every rank with the same preset, file and --set overrides"
        )


# --------------------------------------------------------------------------- training


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model in ``DistributedDataParallel`` under torchrun; the model itself otherwise.

    Train through the wrapper (it averages gradients in ``backward``); evaluate and
    checkpoint the plain module, so evaluation needs no collectives and checkpoints
    have no ``module.`` prefix (they load in a single process).
    """
    if not is_distributed():
        return model
    _install_test_fault(model)
    # Every rank keeps the same torch random stream (seeded alike): dropout masks repeat across
    # ranks, but rank 0's saved RNG state is then every rank's, so a resumed run stays exact.
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard(t: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of an evaluation split (shares differ by at most one example)."""
    if not is_distributed():
        return t
    if len(t) < world_size():
        raise DataError(
            f"the test split has {len(t)} examples, fewer than the {world_size()} ranks sharing it"
        )
    return torch.tensor_split(t, world_size())[rank()]


def average(metrics: dict[str, float], count: int) -> dict[str, float]:
    """Combine per-rank means over ``count`` local examples into the means over all ranks' examples.

    All-reduces ``sum(mean * count)`` and ``sum(count)``, so unequal shares are
    weighted correctly; every rank gets the same numbers (early stopping agrees).
    """
    if not is_distributed() or not metrics:
        return metrics
    keys = sorted(metrics)
    sums = torch.tensor(
        [metrics[k] * count for k in keys] + [count], dtype=torch.float64, device=_comm_device()
    )
    dist.all_reduce(sums)
    total = sums[-1].item()
    return {k: s / total for k, s in zip(keys, sums[:-1].tolist(), strict=True)}


def broadcast_module(model: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (e.g. after rank 0 loaded a checkpoint)."""
    if not is_distributed():
        return
    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def barrier() -> None:
    if is_distributed() and dist.is_initialized():
        dist.barrier()


def finish() -> None:
    """End of a run: wait until every rank (and rank 0's writing) is done, then leave the group."""
    barrier()
    shutdown()


def shutdown() -> None:
    """Destroy the process group if there is one (safe to call twice, and on error paths)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    # nccl only moves CUDA tensors; gloo moves CPU tensors.
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


# --------------------------------------------------------------------------- tests only


def _install_test_fault(model: nn.Module) -> None:
    """Test-only: ``NNLAB_TEST_FAULT="rank=R,step=S"`` makes rank R raise at its S-th training forward.

    Lets the tests prove that one failing rank ends the whole job quickly;
    never set it for real training.
    """
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return
    try:
        fields = dict(item.split("=") for item in spec.split(","))
        fault_rank, fault_step = int(fields["rank"]), int(fields["step"])
    except (KeyError, ValueError):
        raise ConfigError(f"{FAULT_ENV}={spec!r}: expected rank=R,step=S (test-only)") from None
    if fault_rank != rank():
        return
    steps = 0

    def hook(module: nn.Module, args) -> None:
        nonlocal steps
        if module.training:
            steps += 1
            if steps == fault_step:
                raise RuntimeError(
                    f"{FAULT_ENV}: injected failure on rank {rank()} at training step {steps} (unix time {time.time():.3f})"
                )

    model.register_forward_pre_hook(hook)

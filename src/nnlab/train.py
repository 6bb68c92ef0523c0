"""One plain training loop for every torch model: ``train_one_epoch``, ``evaluate``, ``fit``.

``run_training`` ties the pieces together for one run: config -> data -> model
-> ``fit`` -> run folder. Read it top to bottom; there is no Trainer class.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nnlab import distributed, manual_step
from nnlab.config import Config, OptimConfig, ScheduleConfig, to_toml
from nnlab.data import DataBundle, load_data
from nnlab.data.loader import TensorLoader
from nnlab.errors import ConfigError, TrainingDiverged
from nnlab.models import build_model
from nnlab.runs import (
    RunDir,
    command_line,
    completed_summary,
    git_commit,
    load_checkpoint,
    save_checkpoint,
    versions,
)
from nnlab.tensorboard_log import TensorBoardLog, check_available

EVAL_BATCH = 2048  # evaluation has no gradients, so it can use larger batches


# --------------------------------------------------------------------------- set-up helpers


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


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names, in its fastest implementation for the parameters' device.

    ``fused=True`` (SGD, Adam, AdamW on CPU and CUDA) does the whole update in one
    kernel: for small models the per-step Python and dispatch overhead of the
    optimizer is a large share of the step. Elsewhere ``foreach=True`` batches the
    update over tensors.
    """
    params = [p for p in params if p.requires_grad]
    fused_ok = cfg.name != "rmsprop" and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )
    fast = {"fused": True} if fused_ok else {"foreach": True}
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
            **fast,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **fast
        )
    if cfg.name == "adamw":
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **fast
        )
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=cfg.lr,
            alpha=cfg.alpha,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            foreach=True,
        )
    raise ConfigError(f"optim.name: unknown optimizer {cfg.name!r}")


def build_scheduler(optimizer, cfg: ScheduleConfig, epochs: int, steps_per_epoch: int):
    """Returns ``(scheduler, per_batch)``: ``step`` decays per epoch, cosine and one-cycle per batch."""
    total = max(1, epochs * steps_per_epoch)
    if cfg.name == "none":
        return None, False
    if cfg.name == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=cfg.step_size, gamma=cfg.gamma
        ), False
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total, eta_min=cfg.min_lr
        ), True
    if cfg.name == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=max_lr, total_steps=total, pct_start=cfg.pct_start
        ), True
    # linear up from start_factor * lr to lr at pct_start, then linear down to min_lr
    if cfg.name == "triangle":
        peak, lr = max(1, round(cfg.pct_start * total)), optimizer.param_groups[0]["lr"]
        ends = (cfg.start_factor, cfg.min_lr / lr)  # as shares of optim.lr

        def factor(i: int) -> float:
            if i < peak:
                return ends[0] + (1 - ends[0]) * i / peak
            return 1 + (ends[1] - 1) * min(1.0, (i - peak) / max(1, total - peak))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True
    raise ConfigError(f"schedule.name: unknown schedule {cfg.name!r}")


# --------------------------------------------------------------------------- the loop


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler=None,
    clip_norm: float = 0.0,
    label_smoothing: float = 0.0,
    track: bool = True,
    amp: bool = False,
    ema=None,
    manual=None,
) -> dict[str, float]:
    """One pass over ``loader``; with ``track``, returns the epoch's mean train loss and accuracy.

    Metrics accumulate on the device and are read once at the end: a ``.item()``
    per step would wait for the device at every step. ``amp`` runs the forward
    pass under bf16 autocast (no loss scaling needed: bf16 has float32's range).
    ``ema`` (a ``nnlab.ema.WeightAverage``) is updated after every optimizer step.
    ``manual`` (a ``nnlab.manual_step.ManualMLPStep``) replaces autograd and the
    optimizer's ``step()`` with hand-derived gradients and an in-place update.
    """
    model.train()
    loss_sum = correct = None
    seen = 0
    # For small models the step's fixed costs dominate, so the loop avoids two:
    # no autocast context unless amp is on, and gradients are cleared by setting
    # .grad = None directly (what zero_grad(set_to_none=True) does, without its
    # profiler bookkeeping, which costs more than the update itself here).
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # autograd on for the epoch; the hand-derived step needs no graph (one switch, not one per step)
    with torch.set_grad_enabled(manual is None):
        for x, y in loader:
            if manual is not None:  # hand-derived gradients, update applied (nnlab/manual_step.py)
                loss, logits = manual.step(x, y, track)
            else:
                logits, loss = _forward_loss(model, x, y, amp, label_smoothing)
                for p in params:
                    p.grad = None
                loss.backward()
                if clip_norm > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update()
            if track:
                with torch.no_grad():
                    batch_loss = loss.detach() * len(y)
                    batch_correct = (logits.argmax(1) == y).sum()
                    loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
                    correct = batch_correct if correct is None else correct + batch_correct
                seen += len(y)
    if not track or seen == 0:
        return {}
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen}


def _forward_loss(
    model: nn.Module, x, y, amp: bool, label_smoothing: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, mean cross-entropy)``; no autocast context at all unless ``amp`` (it costs per call)."""
    if amp:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            logits = model(x)  # (B, n_classes)
            return logits, F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    logits = model(x)
    return logits, F.cross_entropy(logits, y, label_smoothing=label_smoothing)


@torch.no_grad()
def infer(
    model: nn.Module, loader, amp: bool = False, tta: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every example of ``loader``, in order (model in eval mode).

    ``tta`` > 0 averages each image's logits over mirrored/shifted views (``nnlab.tta``).
    """
    from nnlab.tta import tta_logits

    model.eval()
    logits, labels = [], []
    for x, y in loader:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits.append(tta_logits(model, x, tta).float())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def score(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``logits`` against ``labels``."""
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        # count, then divide in Python: an exact ratio (a float32 mean prints 0.8650000095)
        "acc": (logits.argmax(1) == labels).sum().item() / max(len(labels), 1),
    }


def evaluate(model: nn.Module, loader, amp: bool = False, tta: int = 0) -> dict[str, float]:
    return score(*infer(model, loader, amp, tta))


@dataclass
class FitResult:
    history: list[dict[str, float]]
    epochs: int  # epochs completed
    steps: int
    train_seconds: float
    best_test_acc: float
    best_epoch: int
    stop_reason: str
    final: dict[str, float] = field(default_factory=dict)
    compile_seconds: float | None = None  # train.compile: the one-off compile, not in train_seconds
    eval_seconds: float = 0.0  # the part of train_seconds spent evaluating


class Progress:
    """How a run reports progress: ``bar`` (tqdm, on a terminal), ``lines`` (a plain line
    at each tenth of training: CI, pipes) or ``off``. ``mode=None`` picks bar or lines.
    """

    def __init__(self, total: int, label: str, mode: str | None = None) -> None:
        self.total, self.label = total, label
        self.mode = mode or ("bar" if sys.stderr.isatty() else "lines")
        self.bar = None
        self.next_mark = 0.0
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="ep", leave=False, dynamic_ncols=True)

    def update(self, epoch: int, row: dict[str, float] | None) -> None:
        if self.bar is not None:
            self.bar.update(epoch - self.bar.n)
            if row:
                self.bar.set_postfix(
                    loss=f"{row['train_loss']:.4f}", test_acc=f"{row['test_acc']:.4f}"
                )
        elif (
            self.mode == "lines"
            and row
            and (epoch / self.total >= self.next_mark or epoch == self.total)
        ):
            self.next_mark = math.floor(epoch / self.total * 10 + 1) / 10
            print(
                f"{self.label} epoch {epoch}/{self.total}  train_loss {row['train_loss']:.4f}  "
                f"train_acc {row['train_acc']:.4f}  test_loss {row['test_loss']:.4f}  test_acc {row['test_acc']:.4f}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def speed_settings(
    cfg: Config, device: torch.device, input_shape: tuple[int, ...]
) -> tuple[bool, bool]:
    """``(amp, channels_last)`` for this run. ``auto`` turns both on for CUDA (bf16
    autocast where the GPU has bf16; channels_last for image inputs, where cuDNN's
    NHWC kernels are faster), and for image models on CPUs with AMX bf16 matrix
    units: there oneDNN's bf16 NHWC convolutions ran the report's CNN 2-3x faster
    than float32 (docs/cifar10.md). Elsewhere (other
    CPUs, MPS, non-image models) they are off unless set to ``on``.
    """
    t = cfg.train
    image = len(input_shape) == 3
    fast_bf16 = (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (
        device.type == "cpu" and image and _cpu_has_native_bf16()
    )
    amp = t.amp == "on" or (t.amp == "auto" and fast_bf16)
    channels_last = image and (
        t.channels_last == "on"
        or (t.channels_last == "auto" and (device.type == "cuda" or fast_bf16))
    )
    return amp, channels_last


def _cpu_has_native_bf16() -> bool:
    """AMX tiles: where the bf16 gain was measured. (AVX512-BF16 alone is not assumed to pay.)"""
    try:  # a private helper of torch.cpu; absent in other versions -> assume no
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def image_transforms(cfg: Config, data: DataBundle, device: torch.device):
    """``(train, test)`` batch transforms for uint8 images (augment + normalise on the device); None otherwise."""
    if data.x_train.dtype != torch.uint8:
        if cfg.data.augment:
            raise ConfigError(
                f"data.augment: only image datasets (cifar10, imagefolder) can be augmented, not {cfg.data.name}"
            )
        return None, None
    from nnlab.data.augment import ImageTransform

    mean, std = data.normalization if data.normalization is not None else (None, None)
    _, channels_last = speed_settings(cfg, device, data.input_shape)
    d = cfg.data
    common = {
        "padding": d.crop_padding,
        "cutout_size": d.cutout_size,
        "channels_last": channels_last,
    }
    return ImageTransform(mean, std, d.augment, **common), ImageTransform(mean, std, (), **common)


def make_loaders(
    cfg: Config, data: DataBundle, device: torch.device
) -> tuple[TensorLoader, TensorLoader]:
    """Move the splits to ``device`` once; batches are then views of them.

    Under torchrun each rank trains on its share of every global batch and scores
    its share of the test set (see ``nnlab.distributed``).
    """
    if data.train_loader is not None and distributed.is_distributed():
        raise ConfigError(
            f"data.name: {cfg.data.name} draws its own batches, which torchrun ranks cannot share yet; train it in one process"
        )
    # uint8 images stay uint8 on the device; these convert, augment and normalise each batch.
    train_tf, test_tf = image_transforms(cfg, data, device)
    if data.train_loader is not None:  # the dataset draws its own batches (e.g. a stream)
        train = data.train_loader(cfg.train.batch_size, cfg.train.seed, device)
    else:
        train = TensorLoader(
            data.x_train.to(device),
            data.y_train.to(device),
            cfg.train.batch_size,
            shuffle=True,
            seed=cfg.train.seed,
            rank=distributed.rank(),
            world_size=distributed.world_size(),
            transform=train_tf,
        )
    x_test, y_test = distributed.shard(data.x_test), distributed.shard(data.y_test)
    # Images: a conv net's float32 activations for 2048 images reach ~0.5 GB a layer; 512 keeps memory flat.
    eval_batch = EVAL_BATCH if test_tf is None else 512
    test = TensorLoader(
        x_test.to(device),
        y_test.to(device),
        max(eval_batch, cfg.train.batch_size),
        transform=test_tf,
    )
    return train, test


def fit(
    cfg: Config,
    model: nn.Module,
    data: DataBundle,
    device: torch.device,
    run: RunDir | None = None,
    progress: str | None = None,
    resume: dict[str, Any] | None = None,
    tensorboard: TensorBoardLog | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` as ``cfg`` says; evaluate every ``eval_every`` epochs and after the last.

    Each evaluation appends a metrics row and (with a run folder) writes
    ``last.pt``, and ``best.pt`` when test accuracy improved. Early stopping
    (``train.patience``) counts evaluations without improvement.

    ``resume`` is a ``last.pt`` state plus its metrics ``history``: training goes
    on from that evaluation with the model, optimizer, scheduler, counters and
    RNG state restored, so the rows that follow equal an uninterrupted run's.
    ``tensorboard`` (``train.tensorboard``) also receives each metrics row.
    """
    from nnlab import speed

    t = cfg.train
    speed.check_options(cfg, device, data.input_shape)
    train_loader, test_loader = make_loaders(cfg, data, device)
    amp, channels_last = speed_settings(cfg, device, data.input_shape)
    if resume is None and hasattr(model, "init_from_data"):  # e.g. cnn-fast's patch whitening
        model.init_from_data(_init_sample(train_loader, test_loader))
    if channels_last:  # before the optimizer is built: it keeps references to the parameters
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler, per_batch = build_scheduler(optimizer, cfg.schedule, t.epochs, len(train_loader))
    history: list[dict[str, float]] = []
    best_acc, best_epoch, since_best, step, start_epoch, elapsed_before = -1.0, 0, 0, 0, 0, 0.0
    stop_reason = "completed"
    if resume is not None:  # before the DDP wrap, which copies rank 0's weights to every rank
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume["scheduler"])
        history = list(resume["history"])
        start_epoch, step, elapsed_before = resume["epoch"], resume["step"], resume["elapsed_s"]
        best_acc, best_epoch, since_best = (
            resume["best_test_acc"],
            resume["best_epoch"],
            resume["since_best"],
        )
        stop_reason = resume["stop_reason"] or stop_reason
        torch.set_rng_state(resume["torch_rng"])
        if resume.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state_all(resume["cuda_rng"])
    ema = None  # train.ema: evaluate and save the average (resume["model"]); train `model`
    if t.ema:
        from nnlab.ema import WeightAverage

        ema = WeightAverage(
            model, t.ema, t.ema_every, t.lookahead, total_steps=t.epochs * len(train_loader)
        )
        if resume is not None:
            ema.load_state_dict(model, resume["ema"])
    eval_model = ema.model if ema is not None else model
    manual = None  # small MLPs: hand-derived gradients instead of autograd (train.manual_step)
    if manual_step.applies(cfg, amp):
        manual = manual_step.ManualMLPStep(
            model,
            optimizer,
            cfg.model.activation,
            label_smoothing=t.label_smoothing,
            clip_norm=t.clip_norm,
        )
    # Under torchrun, train through DDP (it averages gradients over ranks); evaluate and checkpoint `model`.
    train_model = distributed.wrap(model, device)
    compile_seconds = None
    # compiled once here, on throw-away passes, so train_seconds holds no compile time
    if t.compile:
        train_model, compile_seconds = speed.compile_and_warm_up(
            train_model,
            model,
            speed.warm_up_batches(train_loader),
            mode=t.compile_mode,
            amp=amp,
            label_smoothing=t.label_smoothing,
        )
    eval_seconds = 0.0
    config_dict = cfg.to_dict()  # every checkpoint holds it; it does not change during a run
    bar = Progress(t.epochs, cfg.name, progress if distributed.is_main() else "off")
    start = time.perf_counter() - elapsed_before
    epoch = start_epoch
    # A run that had already stopped early when it was checkpointed has nothing left to do.
    last_epoch = start_epoch if resume is not None and resume["stop_reason"] else t.epochs
    try:
        for epoch in range(start_epoch + 1, last_epoch + 1):
            train_loader.set_epoch(epoch)
            is_eval = epoch % t.eval_every == 0 or epoch == t.epochs
            train_metrics = train_one_epoch(
                train_model,
                train_loader,
                optimizer,
                scheduler=scheduler if per_batch else None,
                clip_norm=t.clip_norm,
                label_smoothing=t.label_smoothing,
                track=is_eval,
                amp=amp,
                ema=ema,
                manual=manual,
            )
            step += len(train_loader)
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None and not per_batch:
                scheduler.step()
            if not is_eval:
                bar.update(epoch, None)
                continue
            eval_start = time.perf_counter()
            test_metrics = evaluate(eval_model, test_loader, amp, t.tta)
            eval_seconds += time.perf_counter() - eval_start
            # each rank measured its own share: combine into whole-set means
            if distributed.is_distributed():
                train_metrics = distributed.average(train_metrics, train_loader.num_examples)
                test_metrics = distributed.average(test_metrics, test_loader.num_examples)
            row = {
                "epoch": epoch,
                "step": step,
                **train_metrics,
                "test_loss": test_metrics["loss"],
                "test_acc": test_metrics["acc"],
                "lr": lr,
                "elapsed_s": time.perf_counter() - start,
            }
            if not all(math.isfinite(row[k]) for k in ("train_loss", "test_loss")):
                raise TrainingDiverged(
                    f"loss became {row['train_loss']} by epoch {epoch} (step {step}); "
                    "try a lower optim.lr or gradient clipping (train.clip_norm=1)"
                )
            history.append(row)
            improved = row["test_acc"] > best_acc
            if improved:
                best_acc, best_epoch, since_best = row["test_acc"], epoch, 0
            else:
                since_best += 1
            stop = ""
            if t.target_acc and row["test_acc"] >= t.target_acc:
                stop = f"reached train.target_acc {t.target_acc} at epoch {epoch}"
            elif t.patience and since_best >= t.patience:
                stop = f"early stop: no better test_acc for {t.patience} evaluations"
            if run is not None:
                # metrics first, then last.pt: a crash in between leaves a row past the
                # checkpoint, which resume drops and recomputes (bit for bit).
                run.append_metrics(row)
                state = {
                    **_checkpoint_state(
                        cfg, config_dict, eval_model, optimizer, scheduler, epoch, step, best_acc
                    ),
                    "best_epoch": best_epoch,
                    "since_best": since_best,
                    "elapsed_s": row["elapsed_s"],
                    "stop_reason": stop,
                    "row": row,  # full precision (metrics.csv rounds to 6 digits)
                    **({"ema": ema.state_dict(model)} if ema is not None else {}),
                }
                save_checkpoint(run.checkpoints / "last.pt", state)
                if improved:
                    save_checkpoint(run.checkpoints / "best.pt", state)
            # the same row as scalars, after the files that matter are safe
            if tensorboard is not None:
                tensorboard.log_row(row)
            bar.update(epoch, row)
            if stop:
                stop_reason = stop
                break
    finally:
        bar.close()
    train_seconds = time.perf_counter() - start
    if ema is not None:  # the run ends with the weights it evaluated: the average
        model.load_state_dict(ema.model.state_dict())

    final = {"test_acc": history[-1]["test_acc"], "test_loss": history[-1]["test_loss"]}
    # under torchrun only rank 0 has the folder
    restore = run is not None or distributed.is_distributed()
    if t.patience and t.restore_best and best_epoch != history[-1]["epoch"] and restore:
        if run is not None:
            model.load_state_dict(load_checkpoint(run.checkpoints / "best.pt")["model"])
        distributed.broadcast_module(model)  # rank 0's restored weights to every rank
        m = distributed.average(evaluate(model, test_loader, amp, t.tta), test_loader.num_examples)
        final = {"test_acc": m["acc"], "test_loss": m["loss"]}
        stop_reason += f"; restored the best checkpoint (epoch {best_epoch})"
    return FitResult(
        history,
        epoch,
        step,
        train_seconds,
        best_acc,
        best_epoch,
        stop_reason,
        final,
        compile_seconds,
        eval_seconds,
    )


def load_initial_weights(model: nn.Module, source: str) -> None:
    """``train.init_from``: start ``model`` from the weights of an earlier run (its ``last.pt``) or a checkpoint.

    Only the weights: the optimizer, schedule and counters start fresh, as in any
    new run. Loaded with ``weights_only=True``; a file that does not fit the model
    is a one-line ConfigError naming what differs.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    state = load_checkpoint(path)  # a missing or unreadable file: one-line RunError
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        raise ConfigError(f"train.init_from: {path} holds no model weights")
    own = model.state_dict()
    problems = [f"{k} missing" for k in own if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in own]
    problems += [
        f"{k} is {tuple(weights[k].shape)}, not {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and weights[k].shape != v.shape
    ]
    if problems:
        raise ConfigError(
            f"train.init_from: the weights in {path} do not fit this model ({'; '.join(problems[:3])}); "
            "the model.* settings must match that run's"
        )
    model.load_state_dict(weights)


def _init_sample(train_loader, test_loader, n: int = 5000) -> torch.Tensor:
    """Up to ``n`` training inputs as the model sees them, unaugmented, for a data-dependent init."""
    x = train_loader.x[:n]
    return test_loader.transform(x) if test_loader.transform is not None else x


def _checkpoint_state(
    cfg, config_dict, model, optimizer, scheduler, epoch, step, best_acc
) -> dict[str, Any]:
    """A checkpoint that describes itself; every entry loads with ``weights_only=True``."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "step": step,
        "best_test_acc": best_acc,
        "config": config_dict,  # cfg.to_dict(), made once per run
        "name": cfg.name,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


# --------------------------------------------------------------------------- one whole run


def run_training(
    cfg: Config, out: Path, *, progress: str | None = None, resume: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train one run into the folder ``out`` and return its summary.

    Everything that can fail on bad input (device, data, model) is done before
    the folder is created, so a rejected run leaves nothing behind. ``resume``
    (from ``load_resume_state``) continues a run already in ``out``.
    """
    # train.tensorboard without the package: one line, before anything is written
    check_available(cfg)
    device = select_device(cfg.train.device)
    # under torchrun: join the process group, take this rank's GPU
    device = distributed.setup(cfg, device)
    set_determinism(cfg.train.deterministic)
    seed_everything(cfg.train.seed)
    data = load_data(cfg.data, cfg.train.seed)
    # the from-scratch NumPy MLP: its own loop, the same run folder
    if cfg.model.backend == "numpy":
        from nnlab.numpy_mlp import run as numpy_run

        summary = numpy_run.run_numpy_training(
            cfg, data, out, progress=Progress(cfg.train.epochs, cfg.name, progress)
        )
        if cfg.train.tensorboard:  # its loop is not fit's: replay the finished run's rows
            from nnlab.runs import read_metrics
            from nnlab.tensorboard_log import log_history

            log_history(Path(out), cfg, to_toml(cfg), read_metrics(Path(out) / "metrics.csv"))
        return summary
    seed_everything(cfg.train.seed)  # the model's initial weights depend on the seed only
    model = build_model(cfg.model, data.input_shape, data.n_classes).to(device)
    if cfg.train.init_from and resume is None:  # a resumed run has its own weights in last.pt
        load_initial_weights(model, cfg.train.init_from)
    from nnlab.speed import check_options

    # compile / tta problems: one line, before the folder exists
    check_options(cfg, device, data.input_shape)
    n_params = sum(p.numel() for p in model.parameters())
    if device.type == "cpu":
        set_cpu_threads(cfg.train.threads, n_params, data.input_shape)

    run = RunDir(out) if distributed.is_main() else None  # under torchrun only rank 0 writes
    if run is not None and resume is None:
        run.create(to_toml(cfg))
    started = time.time()
    provenance = {
        "seed": cfg.train.seed,
        "device": str(device),
        "world_size": distributed.world_size(),
        # what train.amp / train.channels_last resolved to on this device
        "amp_bf16": (speed := speed_settings(cfg, device, data.input_shape))[0],
        "channels_last": speed[1],
        "manual_step": manual_step.applies(
            cfg, speed[0]
        ),  # hand-derived gradients (train.manual_step)
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "n_params": n_params,
        "n_train": len(data.y_train),
        "n_test": len(data.y_test),
        "preset": cfg.name,
        "command": command_line(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "versions": versions(),
        "git_commit": git_commit(),
    }
    tensorboard = None
    # event files beside metrics.csv (nnlab/tensorboard_log.py)
    if cfg.train.tensorboard and run is not None:
        tensorboard = TensorBoardLog(
            run.path, purge_after_epoch=resume["epoch"] if resume else None
        )
        tensorboard.log_config(cfg, to_toml(cfg))
        if resume is None:  # the graph's shape is all that matters: zeros stand in for uint8 images
            x = (
                data.x_test[:1]
                if data.x_test.is_floating_point()
                else torch.zeros(1, *data.input_shape)
            )
            tensorboard.log_graph(model, x.to(device))
    try:
        result = fit(
            cfg, model, data, device, run, progress=progress, resume=resume, tensorboard=tensorboard
        )
    except TrainingDiverged as exc:
        # A diverged run is a result, not a crash: record it (its last good
        # checkpoint stays as it was) so sweeps report it and do not retry it.
        if run is not None:
            run.write_summary(
                {
                    "status": "diverged",
                    "error": str(exc),
                    "final_test_acc": None,
                    "best_test_acc": None,
                    "train_seconds": round(time.time() - started, 3),
                    **provenance,
                }
            )
        raise
    finally:
        if tensorboard is not None:
            tensorboard.close()
    summary = completed_summary(result, provenance)
    from nnlab.plots import plot_curves

    if run is not None:
        plot_curves(
            result.history, run.path / "curves.png", title=f"{cfg.name} (seed {cfg.train.seed})"
        )
        run.write_summary(summary)  # last: a run is finished iff summary.json exists
    distributed.finish()  # under torchrun: wait for every rank (and rank 0's files), leave the group
    return summary


def load_resume_state(
    out: Path, requested: Config | None = None
) -> tuple[Config, dict[str, Any] | None]:
    """The saved config of the unfinished run in ``out`` and its ``last.pt`` state (None if it has none yet).

    Repairs ``metrics.csv`` to the checkpoint: rows past it (written just before
    a crash) and a torn last line are dropped, and are recomputed on resume.
    ``requested``, when given, must match the saved config (the device may differ).
    """
    from nnlab.config import load_config
    from nnlab.errors import RunError
    from nnlab.runs import repair_metrics

    run = RunDir(out)
    if not (run.path / "config.toml").is_file():
        raise RunError(f"{out}: not an nnlab run folder (no config.toml)")
    if run.finished:
        raise RunError(f"{out}: the run is finished (summary.json exists); nothing to resume")
    saved = load_config(str(run.path / "config.toml"))
    for stale in (
        [*run.path.glob(".*.tmp"), *run.checkpoints.glob(".*.tmp")] if distributed.is_main() else []
    ):
        stale.unlink()  # a temp file from a write the crash interrupted; its target is intact
    state = (
        load_checkpoint(run.checkpoints / "last.pt")
        if (run.checkpoints / "last.pt").exists()
        else None
    )
    if state is not None:
        saved.name = state.get("name", saved.name)
        if state.get("config") != saved.to_dict():
            raise RunError(f"{out}: checkpoints/last.pt was not written by this run's config.toml")
    if requested is not None:
        mine, theirs = requested.to_dict(), saved.to_dict()
        mine["train"].pop("device"), theirs["train"].pop("device")
        diff = [f"{s}.{k}" for s in mine for k in mine[s] if mine[s][k] != theirs[s].get(k)]
        if diff:
            raise RunError(
                f"{out}: was trained with a different config ({', '.join(diff[:5])} differ); resume it without --set, or start a new --out"
            )
        saved = saved.replace({"train.device": requested.train.device})
    if state is not None and not distributed.is_main():
        # Under torchrun every rank resumes from the same last.pt, but only rank 0 touches the
        # folder; the others need just the checkpoint's row (fit compares its epoch).
        state["history"] = [state["row"]]
    elif state is not None:
        history = repair_metrics(run.metrics_path, up_to_epoch=state["epoch"])
        if not history or history[-1]["epoch"] != state["epoch"]:
            raise RunError(
                f"{run.metrics_path}: has no row for the checkpoint's epoch {state['epoch']}"
            )
        state["history"] = [*history[:-1], state["row"]]
    return saved, state


def resume_training(
    out: Path, requested: Config | None = None, *, progress: str | None = None
) -> dict[str, Any]:
    """Continue the unfinished run in ``out`` from its last checkpoint (or from the start if it has none)."""
    cfg, state = load_resume_state(out, requested)
    if state is None:  # killed before its first evaluation: nothing to keep
        return run_training(cfg, out, progress=progress)
    return run_training(cfg, out, progress=progress, resume=state)

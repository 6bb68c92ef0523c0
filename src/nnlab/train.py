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

from nnlab.config import Config, OptimConfig, ScheduleConfig, to_toml
from nnlab.data import DataBundle, load_data
from nnlab.data.loader import TensorLoader
from nnlab.errors import ConfigError, NnlabError
from nnlab.models import build_model
from nnlab.runs import RunDir, command_line, git_commit, load_checkpoint, save_checkpoint, versions

EVAL_BATCH = 2048  # evaluation has no gradients, so it can use larger batches


class TrainingDiverged(NnlabError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


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
            raise ConfigError(f"train.device: '{name}' requested but CUDA is not available here; use auto or cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"train.device: '{name}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ConfigError("train.device: 'mps' requested but Apple's MPS is not available here; use auto or cpu")
    return torch.device(name)


def set_cpu_threads(threads: int, n_params: int) -> None:
    """Tiny models run fastest on one thread: their matmuls are too small to split."""
    if threads == 0:
        threads = 1 if n_params < 200_000 else torch.get_num_threads()
    torch.set_num_threads(threads)


def build_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    # foreach=True: one fused kernel per parameter group instead of one per tensor.
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, foreach=True
        )
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, foreach=True)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, foreach=True)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=cfg.lr, alpha=cfg.alpha, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True
        )
    raise ConfigError(f"optim.name: unknown optimizer {cfg.name!r}")


def build_scheduler(optimizer, cfg: ScheduleConfig, epochs: int, steps_per_epoch: int):
    """Returns ``(scheduler, per_batch)``: ``step`` decays per epoch, cosine and one-cycle per batch."""
    total = max(1, epochs * steps_per_epoch)
    if cfg.name == "none":
        return None, False
    if cfg.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma), False
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=cfg.min_lr), True
    if cfg.name == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=cfg.pct_start), True
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
) -> dict[str, float]:
    """One pass over ``loader``; with ``track``, returns the epoch's mean train loss and accuracy.

    Metrics accumulate on the device and are read once at the end: a ``.item()``
    per step would wait for the device at every step.
    """
    model.train()
    loss_sum = correct = None
    seen = 0
    for x, y in loader:
        logits = model(x)  # (B, n_classes)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
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


@torch.no_grad()
def infer(model: nn.Module, loader) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every example of ``loader``, in order (model in eval mode)."""
    model.eval()
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x).float())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def score(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``logits`` against ``labels``."""
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        "acc": (logits.argmax(1) == labels).float().mean().item(),
    }


def evaluate(model: nn.Module, loader) -> dict[str, float]:
    return score(*infer(model, loader))


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


class Progress:
    """A tqdm bar on a terminal; otherwise a plain line at each tenth of training (CI, pipes)."""

    def __init__(self, total: int, label: str, enabled: bool | None = None) -> None:
        self.total, self.label = total, label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        self.next_mark = 0.0
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="ep", leave=False, dynamic_ncols=True)

    def update(self, epoch: int, row: dict[str, float] | None) -> None:
        if self.bar is not None:
            self.bar.update(epoch - self.bar.n)
            if row:
                self.bar.set_postfix(loss=f"{row['train_loss']:.4f}", test_acc=f"{row['test_acc']:.4f}")
        elif row and (epoch / self.total >= self.next_mark or epoch == self.total):
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


def make_loaders(cfg: Config, data: DataBundle, device: torch.device) -> tuple[TensorLoader, TensorLoader]:
    """Move the splits to ``device`` once; batches are then views of them."""
    train = TensorLoader(
        data.x_train.to(device), data.y_train.to(device), cfg.train.batch_size, shuffle=True, seed=cfg.train.seed
    )
    test = TensorLoader(data.x_test.to(device), data.y_test.to(device), max(EVAL_BATCH, cfg.train.batch_size))
    return train, test


def fit(
    cfg: Config,
    model: nn.Module,
    data: DataBundle,
    device: torch.device,
    run: RunDir | None = None,
    progress: bool | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` as ``cfg`` says; evaluate every ``eval_every`` epochs and after the last.

    Each evaluation appends a metrics row and (with a run folder) writes
    ``last.pt``, and ``best.pt`` when test accuracy improved. Early stopping
    (``train.patience``) counts evaluations without improvement.
    """
    t = cfg.train
    train_loader, test_loader = make_loaders(cfg, data, device)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler, per_batch = build_scheduler(optimizer, cfg.schedule, t.epochs, len(train_loader))

    history: list[dict[str, float]] = []
    best_acc, best_epoch, since_best, step = -1.0, 0, 0, 0
    stop_reason = "completed"
    bar = Progress(t.epochs, cfg.name, progress)
    start = time.perf_counter()
    epoch = 0
    try:
        for epoch in range(1, t.epochs + 1):
            train_loader.set_epoch(epoch)
            is_eval = epoch % t.eval_every == 0 or epoch == t.epochs
            train_metrics = train_one_epoch(
                model,
                train_loader,
                optimizer,
                scheduler=scheduler if per_batch else None,
                clip_norm=t.clip_norm,
                label_smoothing=t.label_smoothing,
                track=is_eval,
            )
            step += len(train_loader)
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None and not per_batch:
                scheduler.step()
            if not is_eval:
                bar.update(epoch, None)
                continue
            test_metrics = evaluate(model, test_loader)
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
            if run is not None:
                run.append_metrics(row)
                state = _checkpoint_state(cfg, model, optimizer, scheduler, epoch, step, best_acc)
                save_checkpoint(run.checkpoints / "last.pt", state)
                if improved:
                    save_checkpoint(run.checkpoints / "best.pt", state)
            bar.update(epoch, row)
            if t.target_acc and row["test_acc"] >= t.target_acc:
                stop_reason = f"reached train.target_acc {t.target_acc} at epoch {epoch}"
                break
            if t.patience and since_best >= t.patience:
                stop_reason = f"early stop: no better test_acc for {t.patience} evaluations"
                break
    finally:
        bar.close()
    train_seconds = time.perf_counter() - start

    final = {"test_acc": history[-1]["test_acc"], "test_loss": history[-1]["test_loss"]}
    if t.patience and t.restore_best and best_epoch != history[-1]["epoch"] and run is not None:
        model.load_state_dict(load_checkpoint(run.checkpoints / "best.pt")["model"])
        m = evaluate(model, test_loader)
        final = {"test_acc": m["acc"], "test_loss": m["loss"]}
        stop_reason += f"; restored the best checkpoint (epoch {best_epoch})"
    return FitResult(history, epoch, step, train_seconds, best_acc, best_epoch, stop_reason, final)


def _checkpoint_state(cfg, model, optimizer, scheduler, epoch, step, best_acc) -> dict[str, Any]:
    """A checkpoint that describes itself; every entry loads with ``weights_only=True``."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "step": step,
        "best_test_acc": best_acc,
        "config": cfg.to_dict(),
        "torch_rng": torch.get_rng_state(),
    }


# --------------------------------------------------------------------------- one whole run


def run_training(cfg: Config, out: Path, *, progress: bool | None = None) -> dict[str, Any]:
    """Train one run into the folder ``out`` and return its summary.

    Everything that can fail on bad input (device, data, model) is done before
    the folder is created, so a rejected run leaves nothing behind.
    """
    device = select_device(cfg.train.device)
    seed_everything(cfg.train.seed)
    data = load_data(cfg.data, cfg.train.seed)
    if cfg.model.backend == "numpy":
        raise ConfigError("model.backend: numpy is not available yet; use torch")
    seed_everything(cfg.train.seed)  # the model's initial weights depend on the seed only
    model = build_model(cfg.model, data.input_shape, data.n_classes).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if device.type == "cpu":
        set_cpu_threads(cfg.train.threads, n_params)

    run = RunDir(out)
    run.create(to_toml(cfg))
    started = time.time()
    result = fit(cfg, model, data, device, run, progress=progress)
    summary = {
        "final_test_acc": result.final["test_acc"],
        "final_test_loss": result.final["test_loss"],
        "best_test_acc": result.best_test_acc,
        "best_epoch": result.best_epoch,
        "final_train_acc": result.history[-1]["train_acc"],
        "final_train_loss": result.history[-1]["train_loss"],
        "epochs": result.epochs,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "train_seconds": round(result.train_seconds, 3),
        "seed": cfg.train.seed,
        "device": str(device),
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
    from nnlab.plots import plot_curves

    plot_curves(result.history, run.path / "curves.png", title=f"{cfg.name} (seed {cfg.train.seed})")
    run.write_summary(summary)  # last: a run is finished iff summary.json exists
    return summary

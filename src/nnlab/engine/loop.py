"""The one training loop for every torch model: ``train_one_epoch``, ``infer``/``score``, ``fit``.

``fit`` trains a model as a config says, evaluates every ``eval_every`` epochs
and hands each evaluation to a sink (``engine/sinks.py``: a run folder, a stack
of run folders, or nothing). What varies between runs is chosen once, before
the loop: the step (``engine/steps.py``: autograd, a stack of seeds, the
hand-derived MLP step), DDP and compile wrappers, weight averaging. A stack of
seeds (``nnlab.models.stacked``) is one model with S members: metrics, best
epochs and rows are kept per member, everything else is shared.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.config import Config
from nnlab.data import DataBundle
from nnlab.engine import distributed
from nnlab.engine.fit_state import FitState
from nnlab.engine.loaders import make_loaders
from nnlab.engine.optim import build_optimizer, build_scheduler
from nnlab.engine.plan import RunPlan, plan_run
from nnlab.engine.progress import Progress
from nnlab.errors import TrainingDiverged


def train_one_epoch(
    step, loader, *, scheduler=None, track: bool = True, ema=None
) -> dict[str, Any]:
    """One pass over ``loader`` with ``step`` (``engine/steps.py``); with ``track``, the
    epoch's mean train loss and accuracy (floats; lists of one per member for a stack).

    Metrics accumulate on the device and are read once at the end: a ``.item()``
    per step would wait for the device at every step.
    """
    step.model.train()
    loss_sum = correct = None
    seen = 0
    # one autograd switch for the epoch, not one per step (the hand-derived step needs no graph)
    with torch.set_grad_enabled(step.needs_grad):
        for x, y in loader:
            loss, logits = step(x, y, track)
            if scheduler is not None:
                scheduler.step()
            if ema is not None:
                ema.update()
            if track:
                n = y.shape[-1]  # examples per member
                with torch.no_grad():
                    batch_loss = loss.detach() * n
                    batch_correct = (logits.argmax(-1) == y).sum(-1)
                    loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
                    correct = batch_correct if correct is None else correct + batch_correct
                seen += n
    if not track or seen == 0:
        return {}
    return {"train_loss": _ratio(loss_sum, seen), "train_acc": _ratio(correct, seen)}


def _ratio(total: torch.Tensor, count: int):
    """``total / count`` in Python floats: one value, or one per member of a stack."""
    values = total.tolist()
    return values / count if not isinstance(values, list) else [v / count for v in values]


@torch.no_grad()
def infer(
    model: nn.Module, loader, amp: bool = False, tta: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every example of ``loader``, in order (model in eval mode).

    ``(N, C)`` and ``(N,)``; for a stack ``(S, N, C)`` and ``(S, N)``. ``tta`` > 0
    averages each image's logits over mirrored/shifted views (``engine/tta.py``).
    """
    from nnlab.engine.tta import tta_logits

    model.eval()
    logits, labels = [], []
    for x, y in loader:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            logits.append(tta_logits(model, x, tta).float())
        labels.append(y)
    return torch.cat(logits, dim=-2), torch.cat(labels, dim=-1)


def score(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Mean cross-entropy and accuracy of ``logits`` against ``labels`` (per member for a stack)."""
    if logits.dim() == 3:  # a stack: (S, N, C), (S, N)
        each = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
        hits = (logits.argmax(-1) == labels).sum(-1)
        return {
            "loss": each.view(labels.shape).mean(1).tolist(),
            "acc": _ratio(hits, labels.shape[1]),
        }
    return {
        "loss": F.cross_entropy(logits, labels).item(),
        # count, then divide in Python: an exact ratio (a float32 mean prints 0.8650000095)
        "acc": (logits.argmax(1) == labels).sum().item() / max(len(labels), 1),
    }


def evaluate(model: nn.Module, loader, amp: bool = False, tta: int = 0) -> dict[str, Any]:
    return score(*infer(model, loader, amp, tta))


@dataclass
class FitResult:
    """What ``fit`` returns: one member's (or a lone run's) results; ``members`` lists all."""

    history: list[dict[str, float]]
    epochs: int  # epochs completed
    steps: int
    train_seconds: float  # a stack member: its share (1/S) of the stack's time
    best_test_acc: float
    best_epoch: int
    stop_reason: str
    final: dict[str, float] = field(default_factory=dict)
    compile_seconds: float | None = None  # train.compile: the one-off compile, not in train_seconds
    eval_seconds: float = 0.0  # the part of train_seconds spent evaluating
    members: list[FitResult] = field(default_factory=list, repr=False)


def fit(
    cfg: Config,
    model: nn.Module,
    data: DataBundle,
    device: torch.device,
    sink=None,
    progress: str | None = None,
    resume: dict[str, Any] | None = None,
    plan: RunPlan | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` as ``cfg`` says; evaluate every ``eval_every`` epochs and after the last.

    Each evaluation goes to ``sink.evaluated`` (metrics rows, checkpoints). Early
    stopping (``train.patience``) counts evaluations without improvement.
    ``resume`` is a ``last.pt`` state plus its metrics ``history``: training goes
    on from that evaluation with model, optimizer, scheduler, counters and RNG
    state restored, so the rows that follow equal an uninterrupted run's.
    """
    t = cfg.train
    plan = plan or plan_run(cfg, device, data.input_shape, members=len(data.stack_seeds) or 1)
    train_loader, test_loader = make_loaders(cfg, data, device, plan)
    if resume is None and hasattr(model, "init_from_data"):  # e.g. cnn-fast's patch whitening
        model.init_from_data(_init_sample(train_loader, test_loader))
    if plan.channels_last:  # before the optimizer is built: it keeps references to the parameters
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler, per_batch = build_scheduler(optimizer, cfg.schedule, t.epochs, len(train_loader))
    state = FitState(members=plan.members)
    if resume is not None:  # before the DDP wrap, which copies rank 0's weights to every rank
        _load_resume(resume, model, optimizer, scheduler, state, device)
    ema = _weight_average(t, model, len(train_loader), resume)
    eval_model = ema.model if ema is not None else model
    step, compile_seconds = plan.make_step(model, optimizer, train_loader)
    bar = Progress(t.epochs, cfg.name, progress if distributed.is_main() else "off")
    start = time.perf_counter() - state.elapsed_s
    eval_seconds = 0.0
    # A run that had already stopped early when it was checkpointed has nothing left to do.
    last_epoch = state.epoch if state.stop_reason else t.epochs
    try:
        with warnings.catch_warnings():
            if not step.needs_grad:  # the scheduler cannot see a hand-made optimizer update
                warnings.filterwarnings(
                    "ignore", "Detected call of `lr_scheduler.step", UserWarning
                )
            for epoch in range(state.epoch + 1, last_epoch + 1):
                train_loader.set_epoch(epoch)
                is_eval = epoch % t.eval_every == 0 or epoch == t.epochs
                train_metrics = train_one_epoch(
                    step,
                    train_loader,
                    scheduler=scheduler if per_batch else None,
                    track=is_eval,
                    ema=ema,
                )
                state.epoch, state.step = epoch, state.step + len(train_loader)
                lr = optimizer.param_groups[0]["lr"]
                if scheduler is not None and not per_batch:
                    scheduler.step()
                if not is_eval:
                    bar.update(epoch, None)
                    continue
                eval_start = time.perf_counter()
                test_metrics = evaluate(eval_model, test_loader, plan.amp, t.tta)
                eval_seconds += time.perf_counter() - eval_start
                if distributed.is_distributed():  # each rank scored its share: whole-set means
                    train_metrics = distributed.average(train_metrics, train_loader.num_examples)
                    test_metrics = distributed.average(test_metrics, test_loader.num_examples)
                state.elapsed_s = time.perf_counter() - start
                rows = _rows(state, train_metrics, test_metrics, lr)
                _check_finite(rows, plan.members)
                improved = state.record(rows, t)
                if sink is not None:
                    sink.evaluated(
                        state,
                        rows,
                        improved,
                        lambda m: _checkpoint(
                            model, eval_model, optimizer, scheduler, state, ema, m
                        ),
                    )
                bar.update(epoch, rows[0])
                if state.stop_reason:
                    break
    finally:
        bar.close()
    train_seconds = time.perf_counter() - start
    if ema is not None:  # the run ends with the weights it evaluated: the average
        model.load_state_dict(ema.model.state_dict())
    finals = [
        {"test_acc": h[-1]["test_acc"], "test_loss": h[-1]["test_loss"]} for h in state.history
    ]
    reasons = [state.stop_reason or "completed"] * plan.members
    restore = t.patience and t.restore_best and state.best_epoch[0] != state.history[0][-1]["epoch"]
    # under torchrun only rank 0 has the folder: it loads best.pt, the others get its weights
    if restore and (sink is not None or distributed.is_distributed()):
        if sink is not None:
            model.load_state_dict(sink.best_weights())
        distributed.broadcast_module(model)
        m = distributed.average(
            evaluate(model, test_loader, plan.amp, t.tta), test_loader.num_examples
        )
        finals[0] = {"test_acc": m["acc"], "test_loss": m["loss"]}
        reasons[0] += f"; restored the best checkpoint (epoch {state.best_epoch[0]})"
    seconds = (train_seconds / plan.members, eval_seconds / plan.members)  # each member's share
    return _result(state, finals, reasons, seconds, compile_seconds)


def _load_resume(resume: dict, model, optimizer, scheduler, state: FitState, device) -> None:
    """Model, optimizer, scheduler, counters and RNG state as the checkpoint left them."""
    model.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(resume["scheduler"])
    state.load_state_dict(resume)
    torch.set_rng_state(resume["torch_rng"])
    if resume.get("cuda_rng") is not None and device.type == "cuda":
        torch.cuda.set_rng_state_all(resume["cuda_rng"])


def _result(state: FitState, finals, reasons, seconds, compile_seconds) -> FitResult:
    """Member 0's ``FitResult`` (a lone run's), with every member's in ``members``."""
    results = [
        FitResult(
            state.history[s],
            state.epoch,
            state.step,
            seconds[0],
            state.best_acc[s],
            state.best_epoch[s],
            reasons[s],
            finals[s],
            compile_seconds,
            seconds[1],
        )
        for s in range(state.members)
    ]
    results[0].members = results
    return results[0]


def _rows(state: FitState, train: dict[str, Any], test: dict[str, Any], lr: float) -> list[dict]:
    """One metrics row per member (``METRIC_COLUMNS`` of ``nnlab.runs``)."""

    def member(values: Any, s: int) -> float:
        return values[s] if isinstance(values, list) else values

    return [
        {
            "epoch": state.epoch,
            "step": state.step,
            "train_loss": member(train["train_loss"], s),
            "train_acc": member(train["train_acc"], s),
            "test_loss": member(test["loss"], s),
            "test_acc": member(test["acc"], s),
            "lr": lr,
            "elapsed_s": state.elapsed_s,
        }
        for s in range(state.members)
    ]


def _check_finite(rows: list[dict], members: int) -> None:
    for s, row in enumerate(rows):
        if not (math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])):
            who = f"member {s} of a stack of {members}: " if members > 1 else ""
            raise TrainingDiverged(
                f"{who}loss became {row['train_loss']} by epoch {row['epoch']} (step {row['step']}); "
                "try a lower optim.lr or gradient clipping (train.clip_norm=1)"
            )


def _weight_average(t, model: nn.Module, steps_per_epoch: int, resume: dict[str, Any] | None):
    """``train.ema``: the average that evaluations and checkpoints use (None when off)."""
    if not t.ema:
        return None
    from nnlab.engine.ema import WeightAverage

    ema = WeightAverage(
        model, t.ema, t.ema_every, t.lookahead, total_steps=t.epochs * steps_per_epoch
    )
    if resume is not None:
        ema.load_state_dict(model, resume["ema"])
    return ema


def _init_sample(train_loader, test_loader, n: int = 5000) -> torch.Tensor:
    """Up to ``n`` training inputs as the model sees them, unaugmented, for a data-dependent init."""
    x = train_loader.x[:n]
    return test_loader.transform(x) if test_loader.transform is not None else x


def _checkpoint(model, eval_model, optimizer, scheduler, state: FitState, ema, member: int) -> dict:
    """Member ``member``'s checkpoint (the sink adds the config); loads with ``weights_only=True``."""
    stacked = hasattr(model, "member_state_dict")
    optim_state = optimizer.state_dict()
    return {
        "model": model.member_state_dict(member) if stacked else eval_model.state_dict(),
        "optimizer": _member_slice(optim_state, member, state.members) if stacked else optim_state,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        **state.state_dict(member),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        **({"ema": ema.state_dict(model)} if ema is not None else {}),
    }


def _member_slice(optim_state: dict, s: int, members: int) -> dict:
    """Member ``s``'s share of an optimizer state_dict (buffers of shape (S, ...); scalars kept)."""

    def pick(v):
        stacked = isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == members
        return v[s].clone() if stacked else v

    return {
        "state": {i: {k: pick(v) for k, v in st.items()} for i, st in optim_state["state"].items()},
        "param_groups": optim_state["param_groups"],
    }

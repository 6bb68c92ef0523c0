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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnlab.config import Config
from nnlab.data import DataBundle
from nnlab.engine import distributed
from nnlab.engine.checkpoint import Saver, load_resume
from nnlab.engine.epoch import Tally, ratio, train_one_epoch
from nnlab.engine.fit_state import FitState
from nnlab.engine.loaders import make_loaders, make_val_loader, smallest_batch
from nnlab.engine.optim import build_optimizer, build_scheduler
from nnlab.engine.plan import RunPlan, plan_run
from nnlab.engine.progress import Progress
from nnlab.errors import TrainingDiverged


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
            "acc": ratio(hits, labels.shape[1]),
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
    best_val_acc: float | None = None  # with data.val_fraction: what selection looked at
    selected_on: str = "test_acc"  # the metric of best_epoch, patience, target_acc, best.pt
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
    on_eval: Callable[[int, dict[str, float]], str | None] | None = None,
) -> FitResult:
    """Train ``model`` on ``data`` as ``cfg`` says; evaluate every ``eval_every`` epochs and after the last.

    Each evaluation goes to ``sink.evaluated`` (metrics rows, checkpoints), and a
    long epoch also checkpoints mid-way (``train.checkpoint_every_s``). Early
    stopping (``train.patience``) counts evaluations without improvement.
    ``resume`` is a ``last.pt`` state plus its metrics ``history``: training goes
    on from that evaluation or step with model, optimizer, scheduler, counters,
    loader position and RNG state restored, so what follows equals an
    uninterrupted run's. ``on_eval(epoch, row)`` sees each evaluation's metrics row (member
    0's) as it is made; a text it returns stops the run there like an early stop, with that
    text as the stop reason (``nnlab tune``'s pruner: the run folder ends finished, as usual).
    """
    t = cfg.train
    plan = plan or plan_run(cfg, device, data.input_shape, members=len(data.stack_seeds) or 1)
    # BatchNorm: a last batch of one example sits out (it cannot be normalised in training)
    train_loader, test_loader = make_loaders(cfg, data, device, plan, smallest_batch(model))
    val_loader = make_val_loader(cfg, data, device, plan)  # data.val_fraction; else None
    if resume is None and hasattr(model, "init_from_data"):  # e.g. cnn-fast's patch whitening
        model.init_from_data(_init_sample(train_loader, test_loader))
    if plan.channels_last:  # before the optimizer is built: it keeps references to the parameters
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    scheduler, per_batch = build_scheduler(optimizer, cfg.schedule, t.epochs, len(train_loader))
    state = FitState(members=plan.members, selected_on="val_acc" if val_loader else "test_acc")
    if resume is not None:  # before the DDP wrap, which copies rank 0's weights to every rank
        load_resume(resume, model, optimizer, scheduler, state, device)
    ema = _weight_average(t, model, len(train_loader), resume)
    eval_model = ema.model if ema is not None else model
    step, compile_seconds = plan.make_step(model, optimizer, train_loader)
    saver = Saver(model, eval_model, optimizer, scheduler, state, ema, train_loader)
    position = resume.get("position") if resume is not None else None  # resumed mid-epoch
    shown = progress if distributed.is_main() else "off"
    done = state.step + (position["batches"] if position else 0)
    bar = Progress(t.epochs, cfg.name, shown, steps_per_epoch=len(train_loader), done=done)
    start, eval_seconds = time.perf_counter() - state.elapsed_s, 0.0
    mid_epoch = sink is not None and saver.can_resume_mid_epoch(plan, t.checkpoint_every_s)

    def on_step(tally: Tally) -> None:
        bar.step(state.epoch + 1, state.step + tally.batches)
        if mid_epoch and sink.due():
            state.elapsed_s = time.perf_counter() - start
            sink.save(saver(0, tally))

    # A run that had already stopped early when it was checkpointed has nothing left to do.
    last_epoch = state.epoch if state.stop_reason else t.epochs
    try:
        with warnings.catch_warnings():
            if not step.needs_grad:  # the scheduler cannot see a hand-made optimizer update
                warnings.filterwarnings(
                    "ignore", "Detected call of `lr_scheduler.step", UserWarning
                )
            for epoch in range(state.epoch + 1, last_epoch + 1):
                tally = saver.start_epoch(epoch, position, device)
                is_eval = epoch % t.eval_every == 0 or epoch == t.epochs
                sched = scheduler if per_batch else None
                train_metrics = train_one_epoch(
                    step,
                    train_loader,
                    scheduler=sched,
                    track=is_eval,
                    ema=ema,
                    tally=tally,
                    on_step=on_step,
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
                val_metrics = _evaluate_split(eval_model, val_loader, plan.amp, t.tta)
                eval_seconds += time.perf_counter() - eval_start
                if distributed.is_distributed():  # each rank scored its share: whole-set means
                    train_metrics = distributed.average(train_metrics, train_loader.num_examples)
                    test_metrics = distributed.average(test_metrics, test_loader.num_examples)
                state.elapsed_s = time.perf_counter() - start
                rows = _rows(state, train_metrics, test_metrics, lr, val_metrics)
                _check_finite(rows, plan.members)
                improved = state.record(rows, t)
                if on_eval is not None:  # before the sink: a checkpoint records the stop
                    reason = on_eval(epoch, rows[0])
                    state.stop_reason = state.stop_reason or reason or ""
                if sink is not None:
                    sink.evaluated(state, rows, improved, saver)
                bar.update(epoch, rows[0])
                if state.stop_reason:
                    break
        if sink is not None:  # last.pt of the state the run ends in (and best.pt if pending)
            sink.finish(saver)
    finally:
        bar.close()
    train_seconds = time.perf_counter() - start
    if ema is not None:  # the run ends with the weights it evaluated: the average
        model.load_state_dict(ema.model.state_dict())
    finals = [{k: h[-1][k] for k in FINAL_KEYS if k in h[-1]} for h in state.history]
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
        if val_loader is not None:
            v = _evaluate_split(model, val_loader, plan.amp, t.tta)
            finals[0].update(val_acc=v["acc"], val_loss=v["loss"])
        reasons[0] += f"; restored the best checkpoint (epoch {state.best_epoch[0]})"
    seconds = (train_seconds / plan.members, eval_seconds / plan.members)  # each member's share
    return _result(state, finals, reasons, seconds, compile_seconds)


def _result(state: FitState, finals, reasons, seconds, compile_seconds) -> FitResult:
    """Member 0's ``FitResult`` (a lone run's), with every member's in ``members``."""
    results = [
        FitResult(
            state.history[s],
            state.epoch,
            state.step,
            seconds[0],
            state.best_test[s],
            state.best_epoch[s],
            reasons[s],
            finals[s],
            compile_seconds,
            seconds[1],
            best_val_acc=state.best_acc[s] if state.selected_on == "val_acc" else None,
            selected_on=state.selected_on,
        )
        for s in range(state.members)
    ]
    results[0].members = results
    return results[0]


FINAL_KEYS = ("test_acc", "test_loss", "val_acc", "val_loss")


def _evaluate_split(model: nn.Module, loader, amp: bool, tta: int) -> dict[str, Any]:
    """``evaluate`` on the validation split (whole-set means under torchrun); {} without one."""
    if loader is None:
        return {}
    return distributed.average(evaluate(model, loader, amp, tta), loader.num_examples)


def _rows(
    state: FitState, train: dict[str, Any], test: dict[str, Any], lr: float, val: dict[str, Any]
) -> list[dict]:
    """One metrics row per member (``METRIC_COLUMNS`` of ``nnlab.runs``, + val_* with a validation split)."""

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
            **(
                {"val_loss": member(val["loss"], s), "val_acc": member(val["acc"], s)}
                if val
                else {}
            ),
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

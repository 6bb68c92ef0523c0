"""Seed-stacked sweeps: all seeds of one setting train at once, in one process.

For a small MLP a training step costs about the same for one network as for
ten: the time goes to per-call overhead (Python, dispatch, tiny kernels), not to
arithmetic. So ``run_sweep`` hands every group of runs that differ only in
``train.seed`` (and ``[data]``) to ``run_group``, which trains them as one stack of networks:
weights of shape (S, ...), batched matmuls, one optimizer step for all. Runs
that also differ in ``[data]`` (e.g. moons and circles) share a stack when their
data have the same shapes.

Each network sees exactly what its lone run sees (its own data, initial
weights, batch order, optimizer and schedule; every operation is independent
across the stack), so the results equal the lone runs' to float rounding
(``tests/test_numpy_mlp_run.py`` checks both backends), and each seed gets its
own run folder as a lone run would, with ``stacked`` = S in its summary and
``train_seconds`` = its share (1/S) of the stack's time. Settings the stack
cannot reproduce (early stopping, dropout, batchnorm, global gradient clipping
in torch, a dataset that draws its own batches) run alone, as before.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.config import Config, to_toml
from nnlab.errors import NnlabError


def stackable(cfg: Config) -> bool:
    """Whether runs of ``cfg`` (differing only in seed) may train as one stack."""
    t, m = cfg.train, cfg.model
    # train.tensorboard: fit logs each run's rows as it trains; the stack does not go through fit
    # Image datasets (uint8, normalised and augmented per batch) always go through fit; checked
    # here so that they are not loaded just to find that out (run_group checks the rest).
    if cfg.data.name in ("cifar10", "imagefolder") or cfg.data.augment:
        return False
    # ema and init_from (a warm start from one run's weights) are fit's alone.
    if m.name != "mlp" or t.patience or t.target_acc or m.dropout or m.batchnorm or t.tensorboard:
        return False
    if t.ema or t.init_from:
        return False
    if m.backend == "numpy":
        return True
    from nnlab.train import select_device

    # compile, deterministic: the stack runs eager and plain; such runs go through fit.
    return (
        t.clip_norm == 0
        and t.amp != "on"
        and not t.compile
        and not t.deterministic
        and select_device(t.device).type == "cpu"
    )


def group_runs(todo: list[tuple[str, Config]]) -> list[list[tuple[str, Config]]]:
    """Stackable runs whose configs are equal but for ``train.seed`` and ``[data]`` form a group,
    in plan order; others run alone. ``run_group`` splits a group by the shape of its data."""
    groups: dict[str, list[tuple[str, Config]]] = {}
    for name, cfg in todo:
        rest = {k: v for k, v in cfg.to_dict().items() if k != "data"}
        key = repr({**rest, "train": {**rest["train"], "seed": None}}) if stackable(cfg) else name
        groups.setdefault(key, []).append((name, cfg))
    return list(groups.values())


MAX_STACK_ELEMENTS = (
    20_000_000  # inputs of a whole stack (80 MB in float32); bigger data trains alone
)


def _signature(bundle) -> tuple | None:
    """Runs whose data have equal signatures can share a stack; None: this data trains alone.

    Only whole float tensors qualify: images (uint8, normalised and augmented per
    batch by the loader) and datasets that draw their own batches go through ``fit``.
    """
    import torch

    x = bundle.x_train
    if (
        bundle.train_loader is not None
        or bundle.normalization is not None
        or x.dtype not in (torch.float32, torch.float64)
    ):
        return None
    return (tuple(x.shape), tuple(bundle.x_test.shape), bundle.n_classes, x.dtype)


def run_group(
    group: list[tuple[str, Config]], out: str, threads: int
) -> list[tuple[str, dict[str, Any]]]:
    """Train a group (see ``group_runs``) into ``out``; returns ``(name, summary)`` per run."""
    from nnlab.sweep import _run_one

    if len(group) == 1:
        name, cfg = group[0]
        return [(name, _run_one(name, cfg, out, threads))]
    from nnlab.data import load_data
    from nnlab.train import limit_cpu_threads, seed_everything

    if threads:
        limit_cpu_threads(threads)
    names, cfgs = [n for n, _ in group], [c for _, c in group]
    folders = [Path(out) / n for n in names]
    stacks: dict[tuple, list[tuple[str, Config, Path, Any]]] = {}
    alone: list[tuple[str, Config]] = []
    for name, cfg, folder in zip(names, cfgs, folders, strict=True):
        seed_everything(cfg.train.seed)  # as run_training: data, then weights, from the seed
        bundle = load_data(cfg.data, cfg.train.seed)
        sig = _signature(bundle)
        if sig is None or bundle.x_train.numel() * len(group) > MAX_STACK_ELEMENTS:
            alone.append((name, cfg))  # loaded again by its lone run; rare (see _signature)
        else:
            stacks.setdefault(sig, []).append((name, cfg, folder, bundle))
    results = [(n, _run_one(n, c, out, threads)) for n, c in alone]
    for members in stacks.values():
        if len(members) == 1:
            results.append((members[0][0], _run_one(members[0][0], members[0][1], out, threads)))
            continue
        names_, cfgs_, folders_, bundles_ = (list(v) for v in zip(*members, strict=True))
        for folder in folders_:  # unfinished runs of an interrupted sweep start again
            if folder.exists():
                shutil.rmtree(folder)
        if cfgs_[0].model.backend == "numpy":
            from nnlab.numpy_mlp.run import run_numpy_stacked

            results += zip(names_, run_numpy_stacked(cfgs_, bundles_, folders_), strict=True)
            continue
        try:
            results += zip(names_, run_torch_stacked(cfgs_, bundles_, folders_), strict=True)
        except StackDiverged:  # some seed diverged: let the lone runs record it exactly as they do
            results += [
                (n, _run_one(n, c, out, threads)) for n, c in zip(names_, cfgs_, strict=True)
            ]
    return results


# --------------------------------------------------------------------------- the torch stack


class StackDiverged(NnlabError):
    """A network of the stack diverged; ``run_group`` reruns the group's seeds alone."""


def _slice_state(state: dict, s: int, n_net: int) -> dict:
    """Network ``s``'s share of an optimizer state_dict (buffers of shape (S, ...); scalars kept)."""
    import torch

    def pick(v):
        return (
            v[s].clone()
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == n_net
            else v
        )

    return {
        "state": {i: {k: pick(v) for k, v in st.items()} for i, st in state["state"].items()},
        "param_groups": state["param_groups"],
    }


@dataclass
class TorchStack:
    """What ``fit_torch_stack`` leaves: per-network histories and best states, the stacked leaves."""

    models: list  # one lone nn.Module per network (its initial weights); used to write checkpoints
    params: list  # stacked leaves in model.parameters() order: W (S, out, in), b (S, out)
    optimizer: Any
    scheduler: Any
    histories: list[list[dict[str, float]]]
    best_acc: list[float]
    best_epoch: list[int]
    best_state: list[tuple]  # (weights, optimizer state, step) of each network's best evaluation
    steps: int
    seconds: float
    eval_seconds: float  # the part of ``seconds`` spent evaluating


def fit_torch_stack(cfgs: list[Config], bundles: list) -> TorchStack:
    """Train the torch MLPs of ``cfgs`` (one seed each) as one stack, as ``nnlab.train.fit`` would each.

    Step for step the same: initial weights (each seed's ``build_model``),
    batch order (``epoch_generator(seed, epoch)``), ``build_optimizer`` and
    ``build_scheduler`` (their updates are elementwise, so one optimizer over
    stacked leaves is S optimizers), loss and metrics.
    """
    import torch
    import torch.nn.functional as F

    from nnlab.data.loader import epoch_generator
    from nnlab.models import build_model
    from nnlab.models.mlp import ACTIVATIONS
    from nnlab.train import build_optimizer, build_scheduler, seed_everything, set_cpu_threads

    cfg, n_net = cfgs[0], len(cfgs)
    t = cfg.train
    models = []
    for c, b in zip(cfgs, bundles, strict=True):
        seed_everything(c.train.seed)
        models.append(build_model(c.model, b.input_shape, b.n_classes))
    set_cpu_threads(t.threads, sum(p.numel() for p in models[0].parameters()))
    params = [
        torch.stack(ps).detach().requires_grad_()
        for ps in zip(*(m.parameters() for m in models), strict=True)
    ]
    act = ACTIVATIONS[cfg.model.activation]()
    x_train = torch.stack([b.x_train.flatten(1) for b in bundles])  # (S, N, D)
    y_train = torch.stack([b.y_train for b in bundles])  # (S, N)
    x_test, y_test = (
        torch.stack([b.x_test.flatten(1) for b in bundles]),
        torch.stack([b.y_test for b in bundles]),
    )
    n, batch = x_train.shape[1], t.batch_size
    optimizer = build_optimizer(params, cfg.optim)
    scheduler, per_batch = build_scheduler(optimizer, cfg.schedule, t.epochs, math.ceil(n / batch))

    def forward(x):  # (S, B, D) -> (S, B, C)
        for i in range(0, len(params), 2):
            x = torch.baddbmm(params[i + 1].unsqueeze(1), x, params[i].transpose(1, 2))
            x = act(x) if i + 2 < len(params) else x
        return x

    def losses(logits, y, smoothing=0.0):  # each network's mean cross-entropy, (S,)
        flat = F.cross_entropy(
            logits.flatten(0, 1), y.flatten(), reduction="none", label_smoothing=smoothing
        )
        return flat.view(y.shape).mean(1)

    histories: list[list[dict]] = [[] for _ in range(n_net)]
    best_acc, best_epoch, best_state = [-1.0] * n_net, [0] * n_net, [()] * n_net
    step, start, eval_seconds = 0, time.perf_counter(), 0.0
    for epoch in range(1, t.epochs + 1):
        perm = torch.stack(
            [torch.randperm(n, generator=epoch_generator(c.train.seed, epoch)) for c in cfgs]
        )
        xe, ye = x_train.gather(1, perm.unsqueeze(-1).expand_as(x_train)), y_train.gather(1, perm)
        is_eval = epoch % t.eval_every == 0 or epoch == t.epochs
        loss_sum = correct = 0
        for lo in range(0, n, batch):
            xb, yb = xe[:, lo : lo + batch], ye[:, lo : lo + batch]
            logits = forward(xb)  # (S, B, C)
            # The sum over networks of each one's mean loss: every batch has B examples, so
            # that is the sum over all S * B examples / B (one op fewer than per-network means).
            loss = F.cross_entropy(
                logits.flatten(0, 1),
                yb.flatten(),
                reduction="sum",
                label_smoothing=t.label_smoothing,
            )
            optimizer.zero_grad(set_to_none=True)
            (loss / yb.shape[1]).backward()
            optimizer.step()
            if scheduler is not None and per_batch:
                scheduler.step()
            if is_eval:
                with torch.no_grad():
                    loss_sum = loss_sum + losses(logits, yb, t.label_smoothing) * yb.shape[1]
                    correct = correct + (logits.argmax(-1) == yb).sum(1)
        step += math.ceil(n / batch)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None and not per_batch:
            scheduler.step()
        if not is_eval:
            continue
        eval_start = time.perf_counter()
        with torch.no_grad():
            test_logits = forward(x_test)
            test_loss, test_acc = (
                losses(test_logits, y_test),
                (test_logits.argmax(-1) == y_test).float().mean(1),
            )
        elapsed = time.perf_counter() - start
        eval_seconds += elapsed - (eval_start - start)
        for s in range(n_net):
            row = {
                "epoch": epoch,
                "step": step,
                "train_loss": loss_sum[s].item() / n,
                "train_acc": correct[s].item() / n,
                "test_loss": test_loss[s].item(),
                "test_acc": test_acc[s].item(),
                "lr": lr,
                "elapsed_s": elapsed,
            }
            if not (math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])):
                raise StackDiverged(f"seed {cfgs[s].train.seed} diverged at epoch {epoch}")
            histories[s].append(row)
            if row["test_acc"] > best_acc[s]:
                best_acc[s], best_epoch[s] = row["test_acc"], epoch
                best_state[s] = (
                    [p[s].detach().clone() for p in params],
                    _slice_state(optimizer.state_dict(), s, n_net),
                    step,
                )
    return TorchStack(
        models,
        params,
        optimizer,
        scheduler,
        histories,
        best_acc,
        best_epoch,
        best_state,
        step,
        time.perf_counter() - start,
        eval_seconds,
    )


def run_torch_stacked(
    cfgs: list[Config], bundles: list, folders: list[Path]
) -> list[dict[str, Any]]:
    """``fit_torch_stack``, then one run folder per seed, as ``run_training`` writes it.

    Checkpoints (last.pt, best.pt) and metrics.csv are written once, at the
    end, not at every evaluation: ten seeds' fsyncs would cost more than training.
    """
    import torch

    from nnlab.plots import plot_curves
    from nnlab.runs import (
        METRIC_COLUMNS,
        RunDir,
        _fmt,
        atomic_write_text,
        command_line,
        git_commit,
        save_checkpoint,
        versions,
    )

    runs = [RunDir(f) for f in folders]
    for c, run in zip(cfgs, runs, strict=True):
        run.create(to_toml(c))
    started = time.time()
    fit = fit_torch_stack(cfgs, bundles)
    n_net, t = len(cfgs), cfgs[0].train
    shared = {
        "command": command_line(),
        "versions": versions(),
        "git_commit": git_commit(),
        "stacked": n_net,
    }
    summaries = []
    for s, (c, b, run, model) in enumerate(zip(cfgs, bundles, runs, fit.models, strict=True)):
        history = fit.histories[s]
        lines = [",".join(METRIC_COLUMNS)] + [
            ",".join(_fmt(r.get(k)) for k in METRIC_COLUMNS) for r in history
        ]
        atomic_write_text(run.metrics_path, "\n".join(lines) + "\n")
        last = (
            [p[s].detach() for p in fit.params],
            _slice_state(fit.optimizer.state_dict(), s, n_net),
            fit.steps,
        )
        for name, (weights, opt_state, at_step), epoch in (
            ("last.pt", last, t.epochs),
            ("best.pt", fit.best_state[s], fit.best_epoch[s]),
        ):
            with torch.no_grad():
                for p, w in zip(model.parameters(), weights, strict=True):
                    p.copy_(w)
            save_checkpoint(
                run.checkpoints / name,
                {
                    "model": model.state_dict(),
                    "optimizer": opt_state,
                    "scheduler": fit.scheduler.state_dict() if fit.scheduler is not None else None,
                    "epoch": epoch,
                    "step": at_step,
                    "best_test_acc": fit.best_acc[s],
                    "config": c.to_dict(),
                    "torch_rng": torch.get_rng_state(),
                },
            )
        summary = {
            "status": "completed",
            "final_test_acc": history[-1]["test_acc"],
            "final_test_loss": history[-1]["test_loss"],
            "best_test_acc": fit.best_acc[s],
            "best_epoch": fit.best_epoch[s],
            "final_train_acc": history[-1]["train_acc"],
            "final_train_loss": history[-1]["train_loss"],
            "epochs": t.epochs,
            "steps": fit.steps,
            "stop_reason": "completed",
            "train_seconds": round(fit.seconds / n_net, 3),
            "eval_seconds": round(fit.eval_seconds / n_net, 3),
            "compile_seconds": None,
            "seed": c.train.seed,
            "device": "cpu",
            "world_size": 1,
            "amp_bf16": False,  # stacks are float32 MLPs (stackable refuses amp on)
            "channels_last": False,
            "manual_step": False,
            "threads": torch.get_num_threads(),
            "n_params": sum(p.numel() for p in model.parameters()),
            "n_train": len(b.y_train),
            "n_test": len(b.y_test),
            "preset": c.name,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            **shared,
        }
        plot_curves(history, run.path / "curves.png", title=f"{c.name} (seed {c.train.seed})")
        run.write_summary(summary)  # last: a run is finished iff summary.json exists
        summaries.append(summary)
    return summaries

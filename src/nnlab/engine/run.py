"""Whole runs: config -> data -> model -> ``fit`` -> run folder.

- ``run_training``: one run (or, under torchrun, this rank's part of one).
- ``run_stack``: the seeds of one setting as one ``StackedMLP``, one folder per seed.
- ``train_group``: what a sweep hands the engine: runs that differ only in seed
  (and data) train as a stack where ``engine/plan.py`` allows, the rest alone;
  unfinished runs resume from their last checkpoint.

Everything that can fail on bad input (device, data, model, plan) is done
before a folder is created, so a rejected run leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import torch

from nnlab.config import Config, to_toml
from nnlab.config.user_code import check_user_code
from nnlab.data import DataBundle, load_data
from nnlab.engine import distributed
from nnlab.engine.loaders import check_batches
from nnlab.engine.loop import fit
from nnlab.engine.plan import plan_run, stack_key
from nnlab.engine.resume import load_initial_weights, load_resume_state
from nnlab.engine.setup import (
    limit_cpu_threads,
    seed_everything,
    select_device,
    set_cpu_threads,
    set_determinism,
)
from nnlab.engine.sinks import (
    RunSink,
    StackSink,
    diverged_summary,
    finish_run,
    provenance,
    shared_provenance,
    start_run,
)
from nnlab.engine.tensorboard_log import TensorBoardLog, check_available
from nnlab.errors import RunError, TrainingDiverged
from nnlab.models import build_model
from nnlab.runs import RunDir, completed_summary, read_json
from nnlab.runs.write import clear_folder, folder_lock, metric_columns, never_started

# Inputs of a whole stack above this many numbers (80 MB in float32) train alone.
MAX_STACK_ELEMENTS = 20_000_000


def run_training(
    cfg: Config,
    out: Path,
    *,
    progress: str | None = None,
    resume: dict[str, Any] | None = None,
    on_eval: Callable[[int, dict[str, float]], str | None] | None = None,
) -> dict[str, Any]:
    """Train one run into the folder ``out`` and return its summary.

    ``resume`` (from ``engine.resume.load_resume_state``) continues a run already in ``out``.
    The process holds ``out``'s lock (``runs.write.folder_lock``) for the whole run: taken
    at once when ``out`` exists, else when the folder is created (under torchrun, rank 0).
    ``on_eval``: ``fit``'s per-evaluation callback (torch backend; the NumPy loop has none).
    """
    with ExitStack() as held:
        main = distributed.is_main()  # RANK from the environment, before the group is joined
        if main and Path(out).is_dir():
            held.enter_context(folder_lock(out))  # a second writer stops here, touching nothing

        def lock() -> None:
            if main:
                held.enter_context(folder_lock(out))

        return _run_training(cfg, Path(out), progress, resume, lock, on_eval)


def _run_training(cfg: Config, out: Path, progress, resume, lock, on_eval=None) -> dict[str, Any]:
    check_available(cfg)  # train.tensorboard without the package: one line, before any write
    check_user_code(cfg.model)  # a user's file gone or changed since its sha256: one line
    # under torchrun: join the process group, take this rank's GPU
    device = distributed.setup(cfg, select_device(cfg.train.device))
    set_determinism(cfg.train.deterministic)
    seed_everything(cfg.train.seed)
    data = load_data(cfg.data, cfg.train.seed)
    if cfg.model.backend == "numpy":  # the from-scratch MLP: its own loop, the same run folder
        from nnlab.engine.numpy_run import run_numpy
        from nnlab.numpy_mlp.fit import to_arrays

        arrays = to_arrays(data)  # bad data (NaN, wrong shapes): one line before the folder exists
        if cfg.model.modules:  # the user's modules, likewise: built and checked once
            from nnlab.numpy_mlp.user_modules import check_user_modules

            check_user_modules(cfg.model, arrays.x_train.shape[1], arrays.n_classes)
        lock()
        start_over([out])
        return run_numpy([cfg], [arrays], [Path(out)], progress=progress)[0]
    seed_everything(cfg.train.seed)  # the model's initial weights depend on the seed only
    model = build_model(cfg.model, data.input_shape, data.n_classes).to(device)
    if cfg.train.init_from and resume is None:  # a resumed run has its own weights in last.pt
        load_initial_weights(model, cfg.train.init_from)
    plan = plan_run(cfg, device, data.input_shape)  # impossible combinations: one line, here
    check_batches(cfg, data, model)  # BatchNorm on a single training example: one line
    n_params = sum(p.numel() for p in model.parameters())
    if device.type == "cpu":
        set_cpu_threads(cfg.train.threads, n_params, data.input_shape)
    run = RunDir(out) if distributed.is_main() else None  # under torchrun only rank 0 writes
    if run is not None and resume is None:
        lock()
        start_over([out])
        run.create(to_toml(cfg), metric_columns(bool(cfg.data.val_fraction)))
    started = time.time()
    info = provenance(
        cfg,
        plan=plan.describe(),
        device=str(device),
        n_params=n_params,
        n_train=len(data.y_train),
        n_test=len(data.y_test),
        threads=torch.get_num_threads() if device.type == "cpu" else None,
        started=started,
        n_val=len(data.y_val) if data.y_val is not None else None,
    )
    tensorboard = _tensorboard(cfg, run, model, data, device, resume)
    try:
        sink = RunSink(run, cfg, tensorboard) if run is not None else None
        result = fit(
            cfg,
            model,
            data,
            device,
            sink,
            progress=progress,
            resume=resume,
            plan=plan,
            on_eval=on_eval,
        )
    except TrainingDiverged as exc:  # recorded; its last good checkpoint stays as it was
        if run is not None:
            run.write_summary(diverged_summary(str(exc), time.time() - started, info))
        raise
    finally:
        if tensorboard is not None:
            tensorboard.close()
    if run is None:
        summary = completed_summary(result, info)
    else:
        boundary = _boundary(data, lambda x: torch.softmax(model.eval()(x.to(device)), -1))
        summary = finish_run(run, cfg, result, info, boundary)
    distributed.finish()  # under torchrun: wait for every rank (and rank 0's files), leave the group
    return summary


def resume_training(
    out: Path, requested: Config | None = None, *, progress: str | None = None
) -> dict[str, Any]:
    """Continue the unfinished run in ``out`` from its last checkpoint (or from the start if it has none).

    ``out``'s lock is held from before anything is read until the run ends."""
    mine = distributed.is_main() and (Path(out) / "config.toml").is_file()
    with folder_lock(out) if mine else nullcontext():
        cfg, state = load_resume_state(out, requested)
        if state is None:  # killed before its first evaluation: nothing to keep
            return run_training(cfg, out, progress=progress)
        return run_training(cfg, out, progress=progress, resume=state)


def start_over(folders: list[Path]) -> None:
    """Empty run folders (held locked) for new runs: an unfinished run or one whose creation
    was cut short (``never_started``); a finished run or a foreign folder is never deleted."""
    for folder in folders:
        if (Path(folder) / "summary.json").exists():
            raise RunError(f"--out {folder}: already holds a finished run; choose another --out")
        if not (Path(folder) / "config.toml").is_file() and not never_started(folder):
            raise RunError(f"--out {folder}: folder is not empty and is not an nnlab run")
        clear_folder(folder)


def _tensorboard(cfg: Config, run: RunDir | None, model, data: DataBundle, device, resume):
    """``train.tensorboard``: event files beside metrics.csv (engine/tensorboard_log.py), or None."""
    if not cfg.train.tensorboard or run is None:
        return None
    tensorboard = TensorBoardLog(run.path, purge_after_epoch=resume["epoch"] if resume else None)
    tensorboard.log_config(cfg, to_toml(cfg))
    if resume is None:  # the graph's shape is all that matters: zeros stand in for uint8 images
        x = (
            data.x_test[:1]
            if data.x_test.is_floating_point()
            else torch.zeros(1, *data.input_shape)
        )
        tensorboard.log_graph(model, x.to(device))
    return tensorboard


def _boundary(data: DataBundle, predict, member: int | None = None):
    """``finish_run``'s boundary arguments for 2-D inputs (None otherwise)."""
    if tuple(data.input_shape) != (2,):
        return None
    pick = (lambda t: t[member]) if member is not None else (lambda t: t)

    @torch.no_grad()
    def probabilities(points):
        return predict(torch.as_tensor(points)).float().numpy()

    x_tr, y_tr, x_te, y_te = (
        pick(t).numpy() for t in (data.x_train, data.y_train, data.x_test, data.y_test)
    )
    return x_tr, y_tr, x_te, y_te, probabilities


# --------------------------------------------------------------------------- stacks of seeds


def stack_data(bundles: list[DataBundle], seeds: list[int]) -> DataBundle | None:
    """The bundles of S runs as one stack's data (``(S, N, D)`` tensors), or None when they
    cannot share a stack: only whole float tensors of equal shapes, within ``MAX_STACK_ELEMENTS``."""
    first = bundles[0]

    def signature(b: DataBundle):
        x = b.x_train
        if b.train_loader is not None or b.normalization is not None:
            return None  # images (normalised per batch) and streams go through lone fits
        if x.dtype not in (torch.float32, torch.float64):
            return None
        return (tuple(x.shape), tuple(b.x_test.shape), b.n_classes, x.dtype)

    sig = signature(first)
    if sig is None or any(signature(b) != sig for b in bundles):
        return None
    if first.x_train.numel() * len(bundles) > MAX_STACK_ELEMENTS:
        return None
    if any((b.x_val is None) != (first.x_val is None) for b in bundles):
        return None
    if first.x_val is not None and any(b.x_val.shape != first.x_val.shape for b in bundles):
        return None
    val = {}
    if first.x_val is not None:
        val = {
            "x_val": torch.stack([b.x_val.flatten(1) for b in bundles]),
            "y_val": torch.stack([b.y_val for b in bundles]),
        }
    return DataBundle(
        torch.stack([b.x_train.flatten(1) for b in bundles]),
        torch.stack([b.y_train for b in bundles]),
        torch.stack([b.x_test.flatten(1) for b in bundles]),
        torch.stack([b.y_test for b in bundles]),
        first.n_classes,
        first.input_shape,
        stack_seeds=list(seeds),
        **val,
    )


def run_stack(
    cfgs: list[Config], bundles: list[DataBundle], folders: list[Path], progress: str = "off"
) -> list[dict]:
    """Train runs that differ only in seed (and data) as one ``StackedMLP``; one folder each.

    Each member's folder is what its lone run writes (same files, same checkpoint
    schema), with ``stacked`` = S and ``train_seconds`` = its share (1/S) of the
    stack's time. A member that diverges makes the whole group train alone
    (the lone runs record it exactly as they do).
    """
    from nnlab.models.stacked import StackedMLP

    cfg, seeds = cfgs[0], [c.train.seed for c in cfgs]
    data = stack_data(bundles, seeds)
    lone = []
    for c, b in zip(cfgs, bundles, strict=True):
        seed_everything(c.train.seed)  # as run_training: each member's initial weights
        lone.append(build_model(c.model, b.input_shape, b.n_classes))
    n_params = sum(p.numel() for p in lone[0].parameters())
    set_cpu_threads(cfg.train.threads, n_params)
    model = StackedMLP(lone, cfg.model.activation)
    device = torch.device("cpu")
    plan = plan_run(cfg, device, data.input_shape, members=len(cfgs))
    with ExitStack() as held:
        for folder in folders:  # unfinished runs of an interrupted sweep start again
            held.enter_context(folder_lock(folder))
        start_over(folders)
        runs = [start_run(f, c) for f, c in zip(folders, cfgs, strict=True)]
        started, sink = time.time(), StackSink(runs, cfgs)
        try:
            result = fit(cfg, model, data, device, sink, progress=progress, plan=plan)
        except TrainingDiverged:
            start_over(folders)
            return [_train_or_resume(c, f, 0, progress) for c, f in zip(cfgs, folders, strict=True)]
        shared = shared_provenance()
        summaries = []
        for s, (c, b, run) in enumerate(zip(cfgs, bundles, runs, strict=True)):
            info = provenance(
                c,
                plan=plan.describe(),
                device="cpu",
                n_params=n_params,
                n_train=len(b.y_train),
                n_test=len(b.y_test),
                threads=torch.get_num_threads(),
                started=started,
                shared=shared,
                n_val=len(b.y_val) if b.y_val is not None else None,
            )
            boundary = _boundary(data, _member_predictor(model, s), s)
            summaries.append(finish_run(run, c, result.members[s], info, boundary))
        return summaries


def _member_predictor(model, member: int):
    """Class probabilities of one member of a stack for inputs ``(P, D)``."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x.unsqueeze(0).expand(model.members, *x.shape))[member], -1)

    return predict


def train_group(
    group: list[tuple[str, Config]], out: str, threads: int, progress: str = "off"
) -> list[tuple[str, dict]]:
    """Train a sweep's group of runs into ``out`` (see ``group_runs``); ``(name, summary)`` each.

    ``progress`` (``off``, ``lines``, ``bar``) is each run's or stack's own display."""
    if threads:
        limit_cpu_threads(threads)
    if len(group) == 1 or stack_key(group[0][1]) is None:
        return [(n, _train_or_resume(c, Path(out) / n, threads, progress)) for n, c in group]
    bundles = []
    for _, cfg in group:
        seed_everything(cfg.train.seed)  # as run_training: data, then weights, from the seed
        bundles.append(load_data(cfg.data, cfg.train.seed))
    names, cfgs = [n for n, _ in group], [c for _, c in group]
    # Members must share data shapes: split the group by them (e.g. moons vs blobs).
    shapes: dict[tuple, list[int]] = {}
    for i, b in enumerate(bundles):
        shapes.setdefault((tuple(b.x_train.shape), tuple(b.x_test.shape), b.n_classes), []).append(
            i
        )
    results = []
    for members in shapes.values():
        m_cfgs, m_bundles = [cfgs[i] for i in members], [bundles[i] for i in members]
        folders = [Path(out) / names[i] for i in members]
        if len(members) == 1 or stack_data(m_bundles, [0] * len(members)) is None:
            results += [
                (names[i], _train_or_resume(cfgs[i], Path(out) / names[i], threads, progress))
                for i in members
            ]
        elif m_cfgs[0].model.backend == "numpy":
            from nnlab.engine.numpy_run import run_numpy

            with ExitStack() as held:
                for folder in folders:
                    held.enter_context(folder_lock(folder))
                start_over(folders)
                summaries = run_numpy(m_cfgs, m_bundles, folders)
            results += zip([names[i] for i in members], summaries, strict=True)
        else:
            results += zip(
                [names[i] for i in members],
                run_stack(m_cfgs, m_bundles, folders, progress),
                strict=True,
            )
    return results


def group_runs(todo: list[tuple[str, Config]]) -> list[list[tuple[str, Config]]]:
    """Runs whose ``stack_key`` is equal form a group, in plan order; the others run alone."""
    groups: dict[str, list[tuple[str, Config]]] = {}
    for name, cfg in todo:
        groups.setdefault(stack_key(cfg) or f"alone:{name}", []).append((name, cfg))
    return list(groups.values())


def _train_or_resume(
    cfg: Config, folder: Path, threads: int, progress: str = "off"
) -> dict[str, Any]:
    """One run of a sweep: resumed when it has a checkpoint, restarted when it has none."""
    if threads:
        limit_cpu_threads(threads)
    try:
        with folder_lock(folder) if folder.is_dir() else nullcontext():
            if (folder / "checkpoints" / "last.pt").exists():  # interrupted: go on from there
                return resume_training(folder, cfg, progress=progress)
            # interrupted before its first checkpoint: run_training starts it again
            return run_training(cfg, folder, progress=progress)
    except TrainingDiverged:
        return read_json(folder / "summary.json")  # recorded as diverged; the sweep goes on

"""The Python API: the engine the CLI drives, for notebooks and scripts.

::

    import nnlab

    cfg = nnlab.load_config("moons", optim={"lr": 3e-3})      # or {"optim.lr": 3e-3}
    run = nnlab.train(cfg, seed=1, out="runs/mine")           # -> Run
    run.summary["final_test_acc"], run.metrics, run.model, run.plot_curves()
    seeds = nnlab.train("moons", seeds=5)                     # -> Sweep (one run per seed)
    grid = nnlab.sweep("moons", {"optim.lr": [1e-3, 1e-2]}, seeds=3)
    grid.summary                                              # mean, std, n per grid point
    nnlab.open_run("runs/mine")                               # a Run (or a Sweep) from disk

Everything here is a thin, typed layer over the engine (``nnlab.config``,
``nnlab.engine``, ``nnlab.experiments``, and ``nnlab.runs`` to read run folders): the same configs, run folders
and checks as ``nnlab train`` / ``nnlab sweep``. Bad input raises
``nnlab.ConfigError`` (a ``ValueError``) or ``nnlab.RunError`` with the same
one-line message the CLI prints. torch, matplotlib and scikit-learn are
imported only when a function needs them, so ``import nnlab`` stays fast.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnlab.config import SECTIONS, Config, parse_set_args, typed_override
from nnlab.config import load_config as _load_config
from nnlab.config.ranges import grid_seeds, seed_list
from nnlab.errors import ConfigError, RunError
from nnlab.results import Run, Sweep

if TYPE_CHECKING:
    from nnlab.experiments.tune_result import TuneResult

Overrides = Mapping[str, Any] | Sequence[str] | None


# --------------------------------------------------------------------------- configs


def load_config(
    source: str | Path | Config, overrides: Overrides = None, /, **sections: Mapping[str, Any]
) -> Config:
    """A validated config from a preset name, a TOML file or a Config, plus overrides.

    Overrides come as dotted keys (``{"optim.lr": 1e-3}``), as ``--set`` strings
    (``["optim.lr=1e-3"]``) or as keyword sections (``optim={"lr": 1e-3}``);
    later ones win. Unknown keys and bad values raise ``ConfigError``.
    """
    flat = _flatten(overrides, sections)
    if isinstance(source, Config):
        return source.replace(flat) if flat else source
    return _load_config(source, flat)


def _flatten(overrides: Overrides, sections: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted-key overrides from a mapping, ``key=value`` strings and keyword sections."""
    if overrides is None:
        flat: dict[str, Any] = {}
    elif isinstance(overrides, Mapping):
        flat = dict(overrides)
    elif isinstance(overrides, Sequence) and not isinstance(overrides, str):
        flat = dict(parse_set_args(list(overrides)))
    else:
        raise ConfigError(
            f"overrides: expected a dict like {{'optim.lr': 1e-3}} or a list of 'key=value', got {overrides!r}"
        )
    for section, values in sections.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section '{section}'; sections are {', '.join(SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{section}: expected a dict of keys, like {section}={{...}}, got {values!r}"
            )
        flat.update({f"{section}.{key}": value for key, value in values.items()})
    return flat


def default_out(name: str, kind: str = "") -> Path:
    """``runs/<name><kind>-<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``... if that folder exists."""
    base = Path("runs") / f"{name}{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def _check_runnable(cfg: Config, seeds: int | None = None, *, here: bool = True) -> None:
    """Everything that can reject a run before a file is written: torchrun launch, device, tensorboard.

    ``here`` False: the runs train elsewhere (Ray workers), so this machine need not have
    the device."""
    from nnlab.config.limits import check_fits
    from nnlab.config.user_code import check_user_code
    from nnlab.engine import distributed
    from nnlab.engine.setup import select_device
    from nnlab.engine.tensorboard_log import check_available

    distributed.check_launch(cfg, seeds=seeds)
    check_user_code(cfg.model)  # a user's model file gone or changed since its sha256
    if here:
        select_device(cfg.train.device)
        check_fits(cfg)  # tensors that cannot fit in this machine's memory (config.limits)
    check_available(cfg)


# --------------------------------------------------------------------------- training


def train(
    config: str | Path | Config,
    overrides: Overrides = None,
    /,
    *,
    seed: int | None = None,
    seeds: int | Sequence[int] | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    jobs: int = 1,
    progress: str | None = None,
    rerun: bool = False,
    max_runs: int | None = None,
    backend: str = "local",
    address: str | None = None,
    **sections: Mapping[str, Any],
) -> Run | Sweep:
    """Train a preset, TOML file or Config; returns a ``Run``, or a ``Sweep`` with ``seeds``.

    ``seed`` sets ``train.seed``; ``seeds=N`` trains seeds seed..seed+N-1 (or give
    a list) like ``nnlab train --seeds N``, into one folder with ``results.csv``,
    through ``sweep``'s code: ``rerun`` as there. ``out`` defaults to
    ``runs/<name>-<time>`` (``runs/<name>-seeds-<time>`` with ``seeds``). ``device``
    is auto, cpu, cuda, cuda:N or mps. ``progress`` is ``bar``, ``lines``, ``off`` or
    None (a bar on a terminal, else a line per tenth of training). Overrides as in
    ``load_config``. ``max_runs``, ``backend`` and ``address`` (the seeds as Ray tasks)
    as in ``sweep``.
    """
    cfg = load_config(config, overrides, **sections)
    extra = {"train.seed": seed} if seed is not None else {}
    if device is not None:
        extra["train.device"] = device
    cfg = cfg.replace(extra) if extra else cfg
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs: must be an integer >= 1, got {jobs!r}")
    if seeds is None:
        if rerun or backend != "local" or address is not None:
            raise ConfigError(
                f"{'rerun' if rerun else 'backend'}: applies to several seeds (seeds=N); one run"
                " trains here, into a new out"
            )
        _check_runnable(cfg)
        from nnlab.engine.run import run_training
        from nnlab.runs import prepare_out_dir

        folder = prepare_out_dir(Path(out) if out is not None else default_out(cfg.name))
        return Run(folder, _summary=run_training(cfg, folder, progress=progress))
    seeds_run = seed_list(seeds, cfg.train.seed)
    how = dict(jobs=jobs, rerun=rerun, progress=progress, backend=backend, address=address)
    return _sweep_into(cfg, {}, seeds_run, out, f"{cfg.name}-seeds", max_runs=max_runs, **how)


def _sweep_into(
    cfg: Config,
    points: dict[str, Any],
    seeds: list[int],
    out: str | Path | None,
    default: str,
    **how: Any,
) -> Sweep:
    """``train --seeds`` and ``sweep``: check, then train ``points`` x ``seeds`` into ``out``
    (default ``runs/<default>-<time>``) on ``how["backend"]``."""
    from nnlab.experiments.dispatch import check_backend
    from nnlab.experiments.sweep import run_sweep

    check_backend(how["backend"], how["address"], how["jobs"], cfg)
    here = how["backend"] == "local" or how["address"] is None
    _check_runnable(cfg, seeds=len(seeds), here=here)
    folder = Path(out) if out is not None else default_out(default)
    # several runs: a line each as they finish, unless each run's progress is asked for
    how["progress"] = how["progress"] or "off"
    run_sweep(cfg, points, seeds, folder, announce=out is None, **how)
    return Sweep(folder)


def sweep(
    config: str | Path | Config,
    grid: Mapping[str, Sequence[Any] | str] | None = None,
    overrides: Overrides = None,
    /,
    *,
    seeds: int | Sequence[int] = 1,
    out: str | Path | None = None,
    device: str | None = None,
    jobs: int = 1,
    rerun: bool = False,
    progress: str | None = None,
    backend: str = "local",
    address: str | None = None,
    max_runs: int | None = None,
    **sections: Mapping[str, Any],
) -> Sweep:
    """Train every point of ``grid`` x ``seeds``, like ``nnlab sweep``; returns the ``Sweep``.

    ``grid`` maps dotted keys to values: ``{"optim.lr": [1e-3, 1e-2]}``, or the
    CLI's strings ``{"data.length": "3..11"}``; it extends the preset's own
    ``[sweep]`` table. ``out`` defaults to a new ``runs/sweep-<name>-<time>``.
    Rerunning into the same ``out`` skips the finished runs whose saved config is
    this one and resumes the unfinished ones; a run folder trained with another
    config raises ``RunError`` naming it and what differs, unless ``rerun=True``,
    which deletes and retrains such runs. ``results.csv`` lists every finished run
    in the folder. ``jobs`` worker processes share the CPU. ``progress`` (``lines``,
    ``bar``) shows each run's progress too; by default a line per finished run.
    ``backend="ray"`` trains each run (or stack of seeds) as a Ray task: on an embedded
    Ray, or on the cluster at ``address`` (``"auto"`` or ``"HOST:PORT"``; ``out`` must then
    be on a file system every node shares; see docs/scale-out.md). A sweep of more than
    ``max_runs`` runs (default 10,000, ``experiments.sweep_size.MAX_RUNS``) is refused
    before anything is expanded or written.
    """
    from nnlab.experiments.sweep import parse_grid_arg

    cfg = load_config(config, overrides, **sections)
    if device is not None:
        cfg = cfg.replace({"train.device": device})
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs: must be an integer >= 1, got {jobs!r}")
    points = dict(cfg.sweep)
    for key, values in (grid or {}).items():
        if isinstance(values, str):
            key, values = parse_grid_arg(f"{key}={values}", cfg)
        else:
            cfg.get(key)  # an unknown key is a ConfigError naming it
            values = values if isinstance(values, range) else list(values)  # a range: counted
            if not values:
                raise ConfigError(f"grid '{key}': needs at least one value")
        points[key] = values
    seeds_run = seed_list(seeds, cfg.train.seed)
    if "train.seed" in points:  # a grid of seeds is the seed list, not a key the loop overrides
        if seeds != 1:
            raise ConfigError(
                "grid 'train.seed' and seeds both name the seeds: give one of them"
                " (--grid train.seed=0,5,9 or --seeds N)"
            )
        values = points.pop("train.seed")  # strings from the CLI, or a range (kept a range)
        seeds_run = grid_seeds(
            values
            if isinstance(values, range)
            else [typed_override("train.seed", v) for v in values]
        )
    how = dict(jobs=jobs, rerun=rerun, progress=progress, backend=backend, address=address)
    return _sweep_into(cfg, points, seeds_run, out, f"sweep-{cfg.name}", max_runs=max_runs, **how)


def tune(
    config: str | Path | Config,
    overrides: Overrides = None,
    /,
    *,
    params: Mapping[str, Any] | Sequence[str] | None = None,
    trials: int | None = None,
    metric: str | None = None,
    direction: str | None = None,
    pruner: str | None = None,
    jobs: int = 1,
    storage: str | None = None,
    study: str | None = None,
    out: str | Path | None = None,
    timeout: float | None = None,
    device: str | None = None,
    backend: str = "local",
    address: str | None = None,
    **sections: Mapping[str, Any],
) -> TuneResult:
    """Search hyperparameters with Optuna, like ``nnlab tune``; returns a ``TuneResult``
    (best trial, its params and validation score, its test accuracy read once at the end).

    ``params`` maps dotted keys to specs (``{"optim.lr": "loguniform(1e-4, 1e-1)",
    "model.activation": ["relu", "tanh"]}``) or is a list of ``"KEY=SPEC"``; it extends the
    config's ``[tune.params]``, as ``trials``, ``metric``, ``direction`` and ``pruner`` override
    its ``[tune]`` table (docs/tune.md). Trials score on ``data.val_fraction`` of the training
    set (0.2 unless the config has one; an explicit 0 is refused). ``out`` defaults to
    ``runs/tune-<name>``; calling again with the same ``out`` continues the study up to
    ``trials``. ``storage`` is an Optuna RDB URL shared by several processes or machines
    (default ``sqlite:///OUT/study.db``); ``jobs`` worker processes share the CPU.
    ``backend="ray"`` runs the ``jobs`` workers as Ray tasks: on an embedded Ray, or on the
    cluster at ``address`` (then ``out`` on a shared file system and ``storage`` an RDB
    server every node reaches; docs/scale-out.md).
    """
    from nnlab.experiments.dispatch import check_backend
    from nnlab.experiments.tune import run_tune, search_settings

    flat = _flatten(overrides, sections)
    cfg = load_config(config, {**flat, **({"train.device": device} if device else {})})
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs: must be an integer >= 1, got {jobs!r}")
    flags = {"trials": trials, "metric": metric, "direction": direction, "pruner": pruner}
    settings = search_settings(cfg, params, **flags)
    check_backend(backend, address, cfg=cfg)  # --jobs: the number of Ray workers too
    _check_runnable(cfg, here=backend == "local" or address is None)
    folder = Path(out) if out is not None else Path("runs") / f"tune-{cfg.name}"
    workers = None
    if backend == "ray":
        from functools import partial

        from nnlab.experiments.ray_backend import run_ray_tune

        workers = partial(run_ray_tune, address=address)
    return run_tune(
        cfg,
        settings,
        folder,
        jobs=jobs,
        storage=storage,
        study=study,
        timeout=timeout,
        val_fraction_given="data.val_fraction" in flat,
        backend=workers,
    )


def resume(path: str | Path, *, device: str | None = None, progress: str | None = None) -> Run:
    """Continue the unfinished run in ``path`` from its last checkpoint (``nnlab resume``)."""
    from nnlab.engine.resume import load_resume_state
    from nnlab.engine.run import resume_training

    requested = None
    if device is not None:
        saved, _ = load_resume_state(Path(path))
        requested = saved.replace({"train.device": device})
    resume_training(Path(path), requested, progress=progress)
    return Run(path)


def open_run(path: str | Path) -> Run | Sweep | TuneResult:
    """The run folder (``config.toml``), sweep folder (``results.csv``) or tune folder
    (``tune.json`` and ``trials.csv``: the ``TuneResult`` ``nnlab.tune`` returned) at ``path``."""
    from nnlab.runs.tune_folder import is_tune_folder

    folder = Path(path)
    if (folder / "config.toml").is_file():
        return Run(folder)
    if (folder / "results.csv").is_file():
        return Sweep(folder)
    if is_tune_folder(folder):
        from nnlab.experiments.tune_result import TuneResult

        return TuneResult.from_folder(folder)
    raise RunError(
        f"{folder}: not an nnlab run folder (no config.toml), sweep folder (no results.csv)"
        " or tune folder (no tune.json)"
    )


def report(*dirs: str | Path, out: str | Path | None = None, note: str = "") -> Path:
    """Write ``report.md`` and a self-contained ``report.html`` for run and sweep folders, like
    ``nnlab report DIR... --out OUT``; returns the path of ``report.html``.

    ``out`` defaults to ``runs/report-<time>``; ``note`` is a line printed at the top.
    Half-finished runs are skipped with a notice on stderr (``nnlab.reporting.report.write_report``).
    """
    from nnlab.reporting.report import print_notices, write_report

    if not dirs:
        raise RunError("report: give one or more run or sweep folders")
    folder = Path(out) if out is not None else default_out("report")
    result = write_report([Path(d) for d in dirs], folder, note=note)
    print_notices(result["notices"])
    return result["html"]


def check(
    *files: str | Path,
    input_shape: Sequence[int] = (2,),
    n_classes: int = 2,
    kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int = 500,
) -> list[dict[str, Any]]:
    """``nnlab check FILE.py[:Class] ...``: one dict per check (file, module, check, status,
    value, detail); NumPy modules get gradient checks, a torch model (built with ``kwargs``,
    ``input_shape``, ``n_classes``) shape, gradients and overfitting (docs/user-models.md)."""
    from nnlab.experiments.checks import check_files

    options = {"input_shape": tuple(input_shape), "n_classes": n_classes, "seed": seed}
    rows = check_files([str(f) for f in files], kwargs=dict(kwargs or {}), steps=steps, **options)
    return [r.to_dict() for r in rows]


# --------------------------------------------------------------------------- results

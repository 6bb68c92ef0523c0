"""The commands behind ``nnlab train|resume|sweep|report|reproduce|presets|keys``.

Each ``cmd_*`` takes the parsed arguments (``cli.build_parser``), turns them into
configs and calls the API, the experiments or the reporting, prints what a user
needs and returns the exit code. Heavy modules (torch, the engine) are imported
inside the commands, so ``nnlab --help`` and a config error stay fast.
"""

from __future__ import annotations

import os
from pathlib import Path

from nnlab.errors import NnlabError


class UsageError(NnlabError):
    """Bad command-line usage (unknown flag, missing argument)."""


def _config_from_args(args, extra: dict | None = None):
    from nnlab.config import load_config, parse_set_args

    overrides = parse_set_args(args.set or [])
    if getattr(args, "seed", None) is not None:
        overrides["train.seed"] = str(args.seed)
    if getattr(args, "device", None) is not None:
        overrides["train.device"] = args.device
    overrides.update(extra or {})
    return load_config(args.config, overrides)


def add_backend_args(parser, what: str = "") -> None:
    """``--backend local|ray`` and ``--address``: where the runs of a sweep (or study) train."""
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help=f"{what + ': ' if what else ''}local: this process or --jobs worker processes "
        "(default); ray: Ray tasks (a sweep: one per run; tune: --jobs workers), on an "
        "embedded Ray or on the cluster at --address (pip install 'nnlab[ray]'; "
        "docs/scale-out.md)",
    )
    parser.add_argument(
        "--address",
        metavar="HOST:PORT|auto",
        help="with --backend ray: join this running Ray cluster (auto: the one started on "
        "this machine); --out must be on a file system every node shares",
    )


def _default_out(name: str, kind: str = "") -> Path:
    from nnlab.api import default_out

    return default_out(name, kind)  # runs/<name><kind>-<time>, as the Python API names them


def cmd_presets(args) -> int:
    """``nnlab presets``: one line per preset; ``nnlab presets NAME``: its resolved config, explained."""
    from nnlab.config import load_config, preset_description, preset_names

    if args.name:
        from nnlab.config.help import format_config

        cfg = load_config(args.name)
        print(
            f"# {cfg.name}, resolved: the defaults, then the preset ([default: ...] marks what it "
            "changes); `nnlab keys` lists every key"
        )
        print(format_config(cfg), end="")
        return 0
    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {preset_description(name)}")
    return 0


def cmd_keys(args) -> int:
    """``nnlab keys [--markdown]``: every config key with its type, default and meaning."""
    from nnlab.config.help import format_keys

    print(format_keys(markdown=args.markdown), end="")
    return 0


def _progress(args) -> str | None:
    return None if args.progress == "auto" else args.progress


def _print_run(summary: dict, out: Path) -> None:
    from nnlab.engine import distributed

    if not distributed.is_main():  # under torchrun, rank 0 reports for the job
        return
    print(
        f"{summary['preset']} seed {summary['seed']}: final_test_acc {summary['final_test_acc']:.4f}  "
        f"best_test_acc {summary['best_test_acc']:.4f}  ({summary['epochs']} epochs, "
        f"{summary['train_seconds']:.1f} s on {summary['device']})"
    )
    print(f"run folder: {out}")


def cmd_resume(args) -> int:
    from nnlab.engine.resume import load_resume_state
    from nnlab.engine.run import resume_training

    requested = None
    if args.device is not None:  # the same config, on another device
        saved, _ = load_resume_state(Path(args.run))
        requested = saved.replace({"train.device": args.device})
    _print_run(resume_training(Path(args.run), requested, progress=_progress(args)), Path(args.run))
    return 0


def cmd_train(args) -> int:
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    if args.rerun and args.seeds is None:
        raise UsageError(
            "--rerun applies to --seeds N (a sweep folder); one run goes to a new --out"
        )
    if (args.backend != "local" or args.address) and args.seeds is None:
        raise UsageError(
            "--backend and --address apply to --seeds N (the seeds as Ray tasks); one run "
            "trains in this process (several GPUs: torchrun, docs/distributed.md)"
        )
    if args.resume:
        if args.seeds is not None or args.out:
            raise UsageError("--resume RUN continues that run folder; it takes no --seeds or --out")
        from nnlab.engine.run import resume_training

        requested = _config_from_args(args) if args.config else None
        _print_run(
            resume_training(Path(args.resume), requested, progress=_progress(args)),
            Path(args.resume),
        )
        return 0
    if not args.config:
        raise UsageError("train needs a PRESET or FILE.toml (or --resume RUN)")
    cfg = _config_from_args(args)
    from nnlab import api

    # api.train rejects an unusable device, an impossible torchrun launch or a missing
    # tensorboard before anything is written; the CLI only prints what it returns.
    result = api.train(
        cfg,
        seeds=args.seeds,
        out=args.out,
        jobs=args.jobs,
        progress=_progress(args),
        rerun=args.rerun,
        max_runs=args.max_runs,
        backend=args.backend,
        address=args.address,
    )
    if isinstance(result, api.Run):
        _print_run(result.summary, result.path)
        return 0
    print(f"{cfg.name}, seeds {cfg.train.seed}..{cfg.train.seed + args.seeds - 1}:")
    print(result.format_summary())
    print(f"sweep folder: {result.path} (results.csv)")
    return 0


def cmd_sweep(args) -> int:
    from nnlab import api
    from nnlab.experiments.sweep import parse_grid_arg

    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError(
            "nnlab sweep: not available under torchrun; use --jobs J, or torchrun 'nnlab train' per run"
        )
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    cfg = _config_from_args(args)
    grid = dict(parse_grid_arg(item, cfg) for item in args.grid or [])
    # The preset's own [sweep] table is the base grid; --grid adds keys or replaces their values.
    result = api.sweep(
        cfg,
        grid,
        seeds=args.seeds,
        out=args.out,
        jobs=args.jobs,
        rerun=args.rerun,
        progress=_progress(args),
        backend=args.backend,
        address=args.address,
        max_runs=args.max_runs,
    )
    print(result.format_summary())
    print(f"sweep folder: {result.path} (results.csv)")
    return 0


def cmd_report(args) -> int:
    """``nnlab report DIR... [--out DIR]``: report.md and report.html from run and sweep folders."""
    from nnlab.reporting.report import format_table, print_notices, write_report

    out = Path(args.out) if args.out else _default_out("report")
    result = write_report([Path(d) for d in args.dirs], out, note=args.note or "")
    print_notices(result["notices"])  # half-finished runs, skipped: one line each
    _, head, rows = result["summary"]
    print(format_table(head, rows))
    print(f"report: {result['html']} (and {result['markdown'].name})")
    return 0


def cmd_reproduce(args) -> int:
    """``nnlab reproduce [--quick|--full] [--cifar10 PATH] [--out DIR]``: run everything, then report."""
    from nnlab.experiments.reproduce import run_reproduce
    from nnlab.reporting.report import format_table, print_notices

    if args.jobs < 0:
        raise UsageError(f"--jobs must be >= 0 (0: one per core), got {args.jobs}")
    out = Path(args.out) if args.out else Path("runs") / f"reproduce-{args.scale}"
    result = run_reproduce(
        args.scale,
        out,
        cifar10=args.cifar10,
        jobs=args.jobs,
        download_cifar10=args.download_cifar10,
    )
    print_notices(result["notices"])
    _, head, rows = result["summary"]
    print(format_table(head, rows))
    times = ", ".join(f"{t['step']} {t['wall_s']:.0f} s" for t in result["timings"])
    print(f"wall time: {result['wall_s']:.0f} s ({times})")
    print(f"report: {result['html'].resolve()}")
    return 0

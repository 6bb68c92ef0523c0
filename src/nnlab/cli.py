"""The ``nnlab`` command line: argv -> configs -> the engine; errors as one line.

Exit codes (the contract): 0 success; 2 bad usage, config or input (one line on
stderr, no traceback); 1 anything else; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nnlab import __version__
from nnlab.errors import NnlabError


class UsageError(NnlabError):
    """Bad command-line usage (unknown flag, missing argument)."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; the contract wants one line and exit code 2.
    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _config_from_args(args, extra: dict | None = None):
    from nnlab.config import load_config, parse_set_args

    overrides = parse_set_args(args.set or [])
    if getattr(args, "seed", None) is not None:
        overrides["train.seed"] = str(args.seed)
    if getattr(args, "device", None) is not None:
        overrides["train.device"] = args.device
    overrides.update(extra or {})
    return load_config(args.config, overrides)


def _default_out(name: str, kind: str = "") -> Path:
    from nnlab.api import default_out

    return default_out(name, kind)  # runs/<name><kind>-<time>, as the Python API names them


# --------------------------------------------------------------------------- commands


def cmd_presets(args) -> int:
    from nnlab.config import preset_description, preset_names

    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {preset_description(name)}")
    return 0


def _progress(args) -> str | None:
    return None if args.progress == "auto" else args.progress


def _print_run(summary: dict, out: Path) -> None:
    from nnlab import distributed

    if not distributed.is_main():  # under torchrun, rank 0 reports for the job
        return
    print(
        f"{summary['preset']} seed {summary['seed']}: final_test_acc {summary['final_test_acc']:.4f}  "
        f"best_test_acc {summary['best_test_acc']:.4f}  ({summary['epochs']} epochs, "
        f"{summary['train_seconds']:.1f} s on {summary['device']})"
    )
    print(f"run folder: {out}")


def cmd_resume(args) -> int:
    from nnlab.train import load_resume_state, resume_training

    requested = None
    if args.device is not None:  # the same config, on another device
        saved, _ = load_resume_state(Path(args.run))
        requested = saved.replace({"train.device": args.device})
    _print_run(resume_training(Path(args.run), requested, progress=_progress(args)), Path(args.run))
    return 0


def cmd_train(args) -> int:
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if args.resume:
        if args.seeds is not None or args.out:
            raise UsageError("--resume RUN continues that run folder; it takes no --seeds or --out")
        from nnlab.train import resume_training

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
        cfg, seeds=args.seeds, out=args.out, jobs=args.jobs, progress=_progress(args)
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
    from nnlab.sweep import parse_grid_arg

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
    result = api.sweep(cfg, grid, seeds=args.seeds, out=args.out, jobs=args.jobs)
    print(result.format_summary())
    print(f"sweep folder: {result.path} (results.csv)")
    return 0


def cmd_report(args) -> int:
    """``nnlab report DIR... [--out DIR]``: report.md and report.html from run and sweep folders."""
    from nnlab.report import format_table, print_notices, write_report

    out = Path(args.out) if args.out else _default_out("report")
    result = write_report([Path(d) for d in args.dirs], out, note=args.note or "")
    print_notices(result["notices"])  # half-finished runs, skipped: one line each
    _, head, rows = result["summary"]
    print(format_table(head, rows))
    print(f"report: {result['html']} (and {result['markdown'].name})")
    return 0


def cmd_reproduce(args) -> int:
    """``nnlab reproduce [--quick|--full] [--cifar10 PATH] [--out DIR]``: run everything, then report."""
    from nnlab.report import format_table, print_notices
    from nnlab.reproduce import run_reproduce

    if args.jobs < 0:
        raise UsageError(f"--jobs must be >= 0 (0: one per core), got {args.jobs}")
    out = Path(args.out) if args.out else Path("runs") / f"reproduce-{args.scale}"
    result = run_reproduce(args.scale, out, cifar10=args.cifar10, jobs=args.jobs)
    print_notices(result["notices"])
    _, head, rows = result["summary"]
    print(format_table(head, rows))
    times = ", ".join(f"{t['step']} {t['wall_s']:.0f} s" for t in result["timings"])
    print(f"wall time: {result['wall_s']:.0f} s ({times})")
    print(f"report: {result['html'].resolve()}")
    return 0


def cmd_data(args) -> int:
    """``nnlab data cifar10 [--archive PATH | --download] [--dir DIR]`` and ``nnlab data info``."""
    from nnlab.data import cifar10
    from nnlab.errors import DataError

    root = cifar10.data_root(args.dir)
    if args.dataset == "info":
        if args.archive or args.download:
            raise UsageError("nnlab data info takes no --archive or --download")
        lines = cifar10.cache_lines(root)
        print(f"data folder: {root}")
        print("\n".join(lines) if lines else f"nothing cached; {cifar10.missing_message(root)}")
        return 0
    if args.archive and args.download:
        raise UsageError("give --archive PATH or --download, not both")
    if args.archive:
        meta = cifar10.import_cifar10(args.archive, root)
    elif args.download:
        from nnlab.data.download import download

        archive = download(
            args.url,
            root / "downloads" / "cifar-10-python.tar.gz",
            args.md5,
            progress=args.progress,
        )
        meta = cifar10.import_cifar10(archive, root)
        archive.unlink()  # the decoded cache is all later runs need
    else:
        lines = [line for line in cifar10.cache_lines(root) if line.startswith("cifar10:")]
        if not lines:
            raise DataError(cifar10.missing_message(root))
        print(f"already imported: {lines[0]}")
        return 0
    print(
        f"imported CIFAR-10: {meta['n_train']} train + {meta['n_test']} test images into {root / cifar10.CACHE_NAME}"
    )
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nnlab", description="Train, compare and report classic neural-network baselines."
    )
    p.add_argument("--version", action="version", version=f"nnlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("presets", help="list the built-in presets")
    s.set_defaults(func=cmd_presets)

    def add_config_args(s, seeds_default, optional=False):
        s.add_argument(
            "config",
            metavar="PRESET|FILE.toml",
            nargs="?" if optional else None,
            help="a built-in preset name or a TOML file",
        )
        s.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override a config key, e.g. optim.lr=1e-3 (repeatable)",
        )
        s.add_argument("--seed", type=int, help="train.seed (the first seed with --seeds)")
        s.add_argument(
            "--seeds",
            type=int,
            default=seeds_default,
            help="run N seeds, from --seed on, and report mean +- std",
        )
        s.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="train.device")
        s.add_argument(
            "--jobs", type=int, default=1, help="worker processes for several runs (default 1)"
        )
        s.add_argument("--out", metavar="DIR", help="output folder")

    progress_help = "progress display: a bar, a line per tenth of training, or nothing (auto: a bar on a terminal)"
    s = sub.add_parser("train", help="train one run (or one per seed with --seeds)")
    add_config_args(s, None, optional=True)
    s.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the unfinished run folder RUN from its last checkpoint",
    )
    s.add_argument(
        "--progress",
        choices=["auto", "bar", "lines", "off"],
        default="auto",
        help=progress_help,
    )
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("resume", help="continue an unfinished run from its last checkpoint")
    s.add_argument("run", metavar="RUN", help="the run folder")
    s.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        help="train on another device than before",
    )
    s.add_argument(
        "--progress", choices=["auto", "bar", "lines", "off"], default="auto", help=progress_help
    )
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser("sweep", help="run a grid of settings x seeds; reruns skip finished runs")
    add_config_args(s, 1)
    s.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2|KEY=A..B",
        help="values to sweep (repeatable: a product)",
    )
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser(
        "data", help="import or download CIFAR-10 into the data folder; 'info' lists what is cached"
    )
    s.add_argument(
        "dataset",
        choices=["cifar10", "info"],
        help="cifar10: import/fetch it; info: show the cache",
    )
    s.add_argument(
        "--archive",
        metavar="PATH",
        help="cifar-10-python.tar.gz or an extracted cifar-10-batches-py/ folder",
    )
    s.add_argument(
        "--download",
        action="store_true",
        help="fetch the official archive (md5-checked, resumable)",
    )
    s.add_argument(
        "--dir", metavar="DIR", help="data folder (default $NNLAB_DATA or ~/.cache/nnlab)"
    )
    s.add_argument(
        "--url",
        default="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        help="download from a mirror",
    )
    s.add_argument(
        "--md5",
        default="c58f30108f718f92721af3b95e74349a",
        help="expected md5 of the archive at --url",
    )
    s.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="download progress bar",
    )
    s.set_defaults(func=cmd_data)

    s = sub.add_parser(
        "report", help="write report.md and a self-contained report.html from run and sweep folders"
    )
    s.add_argument(
        "dirs", nargs="+", metavar="DIR", help="run folders, sweep folders, or folders holding them"
    )
    s.add_argument("--out", metavar="DIR", help="output folder (default runs/report-<time>)")
    s.add_argument(
        "--note", help="a paragraph to put under the title (e.g. the scale the runs used)"
    )
    s.set_defaults(func=cmd_report)

    s = sub.add_parser(
        "reproduce",
        help="run every experiment of the course report and ours, then write the report",
    )
    scale = s.add_mutually_exclusive_group()
    scale.add_argument(
        "--quick",
        dest="scale",
        action="store_const",
        const="quick",
        help="<= 10 minutes on 2 CPU cores (default)",
    )
    scale.add_argument(
        "--full",
        dest="scale",
        action="store_const",
        const="full",
        help="every experiment at full size (GPU advised)",
    )
    # tests
    scale.add_argument(
        "--smoke", dest="scale", action="store_const", const="smoke", help=argparse.SUPPRESS
    )
    s.set_defaults(scale="quick")
    s.add_argument(
        "--cifar10",
        metavar="PATH",
        help="CIFAR-10 to import first: the official archive/folder, or an ImageFolder tree/.tar.gz",
    )
    s.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default runs/reproduce-<scale>; a rerun resumes it)",
    )
    s.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="worker processes per sweep (default 0: one per core, at most 2)",
    )
    s.set_defaults(func=cmd_reproduce)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except NnlabError as exc:
        message = " ".join(str(exc).split())  # one line, always
        from nnlab.distributed import announce_error

        # under torchrun: once per node, not once per process
        announce_error(f"nnlab: error: {message}")
        return exc.exit_code
    except KeyboardInterrupt:
        print("nnlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # torch.cuda.OutOfMemoryError, without importing torch here
        if type(exc).__name__ != "OutOfMemoryError":
            raise
        # Files written so far are intact (atomic writes); the fix is a smaller batch or model.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
        print(
            f"nnlab: error: CUDA out of memory ({first[:160]}); lower train.batch_size or the model size",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``nnlab`` command line: argv -> configs -> the engine; errors as one line.

Exit codes (the contract): 0 success; 2 bad usage, config or input (one line on
stderr, no traceback); 1 anything else; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
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
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{name}{kind}-{stamp}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


# --------------------------------------------------------------------------- commands


def cmd_presets(args) -> int:
    from nnlab.config import preset_description, preset_names

    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {preset_description(name)}")
    return 0


def cmd_train(args) -> int:
    from nnlab.runs import prepare_out_dir

    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    cfg = _config_from_args(args)
    # Fail on an unusable device before anything is written.
    from nnlab.train import select_device

    select_device(cfg.train.device)
    if args.seeds is None:
        out = prepare_out_dir(Path(args.out) if args.out else _default_out(cfg.name))
        from nnlab.train import run_training

        summary = run_training(cfg, out, progress=args.progress)
        print(
            f"{cfg.name} seed {summary['seed']}: final_test_acc {summary['final_test_acc']:.4f}  "
            f"best_test_acc {summary['best_test_acc']:.4f}  ({summary['epochs']} epochs, "
            f"{summary['train_seconds']:.1f} s on {summary['device']})"
        )
        print(f"run folder: {out}")
        return 0
    from nnlab.sweep import format_summary, run_sweep, summarize

    out = Path(args.out) if args.out else _default_out(cfg.name, "-seeds")
    seeds = list(range(cfg.train.seed, cfg.train.seed + args.seeds))
    rows = run_sweep(cfg, {}, seeds, out, jobs=args.jobs, progress=False)
    print(f"{cfg.name}, seeds {seeds[0]}..{seeds[-1]}:")
    print(format_summary(summarize(rows, []), []))
    print(f"sweep folder: {out} (results.csv)")
    return 0


def cmd_sweep(args) -> int:
    from nnlab.sweep import format_summary, parse_grid_arg, run_sweep, summarize

    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    cfg = _config_from_args(args)
    grid = dict(cfg.sweep)
    for item in args.grid or []:
        key, values = parse_grid_arg(item, cfg)
        grid[key] = values
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{cfg.name}"
    seeds = list(range(cfg.train.seed, cfg.train.seed + args.seeds))
    rows = run_sweep(cfg, grid, seeds, out, jobs=args.jobs)
    print(format_summary(summarize(rows, list(grid)), list(grid)))
    print(f"sweep folder: {out} (results.csv)")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nnlab", description="Train, compare and report classic neural-network baselines.")
    p.add_argument("--version", action="version", version=f"nnlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("presets", help="list the built-in presets")
    s.set_defaults(func=cmd_presets)

    def add_config_args(s, seeds_default):
        s.add_argument("config", metavar="PRESET|FILE.toml", help="a built-in preset name or a TOML file")
        s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. optim.lr=1e-3 (repeatable)")
        s.add_argument("--seed", type=int, help="train.seed (the first seed with --seeds)")
        s.add_argument("--seeds", type=int, default=seeds_default, help="run N seeds, from --seed on, and report mean +- std")
        s.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="train.device")
        s.add_argument("--jobs", type=int, default=1, help="worker processes for several runs (default 1)")
        s.add_argument("--out", metavar="DIR", help="output folder")

    s = sub.add_parser("train", help="train one run (or one per seed with --seeds)")
    add_config_args(s, None)
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar (default: on a terminal)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("sweep", help="run a grid of settings x seeds; reruns skip finished runs")
    add_config_args(s, 1)
    s.add_argument("--grid", action="append", metavar="KEY=V1,V2|KEY=A..B", help="values to sweep (repeatable: a product)")
    s.set_defaults(func=cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except NnlabError as exc:
        message = " ".join(str(exc).split())  # one line, always
        print(f"nnlab: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nnlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

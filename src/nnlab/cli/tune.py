"""``nnlab tune``: its sub-command (``add_tune_command``) and what it runs (``cmd_tune``)."""

from __future__ import annotations

import argparse
import os

from nnlab.cli.commands import add_backend_args
from nnlab.errors import NnlabError

EPILOG = """\
search space (--param KEY=SPEC, repeatable, or a [tune.params] table in the config; quote it
for the shell):
  loguniform(LOW,HIGH)   a float on a log scale, e.g. 'optim.lr=loguniform(1e-4,1e-1)'
  uniform(LOW,HIGH)      a float
  int(LOW,HIGH)          an integer, both ends included; logint(LOW,HIGH) on a log scale
  choice(A,B,...)        one of the values, e.g. 'model.activation=choice(relu,tanh)';
                         a list value in brackets: 'model.hidden=choice([64],[64,64])'
  A range on a list key sets every element: 'model.hidden=logint(8,256)' tunes the width
  of every hidden layer, keeping the config's depth.

Trials score on data.val_fraction of the training set (the config's, else 0.2), never on the
test set; the test accuracy of the best trial is read once, at the end. Rerunning the same
command continues the study (up to --trials in all); several processes or machines share one
study through --storage. Output: OUT/trials.csv, OUT/best.toml (nnlab train OUT/best.toml),
OUT/history.png, OUT/importances.png, OUT/trials/trial-NNNN/ (run folders); see docs/tune.md.
"""


class TuneUsageError(NnlabError):
    """Bad use of ``nnlab tune``'s flags."""


def add_tune_command(sub) -> argparse.ArgumentParser:
    """Declare ``nnlab tune`` on the sub-command parser ``sub``; returns its parser."""
    s = sub.add_parser(
        "tune",
        help="search hyperparameters with Optuna (TPE, pruning), scored on a validation split",
        description="Search hyperparameters with Optuna: a TPE sampler and a pruner over "
        "trials trained in this process, each scored on a validation split of the training set.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "config", metavar="PRESET|FILE.toml", help="a built-in preset name or a TOML file"
    )
    s.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    s.add_argument(
        "--param",
        action="append",
        metavar="KEY=SPEC",
        help="a key to tune and its range or choices (repeatable; see below)",
    )
    s.add_argument(
        "--trials",
        type=int,
        help="trials in the study, over every rerun (default: the config's [tune] trials, else 20)",
    )
    s.add_argument(
        "--metric",
        choices=["val_acc", "val_loss"],
        help="what a trial is scored on (default val_acc), on the validation split",
    )
    s.add_argument(
        "--direction",
        choices=["maximize", "minimize"],
        help="default: maximize val_acc, minimize val_loss",
    )
    s.add_argument(
        "--pruner",
        choices=["median", "halving", "none"],
        help="stop unpromising trials at an evaluation: the median rule (default) or "
        "successive halving",
    )
    s.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="worker processes sharing the study (default 0: one per CPU core; trials are "
        "single-threaded, so this is what uses the machine)",
    )
    s.add_argument(
        "--storage",
        metavar="URL",
        help="an Optuna RDB storage shared by processes or machines, e.g. "
        "postgresql://user@host/db (default sqlite:///OUT/study.db)",
    )
    s.add_argument(
        "--study", metavar="NAME", help="the study's name in the storage (default: the preset's)"
    )
    s.add_argument(
        "--out",
        metavar="DIR",
        help="tune folder (default runs/tune-<preset>; a rerun continues it)",
    )
    s.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="start no new trial after S seconds (the running ones finish)",
    )
    s.add_argument("--seed", type=int, help="train.seed of every trial (and the sampler's seed)")
    s.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="train.device")
    add_backend_args(s)  # with ray, --jobs is the number of Ray tasks running trials
    s.set_defaults(func=cmd_tune)
    return s


def cmd_tune(args) -> int:
    """``nnlab tune PRESET|FILE.toml [--param KEY=SPEC ...] [--trials N] ...``: search, then
    print the best trial, its validation score and (once) its test accuracy."""
    from nnlab import api

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TuneUsageError("nnlab tune: not available under torchrun; use --jobs J")
    if args.jobs < 0:
        raise TuneUsageError(f"--jobs must be >= 0 (0: one per CPU core), got {args.jobs}")
    if args.trials is not None and args.trials < 1:
        raise TuneUsageError(f"--trials must be >= 1, got {args.trials}")
    if args.timeout is not None and args.timeout <= 0:
        raise TuneUsageError(f"--timeout must be > 0 seconds, got {args.timeout}")
    overrides = list(args.set or [])
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    result = api.tune(
        args.config,
        overrides,
        params=args.param or [],
        trials=args.trials,
        metric=args.metric,
        direction=args.direction,
        pruner=args.pruner,
        jobs=args.jobs or os.cpu_count() or 1,
        storage=args.storage,
        study=args.study,
        out=args.out,
        timeout=args.timeout,
        device=args.device,
        backend=args.backend,
        address=args.address,
    )
    print(result.format_summary())
    return 0

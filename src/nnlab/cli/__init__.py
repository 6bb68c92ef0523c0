"""The ``nnlab`` command line: the parser, and dispatch with errors as one line.

``build_parser`` declares every sub-command and its flags; each one's work is a
``cmd_*`` function (``cli/commands.py``; ``nnlab data`` in ``cli/data.py``).
``main`` runs one and turns errors into the contract's exit codes: 0 success; 2
bad usage, config or input (one line on stderr, no traceback); 1 anything else
(a bug: one line saying so, the traceback in a file, ``cli/crash.py``; ``NNLAB_DEBUG=1``
shows it instead); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from nnlab import __version__
from nnlab.cli.check import add_check_command
from nnlab.cli.commands import (
    UsageError,
    add_backend_args,
    cmd_keys,
    cmd_presets,
    cmd_report,
    cmd_reproduce,
    cmd_resume,
    cmd_sweep,
    cmd_train,
)
from nnlab.cli.crash import (
    debugging,
    out_of_memory,
    path_error_line,
    report_bug,
    silence_stdout,
)
from nnlab.cli.data import add_data_command
from nnlab.cli.tune import add_tune_command
from nnlab.errors import NnlabError


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; the contract wants one line and exit code 2.
    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nnlab", description="Train, compare and report classic neural-network baselines."
    )
    p.add_argument("--version", action="version", version=f"nnlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser(
        "presets",
        help="list the built-in presets, or show one's resolved config with each key's meaning",
    )
    s.add_argument(
        "name",
        nargs="?",
        metavar="PRESET|FILE.toml",
        help="show this preset's description and resolved config, each key with its meaning",
    )
    s.set_defaults(func=cmd_presets)

    s = sub.add_parser("keys", help="list every config key with its type, default and meaning")
    s.add_argument("--markdown", action="store_true", help="as Markdown tables, one per section")
    s.set_defaults(func=cmd_keys)

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
        s.add_argument(
            "--rerun",
            action="store_true",
            help="with several runs: delete and retrain the runs in --out whose saved config "
            "differs from this one (else such a rerun is refused)",
        )
        s.add_argument(
            "--max-runs",
            type=int,
            metavar="N",
            help="refuse a sweep of more than N runs (grid points x seeds; default 10,000)",
        )

    def add_progress(s, help: str) -> None:
        s.add_argument(
            "--progress", choices=["auto", "bar", "lines", "off"], default="auto", help=help
        )

    progress_help = (
        "progress display: a bar over steps, a line per tenth of training and at least every "
        "30 s, or nothing (auto: a bar on a terminal)"
    )
    s = sub.add_parser("train", help="train one run (or one per seed with --seeds)")
    add_config_args(s, None, optional=True)
    s.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the unfinished run folder RUN from its last checkpoint",
    )
    add_progress(s, progress_help)
    add_backend_args(s, "with --seeds N: where the seeds train")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("resume", help="continue an unfinished run from its last checkpoint")
    s.add_argument("run", metavar="RUN", help="the run folder")
    s.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda", "mps"],
        help="train on another device than before",
    )
    add_progress(s, progress_help)
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser(
        "sweep",
        help="run a grid of settings x seeds; reruns skip runs finished with the same config",
    )
    add_config_args(s, 1)
    s.add_argument(
        "--grid",
        action="append",
        metavar="KEY=V1,V2|KEY=A..B",
        help="values to sweep (repeatable: a product)",
    )
    add_progress(s, "each run's progress too (auto: only a line per finished run)")
    add_backend_args(s)
    s.set_defaults(func=cmd_sweep)

    add_data_command(sub)
    add_check_command(sub)  # nnlab check FILE.py[:Class] ... (cli/check.py)
    add_tune_command(sub)

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
        "--download-cifar10",
        action="store_true",
        help="when CIFAR-10 is not imported, try one download of it (md5-checked, short "
        "timeout); offline, go on without it",
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
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not as Python's noise at exit
        return code
    except NnlabError as exc:
        message = " ".join(str(exc).split())  # one line, always
        from nnlab.engine.distributed import announce_error

        # under torchrun: once per node, not once per process
        announce_error(f"nnlab: error: {message}")
        return exc.exit_code
    except KeyboardInterrupt:
        print("nnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (nnlab keys | head): no error
        silence_stdout()
        return 141
    except Exception as exc:
        if debugging():
            raise
        # torch.cuda.OutOfMemoryError, without importing torch here
        if type(exc).__name__ == "OutOfMemoryError":
            # Files written so far are intact (atomic writes); the fix is a smaller batch or model.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
            print(
                f"nnlab: error: CUDA out of memory ({first[:160]}); lower train.batch_size or the model size",
                file=sys.stderr,
            )
            return 1
        if out_of_memory(exc):  # not a bug: this process hit its memory limit (ulimit -v, a cgroup)
            print(
                "nnlab: error: out of memory in this process; lower train.batch_size, the data "
                "size or the model size, or raise the memory limit",
                file=sys.stderr,
            )
            return 1
        line = path_error_line(exc)  # a path too long, unreadable, on a full disk...
        if line is not None:
            print(line, file=sys.stderr)
            return 2
        # A bug: one line saying so and where the traceback went (cli/crash.py).
        return report_bug(exc, argv)


if __name__ == "__main__":
    sys.exit(main())

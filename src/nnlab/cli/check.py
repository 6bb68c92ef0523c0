"""``nnlab check FILE.py[:Class] ... [--csv]``: gradient and shape checks of users' code.

The checks are ``nnlab.experiments.checks`` (docs/user-models.md). Exit codes: 0 when
every check passed (skips aside); 1 when one failed or a file among several could not
be checked (its row says why): a failed check is a result, not a usage error; 2 when
the command cannot run at all (bad arguments, or the only file named cannot be
imported: one line).
"""

from __future__ import annotations

from nnlab.errors import NnlabError


class CheckUsageError(NnlabError):
    """Bad ``nnlab check`` arguments."""


def add_check_command(sub) -> None:
    """The ``check`` sub-command's parser."""
    s = sub.add_parser(
        "check",
        help="check users' NumPy modules (numerical gradients) or torch models (shape, "
        "gradients, overfit one batch); many files at once",
    )
    s.add_argument(
        "files",
        nargs="+",
        metavar="FILE.py[:Class]",
        help="a file of NumPy modules (all its classes with forward and backward), or a torch "
        "model FILE.py:Class (the class may be left out when the file defines one nn.Module)",
    )
    s.add_argument("--csv", action="store_true", help="print one CSV row per check instead")
    s.add_argument(
        "--input-shape",
        default="2",
        metavar="N[,N...]",
        help="torch models: one example's shape, e.g. 3,32,32 (default 2)",
    )
    s.add_argument(
        "--classes", type=int, default=2, help="torch models: number of classes (default 2)"
    )
    s.add_argument(
        "--kwarg",
        action="append",
        metavar="KEY=VALUE",
        help="torch models: a constructor argument, as model.kwargs (repeatable), e.g. hidden=[64,64]",
    )
    s.add_argument("--seed", type=int, default=0, help="draws shapes, data and weights (default 0)")
    s.add_argument(
        "--steps",
        type=int,
        default=500,
        help="torch models: most Adam steps to overfit one batch of 16 (default 500)",
    )
    s.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from nnlab.config.values import parse_literal
    from nnlab.experiments.checks import check_files, format_csv, format_rows

    try:
        shape = tuple(int(n) for n in args.input_shape.split(","))
    except ValueError:
        raise CheckUsageError(
            f"--input-shape: expected integers like 3,32,32, got {args.input_shape!r}"
        ) from None
    kwargs = {}
    for item in args.kwarg or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise CheckUsageError(f"--kwarg {item!r}: expected NAME=VALUE, e.g. hidden=[64,64]")
        kwargs[key.strip()] = parse_literal(value)
    rows = check_files(
        args.files,
        input_shape=shape,
        n_classes=args.classes,
        kwargs=kwargs,
        seed=args.seed,
        steps=args.steps,
    )
    print(format_csv(rows) if args.csv else format_rows(rows), end="")
    return 0 if all(r.status in ("pass", "skip") for r in rows) else 1

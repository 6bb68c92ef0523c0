"""``nnlab data``: import or download CIFAR-10 into the data folder, or list what is cached.

``--archive`` takes any copy ``nnlab.data.cifar10_import`` recognises: the official
archive or ``cifar-10-batches-py/`` folder, or an ImageFolder tree/.tar.gz of the ten classes.
"""

from __future__ import annotations

import argparse

from nnlab.cli.commands import UsageError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def add_data_command(sub) -> None:
    """Add ``nnlab data`` to the sub-command parsers ``sub``."""
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
        help="cifar-10-python.tar.gz, an extracted cifar-10-batches-py/ folder, or an ImageFolder "
        "tree (train/<class>/*, test/<class>/*) or .tar.gz of one with the ten CIFAR-10 classes",
    )
    s.add_argument(
        "--download",
        action="store_true",
        help="fetch the official archive (md5-checked, resumable)",
    )
    s.add_argument(
        "--dir", metavar="DIR", help="data folder (default $NNLAB_DATA or ~/.cache/nnlab)"
    )
    s.add_argument("--url", default=CIFAR10_URL, help="download from a mirror")
    s.add_argument("--md5", default=CIFAR10_MD5, help="expected md5 of the archive at --url")
    s.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="download progress bar",
    )
    s.set_defaults(func=cmd_data)


def cmd_data(args) -> int:
    """``nnlab data cifar10 [--archive PATH | --download] [--dir DIR]`` and ``nnlab data info``."""
    from nnlab.data import cifar10
    from nnlab.data.cifar10_import import import_cifar10
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
        meta = import_cifar10(args.archive, root)
    elif args.download:
        from nnlab.data.download import CIFAR10_BYTES, download

        archive = download(
            args.url,
            root / "downloads" / "cifar-10-python.tar.gz",
            args.md5,
            progress=args.progress,
            # the official archive's size, when the md5 is the official one; else only the cap
            size=CIFAR10_BYTES if args.md5 == CIFAR10_MD5 else None,
        )
        meta = import_cifar10(archive, root, origin=args.url)
        archive.unlink()  # the decoded cache is all later runs need
    else:
        lines = [line for line in cifar10.cache_lines(root) if line.startswith("cifar10:")]
        if not lines:
            raise DataError(cifar10.missing_message(root))
        print(f"already imported: {lines[0]}")
        return 0
    print(
        f"imported CIFAR-10: {meta['n_train']} train + {meta['n_test']} test images into "
        f"{root / cifar10.CACHE_NAME} (from {cifar10.describe_source(meta)})"
    )
    if meta.get("source_kind") == "imagefolder":
        print(f"note: {cifar10.IMAGEFOLDER_NOTE}")
    return 0

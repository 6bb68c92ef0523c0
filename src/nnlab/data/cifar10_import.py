"""Import CIFAR-10 from any copy into the ``cifar10`` cache that every CIFAR-10 preset reads.

``import_cifar10(source)`` (``nnlab data cifar10 --archive PATH``, ``nnlab reproduce
--cifar10 PATH``) recognises two kinds of copy:

- the official python format: ``cifar-10-python.tar.gz`` or an extracted
  ``cifar-10-batches-py/`` folder, read safely by ``nnlab.data.cifar10.read_cifar10``;
- an ImageFolder tree (``train/<class>/*``, ``test/<class>/*``, maybe under one top
  folder) or a ``.tar.gz``/``.tar`` of one, whose class folders are exactly CIFAR-10's
  ten (``airplane`` .. ``truck``, in any order on disk), such as the JPEG copy in
  ``../shared/datasets/cifar10-jpeg.tar.gz``. Images are decoded to RGB; any that are
  not 32x32 are resized to it (bilinear, squashed, as ``data.name = "imagefolder"``
  does) and the count is recorded. Labels follow the official order, whatever the
  order on disk. Each split is stored in a fixed shuffled order (seed 0), as the
  official batches are, so ``data.limit_train`` keeps a mix of classes.

Either way the result is the same cache (``cifar10/{x,y}_{train,test}.npy`` + ``meta.json``,
written atomically), so ``data.name = "cifar10"`` runs on it with no extra flags. The
meta records where it came from (``source``, ``source_kind``, ``source_sha256`` for a
file, ``imported_at``), which ``nnlab data info`` shows: accuracies on a re-encoded
copy (the JPEG one) run a few points below the official data.

A tree with other classes is refused with one line pointing at
``data.name=imagefolder data.dir=PATH``; anything else with one line naming both routes.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlab.data.bounded import is_tar, members, open_tar, walk_tree
from nnlab.data.cifar10 import (
    CACHE_NAME,
    CLASSES,
    META_FILE,
    TEST_FILE,
    TRAIN_FILES,
    data_root,
    read_cifar10,
    read_meta,
    write_cache,
)
from nnlab.data.imagefolder import SPLITS, decode_tree, split_path
from nnlab.errors import DataError

OFFICIAL = "official"
IMAGEFOLDER = "imagefolder"
_OFFICIAL_NAMES = {*TRAIN_FILES, TEST_FILE, META_FILE}


def _unrecognised(source: Path, why: str) -> DataError:
    return DataError(
        f"{source}: {why}; nnlab imports the official cifar-10-python.tar.gz or a cifar-10-batches-py/ "
        "folder, or an ImageFolder tree (train/<class>/*, test/<class>/*) or .tar.gz of one with the ten "
        f"CIFAR-10 classes; to train on other images use --set data.name=imagefolder --set data.dir={source}"
    )


def _list(names: set[str], most: int = 5) -> str:
    items = sorted(names)
    more = f" (+{len(items) - most} more)" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def detect(source: str | os.PathLike) -> str:
    """``"official"`` or ``"imagefolder"`` (classes checked) for ``source``; a one-line DataError otherwise.

    Only names are read: an official archive is recognised by its first member, a
    tree by its paths, so nothing is decoded twice.
    """
    source = Path(source).expanduser()
    classes: dict[str, set[str]] = {s: set() for s in SPLITS}
    if source.is_dir():
        if (source / "cifar-10-batches-py").is_dir() or any(
            (source / n).is_file() for n in _OFFICIAL_NAMES
        ):
            return OFFICIAL
        for split, cls, _ in walk_tree(source):  # bounded: [top/]split/class/file only
            classes[split].add(cls)
    elif source.is_file():
        if not is_tar(source):
            raise _unrecognised(source, "not a folder or a tar archive")
        try:
            with open_tar(source) as tar:  # decompressed bytes bounded (nnlab.data.bounded)
                for member in members(tar, str(source)):  # names only; stops at the official layout
                    parts = member.name.split("/")
                    if "cifar-10-batches-py" in parts or parts[-1] in _OFFICIAL_NAMES:
                        return OFFICIAL
                    where = split_path(member.name) if member.isfile() else None
                    if where:
                        classes[where[0]].add(where[1])
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise DataError(f"{source}: truncated or corrupt archive ({reason})") from None
    else:
        raise DataError(
            f"{source}: no such file or folder; pass cifar-10-python.tar.gz, a cifar-10-batches-py/ "
            "folder, or an ImageFolder tree (train/<class>/*, test/<class>/*) or .tar.gz of one"
        )
    found = classes["train"] | classes["test"]
    if not found:
        raise _unrecognised(
            source, "neither the official CIFAR-10 files nor train/<class>/* images"
        )
    want = set(CLASSES)
    if classes["train"] != want or not classes["test"] <= want:
        parts = [f"train/ has {_list(classes['train']) or 'no classes'}"]
        if found - want:
            parts.append(f"not CIFAR-10's: {_list(found - want)}")
        if want - classes["train"]:
            parts.append(f"missing from train/: {_list(want - classes['train'])}")
        raise DataError(
            f"{source}: an ImageFolder tree whose classes are not CIFAR-10's ten ({'; '.join(parts)}); "
            f"train on it with --set data.name=imagefolder --set data.dir={source}"
        )
    if not classes["test"]:
        raise DataError(
            f"{source}: no images under test/<class>/; expected train/<class>/* and test/<class>/*"
        )
    return IMAGEFOLDER


def read_tree(source: Path) -> tuple[dict[str, np.ndarray], int]:
    """Decode an ImageFolder copy of CIFAR-10 to the cache's arrays; returns them and how many were resized."""
    stats: dict[str, int] = {}
    arrays, classes = decode_tree(source, 32, stats)
    # decode_tree numbers the classes in sorted order; map them to the official order.
    official = np.array([CLASSES.index(c) for c in classes], dtype=np.int64)
    arrays["y_train"] = official[arrays["y_train"]]
    arrays["y_test"] = official[arrays["y_test"]]
    return arrays, stats.get("resized", 0)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def imported_from(root: str | os.PathLike | None, source: str | os.PathLike) -> dict | None:
    """The cache's meta if it already holds ``source`` (same path and sha256; files only), else None."""
    source = Path(source).expanduser()
    meta_path = data_root(root) / CACHE_NAME / "meta.json"
    if not (source.is_file() and meta_path.is_file()):
        return None
    try:
        meta = read_meta(meta_path.parent)  # checked like every read of the cache's meta.json
    except DataError:
        return None  # unreadable: import again
    same = meta.get("source") == str(source.resolve()) and meta.get("source_sha256")
    return meta if same and meta["source_sha256"] == sha256_file(source) else None


def import_cifar10(
    source: str | os.PathLike, root: str | os.PathLike | None = None, *, origin: str | None = None
) -> dict[str, Any]:
    """Read, validate and cache any CIFAR-10 copy (see the module docstring); returns the cache's meta.

    ``origin`` is recorded as the source instead of the path (the URL of a downloaded archive).
    """
    from nnlab.data.augment import channel_stats

    source = Path(source).expanduser()
    kind = detect(source)
    extra: dict[str, Any] = {}
    if kind == OFFICIAL:
        arrays = read_cifar10(source)
    else:
        arrays, resized = read_tree(source)
        extra["resized_to_32"] = resized
    mean, std = channel_stats(torch.from_numpy(arrays["x_train"]))
    meta = {
        "dataset": "cifar10",
        "source": origin or str(source.resolve()),
        "source_kind": kind,
        "source_sha256": sha256_file(source) if source.is_file() else None,
        "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_train": len(arrays["y_train"]),
        "n_test": len(arrays["y_test"]),
        "classes": CLASSES,
        "mean": mean,
        "std": std,
        **extra,
    }
    write_cache(data_root(root) / CACHE_NAME, arrays, meta)
    return meta

"""ImageFolder data: ``train/<class>/*`` and ``test/<class>/*`` images, decoded once and cached.

``data.dir`` names the tree, or a ``.tar.gz``/``.tar`` of one (it may sit under one
top-level folder, like ``cifar10-jpeg/train/...``). Every image is converted to
RGB and resized to ``data.image_size`` square (squashed, not cropped, like
``Resize((s, s))``), then the splits are stored as uint8 ``(N, 3, s, s)`` .npy
files in the data folder (``$NNLAB_DATA`` or ``~/.cache/nnlab``) under
``imagefolder/<name>-<s>px-<key>``. The key hashes the source's resolved path,
its size and modification times (every file's, for a folder) and the image
size, so an edited tree or another size is decoded afresh and later runs
memory-map the cache instead of decoding again.

Classes are the sorted folder names of ``train/``; each split is stored in a
fixed shuffled order (seed 0, as the official CIFAR-10 batches are), so
``data.limit_train`` keeps a mix of classes rather than the first ones.

A tree of exactly CIFAR-10's ten classes can instead be imported as the ``cifar10``
dataset (``nnlab data cifar10 --archive PATH``, ``nnlab.data.cifar10_import``), which
reuses ``decode_tree``.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from nnlab.config import DataConfig
from nnlab.config.limits import Need, check_fits
from nnlab.data import DataBundle
from nnlab.data.bounded import (
    IMAGE_EXTENSIONS,
    SPLITS,
    decode_image,
    members,
    open_tar,
    read_file,
    read_member,
    refuse_system_root,
    walk_tree,
)
from nnlab.data.cifar10 import data_root, read_cache, write_cache
from nnlab.errors import ConfigError, DataError

EXTENSIONS = IMAGE_EXTENSIONS
CACHE_VERSION = 1  # bump when the decoded format changes, so old caches are not reused


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar"))


def cache_key(source: Path, image_size: int) -> str:
    """A short hash of what the decoded arrays depend on: path, sizes, mtimes, image size."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{source.resolve()}|{image_size}".encode())
    if source.is_dir():
        for _, _, path in walk_tree(source):  # the images only: [top/]split/class/file
            st = path.stat()
            h.update(f"|{path.relative_to(source)}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        st = source.stat()
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def check_decoded_fits(source: Path, count: int, image_size: int) -> None:
    """Refuse (one line) ``count`` decoded images of ``image_size`` that cannot fit in memory."""
    side = f"data.image_size={image_size}"
    need = Need(side, f"{count:,} images of {source} decoded", 2 * count * 3 * image_size**2)
    check_fits(None, [need])


def split_path(rel: str) -> tuple[str, str] | None:
    """``[top/]train/cls/x.jpg`` -> ("train", "cls"); None for anything else."""
    parts = rel.split("/")
    for i in range(len(parts) - 2):
        if (
            parts[i] in SPLITS
            and i + 3 == len(parts)
            and Path(parts[-1]).suffix.lower() in EXTENSIONS
        ):
            return parts[i], parts[i + 1]
    return None


def _entries(source: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """Yield ``(split, class, name, encoded bytes)`` for every image in a folder or an archive."""
    if source.is_dir():  # a bounded walk: three levels, never the whole tree below
        for split, cls, path in walk_tree(source):
            yield split, cls, str(path), read_file(path)
        return
    try:
        with open_tar(source) as tar:  # sizes bounded as the bytes stream (data.bounded)
            for member in members(tar, str(source)):  # in memory, never extracted: no escape
                where = split_path(member.name) if member.isfile() else None
                if where:
                    blob = read_member(tar, member, str(source))
                    yield (*where, f"{source}:{member.name}", blob)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{source}: truncated or corrupt archive ({reason})") from None


def decode_tree(
    source: Path, image_size: int, stats: dict[str, int] | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Decode and resize every image; returns arrays x_/y_{train,test} and the class names.

    ``stats``, when given, receives ``images`` (how many were decoded) and ``resized``
    (how many were not already ``image_size`` square).
    """
    resized = 0
    images: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    names: dict[str, list[str]] = {s: [] for s in SPLITS}
    for count, (split, cls, name, blob) in enumerate(_entries(source), 1):
        check_decoded_fits(source, count, image_size)  # as they come (x2 while stacked)
        chw, was_resized = decode_image(blob, image_size, name)  # (3, s, s); bombs refused
        resized += was_resized
        images[split].append(chw)
        names[split].append(cls)
    classes = sorted(set(names["train"]))
    if not classes:
        raise DataError(
            f"{source}: no images under train/<class>/; expected train/<class>/* and test/<class>/*"
        )
    if not names["test"]:
        raise DataError(f"{source}: no images under test/<class>/")
    unknown = sorted(set(names["test"]) - set(classes))
    if unknown:
        raise DataError(f"{source}: test/ has classes missing from train/: {', '.join(unknown)}")
    if stats is not None:
        stats.update(images=len(names["train"]) + len(names["test"]), resized=resized)
    index = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(0)
    arrays = {}
    for split in SPLITS:
        order = rng.permutation(len(names[split]))
        arrays[f"x_{split}"] = np.stack(images[split])[order]
        arrays[f"y_{split}"] = np.array([index[c] for c in names[split]], dtype=np.int64)[order]
    return arrays, classes


def load_tree(
    source: str | os.PathLike, image_size: int, root: str | os.PathLike | None = None
) -> tuple[dict, dict]:
    """Cached arrays and meta for the tree at ``source``, decoding it first if needed."""
    from nnlab.data.augment import channel_stats

    source = Path(source).expanduser()
    refuse_system_root(source)  # "/" would be a walk of the whole disk
    if not (source.is_dir() or _is_archive(source)):
        raise DataError(
            f"data.dir: {source} is not a folder or a .tar.gz of train/<class>/* and test/<class>/* images"
        )
    stem = source.name.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
    folder = (
        data_root(root) / "imagefolder" / f"{stem}-{image_size}px-{cache_key(source, image_size)}"
    )
    cached = read_cache(folder)
    if cached is None:
        arrays, classes = decode_tree(source, image_size)
        mean, std = channel_stats(torch.from_numpy(arrays["x_train"]))
        meta = {
            "dataset": "imagefolder",
            "source": str(source.resolve()),
            "image_size": image_size,
            "n_train": len(arrays["y_train"]),
            "n_test": len(arrays["y_test"]),
            "classes": classes,
            "mean": mean,
            "std": std,
        }
        write_cache(folder, arrays, meta)
        cached = read_cache(folder)
    return cached


def load_imagefolder(cfg: DataConfig, seed: int) -> DataBundle:
    if not cfg.dir:
        raise ConfigError(
            "data.dir: set it to an ImageFolder tree (train/<class>/*, test/<class>/*) or a .tar.gz of one"
        )
    arrays, meta = load_tree(cfg.dir, cfg.image_size)
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    classes = list(meta["classes"])
    return DataBundle(
        x_train=t["x_train"],
        y_train=t["y_train"],
        x_test=t["x_test"],
        y_test=t["y_test"],
        n_classes=len(classes),
        input_shape=(3, cfg.image_size, cfg.image_size),
        class_names=classes,
        normalization=(meta["mean"], meta["std"]) if cfg.normalize else None,
        info={"cache": meta.get("source", "")},
    )

"""Readers with limits: every file, archive member, image and folder walk knows its largest
legitimate size and refuses past it with one line, before the memory is allocated.

The largest legitimate inputs, and the limits (a clear margin above them):

=============================  =====================================  =======================
what                           largest legitimate                     limit
=============================  =====================================  =======================
one archive member or file     a CIFAR-10 python batch: 31 MB         ``MAX_MEMBER_BYTES``
read whole                                                            64 MiB
bytes decompressed from one    the official archive: 178 MB; the      ``MAX_ARCHIVE_BYTES``
archive                        JPEG copy: 93 MB                       4 GiB
entries in one archive         the JPEG copy: 60,023                  ``MAX_ARCHIVE_MEMBERS``
                                                                      2,000,000
pixels of one image            a CIFAR-10 image: 1,024; a photo:      ``MAX_IMAGE_PIXELS``
                               ~30 megapixels                         2^26 (67 megapixels)
images in a folder tree        CIFAR-10: 60,000                       ``MAX_TREE_IMAGES`` 5M
entries under ``<split>/``     a few (``.DS_Store``, a README)        ``MAX_STRAY_ENTRIES``
that are not images                                                   1,000
=============================  =====================================  =======================

Sizes are counted as the bytes stream, never taken from a header on trust: a tar member
whose header declares 64 GiB is refused from its header, and a gzip stream that inflates
without end is stopped when the bytes actually decompressed pass the limit. Pillow's
decompression-bomb guard is on (``MAX_IMAGE_PIXELS``, its warning an error), and an image's
size is checked from its header before it is decoded or resized. The limits are module
constants, so tests (and a user with a larger archive, extracted instead) can see them.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nnlab.errors import DataError

MAX_MEMBER_BYTES = 64 << 20
MAX_ARCHIVE_BYTES = 4 << 30
MAX_ARCHIVE_MEMBERS = 2_000_000
MAX_IMAGE_PIXELS = 1 << 26
MAX_TREE_IMAGES = 5_000_000
MAX_STRAY_ENTRIES = 1000
MAX_TOP_ENTRIES = 10_000  # entries of data.dir looked through for the one top folder
# Folders whose walk would be the whole system: refused as data.dir outright.
SYSTEM_ROOTS = frozenset(
    ["/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/run", "/sbin", "/sys"]
    + ["/usr", "/var"]
)
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}


def _mib(n: int) -> str:
    return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


# --------------------------------------------------------------------------- archives


class _BoundedStream(io.RawIOBase):
    """The decompressed stream of an archive, refusing to go past ``limit`` bytes (read or
    skipped): a gzip bomb stops there, whatever the tar headers say."""

    def __init__(self, stream: Any, limit: int, where: str) -> None:
        super().__init__()
        self.stream, self.limit, self.where = stream, limit, where

    def _refuse(self) -> DataError:
        return DataError(
            f"{self.where}: decompresses to more than {_mib(self.limit)}, more than any dataset "
            "nnlab reads from an archive; extract it and point at the folder"
        )

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.stream.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self.stream.tell() + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target > self.limit:
            raise self._refuse()  # a skip this far would inflate past the limit
        return self.stream.seek(target)

    def read(self, size: int | None = -1) -> bytes:
        left = self.limit - self.stream.tell()
        if size is None or size < 0 or size > left:
            data = self.stream.read(left + 1)  # never more than the limit allows
            if len(data) > left:
                raise self._refuse()
            return data
        return self.stream.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _decompressed(raw: Any) -> Any:
    """The decompressing reader for an archive's raw bytes (gzip, bzip2, xz, or none)."""
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


@contextmanager
def open_tar(path: Path, limit: int | None = None) -> Iterator[tarfile.TarFile]:
    """A tar archive (plain, .gz, .bz2 or .xz) whose decompressed bytes stop at ``limit``
    (``MAX_ARCHIVE_BYTES``); read its members with ``members`` and ``read_member``."""
    limit = MAX_ARCHIVE_BYTES if limit is None else limit
    with open(path, "rb") as raw, _decompressed(raw) as stream:
        bounded = _BoundedStream(stream, limit, str(path))
        with tarfile.open(fileobj=bounded, mode="r:") as tar:
            yield tar


def is_tar(path: Path) -> bool:
    """Whether ``path`` opens as a tar archive (first header only, its bytes bounded too)."""
    try:
        with open_tar(path, MAX_MEMBER_BYTES):
            return True
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False


def members(tar: tarfile.TarFile, where: str) -> Iterator[tarfile.TarInfo]:
    """Every member, in order, at most ``MAX_ARCHIVE_MEMBERS``; the TarInfo list tarfile keeps
    is emptied as it goes (regular members need none of it), so memory stays flat."""
    count = 0
    while (member := tar.next()) is not None:
        count += 1
        if count > MAX_ARCHIVE_MEMBERS:
            raise DataError(
                f"{where}: more than {MAX_ARCHIVE_MEMBERS:,} entries, more than any dataset "
                "nnlab reads from an archive"
            )
        yield member
        if len(tar.members) > 1024:
            del tar.members[:]


def read_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, where: str, limit: int | None = None
) -> bytes:
    """A regular member's bytes, refused from its header when it declares over ``limit``."""
    limit = MAX_MEMBER_BYTES if limit is None else limit
    if member.size > limit:
        raise DataError(
            f"{where}: {member.name} declares {member.size:,} bytes, more than the "
            f"{_mib(limit)} nnlab reads of one file (a CIFAR-10 batch is 31 MB)"
        )
    f = tar.extractfile(member)
    return f.read(member.size) if f is not None else b""


# --------------------------------------------------------------------------- files


def read_file(path: Path, limit: int | None = None) -> bytes:
    """A regular file's bytes, at most ``limit`` (``MAX_MEMBER_BYTES``); a FIFO, device or larger
    file is one line, checked on the opened file (no race with a swapped path)."""
    limit = MAX_MEMBER_BYTES if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"{path}: not a regular file (a FIFO, device or folder)")
        if info.st_size > limit:
            raise DataError(
                f"{path}: {info.st_size:,} bytes, more than the {_mib(limit)} nnlab reads of one file"
            )
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise DataError(f"{path}: more than the {_mib(limit)} nnlab reads of one file")
    return data


# --------------------------------------------------------------------------- images


def decode_image(blob: bytes, side: int, name: str) -> tuple[np.ndarray, bool]:
    """``(image (3, side, side) uint8, whether it was resized)``: RGB, squashed to ``side``.

    The size comes from the header first: an image over ``MAX_IMAGE_PIXELS`` is refused
    before a pixel is decoded (Pillow's own guard too, its warning made an error).
    """
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(blob)) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(f"{width}x{height} pixels")
                rgb = img.convert("RGB")
                resized = rgb.size != (side, side)
                if resized:
                    rgb = rgb.resize((side, side), Image.Resampling.BILINEAR)
                return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1), resized  # (3, s, s)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(
                f"{name}: image too large ({' '.join(str(exc).split())[:80]}); nnlab decodes "
                f"images of at most {MAX_IMAGE_PIXELS:,} pixels"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, EOFError) as exc:
            raise DataError(f"{name}: cannot decode image ({exc})") from None


# --------------------------------------------------------------------------- folder trees


def refuse_system_root(source: Path, key: str = "data.dir") -> None:
    """A system folder (``/``, ``/usr``, ...) as a dataset would be a walk of the whole disk."""
    if os.path.realpath(source) in SYSTEM_ROOTS:
        raise DataError(
            f"{key + ': ' if key else ''}{source} is a system folder, not a dataset; point it at "
            "a folder holding train/<class>/* and test/<class>/* images"
        )


def _dirs(folder: Path, most: int) -> list[os.DirEntry]:
    """The sub-folders of ``folder``, sorted, looking at no more than ``most`` entries."""
    found = []
    with os.scandir(folder) as entries:
        for i, entry in enumerate(entries):
            if i >= most:
                break
            if entry.is_dir():
                found.append(entry)
    return sorted(found, key=lambda e: e.name)


def split_root(source: Path) -> Path | None:
    """The folder holding ``train/`` (and ``test/``): ``source`` itself or one folder in it."""
    if any((source / s).is_dir() for s in SPLITS):
        return source
    for entry in _dirs(source, MAX_TOP_ENTRIES):
        if any((Path(entry.path) / s).is_dir() for s in SPLITS):
            return Path(entry.path)
    return None


def walk_tree(source: Path) -> list[tuple[str, str, Path]]:
    """``(split, class, path)`` of every image under ``[top/]{train,test}/<class>/``, sorted.

    Only those three levels are read (never the whole tree below ``source``); a folder
    where more than ``MAX_STRAY_ENTRIES`` entries there are not images, or that holds more
    than ``MAX_TREE_IMAGES`` images, is refused with one line.
    """
    refuse_system_root(source, key="")
    root = split_root(source)
    if root is None:
        return []
    found: list[tuple[str, str, Path]] = []
    stray: list[str] = []
    for split in SPLITS:
        if not (root / split).is_dir():
            continue
        with os.scandir(root / split) as entries:
            classes = sorted(entries, key=lambda e: e.name)
        for cls in classes:
            if not cls.is_dir():
                stray.append(cls.path)
                continue
            with os.scandir(cls.path) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                        found.append((split, cls.name, Path(entry.path)))
                    elif not entry.name.startswith("."):
                        stray.append(entry.path)
                    if len(stray) > MAX_STRAY_ENTRIES:
                        raise DataError(
                            f"{source}: does not look like an image-class folder (over "
                            f"{MAX_STRAY_ENTRIES:,} entries under {split}/<class>/ are not images, "
                            f"e.g. {stray[0]}); expected train/<class>/* and test/<class>/* images"
                        )
                    if len(found) > MAX_TREE_IMAGES:
                        raise DataError(
                            f"{source}: more than {MAX_TREE_IMAGES:,} images; nnlab decodes "
                            "a dataset into memory, so take a part of it"
                        )
    return found

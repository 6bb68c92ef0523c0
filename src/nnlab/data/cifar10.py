"""CIFAR-10 from the official python format, read safely and cached as memory-mapped .npy.

The official ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/`` with five
training batches, one test batch and ``batches.meta``: Python-2 pickles of dicts
with ``data`` (an (N, 3072) uint8 array, channel-major: R plane, G plane, B plane)
and ``labels`` (a list of ints 0..9). A pickle can run arbitrary code, so they are
read with ``SafeUnpickler``, which resolves only the three globals those files
name (numpy's array reconstructor, ndarray, dtype) and refuses everything else.

``nnlab.data.cifar10_import.import_cifar10`` reads this format (``read_cifar10``)
or an ImageFolder copy of the ten classes, validates everything (shapes, dtype, label range, counts)
before it writes anything, then writes the cache folder atomically (a temporary
folder, renamed into place), so the cache holds a complete, verified copy or
nothing. ``load_cifar10`` (the ``cifar10`` dataset) memory-maps the cache:
startup costs well under a second, and pages are read only as they are used.

Cache layout, under the data folder (``data.dir``, ``$NNLAB_DATA`` or ``~/.cache/nnlab``)::

    cifar10/x_train.npy  (N, 3, 32, 32) uint8     cifar10/y_train.npy  (N,) int64
    cifar10/x_test.npy   (M, 3, 32, 32) uint8     cifar10/y_test.npy   (M,) int64
    cifar10/meta.json    counts, class names, per-channel mean/std, source (kind, path, sha256)
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnlab.config import DataConfig
from nnlab.data import DataBundle
from nnlab.data.bounded import members, open_tar, read_file, read_member
from nnlab.errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CACHE_NAME = "cifar10"
ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MAX_OFFICIAL_BYTES = 1 << 30  # decompressed bytes of the official archive: 178 MB, so 1 GiB
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def data_root(override: str | os.PathLike | None = None) -> Path:
    """The data folder: ``override`` (``data.dir`` / ``--dir``), else ``$NNLAB_DATA``, else ``~/.cache/nnlab``."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("NNLAB_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nnlab"


# --------------------------------------------------------------------------- safe unpickling

# numpy's array reconstructor, taken from how numpy itself pickles an array (its module
# moved from numpy.core to numpy._core in numpy 2; this finds it in either).
_RECONSTRUCT = np.empty(0).__reduce__()[0]


class SafeUnpickler(pickle.Unpickler):
    """Resolves only the globals the official CIFAR-10 pickles need; refuses all others.

    The official files reference ``numpy.core.multiarray._reconstruct``,
    ``numpy.ndarray`` and ``numpy.dtype`` (checked with ``pickletools.dis``);
    dicts, lists, ints and strings need no globals. Numpy 2 renamed
    ``numpy.core`` to ``numpy._core``; both spellings map to the same function.
    """

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _RECONSTRUCT
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(
            f"refused to load global '{module}.{name}' (not part of the CIFAR-10 format)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id (not part of the CIFAR-10 format)")


def safe_load(data: bytes, where: str) -> Any:
    """Unpickle ``data`` with ``SafeUnpickler``; any failure is a one-line DataError naming ``where``."""
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    # UnpicklingError, EOFError, ValueError, ... from a corrupt or hostile file
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{where}: not a valid CIFAR-10 batch: {reason}") from None


# --------------------------------------------------------------------------- reading the official format


def _read_members(source: Path) -> dict[str, bytes]:
    """The raw bytes of each batch file, from a .tar.gz archive or a (cifar-10-batches-py) folder."""
    wanted = [*TRAIN_FILES, TEST_FILE, META_FILE]
    if source.is_dir():
        folder = (
            source / "cifar-10-batches-py" if (source / "cifar-10-batches-py").is_dir() else source
        )
        missing = [n for n in wanted[:-1] if not (folder / n).is_file()]
        if missing:
            raise DataError(
                f"{folder}: not a cifar-10-batches-py folder; missing {', '.join(missing)}"
            )
        return {n: read_file(folder / n) for n in wanted if (folder / n).is_file()}
    if not source.is_file():
        raise DataError(
            f"{source}: no such file or folder; pass cifar-10-python.tar.gz or a cifar-10-batches-py/ folder"
        )
    out: dict[str, bytes] = {}
    try:
        # Read in memory by name, never extracted (no path escapes); sizes bounded as they stream
        with open_tar(source, MAX_OFFICIAL_BYTES) as tar:
            for member in members(tar, str(source)):
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in out:
                    out[base] = read_member(tar, member, str(source))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{source}: truncated or corrupt archive ({reason})") from None
    missing = [n for n in wanted[:-1] if n not in out]
    if missing:
        raise DataError(f"{source}: not the CIFAR-10 python archive; missing {', '.join(missing)}")
    return out


def _batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode and validate one batch: (N, 3072) uint8 data and N labels in 0..9."""
    d = safe_load(raw, where)
    if not isinstance(d, dict) or "data" not in d or "labels" not in d:
        raise DataError(f"{where}: expected a dict with 'data' and 'labels'")
    x, labels = d["data"], d["labels"]
    if (
        not isinstance(x, np.ndarray)
        or x.dtype != np.uint8
        or x.ndim != 2
        or x.shape[1] != 3072
        or len(x) == 0
    ):
        shape = getattr(x, "shape", None)
        dtype = getattr(x, "dtype", type(x).__name__)
        raise DataError(
            f"{where}: 'data' must be an N x 3072 uint8 array, got shape {shape} dtype {dtype}"
        )
    if not isinstance(labels, list) or not all(type(v) is int for v in labels):
        raise DataError(f"{where}: 'labels' must be a list of integers")
    if len(labels) != len(x):
        raise DataError(f"{where}: {len(x)} images but {len(labels)} labels")
    y = np.asarray(labels, dtype=np.int64)
    if y.min() < 0 or y.max() > 9:
        raise DataError(f"{where}: labels must be in 0..9, found {int(y.min())}..{int(y.max())}")
    return x, y


def read_cifar10(source: str | os.PathLike) -> dict[str, Any]:
    """Decode and validate the official format; returns arrays (N, 3, 32, 32) uint8 and labels int64."""
    source = Path(source).expanduser()
    raw = _read_members(source)
    per_batch = None
    if META_FILE in raw:
        meta = safe_load(raw[META_FILE], f"{source}: {META_FILE}")
        names = meta.get("label_names") if isinstance(meta, dict) else None
        if not (isinstance(names, list) and len(names) == 10):
            raise DataError(f"{source}: {META_FILE}: 'label_names' must list 10 classes")
        per_batch = meta.get("num_cases_per_batch")
    parts = [_batch(raw[n], f"{source}: {n}") for n in TRAIN_FILES]
    for n, (x, _) in zip(TRAIN_FILES, parts, strict=True):
        if isinstance(per_batch, int) and len(x) > per_batch:
            raise DataError(
                f"{source}: {n}: {len(x)} images, more than num_cases_per_batch={per_batch}"
            )
    x_test, y_test = _batch(raw[TEST_FILE], f"{source}: {TEST_FILE}")
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    if len(np.unique(y_train)) != 10:
        raise DataError(
            f"{source}: the training batches hold only classes {sorted(set(y_train.tolist()))}, not all 10"
        )
    return {
        # (N, 3072) rows are R, G, B planes of 32x32: a reshape, no copy of pixel order needed.
        "x_train": x_train.reshape(-1, 3, 32, 32),
        "y_train": y_train,
        "x_test": x_test.reshape(-1, 3, 32, 32),
        "y_test": y_test,
    }


# --------------------------------------------------------------------------- the cache


def write_cache(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write ``arrays`` as .npy plus ``meta.json`` into ``folder``, atomically as a whole.

    Everything goes into a temporary sibling folder first; only when every file is
    written and fsync'ed is it renamed to ``folder`` (an older copy is moved aside
    first and removed after). A crash leaves the old cache or the new one.
    """
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; give the folder the usual mode
        for name, arr in arrays.items():
            with open(tmp / f"{name}.npy", "wb") as f:
                np.save(f, np.ascontiguousarray(arr))
                f.flush()
                os.fsync(f.fileno())
        (tmp / "meta.json").write_text(
            json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # a data folder that is a file, read-only, or full
            why = exc.strerror or exc
            raise DataError(f"{folder}: cannot write the data cache ({why})") from None
        raise


def _damaged(folder: Path, what: str) -> DataError:
    """The one line for a bad cache: the file, what is wrong, and how to rebuild it."""
    if folder.name == CACHE_NAME:
        fix = "re-import it with 'nnlab data cifar10 --archive PATH/cifar-10-python.tar.gz'"
    else:
        fix = f"delete {folder} and run again to rebuild it from data.dir"
    return DataError(f"{what}; {fix}")


def read_meta(folder: Path) -> dict[str, Any]:
    """A cache's ``meta.json``, checked: a JSON object with counts, class names and per-channel
    mean/std; else a one-line DataError naming the file and how to rebuild the cache."""
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _damaged(folder, f"{path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _damaged(folder, f"{path}: not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(meta, dict):
        raise _damaged(folder, f"{path}: not a JSON object")
    for key in ("n_train", "n_test"):
        if type(meta.get(key)) is not int or meta[key] < 0:
            raise _damaged(folder, f"{path}: {key} must be a count")
    classes = meta.get("classes", CLASSES)
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise _damaged(folder, f"{path}: classes must be a list of names")
    for key in ("mean", "std"):
        value = meta.get(key)
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise _damaged(folder, f"{path}: {key} must be a list of numbers (one per channel)")
    if any(v <= 0 for v in meta["std"]) or len(meta["mean"]) != len(meta["std"]):
        raise _damaged(folder, f"{path}: std must be positive, one per channel like mean")
    return meta


def read_cache(
    folder: Path, names: tuple[str, ...] = ARRAYS
) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Memory-map a cache folder written by ``write_cache``; None if there is no complete cache.

    ``meta.json`` and the arrays are checked (``read_meta``; images (N, C, H, W) uint8 with C
    = len(mean), labels (N,) integers in 0..len(classes)-1, N as meta.json says): a bad file
    is a one-line DataError naming it and how to rebuild the cache.
    """
    if not (folder / "meta.json").is_file():
        return None
    meta = read_meta(folder)
    arrays = {}
    for n in names:
        path = folder / f"{n}.npy"
        try:
            # mmap_mode="c": copy-on-write, so torch.from_numpy gets a writable array without a copy.
            arrays[n] = np.load(path, mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise _damaged(folder, f"{path}: damaged cache ({str(exc)[:80]})") from None
    for split in ("train", "test"):
        x, y, count = arrays[f"x_{split}"], arrays[f"y_{split}"], meta[f"n_{split}"]
        where = folder / f"x_{split}.npy"
        if x.ndim != 4 or x.dtype != np.uint8 or x.shape[1] != len(meta["mean"]):
            raise _damaged(
                folder,
                f"{where}: expected (N, {len(meta['mean'])}, H, W) uint8 images, "
                f"got {x.shape} {x.dtype}",
            )
        where = folder / f"y_{split}.npy"
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise _damaged(
                folder, f"{where}: expected (N,) integer labels, got {y.shape} {y.dtype}"
            )
        if len(x) != count or len(y) != count:
            raise _damaged(folder, f"{folder}: damaged cache (counts differ from meta.json)")
        if count and (int(y.min()) < 0 or int(y.max()) >= len(meta.get("classes", CLASSES))):
            raise _damaged(
                folder,
                f"{where}: labels must be in 0..{len(meta.get('classes', CLASSES)) - 1}, "
                f"found {int(y.min())}..{int(y.max())}",
            )
    return arrays, meta


IMAGEFOLDER_NOTE = (
    "an ImageFolder copy, not the official files; on a re-encoded copy (such as the JPEG one) "
    "accuracies run a few points below the official data"
)
SOURCE_KINDS = {"official": "the official python format", "imagefolder": "an ImageFolder copy"}


def describe_source(meta: dict[str, Any]) -> str:
    """Where a cache came from, for ``nnlab data info``: kind, path, short sha256, resizing."""
    text = f"{SOURCE_KINDS.get(meta.get('source_kind', ''), '')} {meta.get('source', '?')}".strip()
    if meta.get("source_sha256"):
        text += f", sha256 {meta['source_sha256'][:16]}"
    if meta.get("resized_to_32"):
        text += f", {meta['resized_to_32']} images resized to 32x32"
    return text


def missing_message(root: Path) -> str:
    opt = "" if root == data_root() else f" --dir {root}"
    return (
        f"CIFAR-10 is not in the data folder {root}; import it with "
        f"'nnlab data cifar10 --archive PATH/cifar-10-python.tar.gz{opt}' (or a cifar-10-batches-py/ folder, "
        f"or an ImageFolder tree or .tar.gz of the ten classes) "
        f"or fetch it with 'nnlab data cifar10 --download{opt}'"
    )


def load_cifar10(cfg: DataConfig, seed: int) -> DataBundle:
    """The cached CIFAR-10 as uint8 tensors (memory-mapped); the loader normalises per batch."""
    root = data_root(cfg.dir)
    cached = read_cache(root / CACHE_NAME)
    if cached is None:
        raise DataError(missing_message(root))
    arrays, meta = cached
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return DataBundle(
        x_train=t["x_train"],
        y_train=t["y_train"],
        x_test=t["x_test"],
        y_test=t["y_test"],
        n_classes=10,
        input_shape=(3, 32, 32),
        class_names=list(meta.get("classes", CLASSES)),
        normalization=(meta["mean"], meta["std"]) if cfg.normalize else None,
        info={
            "cache": str(root / CACHE_NAME),
            "source": meta.get("source", ""),
            "source_kind": meta.get("source_kind", ""),
        },
    )


def cache_lines(root: str | os.PathLike | None = None) -> list[str]:
    """One line per cached dataset under the data folder, for ``nnlab data info``.

    The cifar10 line says where the copy came from (official files or an ImageFolder
    copy, path, sha256); an ImageFolder copy gets an indented note below it.
    """
    root = data_root(root)
    folders = [root / CACHE_NAME] + sorted((root / "imagefolder").glob("[!.]*"))
    lines = []
    for folder in folders:
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            continue
        meta = read_meta(folder)
        size = sum(p.stat().st_size for p in folder.glob("*.npy")) / 2**20
        name = "cifar10" if folder.name == CACHE_NAME else f"imagefolder {folder.name}"
        lines.append(
            f"{name}: {meta['n_train']} train + {meta['n_test']} test images, {len(meta.get('classes', CLASSES))} classes, "
            f"{size:.0f} MiB in {folder} (from {describe_source(meta)})"
        )
        if name == "cifar10" and meta.get("source_kind") == "imagefolder":
            lines.append(f"  note: {IMAGEFOLDER_NOTE}")
    return lines

"""Crash-safe files: every whole-file write goes to a temporary file in the same folder,
is fsync'ed, then renamed over the target, so a crash leaves the old file or the new
one, never a torn one. Loads never run code (``weights_only=True``, ``allow_pickle=False``).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from nnlab.errors import RunError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


# --------------------------------------------------------------------------- atomic files


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    An OSError (disk full, read-only folder) becomes a one-line RunError; the
    temporary file is removed and the old file, if any, is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RunError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, harmless to skip.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` to a temp file, then rename: a kill mid-write leaves the old checkpoint."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def save_arrays(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` to memory, then an atomic write: NumPy checkpoints and boundary.npz."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


MAX_ARRAYS_BYTES = 4 << 30  # an .npz's arrays in all (boundary.npz: ~1 MB; NumPy weights)


def _check_npz_sizes(path: Path) -> None:
    """Refuse an .npz whose members inflate past ``MAX_ARRAYS_BYTES``, or whose array header
    declares more bytes than its member holds (numpy would allocate the declared size first)."""
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if sum(info.file_size for info in infos) > MAX_ARRAYS_BYTES:
            raise RunError(f"{path}: arrays of more than {MAX_ARRAYS_BYTES:,} bytes in all")
        for info in infos:
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                header = np.lib.format.read_array_header_1_0
                if version != (1, 0):
                    header = np.lib.format.read_array_header_2_0
                shape, _, dtype = header(member)
                if np.prod(shape, dtype=object) * dtype.itemsize > info.file_size:
                    raise RunError(f"{path}: {info.filename} declares {shape}, more than it holds")


def load_arrays(path: Path) -> dict[str, Any]:
    """Arrays only (``allow_pickle=False``): loading never runs code; a bad file is a RunError,
    also one whose arrays declare more than they hold or inflate past ``MAX_ARRAYS_BYTES``."""
    import zipfile

    import numpy as np

    try:
        _check_npz_sizes(path)
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise RunError(f"{path}: not found") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RunError(f"{path}: not a loadable nnlab array file ({exc})") from None


def load_checkpoint(path: Path, map_location: Any = "cpu", need: str = "model") -> dict:
    """Load with ``weights_only=True``: tensors and plain containers only, never arbitrary code.

    The result is checked by ``check_checkpoint(state, path, need)``: a dict whose ``model``
    maps names to tensors (and, with ``need="resume"``, what resume needs).
    """
    import pickle

    import torch

    path = Path(path)
    if path.is_dir():
        raise RunError(f"{path}: is a folder, not a checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: not a loadable nnlab checkpoint ({first})") from None
    return check_checkpoint(state, path, need)


# What ``engine.checkpoint`` writes and resume reads back (besides ``model``), with the types
# each may have; ``None`` in a tuple: the value may be None. Optional entries (``cuda_rng``,
# ``position``, ``ema``, ``name``, ``best_val_acc``) are checked by their readers.
_NUMBER = (int, float)
RESUME_KEYS: dict[str, tuple] = {
    "optimizer": (dict,),
    "scheduler": (dict, None),
    "epoch": (int,),
    "step": (int,),
    "elapsed_s": _NUMBER,
    "best_test_acc": (*_NUMBER, None),
    "best_epoch": (int, None),
    "since_best": (int,),
    "stop_reason": (str, None),
    "row": (dict, None),
    "torch_rng": ("Tensor",),
    "config": (dict,),
}


def _type_ok(value: Any, kinds: tuple) -> bool:
    import torch

    for kind in kinds:
        if kind is None and value is None:
            return True
        if kind == "Tensor" and isinstance(value, torch.Tensor):
            return True
        if isinstance(kind, type) and isinstance(value, kind) and not isinstance(value, bool):
            return True
    return False


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def check_checkpoint(state: Any, path: Path, need: str = "model") -> dict:
    """``state`` if it is an nnlab checkpoint, else a one-line RunError naming ``path``.

    ``need="model"``: a dict whose ``model`` is a dict of str -> Tensor (what ``init_from``,
    ``best.pt`` and ``Run.model`` read); ``need="resume"``: also ``RESUME_KEYS`` with their types.
    """
    import torch

    if need not in ("model", "resume"):
        raise ValueError(f"need: must be model or resume, got {need!r}")
    if not isinstance(state, dict):
        raise RunError(f"{path}: not an nnlab checkpoint (a {_kind(state)}, expected a dict)")
    weights = state.get("model")
    if not isinstance(weights, dict) or not weights:
        what = "no 'model' entry" if "model" not in state else f"'model' is a {_kind(weights)}"
        raise RunError(f"{path}: not an nnlab checkpoint ({what}; expected a dict of tensors)")
    bad = [
        k for k, v in weights.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    ]
    if bad:
        raise RunError(
            f"{path}: not an nnlab checkpoint ('model' entry {str(bad[0])[:80]!r} is a "
            f"{_kind(weights[bad[0]])}, expected a tensor)"
        )
    if need == "resume":
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise RunError(
                f"{path}: not a resumable nnlab checkpoint (missing {', '.join(missing)})"
            )
        for key, kinds in RESUME_KEYS.items():
            if not _type_ok(state[key], kinds):
                want = " or ".join(
                    "None" if k is None else getattr(k, "__name__", k) for k in kinds
                )
                raise RunError(
                    f"{path}: not a resumable nnlab checkpoint ({key} is a {_kind(state[key])}, "
                    f"expected {want})"
                )
        row = state["row"]
        if row is not None and not _type_ok(row.get("epoch"), _NUMBER):
            raise RunError(f"{path}: not a resumable nnlab checkpoint (row has no epoch number)")
    return state


def weight_mismatches(weights: dict, model: Any) -> list[str]:
    """Where ``weights`` and ``model``'s own state dict differ: missing and unexpected keys,
    shapes (empty when ``model.load_state_dict(weights)`` fits)."""
    own = model.state_dict()
    problems = [f"{k} missing" for k in own if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in own]
    problems += [
        f"{k} is {tuple(weights[k].shape)}, not {tuple(v.shape)}"
        for k, v in own.items()
        if k in weights and tuple(weights[k].shape) != tuple(v.shape)
    ]
    return problems


def check_weights_fit(weights: dict, model: Any, path: Path) -> None:
    """A one-line RunError naming the keys and shapes where ``weights`` (a checked checkpoint's
    ``model``) and ``model``'s own state dict differ, before ``load_state_dict`` is tried."""
    problems = weight_mismatches(weights, model)
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise RunError(
            f"{path}: the weights do not fit the model its config.toml builds "
            f"({'; '.join(p[:120] for p in problems[:3])}{more})"
        )


# What nnlab reads whole from a run, sweep or tune folder: summary.json and tune.json are a
# few KB, metrics.csv / results.csv / trials.csv a few MB at most (a row per evaluation, run
# or trial). A file past these is not nnlab's, and reading it would cost many times its size.
MAX_JSON_BYTES = 16 << 20
MAX_CSV_BYTES = 256 << 20


def check_size(path: Path, limit: int) -> None:
    """A one-line RunError when ``path`` is larger than ``limit`` bytes (before it is read)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return  # missing or unreadable: the reader says so
    if size > limit:
        raise RunError(
            f"{path}: {size:,} bytes, more than the {limit:,} nnlab reads of such a file"
        )


def read_json(path: Path) -> dict[str, Any]:
    check_size(path, MAX_JSON_BYTES)
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path}: expected a JSON object")
    return obj

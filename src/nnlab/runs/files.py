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


def load_arrays(path: Path) -> dict[str, Any]:
    """Arrays only (``allow_pickle=False``): loading never runs code; a bad file is a RunError."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise RunError(f"{path}: not found") from None
    except (ValueError, OSError, EOFError) as exc:
        raise RunError(f"{path}: not a loadable nnlab array file ({exc})") from None


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict:
    """Load with ``weights_only=True``: tensors and plain containers only, never arbitrary code."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{path}: not a loadable nnlab checkpoint ({first})") from None


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path}: expected a JSON object")
    return obj

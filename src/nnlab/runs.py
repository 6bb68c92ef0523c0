"""Run folders (the contract in ARCHITECTURE.md) and crash-safe writes.

::

    RUN/config.toml      the fully resolved config
    RUN/metrics.csv      one row per evaluation (METRIC_COLUMNS), append-only
    RUN/summary.json     written once, at the end: a run is finished iff it exists
    RUN/checkpoints/     last.pt, best.pt, written atomically, weights_only-loadable
    RUN/curves.png       loss and accuracy against epoch

Every whole-file write goes to a temporary file in the same folder, is fsync'ed,
then renamed over the target, so a crash leaves the old file or the new one,
never a torn one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from nnlab.errors import RunError

_UMASK = os.umask(0o022)
os.umask(_UMASK)

METRIC_COLUMNS = [
    "epoch",
    "step",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "lr",
    "elapsed_s",
]


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


# --------------------------------------------------------------------------- run folder


def prepare_out_dir(path: Path) -> Path:
    """Check that ``path`` can become a new run or sweep folder, without creating it yet."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"--out {path}: exists and is not a folder")
    if path.is_dir() and (path / "summary.json").exists():
        raise RunError(f"--out {path}: already holds a finished run; choose another --out")
    if path.is_dir() and any(path.iterdir()) and not (path / "config.toml").exists():
        raise RunError(f"--out {path}: folder is not empty and is not an nnlab run")
    parent = path.parent if not path.exists() else path
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise RunError(f"--out {path}: {parent} is not writable")
    return path


class RunDir:
    """One run's folder: config, metrics, checkpoints and summary."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def finished(self) -> bool:
        return self.summary_path.exists()

    def create(self, config_toml: str) -> None:
        """Make the folder and write the resolved config; metrics start empty."""
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create run folder {self.path}: {exc.strerror or exc}") from None
        atomic_write_text(self.path / "config.toml", config_toml)
        atomic_write_text(self.metrics_path, ",".join(METRIC_COLUMNS) + "\n")

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one evaluation row (one short write, flushed and fsync'ed)."""
        line = ",".join(_fmt(row.get(c)) for c in METRIC_COLUMNS) + "\n"
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise RunError(f"cannot write {self.metrics_path}: {exc.strerror or exc}") from None

    def read_metrics(self) -> list[dict[str, float]]:
        return read_metrics(self.metrics_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)

    def read_summary(self) -> dict[str, Any]:
        return read_json(self.summary_path)


def completed_summary(result: Any, provenance: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` of a finished run from a fit result (torch ``FitResult`` or numpy ``NumpyFit``).

    One builder for every backend, so their summaries keep the same keys.
    """
    compile_seconds = getattr(result, "compile_seconds", None)
    return {
        "status": "completed",
        "final_test_acc": result.final["test_acc"],
        "final_test_loss": result.final["test_loss"],
        "best_test_acc": result.best_test_acc,
        "best_epoch": result.best_epoch,
        "final_train_acc": result.history[-1]["train_acc"],
        "final_train_loss": result.history[-1]["train_loss"],
        "epochs": result.epochs,
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "train_seconds": round(result.train_seconds, 3),
        "eval_seconds": round(result.eval_seconds, 3),
        "compile_seconds": None if compile_seconds is None else round(compile_seconds, 3),
        **provenance,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_metrics(path: Path) -> list[dict[str, float]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise RunError(f"{path}: cannot read metrics ({exc.strerror or exc})") from None
    out = []
    for i, row in enumerate(rows, start=2):
        try:
            out.append(
                {
                    k: (float(v) if v not in ("", None) else float("nan"))
                    for k, v in row.items()
                    if k
                }
            )
        except ValueError:
            raise RunError(f"{path}: line {i} is not a row of numbers") from None
    return out


def repair_metrics(path: Path, up_to_epoch: int) -> list[dict[str, float]]:
    """Keep the header and the complete rows up to ``up_to_epoch``; rewrite the file atomically.

    A crash can leave a torn last line, or rows written after the last checkpoint:
    both are dropped here and recomputed by the resumed run.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RunError(f"{path}: cannot read metrics ({exc.strerror or exc})") from None
    header = ",".join(METRIC_COLUMNS)
    lines = text.split("\n")
    if not lines or lines[0] != header:
        raise RunError(f"{path}: not an nnlab metrics file (header should be {header})")
    kept = [header]
    for line in lines[1:-1]:  # the part after the last newline is empty or torn
        cells = line.split(",")
        if len(cells) != len(METRIC_COLUMNS):
            break
        try:
            if float(cells[0]) > up_to_epoch:
                break
        except ValueError:
            break
        kept.append(line)
    atomic_write_text(path, "\n".join(kept) + "\n")
    return read_metrics(path)


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


# --------------------------------------------------------------------------- provenance


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import torch

    import nnlab

    return {
        "nnlab": nnlab.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    """The commit of the nnlab source tree, with ``+dirty`` if it has local changes; None outside git."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])

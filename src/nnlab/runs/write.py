"""Writing run folders: ``RunDir`` (config, metrics rows, summary, checkpoints), the
``metrics.csv`` format and its repair after a crash, and provenance."""

from __future__ import annotations

import csv
import errno
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nnlab.errors import RunError
from nnlab.runs.files import (
    MAX_CSV_BYTES,
    atomic_write_json,
    atomic_write_text,
    check_size,
    read_json,
)

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
# With data.val_fraction every row also scores the validation split (what selection uses).
VAL_COLUMNS = ["val_loss", "val_acc"]


def metric_columns(validation: bool) -> list[str]:
    """The header of metrics.csv: the contract's columns, plus val_* with a validation split."""
    return METRIC_COLUMNS + VAL_COLUMNS if validation else list(METRIC_COLUMNS)


# --------------------------------------------------------------------------- run folder


def prepare_out_dir(path: Path) -> Path:
    """Check that ``path`` can become a new run or sweep folder, without creating it yet."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError(f"--out {path}: exists and is not a folder")
    if path.is_dir() and (path / "summary.json").exists():
        raise RunError(f"--out {path}: already holds a finished run; choose another --out")
    if path.is_dir() and not (path / "config.toml").exists() and not never_started(path):
        raise RunError(f"--out {path}: folder is not empty and is not an nnlab run")
    parent = path.parent if not path.exists() else path
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise RunError(f"--out {path}: {parent} is not writable")
    return path


# --------------------------------------------------------------------------- one writer per folder

LOCK_NAME = ".lock"  # PATH/.lock: held (fcntl.flock) by the one process writing PATH
_HELD: dict[str, list[int]] = {}  # real path -> [fd, depth]: re-entrant within a process


@contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the run or sweep folder ``path`` while the block runs.

    Creates ``path`` if needed. A second process gets a one-line RunError (exit 2) at
    once, having touched nothing. The OS drops the lock when the process ends, also
    on kill -9; the lock file stays (readers ignore dotfiles). Re-entrant in a process.
    """
    key = os.path.realpath(path)
    if key not in _HELD:
        _HELD[key] = [_acquire(Path(path)), 0]
    _HELD[key][1] += 1
    try:
        yield
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            fd = _HELD.pop(key)[0]
            if fd >= 0:
                os.close(fd)


def _acquire(path: Path) -> int:
    """Open and flock ``path/.lock``; its file descriptor (-1 where flock is unsupported)."""
    import fcntl

    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:  # e.g. a read-only file system: nothing can be written there
        what = "cannot write to" if path.is_dir() else "cannot create"
        raise RunError(f"{what} {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            os.close(fd)  # a file system without locks: go on unguarded, as before
            return -1
        try:
            pid = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        finally:
            os.close(fd)
        raise RunError(
            f"{path} is being written by another nnlab process (pid {pid}); "
            "wait for it or choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def clear_folder(path: Path) -> None:
    """Delete what ``path`` holds but its lock file (a run started over, under its lock)."""
    if not Path(path).is_dir():
        return
    for p in Path(path).iterdir():
        if p.name == LOCK_NAME:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def never_started(path: Path) -> bool:
    """True when ``path`` holds only what creating a run leaves before its config.toml
    (written last): dotfiles (the lock, temp files), an empty ``checkpoints/`` and a
    ``metrics.csv`` with at most its header. Such a folder is started over."""
    for p in Path(path).iterdir():
        if p.name.startswith("."):
            continue
        if p.name == "checkpoints" and p.is_dir() and not p.is_symlink():
            if any(not c.name.startswith(".") for c in p.iterdir()):
                return False
        elif p.name == "metrics.csv" and p.is_file() and not p.is_symlink():
            if p.stat().st_size > 4096 or p.read_bytes().count(b"\n") > 1:
                return False
        else:
            return False
    return True


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

    def create(self, config_toml: str, columns: list[str] | None = None) -> None:
        """Make the folder and write the resolved config; metrics start empty.

        config.toml is written last (atomically): a kill before it leaves a folder that
        ``never_started`` recognises, which ``train --out`` and a sweep start over."""
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"cannot create run folder {self.path}: {exc.strerror or exc}") from None
        self._columns = columns or list(METRIC_COLUMNS)
        atomic_write_text(self.metrics_path, ",".join(self._columns) + "\n")
        atomic_write_text(self.path / "config.toml", config_toml)

    @property
    def columns(self) -> list[str]:
        """metrics.csv's columns, as its header says (a resumed run reads them back)."""
        if getattr(self, "_columns", None) is None:
            try:
                with open(self.metrics_path, encoding="utf-8") as f:
                    header = f.readline().strip().split(",")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise RunError(f"cannot read {self.metrics_path}: {reason}") from None
            self._columns = (
                header
                if header in (METRIC_COLUMNS, METRIC_COLUMNS + VAL_COLUMNS)
                else METRIC_COLUMNS
            )
        return self._columns

    def append_metrics(self, row: dict[str, Any], *, sync: bool = True) -> None:
        """Append one evaluation row (one short write, flushed; fsync'ed unless ``sync`` is
        false: the engine then makes it durable with the next checkpoint, ``sync_metrics``)."""
        line = ",".join(_fmt(row.get(c)) for c in self.columns) + "\n"
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
        except OSError as exc:
            raise RunError(f"cannot write {self.metrics_path}: {exc.strerror or exc}") from None

    def sync_metrics(self) -> None:
        """fsync metrics.csv: the rows appended so far survive a power cut."""
        try:
            fd = os.open(self.metrics_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise RunError(f"cannot write {self.metrics_path}: {exc.strerror or exc}") from None

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """All rows at once (a run written at its end: a stack member, a NumPy run)."""
        columns = metric_columns(bool(rows) and "val_acc" in rows[0])
        lines = [",".join(columns)] + [",".join(_fmt(r.get(c)) for c in columns) for r in rows]
        atomic_write_text(self.metrics_path, "\n".join(lines) + "\n")

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
        "best_test_acc": result.best_test_acc,  # informational: selection never looks at it
        "best_epoch": result.best_epoch,
        # with data.val_fraction, what selection (best epoch, patience, best.pt) looked at
        "selected_on": getattr(result, "selected_on", "test_acc"),
        "best_val_acc": getattr(result, "best_val_acc", None),
        "final_val_acc": result.final.get("val_acc"),
        "final_val_loss": result.final.get("val_loss"),  # nnlab tune --metric val_loss
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


def _unreadable(exc: Exception) -> str:
    """Why a text file cannot be read, in a few words (not UTF-8, a NUL byte...)."""
    return "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else " ".join(str(exc).split())


def read_metrics(path: Path) -> list[dict[str, float]]:
    check_size(path, MAX_CSV_BYTES)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:  # csv.Error: a NUL byte, say
        reason = getattr(exc, "strerror", None) or _unreadable(exc)
        raise RunError(f"{path}: cannot read metrics ({reason})") from None
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
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or _unreadable(exc)
        raise RunError(f"{path}: cannot read metrics ({reason})") from None
    headers = [",".join(metric_columns(v)) for v in (False, True)]
    lines = text.split("\n")
    if not lines or lines[0] not in headers:
        raise RunError(f"{path}: not an nnlab metrics file (header should be {headers[0]})")
    header = lines[0]
    kept = [header]
    for line in lines[1:-1]:  # the part after the last newline is empty or torn
        cells = line.split(",")
        if len(cells) != header.count(",") + 1:
            break
        try:
            if float(cells[0]) > up_to_epoch:
                break
        except ValueError:
            break
        kept.append(line)
    atomic_write_text(path, "\n".join(kept) + "\n")
    return read_metrics(path)


# --------------------------------------------------------------------------- provenance


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import numpy
    import torch

    from nnlab.version import __version__

    return {
        "nnlab": __version__,
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

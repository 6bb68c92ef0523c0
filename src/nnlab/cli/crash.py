"""A bug in nnlab: one line on the terminal, the full traceback in a file.

Bad input is an ``NnlabError`` (one line, exit 2), and so is an OS error about a path
(``path_error_line``: a name too long, no permission, a full or read-only disk). Anything
else that escapes a command is a bug: ``cli.main`` calls ``report_bug``, which writes the traceback, the command line and
the versions to ``crash-<time>-<pid>.txt`` in ``crash_dir()`` and prints one line saying
it is a bug and where that file is (exit 1). ``NNLAB_DEBUG=1`` prints the traceback on the
terminal instead, as Python would.
"""

from __future__ import annotations

import errno
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

DEBUG_ENV = "NNLAB_DEBUG"  # 1: a bug's traceback on the terminal, no crash file
CRASH_DIR_ENV = "NNLAB_CRASH_DIR"  # where crash files go (default: the user's cache folder)


def debugging() -> bool:
    """Whether ``NNLAB_DEBUG`` asks for tracebacks on the terminal."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is this process running out of memory rather than a bug: a
    ``MemoryError``, or a library that could not be mapped into memory (``ENOMEM``)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, (ImportError, OSError)) and (
        getattr(exc, "errno", None) == errno.ENOMEM
        or "failed to map segment" in text
        or "Cannot allocate memory" in text
    )


# OS errors about a path the user gave (or the machine's state), never about nnlab's logic:
# a name too long for the file system, no permission, a read-only or full disk, a file where
# a folder should be. They escape from many places (every ``Path.is_file()`` on a user's
# path), so ``cli.main`` turns them into one line, exit 2, wherever they come from.
_PATH_ERRNOS = {
    errno.ENAMETOOLONG,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ELOOP,
}


def path_error_line(exc: BaseException) -> str | None:
    """The one line for an OS error about a path (``_PATH_ERRNOS``), or None for others."""
    if not isinstance(exc, OSError) or exc.errno not in _PATH_ERRNOS:
        return None
    name = exc.filename if isinstance(exc.filename, str) else ""
    if len(name) > 120:
        name = name[:60] + "..." + name[-40:]
    reason = exc.strerror or type(exc).__name__
    return f"nnlab: error: {name + ': ' if name else ''}{reason}".replace("\n", " ")


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so that Python's flush at exit does
    not raise (and print) the same error again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no file (a test's StringIO)
        pass


def crash_dir() -> Path:
    """``$NNLAB_CRASH_DIR``, else ``$XDG_CACHE_HOME/nnlab/crashes`` (``~/.cache/nnlab/crashes``)."""
    if os.environ.get(CRASH_DIR_ENV):
        return Path(os.environ[CRASH_DIR_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "nnlab" / "crashes"


def _report_text(exc: BaseException, argv: list[str]) -> str:
    from nnlab.version import __version__

    head = [
        f"nnlab {__version__} crashed at {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"command: {' '.join(['nnlab', *argv])!r}",
        f"python {platform.python_version()} on {platform.platform()}",
        f"working folder: {os.getcwd()!r}",
        "",
    ]
    return "\n".join(head) + "".join(traceback.format_exception(exc))


def write_crash_report(exc: BaseException, argv: list[str]) -> Path | None:
    """Write the crash file (``crash_dir()``, else the temp folder); its path, or None if
    neither can be written."""
    text = _report_text(exc, argv)
    stem = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for folder in (crash_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(100):  # two bugs in one second of one process: -2, -3, ...
                path = folder / (f"{stem}.txt" if i == 0 else f"{stem}-{i + 1}.txt")
                try:
                    with open(path, "x", encoding="utf-8", errors="backslashreplace") as f:
                        f.write(text)
                    return path
                except FileExistsError:
                    continue
        except OSError:
            continue
    return None


def bug_line(exc: BaseException, path: Path | None) -> str:
    """The one line a bug gets on the terminal."""
    detail = " ".join(str(exc).split())
    what = type(exc).__name__ + (f": {detail}" if detail else "")
    if len(what) > 200:
        what = what[:197] + "..."
    where = (
        f"the full traceback is in {path}"
        if path is not None
        else "the traceback could not be written to a file"
    )
    return (
        f"nnlab: internal error (a bug in nnlab, not in your input): {what}; {where} "
        f"(please report it; {DEBUG_ENV}=1 prints it here)"
    )


def report_bug(exc: BaseException, argv: list[str] | None) -> int:
    """Write the crash file, print one line on stderr, return exit code 1."""
    path = write_crash_report(exc, list(sys.argv[1:] if argv is None else argv))
    print(bug_line(exc, path), file=sys.stderr)
    return 1

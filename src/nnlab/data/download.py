"""Fetch a file over HTTP(S) with a progress bar, resume, and an md5 check.

The file grows as ``DEST.part``; an interrupted download resumes from where it
stopped (an HTTP ``Range`` request), or restarts when the server ignores the
range. Only a file whose md5 matches is renamed to ``DEST``; a mismatch deletes
the partial file, so the next try starts clean. URL and md5 are parameters, so
tests point them at a local server.

Limits, so that a server that never stops sending, or stops sending without closing,
cannot fill the disk or hang the command:

- size: the file may not grow past ``size`` (the expected size, when known: the official
  archive is ``CIFAR10_BYTES``) nor past ``max_bytes`` (``MAX_DOWNLOAD_BYTES``,
  256 MiB); a ``Content-Length`` announcing more is refused before a byte is read, and the
  bytes are counted as they arrive whatever the headers say. Past a limit the partial
  file is deleted;
- a stall: no byte for ``timeout`` seconds (60; the socket's timeout, per read);
- a deadline: the whole download past ``deadline`` seconds (``DEADLINE_S``, 2 hours:
  the official archive at 25 kB/s). A stall or the deadline keeps the partial file, so
  the same command resumes it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from nnlab.errors import DataError

CHUNK = 1 << 20
CIFAR10_BYTES = 170_498_071  # the official cifar-10-python.tar.gz (the md5 in data.cifar10)
MAX_DOWNLOAD_BYTES = 256 << 20  # a hard cap on any download: 1.5x the official archive
DEADLINE_S = 2 * 3600.0


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: Path,
    md5: str,
    *,
    progress: bool | None = None,
    timeout: float = 60,
    size: int | None = None,
    max_bytes: int | None = None,
    deadline: float | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``md5``, return ``dest``.

    ``size``: the expected size in bytes, if known; ``max_bytes``: a hard cap
    (``MAX_DOWNLOAD_BYTES``); ``timeout``: seconds without a byte (a stall); ``deadline``:
    seconds for the whole download (``DEADLINE_S``). Raises DataError (one line) for
    network errors, a short read, a file past its size, a stall, the deadline, or an md5
    mismatch.
    """
    from tqdm import tqdm

    dest = Path(dest)
    if dest.is_file() and md5sum(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our partial file is at least as long as the file: start over
            part.unlink()
            options = {"size": size, "max_bytes": max_bytes, "deadline": deadline}
            return download(url, dest, md5, progress=progress, timeout=timeout, **options)
        raise DataError(f"{url}: download failed: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise DataError(f"{url}: download failed: {getattr(exc, 'reason', exc)}") from None
    with response:
        resumed = response.status == 206
        if have and not resumed:
            have = 0  # the server sent the whole file: restart instead of appending
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        limit = _limit(size, max_bytes)
        if total is not None and total > limit:
            part.unlink(missing_ok=True)
            raise DataError(
                f"{url}: the server announces {total:,} bytes, more than the {limit:,} expected; "
                "not downloading it"
            )
        bar = tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            desc=dest.name,
            disable=not (sys.stderr.isatty() if progress is None else progress),
            leave=False,
        )
        try:
            with open(part, "ab" if resumed else "wb") as f:
                _copy(response, f, url, bar, limit, _deadline(deadline))
                f.flush()
                os.fsync(f.fileno())
        except TimeoutError:  # socket.timeout: no byte for `timeout` seconds
            raise DataError(
                f"{url}: the server sent nothing for {timeout:g} s (stalled after "
                f"{part.stat().st_size:,} bytes); run the same command again to resume"
            ) from None
        except _TooLarge:
            part.unlink(missing_ok=True)
            raise DataError(
                f"{url}: the server sent more than the {limit:,} bytes expected; the partial "
                "file was deleted"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(
                f"{url}: download interrupted after {part.stat().st_size} bytes ({exc}); run the same command again to resume"
            ) from None
        finally:
            bar.close()
    on_disk = part.stat().st_size
    if total is not None and on_disk < total:
        raise DataError(
            f"{url}: download stopped at {on_disk} of {total} bytes; run the same command again to resume"
        )
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise DataError(
            f"{url}: md5 mismatch (got {got}, expected {md5}); the partial file was deleted, try again"
        )
    os.replace(part, dest)
    return dest


class _TooLarge(Exception):
    """The file grew past its limit (``download`` deletes it and says so)."""


def _limit(size: int | None, max_bytes: int | None) -> int:
    cap = MAX_DOWNLOAD_BYTES if max_bytes is None else max_bytes
    return min(size, cap) if size is not None else cap


def _deadline(deadline: float | None) -> float:
    return DEADLINE_S if deadline is None else deadline


def _copy(response, f, url: str, bar, limit: int, seconds: float) -> None:
    """Append the response's bytes to ``f`` until it ends, up to ``limit`` bytes in ``f`` and
    for ``seconds``. ``read1`` returns what one read gave (a byte a minute still passes the
    stall timeout, but not the deadline)."""
    until = time.monotonic() + seconds
    written = f.tell()
    while block := response.read1(CHUNK):
        written += len(block)
        if written > limit:
            raise _TooLarge
        f.write(block)
        bar.update(len(block))
        if time.monotonic() > until:
            raise DataError(
                f"{url}: the download took longer than {seconds:g} s "
                f"({written:,} bytes so far); run the same command again to resume"
            )

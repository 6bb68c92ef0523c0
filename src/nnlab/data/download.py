"""Fetch a file over HTTP(S) with a progress bar, resume, and an md5 check.

The file grows as ``DEST.part``; an interrupted download resumes from where it
stopped (an HTTP ``Range`` request), or restarts when the server ignores the
range. Only a file whose md5 matches is renamed to ``DEST``; a mismatch deletes
the partial file, so the next try starts clean. URL and md5 are parameters, so
tests point them at a local server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from nnlab.errors import DataError

CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(
    url: str, dest: Path, md5: str, *, progress: bool | None = None, timeout: float = 60
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``md5``, return ``dest``.

    Raises DataError (one line) for network errors, a short read or an md5 mismatch.
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
            return download(url, dest, md5, progress=progress, timeout=timeout)
        raise DataError(f"{url}: download failed: HTTP {exc.code} {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise DataError(f"{url}: download failed: {getattr(exc, 'reason', exc)}") from None
    with response:
        resumed = response.status == 206
        if have and not resumed:
            have = 0  # the server sent the whole file: restart instead of appending
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
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
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
                f.flush()
                os.fsync(f.fileno())
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(
                f"{url}: download interrupted after {part.stat().st_size} bytes ({exc}); run the same command again to resume"
            ) from None
        finally:
            bar.close()
    size = part.stat().st_size
    if total is not None and size < total:
        raise DataError(
            f"{url}: download stopped at {size} of {total} bytes; run the same command again to resume"
        )
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise DataError(
            f"{url}: md5 mismatch (got {got}, expected {md5}); the partial file was deleted, try again"
        )
    os.replace(part, dest)
    return dest

"""How big a sweep is, counted before anything is expanded, and the names of its run folders.

A grid is a product: ``--grid a=1..1000 --grid b=1..1000`` is 10^6 runs. The count is the
product of the value lists' lengths times the seeds (``count_runs``), known before a
single config is built, so ``check_sweep_size`` refuses a sweep of more than ``MAX_RUNS``
runs (10,000) at once, before any folder is created, and announces a large one
(``ANNOUNCE_RUNS`` or more) on stderr before its runs are validated one by one.
``--max-runs N`` (``max_runs=N`` in the API) raises the cap for a sweep meant to be
that large.

Run folders are named after their overrides (``optim.lr=0.01__seed=0``); a name longer
than ``MAX_NAME_BYTES`` is cut and given a digest of the whole name (``short_name``), so
a long list value cannot make a name the file system refuses (255 bytes on most).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Mapping, Sized

from nnlab.errors import ConfigError

MAX_RUNS = 10_000  # a larger sweep needs --max-runs N: 10^4 runs is days of CPU
ANNOUNCE_RUNS = 100  # from this many runs, the sweep says how many before validating them
MAX_NAME_BYTES = 200  # a run folder's name, well under the usual 255-byte limit
_KEPT_BYTES = 160  # of a longer name, the start kept before its digest


def count_runs(grid: Mapping[str, Sized], n_seeds: int) -> int:
    """The sweep's runs: the product of each key's number of values, times the seeds."""
    return math.prod(len(values) for values in grid.values()) * n_seeds


def check_sweep_size(grid: Mapping[str, Sized], n_seeds: int, max_runs: int | None = None) -> int:
    """The number of runs; a ConfigError past ``max_runs`` (default ``MAX_RUNS``), one line on
    stderr from ``ANNOUNCE_RUNS`` runs on. Nothing is expanded or written here."""
    cap = MAX_RUNS if max_runs is None else max_runs
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ConfigError(f"--max-runs: must be an integer >= 1, got {cap!r}")
    n = count_runs(grid, n_seeds)
    shape = " x ".join(
        [*(f"{len(v):,} {k}" for k, v in grid.items()), f"{n_seeds:,} seed{'s' * (n_seeds != 1)}"]
    )
    if n > cap:
        raise ConfigError(
            f"sweep: {n:,} runs ({shape}) is more than --max-runs {cap:,}; "
            "sweep fewer values, or raise --max-runs if you mean it"
        )
    if n >= ANNOUNCE_RUNS:
        print(f"sweep: {n:,} runs ({shape}); checking each config", file=sys.stderr, flush=True)
    return n


def short_name(name: str) -> str:
    """``name`` if it fits ``MAX_NAME_BYTES`` in UTF-8, else its start and a digest of it all
    (the same name always gives the same folder, so reruns find their runs)."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    start = raw[:_KEPT_BYTES].decode("utf-8", "ignore")  # never cut a character in half
    return f"{start}~{digest}"

"""Where the runs of a sweep train: in this process, or in a pool of worker processes.

A sweep hands its unfinished runs here as groups (runs that may train as one
stack of seeds, see ``group_runs``); ``run_local`` trains every group and calls
back as each run finishes, so the sweep can rewrite ``results.csv`` as it goes.
This module is the one place the experiments call the engine (``ray_backend.py``
runs the same ``train_group`` in Ray tasks; ``dispatch.py`` picks one of the two).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnlab.config import Config

Group = list[tuple[str, "Config"]]  # (run name, its config), trained together
OnDone = Callable[[str, dict[str, Any]], None]  # (run name, its summary)


def group_runs(todo: Group) -> list[Group]:
    """Runs equal but for ``train.seed`` (and ``[data]``) form a group, in plan order."""
    from nnlab.engine.run import group_runs as engine_group_runs

    return engine_group_runs(todo)


def train_group(
    group: Group, out: str, threads: int, progress: str = "off"
) -> list[tuple[str, dict[str, Any]]]:
    """Train one group into ``out`` (seeds stacked where they may be); ``(name, summary)`` per run."""
    from nnlab.engine.run import train_group as engine_train_group

    return engine_train_group(group, out, threads, progress)


def run_local(
    groups: list[Group], out: Path, jobs: int, on_done: OnDone, progress: str = "off"
) -> None:
    """Train ``groups`` into ``out``: in this process (``jobs`` = 1) or in ``jobs`` workers.

    ``on_done(name, summary)`` runs in this process as each run finishes; ``progress`` is
    each run's own display (``off``, ``lines``, ``bar``). Workers
    split the cores between them. Ctrl-C (or a failed run) stops every worker at
    once rather than after the queued runs; what they wrote stays consistent,
    since runs write files atomically and resume from their last checkpoint.
    """
    jobs = max(1, min(jobs, len(groups) or 1))
    if jobs == 1:
        for group in groups:
            for name, summary in train_group(group, str(out), 0, progress):
                on_done(name, summary)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)

    def finished(results: list[tuple[str, dict[str, Any]]]) -> None:
        for name, summary in results:
            on_done(name, summary)

    run_in_workers(
        [(train_group, (group, str(out), threads, progress)) for group in groups],
        jobs,
        threads,
        finished,
        stopped=f"the sweep's workers were stopped; rerun the same command to resume {out}",
    )


def run_in_workers(
    tasks: list[tuple[Callable[..., Any], tuple]],
    jobs: int,
    threads: int,
    on_result: Callable[[Any], None],
    stopped: str,
) -> None:
    """Call each ``(function, args)`` of ``tasks`` in ``jobs`` spawned worker processes of
    ``threads`` threads each; ``on_result(result)`` runs in this process as each returns.

    Ctrl-C, SIGTERM (then one line: ``stopped``, exit 143) or a failed task stop every
    worker at once rather than after the queued tasks. Killing a worker is safe: run
    folders are written atomically and resume drops rows past ``last.pt``.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    previous = _catch_sigterm()
    try:
        with ProcessPoolExecutor(
            max_workers=jobs,
            # spawn: a clean interpreter per worker (fork and torch's thread pools do not mix)
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads, os.getpid()),
        ) as pool:
            futures = [pool.submit(function, *args) for function, args in tasks]
            try:
                for fut in as_completed(futures):
                    on_result(fut.result())
            except BaseException as exc:  # Ctrl-C, SIGTERM or a failed task: stop now
                for f in futures:
                    f.cancel()
                # The executor has no public way to stop running calls.
                for proc in list(pool._processes.values()):
                    proc.terminate()
                if isinstance(exc, Terminated):
                    print(f"nnlab: terminated (SIGTERM); {stopped}", file=sys.stderr)
                raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(SystemExit):
    """SIGTERM reached a sweep's parent: its workers are stopped, then it exits 143."""


def _catch_sigterm():
    """Make SIGTERM raise ``Terminated`` in this (main) thread, as Ctrl-C raises
    KeyboardInterrupt; the handler it replaces (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


def _init_worker(threads: int, parent: int | None = None) -> None:
    """Runs first in each worker process, before numpy or torch is imported there.

    BLAS libraries (the NumPy backend's matmuls) size their thread pools from these
    variables when they load, so each worker uses its share of the cores, not all of them.
    Ctrl-C reaches every process of the terminal's group: workers ignore it, and the
    parent stops them (``run_local``, also on SIGTERM), so an interrupted worker never picks
    up the next run; a worker whose parent dies (even by kill -9) gets SIGTERM.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def _die_with_parent(parent: int | None) -> None:
    """Linux: SIGTERM this worker when its parent dies, even by kill -9 (prctl
    PR_SET_PDEATHSIG), so no orphan goes on writing into the sweep folder."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)

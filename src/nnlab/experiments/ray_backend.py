"""Where the runs of a sweep (and the trials of a study) train on Ray: an embedded local
instance, or a cluster.

Each group of runs (``backends.group_runs``: the seeds of one setting may train as
one stack) is one Ray task that asks for what it needs: ``train.threads`` CPUs (1
when it is 0, "pick for the model"), plus one GPU for a CUDA run. The task is the
local backend's ``train_group``, so a run folder is the same whichever backend
wrote it, and ``results.csv`` too (but for the time columns).

Fault tolerance comes from the run folders, not from Ray: a task whose worker dies
is retried (``RETRIES`` times) and ``train_group`` resumes each unfinished run from
its ``last.pt``; runs a killed attempt had finished are read back, not retrained.
Ctrl-C (or SIGTERM) force-cancels the outstanding tasks, which kills their
workers; rerunning the command resumes. On a cluster ``out`` must be on a file
system every node sees at the same path (docs/scale-out.md).

``nnlab tune --backend ray`` (``run_ray_tune``) runs ``--jobs`` tune workers as Ray
tasks the same way; they share the study through its storage.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnlab.errors import ConfigError, NnlabError, RunError, first_line
from nnlab.experiments.backends import Group, OnDone, Terminated, _catch_sigterm
from nnlab.extras import require

if TYPE_CHECKING:
    from nnlab.config import Config
    from nnlab.experiments.tune_study import TuneJob

MISSING = "--backend ray needs Ray: pip install 'nnlab[ray]'"
RETRIES = 3  # attempts after a worker dies (each resumes from the runs' last checkpoints)
CONNECT_TIMEOUT_S = 5.0  # for the check that something listens at --address
LOG_GRACE_S = 1.0  # before disconnecting, for the workers' last lines (see _session)
POLL_S = 0.5  # how often the driver wakes up while it waits (so Ctrl-C is seen at once)
# Environment the runs read, handed from the driver to each task (a cluster's workers
# were started elsewhere, with their own environment).
FORWARDED_ENV = ("NNLAB_DATA",)


def check_ray_installed() -> None:
    """A one-line ConfigError naming the extra to install when Ray is not (not importing it)."""
    require("ray", MISSING)


def import_ray(embedded: bool):
    """``ray``, its settings made first (Ray reads them once, when it is imported).

    No usage statistics, no folding of workers' repeated lines. An ``embedded`` Ray is a one-machine Ray on the loopback address
    (on Linux Ray otherwise swaps 127.0.0.1 for the machine's address, reachable from
    outside), with token authentication by a token made for this process and the workers
    it starts (nothing written to ``~/.ray``, nothing for Ray to warn about). A cluster's
    settings are left as they are, and so are those of a process that imported Ray already.
    """
    check_ray_installed()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A worker's lines (a trial's result, a run's progress) each say something: show them
    # all, and without colour codes when they go to a file.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    if embedded and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # i.e. one machine
        if "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray

    return ray


def check_ray_config(cfg: Config) -> None:
    """What the Ray backend cannot run, as a ConfigError, before anything starts."""
    device = cfg.train.device
    if device.startswith("cuda:"):
        raise ConfigError(
            f"train.device={device}: with --backend ray each run trains on the GPU Ray gives "
            "its task; use cuda or auto"
        )


def run_ray(
    todo: Group, out: Path, on_done: OnDone, progress: str = "off", address: str | None = None
) -> None:
    """Train ``todo`` into ``out`` as Ray tasks; ``on_done(name, summary)`` here as each ends.

    ``address`` None starts an embedded Ray on this machine (every core, loopback only,
    no dashboard) and stops it at the end; ``"auto"`` or ``HOST:PORT`` joins a running
    cluster. A process already connected to Ray (``ray.init`` by the caller) is reused.
    """
    for _, cfg in todo:
        check_ray_config(cfg)
    # a worker's output reaches this terminal line by line, through Ray: no progress bars
    progress = "lines" if progress == "bar" else progress
    with _session(address) as (ray, nodes):
        has_gpus = any(r.get("GPU", 0) > 0 for r in nodes)
        tasks = [(group, *task_resources(group, has_gpus)) for group in ray_groups(todo)]
        for group, cpus, gpus in tasks:
            _check_feasible(group[0][0], cpus, gpus, nodes)
        remote = ray.remote(max_retries=RETRIES, retry_exceptions=False)(train_group_task)
        where = (os.getcwd(), _forwarded_env())
        pending = {}
        for group, cpus, gpus in tasks:
            ref = remote.options(num_cpus=cpus, num_gpus=gpus).remote(
                group, str(Path(out).resolve()), cpus, progress, *where
            )
            pending[ref] = group

        def collect(ref, group: Group) -> None:
            for name, summary in _result(ray, ref, ", ".join(n for n, _ in group)):
                on_done(name, summary)

        _wait_all(
            ray,
            pending,
            collect,
            f"the sweep's Ray tasks were cancelled; rerun the same command to resume {out}",
        )


def run_ray_tune(job: TuneJob, jobs: int, address: str | None = None) -> None:
    """``nnlab tune --backend ray``: ``jobs`` Ray tasks, each a worker (``tune.run_worker``)
    running trials of ``job``'s study until it holds its budget.

    Each task asks for one trial's resources (as a sweep's run). A task whose worker dies
    is retried; the new worker fails the killed trial, uncounted, and the budget makes it
    up. Workers share the study through ``job.storage``: on a cluster an RDB server
    (PostgreSQL) every node reaches, and ``job.out`` on a shared file system.
    """
    check_ray_config(job.base)
    with _session(address) as (ray, nodes):
        has_gpus = any(r.get("GPU", 0) > 0 for r in nodes)
        cpus, gpus = task_resources([("trial", job.base)], has_gpus)
        _check_feasible("a trial", cpus, gpus, nodes)
        remote = ray.remote(max_retries=RETRIES, retry_exceptions=False)(tune_worker_task)
        where = (os.getcwd(), _forwarded_env())
        pending = {
            remote.options(num_cpus=cpus, num_gpus=gpus).remote(job, i, cpus, *where): i
            for i in range(max(1, jobs))
        }
        _wait_all(
            ray,
            pending,
            lambda ref, i: _result(ray, ref, f"tune worker {i}"),
            f"the study's Ray tasks were cancelled; rerun the same command to continue {job.out}",
        )


@contextmanager
def _session(address: str | None) -> Iterator[tuple[Any, list[dict[str, float]]]]:
    """``(ray, the alive nodes' resources)`` while connected (see ``run_ray``); SIGTERM
    raises ``Terminated`` meanwhile, as in the local backend."""
    ray = import_ray(embedded=address is None)
    started = _connect(ray, address)
    previous = _catch_sigterm()
    try:
        yield ray, [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        # Workers' lines reach this process through Ray's log monitor, which polls their
        # files: give it a moment, or the last trial's line is lost with the connection.
        time.sleep(LOG_GRACE_S)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if started:
            ray.shutdown()


def _wait_all(ray, pending: dict[Any, Any], collect: Callable[[Any, Any], Any], cancelled: str):
    """Wait for every task of ``pending`` (ref -> what it runs), ``collect(ref, what)`` as
    each ends. Ctrl-C, SIGTERM or a failed task force-cancels the others at once (their
    workers are killed; what they wrote stays consistent) and says ``cancelled``."""
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                collect(ref, pending.pop(ref))
    except BaseException as exc:
        for ref in pending:
            ray.cancel(ref, force=True)
        if pending and isinstance(exc, Terminated | KeyboardInterrupt):  # the CLI: "interrupted"
            why = "terminated (SIGTERM); " if isinstance(exc, Terminated) else ""
            print(f"nnlab: {why}{cancelled}", file=sys.stderr)
        raise


def _forwarded_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def _enter(cwd: str, env: dict[str, str]) -> None:
    """In a task: the driver's working folder where this node has it (relative paths in a
    config mean the same there), and the environment the runs read."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    os.environ.update(env)


def ray_groups(todo: Group) -> list[Group]:
    """The groups of ``todo``: seeds stacked as ``group_runs`` does, where this machine can
    tell (a run for a named device, e.g. cuda, trains alone: its worker has the device,
    this driver may not)."""
    from nnlab.experiments.backends import group_runs

    here = [(n, c) for n, c in todo if c.train.device in ("auto", "cpu")]
    alone = {n for n, c in todo if c.train.device not in ("auto", "cpu")}
    groups = group_runs(here)
    groups += [[(n, c)] for n, c in todo if n in alone]
    return groups


def task_resources(group: Group, cluster_has_gpus: bool) -> tuple[int, int]:
    """``(num_cpus, num_gpus)`` a group's task asks Ray for.

    CPUs: ``train.threads`` (1 when 0: the small models nnlab stacks run on one thread);
    one GPU for a CUDA run, and for an ``auto`` run alone on a cluster that has GPUs
    (a stack of seeds always trains on the CPU).
    """
    cfg = group[0][1]
    cpus = max(1, cfg.train.threads)
    if cfg.model.backend == "numpy":
        return cpus, 0
    device = cfg.train.device
    wants_gpu = device == "cuda" or (device == "auto" and cluster_has_gpus and len(group) == 1)
    return cpus, 1 if wants_gpu else 0


def train_group_task(
    group: Group, out: str, threads: int, progress: str, cwd: str, env: dict[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """One Ray task of a sweep: ``train_group`` in a worker; ``(name, summary)`` per run.

    A retry after a worker died reads back the runs the killed attempt finished and trains
    the rest, each resuming from its last checkpoint.
    """
    from nnlab.experiments.backends import train_group
    from nnlab.runs import RunFolder, read_json

    _enter(cwd, env)
    finished = {n for n, _ in group if RunFolder(Path(out) / n).finished}
    results = [(n, read_json(Path(out) / n / "summary.json")) for n in sorted(finished)]
    rest = [(n, c) for n, c in group if n not in finished]
    return results + (train_group(rest, out, threads, progress) if rest else [])


def tune_worker_task(job: TuneJob, worker: int, threads: int, cwd: str, env: dict[str, str]) -> int:
    """One Ray task of a study: ``tune.run_worker``; how many trials it ran."""
    from nnlab.experiments.tune import run_worker

    _enter(cwd, env)
    return run_worker(job, worker, threads)


def _check_feasible(what: str, cpus: int, gpus: int, nodes: list[dict[str, float]]) -> None:
    """A RunError when no node of the cluster has what the task asks (Ray would wait forever)."""
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        return
    needs = f"{cpus} CPU(s)" + (f" and {gpus} GPU" if gpus else "")
    raise RunError(
        f"{what}: its Ray task needs {needs} (train.threads, train.device), "
        "more than any node of the Ray cluster has"
    )


def _result(ray, ref, what: str) -> Any:
    """A finished task's result; a user error raised in it as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, NnlabError):
            raise exc.cause from None  # one line on the CLI, as with the local backend
        raise
    except ray.exceptions.RayError as exc:  # its worker died RETRIES + 1 times, lost node, ...
        first = first_line(exc)
        raise RunError(
            f"ray: the task training {what} failed ({type(exc).__name__}: {first[:200]}); "
            "rerun the same command to resume"
        ) from None


def check_address(address: str) -> None:
    """A one-line error at once for an address that is not ``HOST:PORT``, or where nothing
    listens (Ray itself retries for minutes, printing as it goes). ``auto`` is Ray's to find
    (it fails at once)."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected HOST:PORT or auto")
    hosts = [host.strip("[]")]
    if host in ("localhost", "127.0.0.1", "::1"):  # Ray swaps these for the node's address
        hosts.append(import_ray(embedded=False).util.get_node_ip_address())
    problem = ""
    for candidate in hosts:
        try:
            socket.create_connection((candidate, int(port)), timeout=CONNECT_TIMEOUT_S).close()
            return
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
    raise RunError(
        f"--address {address}: no Ray cluster answers there ({problem}); start one with "
        "`ray start --head` (docs/scale-out.md), or leave --address out for a Ray on this machine"
    )


def _connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address``, or start an embedded Ray; True if this call started it."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address is not None:
        check_address(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            first = first_line(exc)
            raise RunError(f"--address {address}: cannot join a Ray cluster ({first})") from None
        return True
    ray.init(
        address="local",
        num_cpus=os.cpu_count() or 1,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",  # loopback only: nothing outside this machine joins
        **quiet,
    )
    return True

"""Which backend trains a sweep's runs: ``local`` (``backends.run_local``: this process or
``jobs`` worker processes) or ``ray`` (``ray_backend.run_ray``: Ray tasks, on an embedded
Ray or a cluster). Ray is imported only when it is asked for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nnlab.errors import ConfigError
from nnlab.experiments.backends import Group, OnDone, group_runs, run_local

if TYPE_CHECKING:
    from nnlab.config import Config

BACKENDS = ("local", "ray")


def check_backend(
    backend: str, address: str | None = None, jobs: int = 1, cfg: Config | None = None
) -> None:
    """A one-line error, before anything is written, for a backend that is not one, an
    option it does not take, Ray not installed, a config (``cfg``) Ray cannot run, or an
    ``address`` where no Ray cluster answers."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "ray":
        if address is not None:
            raise ConfigError("--address: joins a Ray cluster; it needs --backend ray")
        return
    if jobs != 1:
        raise ConfigError(
            "--jobs: is for the local backend; Ray runs as many runs at once as the cluster's "
            "CPUs (and GPUs) allow"
        )
    from nnlab.experiments.ray_backend import check_address, check_ray_config, check_ray_installed

    check_ray_installed()
    if cfg is not None:
        check_ray_config(cfg)
    if address is not None:
        check_address(address)


def run_runs(
    todo: Group,
    out: Path,
    on_done: OnDone,
    *,
    jobs: int = 1,
    progress: str = "off",
    backend: str = "local",
    address: str | None = None,
) -> None:
    """Train the runs ``todo`` (``(name, config)`` pairs) into ``out`` on ``backend``;
    ``on_done(name, summary)`` runs in this process as each run finishes."""
    if backend == "ray":
        from nnlab.experiments.ray_backend import run_ray

        run_ray(todo, out, on_done, progress, address)
    else:
        run_local(group_runs(todo), out, jobs, on_done, progress)

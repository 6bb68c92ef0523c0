"""Sweeps on Ray (``--backend ray``): the same run folders and results.csv as the local backend.

One real Ray cluster serves the module: ``ray start --head`` on 127.0.0.1 (loopback only:
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps Ray from swapping in the machine's address),
with a token of its own, in a process group of its own that the teardown stops. Sweeps
join it with ``--address``. A worker killed mid-run (SIGKILL, found through the lock file
its run holds, and checked to be a process of this cluster) is retried by Ray and its run
resumes from ``last.pt``: the rows it had written stay byte for byte (a restart would
rewrite their ``elapsed_s``), and results.csv
equals the local backend's but for the time column. Ctrl-C cancels the tasks; a rerun resumes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, assert_one_line_error, run_cli

if os.environ.get("CI") != "true":
    pytest.importorskip("ray", reason="Ray is the optional extra nnlab[ray]")

pytestmark = pytest.mark.slow

TIME_COLUMNS = {"train_seconds"}
# Tiny runs for equality (seeds stack), and runs long enough (~2 s each on an idle 2-core
# machine) to be killed mid-way; alone (seeds 1), so each has its own last.pt to resume from.
TINY = ["--grid", "optim.lr=0.1,0.01", "--seeds", "2"]
TINY += ["--set", "train.epochs=20", "--set", "data.n_samples=200"]
LONG = ["--grid", "optim.lr=0.1,0.01", "--seeds", "1"]
LONG += [
    "--set",
    "train.epochs=600",
    "--set",
    "data.n_samples=200",
    "--set",
    "train.eval_every=20",
]
WAIT_S = 300  # an upper bound for liveness waits only: nothing asserts how long anything took


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_times(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows]


def assert_same_results(a: Path, b: Path) -> None:
    rows_a, rows_b = read_rows(a / "results.csv"), read_rows(b / "results.csv")
    assert rows_a and list(rows_a[0]) == list(rows_b[0])  # same columns, in order
    assert without_times(rows_a) == without_times(rows_b)


# --------------------------------------------------------------------------- the cluster


class Cluster:
    """``ray start --head --block`` on 127.0.0.1, in its own session (stopped as a group)."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        # Ray's socket paths must stay short (AF_UNIX: 107 bytes): /tmp/nr-XXXX, not tmp_path
        self.temp = Path(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "src"),
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # one machine: bind 127.0.0.1, not its IP
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),  # no ~/.ray/auth_token written
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        ray = Path(sys.executable).with_name("ray")
        self.proc = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1"]
            + [f"--port={self.port}", "--num-cpus=2", "--include-dashboard=false"]
            + ["--disable-usage-stats", f"--temp-dir={self.temp}"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.log: list[str] = []
        ready = threading.Event()

        def follow() -> None:
            for line in self.proc.stdout:
                self.log.append(line)
                if "Ray runtime started" in line:
                    ready.set()
            ready.set()  # exited: the check below says so

        threading.Thread(target=follow, daemon=True).start()
        ready.wait(WAIT_S)
        if self.proc.poll() is not None or not ready.is_set():
            self.stop()
            pytest.fail("ray start --head failed:\n" + "".join(self.log[-30:]))

    def sweep(self, *args: str, cwd: Path, command: str = "sweep") -> subprocess.Popen:
        """``nnlab sweep moons ARGS --backend ray --address`` this cluster, in its own group."""
        return subprocess.Popen(
            [sys.executable, "-m", "nnlab", command, "moons", *args]
            + ["--backend", "ray", "--address", self.address],
            cwd=cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # as a terminal's foreground job: Ctrl-C is its group's
        )

    def owns(self, pid: int) -> bool:
        """True for a live process of this cluster (its session): never kill another."""
        try:
            return os.getsid(pid) == self.proc.pid
        except ProcessLookupError:
            return False

    def stop(self) -> None:
        """Stop the head and everything it started (its session), by pid: other Ray
        instances on the machine are left alone (``ray stop`` would stop them all). SIGKILL:
        on SIGTERM a head "drains" for up to 30 s, and nothing of this cluster is kept."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        for pid in self._members():  # one that left the process group, not the session
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(self.temp)], check=False)

    def _members(self) -> list[int]:
        out = subprocess.run(["pgrep", "-s", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


@pytest.fixture(scope="module")
def cluster():
    started = Cluster()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def local_long(tmp_path_factory) -> Path:
    """The LONG sweep on the local backend: what the Ray sweeps must equal."""
    where = tmp_path_factory.mktemp("local")
    proc = run_cli("sweep", "moons", *LONG, "--jobs", "2", "--out", "L", cwd=where)
    assert proc.returncode == 0, proc.stderr
    return where / "L"


def worker_of(run: Path, cluster: Cluster, sweep: subprocess.Popen) -> int | None:
    """The pid of the cluster worker training ``run`` (its lock file holds it), once the
    run has a checkpoint and two evaluations; None before that."""
    lock, metrics = run / ".lock", run / "metrics.csv"
    if not (run / "checkpoints" / "last.pt").exists() or not metrics.exists():
        return None
    if len(metrics.read_text().splitlines()) < 3:  # header + 2 rows: rows to keep on resume
        return None
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != sweep.pid and cluster.owns(pid) else None


def wait_for_worker(out: Path, cluster: Cluster, sweep: subprocess.Popen) -> tuple[Path, int]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        for run in sorted(out.glob("optim.lr=*")):
            pid = worker_of(run, cluster, sweep)
            if pid is not None and not (run / "summary.json").exists():
                return run, pid
        time.sleep(0.05)
    pytest.fail(f"no run in {out} reached a checkpoint")


def rows_to_keep(run: Path) -> list[str]:
    """metrics.csv's lines but the last (it may be torn, or its last.pt not yet written):
    every later checkpoint is past them, so a resumed run keeps them as they are."""
    return (run / "metrics.csv").read_text().splitlines()[:-1]


def assert_resumed(run: Path, kept: list[str]) -> None:
    """The run finished and kept the rows written before the kill, byte for byte."""
    assert (run / "summary.json").exists()
    final = (run / "metrics.csv").read_text().splitlines()
    assert len(kept) >= 2 and final[: len(kept)] == kept  # header + at least one row


# --------------------------------------------------------------------------- the tests


def test_ray_is_imported_only_for_the_ray_backend(tmp_path):
    """``nnlab --help``, config validation and a local sweep never import ray."""
    code = (
        "import sys\n"
        "from nnlab.cli import main\n"
        "from nnlab.config import load_config\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "load_config('moons', {'optim.lr': '0.1'})\n"
        "assert main(['sweep', 'moons', '--set', 'train.epochs=2', '--set',"
        " 'data.n_samples=100', '--out', 'S']) == 0\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_without_ray_the_backend_names_the_extra(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    assert_one_line_error(cli("sweep", "moons", "--backend", "ray"), "pip install 'nnlab[ray]'")
    assert not any((Path.cwd() / "runs").glob("sweep-*"))  # nothing written


def test_bad_backend_options_are_one_line_errors(cli):
    assert_one_line_error(cli("sweep", "moons", "--address", "auto"), "--address", "--backend ray")
    assert_one_line_error(cli("sweep", "moons", "--backend", "ray", "--jobs", "2"), "--jobs")
    # one run trains in this process; the seeds of --seeds N may go to Ray
    assert_one_line_error(cli("train", "moons", "--backend", "ray"), "--backend", "--seeds N")
    assert_one_line_error(cli("train", "moons", "--address", "auto"), "--seeds N")
    assert_one_line_error(
        cli("train", "moons", "--seeds", "2", "--address", "auto"), "--address", "--backend ray"
    )
    assert_one_line_error(
        cli("sweep", "moons", "--backend", "ray", "--set", "train.device=cuda:1"),
        "cuda:1",
        "cuda or auto",
    )
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nobody = cli(
        "sweep", "moons", "--backend", "ray", "--address", f"127.0.0.1:{port}", "--out", "X"
    )
    assert_one_line_error(nobody, "no Ray cluster answers", "ray start --head")
    assert not (Path.cwd() / "X").exists()  # refused before anything was written
    bad = ["--param", "optim.lr=loguniform(1e-3,1e-1)", "--backend", "ray", "--address", "x"]
    assert_one_line_error(cli("tune", "moons", *bad), "HOST:PORT")
    import nnlab
    from nnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="backend"):
        nnlab.sweep("moons", {"optim.lr": [0.1]}, backend="slurm")
    with pytest.raises(ConfigError, match="backend: applies to several seeds"):
        nnlab.train("moons", backend="ray")


def test_embedded_ray_gives_the_local_backends_results(tmp_path):
    """No --address: an embedded Ray on this machine; seeds stack as they do locally."""
    local = run_cli("sweep", "moons", *TINY, "--out", "L", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    ray = run_cli("sweep", "moons", *TINY, "--backend", "ray", "--out", "R", cwd=tmp_path)
    assert ray.returncode == 0, ray.stderr
    assert "Traceback" not in ray.stderr and "WARNING" not in ray.stderr
    assert_same_results(tmp_path / "L", tmp_path / "R")
    assert len(read_rows(tmp_path / "R" / "results.csv")) == 4
    summary = json.loads((tmp_path / "R" / "optim.lr=0.1__seed=1" / "summary.json").read_text())
    assert summary["stacked"] == 2  # the seeds trained as one stack, as they do locally


def test_a_killed_worker_is_retried_and_its_run_resumes(cluster, local_long, tmp_path):
    sweep = cluster.sweep(*LONG, "--out", "R", cwd=tmp_path)
    run, pid = wait_for_worker(tmp_path / "R", cluster, sweep)
    kept = rows_to_keep(run)
    os.kill(pid, signal.SIGKILL)
    out, err = sweep.communicate(timeout=WAIT_S)
    assert sweep.returncode == 0, err
    assert_resumed(run, kept)
    assert_same_results(local_long, tmp_path / "R")


def test_ctrl_c_cancels_the_tasks_and_a_rerun_resumes(cluster, local_long, tmp_path):
    sweep = cluster.sweep(*LONG, "--out", "R", cwd=tmp_path)
    run, pid = wait_for_worker(tmp_path / "R", cluster, sweep)
    kept = rows_to_keep(run)
    os.killpg(sweep.pid, signal.SIGINT)  # Ctrl-C in the sweep's terminal
    _, err = sweep.communicate(timeout=WAIT_S)
    assert sweep.returncode == 130, err
    assert "cancelled" in err and "rerun the same command" in err
    assert "Traceback" not in err
    deadline = time.monotonic() + WAIT_S
    while cluster.owns(pid) and time.monotonic() < deadline:  # the cancelled task's worker
        time.sleep(0.1)
    assert not cluster.owns(pid)
    assert not (tmp_path / "R" / "results.csv").exists() or len(
        read_rows(tmp_path / "R" / "results.csv")
    ) < len(read_rows(local_long / "results.csv"))
    again = cluster.sweep(*LONG, "--out", "R", cwd=tmp_path)
    _, err = again.communicate(timeout=WAIT_S)
    assert again.returncode == 0, err
    assert_resumed(run, kept)
    assert_same_results(local_long, tmp_path / "R")


def test_train_seeds_on_the_cluster_equal_the_local_seeds(cluster, tmp_path):
    """``nnlab train moons --seeds 2 --backend ray``: the seeds of one config, as Ray tasks."""
    args = ["--seeds", "2", "--set", "train.epochs=20", "--set", "data.n_samples=200"]
    local = run_cli("train", "moons", *args, "--out", "L", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    train = cluster.sweep(*args, "--out", "R", cwd=tmp_path, command="train")
    out, err = train.communicate(timeout=WAIT_S)
    assert train.returncode == 0, err
    assert "seeds 0..1" in out and "sweep folder: R" in out
    assert_same_results(tmp_path / "L", tmp_path / "R")
    assert train.pid != int((tmp_path / "R" / "seed=0" / ".lock").read_text())  # a Ray worker


def test_a_study_runs_its_trials_in_ray_tasks(cluster, tmp_path):
    """``nnlab tune --backend ray --jobs 2``: two workers on the cluster share the study."""
    pytest.importorskip("optuna")
    # no pruner: which trial the median rule stops depends on the two workers' timing
    args = ["--param", "optim.lr=loguniform(1e-3,1e-1)", "--trials", "3", "--jobs", "2"]
    args += ["--pruner", "none"]
    args += ["--set", "data.n_samples=200", "--set", "train.epochs=4", "--out", "T"]
    tune = cluster.sweep(*args, cwd=tmp_path, command="tune")
    out, err = tune.communicate(timeout=WAIT_S)
    assert tune.returncode == 0, err
    with open(tmp_path / "T" / "trials.csv", newline="") as f:
        trials = list(csv.DictReader(f))
    assert [t["state"] for t in trials] == ["COMPLETE"] * 3
    trained_by = {int((tmp_path / "T" / t["run"] / ".lock").read_text()) for t in trials}
    assert tune.pid not in trained_by  # Ray workers trained them, not the driver
    assert (tmp_path / "T" / "best.toml").is_file() and "best: trial" in out

"""Run a golden case through the CLI and read back what its run folders hold.

Shared by ``record.py`` (which writes what the old code produced) and
``tests/test_golden.py`` (which reads the code under test the same way), so the
two can only disagree about the runs, never about how a run folder is read.

What a run folder contributes, and why:

* ``metrics.csv``: every row, every column but ``elapsed_s`` (wall time), as the
  exact strings in the file: the file is the contract, and its formatting is
  part of what must not change.
* ``summary.json``: ``SUMMARY_KEYS`` (the results and how the run ended; the
  rest is timing and provenance, which differ between any two runs).
* the final weights: ``checkpoints/last.pt``'s ``model`` state, or for the NumPy
  backend ``checkpoints/last.npz``'s ``W<i>``/``b<i>`` arrays (not ``best_test_acc``,
  which also starts with ``b``). ``weights_sha256`` proves them bit-identical;
  a float64 copy (``weights/*.npz``) says by how much they differ when not.
* a sweep's ``results.csv``: ``RESULTS_COLUMNS`` of every row, in order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from golden.cases import Case

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
EXPECTED = GOLDEN / "expected.json"
WEIGHTS = GOLDEN / "weights"
# Where tests/conftest.py looks for the real CIFAR-10 copy: beside the checkout.
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
CIFAR10_FILES = ("cifar10_batches.py", "cifar10-jpeg.tar.gz")
# A CIFAR-10 subset in the official pickled layout: big enough for cnn-quick's limits.
CIFAR10_TRAIN, CIFAR10_TEST = 2000, 500

SUMMARY_KEYS = ("final_test_acc", "best_test_acc", "final_test_loss", "epochs", "status")
RESULTS_COLUMNS = ("run", "seed", "final_test_acc")
SKIPPED_METRICS = ("elapsed_s",)
# A torchrun job inherits these from an enclosing job; a case must start its own.
TORCHRUN_ENV = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)
SINGLE_RUN = "."  # the run name of a case whose --out folder is the run folder itself
TIMEOUT_S = 300.0
KILL_ATTEMPTS = 3


class CaseError(RuntimeError):
    """A case's command failed, or its output is not a run or sweep folder."""


# --------------------------------------------------------------------------- environment


def fingerprint() -> dict[str, Any]:
    """What decides the CPU arithmetic besides the code: bit-identity holds only within one.

    Recorded with the expected values; a replay under another fingerprint (another
    torch or numpy, another SIMD level, another thread budget) cannot match bit for
    bit, so the test skips instead of reporting a difference that is not the code's.
    Read in a fresh process with the cases' environment: the test process's own
    thread count may have been lowered by an earlier test.
    """
    code = (
        "import json, platform, sys, numpy as np, torch; print(json.dumps({"
        "'machine': platform.machine(), "
        "'python': f'{sys.version_info.major}.{sys.version_info.minor}', "
        "'torch': torch.__version__, 'numpy': np.__version__, "
        "'torch_cpu_capability': torch.backends.cpu.get_cpu_capability(), "
        "'torch_threads': torch.get_num_threads()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=case_env(), capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def case_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for a case's processes: ``base`` without torchrun's variables."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for name in TORCHRUN_ENV:
        env.pop(name, None)
    # A rank that waits on a dead peer fails the case in 30 s instead of hanging it.
    env["NNLAB_DIST_TIMEOUT"] = "30"
    env.update(extra)
    return env


def nnlab_location(env: dict[str, str]) -> str:
    """Which nnlab ``python -m nnlab`` imports under ``env``: the code a replay tests."""
    proc = subprocess.run(
        [sys.executable, "-c", "import nnlab; print(nnlab.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def cifar10_available(datasets: Path = SHARED_DATASETS) -> bool:
    return all((datasets / name).exists() for name in CIFAR10_FILES)


# --------------------------------------------------------------------------- running


def _command(case: Case, out: Path) -> list[str]:
    if case.launcher == "torchrun":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launcher += ["--nproc-per-node=2", "-m", "nnlab"]
    elif case.launcher == "python":
        launcher = [sys.executable, "-m", "nnlab"]
    else:
        raise ValueError(f"{case.name}: unknown launcher {case.launcher!r}")
    return [*launcher, *case.argv, "--out", str(out)]


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    """Run ``cmd`` to the end; its output goes to ``log`` (pipes could fill and block)."""
    with open(log, "ab") as f:
        f.write(f"$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise CaseError(f"exit {proc.returncode}: {' '.join(cmd)}\n{_tail(log)}")


def _tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:]


def _rows_written(metrics: Path) -> int:
    try:
        return max(0, metrics.read_bytes().count(b"\n") - 1)  # whole lines after the header
    except FileNotFoundError:
        return 0


def _kill_midway(case: Case, cmd: list[str], out: Path, env: dict[str, str], log: Path) -> int:
    """Start the run and SIGKILL it once ``case.kill_after_rows`` rows are written.

    Returns the rows written when it was killed. A run that finishes first (a
    starved poller) is started again, up to ``KILL_ATTEMPTS`` times.
    """
    for _ in range(KILL_ATTEMPTS):
        if out.exists():
            shutil.rmtree(out)
        with open(log, "ab") as f:
            f.write(f"$ {' '.join(cmd)}  # killed midway\n".encode())
            f.flush()
            proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
            try:
                _kill_when(proc, lambda: _killable(out, case.kill_after_rows))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise CaseError(f"no kill point within {TIMEOUT_S:.0f} s\n{_tail(log)}") from None
        if proc.returncode == 0 or (out / "summary.json").exists():
            continue  # it finished before the kill: nothing to resume, try again
        if proc.returncode != -signal.SIGKILL:
            raise CaseError(f"exit {proc.returncode} before the kill\n{_tail(log)}")
        return _rows_written(out / "metrics.csv")
    raise CaseError(f"the run finished before the kill, {KILL_ATTEMPTS} times\n{_tail(log)}")


def _killable(out: Path, rows: int) -> bool:
    return _rows_written(out / "metrics.csv") >= rows and (out / "checkpoints" / "last.pt").exists()


def _kill_when(proc: subprocess.Popen, ready) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; return when it has exited."""
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, TIMEOUT_S)
        time.sleep(0.005)
    proc.wait()


def prepare_cifar10(work: Path, env: dict[str, str], datasets: Path = SHARED_DATASETS) -> None:
    """Import a fixed CIFAR-10 subset into ``env["NNLAB_DATA"]``, as tests/test_cifar10.py does.

    ``cifar10_batches.py`` rebuilds the official pickled layout from the shared
    JPEG copy (a deterministic balanced subset); ``nnlab data cifar10`` imports it.
    """
    log = work / "cifar10.log"
    work.mkdir(parents=True, exist_ok=True)
    official = work / "official"
    _run(
        [
            sys.executable,
            str(datasets / "cifar10_batches.py"),
            str(official),
            "--limit-train",
            str(CIFAR10_TRAIN),
            "--limit-test",
            str(CIFAR10_TEST),
        ],
        env,
        log,
    )
    archive = official / "cifar-10-batches-py"
    _run([sys.executable, "-m", "nnlab", "data", "cifar10", "--archive", str(archive)], env, log)


@dataclass
class Replay:
    """A finished case: its output folder, what its runs hold, and what it took."""

    case: Case
    out: Path
    seconds: float
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: list[dict[str, str]] | None = None
    killed_after_rows: int | None = None


def run_case(case: Case, work: Path, env: dict[str, str], interrupt: bool) -> Replay:
    """Run ``case`` in ``work/<name>/`` and read its outputs.

    ``interrupt`` = True kills a ``kill_after_rows`` case midway and resumes it
    (the replay); False runs it straight through (the recording).
    """
    folder = work / case.name
    folder.mkdir(parents=True, exist_ok=True)
    out, log = folder / "out", folder / "output.log"
    cmd = _command(case, out)
    start = time.perf_counter()
    killed = None
    if interrupt and case.kill_after_rows:
        killed = _kill_midway(case, cmd, out, env, log)
        resume = [sys.executable, "-m", "nnlab", "resume", str(out), "--progress", "off"]
        _run(resume, env, log)
    else:
        _run(cmd, env, log)
    seconds = time.perf_counter() - start
    runs, results = read_output(out)
    return Replay(case, out, seconds, runs, results, killed)


def run_all(
    cases: list[Case],
    work: Path,
    env: dict[str, str],
    interrupt: bool,
    jobs: int = 2,
    cifar10: bool = True,
) -> tuple[ThreadPoolExecutor, dict[str, Future]]:
    """Start every case on ``jobs`` workers; the caller waits on the futures, then shuts down.

    Each case is a handful of processes that mostly import torch, so two at a time
    overlap them (the test: 83 s -> 64 s on 2 cores busy with other jobs); each run
    fixes its own torch thread count, so what runs beside it cannot change its
    arithmetic. The CIFAR-10 subset is imported first (once), and only when a case
    needs it and ``cifar10`` is True.
    """
    # Every case gets the same private data folder: none reads the user's cache.
    env = {**env, "NNLAB_DATA": str(work / "nnlab-data")}
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="golden")
    data: Future | None = None
    if cifar10 and any(case.cifar10 for case in cases):
        data = pool.submit(prepare_cifar10, work / "cifar10", env)

    def task(case: Case) -> Replay:
        if case.cifar10:
            if data is None:
                raise CaseError(f"{case.name} needs CIFAR-10 from {SHARED_DATASETS}")
            data.result()
        return run_case(case, work, env, interrupt)

    return pool, {case.name: pool.submit(task, case) for case in cases}


# --------------------------------------------------------------------------- reading


def read_output(out: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]] | None]:
    """A case's ``--out`` folder -> (run name -> run record, results.csv rows or None).

    A sweep or ``--seeds`` folder holds ``results.csv`` and one run folder per row;
    otherwise the folder is one run (named ``SINGLE_RUN``).
    """
    results_csv = out / "results.csv"
    if not results_csv.exists():
        return {SINGLE_RUN: read_run(out)}, None
    with open(results_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    results = [{k: row[k] for k in RESULTS_COLUMNS} for row in rows]
    runs = {row["run"]: read_run(out / row["run"]) for row in rows}
    return runs, results


def read_run(run: Path) -> dict[str, Any]:
    """One run folder -> metrics rows, summary values, final weights and their hash."""
    if not (run / "summary.json").exists():
        raise CaseError(f"{run} has no summary.json: the run did not finish")
    with open(run / "metrics.csv", newline="") as f:
        metrics = [
            {k: v for k, v in row.items() if k not in SKIPPED_METRICS} for row in csv.DictReader(f)
        ]
    summary = json.loads((run / "summary.json").read_text())
    weights = read_weights(run)
    return {
        "metrics": metrics,
        "summary": {k: summary.get(k) for k in SUMMARY_KEYS},
        "weights_sha256": weights_sha256(weights),
        "weights": weights,
    }


_NUMPY_PARAM = re.compile(r"[Wb]\d+")


def read_weights(run: Path) -> dict[str, np.ndarray]:
    """The final model weights, each in its own dtype (torch or NumPy backend)."""
    ckpt = run / "checkpoints"
    if (ckpt / "last.pt").exists():
        import torch

        state = torch.load(ckpt / "last.pt", map_location="cpu", weights_only=True)
        return {k: v.detach().cpu().contiguous().numpy() for k, v in state["model"].items()}
    if (ckpt / "last.npz").exists():
        with np.load(ckpt / "last.npz") as z:
            return {k: z[k] for k in z.files if _NUMPY_PARAM.fullmatch(k)}
    raise CaseError(f"{run} has neither checkpoints/last.pt nor checkpoints/last.npz")


def weights_sha256(weights: dict[str, np.ndarray]) -> str:
    """sha256 over the sorted keys, each key's dtype, shape and raw bytes.

    Key names, dtypes and shapes go in too: a renamed parameter breaks loading
    old checkpoints, so it is a change of behaviour, not only of the numbers.
    """
    h = hashlib.sha256()
    for key in sorted(weights):
        a = np.ascontiguousarray(weights[key])
        h.update(f"{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def weights_file(case: str, run: str) -> str:
    """``<case>.npz`` for a single run, ``<case>__<run>.npz`` for a run of a sweep."""
    return f"{case}.npz" if run == SINGLE_RUN else f"{case}__{run}.npz"


def save_weights(path: Path, weights: dict[str, np.ndarray]) -> None:
    """A float64 copy (compressed) of the weights, for comparisons within a tolerance."""
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    np.savez_compressed(path, **arrays)


def load_weights(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}

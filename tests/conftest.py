"""Shared fixtures. Tests never touch the network; CIFAR-10 comes from ../shared/datasets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(autouse=True, scope="session")
def _crash_files_stay_in_tmp(tmp_path_factory):
    """A bug's traceback file (nnlab/cli/crash.py) goes to a temp folder during the tests,
    never to ~/.cache/nnlab/crashes; subprocesses inherit it."""
    os.environ.setdefault("NNLAB_CRASH_DIR", str(tmp_path_factory.mktemp("crashes")))


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m nnlab ARGS`` in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "nnlab", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run the CLI in this process (fast: torch is imported once), in ``tmp_path``.

    Returns a CompletedProcess-like object; ``run_cli`` runs a real subprocess.
    """
    from nnlab.cli import main

    def _run(*args, cwd: Path | None = None):
        monkeypatch.chdir(cwd or tmp_path)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return _run


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, exactly one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def shared_dataset(name: str) -> Path:
    """A file from ../shared/datasets: skipped locally if absent, a failure in CI."""
    path = SHARED_DATASETS / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing, and CI must have it")
        pytest.skip(f"{path} not available")
    return path

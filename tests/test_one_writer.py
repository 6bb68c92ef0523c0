"""One writer per folder (docs/reliability.md): run and sweep folders are locked for the
life of the process writing them; SIGTERM stops a sweep's workers; a folder whose
creation was cut short is started over, not refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnlab.cli import main
from nnlab.runs.write import LOCK_NAME, RunDir, folder_lock, never_started, prepare_out_dir

SLOW = ["--set", "train.epochs=100000", "--set", "train.eval_every=1"]


def _nnlab(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nnlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for(predicate, what: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except OSError:
        return 0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _refused(args: list[str], folder: Path) -> None:
    """``nnlab ARGS`` exits 2 with one line naming the other writer, within seconds."""
    done = subprocess.run(
        [sys.executable, "-m", "nnlab", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "being written by another nnlab process (pid" in lines[0], lines
    assert "Traceback" not in done.stderr


def test_second_writer_of_a_run_exits_2_and_nothing_interleaves(tmp_path):
    out = tmp_path / "run"
    first = _nnlab("train", "moons", *SLOW, "--out", str(out))
    try:
        _wait_for(lambda: _rows(out / "metrics.csv") >= 2, "the first run's rows")
        config = (out / "config.toml").read_bytes()
        _refused(["train", "moons", "--set", "train.epochs=3", "--out", str(out)], out)
        _refused(["resume", str(out)], out)
        assert (out / "config.toml").read_bytes() == config
        assert (out / LOCK_NAME).read_text().strip() == str(first.pid)
    finally:
        first.kill()
        first.wait()
    epochs = [r["epoch"] for r in RunDir(out).read_metrics()]
    assert epochs == sorted(set(epochs)), "metrics rows doubled or out of order"
    # kill -9 dropped the lock: resuming is possible again (it is refused only as another writer)
    with folder_lock(out):
        pass


def test_sweep_lock_and_sigterm_stops_its_workers(tmp_path):
    out = tmp_path / "sweep"
    grid = ["--grid", "optim.lr=0.01,0.02"]
    parent = _nnlab("sweep", "moons", *grid, *SLOW, "--jobs", "2", "--out", str(out))
    try:
        runs = lambda: [p for p in out.glob("*/metrics.csv") if _rows(p) >= 1]  # noqa: E731
        _wait_for(lambda: len(runs()) == 2, "both workers' first rows")
        _refused(["sweep", "moons", *grid, "--set", "train.epochs=2", "--out", str(out)], out)
        run = runs()[0].parent
        _refused(["train", "moons", "--set", "train.epochs=2", "--out", str(run)], run)
        workers = [int((p.parent / LOCK_NAME).read_text()) for p in runs()]
        assert parent.pid not in workers
        parent.send_signal(signal.SIGTERM)
        _, err = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "terminated (SIGTERM)" in err
    _wait_for(lambda: not any(_alive(pid) for pid in workers), "the workers to die", 30)
    sizes = [p.stat().st_size for p in out.glob("*/metrics.csv")]
    time.sleep(1.0)
    assert sizes == [p.stat().st_size for p in out.glob("*/metrics.csv")], "still written"


def _cut_short(folder: Path, state: str) -> None:
    """What a kill at each point of ``RunDir.create`` (config.toml last) can leave."""
    folder.mkdir()
    (folder / LOCK_NAME).write_text("12345\n")
    if state == "lock":
        return
    (folder / "checkpoints").mkdir()
    if state == "checkpoints":
        return
    (folder / ".metrics.csv.abc.tmp").write_text("epoch,st")
    if state == "metrics-temp":
        return
    (folder / "metrics.csv").write_text("epoch,step\n")
    (folder / ".config.toml.xyz.tmp").write_text("[data]\nna")


@pytest.mark.parametrize("state", ["lock", "checkpoints", "metrics-temp", "config-temp"])
def test_a_folder_cut_short_in_creation_is_started_over(tmp_path, state, capsys):
    folder = tmp_path / "run"
    _cut_short(folder, state)
    assert never_started(folder)
    assert prepare_out_dir(folder) == folder
    assert main(["resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted before config.toml" in err[0], err
    assert main(["train", "moons", "--set", "train.epochs=2", "--out", str(folder)]) == 0
    assert RunDir(folder).finished and RunDir(folder).read_metrics()
    assert not list(folder.glob(".*.tmp"))


def test_a_run_with_config_but_no_checkpoint_resumes_from_the_start(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    assert main(["train", "moons", "--set", "train.epochs=2", "--out", str(folder)]) == 0
    (folder / "summary.json").unlink()
    for p in (folder / "checkpoints").iterdir():
        p.unlink()
    assert main(["resume", str(folder)]) == 0
    assert RunDir(folder).finished and RunDir(folder).read_metrics()


def test_a_foreign_or_finished_folder_is_never_cleared(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert not never_started(folder)
    assert main(["train", "moons", "--set", "train.epochs=2", "--out", str(folder)]) == 2
    assert (folder / "notes.txt").read_text() == "keep me"
    assert os.listdir(folder) == ["notes.txt"]


@pytest.mark.parametrize("field", ["summary", "config"])
def test_report_file_names_from_run_files_stay_under_out(tmp_path, field, capsys):
    import json

    run = tmp_path / "a" / "b" / "run"
    assert main(["train", "moons", "--set", "train.epochs=2", "--out", str(run)]) == 0
    evil = "../../../evil"
    if field == "summary":
        summary = json.loads((run / "summary.json").read_text())
        summary["preset"] = evil
        (run / "summary.json").write_text(json.dumps(summary))
        text = (run / "config.toml").read_text()
        (run / "config.toml").write_text(
            "\n".join(line for line in text.splitlines() if not line.startswith("preset")) + "\n"
        )
    else:
        text = (run / "config.toml").read_text()
        top, _, rest = text.partition("\n[")  # top-level keys come before the first table
        top = "\n".join(ln for ln in top.splitlines() if not ln.startswith(("preset", "name")))
        (run / "config.toml").write_text(f'preset = "{evil}"\nname = "{evil}"\n{top}\n[{rest}')
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "a" / "b" / "report"
    assert main(["report", str(run), "--out", str(out)]) == 0, capsys.readouterr().err
    new = {p for p in tmp_path.rglob("*")} - before
    assert new and all(p == out or out in p.parents for p in new), sorted(map(str, new))
    figures = list((out / "figures").iterdir())
    assert figures and all(not p.name.startswith(".") and "/" not in p.name for p in figures)


def test_a_path_that_is_not_utf8_is_refused_before_anything_is_written(cli, tmp_path):
    """A non-UTF-8 folder name (as os.fsdecode gives it) would make a config.toml that TOML
    cannot read back: the run could then neither resume nor be reported."""
    import os

    from conftest import assert_one_line_error

    bad = os.fsdecode(b"imgs-\xff")
    proc = cli("train", "moons", "--set", f"data.dir={bad}", "--out", str(tmp_path / "r"))
    assert_one_line_error(proc, "data.dir", "UTF-8")
    assert not (tmp_path / "r").exists()

"""`nnlab reproduce` end to end at a tiny scale, and the sweep engine it runs on.

Proves: the quick and full experiment lists load (every preset, override and
grid is valid) and cover every experiment of the course report; the real quick
list runs end to end (``--smoke``: the same steps, seconds long) with CIFAR-10
imported from the official format, writing every sweep and the report, and a
second call skips what is finished; without CIFAR-10 it says once how to get it
and runs the rest; with --download-cifar10 it tries one download (a local
server here) and, when that fails, says so in one line and runs the rest. The
quick list runs presets as written (no overrides): its rows are what they do. The sweep prints a line per finished run, stops cleanly on
Ctrl-C with worker processes (exit 130, no traceback, within seconds) and the
next call resumes; worker processes never get more threads than their share.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, shared_dataset
from nnlab.config import load_config
from nnlab.experiments.reproduce import FULL, QUICK, plan, run_reproduce
from nnlab.reporting.report import course_reference


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("scale", ["quick", "full", "smoke"])
def test_every_step_is_a_valid_config(scale):
    steps = plan(scale)
    assert len({s.key for s in steps}) == len(steps)
    for step in steps:
        cfg = load_config(step.preset, step.overrides)
        for key in step.grid:
            cfg.get(key)  # a grid over a key that does not exist fails here
        if step.cifar:  # the same config trains on an ImageFolder copy (--cifar10 tree/.tar.gz)
            load_config(
                step.preset, {**step.overrides, "data.name": "imagefolder", "data.dir": "x"}
            )


def test_the_lists_cover_the_course_report():
    for steps in (QUICK, FULL):
        presets = {s.preset for s in steps}
        assert {"seed-moons", "seed-rnn"} <= presets  # the report's experiments
        assert {"moons", "palindrome-lengths"} <= presets  # ours beside them
        moons = next(s for s in steps if s.key == "seed-moons")
        assert moons.grid["model.backend"] == ["torch", "numpy"]  # its 91% and 96% MLPs
        lengths = next(s for s in steps if s.key == "seed-rnn-lengths").grid["data.length"]
        assert min(lengths) == 3 and max(lengths) == 11  # the report's 3..11 curve
    # the report's CIFAR-10 recipes take 10-80 minutes a run on 2 cores: --full only; the
    # quick list's CIFAR-10 part is a preset made for minutes on a CPU
    assert {"seed-cifar-mlp", "seed-cnn"} <= {s.preset for s in FULL}
    assert [s.preset for s in QUICK if s.cifar] == ["cnn-quick"]
    # the smoke scale (tests) exercises the report's CIFAR-10 experiments all the same
    assert {"seed-cifar-mlp", "seed-cnn"} <= {s.preset for s in plan("smoke")}
    for s in FULL + QUICK:  # both scales run the presets as they are written
        assert not s.overrides
    assert all(
        course_reference(load_config(s.preset).to_dict())
        for s in QUICK
        if s.preset.startswith("seed-")
    )


@pytest.fixture
def cifar_folder(tmp_path) -> Path:
    """The official python layout, rebuilt from the shared JPEG copy (300 train / 150 test images)."""
    script = shared_dataset("cifar10_batches.py")
    shared_dataset("cifar10-jpeg.tar.gz")
    out = tmp_path / "cifar-src"
    subprocess.run(
        [sys.executable, str(script), str(out), "--limit-train", "300", "--limit-test", "150"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return out / "cifar-10-batches-py"


def test_smoke_runs_the_quick_list_end_to_end(cli, tmp_path, monkeypatch, cifar_folder):
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "data"))
    proc = cli(
        "reproduce", "--smoke", "--cifar10", str(cifar_folder), "--out", "rep", "--jobs", "1"
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "rep"
    for step in plan("smoke"):  # every step of the real quick list ran, as a sweep folder
        rows = read_csv(out / step.key / "results.csv")
        assert rows and all(r["final_test_acc"] for r in rows), step.key
    html = out / "report" / "report.html"
    assert f"report: {html.resolve()}" in proc.stdout
    # the summary table on the terminal
    assert "seed-cnn" in proc.stdout and "79.69% best epoch" in proc.stdout
    md = (out / "report" / "report.md").read_text()
    for part in ("make_moons", "MLP on CIFAR-10", "CNN on CIFAR-10", "palindromes"):
        assert part in md
    assert "Scale: smoke" in md and "differs from preset" in md
    assert "accuracy-vs-length" in md  # the report's 3..11 curve, redrawn
    assert (out / "timings.csv").read_text().startswith("started,scale,step,wall_s,cpu_s")
    again = cli("reproduce", "--smoke", "--out", "rep", "--jobs", "1")  # CIFAR-10 is imported now
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already finished") == len(plan("smoke"))


def test_without_cifar10_it_says_once_and_runs_the_rest(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "empty"))
    steps = [s for s in plan("smoke") if s.key in ("seed-rnn", "seed-cifar-mlp", "seed-cnn")]
    result = run_reproduce("smoke", tmp_path / "out", jobs=1, steps=steps)
    err = capsys.readouterr().err
    assert err.count("nnlab data cifar10 --archive PATH") == 1
    assert (tmp_path / "out" / "seed-rnn" / "results.csv").is_file()
    assert not (tmp_path / "out" / "seed-cifar-mlp").exists()
    assert "CIFAR-10 was not available" in result["markdown"].read_text()


@pytest.fixture
def cifar_server(monkeypatch):
    """A local server for a small official-layout archive, set as the download address."""
    from nnlab.data import cifar10
    from test_cifar10_download import Server, md5, small_archive

    payload = small_archive()
    server = Server(payload)
    monkeypatch.setattr(cifar10, "URL", server.url)
    monkeypatch.setattr(cifar10, "MD5", md5(payload))
    yield server
    server.close()


def _steps(*keys):
    return [s for s in plan("smoke") if s.key in keys]


def test_download_cifar10_tries_once_then_runs_cifar(tmp_path, monkeypatch, capsys, cifar_server):
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "data"))
    run_reproduce(
        "smoke", tmp_path / "out", jobs=1, steps=_steps("cnn-quick"), download_cifar10=True
    )
    assert len(cifar_server.requests) == 1
    assert "trying one download" in capsys.readouterr().err
    assert read_csv(tmp_path / "out" / "cnn-quick" / "results.csv")
    assert not (tmp_path / "data" / "downloads" / "cifar-10-python.tar.gz").exists()


def test_download_cifar10_offline_says_one_line_and_goes_on(tmp_path, monkeypatch, capsys):
    import socket

    from nnlab.data import cifar10

    with socket.socket() as sock:  # a port nothing listens on: connection refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(cifar10, "URL", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "data"))
    result = run_reproduce(
        "smoke", tmp_path / "out", jobs=1, steps=_steps("seed-rnn", "cnn-quick"),
        download_cifar10=True,
    )  # fmt: skip
    err = capsys.readouterr().err
    said = [line for line in err.splitlines() if "could not be downloaded" in line]
    assert len(said) == 1 and "nnlab data cifar10 --archive PATH" in said[0]
    assert "CIFAR-10 is not available" not in err  # said once, not twice
    assert (tmp_path / "out" / "seed-rnn" / "results.csv").is_file()
    assert not (tmp_path / "out" / "cnn-quick").exists()
    assert "CIFAR-10 was not available" in result["markdown"].read_text()


def test_full_prints_a_time_estimate_first(tmp_path, monkeypatch, capsys):
    from nnlab.experiments import reproduce

    def stop(*args, **kwargs):
        raise KeyboardInterrupt  # only the estimate printed before the first run matters

    monkeypatch.setattr("nnlab.experiments.sweep.run_sweep", stop)
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "empty"))
    steps = [s for s in reproduce.FULL if not s.cifar]
    with pytest.raises(KeyboardInterrupt):
        run_reproduce("full", tmp_path / "out", jobs=1, steps=steps)
    err = capsys.readouterr().err
    assert "estimated time on a 2-core CPU" in err.splitlines()[0]
    assert "== [1/" in err


def test_a_bad_cifar10_path(cli, tmp_path):
    from conftest import assert_one_line_error

    assert_one_line_error(
        cli("reproduce", "--smoke", "--cifar10", "nowhere.tar.gz"), "--cifar10 nowhere.tar.gz"
    )


# --------------------------------------------------------------------------- the sweep underneath


def test_ctrl_c_stops_workers_cleanly_and_the_next_call_resumes(cli, tmp_path):
    args = ["sweep", "moons", "--set", "data.n_samples=200", "--set", "train.epochs=150", "--set", "train.eval_every=1",
            "--grid", "model.hidden=8,16,32,64", "--out", "s"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnlab", *args, "--jobs", "2"], cwd=tmp_path, env=env,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        # a shell's background job ignores SIGINT, and Python then keeps ignoring it: restore the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    lines = [proc.stderr.readline()]  # the first progress line: one run finished
    assert lines[0].startswith("[1/4] model.hidden="), lines
    deadline = time.monotonic() + 120
    while not any(
        (p / "checkpoints" / "last.pt").exists() and not (p / "summary.json").exists()
        for p in (tmp_path / "s").iterdir()
    ):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    start = time.monotonic()
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 130 and rest.strip().endswith("nnlab: interrupted"), rest
    assert "Traceback" not in rest and time.monotonic() - start < 30
    finished = sum((p / "summary.json").exists() for p in (tmp_path / "s").iterdir() if p.is_dir())
    assert finished < 4
    again = cli(*args, "--jobs", "1")
    assert again.returncode == 0, again.stderr
    assert f"{finished} of 4 runs already finished" in again.stderr
    # a line per run
    assert len([ln for ln in again.stderr.splitlines() if ln.startswith("[")]) == 4 - finished
    rows = read_csv(tmp_path / "s" / "results.csv")
    assert sorted(r["model.hidden"] for r in rows) == ["16", "32", "64", "8"]
    # resumed runs have every epoch once, in order
    for p in (tmp_path / "s").glob("model.hidden=*"):
        epochs = [int(float(r["epoch"])) for r in read_csv(p / "metrics.csv")]
        assert epochs == list(range(1, 151)), p.name


def test_threads_never_exceed_the_budget():
    """A sweep worker's share caps explicit train.threads; a big model after a tiny one gets the share back."""
    import torch

    from nnlab.engine import setup as train

    before, budget = torch.get_num_threads(), train._THREAD_BUDGET
    try:
        train.limit_cpu_threads(1)
        train.set_cpu_threads(8, 10_000_000)  # train.threads=8 in a worker with one core
        assert torch.get_num_threads() == 1
        train.limit_cpu_threads(2)
        train.set_cpu_threads(0, 1_000)  # a tiny model: one thread
        assert torch.get_num_threads() == 1
        train.set_cpu_threads(0, 10_000_000)  # then a large one, in the same process
        assert torch.get_num_threads() == 2
    finally:
        train._THREAD_BUDGET = budget
        torch.set_num_threads(before)

"""Time-based checkpoints (train.checkpoint_every_s) and resuming in the middle of an epoch.

A checkpoint taken between two steps holds the loader's position (the epoch's order
is a function of seed and epoch; the augmentation generator's state is saved) and
the epoch's running metric sums, so a run resumed from it ends with the rows and
weights of an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import nnlab.engine.sinks
from nnlab.config import load_config
from nnlab.engine.run import resume_training, run_training
from nnlab.runs import load_checkpoint


def _rows(run):
    """metrics.csv without the wall-clock column (elapsed_s)."""
    lines = (run / "metrics.csv").read_text().splitlines()
    return [",".join(c for i, c in enumerate(line.split(",")) if i != 7) for line in lines]


def _cut_and_resume(cfg, folder, monkeypatch, stop_at: int) -> dict:
    """Train, crash inside the ``stop_at``-th checkpoint write, then resume to the end."""
    real, saves = nnlab.engine.sinks.save_checkpoint, []

    def crash(path, state):
        saves.append(state.get("position"))
        if len(saves) == stop_at:
            raise KeyboardInterrupt
        real(path, state)

    monkeypatch.setattr(nnlab.engine.sinks, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, folder, progress="off")
    monkeypatch.setattr(nnlab.engine.sinks, "save_checkpoint", real)
    last = load_checkpoint(folder / "checkpoints" / "last.pt")
    assert last.get("position") is not None, "the run was not cut mid-epoch"
    return resume_training(folder, progress="off")


def _same_run(a, b):
    assert _rows(a) == _rows(b)
    wa = load_checkpoint(a / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(b / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_mid_epoch_resume_is_exact(tmp_path, monkeypatch):
    common = ["train.epochs=4", "train.eval_every=2", "train.batch_size=16", "model.dropout=0.1"]
    whole = run_training(
        load_config("moons", [*common, "train.checkpoint_every_s=0"]),
        tmp_path / "a",
        progress="off",
    )
    # every step is due: checkpoints mid-epoch, before the first evaluation too
    cfg = load_config("moons", [*common, "train.checkpoint_every_s=1e-9"])
    resumed = _cut_and_resume(cfg, tmp_path / "b", monkeypatch, stop_at=30)
    assert resumed["final_test_acc"] == whole["final_test_acc"]
    _same_run(tmp_path / "a", tmp_path / "b")


def test_mid_epoch_resume_with_augmented_images(tmp_path, monkeypatch):
    """The augmentation generator's draws continue where they were cut."""
    torch.manual_seed(0)
    for split, n in (("train", 24), ("test", 8)):
        for c in ("cat", "dog"):
            folder = tmp_path / "imgs" / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "cache"))
    common = [
        "data.name=imagefolder",
        f"data.dir={tmp_path / 'imgs'}",
        "data.image_size=8",
        "data.augment=crop,flip",
        "data.crop_padding=2",
        "model.name=cnn",
        "model.widths=8,M,G",
        "train.epochs=3",
        "train.batch_size=8",
        "train.amp=off",
        "train.channels_last=off",
    ]
    run_training(
        load_config("moons", [*common, "train.checkpoint_every_s=0"]),
        tmp_path / "a",
        progress="off",
    )
    cfg = load_config("moons", [*common, "train.checkpoint_every_s=1e-9"])
    _cut_and_resume(cfg, tmp_path / "b", monkeypatch, stop_at=9)
    _same_run(tmp_path / "a", tmp_path / "b")


def test_checkpoints_wait_for_their_interval(tmp_path):
    """With a long interval a short run writes last.pt once, at the end: no fsyncs per evaluation."""
    cfg = load_config(
        "moons", ["train.epochs=10", "train.eval_every=1", "train.checkpoint_every_s=3600"]
    )
    run_training(cfg, tmp_path / "r", progress="off")
    last = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    best = load_checkpoint(tmp_path / "r" / "checkpoints" / "best.pt")
    assert last["epoch"] == 10 and last.get("position") is None
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[1:]
    best_epoch = max(range(len(rows)), key=lambda i: (float(rows[i].split(",")[5]), -i)) + 1
    assert best["epoch"] == best_epoch


def test_lines_progress_reports_steps_and_an_eta(capsys):
    from nnlab.engine.progress import Progress

    bar = Progress(4, "demo", "lines", steps_per_epoch=10, done=20, every_s=0.0)
    bar.step(3, 25)  # a resumed run: 20 steps were trained before this process
    err = capsys.readouterr().err
    assert "epoch 3/4  step 25/40" in err and "steps/s" in err and "ETA" in err
    bar.update(4, {"train_loss": 0.5, "train_acc": 0.8, "test_loss": 0.6, "test_acc": 0.75})
    assert "test_acc 0.7500" in capsys.readouterr().err


def test_sweeps_take_progress(cli, tmp_path):
    proc = cli(
        "sweep", "moons", "--grid", "optim.lr=1e-2", "--seeds", "2", "--progress", "lines",
        "--set", "train.epochs=5", "--set", "model.dropout=0.1", "--out", str(tmp_path / "s"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # each run's own lines (dropout keeps them lone runs), then the sweep's line per run
    assert "epoch 5/5" in proc.stderr and "[2/2]" in proc.stderr


def test_a_cut_after_an_epochs_last_step_resumes_to_the_evaluation(tmp_path, monkeypatch):
    """The checkpoint after an epoch's last step, then a crash before its evaluation was saved:
    the resumed epoch has no batch left (a loader must yield none, not an empty one)."""
    common = [
        "train.epochs=4",
        "data.n_samples=400",  # 320 training points: 20 steps of 16 an epoch
        "train.batch_size=16",
        "model.dropout=0.1",
        "schedule.name=cosine",
    ]
    run_training(
        load_config("moons", [*common, "train.checkpoint_every_s=0"]),
        tmp_path / "a",
        progress="off",
    )
    cfg = load_config("moons", [*common, "train.checkpoint_every_s=1e-9"])
    # saves: 20 steps + 1 evaluation for epoch 1, then epoch 2's 20 steps: the 42nd is after
    # its last step, the 43rd its evaluation's
    _cut_and_resume(cfg, tmp_path / "b", monkeypatch, stop_at=43)
    _same_run(tmp_path / "a", tmp_path / "b")

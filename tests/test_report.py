"""`nnlab report`: run and sweep folders -> report.md + a self-contained report.html.

Proves: the report holds, per experiment, its setup (and what differs from its
preset), a mean +- std (n) table with the course report's number beside ours,
and its figures (linked in the Markdown, embedded in the HTML); bad input (not a
run or sweep, half-finished runs, results.csv without its columns, a corrupt
summary) is one line naming the path with exit code 2, while half-finished runs
inside a sweep are listed as unfinished. tests/test_report_says.py proves the
report says no more than it shows (issue 18), on run folders written by hand here.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_line_error
from nnlab.reporting.report import course_reference

TINY_MOONS = ["--set", "train.epochs=30", "--set", "data.n_samples=200", "--seeds", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A seed-moons sweep (torch vs numpy, 2 seeds) and one short seed-rnn run, trained once."""
    from nnlab.cli import main

    root = tmp_path_factory.mktemp("report-runs")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        assert (
            main(
                [
                    "sweep",
                    "seed-moons",
                    *TINY_MOONS,
                    "--grid",
                    "model.backend=torch,numpy",
                    "--out",
                    "moons",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "train",
                    "seed-rnn",
                    "--set",
                    "train.epochs=2",
                    "--progress",
                    "off",
                    "--out",
                    "rnn",
                ]
            )
            == 0
        )
    finally:
        os.chdir(cwd)
    return root


def copy(runs: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs / name, tmp_path / name))


def test_report_has_tables_figures_and_the_course_numbers(cli, runs, tmp_path):
    proc = cli("report", str(runs / "moons"), str(runs / "rnn"), "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    assert "report: rep/report.html" in proc.stdout
    row = r"seed-moons\s+moons\s+backend=torch\s+\d+\.\d+ \+- \d+\.\d+% \(n=2\)"
    assert re.search(row, proc.stdout), proc.stdout
    # one seed: no standard deviation, in the terminal table and in both of the report's tables
    assert re.search(r"seed-rnn\s+rnn\s+all seeds\s+\d+\.\d+% \(n=1\)", proc.stdout), proc.stdout
    assert "+- 0.00" not in proc.stdout
    md = (tmp_path / "rep" / "report.md").read_text()
    html = (tmp_path / "rep" / "report.html").read_text()
    # the course report's numbers beside ours, per setting
    assert "91% (its PyTorch MLP)" in md and "96% (its from-scratch NumPy MLP)" in md
    assert "100% at T=5 (its vanilla RNN)" in md
    assert "| backend=torch | 2 |" in md and "| backend=numpy | 2 |" in md
    # setup, the reduced scale, provenance
    assert "differs from preset 'seed-moons'" in md and "train.epochs=30 (preset: 1500)" in md
    assert "+- 0.00" not in md and "| all seeds | 1 |" in md
    # 30 epochs on 200 points is not the course report's setting: its number, no difference
    assert "pts" not in md and "not comparable: reduced scale (data.n_samples, train.epochs)" in md
    assert (
        "seed-moons in moons/ (from preset seed-moons with changes: data.n_samples, train.epochs"
        in md
    )
    assert "nnlab report: 2 experiments" in md and "reproduced" not in md
    assert "torch: 2." in md and "training time" in md and "wall" in md
    # every figure: a PNG beside report.md, embedded once in the HTML, with a caption
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(links) == 3, links  # moons curves + boundaries, rnn curves
    assert "no boundary.npz" not in md  # the engine wrote one for each moons run, torch and numpy
    assert (runs / "moons" / "boundaries-moons.png").stat().st_size > 5000  # the sweep's own figure
    assert all((tmp_path / "rep" / link).stat().st_size > 5000 for link in links)
    assert html.count('src="data:image/png;base64,') == len(links)
    assert html.count("<figcaption>") == len(links) and "What to see" in html
    assert "http://" not in html and "https://" not in html


def test_report_of_a_folder_of_experiments(cli, runs, tmp_path):
    """A folder holding run/sweep folders (what `nnlab reproduce --out` writes) reports them all."""
    (tmp_path / "notes.txt").write_text("not a run")
    proc = cli("report", str(runs), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr
    assert "seed-moons" in proc.stdout and "seed-rnn" in proc.stdout


def test_half_finished_runs_in_a_sweep_are_skipped_with_a_notice(cli, runs, tmp_path):
    sweep = copy(runs, "moons", tmp_path)
    (
        sweep / "model.backend=numpy__seed=1" / "summary.json"
    ).unlink()  # as if killed before it finished
    proc = cli("report", str(sweep), "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    assert "unfinished: " in proc.stderr and "model.backend=numpy__seed=1" in proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| backend=numpy | 1 |" in md and "## Unfinished runs (not in the tables)" in md
    assert f"- unfinished: {sweep / 'model.backend=numpy__seed=1'} (epoch 30 of 30)" in md


def test_a_half_finished_run_alone_is_an_error(cli, runs, tmp_path):
    run = copy(runs, "rnn", tmp_path)
    (run / "summary.json").unlink()
    assert_one_line_error(cli("report", str(run), "--out", "rep"), str(run), "no summary.json")


def test_a_folder_that_is_no_run_or_sweep(cli, tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    assert_one_line_error(cli("report", "stuff"), "stuff", "not an nnlab run or sweep folder")
    assert_one_line_error(cli("report", "missing"), "missing", "no such folder")


def test_a_report_is_not_written_into_a_run_or_sweep_folder(cli, runs, tmp_path):
    run, sweep = copy(runs, "rnn", tmp_path), copy(runs, "moons", tmp_path)
    for folder, kind in ((run, "run"), (sweep, "sweep")):
        before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
        proc = cli("report", str(run), "--out", str(folder))
        assert_one_line_error(proc, str(folder), f"is a {kind} folder")
        assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


@pytest.mark.parametrize(
    "name, inside, size",
    [
        ("rnn", "summary.json", (16 << 20) + 1),
        ("rnn", "metrics.csv", (256 << 20) + 1),
        ("moons", "results.csv", (256 << 20) + 1),
    ],
)
def test_a_run_file_too_large_to_be_nnlabs_is_refused_before_reading(
    cli, runs, tmp_path, name, inside, size
):
    folder = copy(runs, name, tmp_path)
    os.truncate(folder / inside, size)  # sparse: no disk used, the size is what is checked
    proc = cli("report", str(folder), "--out", "rep")
    assert_one_line_error(proc, str(folder / inside), f"{size:,} bytes")


def test_results_csv_with_missing_columns(cli, runs, tmp_path):
    sweep = copy(runs, "moons", tmp_path)
    with open(sweep / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(sweep / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["run", "model.backend", "seed"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    proc = cli("report", str(sweep))
    assert_one_line_error(proc, str(sweep / "results.csv"), "final_test_acc")


def test_a_corrupt_summary(cli, runs, tmp_path):
    run = copy(runs, "rnn", tmp_path)
    (run / "summary.json").write_text("{not json")
    assert_one_line_error(cli("report", str(run)), str(run / "summary.json"), "not valid JSON")


def test_course_reference():
    def cfg(data, model, backend="torch", length=5):
        return {
            "data": {"name": data, "length": length},
            "model": {"name": model, "backend": backend},
        }

    assert course_reference(cfg("moons", "mlp")).value == 0.91
    assert course_reference(cfg("moons", "mlp", "numpy")).value == 0.96
    assert course_reference(cfg("cifar10", "mlp")).value == 0.55
    cnn = course_reference(cfg("imagefolder", "cnn"))
    # the report's CNN figure is its best epoch
    assert cnn.value == 0.7969 and cnn.metric == "best_test_acc"
    assert course_reference(cfg("cifar10", "cnn-fast")) == cnn  # the cnn / cnn-fast presets' row
    assert course_reference(cfg("palindrome", "rnn", length=5)).value == 1.0
    # a falling curve, no numbers
    assert course_reference(cfg("palindrome", "lstm", length=9)).value is None
    # beyond the report's 3..11
    assert course_reference(cfg("palindrome", "rnn", length=30)) is None
    assert course_reference(cfg("circles", "mlp")) is None


def test_mean_std_curves_with_runs_of_different_length(tmp_path):
    """Runs that stopped early (train.target_acc) leave the later epochs' statistics."""
    from nnlab.reporting.plots import plot_curves_mean_std

    def run(n, acc):
        return [{"epoch": e, "test_acc": acc, "train_loss": 1.0 / e} for e in range(1, n + 1)]

    path = plot_curves_mean_std(
        {"a": [run(5, 0.8), run(9, 0.9)], "b": [run(9, 0.5)]},
        tmp_path / "c.png",
        references=[(0.91, "ref")],
    )
    assert path.stat().st_size > 5000


# --------------------------------------------------------------------------- run and sweep folders built by hand
# The one reader (nnlab.runs.RunFolder / SweepFolder) and the figures drawn from boundary.npz,
# on folders written here with tiny arrays: no training, no model, no data set loaded.


def fake_run(
    folder: Path,
    seed: int,
    *,
    boundary: bool = True,
    restored: bool = False,
    preset: str = "moons",
    overrides: dict | None = None,
    name: str | None = None,
    evals: int = 2,
    acc: float = 0.75,
) -> Path:
    """A finished run folder: config.toml, metrics.csv, summary.json, checkpoints, boundary.npz.

    ``preset`` resolved with ``overrides`` (default: 2 epochs), named ``name`` (a user's own
    TOML file is named after its stem), ``evals`` metrics rows ending at test accuracy ``acc``.
    """
    import json

    import numpy as np

    from nnlab.config import load_config, to_toml

    over = {"train.epochs": 2} if overrides is None else overrides
    cfg = load_config(preset, {"train.seed": seed, **over})
    cfg.name = name or cfg.name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.toml").write_text(to_toml(cfg))
    rows = [
        f"{e},{5 * e},{0.6 / e},0.7,0.6,{acc - 0.05 * (evals - e)},0.01,{0.1 * e}"
        for e in range(1, evals + 1)
    ]
    (folder / "metrics.csv").write_text(
        "epoch,step,train_loss,train_acc,test_loss,test_acc,lr,elapsed_s\n" + "\n".join(rows) + "\n"
    )
    for name in ("last.pt", "best.pt"):
        (folder / "checkpoints" / name).write_bytes(b"")
    stop = "completed" + ("; restored the best checkpoint (epoch 1)" if restored else "")
    summary = {"status": "completed", "final_test_acc": acc, "best_test_acc": acc}
    summary |= {"train_seconds": 0.2, "seed": seed, "preset": cfg.name, "stop_reason": stop}
    (folder / "summary.json").write_text(json.dumps(summary))
    if boundary and cfg.data.name == "moons":
        xx, yy = np.meshgrid(np.linspace(-1, 1, 6), np.linspace(-1, 1, 6))  # (R, R), R = 6
        pred = (xx + yy > 0).astype(np.int64)
        prob = 0.5 + np.abs(np.tanh(xx + yy)) / 2  # the predicted class's probability
        x = np.array([[-0.5, -0.5], [0.5, 0.5], [0.2, -0.4]], dtype=np.float32)
        y = np.array([0, 1, 0])
        arrays = {"xx": xx, "yy": yy, "prob": prob, "pred": pred}
        np.savez(folder / "boundary.npz", **arrays, x_train=x, y_train=y, x_test=x, y_test=y)
    return folder


def fake_sweep(root: Path, with_boundary: dict[str, bool]) -> Path:
    """A sweep over optim.lr (one seed each); ``with_boundary``: run name -> writes boundary.npz."""
    lines = ["run,optim.lr,seed,final_test_acc,best_test_acc,final_test_loss,epochs,train_seconds"]
    for name, boundary in with_boundary.items():
        fake_run(root / name, 0, boundary=boundary)
        lines.append(f"{name},{name.split('=')[1].split('__')[0]},0,0.75,0.75,0.5,2,0.2")
    (root / "results.csv").write_text("\n".join(lines) + "\n")
    return root


def test_run_folder_reads_every_part(tmp_path):
    from nnlab.runs import RunFolder

    run = RunFolder(fake_run(tmp_path / "r", seed=3))
    assert run.finished and run.status == "completed" and run.summary["seed"] == 3
    assert run.config["train"]["seed"] == 3 and run.load_config().train.seed == 3
    assert run.preset == "moons" and run.load_config().name == "moons"  # config.toml's preset key
    assert [r["epoch"] for r in run.metrics] == [1, 2]
    assert run.reported == "last" and run.checkpoint_path() == run.path / "checkpoints/last.pt"
    assert set(run.boundary()) >= {"xx", "yy", "prob", "pred", "x_test", "y_test"}
    # a run written before config.toml had the key: summary.json's preset
    text = (run.path / "config.toml").read_text().replace('preset = "moons"\n', "")
    (run.path / "config.toml").write_text(text)
    summary = (run.path / "summary.json").read_text().replace('"moons"', '"older"')
    (run.path / "summary.json").write_text(summary)
    assert (
        RunFolder(run.path).preset == "older" and RunFolder(run.path).load_config().name == "older"
    )


def test_run_folder_points_at_the_checkpoint_the_run_reports(tmp_path):
    from nnlab.runs import RunFolder

    run = RunFolder(fake_run(tmp_path / "r", seed=0, restored=True))
    assert run.reported == "best" and run.checkpoint_path().name == "best.pt"
    assert run.checkpoint_path("last").name == "last.pt"
    # NumPy-backend runs keep .npz checkpoints
    numpy_run = fake_run(tmp_path / "n", seed=0)
    cfg = (numpy_run / "config.toml").read_text().replace('backend = "torch"', 'backend = "numpy"')
    (numpy_run / "config.toml").write_text(cfg)
    (numpy_run / "checkpoints" / "last.npz").write_bytes(b"")
    assert RunFolder(numpy_run).checkpoint_path() == numpy_run / "checkpoints" / "last.npz"


def test_run_folder_bad_files_are_one_line_run_errors(tmp_path):
    from nnlab.errors import RunError
    from nnlab.runs import RunFolder

    assert RunFolder(tmp_path).summary is None and RunFolder(tmp_path).status == "unfinished"
    with pytest.raises(RunError, match="no config.toml"):
        _ = RunFolder(tmp_path).config
    run = fake_run(tmp_path / "r", seed=0, boundary=False)
    assert RunFolder(run).boundary() is None
    (run / "boundary.npz").write_text("not arrays")
    (run / "config.toml").write_text("[data\n")
    (run / "summary.json").write_text("{")
    for read, needle in (
        (lambda r: r.boundary(), "boundary.npz"),
        (lambda r: r.config, "config.toml: not a readable config"),
        (lambda r: r.summary, "summary.json: not valid JSON"),
        (lambda r: r.checkpoint_path("first"), "which"),
    ):
        with pytest.raises((RunError, ValueError), match=needle) as err:
            read(RunFolder(run))
        assert "\n" not in str(err.value)


def test_sweep_folder_reads_results_with_numbers_and_keys(tmp_path):
    from nnlab.runs import SweepFolder

    sweep = SweepFolder(
        fake_sweep(tmp_path, {"optim.lr=0.1__seed=0": True, "optim.lr=1__seed=0": True})
    )
    # an unfinished run, not in results.csv yet
    (fake_run(tmp_path / "optim.lr=0.5__seed=0", 0) / "summary.json").unlink()
    assert sweep.keys == ["optim.lr"]
    assert [r["optim.lr"] for r in sweep.results] == [0.1, 1] and sweep.results[0]["seed"] == 0
    assert [r.point for r in sweep.listed] == [{"optim.lr": 0.1}, {"optim.lr": 1}]
    runs = sweep.runs  # every run folder, sorted by name
    assert [(r.path.name, r.status) for r in runs] == [
        ("optim.lr=0.1__seed=0", "completed"),
        ("optim.lr=0.5__seed=0", "unfinished"),
        ("optim.lr=1__seed=0", "completed"),
    ]
    assert runs[0].point == {"optim.lr": 0.1} and runs[1].point == {}


def test_report_draws_boundaries_from_boundary_npz_and_names_runs_without(cli, tmp_path):
    """One panel per setting that has boundary.npz; a one-line notice for the one without."""
    runs = {"optim.lr=0.1__seed=0": True, "optim.lr=1__seed=0": True, "optim.lr=3__seed=0": False}
    sweep = fake_sweep(tmp_path / "s", runs)
    proc = cli("report", str(sweep), "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "figures/00-moons-boundaries.png" in md
    assert (tmp_path / "rep" / "figures" / "00-moons-boundaries.png").stat().st_size > 5000
    notice = [line for line in md.splitlines() if "no boundary.npz" in line]
    assert notice == [
        "Decision boundaries of lr=3 (optim.lr=3__seed=0): no boundary.npz: trained by an older nnlab."
    ]


def test_sweep_plots_take_a_sweep_folder(tmp_path):
    from nnlab.reporting.plots import plot_sweep_boundaries, plot_sweep_metric
    from nnlab.runs import SweepFolder

    names = {f"optim.lr={lr}__seed=0": lr != "3" for lr in ("0.1", "1", "3")}
    sweep = SweepFolder(fake_sweep(tmp_path, names))
    assert plot_sweep_boundaries(sweep) == [tmp_path / "boundaries-moons.png"]
    assert plot_sweep_metric(sweep) == [tmp_path / "accuracy_vs_lr.png"]
    assert all(p.stat().st_size > 5000 for p in tmp_path.glob("*.png"))


def test_boundary_grid_covers_the_points():
    import numpy as np

    from nnlab.reporting.plots import boundary_grid

    x = np.array([[0.0, 1.0], [2.0, -1.0]])
    xx, yy, points = boundary_grid(x, resolution=5)
    assert xx.shape == yy.shape == (5, 5) and points.shape == (25, 2) and points.dtype == np.float32
    assert (xx.min(), xx.max(), yy.min(), yy.max()) == (-0.5, 2.5, -1.5, 1.5)
    assert np.array_equal(points[:, 0], xx.ravel().astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        boundary_grid(np.zeros((3, 3)))

"""`nnlab report`: run and sweep folders -> report.md + a self-contained report.html.

Proves: the report holds, per experiment, its setup (and what differs from its
preset), a mean +- std (n) table with the course report's number beside ours,
and its figures (linked in the Markdown, embedded in the HTML); bad input (not a
run or sweep, half-finished runs, results.csv without its columns, a corrupt
summary) is one line naming the path with exit code 2, while half-finished runs
inside a sweep are skipped with a notice.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_line_error
from nnlab.report import course_reference

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
    assert re.search(r"seed-moons\s+backend=torch\s+\d+\.\d+ \+- \d+\.\d+% \(n=2\)", proc.stdout), (
        proc.stdout
    )
    md = (tmp_path / "rep" / "report.md").read_text()
    html = (tmp_path / "rep" / "report.html").read_text()
    # the course report's numbers beside ours, per setting
    assert "91% (its PyTorch MLP)" in md and "96% (its from-scratch NumPy MLP)" in md
    assert "100% at T=5 (its vanilla RNN)" in md
    assert "| backend=torch | 2 |" in md and "| backend=numpy | 2 |" in md
    # setup, the reduced scale, provenance
    assert "differs from preset 'seed-moons'" in md and "train.epochs=30 (preset: 1500)" in md
    assert "torch: 2." in md and "training time" in md and "wall" in md
    # every figure: a PNG beside report.md, embedded once in the HTML, with a caption
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(links) == 3, links  # moons curves + boundaries, rnn curves
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
    assert "skipped" in proc.stderr and "model.backend=numpy__seed=1" in proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| backend=numpy | 1 |" in md and "## Skipped" in md


def test_a_half_finished_run_alone_is_an_error(cli, runs, tmp_path):
    run = copy(runs, "rnn", tmp_path)
    (run / "summary.json").unlink()
    assert_one_line_error(cli("report", str(run), "--out", "rep"), str(run), "no summary.json")


def test_a_folder_that_is_no_run_or_sweep(cli, tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    assert_one_line_error(cli("report", "stuff"), "stuff", "not an nnlab run or sweep folder")
    assert_one_line_error(cli("report", "missing"), "missing", "no such folder")


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
    assert course_reference(cfg("palindrome", "rnn", length=5)).value == 1.0
    # a falling curve, no numbers
    assert course_reference(cfg("palindrome", "lstm", length=9)).value is None
    # beyond the report's 3..11
    assert course_reference(cfg("palindrome", "rnn", length=30)) is None
    assert course_reference(cfg("circles", "mlp")) is None


def test_mean_std_curves_with_runs_of_different_length(tmp_path):
    """Runs that stopped early (train.target_acc) leave the later epochs' statistics."""
    from nnlab.plots import plot_curves_mean_std

    def run(n, acc):
        return [{"epoch": e, "test_acc": acc, "train_loss": 1.0 / e} for e in range(1, n + 1)]

    path = plot_curves_mean_std(
        {"a": [run(5, 0.8), run(9, 0.9)], "b": [run(9, 0.5)]},
        tmp_path / "c.png",
        references=[(0.91, "ref")],
    )
    assert path.stat().st_size > 5000

"""`nnlab report` says no more than it shows (issue 18, item 5), on run folders written by hand.

Proves: no standard deviation for one run (``98.00% (n=1)``, never ``+- 0.00``); a
run evaluated once is a visible point in every plot drawn from metrics rows; std
bands of accuracy stay inside [0, 1]; run and sweep folders are found at any depth
and unfinished runs listed (``unfinished: PATH (epoch k of N)``); a folder column
tells alike rows apart; "ours - report" only at the course report's own setting
(seed-* preset, unchanged, full scale), its number kept for reference elsewhere
with the reason; labels say whether a config is nnlab's preset, one changed, or
the user's own; keys are listed only where they apply; captions describe what
the figure draws (dashed lines only where there are dashed lines); the title fits.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_report import fake_run, fake_sweep


@pytest.fixture
def figures(monkeypatch):
    """Every figure the report saves, kept open for inspection (and saved as before)."""
    from nnlab.reporting import plots

    saved, save = [], plots.save_figure
    monkeypatch.setattr(
        plots, "save_figure", lambda fig, path, **kw: saved.append(fig) or save(fig, path, **kw)
    )
    return saved


def drawn_points(fig) -> list[tuple[int, str]]:
    """(number of points, marker) of every data line of a figure (reference lines aside)."""
    return [
        (len(line.get_xdata()), str(line.get_marker()))
        for ax in fig.axes
        for line in ax.get_lines()
        if not str(line.get_label()).startswith("course report")
    ]


def test_one_evaluation_is_drawn_as_a_point_by_every_curve_plot(figures, tmp_path):
    from nnlab.reporting.plots import curves_figure, plot_curves_mean_std, plot_metric_vs_param

    row = {"epoch": 1, "train_loss": 0.5, "test_loss": 0.6, "train_acc": 0.9, "test_acc": 0.98}
    plot_curves_mean_std(
        {"one run": [[row]], "two runs": [[row], [row | {"test_acc": 0.9}]]}, tmp_path / "a.png"
    )
    plot_metric_vs_param([{"x": 1.0, "final_test_acc": 0.98}], "x", tmp_path / "b.png")
    for fig in [*figures, curves_figure([row])]:
        lines = drawn_points(fig)
        assert lines, "nothing drawn"
        # a line through one point is invisible: it needs a marker
        assert all(marker not in ("None", "", " ") for n, marker in lines if n == 1), lines


def test_std_bands_of_accuracy_stay_inside_0_and_1(figures, tmp_path):
    import numpy as np

    from nnlab.reporting.plots import plot_curves_mean_std

    def run(acc):
        return [{"epoch": e, "test_acc": acc, "train_loss": 1.0 / e} for e in (1, 2, 3)]

    # mean 0.745, std 0.35: the band would reach 1.09
    plot_curves_mean_std(
        {"a": [run(0.99), run(0.5)], "b": [run(0.02), run(0.3)]}, tmp_path / "c.png"
    )
    acc_axis = figures[0].axes[0]
    ys = np.concatenate([p.vertices[:, 1] for c in acc_axis.collections for p in c.get_paths()])
    assert ys.size and ys.min() >= 0.0 and ys.max() <= 1.0, (ys.min(), ys.max())


def test_format_summary_gives_no_std_for_one_run():
    from nnlab.reporting.stats import format_summary, summarize

    rows = [{"k": 1, "final_test_acc": 0.98, "train_seconds": 1.0}]
    rows += [{"k": 2, "final_test_acc": a, "train_seconds": 1.0} for a in (0.9, 0.8)]
    text = format_summary(summarize(rows, ["k"]), ["k"])
    assert (
        "k=1: final_test_acc 0.9800 (n=1)" in text
        and "k=2: final_test_acc 0.8500 +- 0.0707 (n=2)" in text
    )


def test_runs_are_found_at_any_depth_and_unfinished_ones_listed(cli, tmp_path):
    fake_sweep(tmp_path / "runs" / "group" / "deeper" / "s", {"optim.lr=0.1__seed=0": True})
    fake_run(tmp_path / "runs" / "a" / "b" / "lone", 0, boundary=False)
    fake_run(tmp_path / "runs" / "c" / "lone", 0, boundary=False, acc=0.6)  # looks the same
    late = fake_run(tmp_path / "runs" / "late", 0, overrides={"train.epochs": 10}, boundary=False)
    (late / "summary.json").unlink()
    # a finished run that results.csv does not list (an earlier grid): reported, not dropped
    fake_run(
        tmp_path / "runs" / "group" / "deeper" / "s" / "optim.lr=0.5__seed=0", 0, boundary=False
    )
    proc = cli("report", "runs", "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    summary = md.split("## Summary")[1].split("\n## ")[0]
    rows = [r for r in summary.splitlines() if r.startswith("| moons")]
    assert len(rows) == 4, summary
    folders = [r.split(" | ")[1] for r in rows]  # the folder column tells alike rows apart
    assert sorted(folders) == sorted(
        ["a/b/lone", "c/lone", "group/deeper/s", "group/deeper/s (runs not listed in results.csv)"]
    ), folders
    assert f"- unfinished: {Path('runs') / 'late'} (epoch 2 of 10)" in md
    assert "unfinished: runs/late (epoch 2 of 10); not in the tables" in proc.stderr


def course_runs(root: Path, overrides: dict | None = None, evals: int = 2) -> None:
    """One run of each of the course report's presets (``overrides`` on each; None: as they are)."""
    for preset in ("seed-moons", "seed-cifar-mlp", "seed-cnn", "seed-rnn"):
        fake_run(root / preset, 0, preset=preset, overrides=overrides or {}, acc=0.8, evals=evals)


def test_ours_minus_report_only_at_the_course_reports_own_setting(cli, tmp_path, figures):
    course_runs(tmp_path / "full")
    proc = cli("report", "full", "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.startswith("# nnlab: the course report, reproduced")
    assert (
        "| seed-moons | seed-moons | all seeds | 80.00% (n=1) | 80.00% | 91% (its PyTorch MLP) | -11.0 pts |"
        in md
    )
    assert "79.69% best epoch (its reduced VGG) | +0.3 pts |" in md
    assert "seed-cnn (nnlab's preset; the course report's setup)" in md
    # the report's final accuracy as a dashed line, where the caption says so
    assert (
        md.count("dashed: course report:") == 3
    )  # moons, cifar mlp, rnn (the CNN's is a best epoch)
    dashed = [
        ln for f in figures for ax in f.axes for ln in ax.get_lines() if ln.get_linestyle() == "--"
    ]
    assert len(dashed) == 3

    figures.clear()
    quick = {"data.limit_train": 2000, "data.limit_test": 1000, "train.epochs": 1}
    course_runs(tmp_path / "quick", quick, evals=1)
    proc = cli("report", "quick", "--out", "rep2")
    md = (tmp_path / "rep2" / "report.md").read_text()
    assert md.startswith("# nnlab: the course report's experiments, not all at its settings")
    assert "pts" not in md and "ashed" not in md
    assert (
        "| 79.69% best epoch (its reduced VGG) | not comparable: reduced scale (data.limit_train, data.limit_test, train.epochs) |"
        in md
    )
    assert not [
        ln for f in figures for ax in f.axes for ln in ax.get_lines() if ln.get_linestyle() == "--"
    ]
    # one evaluation, one seed: the caption says a point and no band
    assert (
        "(one seed per setting: no spread to show)" in md and "band" not in md.split("## Part 2")[1]
    )


def test_labels_say_where_a_config_came_from(cli, tmp_path):
    fake_run(tmp_path / "exact", 0, overrides={})  # moons as it is
    fake_run(tmp_path / "changed", 0, overrides={"optim.lr": 0.5})
    fake_run(
        tmp_path / "mine", 0, overrides={}, name="my"
    )  # a user's my.toml: named after its stem
    # a user's own file that happens to share a preset's name, with other settings
    fake_run(tmp_path / "lookalike", 0, overrides={"model.hidden": [7]}, name="moons")
    proc = cli("report", "exact", "changed", "mine", "lookalike", "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    heads = [
        ln
        for ln in (tmp_path / "rep" / "report.md").read_text().splitlines()
        if ln.startswith("### ")
    ]
    assert heads == [
        "### moons in exact/ (nnlab's preset)",
        "### moons in changed/ (from preset moons with changes: optim.lr)",
        "### my in mine/ (your config)",
        "### moons in lookalike/ (from preset moons with changes: model.hidden)",
    ], heads


def test_keys_are_listed_only_where_they_apply(cli, tmp_path):
    fake_run(tmp_path / "cnn", 0, preset="seed-cnn", overrides={"model.hidden": [9, 9]})
    fake_run(tmp_path / "rnn", 0, preset="seed-rnn", overrides={"model.widths": ["32"]})
    fake_run(
        tmp_path / "mlp",
        0,
        overrides={"data.length": 9, "model.widths": ["8"], "model.chrono": True},
    )
    proc = cli("report", "cnn", "rnn", "mlp", "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    sections = {s.split("\n")[0].split()[0]: s for s in md.split("### ")[1:]}
    cnn, rnn, mlp = sections["seed-cnn"], sections["seed-rnn"], sections["moons"]
    assert "widths=[64,64,M3,128,128,M3,F512]" in cnn and "hidden" not in cnn
    assert "hidden=[64]" in rnn and "widths" not in rnn
    assert "hidden=[" in mlp and "widths" not in mlp and "length" not in mlp and "chrono" not in mlp
    assert "length=5" in rnn and "one_hot" not in cnn and "noise" not in cnn
    # a key that does not apply is no change from the preset either
    assert "(nnlab's preset; the course report's setup)" in cnn and "your config" not in md

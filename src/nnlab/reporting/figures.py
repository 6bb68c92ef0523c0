"""An experiment's figures for the report: learning curves, accuracy against a swept numeric
key, and decision boundaries (from each run's ``boundary.npz``), each with a caption."""

from __future__ import annotations

from pathlib import Path

from nnlab.reporting import plots
from nnlab.reporting.collect import Experiment
from nnlab.reporting.course import TOY_DATA
from nnlab.reporting.describe import num_key
from nnlab.reporting.stats import group_stats

NO_BOUNDARY = "no boundary.npz: trained by an older nnlab"

CURVES_CAPTION = (
    "Test accuracy (left) and training loss (right, log scale) against epoch: mean over seeds, band +- one "
    "standard deviation, n seeds per setting. Dashed lines: the course report's final accuracy. "
    "What to see: where each setting settles against the dashed line, how fast it gets there, "
    "and how wide the spread over seeds is."
)
LENGTH_WHAT = (
    "accuracy against the number of digits T: the course report's vanilla RNN reached 100% at T=5 (star) and fell as T "
    "grew over 3..11; compare each model's line with that, and where it drops towards chance (10%)."
)
BOUNDARY_CAPTION = (
    "Decision boundaries: test points over what each setting's network predicts (first seed, the weights its "
    "final test accuracy measured), shaded by its probability of class 1, with that accuracy. What to see: a "
    "smooth boundary that follows the two moons; errors sit where the noisy moons overlap."
)


def experiment_figures(exp: Experiment, fig_dir: Path, slug: str) -> list[tuple]:
    """Draw the experiment's figures into ``fig_dir``; returns report blocks:
    ``("figure", path, caption)``, or ``("p", text)`` where a figure cannot be drawn."""
    blocks: list[tuple] = []
    refs: list[tuple[float, str]] = []  # dashed lines: the report's final accuracies
    for g in group_stats(exp):
        r = g.reference
        if r is not None and r.value is not None and r.metric == "final_test_acc":
            line = (r.value, f"course report: {r.text}")
            refs += [line] if line not in refs else []
    if len(exp.groups) <= 6:
        groups = {
            exp.label(v): [r.metrics for r in runs if r.summary.get("final_test_acc") is not None]
            for v, runs in exp.groups.items()
        }
        groups = {k: v for k, v in groups.items() if v}
        if groups:
            path = plots.plot_curves_mean_std(
                groups,
                fig_dir / f"{slug}-curves.png",
                title=f"{exp.preset}: learning curves",
                references=refs,
            )
            blocks.append(("figure", path, CURVES_CAPTION))
    numeric = [
        k
        for k in exp.keys
        if len({r.point[k] for r in exp.runs}) >= 3
        and all(num_key(r.point[k])[0] == 0 for r in exp.runs)
    ]
    for key in numeric:
        rows = [
            {**r.point, key: float(r.point[key]), "final_test_acc": r.summary.get("final_test_acc")}
            for r in exp.runs
        ]
        points = [(5.0, 1.0, "course report: 100% at T=5")] if key == "data.length" else []
        name = key.split(".")[-1]
        path = plots.plot_metric_vs_param(
            rows,
            key,
            fig_dir / f"{slug}-accuracy-vs-{name}.png",
            series=[k for k in exp.keys if k != key],
            title=f"{exp.preset}: final test accuracy against {name}",
            references=points,
        )
        what = LENGTH_WHAT if key == "data.length" else f"how final accuracy changes with {key}."
        caption = f"Final test accuracy against {key}: mean over seeds (line), min-max over seeds (band). What to see: {what}"
        blocks.append(("figure", path, caption))
    if exp.runs[0].config["data"]["name"] in TOY_DATA:
        blocks += boundary_blocks(exp, fig_dir / f"{slug}-boundaries.png")
    return blocks


def boundary_blocks(exp: Experiment, path: Path) -> list[tuple]:
    """One panel per setting (its first scored seed), from that run's ``boundary.npz``; a
    one-line notice names the settings whose run has none."""
    panels, missing = [], []
    for values, runs in exp.groups.items():
        ok = [r for r in runs if r.summary.get("final_test_acc") is not None]
        if not ok:
            continue
        panel = plots.boundary_panel(ok[0], exp.label(values))
        if panel is None:
            missing.append(f"{exp.label(values)} ({ok[0].path.name})")
        else:
            panels.append(panel)
    blocks: list[tuple] = []
    if panels:
        title = f"{exp.preset}: test points and decision boundaries"
        blocks.append(
            ("figure", plots.plot_decision_boundaries(panels, path, title=title), BOUNDARY_CAPTION)
        )
    if missing:
        blocks.append(("p", f"Decision boundaries of {', '.join(missing)}: {NO_BOUNDARY}."))
    return blocks

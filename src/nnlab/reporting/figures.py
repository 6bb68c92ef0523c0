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

LENGTH_WHAT = (
    "the course report's vanilla RNN reached 100% at T=5 (the star) and fell as T grew over 3..11; "
    "compare each model's line with that, and see where it drops towards chance (10%)."
)


def curves_caption(n_seeds: list[int], one_eval: bool, refs: list[tuple[float, str]]) -> str:
    """The learning-curve caption, saying only what ``plots.plot_curves_mean_std`` drew."""
    text = (
        "Test accuracy (left) and training loss (right, log scale) against epoch, one line per "
        "setting: the mean over its n seeds"
    )
    spread = max(n_seeds, default=0) >= 2
    if spread:
        text += ", with a band of +- one sample standard deviation (clipped to [0, 1] for accuracy)"
    else:
        text += " (one seed per setting: no spread to show)"
    text += "."
    if one_eval:
        text += " A setting evaluated once is drawn as a point" + (
            ", its standard deviation as an error bar." if spread else "."
        )
    if refs:
        styles = ["dashed", "dotted", "dash-dotted"]
        lines = "; ".join(f"{styles[i % 3]}: {label}" for i, (_, label) in enumerate(refs))
        text += (
            f" Black horizontal lines, the course report's final accuracy for this setup ({lines})."
        )
        what = (
            "where each setting settles against the course report's line and how fast it gets there"
        )
    else:
        what = "how fast each setting learns and where it settles"
    if spread:
        what += ", and how wide the spread over seeds is"
    return f"{text} What to see: {what}."


def boundary_caption(panels: list[dict], data: str) -> str:
    """The decision-boundary caption, saying only what ``plots.plot_decision_boundaries`` drew."""
    two = all(
        int(max(p["y"].max(), p["zz"].max())) <= 1 and p.get("prob") is not None for p in panels
    )
    shading = (
        "shaded by its probability of class 1, the black line where that is 0.5"
        if two
        else "coloured by the predicted class"
    )
    what = (
        "a smooth boundary that follows the two moons; errors sit where the noisy moons overlap."
        if data == "moons"
        else "a boundary that separates the classes without wrapping single points."
    )
    return (
        "Decision boundaries: test points over what each setting's network predicts (its first seed, "
        f"the weights its final test accuracy measured), {shading}, with that accuracy in the "
        f"panel's title. What to see: {what}"
    )


def experiment_figures(exp: Experiment, fig_dir: Path, slug: str) -> list[tuple]:
    """Draw the experiment's figures into ``fig_dir``; returns report blocks:
    ``("figure", path, caption)``, or ``("p", text)`` where a figure cannot be drawn.
    ``slug`` (and every other part of a file name) is made safe here (``plots.safe_slug``)."""
    blocks: list[tuple] = []
    slug = plots.safe_slug(slug)
    # Reference lines only where the setting is the course report's own (ref_cells' rule).
    refs: list[tuple[float, str]] = []
    for g in group_stats(exp):
        r = g.reference
        if r is not None and r.value is not None and r.metric == "final_test_acc" and not g.why_not:
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
            one_eval = any(
                len({r["epoch"] for h in runs for r in h}) == 1 for runs in groups.values()
            )
            caption = curves_caption([len(v) for v in groups.values()], one_eval, refs)
            blocks.append(("figure", path, caption))
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
        star = key == "data.length"
        points = [(5.0, 1.0, "course report: 100% at T=5")] if star else []
        name = plots.safe_slug(key.split(".")[-1])
        series = [k for k in exp.keys if k != key]
        path = plots.plot_metric_vs_param(
            rows,
            key,
            fig_dir / f"{slug}-accuracy-vs-{name}.png",
            series=series,
            title=f"{exp.preset}: final test accuracy against {name}",
            references=points,
        )
        counts: dict[tuple, int] = {}
        for r in rows:
            if r["final_test_acc"] is not None:
                at = (*(r[k] for k in series), r[key])
                counts[at] = counts.get(at, 0) + 1
        band = (
            ", with a band from the lowest to the highest seed"
            if max(counts.values(), default=0) >= 2
            else " (one seed per point: no band)"
        )
        what = LENGTH_WHAT if star else f"how final accuracy changes with {key}."
        lines = f", one line per setting of {', '.join(series)}" if series else ""
        caption = (
            f"Final test accuracy against {key}{lines}: the mean over seeds (points joined by "
            f"lines){band}. What to see: {what}"
        )
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
        caption = boundary_caption(panels, str(exp.runs[0].config["data"]["name"]))
        blocks.append(
            ("figure", plots.plot_decision_boundaries(panels, path, title=title), caption)
        )
    if missing:
        blocks.append(("p", f"Decision boundaries of {', '.join(missing)}: {NO_BOUNDARY}."))
    return blocks

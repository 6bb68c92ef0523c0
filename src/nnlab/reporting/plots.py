"""Figures, drawn only from arrays and rows handed to them or read from run folders through
``nnlab.runs`` (metrics rows, summaries, ``boundary.npz``): no model or data set is rebuilt here.

matplotlib is imported inside each function, and figures are made without pyplot
(``_figure``), so importing nnlab never pays for it and a run pays only for what it draws.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nnlab.runs import RunFolder, SweepFolder


def _figure(**kwargs):
    """A matplotlib ``Figure`` made directly, not through pyplot: pyplot's import (its
    backend machinery) costs about half a second of every run's start-up, and a figure
    that is only saved needs none of it (``savefig`` renders with Agg by itself)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def safe_slug(text: str, limit: int = 80) -> str:
    """``text`` as one safe file-name component: only ``[A-Za-z0-9._-]``, no leading dot,
    at most ``limit`` characters. Names built from run files (a preset's name in
    summary.json, a swept key) go through it, so no crafted file can point outside --out."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).lstrip(".")[:limit]
    return slug or "_"


def plain_text(fig):
    """Titles, axis labels, legends and notes of ``fig`` drawn as plain text, not mathtext:
    they hold preset names, keys and values from run files, where a ``$`` is a dollar sign
    (a malformed ``$\\frac{$`` made matplotlib raise at the end of a run). Tick labels keep
    mathtext (a log axis's 10^-3). Returns ``fig``."""
    from matplotlib.axis import Axis, Tick
    from matplotlib.text import Text

    keep = set()
    for tick in fig.findobj(Tick):
        keep.update((id(tick.label1), id(tick.label2)))
    keep.update(id(axis.offsetText) for axis in fig.findobj(Axis))
    for text in fig.findobj(Text):
        if id(text) not in keep:
            text.set_parse_math(False)
    return fig


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Render ``fig`` to PNG in memory, then write it atomically (no torn image on a crash), and close it."""
    import io

    from nnlab.runs import atomic_write_bytes

    plain_text(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_curves(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy, train and test, against epoch: two panels side by side."""
    return save_figure(curves_figure(history, title), path)


def curves_figure(history: Sequence[dict[str, float]], title: str = ""):
    """The figure ``plot_curves`` saves, left open (``nnlab.Run.plot_curves`` shows it in a notebook)."""
    epochs = [r["epoch"] for r in history]
    # Fixed margins, not constrained_layout: this figure is drawn for every run, and
    # the layout solver was about 40% of its cost.
    fig = _figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.84, wspace=0.22)
    # One evaluation is one point: a line through it would draw nothing.
    marker = "o" if len(epochs) == 1 else None
    for split, style in (("train", "-"), ("test", "--")):
        ax_loss.plot(
            epochs, [r[f"{split}_loss"] for r in history], style, marker=marker, label=split
        )
        ax_acc.plot(epochs, [r[f"{split}_acc"] for r in history], style, marker=marker, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return plain_text(fig)  # shown in a notebook too: a "$" in the title is text


def boundary_grid(x, resolution: int = 120):
    """A ``resolution`` x ``resolution`` grid around 2-D points ``x`` (N, 2), half a unit beyond them.

    Returns ``xx``, ``yy`` (R, R) and ``points`` (R*R, 2) float32: the engine scores
    ``points`` with the model a run reports and stores the result in ``RUN/boundary.npz``
    (``nnlab.runs.write_boundary``).
    """
    import numpy as np

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"boundary_grid: expected points of shape (N, 2), got {x.shape}")
    lo, hi = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
    xx, yy = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)


def boundary_panel(run: RunFolder, label: str) -> dict | None:
    """One panel of ``plot_decision_boundaries`` from a ``RunFolder``'s ``boundary.npz``
    (None if it has none): its test points over the predictions of the model it reports."""
    arrays = run.boundary()
    if arrays is None:
        return None
    summary = run.summary or {}
    acc = summary.get("final_test_acc")
    score = f"test acc {acc:.3f}" if isinstance(acc, (int, float)) else "no test acc"
    weights = " (best checkpoint)" if run.reported == "best" else ""
    return {
        "title": f"{label}\nseed {summary.get('seed', '?')}: {score}{weights}",
        "x": arrays["x_test"],
        "y": arrays["y_test"],
        "xx": arrays["xx"],
        "yy": arrays["yy"],
        "zz": arrays["pred"],
        "prob": arrays["prob"],  # (R, R): the probability of the predicted class
    }


def plot_decision_boundaries(panels: Sequence[dict], path: Path, title: str = "") -> Path:
    """Side-by-side panels of 2-D test points over a classifier's predicted regions.

    Each panel is ``{"title", "x": (N, 2), "y": (N,), "xx", "yy": (G, G) grid
    coordinates, "zz": (G, G) predicted class}``, and optionally ``"prob"`` (G, G), the
    probability of the predicted class: for two classes the regions are then shaded by
    the probability of class 1, with its 0.5 line.
    """
    import matplotlib
    import numpy as np

    n_classes = int(max(max(p["y"].max(), p["zz"].max()) for p in panels)) + 1
    cmap = matplotlib.colormaps["coolwarm" if n_classes <= 2 else "viridis"].resampled(
        max(n_classes, 2)
    )
    fig = _figure(figsize=(4.2 * len(panels), 4), constrained_layout=True)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        if n_classes <= 2 and p.get("prob") is not None:
            prob1 = np.where(p["zz"] == 1, p["prob"], 1.0 - p["prob"])  # P(class 1)
            levels = np.linspace(0.0, 1.0, 11)
            ax.contourf(p["xx"], p["yy"], prob1, levels=levels, cmap="coolwarm", alpha=0.35)
            ax.contour(p["xx"], p["yy"], prob1, levels=[0.5], colors="k", linewidths=0.8)
        else:
            levels = np.arange(n_classes + 1) - 0.5
            ax.contourf(p["xx"], p["yy"], p["zz"], levels=levels, cmap=cmap, alpha=0.35)
        ax.scatter(
            p["x"][:, 0],
            p["x"][:, 1],
            c=p["y"],
            cmap=cmap,
            vmin=-0.5,
            vmax=max(n_classes, 2) - 0.5,
            s=12,
            edgecolors="k",
            linewidths=0.3,
        )
        ax.set(title=p["title"], xticks=[], yticks=[])
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_sweep_boundaries(sweep: SweepFolder) -> list[Path]:
    """``boundaries-<data>.png`` in a ``SweepFolder`` per 2-D data set: one panel per grid point
    (its first finished seed), drawn from that run's ``boundary.npz``; runs without one are left out."""
    figures: dict[str, list[dict]] = {}
    seen: set[tuple[str, str]] = set()
    for run in sweep.listed:
        label = "  ".join(
            f"{k.split('.')[-1]}={v}" for k, v in run.point.items() if k != "data.name"
        )
        data = str(run.config["data"]["name"])
        if (data, label) in seen or run.status != "completed":
            continue
        panel = boundary_panel(run, label or run.preset or run.path.name)
        if panel is not None:
            seen.add((data, label))
            figures.setdefault(data, []).append(panel)
    return [
        plot_decision_boundaries(
            panels,
            sweep.path / f"boundaries-{safe_slug(data)}.png",
            title=f"{data}: test points and decision boundaries",
        )
        for data, panels in figures.items()
    ]


def plot_metric_vs_param(
    rows: Sequence[dict],
    param: str,
    path: Path,
    series: Sequence[str] = (),
    metric: str = "final_test_acc",
    title: str = "",
    references: Sequence[tuple[float, float, str]] = (),
) -> Path:
    """Mean ``metric`` over seeds against a numeric swept ``param``, one line per ``series`` setting,
    with a shaded min-max band over seeds (results.csv rows; runs without the metric are skipped).

    E.g. mean final test accuracy against palindrome length, one line per model.
    ``references`` are ``(x, y, label)`` points drawn as black stars (a published number to compare with).
    """
    groups: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        if r.get(metric) in (None, ""):
            continue
        label = ", ".join(f"{k}={r[k]}" for k in series) or metric
        groups.setdefault(label, {}).setdefault(float(r[param]), []).append(float(r[metric]))
    fig = _figure(figsize=(7, 4.5), constrained_layout=True)
    ax = fig.subplots()
    for label, by_x in groups.items():
        xs = sorted(by_x)
        mean = [sum(by_x[x]) / len(by_x[x]) for x in xs]
        n = sorted({len(by_x[x]) for x in xs})
        (line,) = ax.plot(xs, mean, "o-", label=f"{label} (n={'/'.join(map(str, n))} seeds)")
        ax.fill_between(
            xs,
            [min(by_x[x]) for x in xs],
            [max(by_x[x]) for x in xs],
            color=line.get_color(),
            alpha=0.2,
        )
    for x, y, label in references:
        ax.plot([x], [y], "k*", markersize=12, label=label)
    ax.set(
        xlabel=param,
        ylabel=f"{metric} (mean; band: min-max over seeds)",
        title=title or f"{metric} against {param}",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_sweep_metric(sweep: SweepFolder) -> list[Path]:
    """After a sweep: for each swept key of a ``SweepFolder`` with three or more numeric values,
    ``accuracy_vs_<key>.png`` in its folder (one line per setting of the other keys)."""
    rows, keys, paths = sweep.results, sweep.keys, []
    for key in keys:
        values = {r[key] for r in rows}
        if len(values) < 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            continue
        others = [k for k in keys if k != key]
        name = f"accuracy_vs_{key.split('.')[-1]}.png"
        paths.append(plot_metric_vs_param(rows, key, sweep.path / name, series=others))
    return paths


def plot_curves_mean_std(
    groups: dict[str, Sequence[Sequence[dict[str, float]]]],
    path: Path,
    title: str = "",
    references: Sequence[tuple[float, str]] = (),
) -> Path:
    """Test accuracy and training loss against epoch, mean +- std over seeds, one line per group.

    ``groups`` maps a label (e.g. ``"backend=numpy"``) to the metrics rows of each
    of its seeds' runs (``metrics.csv`` as ``read_metrics`` returns it). Seeds are
    aligned by epoch; a run that stopped early (``train.target_acc``) simply leaves
    the later epochs' statistics, so n can shrink along the curve (the legend
    gives the largest n). The band is +- one sample std where two or more seeds
    have the epoch, clipped to [0, 1] for accuracy (and, on the log loss axis, kept
    above zero); a group with one evaluation is a point (with an error bar). ``references``
    are ``(accuracy, label)`` horizontal black lines, dashed, then dotted, then dash-dotted.
    """
    return save_figure(curves_mean_std_figure(groups, title, references), path)


REFERENCE_STYLES = ("--", ":", "-.")  # the styles of plot_curves_mean_std's reference lines


def curves_mean_std_figure(groups, title: str = "", references: Sequence[tuple[float, str]] = ()):
    """The figure ``plot_curves_mean_std`` saves, left open."""
    import itertools

    import numpy as np

    fig = _figure(figsize=(10, 4), constrained_layout=True)
    ax_acc, ax_loss = fig.subplots(1, 2)
    all_epochs = {row["epoch"] for runs in groups.values() for h in runs for row in h}
    if len(all_epochs) == 1:  # points only: whole-epoch ticks, and accuracy on its full scale
        for ax in (ax_acc, ax_loss):
            ax.set_xticks(sorted(all_epochs))
        ax_acc.set_ylim(-0.02, 1.02)
    for label, runs in groups.items():
        by_epoch: dict[float, list[tuple[float, float]]] = {}
        for history in runs:
            for row in history:
                by_epoch.setdefault(row["epoch"], []).append((row["test_acc"], row["train_loss"]))
        epochs = sorted(by_epoch)
        vals = [np.array(by_epoch[e], dtype=float) for e in epochs]  # each (n_e, 2): acc, loss
        mean = np.array([v.mean(axis=0) for v in vals])
        std = np.array([v.std(axis=0, ddof=1) if len(v) > 1 else np.zeros(2) for v in vals])
        for ax, col in ((ax_acc, 0), (ax_loss, 1)):
            lo, hi = mean[:, col] - std[:, col], mean[:, col] + std[:, col]
            if col == 0:  # an accuracy lies in [0, 1], and so does its band
                lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
            else:  # a log axis cannot show zero or less: cut the band at a tenth of the mean
                lo = np.where(lo > 0, lo, mean[:, col] / 10)
            name = f"{label} (n={len(runs)})"
            if len(epochs) == 1:  # one evaluation: a point, its spread as an error bar
                yerr = [[mean[0, col] - lo[0]], [hi[0] - mean[0, col]]]
                ax.errorbar(epochs, mean[:, col], yerr=yerr, fmt="o", capsize=4, label=name)
                continue
            (line,) = ax.plot(epochs, mean[:, col], label=name)
            ax.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.2)
    for (value, label), style in zip(references, itertools.cycle(REFERENCE_STYLES)):
        ax_acc.axhline(value, color="k", linestyle=style, linewidth=1, label=label)
    ax_acc.set(
        xlabel="epoch", ylabel="test accuracy (mean +- std over seeds)", title="test accuracy"
    )
    ax_loss.set(
        xlabel="epoch", ylabel="training loss (mean +- std over seeds)", title="training loss"
    )
    # the loss falls over orders of magnitude; a log axis keeps the tail visible
    ax_loss.set_yscale("log")
    for ax in (ax_acc, ax_loss):
        if len(all_epochs) > 1:
            ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig

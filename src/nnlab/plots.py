"""Figures, drawn only from what run folders hold (metrics rows, summaries).

matplotlib is imported inside each function (with the file-only Agg backend),
so importing nnlab never pays for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import os
    import sys

    import matplotlib

    # Files only (Agg) by default, but keep a backend someone chose: a Jupyter kernel sets
    # MPLBACKEND to its inline backend, and forcing Agg there would stop figures showing.
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Render ``fig`` to PNG in memory, then write it atomically (no torn image on a crash), and close it."""
    import io

    from nnlab.runs import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _pyplot().close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_curves(history: Sequence[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy, train and test, against epoch: two panels side by side."""
    return save_figure(curves_figure(history, title), path)


def curves_figure(history: Sequence[dict[str, float]], title: str = ""):
    """The figure ``plot_curves`` saves, left open (``nnlab.Run.plot_curves`` shows it in a notebook)."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    # Fixed margins, not constrained_layout: this figure is drawn for every run, and
    # the layout solver was about 40% of its cost.
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.84, wspace=0.22)
    for split, style in (("train", "-"), ("test", "--")):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], style, label=split)
        ax_acc.plot(epochs, [r[f"{split}_acc"] for r in history], style, label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_decision_boundaries(panels: Sequence[dict], path: Path, title: str = "") -> Path:
    """Side-by-side panels of 2-D test points over a classifier's predicted regions.

    Each panel is ``{"title", "x": (N, 2), "y": (N,), "xx", "yy": (G, G) grid
    coordinates, "zz": (G, G) predicted class}``.
    """
    import numpy as np

    plt = _pyplot()
    n_classes = int(max(max(p["y"].max(), p["zz"].max()) for p in panels)) + 1
    cmap = plt.get_cmap("coolwarm" if n_classes == 2 else "viridis", n_classes)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False, constrained_layout=True
    )
    for ax, p in zip(axes[0], panels, strict=True):
        ax.contourf(
            p["xx"], p["yy"], p["zz"], levels=np.arange(n_classes + 1) - 0.5, cmap=cmap, alpha=0.35
        )
        ax.scatter(
            p["x"][:, 0],
            p["x"][:, 1],
            c=p["y"],
            cmap=cmap,
            vmin=-0.5,
            vmax=n_classes - 0.5,
            s=12,
            edgecolors="k",
            linewidths=0.3,
        )
        ax.set(title=p["title"], xticks=[], yticks=[])
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_sweep_boundaries(
    out: Path, planned: Sequence[tuple], keys: Sequence[str], resolution: int = 150
) -> list[Path]:
    """For sweeps of MLPs on the 2-D toy sets: ``boundaries-<data>.png`` in ``out``, one panel per
    grid point (the first seed's finished run, its final weights), with its test points.

    ``planned`` holds ``(run name, config, grid point)`` as ``sweep.plan`` returns them.
    """
    from nnlab.runs import read_json

    figures: dict[str, list[dict]] = {}
    seen: set[str] = set()
    for name, cfg, point in planned:
        label = (
            "  ".join(f"{k.split('.')[-1]}={v}" for k, v in point.items() if k != "data.name")
            or cfg.name
        )
        folder = Path(out) / name
        if (
            cfg.data.name not in ("moons", "circles", "blobs")
            or cfg.model.name != "mlp"
            or label + cfg.data.name in seen
        ):
            continue  # not 2-D data, or this grid point already has its panel (from its first seed)
        if (
            not (folder / "summary.json").exists()
            or read_json(folder / "summary.json").get("status") == "diverged"
        ):
            continue
        seen.add(label + cfg.data.name)
        figures.setdefault(cfg.data.name, []).append(boundary_panel(cfg, folder, label, resolution))
    return [
        plot_decision_boundaries(
            panels,
            Path(out) / f"boundaries-{data}.png",
            title=f"{data}: test points and decision boundaries",
        )
        for data, panels in figures.items()
    ]


def boundary_panel(cfg, folder: Path, label: str, resolution: int) -> dict:
    """One panel of ``plot_decision_boundaries`` for the finished 2-D run in ``folder``:
    its test points and its predictions on a ``resolution`` x ``resolution`` grid around them."""
    import numpy as np

    x, y, predict = _run_predictor(cfg, folder)
    lo, hi = x.min(axis=0) - 0.5, x.max(axis=0) + 0.5
    xx, yy = np.meshgrid(
        np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    )
    zz = predict(np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)).reshape(xx.shape)
    acc = float((predict(x) == y).mean())
    title = f"{label}\nseed {cfg.train.seed}: test acc {acc:.3f}"
    return {"title": title, "x": x, "y": y, "xx": xx, "yy": yy, "zz": zz}


def _run_predictor(cfg, folder: Path):
    """The run's test split and a ``(N, 2) array -> predicted classes`` function from its last checkpoint."""
    import torch

    from nnlab.data import load_data

    data = load_data(cfg.data, cfg.train.seed)
    x, y = data.x_test.numpy(), data.y_test.numpy()
    if cfg.model.backend == "numpy":
        from nnlab.numpy_mlp.run import load_model

        model = load_model(folder / "checkpoints" / "last.npz")
        return x, y, lambda points: model.forward(points).argmax(-1)
    from nnlab.models import build_model
    from nnlab.runs import load_checkpoint

    net = build_model(cfg.model, data.input_shape, data.n_classes)
    net.load_state_dict(load_checkpoint(folder / "checkpoints" / "last.pt")["model"])
    net.eval()

    def predict(points):
        with torch.no_grad():
            return net(torch.from_numpy(points)).argmax(-1).numpy()

    return x, y, predict


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
    plt = _pyplot()
    groups: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        if r.get(metric) in (None, ""):
            continue
        label = ", ".join(f"{k}={r[k]}" for k in series) or metric
        groups.setdefault(label, {}).setdefault(float(r[param]), []).append(float(r[metric]))
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
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


def plot_sweep_metric(out: Path, rows: Sequence[dict], keys: Sequence[str]) -> list[Path]:
    """After a sweep: for each swept key with three or more numeric values,
    ``accuracy_vs_<key>.png`` in ``out`` (one line per setting of the other keys)."""
    paths = []
    for key in keys:
        values = {r[key] for r in rows}
        if len(values) < 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            continue
        others = [k for k in keys if k != key]
        name = f"accuracy_vs_{key.split('.')[-1]}.png"
        paths.append(plot_metric_vs_param(rows, key, Path(out) / name, series=others))
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
    gives the largest n). ``references`` are ``(accuracy, label)`` horizontal
    lines, e.g. the course report's final accuracy.
    """
    import itertools

    import numpy as np

    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
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
            (line,) = ax.plot(epochs, mean[:, col], label=f"{label} (n={len(runs)})")
            ax.fill_between(
                epochs,
                mean[:, col] - std[:, col],
                mean[:, col] + std[:, col],
                color=line.get_color(),
                alpha=0.2,
            )
    for (value, label), style in zip(references, itertools.cycle(["--", ":", "-."])):
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
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)

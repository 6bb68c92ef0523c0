"""``nnlab report``: run and sweep folders -> ``report.md`` and a self-contained ``report.html``.

The report reads only what training wrote (STYLE.md #8): each run folder's
``config.toml``, ``summary.json``, ``metrics.csv`` and checkpoints, and each
sweep folder's ``results.csv``. For every experiment (one run or sweep folder)
it gives the setup (and what differs from its preset, e.g. a ``--quick``
scale), a table of mean +- std over seeds with n, its figures with captions,
and the course report's own number beside ours (``course_reference``).

Figures go to ``OUT/figures/*.png`` (linked from ``report.md``) and are embedded
in ``report.html`` as base64, so the HTML opens from disk with no network.
The folders are read by ``nnlab.report_data``; the document is built here once,
as a list of blocks, and rendered twice (``nnlab.report_render``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlab.errors import RunError
from nnlab.report_data import Experiment, collect_folders
from nnlab.sweep import mean_std

TOY_DATA = ("moons", "circles", "blobs")


# --------------------------------------------------------------------------- the course report's numbers


@dataclass(frozen=True)
class Reference:
    """A number from the course report to set beside ours (``value`` None: it gave a figure only)."""

    value: float | None
    text: str
    metric: str = "final_test_acc"  # the report's CNN number is its best epoch: best_test_acc


def course_reference(cfg: dict[str, dict[str, Any]]) -> Reference | None:
    """The course report's result for the experiment a resolved config (as a dict) describes."""
    data, model = cfg["data"], cfg["model"]
    if data["name"] == "moons":
        if model.get("backend") == "numpy":
            return Reference(0.96, "96% (its from-scratch NumPy MLP)")
        return Reference(0.91, "91% (its PyTorch MLP)")
    if data["name"] in ("cifar10", "imagefolder"):
        if model["name"] == "mlp":
            return Reference(0.55, "~55% (its MLP)")
        if model["name"] == "cnn":
            return Reference(0.7969, "79.69% best epoch (its reduced VGG)", "best_test_acc")
    if data["name"] == "palindrome":
        length = int(data["length"])
        if length == 5:
            return Reference(1.0, "100% at T=5 (its vanilla RNN)")
        if 3 <= length <= 11:
            return Reference(None, "falls as T grows over 3..11 (figure only, no numbers)")
    return None


def part_of(cfg: dict[str, dict[str, Any]]) -> tuple[int, str]:
    """Where an experiment belongs in the course report: (order, section title)."""
    data, model = cfg["data"]["name"], cfg["model"]["name"]
    if data in TOY_DATA:
        return 1, "Part 1: MLP on 2-D data (make_moons)"
    if data in ("cifar10", "imagefolder") and model == "mlp":
        return 2, "Part 1: MLP on CIFAR-10"
    if data in ("cifar10", "imagefolder"):
        return 3, "Part 2: CNN on CIFAR-10"
    if data == "palindrome":
        return 4, "Part 3: recurrent networks on palindromes"
    return 9, "Other experiments"


# --------------------------------------------------------------------------- the experiments


def collect(dirs: list[Path]) -> tuple[list[Experiment], list[str]]:
    """Every experiment under ``dirs`` (see ``report_data.collect_folders``), in the course report's order."""
    experiments, notices = collect_folders(dirs)
    experiments.sort(key=lambda e: (part_of(e.runs[0].config)[0], not e.preset.startswith("seed-")))
    return experiments, notices


# --------------------------------------------------------------------------- statistics


@dataclass
class GroupStats:
    """One setting of one experiment: mean +- std (n) of our numbers and the course report's."""

    label: str
    n: int
    failed: int
    final: tuple[float, float]
    best: tuple[float, float]
    seconds: float
    reference: Reference | None

    @property
    def ours(self) -> float:
        """Our number on the reference's own metric (the report's CNN figure is a best epoch)."""
        if self.reference is not None and self.reference.metric == "best_test_acc":
            return self.best[0]
        return self.final[0]


def group_stats(exp: Experiment) -> list[GroupStats]:
    out = []
    for values, runs in exp.groups.items():
        ok = [r for r in runs if r.ok]
        fm, fs, n = mean_std([float(r.summary["final_test_acc"]) for r in ok])
        bm, bs, _ = mean_std([float(r.summary["best_test_acc"]) for r in ok])
        secs, _, _ = mean_std([float(r.summary.get("train_seconds") or 0.0) for r in ok])
        out.append(
            GroupStats(
                exp.label(values),
                n,
                len(runs) - n,
                (fm, fs),
                (bm, bs),
                secs,
                course_reference(runs[0].config),
            )
        )
    return out


def pct(mean: float, std: float | None = None) -> str:
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f}%" if std is None else f"{100 * mean:.2f} +- {100 * std:.2f}%"


def ref_cells(g: GroupStats) -> tuple[str, str]:
    """(the course report's number, ours minus it in percentage points)."""
    if g.reference is None:
        return "-", "-"
    if g.reference.value is None or g.n == 0:
        return g.reference.text, "-"
    return g.reference.text, f"{100 * (g.ours - g.reference.value):+.1f} pts"


# --------------------------------------------------------------------------- setup and provenance


def setup_lines(exp: Experiment) -> list[str]:
    """The resolved settings that matter, and what differs from the preset (e.g. a --quick scale)."""
    from nnlab.config import Config

    cfg = exp.runs[0].config
    defaults = Config().to_dict()
    essential = {
        "data": ["name"],
        "model": ["name", "hidden"],
        "optim": ["name", "lr"],
        "schedule": ["name"],
        "train": ["epochs", "batch_size"],
    }
    skip = {*exp.keys, "train.seed", "train.device", "train.threads"}
    lines = []
    for section, keys in essential.items():
        values = cfg.get(section, {})
        shown = [
            k
            for k in values
            if (k in keys or values[k] != defaults[section].get(k)) and f"{section}.{k}" not in skip
        ]
        if shown:
            lines.append(f"[{section}] " + ", ".join(f"{k}={_fmt(values[k])}" for k in shown))
    s = exp.runs[0].summary
    if s.get("n_train") is not None:
        lines.append(f"data size: {s['n_train']} training / {s.get('n_test')} test examples")
    if exp.keys:
        lines.append(
            "swept: "
            + ", ".join(
                f"{k} in {sorted({r.point[k] for r in exp.runs}, key=_num_key)}" for k in exp.keys
            )
        )
    seeds = sorted({int(r.summary.get("seed", r.config["train"].get("seed", 0))) for r in exp.runs})
    lines.append(f"seeds: {', '.join(map(str, seeds))}")
    diff = preset_differences(exp)
    if diff:
        lines.append(
            f"differs from preset '{exp.preset}' (a reduced scale, e.g. --quick): "
            + ", ".join(diff)
        )
    return lines


def preset_differences(exp: Experiment) -> list[str]:
    """``key=ours (preset: theirs)`` for each setting that differs from the named preset."""
    from nnlab.config import load_config, preset_names

    if exp.preset not in preset_names():
        return []
    preset = load_config(exp.preset).to_dict()
    cfg = exp.runs[0].config
    skip = {*exp.keys, "train.seed", "train.device", "train.threads"}
    out = []
    for section, values in preset.items():
        for key, theirs in values.items():
            ours = cfg.get(section, {}).get(key, theirs)
            if f"{section}.{key}" not in skip and ours != theirs:
                out.append(f"{section}.{key}={_fmt(ours)} (preset: {_fmt(theirs)})")
    return out


def provenance(experiments: list[Experiment]) -> list[str]:
    """Machine, versions, commits and wall time, from the runs' summaries."""
    summaries = [r.summary for e in experiments for r in e.runs]
    versions = {
        k: sorted({str(s.get("versions", {}).get(k)) for s in summaries if s.get("versions")})
        for k in ("platform", "python", "torch", "numpy", "nnlab")
    }
    devices = sorted(
        {
            f"{s.get('device')}" + (f" ({s['threads']} threads)" if s.get("threads") else "")
            for s in summaries
        }
    )
    commits = sorted({str(s.get("git_commit")) for s in summaries})
    lines = [f"{k}: {', '.join(v)}" for k, v in versions.items() if v]
    lines += [f"devices: {', '.join(devices)}", f"git commit(s): {', '.join(commits)}"]
    total = sum(float(s.get("train_seconds") or 0) for s in summaries)
    lines.append(
        f"training time, all {len(summaries)} runs: {total:.0f} s (sum of train_seconds); wall time per experiment below"
    )
    return lines


def wall_time(exp: Experiment) -> str:
    """First start to last end over the experiment's runs (runs may have trained in parallel)."""
    spans = []
    for r in exp.runs:
        try:
            start = time.mktime(time.strptime(r.summary["started"][:19], "%Y-%m-%dT%H:%M:%S"))
        except (KeyError, TypeError, ValueError):
            continue
        spans.append((start, start + float(r.summary.get("train_seconds") or 0)))
    total = sum(float(r.summary.get("train_seconds") or 0) for r in exp.runs)
    if not spans:
        return f"{total:.1f} s of training"
    return f"{max(e for _, e in spans) - min(s for s, _ in spans):.0f} s wall ({total:.1f} s of training over {len(exp.runs)} runs)"


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _num_key(v: str) -> tuple:
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


# --------------------------------------------------------------------------- figures


def experiment_figures(exp: Experiment, fig_dir: Path, slug: str) -> list[tuple[Path, str]]:
    """Draw the experiment's figures into ``fig_dir``; returns (path, caption) pairs."""
    from nnlab import plots

    figures = []
    stats = group_stats(exp)
    refs: list[
        tuple[float, str]
    ] = []  # dashed lines: the report's final accuracies (not its best-epoch CNN figure)
    for g in stats:
        r = g.reference
        if (
            r is not None
            and r.value is not None
            and r.metric == "final_test_acc"
            and (r.value, f"course report: {r.text}") not in refs
        ):
            refs.append((r.value, f"course report: {r.text}"))
    numeric = [
        k
        for k in exp.keys
        if len({r.point[k] for r in exp.runs}) >= 3
        and all(_num_key(r.point[k])[0] == 0 for r in exp.runs)
    ]
    if len(exp.groups) <= 6:
        groups = {
            exp.label(v): [r.history() for r in runs if r.ok] for v, runs in exp.groups.items()
        }
        groups = {k: v for k, v in groups.items() if v}
        if groups:
            path = plots.plot_curves_mean_std(
                groups,
                fig_dir / f"{slug}-curves.png",
                title=f"{exp.preset}: learning curves",
                references=refs,
            )
            figures.append(
                (
                    path,
                    (
                        "Test accuracy (left) and training loss (right, log scale) against epoch: mean over seeds, band +- one "
                        "standard deviation, n seeds per setting. Dashed lines: the course report's final accuracy. "
                        "What to see: where each setting settles against the dashed line, how fast it gets there, "
                        "and how wide the spread over seeds is."
                    ),
                )
            )
    for key in numeric:
        rows = [{**r.point, "final_test_acc": r.summary.get("final_test_acc")} for r in exp.runs]
        rows = [{**row, key: float(row[key])} for row in rows]
        others = [k for k in exp.keys if k != key]
        points = []
        if key == "data.length":
            points = [(5.0, 1.0, "course report: 100% at T=5")]
        name = key.split(".")[-1]
        path = plots.plot_metric_vs_param(
            rows,
            key,
            fig_dir / f"{slug}-accuracy-vs-{name}.png",
            series=others,
            title=f"{exp.preset}: final test accuracy against {name}",
            references=points,
        )
        what = (
            "accuracy against the number of digits T: the course report's vanilla RNN reached 100% at T=5 (star) and fell as T "
            "grew over 3..11; compare each model's line with that, and where it drops towards chance (10%)."
            if key == "data.length"
            else f"how final accuracy changes with {key}."
        )
        figures.append(
            (
                path,
                f"Final test accuracy against {key}: mean over seeds (line), min-max over seeds (band). What to see: {what}",
            )
        )
    cfg = exp.runs[0].config
    if cfg["data"]["name"] in TOY_DATA and cfg["model"]["name"] == "mlp":
        path = boundary_figure(exp, fig_dir / f"{slug}-boundaries.png")
        if path is not None:
            figures.append(
                (
                    path,
                    (
                        "Decision boundaries: test points over the regions each setting's network predicts (first seed, final "
                        "weights), with its test accuracy. What to see: a smooth boundary that follows the two moons; "
                        "errors sit where the noisy moons overlap."
                    ),
                )
            )
    return figures


def boundary_figure(exp: Experiment, path: Path, resolution: int = 120) -> Path | None:
    """One panel per setting (its first finished seed), drawn from the run's last checkpoint."""
    from nnlab.config import load_config
    from nnlab.plots import boundary_panel, plot_decision_boundaries

    panels = []
    for values, runs in exp.groups.items():
        ok = [r for r in runs if r.ok]
        if not ok:
            continue
        run = ok[0]
        cfg = load_config(str(run.path / "config.toml"))
        panels.append(boundary_panel(cfg, run.path, exp.label(values), resolution))
    if not panels:
        return None
    return plot_decision_boundaries(
        panels, path, title=f"{exp.preset}: test points and decision boundaries"
    )


# --------------------------------------------------------------------------- the document


def build_blocks(
    experiments: list[Experiment], notices: list[str], fig_dir: Path, note: str = ""
) -> list[tuple]:
    """The report as blocks: ("h1"|"h2"|"h3"|"p", text), ("list", items), ("table", head, rows), ("figure", path, caption)."""
    blocks: list[tuple] = [("h1", "nnlab: the course report, reproduced")]
    blocks.append(
        (
            "p",
            (
                "Every experiment of the course report (CS324 Deep Learning, Assignment 2) re-run with correct code, beside "
                "nnlab's own improved presets. Accuracies are test-set accuracies as mean +- sample standard deviation over "
                "seeds, with n the number of seeds; 'final' is the model each run ends with, 'best' its best evaluation."
            ),
        )
    )
    if note:
        blocks.append(("p", note))
    summary_rows, sections = [], []
    for i, exp in enumerate(experiments):
        stats = group_stats(exp)
        _, part = part_of(exp.runs[0].config)
        kind = "the course report's setup" if exp.preset.startswith("seed-") else "nnlab's preset"
        for g in stats:
            ref, delta = ref_cells(g)
            summary_rows.append(
                [exp.preset, g.label, pct(*g.final) + f" (n={g.n})", pct(*g.best), ref, delta]
            )
        slug = f"{i:02d}-{exp.preset}"
        sections.append((part, exp, stats, kind, slug))
    blocks += [
        ("h2", "Summary"),
        (
            "table",
            [
                "experiment",
                "setting",
                "final test acc (n)",
                "best test acc",
                "course report",
                "ours - report",
            ],
            summary_rows,
        ),
    ]
    current = None
    for part, exp, stats, kind, slug in sections:
        if part != current:
            blocks.append(("h2", part))
            current = part
        # e.g. seed-rnn, and seed-rnn over lengths
        folder = f" in {exp.path.name}/" if exp.path.name != exp.preset else ""
        blocks.append(("h3", f"{exp.preset}{folder} ({kind})"))
        if exp.description:
            blocks.append(("p", exp.description))
        blocks.append(
            ("list", [f"folder: {exp.path}", *setup_lines(exp), f"time: {wall_time(exp)}"])
        )
        rows = []
        for g in stats:
            ref, delta = ref_cells(g)
            failed = f" ({g.failed} diverged)" if g.failed else ""
            rows.append(
                [
                    g.label,
                    f"{g.n}{failed}",
                    pct(*g.final),
                    pct(*g.best),
                    f"{g.seconds:.1f}",
                    ref,
                    delta,
                ]
            )
        blocks.append(
            (
                "table",
                [
                    "setting",
                    "n",
                    "final test acc",
                    "best test acc",
                    "train s/run",
                    "course report",
                    "ours - report",
                ],
                rows,
            )
        )
        for path, caption in experiment_figures(exp, fig_dir, slug):
            blocks.append(("figure", path, caption))
    blocks += [("h2", "Machine, versions and time"), ("list", provenance(experiments))]
    if notices:
        blocks += [("h2", "Skipped"), ("list", notices)]
    return blocks


def write_report(dirs: list[Path], out: Path, note: str = "") -> dict[str, Any]:
    """Write ``OUT/report.md``, ``OUT/report.html`` and ``OUT/figures/``; returns paths, notices and the summary."""
    from nnlab.report_render import render_html, render_markdown
    from nnlab.runs import atomic_write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    experiments, notices = collect(dirs)
    fig_dir = out / "figures"
    try:
        fig_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"--out {out}: cannot create it ({exc.strerror or exc})") from None
    blocks = build_blocks(experiments, notices, fig_dir, note)
    atomic_write_text(out / "report.md", render_markdown(blocks, out))
    atomic_write_text(out / "report.html", render_html(blocks))
    summary = next(b for b in blocks if b[0] == "table")
    return {
        "markdown": out / "report.md",
        "html": out / "report.html",
        "notices": notices,
        "summary": summary,
    }


def format_table(head: list[str], rows: list[list[str]]) -> str:
    """A plain-text table for the terminal (columns padded to their widest cell)."""
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_notices(notices: list[str]) -> None:
    for n in notices:
        print(f"nnlab report: {n}", file=sys.stderr)


__all__ = ["write_report", "collect", "course_reference", "Reference", "format_table"]

"""The report as a list of blocks, built once and rendered twice (``nnlab.reporting.render``):
``("h1"|"h2"|"h3"|"p", text)``, ``("list", items)``, ``("table", head, rows)``,
``("figure", png_path, caption)``."""

from __future__ import annotations

from pathlib import Path

from nnlab.reporting.collect import Experiment
from nnlab.reporting.course import part_of
from nnlab.reporting.describe import provenance, setup_lines, wall_time
from nnlab.reporting.figures import experiment_figures
from nnlab.reporting.stats import group_stats, pct, ref_cells

INTRO = (
    "Every experiment of the course report (CS324 Deep Learning, Assignment 2) re-run with correct code, beside "
    "nnlab's own improved presets. Accuracies are test-set accuracies as mean +- sample standard deviation over "
    "seeds, with n the number of seeds; 'final' is the model each run ends with, 'best' its best evaluation."
)
SUMMARY_HEAD = [
    "experiment",
    "setting",
    "final test acc (n)",
    "best test acc",
    "course report",
    "ours - report",
]
SETTING_HEAD = [
    "setting",
    "n",
    "final test acc",
    "best test acc",
    "train s/run",
    "course report",
    "ours - report",
]


def build_blocks(
    experiments: list[Experiment], notices: list[str], fig_dir: Path, note: str = ""
) -> list[tuple]:
    """The whole report: a summary table, then per experiment its setup, table and figures."""
    blocks: list[tuple] = [("h1", "nnlab: the course report, reproduced"), ("p", INTRO)]
    if note:
        blocks.append(("p", note))
    summary_rows, sections = [], []
    for i, exp in enumerate(experiments):
        stats = group_stats(exp)
        for g in stats:
            ref, delta = ref_cells(g)
            summary_rows.append(
                [exp.preset, g.label, pct(*g.final) + f" (n={g.n})", pct(*g.best), ref, delta]
            )
        sections.append((part_of(exp.runs[0].config)[1], exp, stats, f"{i:02d}-{exp.preset}"))
    blocks += [("h2", "Summary"), ("table", SUMMARY_HEAD, summary_rows)]
    current = None
    for part, exp, stats, slug in sections:
        if part != current:
            blocks.append(("h2", part))
            current = part
        kind = "the course report's setup" if exp.preset.startswith("seed-") else "nnlab's preset"
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
                [g.label, f"{g.n}{failed}", pct(*g.final), pct(*g.best), f"{g.seconds:.1f}"]
                + [ref, delta]
            )
        blocks.append(("table", SETTING_HEAD, rows))
        blocks += experiment_figures(exp, fig_dir, slug)
    blocks += [("h2", "Machine, versions and time"), ("list", provenance(experiments))]
    if notices:
        blocks += [("h2", "Skipped"), ("list", notices)]
    return blocks

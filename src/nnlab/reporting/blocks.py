"""The report as a list of blocks, built once and rendered twice (``nnlab.reporting.render``):
``("h1"|"h2"|"h3"|"p", text)``, ``("list", items)``, ``("table", head, rows)``,
``("figure", png_path, caption)``."""

from __future__ import annotations

import os
from pathlib import Path

from nnlab.reporting.collect import Experiment
from nnlab.reporting.course import part_of
from nnlab.reporting.describe import provenance, setup_lines, wall_time
from nnlab.reporting.figures import experiment_figures
from nnlab.reporting.origin import COURSE_PRESETS, Origin, origin
from nnlab.reporting.stats import group_stats, pct, ref_cells
from nnlab.reporting.tune import tune_blocks

COURSE = "the course report (CS324 Deep Learning, Assignment 2)"
HOW_TO_READ = (
    "Accuracies are test-set accuracies: the mean over seeds +- the sample standard deviation where "
    "there are two seeds or more (one run has no standard deviation, so none is given), n the number of "
    "seeds; 'final' is the model each run ends with, 'best' its best evaluation. 'ours - report' is given "
    "only where the setting is the course report's own (its seed-* preset, unchanged, at full scale); "
    "elsewhere the course report's number stands for reference, with the reason it is not comparable."
)
SUMMARY_HEAD = [
    "experiment",
    "folder",
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


def title_and_intro(experiments: list[Experiment], origins: list[Origin]) -> tuple[str, str]:
    """A title that says what the report holds: the course report reproduced only when it holds
    every experiment of the course report, each at its own settings."""
    course = {o.name: o for o in origins if o.course}
    n, others = len(experiments), sum(not o.course for o in origins)
    plural = "s" if n != 1 else ""
    beside = f", beside {others} other experiment{'s' if others != 1 else ''}" if others else ""
    if set(course) == set(COURSE_PRESETS):
        exact = all(not o.changes for o in origins if o.course)
        if exact:
            title = "nnlab: the course report, reproduced"
            intro = f"Every experiment of {COURSE} re-run with correct code at its own settings{beside}."
        else:
            title = "nnlab: the course report's experiments, not all at its settings"
            intro = (
                f"Every experiment of {COURSE} re-run with correct code, some with changed settings "
                f"(each section says which){beside}."
            )
    else:
        title = f"nnlab report: {n} experiment{plural}"
        intro = f"{n} experiment{plural} from run and sweep folders."
        if course:
            intro += (
                f" {len(course)} of the course report's {len(COURSE_PRESETS)} experiments are among "
                f"them ({', '.join(sorted(course))})."
            )
    return title, f"{intro} {HOW_TO_READ}"


def folder_names(experiments: list[Experiment]) -> list[str]:
    """Each experiment's folder relative to the folder that holds them all (tells alike rows apart)."""
    paths = [e.path.resolve() for e in experiments]
    root = Path(os.path.commonpath([p.parent for p in paths]))
    names = [p.relative_to(root).as_posix() for p in paths]
    return [f"{n} ({e.note})" if e.note else n for n, e in zip(names, experiments, strict=True)]


def build_blocks(
    experiments: list[Experiment], notices: list[str], fig_dir: Path, note: str = ""
) -> list[tuple]:
    """The whole report: a summary table, then per experiment its setup, table and figures,
    then the machine, and the unfinished runs left out of the tables."""
    origins = [origin(e.preset, e.runs[0].config, set(e.keys)) for e in experiments]
    title, intro = title_and_intro(experiments, origins)
    blocks: list[tuple] = [("h1", title), ("p", intro)]
    if note:
        blocks.append(("p", note))
    summary_rows, sections = [], []
    folders = folder_names(experiments)
    for i, (exp, folder, orig) in enumerate(zip(experiments, folders, origins, strict=True)):
        stats = group_stats(exp)
        for g in stats:
            ref, delta = ref_cells(g)
            final = pct(*g.final, g.n) + f" (n={g.n})"
            summary_rows.append([exp.preset, folder, g.label, final, pct(*g.best, g.n), ref, delta])
        part = part_of(exp.runs[0].config)[1]
        sections.append((part, exp, orig, stats, f"{i:02d}-{exp.preset}"))
    blocks += [("h2", "Summary"), ("table", SUMMARY_HEAD, summary_rows)]
    current = None
    for part, exp, orig, stats, slug in sections:
        if part != current:
            blocks.append(("h2", part))
            current = part
        # e.g. seed-rnn, and seed-rnn over lengths
        folder = f" in {exp.path.name}/" if exp.path.name != exp.preset else ""
        extra = f", {exp.note}" if exp.note else ""
        blocks.append(("h3", f"{exp.preset}{folder} ({orig.label()}{extra})"))
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
                [g.label, f"{g.n}{failed}", pct(*g.final, g.n), pct(*g.best, g.n)]
                + [f"{g.seconds:.1f}", ref, delta]
            )
        blocks.append(("table", SETTING_HEAD, rows))
        blocks += experiment_figures(exp, fig_dir, slug)
        if exp.tune:  # the search that chose this run: its trials and figures
            blocks += tune_blocks(exp.path, fig_dir, slug)
    blocks += [("h2", "Machine, versions and time"), ("list", provenance(experiments))]
    if notices:
        blocks += [
            ("h2", "Unfinished runs (not in the tables)"),
            (
                "p",
                "No summary.json yet: 'nnlab resume RUN', or the sweep run again, finishes them.",
            ),
            ("list", notices),
        ]
    return blocks

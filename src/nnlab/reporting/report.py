"""``nnlab report``: run and sweep folders -> ``report.md`` and a self-contained ``report.html``.

The report reads only what training wrote (STYLE.md #8), through ``nnlab.runs``:
each run folder's ``config.toml``, ``summary.json``, ``metrics.csv`` and
``boundary.npz``, and each sweep folder's ``results.csv``, found at any depth
under the folders given. For every experiment (one run or sweep folder) it gives
the setup (where its config came from and what differs from its preset, e.g. a
``--quick`` scale), a table of mean +- std over seeds with n (no std for one run),
its figures with captions, and the course report's own number beside ours,
with a difference only where the setting is the course report's (``origin``).
Unfinished runs are listed, not counted.

The jobs, one file each: ``collect`` (the folders -> experiments), ``course``
(the course report's numbers), ``origin`` (preset or own config; comparable or
not), ``applies`` (which keys matter per family), ``stats`` (mean +- std, n),
``describe`` (setup, provenance), ``figures``, ``blocks`` (the document, built
once) and ``render`` (Markdown and HTML). Figures go to ``OUT/figures/*.png`` (linked from
``report.md``) and are embedded in ``report.html`` as base64, so the HTML opens
from disk with no network.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nnlab.errors import RunError
from nnlab.reporting.collect import collect
from nnlab.reporting.course import Reference, course_reference


def write_report(dirs: list[Path], out: Path, note: str = "") -> dict[str, Any]:
    """Write ``OUT/report.md``, ``OUT/report.html`` and ``OUT/figures/``; returns paths, notices and the summary."""
    from nnlab.reporting.blocks import build_blocks
    from nnlab.reporting.render import render_html, render_markdown
    from nnlab.runs import atomic_write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    for marker, kind in (("config.toml", "run"), ("results.csv", "sweep"), ("tune.json", "tune")):
        if (out / marker).is_file():  # its figures/ and report files would mix with the run's
            raise RunError(
                f"--out {out}: is a {kind} folder; write the report to a folder of its own"
            )
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
    """One line each on stderr, e.g. ``nnlab report: unfinished: RUN (epoch 3 of 10); not in the tables``."""
    for n in notices:
        print(f"nnlab report: {n}; not in the tables", file=sys.stderr)


__all__ = ["write_report", "collect", "course_reference", "Reference", "format_table"]

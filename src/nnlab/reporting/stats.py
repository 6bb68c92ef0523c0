"""Statistics over seeds: mean, sample standard deviation and n, per sweep grid point or report setting.

``mean_std``, ``summarize`` and ``format_summary`` serve sweeps (``results.csv`` rows)
and the API; ``group_stats`` serves the report (one experiment's settings, with the
course report's number beside ours).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nnlab.reporting.course import Reference, course_reference

if TYPE_CHECKING:
    from nnlab.reporting.collect import Experiment


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n-1; 0 for one value) and n."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std, n


def summarize(
    rows: list[dict[str, Any]], keys: list[str], metric: str = "final_test_acc"
) -> list[dict[str, Any]]:
    """Group rows by the swept keys: mean, std and n of ``metric`` and of train time.

    Runs without the metric (diverged) are left out of the statistics and counted as ``failed``.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    table = []
    for values, members in groups.items():
        ok = [r for r in members if r.get(metric) not in (None, "")]
        m, s, n = mean_std([float(r[metric]) for r in ok])
        t, _, _ = mean_std([float(r["train_seconds"]) for r in ok])
        entry = {"mean": m, "std": s, "n": n, "seconds": t, "failed": len(members) - len(ok)}
        table.append({**dict(zip(keys, values, strict=True)), **entry})
    return table


def format_summary(
    table: list[dict[str, Any]], keys: list[str], metric: str = "final_test_acc"
) -> str:
    """One line per grid point of ``summarize``'s table: ``key=value: metric mean +- std (n=N)``."""
    lines = []
    for row in table:
        label = "  ".join(f"{k}={row[k]}" for k in keys) or "all runs"
        failed = f", {row['failed']} diverged" if row.get("failed") else ""
        lines.append(
            f"{label}: {metric} {row['mean']:.4f} +- {row['std']:.4f} (n={row['n']}{failed}), "
            f"{row['seconds']:.1f} s per run"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the report's settings


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
    """Per setting of ``exp``: statistics over its scored seeds (diverged runs count as failed)."""
    out = []
    for values, runs in exp.groups.items():
        ok = [r.summary for r in runs if r.summary.get("final_test_acc") is not None]
        fm, fs, n = mean_std([float(s["final_test_acc"]) for s in ok])
        bm, bs, _ = mean_std([float(s["best_test_acc"]) for s in ok])
        secs, _, _ = mean_std([float(s.get("train_seconds") or 0.0) for s in ok])
        ref = course_reference(runs[0].config)
        out.append(GroupStats(exp.label(values), n, len(runs) - n, (fm, fs), (bm, bs), secs, ref))
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

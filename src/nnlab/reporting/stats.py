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
from nnlab.reporting.origin import not_comparable

if TYPE_CHECKING:
    from nnlab.reporting.collect import Experiment


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n-1) and n. The std of one value is undefined: it is
    returned as 0.0 for the arithmetic of callers, and never printed (``format_mean_std``)."""
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
        value = format_mean_std(row["mean"], row["std"], row["n"])
        lines.append(
            f"{label}: {metric} {value} (n={row['n']}{failed}), {row['seconds']:.1f} s per run"
        )
    return "\n".join(lines)


def format_mean_std(mean: float, std: float, n: int, spec: str = ".4f") -> str:
    """``mean +- std``, or ``mean`` alone where the std is undefined (n < 2): never ``+- 0`` for one run."""
    if n < 2 or math.isnan(std):
        return format(mean, spec)
    return f"{mean:{spec}} +- {std:{spec}}"


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
    # why the course report's number is not comparable with ours ("" if it is): origin.not_comparable
    why_not: str = ""

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
        cfg = runs[0].config
        ref = course_reference(cfg)
        why = not_comparable(exp.preset, cfg) if ref is not None else ""
        stats = GroupStats(exp.label(values), n, len(runs) - n, (fm, fs), (bm, bs), secs, ref, why)
        out.append(stats)
    return out


def pct(mean: float, std: float | None = None, n: int = 0) -> str:
    """A percentage: ``mean +- std%`` where the std is defined (n >= 2 given), else ``mean%``."""
    if math.isnan(mean):
        return "-"
    if std is None or n < 2:
        return f"{100 * mean:.2f}%"
    return f"{format_mean_std(100 * mean, 100 * std, n, '.2f')}%"


def ref_cells(g: GroupStats) -> tuple[str, str]:
    """(the course report's number, ours minus it in percentage points, or why not).

    The difference is given only where the setting is the course report's own
    (``origin.not_comparable``); elsewhere its number stays, for reference.
    """
    if g.reference is None:
        return "-", "-"
    if g.reference.value is None or g.n == 0:
        return g.reference.text, "-"
    if g.why_not:
        return g.reference.text, f"not comparable: {g.why_not}"
    return g.reference.text, f"{100 * (g.ours - g.reference.value):+.1f} pts"

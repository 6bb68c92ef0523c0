"""The text that describes an experiment: its setup (and what differs from its preset),
the machine, versions and commits it ran on, and its wall time."""

from __future__ import annotations

import time
from typing import Any

from nnlab.config.user_code import is_user_model
from nnlab.reporting.applies import applies
from nnlab.reporting.collect import Experiment
from nnlab.reporting.origin import MACHINE_KEYS, differences, preset_value


def setup_lines(exp: Experiment) -> list[str]:
    """The resolved settings that matter, and what differs from the preset (e.g. a --quick scale).

    A key is listed only where it applies to the run's model, data set, optimizer and
    schedule (``applies``): always if essential, else where it differs from the default.
    """
    from nnlab.config import Config

    cfg = exp.runs[0].config
    defaults = Config().to_dict()
    essential = {
        "data": ["name", "length"],
        "model": ["name", "hidden", "widths"],
        "optim": ["name", "lr"],
        "schedule": ["name"],
        "train": ["epochs", "batch_size"],
    }
    skip = {*exp.keys, *MACHINE_KEYS}
    lines = []
    for section, keys in essential.items():
        values = cfg.get(section, {})
        shown = [
            k
            for k in values
            if applies(cfg, section, k)
            and (k in keys or values[k] != defaults[section].get(k))
            and f"{section}.{k}" not in skip
        ]
        if shown:
            lines.append(f"[{section}] " + ", ".join(f"{k}={fmt(values[k])}" for k in shown))
    note = user_code_note(cfg)
    if note:
        lines.append(note)
    s = exp.runs[0].summary
    if s.get("n_train") is not None:
        lines.append(f"data size: {s['n_train']} training / {s.get('n_test')} test examples")
    if exp.keys:
        swept = [f"{k} in {sorted({r.point[k] for r in exp.runs}, key=num_key)}" for k in exp.keys]
        lines.append("swept: " + ", ".join(swept))
    seeds = sorted({int(r.summary.get("seed", r.config["train"].get("seed", 0))) for r in exp.runs})
    lines.append(f"seeds: {', '.join(map(str, seeds))}")
    diff = preset_differences(exp)
    if diff is None:
        lines.append(f"config: your own ('{exp.preset}'), not one of nnlab's presets")
    elif diff:
        lines.append(f"differs from preset '{exp.preset}': " + ", ".join(diff))
    return lines


def user_code_note(cfg: dict[str, Any]) -> str | None:
    """A line naming the user's model or modules file (and its sha256) a run was trained with,
    and saying the report did not import it: user code runs only where a command names it."""
    model = cfg.get("model", {})
    name, modules = str(model.get("name", "")), str(model.get("modules", ""))
    if not is_user_model(name) and not modules:
        return None
    what = f"model {name}" if is_user_model(name) else f"NumPy modules {modules}"
    digest = str(model.get("sha256", ""))[:12]
    return (
        f"user code: {what} (sha256 {digest}...); not imported by this report, whose figures "
        "come from the runs' metrics and saved arrays"
    )


def preset_differences(exp: Experiment) -> list[str] | None:
    """``key=ours (preset: theirs)`` for each applicable setting that differs from the built-in
    preset the runs are named after (swept keys aside); None if that is no built-in preset."""
    cfg = exp.runs[0].config
    keys = differences(cfg, exp.preset, set(exp.keys))
    if keys is None:
        return None
    out = []
    for dotted in keys:
        section, _, key = dotted.partition(".")
        ours = cfg.get(section, {}).get(key)
        out.append(f"{dotted}={fmt(ours)} (preset: {fmt(preset_value(exp.preset, dotted))})")
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


def fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def num_key(v: Any) -> tuple:
    """Sort key putting numbers (or numeric strings) first, in numeric order."""
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))

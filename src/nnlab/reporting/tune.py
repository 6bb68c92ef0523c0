"""A tune folder in the report, and its figures, drawn from its files alone (``trials.csv``,
``importances.csv``, ``tune.json``, read through ``nnlab.runs.tune_folder``): the report
needs no optuna. ``nnlab tune`` draws the same two figures into its folder.

- ``plot_history``: each trial's value against its number (completed: dots; pruned:
  crosses at the value where they were stopped), and the best so far as a step line;
- ``plot_importances``: Optuna's fANOVA importance of each tuned key, as bars;
- ``tune_blocks``: the study's paragraph, its best trials and those figures, after the
  best trial's own tables and figures (``collect`` makes that run the experiment).
"""

from __future__ import annotations

from pathlib import Path

from nnlab.reporting.plots import _figure, safe_slug, save_figure
from nnlab.runs.tune_folder import TuneFolder, sorted_by_value

TOP_TRIALS = 10  # rows of the report's table of trials


def plot_history(folder: TuneFolder, path: Path) -> Path | None:
    """Value against trial number, with the best so far; None when no trial has a value."""
    info, rows = folder.settings, folder.trials
    metric, maximize = info["metric"], info["direction"] == "maximize"
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["value"] is not None]
    if not done and not pruned:
        return None
    fig = _figure(figsize=(7, 4.2), constrained_layout=True)
    ax = fig.subplots()
    if pruned:
        ax.plot(
            [r["number"] for r in pruned],
            [r["value"] for r in pruned],
            "x",
            color="0.6",
            label=f"pruned ({len(pruned)}), where stopped",
        )
    if done:
        xs, ys = [r["number"] for r in done], [r["value"] for r in done]
        ax.plot(xs, ys, "o", color="C0", label=f"completed ({len(done)})")
        best, steps = None, []
        for y in ys:
            best = y if best is None or (y > best if maximize else y < best) else best
            steps.append(best)
        last = max(r["number"] for r in rows)  # the line runs on to the last trial
        ax.step([*xs, last], [*steps, steps[-1]], where="post", color="C3", label="best so far")
    ax.set(
        xlabel="trial",
        ylabel=f"{metric} (validation split)",
        title=f"{info.get('preset', '')}: optimisation history ({len(rows)} trials)",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_importances(folder: TuneFolder, path: Path) -> Path | None:
    """Horizontal bars, most important key on top; None without importances.csv."""
    importances = folder.importances
    if not importances:
        return None
    keys = list(importances)[::-1]
    fig = _figure(figsize=(7, 0.6 * len(keys) + 1.6), constrained_layout=True)
    ax = fig.subplots()
    ax.barh(keys, [importances[k] for k in keys], color="C0")
    ax.set(
        xlabel="importance (fANOVA share of the variance of the value)",
        title=f"{folder.settings.get('preset', '')}: parameter importances",
    )
    ax.grid(alpha=0.3, axis="x")
    return save_figure(fig, path)


def tune_blocks(path: Path, fig_dir: Path, slug: str) -> list[tuple]:
    """Report blocks for the tune folder at ``path``: what was searched, the best trials, the figures."""
    folder = TuneFolder(path)
    info, rows, keys = folder.settings, folder.trials, folder.keys
    metric, best = info["metric"], folder.best or {}
    counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
    test = best.get("final_test_acc")
    test_text = f"{test:.4f}" if isinstance(test, (int, float)) else "not recorded"
    blocks: list[tuple] = [
        ("h3", f"{info.get('preset', '')}: the search ({path.name})"),
        (
            "p",
            f"A study of {len(rows)} trials ({counts['COMPLETE']} completed, {counts['PRUNED']} "
            f"pruned, {counts['FAIL']} failed) over {', '.join(keys)}, with Optuna's TPE sampler "
            f"and the {info.get('pruner', 'median')} pruner; each trial is scored on {metric} of "
            f"a validation split (data.val_fraction={info.get('val_fraction')}) held out of the "
            f"training set, never on the test set. The best, trial {best.get('number', '?')}, "
            f"has {metric} {best.get('value', float('nan')):.4f}; its test accuracy, looked at "
            f"once after the search, is {test_text} (the run above).",
        ),
    ]
    top = sorted_by_value(rows, info["direction"])[:TOP_TRIALS]
    if top:
        head = ["trial", metric, *keys, "epochs", "seconds"]
        table = [
            [r["number"], f"{r['value']:.4f}", *(r[k] for k in keys), r["epochs"], r["duration_s"]]
            for r in top
        ]
        blocks += [("p", f"The {len(top)} best completed trials:"), ("table", head, table)]
    slug = safe_slug(slug)
    history = plot_history(folder, fig_dir / f"{slug}-history.png")
    if history is not None:
        caption = (
            f"Each trial's {metric} on the validation split against its number: completed trials "
            "as dots, pruned ones as grey crosses at the value where they were stopped, the best "
            "so far as a red step line. What to see: how soon the search found its best, and "
            "whether later trials still improve on it (if so, more trials may pay)."
        )
        blocks.append(("figure", history, caption))
    importances = plot_importances(folder, fig_dir / f"{slug}-importances.png")
    if importances is not None:
        caption = (
            "How much of the variation of the value over completed trials each tuned key explains "
            "(Optuna's fANOVA). What to see: the keys worth a finer search, and those that hardly "
            "matter in the ranges searched."
        )
        blocks.append(("figure", importances, caption))
    else:
        blocks.append(
            ("p", "No parameter importances: fewer than 2 completed trials, or none computable.")
        )
    return blocks

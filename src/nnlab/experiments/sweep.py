"""Sweeps: a grid of config overrides x seeds, one run folder each, and ``results.csv``.

A sweep folder holds one run folder per (grid point, seed), named after its
overrides, and ``results.csv`` with one row per finished run folder in it (the
contract columns: ``run``, every swept key by its dotted name, ``seed``,
``final_test_acc``, ``best_test_acc``, ``train_seconds``; then ``config_hash``).

A run is identified by what it trains, not by its folder's name: its resolved
config, read back from ``RUN/config.toml`` (``nnlab.config.identity``). A rerun
into the same folder skips a finished run only when that config equals the
planned one, resumes an unfinished one likewise, and otherwise refuses in one
line naming the run and the keys that differ, unless ``rerun`` is set, which
deletes and retrains those runs. A run counts as finished only when its
``summary.json`` exists. Where the runs train (this process, worker
processes, or Ray tasks) is ``dispatch.py``.
"""

from __future__ import annotations

import csv
import io
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from nnlab.config import Config, config_diff, config_hash, typed_override
from nnlab.config.limits import check_fits
from nnlab.errors import ConfigError, NnlabError, RunError
from nnlab.experiments.dispatch import check_backend, run_runs
from nnlab.experiments.sweep_size import check_sweep_size, short_name
from nnlab.reporting.stats import format_summary, mean_std, summarize
from nnlab.runs import RunFolder, SweepFolder, atomic_write_text, prepare_out_dir, read_json
from nnlab.runs.write import clear_folder, folder_lock, never_started

RESULT_COLUMNS = ["final_test_acc", "best_test_acc", "final_test_loss", "epochs", "train_seconds"]


def parse_grid_arg(text: str, cfg: Config) -> tuple[str, Sequence[Any]]:
    """``"optim.lr=1e-3,1e-2"`` or ``"data.length=3..11"`` -> (key, values); a range stays a
    ``range`` (counted, never materialised, before ``check_sweep_size`` accepts it)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not values.strip():
        raise ConfigError(f"--grid {text!r}: expected key=v1,v2,... or key=a..b")
    cfg.get(key)  # raises ConfigError for an unknown key
    if ".." in values:
        lo, _, hi = values.partition("..")
        try:
            a, b = int(lo), int(hi)
        except ValueError:
            raise ConfigError(f"--grid {text!r}: a range a..b takes integers") from None
        if b < a:
            raise ConfigError(f"--grid {text!r}: empty range {a}..{b}")
        return key, range(a, b + 1)
    return key, [v.strip() for v in values.split(",")]


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of every key's values, in order, as override dicts."""
    keys = list(grid)
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))
    ]


def run_name(point: dict[str, Any], seed: int) -> str:
    parts = [f"{k}={_short(v)}" for k, v in point.items()]
    return short_name("__".join([*parts, f"seed={seed}"]))  # long values: cut, with a digest


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(_short(v) for v in value)
    return str(value).replace("/", "_").replace(" ", "")


def plan(
    cfg: Config, grid: dict[str, list[Any]], seeds: Sequence[int]
) -> list[tuple[str, Config, dict[str, Any]]]:
    """Validate every grid point up front, so a bad value fails before any run starts."""
    jobs = []
    for point in expand_grid(grid):
        # each value as its key's type (a model.kwargs.NAME string: as a TOML value)
        typed = {key: typed_override(key, value) for key, value in point.items()}
        for seed in seeds:
            run_cfg = cfg.replace({**typed, "train.seed": seed})
            jobs.append((run_name(typed, seed), run_cfg, typed))
    return jobs


def run_sweep(
    cfg: Config,
    grid: dict[str, list[Any]],
    seeds: Sequence[int],
    out: Path,
    *,
    jobs: int = 1,
    rerun: bool = False,
    announce: bool = False,
    progress: str = "off",
    backend: str = "local",
    address: str | None = None,
    max_runs: int | None = None,
) -> list[dict[str, Any]]:
    """Run every (grid point, seed) not finished yet; write ``results.csv``; return its rows.

    ``max_runs``: refuse a sweep of more runs (default ``sweep_size.MAX_RUNS``), counted
    before the grid is expanded or anything is written.

    ``announce``: name ``out`` on stderr once the plan is valid (a new default folder:
    resuming it takes ``--out``).

    A run folder already in ``out`` counts only if its saved config is the planned one
    (see the module docstring); one trained with another config is a ``RunError``, or,
    with ``rerun``, is deleted and trained again.

    The process holds ``out``'s lock (``runs.write.folder_lock``) throughout: a second
    sweep into ``out`` stops at once with one line; each run also locks its own folder.
    ``backend`` ``ray`` trains the runs as Ray tasks (``address``: a cluster to join).
    """
    check_backend(backend, address, jobs, cfg)  # before anything is written
    check_sweep_size(grid, len(seeds), max_runs)  # 10^6 runs: one line at once, nothing expanded
    out = Path(out)
    # what ``out`` is, checked before its lock is taken: a rejected folder keeps no .lock
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and (out / "summary.json").exists():
        raise RunError(f"--out {out}: is a single run, not a sweep folder")
    prepare_sweep_dir(out)
    with ExitStack() as held:
        if out.is_dir():
            held.enter_context(folder_lock(out))  # a second sweep stops here, touching nothing
        return _run_sweep(
            cfg,
            grid,
            seeds,
            out,
            lock=lambda: held.enter_context(folder_lock(out)),
            jobs=jobs,
            rerun=rerun,
            announce=announce,
            progress=progress,
            backend=backend,
            address=address,
        )


def _run_sweep(
    cfg: Config,
    grid: dict[str, list[Any]],
    seeds: Sequence[int],
    out: Path,
    *,
    lock: Callable[[], None],
    jobs: int,
    rerun: bool,
    announce: bool,
    progress: str,
    backend: str,
    address: str | None,
) -> list[dict[str, Any]]:
    planned = plan(cfg, grid, seeds)
    if backend == "local":  # each run's tensors must fit here (config.limits), before any write
        for _, run_cfg, _ in planned:
            check_fits(run_cfg)
    if announce:
        print(
            f"sweep folder: {out} (resume an interrupted sweep with --out {out})", file=sys.stderr
        )
    # this grid's keys, then those of an earlier grid in the same folder (its runs stay listed)
    keys = [*grid, *(k for k in _earlier_keys(out) if k not in grid)]
    stale = stale_runs(out, planned)
    if stale and not rerun:
        raise RunError(stale_message(out, stale))
    for name in stale:  # --rerun: what they trained is not what this sweep asks
        with folder_lock(out / name):
            clear_folder(out / name)
    if stale:
        print(
            f"--rerun: deleted {len(stale)} run(s) in {out} trained with another config; "
            "training them again",
            file=sys.stderr,
        )
    todo = [(n, c) for n, c, _ in planned if not RunFolder(out / n).finished]
    skipped = len(planned) - len(todo)
    lock()  # creates out
    if skipped:
        print(
            f"{skipped} of {len(planned)} runs already finished in {out} (same config); skipping them",
            file=sys.stderr,
        )
    done = skipped
    start = time.perf_counter()

    def report(name: str, summary: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        acc = summary.get("final_test_acc")
        result = (
            f"final_test_acc {acc:.4f}" if acc is not None else f"FAILED: {summary.get('error')}"
        )
        print(
            f"[{done}/{len(planned)}] {name}: {result} ({summary['train_seconds']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        write_results(out, planned, keys)

    # runs that differ only in seed train together, as one stack
    run_runs(todo, out, report, jobs=jobs, progress=progress, backend=backend, address=address)
    rows = write_results(out, planned, keys)
    write_summary_table(out, rows, keys)
    from nnlab.reporting.plots import plot_sweep_boundaries, plot_sweep_metric

    plot_sweep_boundaries(SweepFolder(out))  # runs with boundary.npz: each setting's boundary
    # numeric swept keys (e.g. data.length): accuracy_vs_<key>.png
    plot_sweep_metric(SweepFolder(out))
    print(
        f"sweep finished: {len(planned)} runs in {out} ({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
    )
    return rows


def stale_runs(out: Path, planned) -> dict[str, list[tuple[str, Any, Any]] | str]:
    """Planned runs whose folder holds a run of another config: name -> what differs.

    What differs is ``(key, saved, planned)`` per key, or a reason when the saved
    config cannot be read as a config of this version.
    """
    stale: dict[str, list[tuple[str, Any, Any]] | str] = {}
    for name, run_cfg, _ in planned:
        folder = RunFolder(out / name)
        if not (folder.path / "config.toml").is_file():
            continue  # new, or killed before it wrote its config: trained from scratch
        try:
            diff = config_diff(folder.load_config(), run_cfg)
        except NnlabError as exc:
            stale[name] = f"its config.toml is not readable as a config ({exc})"
            continue
        if diff:
            stale[name] = diff
    return stale


def stale_message(out: Path, stale: dict[str, list[tuple[str, Any, Any]] | str]) -> str:
    """One line: the first stale run, its first differing key, and how to go on."""
    name, diff = next(iter(stale.items()))
    if isinstance(diff, str):
        what = diff
    else:
        key, saved, wanted = diff[0]
        what = f"was trained with {key}={_set_value(saved)}, this sweep asks {_set_value(wanted)}"
        if len(diff) > 1:
            what += (
                f" (and {', '.join(k for k, _, _ in diff[1:4])}{', ...' if len(diff) > 4 else ''})"
            )
    more = f"; {len(stale) - 1} more run(s) differ" if len(stale) > 1 else ""
    return f"{out / name} {what}{more}; use a new --out or --rerun"


def _set_value(value: Any) -> str:
    """A config value as ``--set`` writes it: ``64,64``, ``true``, ``0.1``."""
    if isinstance(value, list):
        return ",".join(_set_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def prepare_sweep_dir(out: Path) -> None:
    if out.is_dir() and any(out.iterdir()) and not (out / "results.csv").exists():
        # A folder of run folders without results.csv yet (first run interrupted) is fine.
        entries = [p for p in out.iterdir() if not p.name.startswith(".")]
        if any(
            not (p.is_dir() and ((p / "config.toml").exists() or never_started(p))) for p in entries
        ):
            raise RunError(f"--out {out}: folder is not empty and is not an nnlab sweep")
    if not out.exists():
        prepare_out_dir(out)


def write_results(out: Path, planned, keys: list[str]) -> list[dict[str, Any]]:
    """Rewrite ``results.csv`` (atomically) from every finished run folder in ``out``.

    The planned runs come first, in plan order, then any other run folders (an earlier,
    different grid into the same folder), by name. Each run's ``keys`` cells come from its
    own config (empty where it has no such key), then the contract's results and
    ``config_hash``.
    """
    configs = {name: run_cfg for name, run_cfg, _ in planned}
    others = sorted(
        p.name
        for p in out.iterdir()
        if p.name not in configs and p.is_dir() and (p / "config.toml").is_file()
    )
    rows = []
    for name in [*configs, *others]:
        summary_path = out / name / "summary.json"
        if not summary_path.exists():
            continue
        summary = read_json(summary_path)
        if name in configs:
            run_cfg = configs[name]
            values = {k: run_cfg.get(k) for k in keys}
            seed, digest = run_cfg.train.seed, config_hash(run_cfg)
        else:
            values, seed, digest = _saved_values(out / name, keys)
        row = {"run": name, **{k: _csv_value(values.get(k, "")) for k in keys}, "seed": seed}
        row.update({c: summary.get(c) for c in RESULT_COLUMNS})
        row["config_hash"] = digest
        rows.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf,
        fieldnames=["run", *keys, "seed", *RESULT_COLUMNS, "config_hash"],
        lineterminator="\n",
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    return rows


def _earlier_keys(out: Path) -> list[str]:
    """The swept keys of the results.csv in ``out`` (none if there is none, or it is unreadable)."""
    try:
        return SweepFolder(out).keys if (out / "results.csv").is_file() else []
    except RunError:
        return []


def _saved_values(folder: Path, keys: list[str]) -> tuple[dict[str, Any], Any, str]:
    """A run folder's own values of ``keys`` (where its config has them), seed and config hash."""
    run = RunFolder(folder)
    raw = run.config
    values = {}
    for key in keys:
        section, _, name = key.partition(".")
        if isinstance(raw.get(section), dict) and name in raw[section]:
            values[key] = raw[section][name]
    try:
        digest = config_hash(run.load_config())
    except NnlabError:
        digest = ""
    return values, raw["train"].get("seed", ""), digest


def _csv_value(value: Any) -> Any:
    return ",".join(str(v) for v in value) if isinstance(value, list) else value


def write_summary_table(out: Path, rows: list[dict[str, Any]], keys: list[str]) -> Path:
    """``summary.md``: per grid point, mean +- std (n) of final_test_acc and of train seconds."""
    head = [*keys, "final_test_acc", "train_seconds", "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in summarize(rows, keys):
        members = [
            r
            for r in rows
            if all(r[k] == entry[k] for k in keys) and r.get("final_test_acc") not in (None, "")
        ]
        s_mean, s_std, _ = mean_std([float(r["train_seconds"]) for r in members])
        failed = f" ({entry['failed']} diverged)" if entry.get("failed") else ""
        cells = [
            *(str(entry[k]) for k in keys),
            f"{entry['mean']:.4f} +- {entry['std']:.4f}",
            f"{s_mean:.2f} +- {s_std:.2f}",
            f"{entry['n']}{failed}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    text = "mean +- sample std over seeds; train_seconds is per run (a stacked run's share of its stack)\n\n"
    atomic_write_text(out / "summary.md", text + "\n".join(lines) + "\n")
    return out / "summary.md"


__all__ = [
    "run_sweep",
    "parse_grid_arg",
    "expand_grid",
    "stale_runs",
    "summarize",
    "format_summary",
    "mean_std",
    "NnlabError",
]

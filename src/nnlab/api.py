"""The Python API: the engine the CLI drives, for notebooks and scripts.

::

    import nnlab

    cfg = nnlab.load_config("moons", optim={"lr": 3e-3})      # or {"optim.lr": 3e-3}
    run = nnlab.train(cfg, seed=1, out="runs/mine")           # -> Run
    run.summary["final_test_acc"], run.metrics, run.model, run.plot_curves()
    seeds = nnlab.train("moons", seeds=5)                     # -> Sweep (one run per seed)
    grid = nnlab.sweep("moons", {"optim.lr": [1e-3, 1e-2]}, seeds=3)
    grid.summary                                              # mean, std, n per grid point
    nnlab.open_run("runs/mine")                               # a Run (or a Sweep) from disk

Everything here is a thin, typed layer over the engine (``nnlab.config``,
``nnlab.train``, ``nnlab.sweep``, ``nnlab.runs``): the same configs, run folders
and checks as ``nnlab train`` / ``nnlab sweep``. Bad input raises
``nnlab.ConfigError`` (a ``ValueError``) or ``nnlab.RunError`` with the same
one-line message the CLI prints. torch, matplotlib and scikit-learn are
imported only when a function needs them, so ``import nnlab`` stays fast.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnlab.config import SECTIONS, Config, parse_set_args
from nnlab.config import load_config as _load_config
from nnlab.errors import ConfigError, RunError

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from torch import nn

    from nnlab.data import DataBundle

Overrides = Mapping[str, Any] | Sequence[str] | None


# --------------------------------------------------------------------------- configs


def load_config(
    source: str | Path | Config, overrides: Overrides = None, /, **sections: Mapping[str, Any]
) -> Config:
    """A validated config from a preset name, a TOML file or a Config, plus overrides.

    Overrides come as dotted keys (``{"optim.lr": 1e-3}``), as ``--set`` strings
    (``["optim.lr=1e-3"]``) or as keyword sections (``optim={"lr": 1e-3}``);
    later ones win. Unknown keys and bad values raise ``ConfigError``.
    """
    flat = _flatten(overrides, sections)
    if isinstance(source, Config):
        return source.replace(flat) if flat else source
    return _load_config(source, flat)


def _flatten(overrides: Overrides, sections: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted-key overrides from a mapping, ``key=value`` strings and keyword sections."""
    if overrides is None:
        flat: dict[str, Any] = {}
    elif isinstance(overrides, Mapping):
        flat = dict(overrides)
    elif isinstance(overrides, Sequence) and not isinstance(overrides, str):
        flat = dict(parse_set_args(list(overrides)))
    else:
        raise ConfigError(
            f"overrides: expected a dict like {{'optim.lr': 1e-3}} or a list of 'key=value', got {overrides!r}"
        )
    for section, values in sections.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section '{section}'; sections are {', '.join(SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{section}: expected a dict of keys, like {section}={{...}}, got {values!r}"
            )
        flat.update({f"{section}.{key}": value for key, value in values.items()})
    return flat


def default_out(name: str, kind: str = "") -> Path:
    """``runs/<name><kind>-<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``... if that folder exists."""
    base = Path("runs") / f"{name}{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, i = base, 1
    while out.exists():
        i += 1
        out = base.with_name(f"{base.name}-{i}")
    return out


def _check_runnable(cfg: Config, seeds: int | None = None) -> None:
    """Everything that can reject a run before a file is written: torchrun launch, device, tensorboard."""
    from nnlab import distributed
    from nnlab.tensorboard_log import check_available
    from nnlab.train import select_device

    distributed.check_launch(cfg, seeds=seeds)
    select_device(cfg.train.device)
    check_available(cfg)


# --------------------------------------------------------------------------- training


def train(
    config: str | Path | Config,
    overrides: Overrides = None,
    /,
    *,
    seed: int | None = None,
    seeds: int | Sequence[int] | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    jobs: int = 1,
    progress: str | None = None,
    **sections: Mapping[str, Any],
) -> Run | Sweep:
    """Train a preset, TOML file or Config; returns a ``Run``, or a ``Sweep`` with ``seeds``.

    ``seed`` sets ``train.seed``; ``seeds=N`` trains seeds seed..seed+N-1 (or give
    a list) like ``nnlab train --seeds N``, into one folder with ``results.csv``.
    ``out`` defaults to ``runs/<name>-<time>``. ``device`` is auto, cpu, cuda,
    cuda:N or mps. ``progress`` is ``bar``, ``lines``, ``off`` or None (a bar on
    a terminal, else a line per tenth of training). Overrides as in ``load_config``.
    """
    cfg = load_config(config, overrides, **sections)
    extra = {"train.seed": seed} if seed is not None else {}
    if device is not None:
        extra["train.device"] = device
    cfg = cfg.replace(extra) if extra else cfg
    if seeds is None:
        _check_runnable(cfg)
        from nnlab.runs import prepare_out_dir
        from nnlab.train import run_training

        folder = prepare_out_dir(Path(out) if out is not None else default_out(cfg.name))
        return Run(folder, _summary=run_training(cfg, folder, progress=progress))
    seed_list = _seed_list(seeds, cfg.train.seed)
    _check_runnable(cfg, seeds=len(seed_list))
    from nnlab.sweep import run_sweep

    folder = Path(out) if out is not None else default_out(cfg.name, "-seeds")
    run_sweep(cfg, {}, seed_list, folder, jobs=jobs)
    return Sweep(folder)


def _seed_list(seeds: int | Sequence[int], first: int) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"seeds: must be >= 1, got {seeds}")
        return list(range(first, first + seeds))
    seed_list = list(seeds)
    if not seed_list or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seed_list
    ):
        raise ConfigError(f"seeds: expected a count >= 1 or a list of seeds >= 0, got {seeds!r}")
    return seed_list


def sweep(
    config: str | Path | Config,
    grid: Mapping[str, Sequence[Any] | str] | None = None,
    overrides: Overrides = None,
    /,
    *,
    seeds: int | Sequence[int] = 1,
    out: str | Path | None = None,
    device: str | None = None,
    jobs: int = 1,
    **sections: Mapping[str, Any],
) -> Sweep:
    """Train every point of ``grid`` x ``seeds``, like ``nnlab sweep``; returns the ``Sweep``.

    ``grid`` maps dotted keys to values: ``{"optim.lr": [1e-3, 1e-2]}``, or the
    CLI's strings ``{"data.length": "3..11"}``; it extends the preset's own
    ``[sweep]`` table. Rerunning into the same ``out`` (default
    ``runs/sweep-<name>``) skips finished runs. ``jobs`` worker processes share the CPU.
    """
    from nnlab.sweep import parse_grid_arg, run_sweep

    cfg = load_config(config, overrides, **sections)
    if device is not None:
        cfg = cfg.replace({"train.device": device})
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs: must be an integer >= 1, got {jobs!r}")
    points = dict(cfg.sweep)
    for key, values in (grid or {}).items():
        if isinstance(values, str):
            key, values = parse_grid_arg(f"{key}={values}", cfg)
        else:
            cfg.get(key)  # an unknown key is a ConfigError naming it
            values = list(values)
            if not values:
                raise ConfigError(f"grid '{key}': needs at least one value")
        points[key] = values
    seed_list = _seed_list(seeds, cfg.train.seed)
    _check_runnable(cfg, seeds=len(seed_list))
    folder = Path(out) if out is not None else Path("runs") / f"sweep-{cfg.name}"
    run_sweep(cfg, points, seed_list, folder, jobs=jobs)
    return Sweep(folder)


def resume(path: str | Path, *, device: str | None = None, progress: str | None = None) -> Run:
    """Continue the unfinished run in ``path`` from its last checkpoint (``nnlab resume``)."""
    from nnlab.train import load_resume_state, resume_training

    requested = None
    if device is not None:
        saved, _ = load_resume_state(Path(path))
        requested = saved.replace({"train.device": device})
    resume_training(Path(path), requested, progress=progress)
    return Run(path)


def open_run(path: str | Path) -> Run | Sweep:
    """The run folder (``config.toml``) or sweep folder (``results.csv``) at ``path``."""
    folder = Path(path)
    if (folder / "config.toml").is_file():
        return Run(folder)
    if (folder / "results.csv").is_file():
        return Sweep(folder)
    raise RunError(
        f"{folder}: not an nnlab run folder (no config.toml) or sweep folder (no results.csv)"
    )


def report(*dirs: str | Path, out: str | Path | None = None, note: str = "") -> Path:
    """Write ``report.md`` and a self-contained ``report.html`` for run and sweep folders, like
    ``nnlab report DIR... --out OUT``; returns the path of ``report.html``.

    ``out`` defaults to ``runs/report-<time>``; ``note`` is a line printed at the top.
    Half-finished runs are skipped with a notice on stderr (``nnlab.report.write_report``).
    """
    from nnlab.report import print_notices, write_report

    if not dirs:
        raise RunError("report: give one or more run or sweep folders")
    folder = Path(out) if out is not None else default_out("report")
    result = write_report([Path(d) for d in dirs], folder, note=note)
    print_notices(result["notices"])
    return result["html"]


# --------------------------------------------------------------------------- results


def _frame(rows: list[dict[str, Any]]):
    """``rows`` as a pandas DataFrame when pandas is installed (it is not a dependency), else as they are."""
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


class Run:
    """One run folder (the contract: config.toml, metrics.csv, summary.json, checkpoints/).

    Attributes read the folder each time they are used, so a run that is still
    training shows its latest metrics; ``model`` is loaded once and kept.
    """

    def __init__(self, path: str | Path, *, _summary: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        # train() passes the summary run_training returned: under torchrun every rank has it,
        # but only rank 0 writes the folder (other nodes may not see it).
        self._summary = _summary
        if _summary is None and not (self.path / "config.toml").is_file():
            raise RunError(f"{self.path}: not an nnlab run folder (no config.toml)")
        self._model: Any = None

    def __repr__(self) -> str:
        acc = self.summary.get("final_test_acc") if self.finished else None
        state = (
            f"final_test_acc={acc:.4f}"
            if isinstance(acc, float)
            else ("unfinished" if not self.finished else "diverged")
        )
        return f"Run('{self.path}', {self.config.name}, {state})"

    @property
    def config(self) -> Config:
        """The fully resolved config the run was trained with (named after its preset, not the file)."""
        path = self.path / "config.toml"
        cfg = _load_config(str(path))
        # config.toml starts "# resolved from 'moons'" (nnlab.config.to_toml)
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        if first.startswith("# resolved from '") and first.endswith("'"):
            cfg.name = first[len("# resolved from '") : -1]
        return cfg

    @property
    def finished(self) -> bool:
        """True once ``summary.json`` exists (it is the last file a run writes)."""
        return self._summary is not None or (self.path / "summary.json").is_file()

    @property
    def summary(self) -> dict[str, Any]:
        """``summary.json``: final_test_acc, best_test_acc, train_seconds, seed, device, versions..."""
        from nnlab.runs import read_json

        if self._summary is not None:
            return self._summary
        if not self.finished:
            raise RunError(
                f"{self.path}: the run has not finished (no summary.json); nnlab.resume() continues it"
            )
        return read_json(self.path / "summary.json")

    @property
    def rows(self) -> list[dict[str, float]]:
        """``metrics.csv`` as a list of dicts, one per evaluation (epoch, step, train_loss, ...)."""
        from nnlab.runs import read_metrics

        return read_metrics(self.path / "metrics.csv")

    @property
    def metrics(self):
        """``metrics.csv`` as a pandas DataFrame if pandas is installed, else a list of dicts."""
        return _frame(self.rows)

    def plot_curves(self, path: str | Path | None = None) -> Figure:
        """Loss and accuracy against epoch (the figure of curves.png); also saved to ``path`` if given.

        The figure is returned closed to pyplot, so a notebook shows it once.
        """
        from nnlab.plots import _pyplot, curves_figure, save_figure

        cfg = self.config
        fig = curves_figure(self.rows, title=f"{cfg.name} (seed {cfg.train.seed})")
        if path is not None:
            save_figure(fig, Path(path))  # closes it too
        _pyplot().close(fig)
        return fig

    @property
    def model(self) -> nn.Module:
        """The model the run ended with (its ``final_test_acc``), on the CPU, in eval mode."""
        if self._model is None:
            self._model = self.load_model("final")
        return self._model

    def load_model(self, which: str = "final", device: str = "cpu") -> nn.Module:
        """Rebuild the model from ``config.toml`` and load a checkpoint (``weights_only=True``).

        ``which``: ``final`` (what ``final_test_acc`` measured: ``best`` when the run
        restored its best checkpoint, else ``last``), ``best`` or ``last``. A NumPy
        backend run returns its ``nnlab.numpy_mlp`` MLP (``.forward(x)`` -> logits).
        """
        if which not in ("final", "best", "last"):
            raise ConfigError(f"which: must be one of final, best, last, got {which!r}")
        if which == "final":
            restored = self.finished and "restored the best" in str(
                self.summary.get("stop_reason", "")
            )
            which = "best" if restored else "last"
        cfg = self.config
        if cfg.model.backend == "numpy":
            from nnlab.numpy_mlp.run import load_model

            return load_model(self.path / "checkpoints" / f"{which}.npz")
        from nnlab.models import build_model
        from nnlab.runs import load_checkpoint

        state = load_checkpoint(self.path / "checkpoints" / f"{which}.pt", map_location=device)
        data = self.data()  # the model's input shape and class count come from its data
        model = build_model(cfg.model, data.input_shape, data.n_classes)
        model.load_state_dict(state["model"])
        return model.to(device).eval()

    def data(self) -> DataBundle:
        """The run's train and test splits, loaded as the run loaded them (same seed, same limits)."""
        from nnlab.data import load_data

        cfg = self.config
        return load_data(cfg.data, cfg.train.seed)

    def infer(self, which: str = "final") -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, n_classes)`` and labels ``(N,)`` of the run's test split, from a checkpoint
        (see ``load_model``), recomputed on the CPU as the run scored them (normalisation, ``train.tta``)."""
        import torch

        cfg = self.config
        data = self.data()
        model = self.model if which == "final" else self.load_model(which)
        if cfg.model.backend == "numpy":  # nnlab.numpy_mlp: (N, D) float arrays in, logits out
            logits = model.forward(data.x_test.numpy().reshape(len(data.y_test), -1))
            return torch.from_numpy(logits), data.y_test
        from nnlab.train import infer, make_loaders

        _, test_loader = make_loaders(cfg, data, torch.device("cpu"))
        return infer(model, test_loader, tta=cfg.train.tta)

    def evaluate(self, which: str = "final") -> dict[str, float]:
        """Test loss and accuracy of a checkpoint on the run's test split (``infer``, then ``score``)."""
        from nnlab.train import score

        return score(*self.infer(which))


class Sweep:
    """A sweep (or ``--seeds``) folder: one run folder per (grid point, seed) and ``results.csv``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "results.csv").is_file():
            raise RunError(f"{self.path}: not an nnlab sweep folder (no results.csv)")

    def __repr__(self) -> str:
        return f"Sweep('{self.path}', {len(self.rows)} runs, keys={self.keys})"

    @property
    def rows(self) -> list[dict[str, Any]]:
        """``results.csv`` as a list of dicts: run, each swept key, seed, final_test_acc, ..."""
        try:
            with open(self.path / "results.csv", newline="", encoding="utf-8") as f:
                raw = list(csv.DictReader(f))
        except OSError as exc:
            raise RunError(
                f"{self.path / 'results.csv'}: cannot read ({exc.strerror or exc})"
            ) from None
        return [{k: (v if k == "run" else _number(v)) for k, v in row.items()} for row in raw]

    @property
    def results(self):
        """``results.csv`` as a pandas DataFrame if pandas is installed, else a list of dicts."""
        return _frame(self.rows)

    @property
    def keys(self) -> list[str]:
        """The swept keys: the results.csv columns between ``run`` and ``seed``."""
        with open(self.path / "results.csv", newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        return header[1 : header.index("seed")] if "seed" in header else []

    @property
    def runs(self) -> list[Run]:
        """Every finished run, in results.csv order."""
        return [Run(self.path / row["run"]) for row in self.rows]

    def stats(self, metric: str = "final_test_acc") -> list[dict[str, Any]]:
        """Per grid point: mean, sample std and n of ``metric`` over seeds, and mean seconds per run."""
        from nnlab.sweep import summarize

        return summarize(self.rows, self.keys, metric)

    @property
    def summary(self):
        """``stats()`` of final_test_acc, as a DataFrame if pandas is installed."""
        return _frame(self.stats())

    def format_summary(self, metric: str = "final_test_acc") -> str:
        """One line per grid point: ``key=value: metric mean +- std (n=N), seconds per run``."""
        from nnlab.sweep import format_summary

        return format_summary(self.stats(metric), self.keys, metric)


def _number(text: str | None) -> Any:
    """A results.csv cell as int, float or None (empty: a diverged run), else the string."""
    if text in (None, ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text

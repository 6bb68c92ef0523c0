"""``Run`` and ``Sweep``: what the API returns, handles on a run or sweep folder.

They read folders through ``nnlab.runs`` (``RunFolder``, ``SweepFolder``) and,
for a run's model and data, through ``nnlab.engine.restore``; torch and
matplotlib load only when a model or a figure is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnlab.config import Config
from nnlab.errors import RunError
from nnlab.runs import RunFolder, SweepFolder

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from torch import nn

    from nnlab.data import DataBundle


def _frame(rows: list[dict[str, Any]]):
    """``rows`` as a pandas DataFrame when pandas is installed (it is not a dependency), else as they are."""
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


class Run:
    """One run folder (the contract: config.toml, metrics.csv, summary.json, checkpoints/),
    read through ``nnlab.runs.RunFolder`` (``.folder``), plus the model it reports.

    ``metrics`` is read each time it is used, so a run still training shows its
    latest rows; ``model`` is loaded once and kept.
    """

    def __init__(self, path: str | Path, *, _summary: dict[str, Any] | None = None) -> None:
        self.folder = RunFolder(path)
        self.path = self.folder.path
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
            else "diverged"
            if self.finished
            else "unfinished"
        )
        return f"Run('{self.path}', {self.config.name}, {state})"

    @property
    def config(self) -> Config:
        """The fully resolved config the run was trained with (named after its preset, not the file)."""
        return self.folder.load_config()

    @property
    def finished(self) -> bool:
        """True once ``summary.json`` exists (it is the last file a run writes)."""
        return self._summary is not None or self.folder.finished

    @property
    def summary(self) -> dict[str, Any]:
        """``summary.json``: final_test_acc, best_test_acc, train_seconds, seed, device, versions..."""
        summary = self._summary if self._summary is not None else self.folder.summary
        if summary is None:
            raise RunError(
                f"{self.path}: the run has not finished (no summary.json); nnlab.resume() continues it"
            )
        return summary

    @property
    def rows(self) -> list[dict[str, float]]:
        """``metrics.csv`` as a list of dicts, one per evaluation (epoch, step, train_loss, ...)."""
        return self.folder.metrics

    @property
    def metrics(self):
        """``metrics.csv`` as a pandas DataFrame if pandas is installed, else a list of dicts."""
        return _frame(self.rows)

    def plot_curves(self, path: str | Path | None = None) -> Figure:
        """Loss and accuracy against epoch (the figure of curves.png); also saved to ``path`` if given.

        The figure is made without pyplot, so a notebook shows it once (as the cell's value).
        """
        from nnlab.reporting.plots import curves_figure, save_figure

        cfg = self.config
        fig = curves_figure(self.rows, title=f"{cfg.name} (seed {cfg.train.seed})")
        if path is not None:
            save_figure(fig, Path(path))
        return fig

    @property
    def model(self) -> nn.Module:
        """The model the run ended with (its ``final_test_acc``), on the CPU, in eval mode."""
        if self._model is None:
            self._model = self.load_model("final")
        return self._model

    def load_model(
        self, which: str = "final", device: str = "cpu", *, model_class: type | None = None
    ) -> nn.Module:
        """Rebuild the model from ``config.toml`` and load a checkpoint (``weights_only=True``).

        ``which``: ``final`` (what ``final_test_acc`` measured: ``best`` when the run
        restored its best checkpoint, else ``last``), ``best`` or ``last``. A NumPy
        backend run returns its ``nnlab.numpy_mlp`` MLP (``.forward(x)`` -> logits).

        A run of a user's model (``model.name = FILE.py:Class``) needs ``model_class``, the
        class imported by the caller: nnlab never imports code named inside a run folder.
        It is built with the run's ``model.kwargs``; the ``final`` one is kept as ``.model``
        (so ``infer`` and ``evaluate`` use it).
        """
        from nnlab.engine.restore import load_run_model

        model = load_run_model(self.folder, which, device, model_class=model_class)
        if model_class is not None and which == "final" and device == "cpu":
            self._model = model
        return model

    def data(self) -> DataBundle:
        """The run's train and test splits, loaded as the run loaded them (same seed, same limits)."""
        from nnlab.engine.restore import run_data

        return run_data(self.config)

    def infer(self, which: str = "final") -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, n_classes)`` and labels ``(N,)`` of the run's test split, from a checkpoint
        (see ``load_model``), recomputed on the CPU as the run scored them (normalisation, ``train.tta``)."""
        from nnlab.engine.restore import infer_run

        model = self.model if which == "final" else self.load_model(which)
        return infer_run(self.config, model)

    def evaluate(self, which: str = "final") -> dict[str, float]:
        """Test loss and accuracy of a checkpoint on the run's test split (``infer``, then ``score``)."""
        from nnlab.engine.loop import score

        return score(*self.infer(which))


class Sweep:
    """A sweep (or ``--seeds``) folder: one run folder per (grid point, seed) and ``results.csv``,
    read through ``nnlab.runs.SweepFolder`` (``.folder``)."""

    def __init__(self, path: str | Path) -> None:
        self.folder = SweepFolder(path)
        self.path = self.folder.path
        if not (self.path / "results.csv").is_file():
            raise RunError(f"{self.path}: not an nnlab sweep folder (no results.csv)")

    def __repr__(self) -> str:
        return f"Sweep('{self.path}', {len(self.rows)} runs, keys={self.keys})"

    @property
    def rows(self) -> list[dict[str, Any]]:
        """``results.csv`` as a list of dicts: run, each swept key, seed, final_test_acc, ..."""
        return self.folder.results

    @property
    def results(self):
        """``results.csv`` as a pandas DataFrame if pandas is installed, else a list of dicts."""
        return _frame(self.rows)

    @property
    def keys(self) -> list[str]:
        """The swept keys: the results.csv columns between ``run`` and ``seed``."""
        return self.folder.keys

    @property
    def runs(self) -> list[Run]:
        """Every finished run, in results.csv order."""
        return [Run(run.path) for run in self.folder.listed]

    def stats(self, metric: str = "final_test_acc") -> list[dict[str, Any]]:
        """Per grid point: mean, sample std and n of ``metric`` over seeds, and mean seconds per run."""
        from nnlab.reporting.stats import summarize

        return summarize(self.rows, self.keys, metric)

    @property
    def summary(self):
        """``stats()`` of final_test_acc, as a DataFrame if pandas is installed."""
        return _frame(self.stats())

    def format_summary(self, metric: str = "final_test_acc") -> str:
        """One line per grid point: ``key=value: metric mean +- std (n=N), seconds per run``."""
        from nnlab.reporting.stats import format_summary

        return format_summary(self.stats(metric), self.keys, metric)

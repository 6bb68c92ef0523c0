"""TensorBoard logging for ``train.tensorboard = true`` (an optional extra: ``pip install 'nnlab[tensorboard]'``).

The run folder stays the source of truth (metrics.csv, summary.json); TensorBoard
is a live view of it. Event files go straight into the run folder, so
``tensorboard --logdir runs/`` shows every run under its folder's name:

- scalars at every evaluation, with the epoch as the step (like metrics.csv and
  curves.png): ``loss/train``, ``loss/test``, ``accuracy/train``,
  ``accuracy/test``, ``lr``;
- the resolved config as text (tag ``config``);
- the model graph, traced once from one test example (0.04 s for the moons MLP,
  about 1 s for the CNNs on CPU; a model that cannot be traced is noted as text).

``torch.utils.tensorboard`` (and the ``tensorboard`` package it needs) is
imported only here, only when a run asks for it.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nnlab.errors import ConfigError, first_line
from nnlab.extras import require

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nnlab.config import Config

# metrics row column -> TensorBoard tag ("section/name" groups the charts in the UI)
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_acc": "accuracy/train",
    "test_acc": "accuracy/test",
    "lr": "lr",
}

MISSING = (
    "train.tensorboard: needs the tensorboard package, which is not installed; "
    "pip install 'nnlab[tensorboard]' (or tensorboard), or set train.tensorboard=false"
)


def check_available(cfg: Config) -> None:
    """Raise a one-line ConfigError if ``cfg`` asks for TensorBoard and it is not installed.

    Called before a run or sweep writes anything (``nnlab.extras``: without importing it).
    """
    if cfg.train.tensorboard:
        require("tensorboard", MISSING)


class TensorBoardLog:
    """One run's event file: ``log_config`` once, ``log_graph`` once, ``log_row`` per evaluation."""

    def __init__(self, folder: Path, purge_after_epoch: int | None = None) -> None:
        """Open a writer on ``folder`` (the run folder).

        ``purge_after_epoch``: when resuming from a checkpoint at epoch E, events
        of later epochs (written before the crash, recomputed now) are hidden,
        as metrics.csv drops its rows past the checkpoint.
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # find_spec saw it, but it does not import (e.g. a missing dependency)
            raise ConfigError(MISSING) from None
        purge = purge_after_epoch + 1 if purge_after_epoch is not None else None
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge)

    def log_config(self, cfg: Config, toml_text: str) -> None:
        # TensorBoard renders text as Markdown: indent four spaces to keep it a code block.
        body = "\n".join("    " + line for line in toml_text.splitlines())
        self.writer.add_text("config", f"**{cfg.name}** {cfg.description}\n\n{body}", global_step=0)

    def log_graph(self, model: nn.Module, example: torch.Tensor) -> None:
        """Trace ``model`` on ``example`` (one input, batch of 1) and store the graph.

        ``add_graph`` would trace with ``check_trace=True``, whose output check
        imports ``torch.distributed.tensor`` (3-4 s the first time); tracing here
        without the check and handing over the traced module (which ``add_graph``
        does not trace again) costs 0.04-1.4 s for nnlab's models.
        """
        import torch

        was_training = model.training
        model.eval()  # BatchNorm and dropout in their inference form; no running-stat updates
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # TracerWarnings about Python control flow are expected
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                traced = torch.jit.trace(model, example, check_trace=False)
                self.writer.add_graph(traced, example)
            self.writer.add_text(
                "graph", f"traced in {time.perf_counter() - start:.2f} s", global_step=0
            )
        except (
            Exception
        ) as exc:  # a graph is a nicety: a model jit cannot trace still trains and logs
            first = first_line(exc)
            self.writer.add_text("graph", f"not traced: {first[:300]}", global_step=0)
        finally:
            model.train(was_training)

    def log_row(self, row: dict[str, Any]) -> None:
        """One evaluation's metrics row (as appended to metrics.csv), at step = its epoch."""
        epoch = int(row["epoch"])
        for column, tag in SCALAR_TAGS.items():
            if row.get(column) is not None:
                self.writer.add_scalar(tag, float(row[column]), global_step=epoch)
        self.writer.flush()  # evaluations are rare: flush so a live TensorBoard sees each at once

    def close(self) -> None:
        self.writer.close()


def log_history(folder: Path, cfg: Config, toml_text: str, history: list[dict[str, Any]]) -> None:
    """Write a finished run's rows in one go: for training loops that do not go through
    ``nnlab.engine.loop.fit`` (the NumPy backend), so ``train.tensorboard`` works for every run."""
    log = TensorBoardLog(folder)
    try:
        log.log_config(cfg, toml_text)
        for row in history:
            log.log_row(row)
    finally:
        log.close()

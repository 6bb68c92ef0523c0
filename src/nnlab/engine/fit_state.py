"""``FitState``: the counters of a run in progress, and everything resume needs of them.

Best accuracy and epoch are kept per member (a stack of seeds trains S networks
at once); early stopping watches member 0 (``engine/plan.py`` stacks only runs
without it). Selection (best epoch, ``best.pt``, patience, target accuracy) looks
at ``selected_on``: ``val_acc`` with a validation split (``data.val_fraction``),
else ``test_acc``; the best test accuracy is also kept, for information only. ``state_dict(member)`` is the flat part of that member's checkpoint
(``epoch``, ``step``, ``best_test_acc``, ...), ``load_state_dict`` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FitState:
    members: int = 1
    epoch: int = 0  # the last epoch trained
    step: int = 0  # optimizer steps taken
    elapsed_s: float = 0.0  # training time so far (carried over a resume)
    since_best: int = 0  # evaluations since member 0 last improved
    stop_reason: str = ""  # set when an early stop is decided; "" while training goes on
    selected_on: str = "test_acc"  # val_acc with a validation split
    history: list[list[dict[str, float]]] = field(default_factory=list)  # rows per member
    best_acc: list[float] = field(default_factory=list)  # of selected_on, per member
    best_epoch: list[int] = field(default_factory=list)  # where best_acc was reached
    best_test: list[float] = field(default_factory=list)  # best test_acc (informational)

    def __post_init__(self) -> None:
        self.history = self.history or [[] for _ in range(self.members)]
        self.best_acc = self.best_acc or [-1.0] * self.members
        self.best_epoch = self.best_epoch or [0] * self.members
        self.best_test = self.best_test or [-1.0] * self.members

    def record(self, rows: list[dict[str, float]], train) -> list[bool]:
        """Add one evaluation's rows (one per member); returns which members improved.

        ``train`` is the ``[train]`` section: ``target_acc`` and ``patience`` decide
        ``stop_reason``.
        """
        key, improved = self.selected_on, []
        for s, row in enumerate(rows):
            self.history[s].append(row)
            better = row[key] > self.best_acc[s]
            if better:
                self.best_acc[s], self.best_epoch[s] = row[key], row["epoch"]
            self.best_test[s] = max(self.best_test[s], row["test_acc"])
            improved.append(better)
        self.since_best = 0 if improved[0] else self.since_best + 1
        acc, epoch = rows[0][key], rows[0]["epoch"]
        if train.target_acc and acc >= train.target_acc:
            self.stop_reason = (
                f"reached train.target_acc {train.target_acc} ({key}) at epoch {epoch}"
            )
        elif train.patience and self.since_best >= train.patience:
            self.stop_reason = f"early stop: no better {key} for {train.patience} evaluations"
        return improved

    def state_dict(self, member: int = 0) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "best_test_acc": self.best_test[member],
            "best_val_acc": self.best_acc[member] if self.selected_on == "val_acc" else None,
            "best_epoch": self.best_epoch[member],
            "since_best": self.since_best,
            "elapsed_s": self.elapsed_s,
            "stop_reason": self.stop_reason,
            # the last evaluation's row, full precision (metrics.csv rounds to 6 digits);
            # None for a checkpoint taken mid-way through the first evaluation interval
            "row": self.history[member][-1] if self.history[member] else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A lone run's checkpoint, plus its metrics ``history`` (``engine/run.py`` adds it)."""
        self.epoch, self.step, self.elapsed_s = state["epoch"], state["step"], state["elapsed_s"]
        self.best_test[0], self.best_epoch[0] = state["best_test_acc"], state["best_epoch"]
        # checkpoints from before data.val_fraction have no best_val_acc: they selected on test
        best_val = state.get("best_val_acc")
        self.best_acc[0] = best_val if self.selected_on == "val_acc" else state["best_test_acc"]
        if self.selected_on == "val_acc" and best_val is None:
            self.best_acc[0] = -1.0
        self.since_best, self.stop_reason = state["since_best"], state["stop_reason"]
        self.history[0] = list(state["history"])

"""How a run reports progress (tqdm bar, plain lines, or nothing)."""

from __future__ import annotations

import math
import sys


class Progress:
    """How a run reports progress: ``bar`` (tqdm, on a terminal), ``lines`` (a plain line
    at each tenth of training: CI, pipes) or ``off``. ``mode=None`` picks bar or lines.
    """

    def __init__(self, total: int, label: str, mode: str | None = None) -> None:
        self.total, self.label = total, label
        self.mode = mode or ("bar" if sys.stderr.isatty() else "lines")
        self.bar = None
        self.next_mark = 0.0
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="ep", leave=False, dynamic_ncols=True)

    def update(self, epoch: int, row: dict[str, float] | None) -> None:
        if self.bar is not None:
            self.bar.update(epoch - self.bar.n)
            if row:
                self.bar.set_postfix(
                    loss=f"{row['train_loss']:.4f}", test_acc=f"{row['test_acc']:.4f}"
                )
        elif (
            self.mode == "lines"
            and row
            and (epoch / self.total >= self.next_mark or epoch == self.total)
        ):
            self.next_mark = math.floor(epoch / self.total * 10 + 1) / 10
            print(
                f"{self.label} epoch {epoch}/{self.total}  train_loss {row['train_loss']:.4f}  "
                f"train_acc {row['train_acc']:.4f}  test_loss {row['test_loss']:.4f}  test_acc {row['test_acc']:.4f}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

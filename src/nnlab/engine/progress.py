"""How a run reports progress: a tqdm bar over steps, plain lines, or nothing."""

from __future__ import annotations

import math
import sys
import time


class Progress:
    """``bar`` (tqdm over training steps, on a terminal), ``lines`` (a plain line at each
    tenth of training and at least every ``every_s`` seconds: CI, pipes, logs) or ``off``.
    ``mode=None`` picks bar or lines.

    ``steps_per_epoch`` (0 when unknown: the bar then counts epochs) and ``done`` (steps
    already trained by a resumed run) make the ETA honest: tqdm and the lines measure the
    rate of this process only, over the steps that remain.
    """

    def __init__(
        self,
        epochs: int,
        label: str,
        mode: str | None = None,
        *,
        steps_per_epoch: int = 0,
        done: int = 0,
        every_s: float = 30.0,
    ) -> None:
        self.epochs, self.label, self.every_s = epochs, label, every_s
        self.per_epoch = steps_per_epoch
        self.total = epochs * steps_per_epoch if steps_per_epoch else epochs
        self.mode = mode or ("bar" if sys.stderr.isatty() else "lines")
        self.bar = None
        self.next_mark = 0.0
        self.done = self.first = done
        self.started = self.last_line = time.monotonic()
        if self.mode == "bar":
            from tqdm import tqdm

            unit = "step" if steps_per_epoch else "ep"
            self.bar = tqdm(
                total=self.total,
                initial=done,
                desc=label,
                unit=unit,
                leave=False,
                dynamic_ncols=True,
            )

    def step(self, epoch: int, done: int) -> None:
        """``done`` training steps so far, in ``epoch`` (called after every step)."""
        self.done = done
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            return
        if self.mode == "lines" and time.monotonic() - self.last_line >= self.every_s:
            self._line(f"epoch {epoch}/{self.epochs}  step {done}/{self.total}")

    def update(self, epoch: int, row: dict[str, float] | None) -> None:
        """The end of ``epoch``; ``row``: its metrics when it was evaluated."""
        if not self.per_epoch:
            self.done = epoch
        if self.bar is not None:
            self.bar.update(self.done - self.bar.n)
            if row:
                self.bar.set_postfix(
                    epoch=epoch, loss=f"{row['train_loss']:.4f}", test_acc=f"{row['test_acc']:.4f}"
                )
        elif self.mode == "lines" and row and self._at_mark(epoch):
            self.next_mark = math.floor(epoch / self.epochs * 10 + 1) / 10
            val = f"  val_acc {row['val_acc']:.4f}" if "val_acc" in row else ""
            self._line(
                f"epoch {epoch}/{self.epochs}  train_loss {row['train_loss']:.4f}  "
                f"train_acc {row['train_acc']:.4f}  test_loss {row['test_loss']:.4f}  "
                f"test_acc {row['test_acc']:.4f}{val}"
            )

    def _at_mark(self, epoch: int) -> bool:
        """At each tenth of training, and at its end."""
        return epoch / self.epochs >= self.next_mark or epoch == self.epochs

    def _line(self, text: str) -> None:
        now = time.monotonic()
        self.last_line = now
        rate = (self.done - self.first) / max(now - self.started, 1e-9)
        unit = "steps" if self.per_epoch else "epochs"
        eta = f", ETA {_duration((self.total - self.done) / rate)}" if rate > 0 else ""
        print(f"{self.label} {text}  ({rate:.1f} {unit}/s{eta})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"

"""Training-step time of the from-scratch recurrent cells against torch's fused modules, on CPU.

Both implementations run in this one process, interleaved in rounds, so a busy
shared machine slows them alike; the figure to read is the ratio scratch/fused.
One step = forward, cross-entropy, backward, gradient clipping, RMSprop update,
exactly what ``nnlab.engine.loop.train_one_epoch`` does per batch.

    .venv/bin/python benchmarks/rnn_speed.py                 # rnn, lstm, gru at T=20, batch 32, hidden 64
    .venv/bin/python benchmarks/rnn_speed.py --length 50 --batch 128 --models lstm
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from nnlab.models.rnn import RecurrentClassifier, copy_weights


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.99, foreach=True)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    return step


def time_steps(step, n: int) -> float:
    """Mean seconds per step over ``n`` steps."""
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="rnn,lstm,gru")
    p.add_argument("--length", type=int, default=20, help="T, input digits")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--inputs", type=int, default=1, help="1 = scalar digits, 10 = one-hot")
    p.add_argument("--steps", type=int, default=100, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (nnlab uses 1 for models this small)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"T={args.length} batch={args.batch} hidden={args.hidden} inputs={args.inputs} "
        f"threads={args.threads} torch={torch.__version__}; median of {args.rounds} rounds x {args.steps} steps"
    )
    print(f"{'model':6} {'scratch ms/step':>16} {'fused ms/step':>14} {'scratch/fused':>14}")
    for kind in args.models.split(","):
        torch.manual_seed(0)
        scratch = RecurrentClassifier(kind, args.inputs, args.hidden, 10, impl="scratch")
        fused = RecurrentClassifier(kind, args.inputs, args.hidden, 10, impl="fused")
        copy_weights(scratch, fused)
        x = torch.randint(0, 10, (args.batch, args.length, args.inputs)).float()
        y = torch.randint(0, 10, (args.batch,))
        steps = {"scratch": make_step(scratch, x, y), "fused": make_step(fused, x, y)}
        for step in steps.values():  # warm-up: allocator, first-call overheads
            time_steps(step, 10)
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.rounds):  # interleaved, so load changes hit both
            for name, step in steps.items():
                times[name].append(time_steps(step, args.steps))
        s, f = statistics.median(times["scratch"]), statistics.median(times["fused"])
        print(f"{kind:6} {s * 1e3:16.3f} {f * 1e3:14.3f} {s / f:14.2f}")


if __name__ == "__main__":
    main()

"""How long ``import nnlab`` takes, and what it imports, next to ``import torch``.

    .venv/bin/python benchmarks/import_time.py [--rounds 5]

Each statement runs in a fresh interpreter, ``--rounds`` times, interleaved (so a
busy machine slows every statement alike); the median wall time is printed, and
``-X importtime``'s own count for the ``nnlab`` package. The target (issue 10):
``import nnlab`` costs <= 0.5 s beyond importing torch itself. nnlab imports no
torch, matplotlib or scikit-learn at import time, so its cost is measured on its own.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

STATEMENTS = {
    "python (empty)": "pass",
    "import nnlab": "import nnlab",
    "import torch": "import torch",
    "import torch, nnlab": "import torch, nnlab",
}
HEAVY = ("torch", "matplotlib", "sklearn", "numpy", "tensorboard", "pandas")


def wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def nnlab_importtime_us() -> int:
    """``-X importtime``'s cumulative microseconds for the ``nnlab`` package itself."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import nnlab"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    line = next(x for x in err.splitlines() if x.rstrip().endswith("| nnlab"))
    return int(line.split("|")[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    cumulative = []
    for _ in range(args.rounds):
        for name, code in STATEMENTS.items():
            times[name].append(wall(code))
        cumulative.append(nnlab_importtime_us())
    for name, values in times.items():
        print(
            f"{name:<22} median {statistics.median(values):.3f} s  (min {min(values):.3f}, max {max(values):.3f})"
        )
    med = {name: statistics.median(v) for name, v in times.items()}
    print(
        f"import nnlab beyond an empty interpreter: {med['import nnlab'] - med['python (empty)']:.3f} s"
    )
    print(
        f"import torch, nnlab beyond import torch:  {med['import torch, nnlab'] - med['import torch']:.3f} s"
    )
    print(f"-X importtime, nnlab cumulative: median {statistics.median(cumulative) / 1e6:.3f} s")
    probe = f"import sys, nnlab; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(f"heavy libraries loaded by import nnlab: {loaded}")


if __name__ == "__main__":
    main()

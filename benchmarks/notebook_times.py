"""Wall and CPU time of each notebook in notebooks/, run top to bottom at FULL = False.

    NNLAB_CIFAR10=PATH/cifar10-jpeg .venv/bin/python benchmarks/notebook_times.py [NOTEBOOK ...]

Each notebook runs in a fresh kernel (nbclient + ipykernel, as tests/test_notebooks.py
does), in its own child process and temporary working folder, so that
``getrusage(RUSAGE_CHILDREN)`` counts the CPU time of everything it ran (kernel
included): on a machine shared with other jobs the CPU time is the better guide
to an idle machine's wall time. The target (issue 10): <= 3 minutes each on 2 CPU cores.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
"""


def main() -> None:
    notebooks = [Path(p) for p in sys.argv[1:]] or sorted((REPO / "notebooks").glob("*.ipynb"))
    for path in notebooks:
        with tempfile.TemporaryDirectory() as cwd:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", EXECUTE, str(path), cwd], capture_output=True, text=True
            )
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        status = (
            "ok" if proc.returncode == 0 else f"FAILED: {proc.stderr.strip().splitlines()[-1:]}"
        )
        print(f"{path.name:<26} wall {wall:6.1f} s   CPU {cpu:6.1f} s   {status}", flush=True)


if __name__ == "__main__":
    main()

"""Run folders (the contract in ARCHITECTURE.md): the one format, written and read here.

::

    RUN/config.toml      the fully resolved config
    RUN/metrics.csv      one row per evaluation (METRIC_COLUMNS), append-only
    RUN/summary.json     written once, at the end: a run is finished iff it exists
    RUN/checkpoints/     last.pt, best.pt, written atomically, weights_only-loadable
    RUN/curves.png       loss and accuracy against epoch

Every whole-file write goes to a temporary file in the same folder, is fsync'ed,
then renamed over the target, so a crash leaves the old file or the new one,
never a torn one.
"""

from nnlab.runs.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_arrays,
    load_checkpoint,
    read_json,
    save_arrays,
    save_checkpoint,
)
from nnlab.runs.read import BOUNDARY_ARRAYS, RESULT_COLUMNS, RunFolder, SweepFolder
from nnlab.runs.write import (
    METRIC_COLUMNS,
    RunDir,
    command_line,
    completed_summary,
    git_commit,
    prepare_out_dir,
    read_metrics,
    repair_metrics,
    versions,
)

__all__ = [
    "BOUNDARY_ARRAYS",
    "METRIC_COLUMNS",
    "RESULT_COLUMNS",
    "RunDir",
    "RunFolder",
    "SweepFolder",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "command_line",
    "completed_summary",
    "git_commit",
    "load_arrays",
    "load_checkpoint",
    "prepare_out_dir",
    "read_json",
    "read_metrics",
    "repair_metrics",
    "save_arrays",
    "save_checkpoint",
    "versions",
]

"""Record the golden replay set from a given source tree (the code before a redesign).

    python tests/golden/record.py --src /path/to/old/checkout/src [--case NAME ...]

runs every case of ``cases.py`` (or the named ones) with ``PYTHONPATH=SRC`` in a
temporary folder, uninterrupted (a resumed run must end where this one ends), and
writes ``expected.json`` and ``weights/<case>[__<run>].npz`` beside this file.
``--case`` re-records only those cases and keeps the others' entries.

Record from the old code, on the machine (and torch, numpy) the replay will run
on: bit-identity is a property of one CPU arithmetic, and ``expected.json``
keeps that arithmetic's fingerprint so a replay elsewhere skips instead of failing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `golden`

from golden.cases import BY_NAME, CASES  # noqa: E402
from golden.replay import (  # noqa: E402
    EXPECTED,
    SHARED_DATASETS,
    WEIGHTS,
    Replay,
    case_env,
    cifar10_available,
    fingerprint,
    nnlab_location,
    run_all,
    save_weights,
    weights_file,
)


def _git_commit(src: Path) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def _entry(replay: Replay) -> dict:
    """A case's expected values; writes its float64 weights under ``WEIGHTS``."""
    runs = {}
    for run, record in sorted(replay.runs.items()):
        name = weights_file(replay.case.name, run)
        save_weights(WEIGHTS / name, record["weights"])
        runs[run] = {
            "metrics": record["metrics"],
            "summary": record["summary"],
            "weights_sha256": record["weights_sha256"],
            "weights_file": name,
        }
    launcher = (
        "torchrun --nproc-per-node=2 -m nnlab" if replay.case.launcher == "torchrun" else "nnlab"
    )
    return {
        "command": " ".join((launcher, *replay.case.argv)),
        "runs": runs,
        "results": replay.results,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, type=Path, help="the source tree to record (its src/)")
    p.add_argument("--case", action="append", choices=sorted(BY_NAME), help="only these cases")
    p.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    p.add_argument("--keep", action="store_true", help="keep the temporary run folders")
    args = p.parse_args(argv)

    src = args.src.resolve()
    env = case_env(PYTHONPATH=str(src))
    location = nnlab_location(env)
    if not Path(location).is_relative_to(src):
        p.error(f"python -m nnlab imports {location}, not code from {src}")
    if not cifar10_available():
        p.error(f"CIFAR-10 is missing from {SHARED_DATASETS}: cannot record cnn-quick")
    cases = [BY_NAME[name] for name in args.case] if args.case else CASES

    expected = json.loads(EXPECTED.read_text()) if args.case and EXPECTED.exists() else {}
    old_cases = expected.get("cases", {})
    if expected and expected.get("fingerprint") != fingerprint():
        p.error("expected.json was recorded under another fingerprint: record every case")

    work = Path(tempfile.mkdtemp(prefix="nnlab-golden-"))
    pool, futures = run_all(cases, work, env, interrupt=False, jobs=args.jobs)
    try:
        replays = {name: future.result() for name, future in futures.items()}
    finally:
        pool.shutdown(cancel_futures=True)

    WEIGHTS.mkdir(exist_ok=True)
    if args.case:  # drop only the re-recorded cases' old weights (a sweep's runs may change)
        for name in replays:
            for run in old_cases.get(name, {}).get("runs", {}).values():
                (WEIGHTS / run["weights_file"]).unlink(missing_ok=True)
    else:
        for path in WEIGHTS.glob("*.npz"):
            path.unlink()
    entries = {**old_cases, **{name: _entry(replay) for name, replay in replays.items()}}
    expected = {
        "recorded_from": {"src": str(src), "git_commit": _git_commit(src), "nnlab": location},
        "fingerprint": fingerprint(),
        "cases": {c.name: entries[c.name] for c in CASES if c.name in entries},
    }
    EXPECTED.write_text(json.dumps(expected, indent=1, sort_keys=False) + "\n")

    for name, replay in replays.items():
        print(f"{name:<20} {replay.seconds:6.1f} s  {len(replay.runs)} run(s)")
    size = sum(p.stat().st_size for p in WEIGHTS.glob("*.npz"))
    print(f"wrote {EXPECTED} and {WEIGHTS}/ ({size / 1024:.0f} KiB of weights)")
    if args.keep:
        print(f"run folders kept in {work}")
    else:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())

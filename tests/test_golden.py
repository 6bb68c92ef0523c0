"""Golden replay: the code under test must redo the old code's CPU runs bit for bit.

``golden/expected.json`` and ``golden/weights/`` were recorded from the code
before the "one engine" redesign (``python tests/golden/record.py --src OLD/src``).
Each case of ``golden/cases.py`` is run here through the CLI with this
interpreter (``python -m nnlab``: the installed nnlab, or whatever PYTHONPATH
names) and must give the recorded ``metrics.csv`` rows (every column but
``elapsed_s``, as the exact strings), the recorded ``summary.json`` results and
final weights whose sha256 equals the recorded one. The kill-and-resume case is
killed midway and resumed here, and must still end where the uninterrupted
recording ended.

``TOLERANCE`` maps a case name to an absolute tolerance, for a case whose
arithmetic changed on purpose (say, a fused kernel that rounds differently):
that case's weights (against the float64 copies in ``golden/weights/``),
metrics and summary numbers are then compared within the tolerance instead of
exactly; epochs, steps and text stay exact, and since metrics.csv keeps 6
significant digits, a metric may also differ by one unit in its last digit.
Add an entry with the reason beside it, e.g. ``"cnn-quick": 1e-6,  # BatchNorm
folded into the conv``; keep it empty when nothing changed on purpose.

The cases run two at a time (``NNLAB_GOLDEN_JOBS``), all started when the
module's first test needs them: about 60 s of CPU in all, mostly 16 processes
importing torch, and 64-103 s of wall time on 2 cores shared with other jobs,
hence the slow mark. CIFAR-10 comes from ../shared/datasets as in
tests/conftest.py: the cnn-quick case skips without it, and fails without it
in CI. A replay under another CPU arithmetic than the recording's
(``fingerprint`` in expected.json: torch, numpy, SIMD level, thread budget)
skips: bit-identity cannot hold there; record again from the old code on
that machine.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from concurrent.futures import Future
from decimal import Decimal, InvalidOperation

import numpy as np
import pytest

from conftest import shared_dataset
from golden.cases import BY_NAME, CASES, Case
from golden.replay import (
    CIFAR10_FILES,
    EXPECTED,
    SINGLE_RUN,
    WEIGHTS,
    Replay,
    case_env,
    cifar10_available,
    fingerprint,
    load_weights,
    nnlab_location,
    run_all,
)

pytestmark = pytest.mark.slow

# case name -> atol; see the module docstring. Empty: every case must be bit-identical.
TOLERANCE: dict[str, float] = {
    # A stack of seeds now scores accuracy as its lone runs do, an exact count / N
    # (it took a float32 mean: 0.9800000190734863 for 0.98); weights and losses unchanged.
    "moons-seeds3": 1e-6,
    "numpy-vs-torch": 1e-6,
}
JOBS = int(os.environ.get("NNLAB_GOLDEN_JOBS", "2"))
EXACT_METRICS = ("epoch", "step")  # counters: equal even within a tolerance


@pytest.fixture(scope="module")
def expected() -> dict:
    assert EXPECTED.exists(), f"{EXPECTED} is missing: run tests/golden/record.py --src OLD/src"
    return json.loads(EXPECTED.read_text())


@pytest.fixture(scope="module")
def replays(request, expected, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """Start every selected case at once (on ``JOBS`` workers); each test waits for its own."""
    here = fingerprint()
    if here != expected["fingerprint"]:
        pytest.skip(
            f"recorded under {expected['fingerprint']}, replayed under {here}: "
            "bit-identity cannot hold; record again (tests/golden/record.py)"
        )
    selected = {
        item.callspec.params["case"].name
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    have_cifar = cifar10_available()
    cases = [c for c in CASES if c.name in selected and (have_cifar or not c.cifar10)]
    pool, futures = run_all(
        cases, tmp_path_factory.mktemp("golden"), case_env(), interrupt=True, jobs=JOBS
    )
    yield futures
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_replay_matches_the_recording(case: Case, expected, request):
    if case.cifar10:  # before anything else: a missing data set must fail in CI, not skip
        for name in CIFAR10_FILES:
            shared_dataset(name)
    want = expected["cases"].get(case.name)
    assert want is not None, f"{case.name} was never recorded: record.py --case {case.name}"
    replay: Replay = request.getfixturevalue("replays")[case.name].result()
    atol = TOLERANCE.get(case.name)
    problems: list[str] = []
    if replay.case.kill_after_rows and replay.killed_after_rows is None:
        problems.append("the run was not killed midway, so its resume went untested")
    if replay.results != want["results"]:
        problems += _compare_results(replay.results, want["results"], atol)
    if sorted(replay.runs) != sorted(want["runs"]):
        problems.append(f"run folders {sorted(replay.runs)} != recorded {sorted(want['runs'])}")
    for run in sorted(set(replay.runs) & set(want["runs"])):
        where = "" if run == SINGLE_RUN else f"{run}: "
        problems += [where + p for p in _compare_run(replay.runs[run], want["runs"][run], atol)]
    if problems:
        env = case_env()
        pytest.fail(
            f"{case.name} ({want['command']}) differs from the recording"
            f"{f' within atol {atol}' if atol is not None else ''}, replayed with "
            f"{nnlab_location(env)} in {replay.out}:\n  " + "\n  ".join(problems[:20]),
            pytrace=False,
        )


def test_every_case_is_recorded(expected):
    """A case added to cases.py needs its recording; a recording without a case is stale."""
    assert sorted(expected["cases"]) == sorted(BY_NAME)
    files = {r["weights_file"] for c in expected["cases"].values() for r in c["runs"].values()}
    assert files == {p.name for p in WEIGHTS.glob("*.npz")}


# --------------------------------------------------------------------------- comparing


def _close(got: str | float | None, want: str | float | None, atol: float | None) -> bool:
    """Equal, or (with a tolerance) both numbers within ``atol``."""
    if got == want:
        return True
    if atol is None or got is None or want is None:
        return False
    try:
        a, b = float(got), float(want)
    except (TypeError, ValueError):
        return False
    return math.isclose(a, b, rel_tol=0.0, abs_tol=atol)


def _widen(atol: float | None, printed: str) -> float | None:
    """``atol`` plus one unit in the last digit of a printed number (None stays exact)."""
    if atol is None:
        return None
    try:
        exponent = Decimal(printed).as_tuple().exponent
    except InvalidOperation:
        return atol
    return atol + 10.0**exponent if isinstance(exponent, int) else atol


def _compare_results(got, want, atol) -> list[str]:
    if got is None or want is None or len(got) != len(want):
        return [f"results.csv rows {got} != recorded {want}"]
    problems = []
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        same = all(g[k] == w[k] if k != "final_test_acc" else _close(g[k], w[k], atol) for k in w)
        if not same or g.keys() != w.keys():
            problems.append(f"results.csv row {i}: {g} != recorded {w}")
    return problems


def _compare_run(got: dict, want: dict, atol: float | None) -> list[str]:
    problems = []
    rows_got, rows_want = got["metrics"], want["metrics"]
    if len(rows_got) != len(rows_want):
        problems.append(f"metrics.csv has {len(rows_got)} rows, recorded {len(rows_want)}")
    for g, w in zip(rows_got, rows_want, strict=False):
        if g.keys() != w.keys():
            problems.append(f"metrics.csv columns {list(g)} != recorded {list(w)}")
            break
        bad = [
            k
            for k in w
            if not (g[k] == w[k] if k in EXACT_METRICS else _close(g[k], w[k], _widen(atol, w[k])))
        ]
        if bad:
            problems.append(
                f"metrics.csv epoch {w.get('epoch')}: "
                + ", ".join(f"{k} {g[k]} != {w[k]}" for k in bad)
            )
            break  # later rows follow from this one
    for key, w in want["summary"].items():
        g = got["summary"].get(key)
        exact = not isinstance(w, float)
        if not (g == w if exact else _close(g, w, atol)):
            problems.append(f"summary.json {key} {g!r} != recorded {w!r}")
    if atol is None:
        if got["weights_sha256"] != want["weights_sha256"]:
            diff = _weights_diff(got, want, 0.0)
            # Equal values under another hash: a dtype or a key changed, e.g. float32 -> 64.
            problems.append("final weights differ: " + (", ".join(diff) or "in dtype or keys"))
    else:
        diff = _weights_diff(got, want, atol)
        if diff:
            problems.append(f"final weights differ by more than {atol}: " + ", ".join(diff))
    return problems


def _weights_diff(got: dict, want: dict, atol: float) -> list[str]:
    """Which tensors differ by more than ``atol`` (against the recorded float64 copy)."""
    recorded = load_weights(WEIGHTS / want["weights_file"])
    weights = got["weights"]
    if weights.keys() != recorded.keys():
        return [f"keys {sorted(weights)} != recorded {sorted(recorded)}"]
    parts = []
    for key in sorted(recorded):
        a, b = np.asarray(weights[key], dtype=np.float64), recorded[key]
        if a.shape != b.shape:
            parts.append(f"{key} shape {a.shape} != {b.shape}")
            continue
        worst = float(np.max(np.abs(a - b), initial=0.0))
        if worst > atol or (atol == 0.0 and not np.array_equal(a, b)):
            parts.append(f"{key} max |diff| {worst:.3g}")
    return parts

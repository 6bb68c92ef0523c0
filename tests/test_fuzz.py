"""Fuzzing: mutated configs, command lines, run folders and archives never get past the contract.

Each property draws inputs with hypothesis (derandomized, so CI sees the same examples every
time) and runs the CLI on them, in this process (``nnlab.cli.main``: torch is imported once)
or, for the memory and hang checks, in a subprocess under ``RLIMIT_AS``. The invariant is the
same for every example:

- exit 0; or exit 2 with exactly one line on stderr and no traceback; or exit 1 with one
  ``nnlab: error:`` line (a run whose loss diverged: valid input, failed optimisation);
  never a traceback, never the "internal error" line of a bug (no crash file appears);
- a refused ``train`` leaves no output folder behind;
- no file outside the output folders (``--out``, ``runs/``, the report, the data folder) is
  created, changed or removed (the whole temp tree is snapshotted before and after);
- no example runs longer than ``TIMEOUT_S`` (an in-process alarm; a subprocess timeout);
- under ``RLIMIT_AS`` = ``MEMORY_CAP`` a subprocess still ends by the contract.

A failure is fixed in ``src/``, never here. Values that only ask for a long run (say
``train.epochs = 10^9``) are left out of the draws: such a run is valid, just long.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import typing
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nnlab.config.sections import SECTIONS

TIMEOUT_S = 60  # per example; a tiny run takes well under a second
MEMORY_CAP = 4 * 2**30  # RLIMIT_AS for subprocesses: a tiny run's peak is ~0.9 GiB of address space
# NNLAB_FUZZ_EXAMPLES=N: N fresh random examples per property (a longer hunt by hand)
HUNT = os.environ.get("NNLAB_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(HUNT) if HUNT else 100,  # in-process examples take milliseconds to a second
    deadline=None,
    derandomize=not HUNT,  # the same examples on every machine: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL = settings(
    FUZZ, max_examples=max(5, int(HUNT) // 10) if HUNT else 5
)  # subprocesses: seconds each

# The base of every config example: a moons run of well under a second ...
TINY = {
    "data": {"name": "moons", "n_samples": 40},
    "model": {"hidden": [8]},
    "train": {"epochs": 2, "batch_size": 16, "eval_every": 1, "checkpoint_every_s": 0.0},
}
# ... or one of these, as small, so that mutations reach every model family and dataset
BASES = {
    "moons": TINY,
    "palindrome": {
        "data": {"name": "palindrome", "length": 3, "n_samples": 60},
        "model": {"name": "lstm", "hidden": [8]},
        "train": TINY["train"],
    },
    "cifar10": {  # the synthetic archive imported by the world fixture
        "data": {"name": "cifar10", "limit_train": 12, "limit_test": 6},
        "model": {"name": "cnn", "widths": ["4", "M", "G"], "batchnorm": True},
        "train": {**TINY["train"], "batch_size": 4},
    },
    "numpy": {**TINY, "model": {"backend": "numpy", "hidden": [8]}},
    "blobs": {**TINY, "data": {"name": "blobs", "centers": 3, "n_samples": 60}},
}


# Keys whose large values only make a run long (or big: config.limits refuses absurd sizes):
# their integer draws stay small, plus one absurd value that must be refused.
WORK_KEYS = {
    "train.epochs": [0, -1, 1, 2, 3],
    "data.n_samples": [0, -1, 9, 10, 11, 20, 41, 10**30],
    "data.epoch_size": [0, -1, 1, 2, 7, 10**30],
    "data.length": [0, -1, 1, 2, 3, 10**30],
    "data.image_size": [0, -1, 1, 3, 4, 8, 10**30],
    "model.hidden": [0, -1, 1, 2, 10**30],
    "train.ema_every": [0, -1, 1, 2, 10**30],
    "data.centers": [0, -1, 1, 2, 3, 20, 10**30],
}
EDGE_INTS = [0, -1, 1, 2, 3, 7, 2**31 - 1, 2**32 - 1, 2**32, 2**63, -(2**63), 2**64 + 1, 10**30]
EDGE_FLOATS = [0.0, -0.0, 5e-324, 1e-300, 0.5, 0.999999, 1.0, 1.5, -0.5, 1e308, -1e308]
NON_FINITE = [math.nan, math.inf, -math.inf]
WORDS = [
    *("moons", "circles", "blobs", "palindrome", "cifar10", "imagefolder"),
    *("mlp", "cnn", "cnn-fast", "rnn", "lstm", "gru", "torch", "numpy"),
    *("relu", "sigmoid", "tanh", "gelu", "sgd", "adam", "adamw", "rmsprop"),
    *("none", "step", "cosine", "onecycle", "triangle", "auto", "on", "off", "cpu", "cuda:0"),
    *("scratch", "fused", "default", "orthogonal", "identity", "finite", "stream"),
    *("crop", "flip", "translate", "cutout", "M", "G", "F8", "R8", "64", "max-autotune"),
]
ODD_TEXT = ["", " ", "x", "../../x", "/", "\x00", "é", "😀", "\u202e", "a" * 300, "1e3", "nan"]


def all_keys() -> dict[str, object]:
    """Every config key, ``section.key`` -> its type (from the section dataclasses)."""
    return {
        f"{section}.{key}": tp
        for section, cls in SECTIONS.items()
        for key, tp in typing.get_type_hints(cls).items()
    }


KEYS = all_keys()
DOTTED = sorted(KEYS)
JUNK_KEYS = ["data.nosuch", "nosuch.key", "é.x", "train.", ".lr", "model.kwargs.width"]
TOP_LEVEL = {  # a config file's own keys: where it comes from, what it is called
    "extends": ["moons", "base.toml", "mutated.toml", "/dev/zero", "nowhere.toml", "", 5, []],
    "preset": ["../../evil", "a" * 300, "", "é", 1, "x$\\frac{a$y"],  # $: mathtext in figures
    "description": ["<b>x</b>", "\x00", 2.5, "$\\sqrt{$"],
    "sweep": [{"optim.lr": [0.1, 0.2]}, {"x": 1}, "y"],
}


def scalars(dotted: str) -> st.SearchStrategy:
    """Values of every type for one key: edges of its range, wrong types, odd text."""
    ints = WORK_KEYS.get(dotted, EDGE_INTS)
    return st.one_of(
        st.sampled_from(ints),
        st.sampled_from(EDGE_FLOATS + NON_FINITE),
        st.booleans(),
        st.sampled_from(WORDS + ODD_TEXT),
        st.text(max_size=12),
    )


def typed(dotted: str, tp) -> st.SearchStrategy:
    """Values of the key's own type, at the edges of its range (what passes the type check)."""
    if typing.get_origin(tp) is list:
        return st.lists(typed(dotted, typing.get_args(tp)[0]), max_size=4)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.one_of(st.sampled_from(WORK_KEYS.get(dotted, EDGE_INTS)), st.integers(-2, 40))
    if tp is float:
        edges = EDGE_FLOATS + NON_FINITE
        return st.one_of(st.sampled_from(edges), st.floats(-2, 2), st.integers(-2, 3))
    if tp is str:
        return st.sampled_from(WORDS + ODD_TEXT)
    return st.dictionaries(st.sampled_from(["a", "width", "é"]), scalars(dotted), max_size=2)


def values(dotted: str) -> st.SearchStrategy:
    """Mostly values of the key's type (they reach training), else anything."""
    one = scalars(dotted)
    anything = st.one_of(
        one,
        st.lists(one, max_size=3),
        st.dictionaries(st.sampled_from(["a", "width", "é"]), one, max_size=2),
    )
    if dotted not in KEYS:
        return anything
    own = typed(dotted, KEYS[dotted])
    return st.one_of(own, own, own, anything)


def toml_text(value) -> str:
    """Any drawn value as TOML (nan and inf are TOML floats; NUL is a \\u0000 escape)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in value.items()) + "}"


def config_toml(sections: dict[str, dict]) -> str:
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {toml_text(v)}\n" for key, v in keys.items())
        for name, keys in sections.items()
    )


TINY_TOML = config_toml(TINY)


def set_text(value) -> str:
    """Any drawn value as a ``--set key=VALUE`` string."""
    if isinstance(value, list):
        return ",".join(set_text(v) for v in value)
    if isinstance(value, dict):
        return toml_text(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------- the invariant


class Hang(BaseException):
    """An example ran past TIMEOUT_S (BaseException: nnlab's handlers must not swallow it)."""


def _alarm(signum, frame):
    raise Hang(f"no result after {TIMEOUT_S} s")


def snapshot(root: Path, outputs: set[str]) -> dict[str, str]:
    """Every path under ``root`` but the output folders, with its content's digest."""
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = Path(dirpath).relative_to(root)
        if rel.parts and rel.parts[0] in outputs:
            dirnames[:] = []
            continue
        for name in dirnames:
            if rel.parts or name not in outputs:
                seen[str(rel / name)] = "dir"
        for name in filenames:
            path = Path(dirpath) / name
            if not rel.parts and name in outputs:
                continue
            if path.is_symlink():
                seen[str(rel / name)] = "link:" + os.readlink(path)
            else:
                seen[str(rel / name)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return seen


def run_main(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``nnlab.cli.main(argv)`` in ``cwd``; (exit code, stdout, stderr)."""
    from nnlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's --help and --version
                code = exc.code if isinstance(exc.code, int) else 2
            except Hang:  # an AssertionError, so that hypothesis shrinks and shows the input
                raise AssertionError(f"{argv}: no result after {TIMEOUT_S} s") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(old_cwd)
    return code, out.getvalue(), err.getvalue()


def check_outcome(code: int, err: str, argv) -> None:
    """exit 0; exit 2 with one line; exit 1 with one ``nnlab: error:`` line; no traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err, (argv, err)
    assert "internal error" not in err, (argv, err)
    assert code in (0, 1, 2), (argv, code, err)
    if code:
        assert len(lines) == 1, (argv, code, err)
        assert lines[0].startswith("nnlab: error: "), (argv, code, err)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """What every property starts from: the tiny config, a finished and an unfinished run,
    a CIFAR-10 archive (imported into the data folder) and an ImageFolder archive (small,
    synthetic), and a crash folder that must stay empty."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "tiny.toml").write_text(TINY_TOML)
    crashes = root / "crashes"
    crashes.mkdir()
    env = {"NNLAB_CRASH_DIR": str(crashes), "NNLAB_DATA": str(root / "data")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    code, _, err = run_main(["train", "tiny.toml", "--out", "done"], root)
    assert code == 0, err
    shutil.copytree(root / "done", root / "cut")
    (root / "cut" / "summary.json").unlink()  # as if killed after its last checkpoint
    (root / "cifar.tar.gz").write_bytes(cifar_archive())
    code, _, err = run_main(["data", "cifar10", "--archive", "cifar.tar.gz"], root)
    assert code == 0, err  # into NNLAB_DATA: the cifar10 base config reads it
    (root / "folder.tar.gz").write_bytes(imagefolder_archive())
    ARCHIVES.update(
        {name: (root / name).read_bytes() for name in ("cifar.tar.gz", "folder.tar.gz")}
    )
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    assert not any(crashes.iterdir()), "a bug's crash file was written"


def fresh(world: Path, name: str, *copy: str) -> Path:
    """A new example folder holding copies of ``copy`` from the world."""
    base = world / "examples"
    base.mkdir(exist_ok=True)
    i = len(list(base.iterdir()))
    folder = base / f"{name}{i}"
    folder.mkdir()
    for item in copy:
        src = world / item
        if src.is_dir():
            shutil.copytree(src, folder / item)
        else:
            shutil.copy(src, folder / item)
    return folder


def run_and_check(argv: list[str], folder: Path, outputs: set[str]) -> tuple[int, str]:
    before = snapshot(folder, outputs)
    code, _, err = run_main(argv, folder)
    check_outcome(code, err, argv)
    event(f"exit {code}" + (f": {err.split(':')[2].strip()[:40]}" if code else ""))
    after = snapshot(folder, outputs)
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, (argv, "changed outside the output folders", changed[:5])
    return code, err


# --------------------------------------------------------------------------- configs


@st.composite
def mutations(draw) -> list[tuple[str, object]]:
    """1-3 keys (now and then an unknown one) and their new values."""
    names = st.one_of(st.sampled_from(DOTTED), st.sampled_from(DOTTED), st.sampled_from(JUNK_KEYS))
    keys = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    return [(key, draw(values(key))) for key in keys]


@FUZZ
@given(
    st.sampled_from(sorted(BASES)),
    mutations(),
    st.booleans(),
    st.none()
    | st.sampled_from(sorted(TOP_LEVEL)).flatmap(
        lambda k: st.tuples(st.just(k), st.sampled_from(TOP_LEVEL[k]))
    ),
)
def test_mutated_configs_exit_by_the_contract(world, base, changes, as_file, top):
    """A valid config (moons, palindromes with an LSTM, CIFAR-10 with a BatchNorm CNN, the
    NumPy MLP, blobs) with 1-3 keys (or an unknown one) set to edge values, wrong types, odd
    text, NaN or huge numbers, in a TOML file (with a top-level key: extends, preset...) or
    through ``--set``: trained or refused, by the contract; the data folder (NNLAB_DATA, the
    CIFAR-10 cache) is read, never written."""
    folder = fresh(world, "cfg")
    sections = {name: dict(keys) for name, keys in BASES[base].items()}
    (folder / "base.toml").write_text(config_toml(sections))
    argv = ["train"]
    if as_file:
        for key, value in changes:
            section, _, name = key.partition(".")
            sections.setdefault(section, {})[name] = value
        text = config_toml(sections)
        if top is not None:  # a top-level key goes before the first table
            text = f"{top[0]} = {toml_text(top[1])}\n" + text
        (folder / "mutated.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
        argv.append("mutated.toml")
    else:
        argv.append("base.toml")
        for key, value in changes:
            argv += ["--set", f"{key}={set_text(value)}"]
    cache = snapshot(world / "data", set())
    code, _ = run_and_check([*argv, "--out", "out"], folder, {"out", "runs"})
    assert snapshot(world / "data", set()) == cache, (argv, "the data folder changed")
    if code == 2:
        assert not (folder / "out").exists(), (argv, "a refused run left its folder behind")


# --------------------------------------------------------------------------- command lines

FLAG_VALUES = {
    "--set": st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from([*DOTTED, "x", "optim", "optim.", ""]),
        st.sampled_from(["1", "0", "-1", "", "x", "nan", "1e999", "2,2", "é"]),
    ),
    "--seed": st.sampled_from(
        ["0", "1", "-1", "4294967295", "4294967296", "9" * 30, "x", "", "٣", "1e3"]
    ),
    "--seeds": st.sampled_from(["0", "1", "2", "-1", "4294967297", "1000000000000", "x"]),
    "--jobs": st.sampled_from(["0", "1", "-1", "x", "1.5"]),
    "--device": st.sampled_from(["auto", "cpu", "cuda", "mps", "cuda:0", "tpu", ""]),
    "--out": st.sampled_from(["out", "out/sub", "", "tiny.toml", "done", "cut", "\udcff"]),
    "--grid": st.sampled_from(
        [
            "optim.lr=1e-3,1e-2",
            "data.n_samples=20..21",
            "train.epochs=1..2",
            "optim.lr=",
            "=",
            "x",
            "optim.lr=1..0",
            "data.n_samples=1..1000000000",
            "model.hidden=4;8",
            "train.seed=4294967295..4294967296",
        ]
    ),
    "--progress": st.sampled_from(["auto", "bar", "lines", "off", "x"]),
    "--resume": st.sampled_from(["done", "cut", "nowhere", "tiny.toml", ""]),
    "--rerun": st.just(None),
    "--note": st.sampled_from(["a note", "<script>", ""]),
}
COMMANDS = ["train", "sweep", "resume", "report", "presets", "keys", "data", "nonsense", ""]
# (not "..": the folder of every example so far, which a report would read in full)
POSITIONAL = ["tiny.toml", "moons", "done", "cut", "nowhere", "", ".", "-", "--", "--help"]


@st.composite
def command_lines(draw) -> list[str]:
    argv = [draw(st.sampled_from(COMMANDS))]
    argv += draw(st.lists(st.sampled_from(POSITIONAL), max_size=2))
    for flag in draw(st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=4)):
        value = draw(FLAG_VALUES[flag])
        argv += [flag] if value is None else [flag, value]
    if draw(st.booleans()):
        argv.append(draw(st.text(max_size=6).filter(lambda t: "\x00" not in t)))
    return argv


@FUZZ
@given(command_lines())
def test_command_lines_exit_by_the_contract(world, argv):
    """Argument lists from every command and flag, with values at their edges and junk:
    ``done`` (a finished run) and ``tiny.toml`` are inputs that must stay as they were."""
    if argv[0] in ("train", "sweep", "report") and "--out" not in argv and "--resume" not in argv:
        argv = [*argv, "--out", "out"]
    folder = fresh(world, "cli", "tiny.toml", "done", "cut")
    # what --out names and a resumed run (cut) are the outputs; everything else is input
    named = {argv[i + 1].split("/")[0] for i, a in enumerate(argv[:-1]) if a == "--out"}
    run_and_check(argv, folder, {"out", "runs", "cut", *named})


# --------------------------------------------------------------------------- run folders

RUN_FILES = [
    "config.toml",
    "summary.json",
    "metrics.csv",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    "boundary.npz",
    "curves.png",
]


def mutate_file(path: Path, kind: str, where: float, payload: bytes) -> None:
    """Damage one file of a run folder in one of the ways a crash, a disk or a person does."""
    data = path.read_bytes() if path.is_file() else b""
    cut = int(len(data) * where)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    if kind == "delete":
        return
    if kind == "folder":
        path.mkdir(parents=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncate":
        path.write_bytes(data[:cut])
    elif kind == "flip":
        flipped = bytearray(data or b"\0")
        i = min(cut, len(flipped) - 1)
        flipped[i] ^= payload[0] if payload and payload[0] else 0xFF
        path.write_bytes(bytes(flipped))
    elif kind == "splice":
        path.write_bytes(data[:cut] + payload + data[cut:])
    elif kind == "replace":
        path.write_bytes(payload)
    elif kind == "json":
        path.write_text(payload.decode("utf-8", "replace"))


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=6,
)
SUMMARY_KEYS = ["final_test_acc", "best_test_acc", "train_seconds", "seed", "status", "preset"]


@st.composite
def payloads(draw) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 3:  # a whole valid config (all defaults) named by a drawn preset name
        name = draw(st.one_of(st.sampled_from(TOP_LEVEL["preset"]), st.text(max_size=12)))
        return f"preset = {toml_text(name)}\n".encode("utf-8", "surrogatepass")
    if choice == 0:
        return draw(st.binary(max_size=64))
    if choice == 1:  # JSON of the wrong shape, or summary.json with one wrong field
        value = draw(JSONISH)
        if draw(st.booleans()):
            value = {"final_test_acc": 0.5, "best_test_acc": 0.5, "train_seconds": 1.0}
            value[draw(st.sampled_from(SUMMARY_KEYS))] = draw(JSONISH)
        return json.dumps(value, allow_nan=True).encode()
    key, value = draw(st.sampled_from(DOTTED)), draw(scalars("x"))  # a TOML line
    return f"[{key.split('.')[0]}]\n{key.split('.')[1]} = {toml_text(value)}\n".encode(
        "utf-8", "surrogatepass"
    )


@FUZZ
@given(
    st.sampled_from(["done", "cut"]),
    st.lists(
        st.tuples(
            st.sampled_from(RUN_FILES),
            st.sampled_from(["truncate", "flip", "splice", "replace", "json", "delete", "folder"]),
            st.floats(0, 1),
            payloads(),
        ),
        min_size=1,
        max_size=2,
    ),
    st.sampled_from(["resume", "train --resume", "report", "api"]),
)
def test_damaged_run_folders_exit_by_the_contract(world, base, damage, command):
    """A finished (``done``) or killed (``cut``) tiny run with one or two files truncated,
    flipped, spliced, replaced (random bytes, JSON of the wrong shape, a stray TOML line),
    deleted or turned into a folder; then ``resume``, ``report`` or the Python API's
    ``open_run`` reads it: results or one line, and nothing written beside it."""
    folder = fresh(world, "run", base)
    run = folder / base
    for name, kind, where, payload in damage:
        mutate_file(run / name, kind, where, payload)
    if command == "api":
        check_api_reads(run, folder)
        return
    argv = {"resume": ["resume", base], "train --resume": ["train", "--resume", base]}.get(
        command, ["report", base, "--out", "out"]
    )
    writes = {base, "out"} if command != "report" else {"out"}  # resume writes its run folder
    run_and_check(argv, folder, writes)


def check_api_reads(run: Path, folder: Path) -> None:
    """``nnlab.open_run`` and what a notebook reads from a run: values or an NnlabError."""
    import nnlab
    from nnlab.errors import NnlabError

    before = snapshot(folder, set())
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_S)
    try:
        handle = nnlab.open_run(run)
        for read in (
            lambda: handle.config,
            lambda: handle.summary,
            lambda: handle.rows,
            lambda: handle.model,
            lambda: handle.evaluate(),
        ):
            with contextlib.suppress(NnlabError):
                read()
    except NnlabError:
        pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert snapshot(folder, set()) == before, "reading a run changed files"


# --------------------------------------------------------------------------- archives


def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=4)


def cifar_archive() -> bytes:
    """A CIFAR-10 archive in the official python format: 5 x 4 training images, 10 test."""
    rng = np.random.default_rng(0)
    members = {"batches.meta": _pickle({"label_names": [f"c{i}" for i in range(10)]})}
    for i in range(5):
        labels = [(2 * i + j) % 10 for j in range(4)]
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        members[f"data_batch_{i + 1}"] = _pickle({"data": data, "labels": labels})
    test = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
    members["test_batch"] = _pickle({"data": test, "labels": list(range(10))})
    return _tar_gz({f"cifar-10-batches-py/{k}": v for k, v in members.items()})


def imagefolder_archive() -> bytes:
    """An ImageFolder .tar.gz: train/ and test/ of two classes, two 8x8 PNGs each."""
    from PIL import Image

    rng = np.random.default_rng(1)
    members = {}
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            for i in range(2):
                buf = io.BytesIO()
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(buf, format="PNG")
                members[f"tree/{split}/{cls}/{i}.png"] = buf.getvalue()
    return _tar_gz(members)


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVES: dict[str, bytes] = {}  # name -> the intact archive (the world fixture fills it)


@st.composite
def damaged_archives(draw, name: str) -> bytes:
    """The archive ``name`` damaged as bytes (the gzip stream) or as a tar (then gzipped
    again, so the damage reaches the tar reader and the decoders past gzip's checksum)."""
    level = draw(st.sampled_from(["gzip", "tar"]))
    original = ARCHIVES[name]
    data = original if level == "gzip" else zlib.decompress(original, 31)
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        kind = draw(st.sampled_from(["truncate", "flip", "splice", "size"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip":
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif kind == "splice":
            data = data[:at] + draw(st.binary(min_size=1, max_size=32)) + data[at:]
        elif level == "tar" and len(data) >= 512:  # a member header declaring a huge size
            header = at // 512 * 512
            size = draw(st.sampled_from([b"77777777777\0", b"\x80" + b"\0" * 3 + b"\xff" * 8]))
            data = data[: header + 124] + size + data[header + 136 :]
    if level == "tar":
        buf = io.BytesIO()
        with contextlib.closing(__import__("gzip").GzipFile(fileobj=buf, mode="wb")) as gz:
            gz.write(data)
        data = buf.getvalue()
    return data


@FUZZ
@given(st.data(), st.sampled_from(["cifar", "imagefolder"]))
def test_damaged_archives_exit_by_the_contract(world, data, kind):
    """The CIFAR-10 importer (``nnlab data cifar10 --archive``) and the ImageFolder reader
    (``data.name = "imagefolder"``, ``data.dir`` a .tar.gz) on damaged archives."""
    name = "cifar.tar.gz" if kind == "cifar" else "folder.tar.gz"
    folder = fresh(world, "archive", "tiny.toml")
    (folder / name).write_bytes(data.draw(damaged_archives(name)))
    if kind == "cifar":
        argv = ["data", "cifar10", "--archive", name, "--dir", "imported"]
        run_and_check(argv, folder, {"imported"})
        return
    argv = ["train", "tiny.toml", "--out", "out"]
    argv += ["--set", "data.name=imagefolder", "--set", f"data.dir={folder / name}"]
    argv += ["--set", "data.image_size=8"]
    os.environ["NNLAB_DATA"] = str(folder / "cache")
    try:
        run_and_check(argv, folder, {"out", "cache"})
    finally:
        os.environ["NNLAB_DATA"] = str(world / "data")


# --------------------------------------------------------------------------- memory and hangs


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@SMALL
@given(mutations())
def test_under_a_memory_cap_in_a_subprocess(world, changes):
    """A real ``python -m nnlab`` process under ``RLIMIT_AS`` (4 GiB, ~4x a tiny run's peak
    address space) and a timeout: mutated configs end by the contract, never by a kill."""
    folder = fresh(world, "proc", "tiny.toml")
    argv = ["train", "tiny.toml", "--out", "out"]
    for key, value in changes:
        argv += ["--set", f"{key}={set_text(value)}"]
    argv = [a.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for a in argv]
    argv = [a.replace("\x00", "") for a in argv]  # a command line cannot hold NUL
    before = snapshot(folder, {"out"})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "nnlab", *argv],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * 2,
        preexec_fn=_cap_memory,
    )
    check_outcome(proc.returncode, proc.stderr, argv)
    assert snapshot(folder, {"out"}) == before, argv


# --------------------------------------------------------------------------- bugs


def test_a_bug_is_one_line_naming_its_traceback_file(monkeypatch, tmp_path):
    """An internal error (forced here) is exit 1 with one line that says it is a bug and
    where the traceback went; ``NNLAB_DEBUG=1`` shows the traceback instead."""
    import nnlab.cli as cli

    crashes = tmp_path / "crashes"
    monkeypatch.setenv("NNLAB_CRASH_DIR", str(crashes))

    def broken(args):
        raise RuntimeError("forced\nfor the test")

    real = cli.build_parser

    def parser_with_a_bug():
        p = real()
        commands = next(a for a in p._actions if a.dest == "command")
        commands.choices["presets"].set_defaults(func=broken)
        return p

    monkeypatch.setattr(cli, "build_parser", parser_with_a_bug)
    code, out, err = run_main(["presets"], tmp_path)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert (
        "internal error (a bug in nnlab" in lines[0]
        and "RuntimeError: forced for the test" in lines[0]
    )
    (report,) = crashes.iterdir()
    assert str(report) in lines[0]
    text = report.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text
    assert "command: 'nnlab presets'" in text

    monkeypatch.setenv("NNLAB_DEBUG", "1")
    with pytest.raises(RuntimeError, match="forced"):
        run_main(["presets"], tmp_path)
    assert len(list(crashes.iterdir())) == 1  # no file when the traceback is shown


def test_running_out_of_memory_is_one_line_not_a_bug(monkeypatch, tmp_path):
    """A MemoryError (a process limit) is exit 1 with one plain error line and no crash file."""
    import nnlab.cli as cli

    monkeypatch.setenv("NNLAB_CRASH_DIR", str(tmp_path / "crashes"))

    def hungry(args):
        raise MemoryError

    real = cli.build_parser

    def parser():
        p = real()
        next(a for a in p._actions if a.dest == "command").choices["keys"].set_defaults(func=hungry)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    code, _, err = run_main(["keys"], tmp_path)
    assert code == 1 and err.startswith("nnlab: error: out of memory") and err.count("\n") == 1
    assert not (tmp_path / "crashes").exists()


def test_a_closed_stdout_is_no_error(tmp_path):
    """``nnlab presets | head -0``: the reader is gone before nnlab writes. Exit 141 (as a
    shell's SIGPIPE), nothing on stderr, no crash file; before, Python's "Exception ignored
    ... BrokenPipeError" at exit."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to the pipe now fails with EPIPE
    env = {**os.environ, "NNLAB_CRASH_DIR": str(tmp_path / "crashes")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nnlab", "presets"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == b"", proc.stderr
    assert not (tmp_path / "crashes").exists()

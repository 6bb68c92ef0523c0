"""CIFAR-10's official format: safe unpickling, validation, the atomic cache, ``nnlab data``.

Real images come from ../shared/datasets: ``cifar10_batches.py`` rebuilds the
official pickled layout from the JPEG copy (a balanced subset, about a second).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_one_line_error, shared_dataset
from nnlab.config import load_config
from nnlab.data import load_data
from nnlab.data.cifar10 import SafeUnpickler, read_cifar10
from nnlab.data.cifar10_import import import_cifar10
from nnlab.errors import DataError

N_TRAIN, N_TEST = 200, 100


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> Path:
    """An official-layout cifar-10-batches-py/ folder with real (JPEG-copy) images."""
    script = shared_dataset("cifar10_batches.py")
    shared_dataset("cifar10-jpeg.tar.gz")
    out = tmp_path_factory.mktemp("official")
    subprocess.run(
        [
            sys.executable,
            str(script),
            str(out),
            "--limit-train",
            str(N_TRAIN),
            "--limit-test",
            str(N_TEST),
        ],
        check=True,
        capture_output=True,
    )
    return out / "cifar-10-batches-py"


def copy_folder(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def make_archive(folder: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return path


def official_pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=4)  # protocol 2 from Python 3 needs _codecs.encode for bytes


def test_reads_official_layout_and_caches_mmap(cli, batches, tmp_path):
    proc = cli("data", "cifar10", "--archive", str(batches), "--dir", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    cache = tmp_path / "d" / "cifar10"
    meta = json.loads((cache / "meta.json").read_text())
    assert (meta["n_train"], meta["n_test"]) == (N_TRAIN, N_TEST)
    assert meta["source_kind"] == "official" and meta["source"] == str(batches.resolve())
    x = np.load(cache / "x_train.npy", mmap_mode="r")
    assert x.shape == (N_TRAIN, 3, 32, 32) and x.dtype == np.uint8
    # The cache holds exactly the pickled pixels, rows of R, G, B planes -> (3, 32, 32).
    with open(batches / "data_batch_1", "rb") as f:
        d = pickle.load(f, encoding="bytes")
    n1 = len(d[b"labels"])
    assert np.array_equal(x[:n1].reshape(n1, 3072), d[b"data"])
    assert np.array_equal(np.load(cache / "y_train.npy")[:n1], d[b"labels"])

    cfg = load_config("seed-cnn", [f"data.dir={tmp_path / 'd'}"])
    data = load_data(cfg.data, 0)
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape == (N_TRAIN, 3, 32, 32)
    assert (
        data.input_shape == (3, 32, 32) and data.n_classes == 10 and data.normalization is not None
    )
    info = cli("data", "info", "--dir", str(tmp_path / "d"))
    assert "cifar10: 200 train + 100 test" in info.stdout
    assert f"the official python format {batches.resolve()}" in info.stdout


def test_reads_tar_gz_archive(batches, tmp_path):
    archive = make_archive(batches, tmp_path / "cifar-10-python.tar.gz")
    arrays = read_cifar10(archive)
    assert arrays["x_test"].shape == (N_TEST, 3, 32, 32)
    assert set(arrays["y_train"].tolist()) == set(range(10))
    meta = import_cifar10(archive, tmp_path / "d")  # the archive's sha256 is recorded
    assert meta["source_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_unpickler_allows_only_numpy_arrays():
    ok = SafeUnpickler(
        __import__("io").BytesIO(official_pickle({"data": np.zeros((2, 3), np.uint8)}))
    ).load()
    assert ok["data"].shape == (2, 3)
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        SafeUnpickler(__import__("io").BytesIO(b"cos\nsystem\n(S'true'\ntR.")).load()


class Payload:
    """Unpickling this would call ``open(path, 'w')``: it creates a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_never_runs(cli, batches, tmp_path):
    marker = tmp_path / "pwned"
    bad = copy_folder(batches, tmp_path / "bad")
    (bad / "data_batch_3").write_bytes(
        official_pickle({"data": Payload(str(marker)), "labels": [0]})
    )
    assert not marker.exists()
    proc = cli("data", "cifar10", "--archive", str(bad), "--dir", str(tmp_path / "d"))
    assert_one_line_error(proc, "data_batch_3", "refused")
    assert not marker.exists()
    assert not (tmp_path / "d" / "cifar10").exists()


@pytest.mark.parametrize(
    "batch, problem",
    [
        ({"data": np.zeros((10, 3000), np.uint8), "labels": [0] * 10}, "N x 3072 uint8"),
        ({"data": np.zeros((10, 3072), np.float32), "labels": [0] * 10}, "N x 3072 uint8"),
        (
            {"data": np.zeros((10, 3072), np.uint8), "labels": [0] * 9 + [10]},
            "labels must be in 0..9",
        ),
        ({"data": np.zeros((10, 3072), np.uint8), "labels": [0] * 9}, "10 images but 9 labels"),
        ({"labels": [0]}, "'data' and 'labels'"),
    ],
)
def test_bad_batches_rejected_and_cache_untouched(cli, batches, tmp_path, batch, problem):
    d = tmp_path / "d"
    assert cli("data", "cifar10", "--archive", str(batches), "--dir", str(d)).returncode == 0
    before = (d / "cifar10" / "x_train.npy").read_bytes()
    bad = copy_folder(batches, tmp_path / "bad")
    (bad / "data_batch_2").write_bytes(official_pickle(batch))
    assert_one_line_error(
        cli("data", "cifar10", "--archive", str(bad), "--dir", str(d)), "data_batch_2", problem
    )
    assert (d / "cifar10" / "x_train.npy").read_bytes() == before  # the good cache survives
    assert sorted(p.name for p in d.iterdir()) == ["cifar10"]  # no temp folders left


def test_truncated_and_corrupt_inputs(cli, batches, tmp_path):
    archive = make_archive(batches, tmp_path / "c.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    d = tmp_path / "d"
    assert_one_line_error(
        cli("data", "cifar10", "--archive", str(cut), "--dir", str(d)),
        "cut.tar.gz",
        "truncated or corrupt",
    )
    bad = copy_folder(batches, tmp_path / "bad")
    (bad / "test_batch").write_bytes((batches / "test_batch").read_bytes()[:5000])
    assert_one_line_error(
        cli("data", "cifar10", "--archive", str(bad), "--dir", str(d)), "test_batch"
    )
    (bad / "test_batch").unlink()
    assert_one_line_error(
        cli("data", "cifar10", "--archive", str(bad), "--dir", str(d)), "missing test_batch"
    )
    assert not d.exists() or not any(d.iterdir())


def test_missing_cache_names_the_command(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "empty"))
    proc = cli("train", "seed-cnn", "--set", "train.epochs=1")
    assert_one_line_error(proc, "nnlab data cifar10 --archive", "nnlab data cifar10 --download")
    assert not (tmp_path / "runs").exists()
    assert_one_line_error(cli("data", "cifar10"), "nnlab data cifar10 --archive")
    assert_one_line_error(cli("data", "cifar10", "--archive", "x", "--download"), "not both")
    with pytest.raises(DataError, match="no such file"):
        read_cifar10(tmp_path / "nope.tar.gz")


def test_train_cnn_and_mlp_end_to_end(cli, batches, tmp_path, monkeypatch):
    """The real pipeline on 200 real images: cache -> uint8 loader + augmentation -> cnn/mlp -> run folder."""
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "d"))
    assert cli("data", "cifar10", "--archive", str(batches)).returncode == 0
    common = [
        "--set",
        "train.epochs=2",
        "--set",
        "train.batch_size=50",
        "--set",
        "data.augment=crop,flip,cutout",
    ]
    proc = cli("train", "cnn-quick", *common, "--out", "q")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "q" / "summary.json").read_text())
    assert summary["n_train"] == N_TRAIN and 0 <= summary["final_test_acc"] <= 1
    # The foundation's MLP runs on flattened images.
    proc = cli("train", "seed-cifar-mlp", *common, "--set", "model.hidden=32", "--out", "m")
    assert proc.returncode == 0, proc.stderr
    assert (
        json.loads((tmp_path / "m" / "summary.json").read_text())["n_params"]
        == 3072 * 32 + 32 + 32 * 10 + 10
    )

"""ImageFolder data: train/<class>/* and test/<class>/* trees or .tar.gz, resized, cached by key.

And CIFAR-10 from any copy: ``nnlab data cifar10 --archive`` (and ``nnlab reproduce
--cifar10``) import an ImageFolder tree/.tar.gz of the ten classes, such as the shared
JPEG archive, into the same ``cifar10`` cache as the official format
(tests/test_cifar10.py), so the presets run with no extra flags and ``nnlab data info``
says where the data came from. Other trees are refused in one line. Real images: a few
JPEGs read from ../shared/datasets/cifar10-jpeg.tar.gz.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, shared_dataset
from nnlab.config import DataConfig, load_config
from nnlab.data import cifar10_import, imagefolder, load_data
from nnlab.data.cifar10 import CLASSES
from nnlab.errors import ConfigError, DataError
from nnlab.experiments.reproduce import cifar_overrides


def make_tree(root: Path, counts: dict[str, int] | None = None) -> Path:
    """train/ and test/ with classes 'cat' and 'dog' of odd-sized PNG/JPEG images."""
    rng = np.random.default_rng(0)
    counts = counts or {"train": 6, "test": 2}
    for split, n in counts.items():
        for cls, value in (("cat", 50), ("dog", 200)):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(rng.normal(value, 5, (30, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "train" / "README.txt").write_text("not an image; ignored")
    return root


def config(path: Path, size: int = 16):
    return load_config(
        "moons", ["data.name=imagefolder", f"data.dir={path}", f"data.image_size={size}"]
    )


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """The default data folder, for these tests only (never ~/.cache/nnlab)."""
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_tree_is_decoded_resized_and_cached(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "tree")
    data = load_data(config(tree).data, 0)
    assert data.x_train.shape == (12, 3, 16, 16) and str(data.x_train.dtype) == "torch.uint8"
    assert data.x_test.shape == (4, 3, 16, 16) and data.class_names == ["cat", "dog"]
    # dark images are cats (0), bright ones dogs (1), whatever the stored order
    bright = data.x_train.float().mean((1, 2, 3)) > 125
    assert (bright == (data.y_train == 1)).all()
    assert sorted(data.y_train.tolist()) == [0] * 6 + [1] * 6
    assert len(list((tmp_path / "cache" / "imagefolder").iterdir())) == 1

    # A second load memory-maps the cache instead of decoding.
    with monkeypatch.context() as m:
        m.setattr(imagefolder, "decode_tree", lambda *a: pytest.fail("decoded twice"))
        again = load_data(config(tree).data, 0)
    assert (again.x_train == data.x_train).all()

    # Another image size or a changed file is a new cache entry.
    assert load_data(config(tree, 8).data, 0).x_train.shape[-1] == 8
    img = tree / "test" / "dog" / "0.jpg"
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    load_data(config(tree).data, 0)
    assert len(list((tmp_path / "cache" / "imagefolder").iterdir())) == 3


def test_tar_gz_matches_folder(tmp_path):
    tree = make_tree(tmp_path / "tree")
    archive = tmp_path / "tree.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="top")  # one top-level folder, like cifar10-jpeg/
    a, b = load_data(config(tree).data, 0), load_data(config(archive).data, 0)
    assert (a.x_train == b.x_train).all() and (a.y_test == b.y_test).all()


def test_bad_trees(tmp_path, cli):
    with pytest.raises(ConfigError, match="data.dir"):
        load_data(load_config("moons", ["data.name=imagefolder"]).data, 0)
    tree = make_tree(tmp_path / "tree", {"train": 2})
    with pytest.raises(DataError, match="no images under test"):
        load_data(config(tree).data, 0)
    (tree / "test" / "bird").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tree / "test" / "bird" / "0.png")
    with pytest.raises(DataError, match="classes missing from train/: bird"):
        load_data(config(tree).data, 0)
    (tree / "train" / "bird").mkdir()
    (tree / "train" / "bird" / "bad.png").write_bytes(b"not a png")
    proc = cli("train", "moons", "--set", "data.name=imagefolder", "--set", f"data.dir={tree}")
    assert_one_line_error(proc, "bad.png", "cannot decode")
    assert not (tmp_path / "cache" / "imagefolder").exists() or not any(
        (tmp_path / "cache" / "imagefolder").iterdir()
    )


@pytest.fixture(scope="module")
def real_jpegs() -> dict[str, bytes]:
    """Three real CIFAR-10 JPEGs per class from the shared archive: member name -> bytes."""
    src = shared_dataset("cifar10-jpeg.tar.gz")
    picked: dict[str, bytes] = {}
    per_dir: dict[str, int] = {}
    with tarfile.open(src) as tar:  # test/ comes first in the archive: read only that part
        for m in tar:
            if "/train/" in m.name:
                break
            parent = m.name.rsplit("/", 1)[0]
            if m.isfile() and m.name.endswith(".jpg") and per_dir.get(parent, 0) < 3:
                per_dir[parent] = per_dir.get(parent, 0) + 1
                picked[m.name] = tar.extractfile(m).read()
    assert len(per_dir) == 10
    return picked


def test_real_jpeg_archive_subset(tmp_path, real_jpegs):
    """A few real CIFAR-10 JPEGs from the shared archive decode to exactly PIL's pixels."""
    picked = real_jpegs
    small = tmp_path / "small.tar.gz"
    with tarfile.open(small, "w:gz") as tar:
        for name, blob in picked.items():
            # the same images as both splits
            for split_name in (name, name.replace("/test/", "/train/")):
                info = tarfile.TarInfo(split_name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    data = load_data(config(small, 32).data, 0)
    assert data.x_train.shape == (30, 3, 32, 32) and data.n_classes == 10
    assert data.class_names[0] == "airplane" and data.class_names[-1] == "truck"
    decoded = {
        np.asarray(Image.open(io.BytesIO(b)).convert("RGB")).transpose(2, 0, 1).tobytes()
        for b in picked.values()
    }
    assert all(x.numpy().tobytes() in decoded for x in data.x_train)


# --------------------------------------------------------------------------- CIFAR-10 from an ImageFolder copy


def pixels(blob: bytes) -> bytes:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).transpose(2, 0, 1).tobytes()


def cifar_tree(root: Path, jpegs: dict[str, bytes]) -> tuple[Path, dict[bytes, str]]:
    """train/<class>/ (2 real images each) and test/<class>/ (1 each), plus one 40x40 PNG in
    train/truck/; returns the tree and each JPEG's decoded pixels -> its class."""
    by_class: dict[str, list[bytes]] = {}
    for name, blob in sorted(jpegs.items()):
        by_class.setdefault(name.split("/")[-2], []).append(blob)
    labels = {}
    # class folders written in reverse order: the order on disk must not matter
    for cls in sorted(by_class, reverse=True):
        for split, blobs in (("train", by_class[cls][:2]), ("test", by_class[cls][2:3])):
            (root / split / cls).mkdir(parents=True)
            for i, blob in enumerate(blobs):
                (root / split / cls / f"{i:04d}.jpg").write_bytes(blob)
                labels[pixels(blob)] = cls
    big = Image.open(io.BytesIO(by_class["truck"][0])).convert("RGB").resize((40, 40))
    big.save(root / "train" / "truck" / "big.png")
    return root, labels


def test_imagefolder_copy_imports_as_cifar10(cli, tmp_path, data_home, real_jpegs):
    tree, labels = cifar_tree(tmp_path / "tree", real_jpegs)
    proc = cli("data", "cifar10", "--archive", str(tree))
    assert proc.returncode == 0, proc.stderr
    assert "21 train + 10 test" in proc.stdout and "an ImageFolder copy" in proc.stdout
    assert "note:" in proc.stdout  # accuracies on a re-encoded copy differ
    meta = json.loads((data_home / "cifar10" / "meta.json").read_text())
    assert meta["source_kind"] == "imagefolder" and meta["source"] == str(tree.resolve())
    assert meta["resized_to_32"] == 1 and meta["classes"] == CLASSES

    data = load_data(DataConfig(name="cifar10", dir=str(data_home)), 0)
    assert data.x_train.shape == (21, 3, 32, 32) and str(data.x_train.dtype) == "torch.uint8"
    assert data.x_test.shape == (10, 3, 32, 32) and data.class_names == CLASSES
    checked = 0
    for x, y in [
        *zip(data.x_train, data.y_train, strict=True),
        *zip(data.x_test, data.y_test, strict=True),
    ]:
        cls = labels.get(x.numpy().tobytes())
        if cls is not None:  # every image but the resized PNG: exact pixels, official label
            assert int(y) == CLASSES.index(cls), cls
            checked += 1
    assert checked == 30
    assert sorted(data.y_test.tolist()) == list(range(10))
    assert np.bincount(data.y_train.numpy()).tolist() == [2] * 9 + [3]

    info = cli("data", "info")
    assert "cifar10: 21 train + 10 test images" in info.stdout
    assert f"an ImageFolder copy {tree.resolve()}" in info.stdout and "note:" in info.stdout
    # training finds it as CIFAR-10, with no data flags
    proc = cli("train", "seed-cnn", "--set", "train.epochs=1", "--out", "r")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["n_train"] == 21


def test_tar_gz_copy_and_reproduce_use_the_same_import(
    tmp_path, data_home, real_jpegs, monkeypatch, capsys
):
    tree, _ = cifar_tree(tmp_path / "tree", real_jpegs)
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")  # one top folder, like the shared archive
    assert cifar_overrides(str(archive)) == {}  # the presets run as they are: data.name = cifar10
    meta = json.loads((data_home / "cifar10" / "meta.json").read_text())
    assert meta["source_kind"] == "imagefolder" and meta["source"] == str(archive.resolve())
    assert len(meta["source_sha256"]) == 64
    from_tar = load_data(DataConfig(name="cifar10"), 0)
    cifar10_import.import_cifar10(tree, tmp_path / "other")
    from_tree = load_data(DataConfig(name="cifar10", dir=str(tmp_path / "other")), 0)
    assert (from_tar.x_train == from_tree.x_train).all() and (
        from_tar.y_test == from_tree.y_test
    ).all()
    # the same file again is not decoded again
    monkeypatch.setattr(cifar10_import, "read_tree", lambda *a: pytest.fail("imported twice"))
    capsys.readouterr()
    assert cifar_overrides(str(archive)) == {}
    assert "already imported" in capsys.readouterr().err


def test_other_trees_are_refused_in_one_line(cli, tmp_path, data_home):
    other = make_tree(tmp_path / "pets")  # classes cat and dog
    proc = cli("data", "cifar10", "--archive", str(other))
    assert_one_line_error(
        proc, "not CIFAR-10's ten", "cat, dog", f"data.name=imagefolder --set data.dir={other}"
    )
    nine = tmp_path / "nine"
    for split in ("train", "test"):
        for cls in CLASSES[:9]:
            (nine / split / cls).mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(nine / split / cls / "0.png")
    assert_one_line_error(
        cli("data", "cifar10", "--archive", str(nine)), "missing from train/: truck"
    )
    for cls in CLASSES[9:]:
        (nine / "train" / cls).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(nine / "train" / cls / "0.png")
    shutil.rmtree(nine / "test")  # the ten classes, but no test split
    assert_one_line_error(cli("data", "cifar10", "--archive", str(nine)), "no images under test/")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not a tar")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (junk, empty):
        assert_one_line_error(
            cli("data", "cifar10", "--archive", str(path)),
            "cifar-10-python.tar.gz",
            "cifar-10-batches-py",
            "ImageFolder tree",
            "data.name=imagefolder",
        )
    assert not data_home.exists() or not any(data_home.iterdir())  # nothing was written

"""ImageFolder data: train/<class>/* and test/<class>/* trees or .tar.gz, resized, cached by key."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, shared_dataset
from nnlab.config import load_config
from nnlab.data import imagefolder, load_data
from nnlab.errors import ConfigError, DataError


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
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "cache"))


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


def test_real_jpeg_archive_subset(tmp_path):
    """A few real CIFAR-10 JPEGs from the shared archive decode to exactly PIL's pixels."""
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

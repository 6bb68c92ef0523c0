"""The notebooks in notebooks/ run top to bottom at their small settings (FULL = False), in a
fresh Jupyter kernel each (nbclient + ipykernel), and are stored without outputs.

The CIFAR-10 notebooks read a small ImageFolder tree cut from the real JPEG copy in
../shared/datasets (100 training and 50 test images per class), through the
``NNLAB_CIFAR10`` variable their first cell reads; its decoded cache goes to a
temporary ``NNLAB_DATA``. Runs go to the kernel's working folder, a temporary one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import REPO, shared_dataset

try:  # the `dev` extras install them; a fresh CI machine without them must not pass by skipping
    import nbclient
    import nbformat
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("nbclient/nbformat not installed: pip install -e '.[dev]'", allow_module_level=True)

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NEEDS_CIFAR10 = {"part1_cifar10_mlp.ipynb", "part2_cnn.ipynb"}
PER_CLASS = {"train": 100, "test": 50}  # >= every limit_train / limit_test the notebooks use


def test_the_four_notebooks_are_there():
    assert {p.name for p in NOTEBOOKS} == {
        "part1_mlp_moons.ipynb",
        "part1_cifar10_mlp.ipynb",
        "part2_cnn.ipynb",
        "part3_rnn.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: clear the outputs"
            )
    first_code = next(c for c in nb.cells if c.cell_type == "code").source
    assert "FULL = False" in first_code, f"{path.name}: its first code cell should set FULL = False"


def _small_cifar10_tree(archive: Path, dest: Path) -> Path:
    """``dest/cifar10-jpeg/{train,test}/<class>/NNNN.jpg``: the first PER_CLASS images of each class."""
    patterns = ["cifar10-jpeg/train/*/00[0-9][0-9].jpg", "cifar10-jpeg/test/*/00[0-4][0-9].jpg"]
    if shutil.which("tar"):  # GNU tar skims the 19 MB archive in about a second
        subprocess.run(
            ["tar", "xzf", str(archive), "-C", str(dest), "--wildcards", *patterns], check=True
        )
    else:  # Python's tarfile does the same, several times slower
        counts: dict[tuple[str, str], int] = {}
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if not member.isfile() or len(parts) != 4:
                    continue
                key = (parts[1], parts[2])
                if counts.get(key, 0) < PER_CLASS[parts[1]]:
                    counts[key] = counts.get(key, 0) + 1
                    target = dest.joinpath(*parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
    tree = dest / "cifar10-jpeg"
    for split, n in PER_CLASS.items():
        classes = sorted(p for p in (tree / split).iterdir())
        assert len(classes) == 10 and all(len(list(c.iterdir())) == n for c in classes), (
            split,
            classes,
        )
    return tree


@pytest.fixture(scope="module")
def cifar10_env(tmp_path_factory):
    """Environment for the CIFAR-10 notebooks: a small real tree and a private data cache."""
    archive = shared_dataset("cifar10-jpeg.tar.gz")
    root = tmp_path_factory.mktemp("cifar10")
    tree = _small_cifar10_tree(archive, root)
    return {"NNLAB_CIFAR10": str(tree), "NNLAB_DATA": str(root / "cache")}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch, request):
    if path.name in NEEDS_CIFAR10:
        for key, value in request.getfixturevalue("cifar10_env").items():
            monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    seconds = time.perf_counter() - start
    # shown with pytest -s; docs/api.md has the measured times
    print(f"{path.name}: {seconds:.1f} s")
    images = sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )
    assert images >= 1, f"{path.name}: drew no figure"
    assert list((tmp_path / "runs").iterdir()), (
        "the notebook's runs should go to its working folder"
    )

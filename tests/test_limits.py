"""Limits before allocation: every reader refuses past the largest legitimate input, in one line.

Each hostile input is built here, small: a tar whose header declares 64 GiB, a gzip that
inflates past the (lowered) cap, a PNG whose header declares 10 gigapixels, a config that
extends a FIFO or a chain of 1,500 files, a grid of 10^6 points, configs whose tensors
need hundreds of GB, a server that never stops sending or stops without closing. Each
must end with exit 2 and one line, and leave nothing half-written (docs/reliability.md,
"Limits before allocation").
"""

from __future__ import annotations

import gzip
import http.server
import io
import os
import struct
import tarfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, run_cli
from nnlab.config import load_config
from nnlab.config.limits import check_fits, estimate
from nnlab.data import bounded, cifar10, download
from nnlab.errors import ConfigError, DataError
from nnlab.experiments.sweep import parse_grid_arg, run_name


@pytest.fixture(autouse=True)
def data_home(tmp_path, monkeypatch):
    """A data folder of the test's own, and a declared 8 GB machine, so refusals read the same
    on any machine."""
    monkeypatch.setenv("NNLAB_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("NNLAB_MEMORY_GB", "8")
    return tmp_path / "cache"


def tar_gz(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A .tar.gz of ``(name, size its header declares, bytes actually stored)`` members."""
    raw = io.BytesIO()
    for name, declared, data in entries:
        info = tarfile.TarInfo(name)
        info.size = declared
        raw.write(info.tobuf(format=tarfile.GNU_FORMAT))  # GNU: sizes past 8 GiB in base-256
        raw.write(data + b"\0" * (-len(data) % 512))
    raw.write(b"\0" * 1024)  # end of archive
    return gzip.compress(raw.getvalue(), compresslevel=9)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height``, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def png(side: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 100, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def image_tree(root: Path, bad: bytes | None = None) -> Path:
    """train/{a,b}/ and test/{a,b}/ of small PNGs; ``bad`` replaces train/a/0.png."""
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                (root / split / cls / f"{i}.png").write_bytes(png())
    if bad is not None:
        (root / "train" / "a" / "0.png").write_bytes(bad)
    return root


def imagefolder_train(cli, source: Path, out: Path, *extra: str):
    sets = ["data.name=imagefolder", f"data.dir={source}", "data.image_size=8", "train.epochs=1"]
    args = [x for s in [*sets, *extra] for x in ("--set", s)]
    return cli("train", "moons", *args, "--out", str(out))


# --------------------------------------------------------------------------- archives and images


def test_tar_member_declaring_64_gib_is_refused_from_its_header(cli, tmp_path, data_home):
    forged = tmp_path / "cifar-10-python.tar.gz"
    forged.write_bytes(tar_gz([("cifar-10-batches-py/data_batch_1", 64 << 30, b"x" * 100)]))
    proc = cli("data", "cifar10", "--archive", str(forged), "--dir", str(data_home))
    assert_one_line_error(proc, "data_batch_1 declares 68,719,476,736 bytes")
    assert not (data_home / "cifar10").exists()

    images = tmp_path / "images.tar.gz"  # the same forgery as an ImageFolder member
    images.write_bytes(tar_gz([("train/a/0.png", 64 << 30, png())]))
    proc = imagefolder_train(cli, images, tmp_path / "run")
    assert_one_line_error(proc, "train/a/0.png declares")
    assert not (tmp_path / "run").exists() and not (data_home / "imagefolder").exists()


def test_gzip_inflating_past_the_cap_is_stopped_as_it_streams(
    cli, tmp_path, data_home, monkeypatch
):
    # 12 honest 1 MiB members of zeros: 12 KB of gzip. No header lies; only counting the
    # inflated bytes stops it (the cap lowered from 1 GiB to 4 MiB to keep the test small).
    monkeypatch.setattr(cifar10, "MAX_OFFICIAL_BYTES", 4 << 20)
    zeros = b"\0" * (1 << 20)
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(
        tar_gz([(f"cifar-10-batches-py/pad{i}", len(zeros), zeros) for i in range(12)])
    )
    assert bomb.stat().st_size < 100_000
    proc = cli("data", "cifar10", "--archive", str(bomb), "--dir", str(data_home))
    assert_one_line_error(proc, "decompresses to more than 4 MiB")
    assert not (data_home / "cifar10").exists()

    monkeypatch.setattr(bounded, "MAX_ARCHIVE_BYTES", 4 << 20)  # ImageFolder archives too
    images = tmp_path / "images.tar.gz"
    images.write_bytes(tar_gz([(f"junk/{i}", len(zeros), zeros) for i in range(12)]))
    proc = imagefolder_train(cli, images, tmp_path / "run")
    assert_one_line_error(proc, "decompresses to more than 4 MiB")
    assert not (tmp_path / "run").exists()


def test_a_member_over_the_member_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bounded, "MAX_MEMBER_BYTES", 1000)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz([("cifar-10-batches-py/data_batch_1", 2000, b"y" * 2000)]))
    with pytest.raises(DataError, match="declares 2,000 bytes"):
        cifar10.read_cifar10(archive)


def test_png_declaring_10_gigapixels_is_refused_before_decoding(cli, tmp_path, data_home):
    with pytest.raises(DataError, match="image too large"):
        bounded.decode_image(png_declaring(100_000, 100_000), 32, "x.png")
    tree = image_tree(tmp_path / "tree", bad=png_declaring(100_000, 100_000))
    proc = imagefolder_train(cli, tree, tmp_path / "run")
    assert_one_line_error(proc, "0.png: image too large", "at most 67,108,864 pixels")
    assert not (tmp_path / "run").exists() and not (data_home / "imagefolder").exists()
    # just over the cap: refused too (Pillow warns there; nnlab makes the warning an error)
    with pytest.raises(DataError, match="image too large"):
        bounded.decode_image(png_declaring(8193, 8193), 32, "y.png")


def test_huge_image_size_is_refused_in_validation(cli, tmp_path):
    proc = imagefolder_train(cli, tmp_path, tmp_path / "run", "data.image_size=100000")
    assert_one_line_error(proc, "data.image_size=100000")
    assert not (tmp_path / "run").exists()


def test_npz_declaring_more_than_it_holds_or_inflating_is_refused(tmp_path, monkeypatch):
    import zipfile

    from nnlab.errors import RunError
    from nnlab.runs import files

    header = io.BytesIO()  # an array header declaring 10^10 float64 (80 GB) over 80 bytes
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**10,)}
    )
    with zipfile.ZipFile(tmp_path / "forged.npz", "w") as z:
        z.writestr("xx.npy", header.getvalue() + b"\0" * 80)
    with pytest.raises(RunError, match=r"xx.npy declares \(10000000000,\)"):
        files.load_arrays(tmp_path / "forged.npz")
    monkeypatch.setattr(files, "MAX_ARRAYS_BYTES", 1 << 20)
    np.savez_compressed(tmp_path / "bomb.npz", xx=np.zeros(1 << 18))  # 2 MiB inflated, ~2 KB
    with pytest.raises(RunError, match="more than 1,048,576 bytes in all"):
        files.load_arrays(tmp_path / "bomb.npz")


# --------------------------------------------------------------------------- walks of data.dir


def test_system_root_as_data_dir_is_refused_outright(cli, tmp_path):
    proc = imagefolder_train(cli, Path("/"), tmp_path / "run")
    assert_one_line_error(proc, "/ is a system folder")
    assert not (tmp_path / "run").exists()


def test_a_folder_that_is_no_image_tree_is_refused_after_few_entries(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(bounded, "MAX_STRAY_ENTRIES", 5)
    tree = image_tree(tmp_path / "tree")
    for i in range(10):
        (tree / "train" / "a" / f"notes{i}.txt").write_text("x")
    proc = imagefolder_train(cli, tree, tmp_path / "run")
    assert_one_line_error(proc, "does not look like an image-class folder")
    assert not (tmp_path / "run").exists()
    # the walk reads [top/]split/class/ only: images deeper down are never visited
    deep = image_tree(tmp_path / "deep" / "a" / "b")
    assert bounded.walk_tree(tmp_path / "deep") == []
    assert len(bounded.walk_tree(deep)) == 8


# --------------------------------------------------------------------------- configs


def test_extends_of_a_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "a.toml").write_text('extends = "fifo.toml"\n')
    proc = run_cli("presets", "a.toml", cwd=tmp_path, timeout=120)  # a hang fails on the timeout
    assert_one_line_error(proc, "fifo.toml", "not a regular file")
    proc = run_cli("train", "fifo.toml", "--out", "run", cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "not a regular file")
    assert not (tmp_path / "run").exists()


def test_a_chain_of_1500_extends_is_one_line(cli, tmp_path):
    for i in range(1500):
        parent = f"c{i + 1}.toml" if i < 1499 else "moons"
        (tmp_path / f"c{i}.toml").write_text(f'extends = "{parent}"\n')
    proc = cli("presets", "c0.toml", cwd=tmp_path)
    assert_one_line_error(proc, "deeper than 32 layers")
    (tmp_path / "self.toml").write_text('extends = "./self.toml"\n')  # the same file, spelled anew
    assert_one_line_error(cli("presets", "self.toml", cwd=tmp_path), "forms a cycle")


def test_a_file_named_like_a_preset_does_not_shadow_it(cli, tmp_path):
    (tmp_path / "moons").write_text("[train]\nepochs = 3\n")
    proc = cli("presets", "moons", cwd=tmp_path)
    assert proc.returncode == 0
    assert "built-in preset" in proc.stderr and "./moons" in proc.stderr
    assert "epochs = 3 " not in proc.stdout  # the preset's value, not the file's
    proc = cli("presets", "./moons", cwd=tmp_path)
    assert proc.returncode == 0 and "epochs = 3 " in proc.stdout


def test_nul_in_a_string_value_is_refused(tmp_path):
    (tmp_path / "a.toml").write_text('[data]\ndir = "a\\u0000b"\n')
    with pytest.raises(ConfigError, match="data.dir: must not contain a NUL"):
        load_config(str(tmp_path / "a.toml"))


# --------------------------------------------------------------------------- memory estimates


@pytest.mark.parametrize(
    ("preset", "sets", "names"),
    [
        ("moons", ["data.n_samples=10000000000"], "data.n_samples=10000000000 needs ~"),
        ("moons", ["model.hidden=100000,100000"], "model.hidden=100000,100000 needs ~"),
        ("palindrome", ["data.length=100000", "model.name=lstm"], "data.length=100000"),
        ("palindrome", ["data.epoch_size=2000000000"], "data.epoch_size=2000000000"),
        (
            "moons",
            [
                "data.name=blobs",
                "data.centers=10000000",
                "data.n_samples=30000000",
                "data.test_fraction=0.5",
            ],
            "data.centers=10000000",
        ),
    ],
)
def test_a_config_that_cannot_fit_is_refused_before_any_folder(cli, tmp_path, preset, sets, names):
    args = [x for s in sets for x in ("--set", s)]
    proc = cli("train", preset, *args, "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, names)
    assert "GB" in proc.stderr
    assert not (tmp_path / "run").exists()
    proc = cli("sweep", preset, *args, "--grid", "train.seed=0,1", "--out", str(tmp_path / "sw"))
    assert_one_line_error(proc, names)
    assert not (tmp_path / "sw").exists()


def test_a_sweep_point_that_cannot_fit_is_refused_before_any_run(cli, tmp_path):
    out = tmp_path / "sw"
    proc = cli("sweep", "moons", "--grid", "data.n_samples=100,10000000000", "--out", str(out))
    assert_one_line_error(proc, "data.n_samples=10000000000 needs ~")
    assert not out.exists()  # the small point did not run either


def test_absurd_sizes_are_refused_on_any_machine_and_by_report(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("NNLAB_MEMORY_GB", "1000000")  # a huge machine: validation still refuses
    with pytest.raises(ConfigError, match="nnlab refuses tensors over"):
        load_config("moons", ["data.n_samples=100000000000000"])
    run = tmp_path / "run"
    assert cli("train", "moons", "--set", "train.epochs=1", "--out", str(run)).returncode == 0
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace("n_samples = 1000", "n_samples = 10000000000000"))
    proc = cli("report", str(run), "--out", str(tmp_path / "report"))
    assert_one_line_error(proc, "config.toml: data.n_samples=10000000000000")
    assert not (tmp_path / "report").exists()


def test_run_data_checks_the_dataset_before_building_it(cli, tmp_path):
    import nnlab

    run = tmp_path / "run"
    assert cli("train", "moons", "--set", "train.epochs=1", "--out", str(run)).returncode == 0
    text = (run / "config.toml").read_text()
    (run / "config.toml").write_text(text.replace("n_samples = 1000", "n_samples = 9000000000"))
    with pytest.raises(ConfigError, match="data.n_samples=9000000000 needs ~"):
        nnlab.open_run(run).data()


def test_estimates_name_the_key_and_the_presets_fit_in_8_gb():
    for name in ("moons", "palindrome", "cifar-mlp", "seed-cnn", "cnn-quick", "seed-rnn"):
        check_fits(load_config(name))  # a laptop runs every CPU preset
    needs = estimate(load_config("moons", ["model.hidden=4096,4096"]))
    assert needs[0].key == "model.hidden=4096,4096" and needs[0].bytes > 4096 * 4096 * 4


# --------------------------------------------------------------------------- sweeps


def test_a_grid_of_10_6_points_is_refused_at_once(cli, tmp_path):
    out = tmp_path / "sw"
    grid = ["--grid", "optim.lr=1..1000", "--grid", "train.epochs=1..1000"]
    proc = cli("sweep", "moons", *grid, "--out", str(out))
    assert_one_line_error(proc, "1,000,000 runs", "--max-runs 10,000")
    assert not out.exists()
    proc = cli("train", "moons", "--seeds", "20000", "--out", str(out))
    assert_one_line_error(proc, "20,000 runs")
    proc = cli("sweep", "moons", "--grid", "train.seed=0..5", "--max-runs", "5", "--out", str(out))
    assert_one_line_error(proc, "6 runs", "--max-runs 5")
    assert not out.exists()
    # a range is counted, never listed: 10^15 values cost nothing
    assert isinstance(
        parse_grid_arg("train.epochs=1..1000000000000000", load_config("moons"))[1], range
    )


def test_a_large_sweep_says_its_size_before_checking_its_runs(cli, tmp_path):
    # 150 runs, the first an invalid batch size: the size line comes first, then the error
    proc = cli("sweep", "moons", "--grid", "train.batch_size=0..149", "--out", str(tmp_path / "s"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 2, proc.stderr
    assert lines[0].startswith("sweep: 150 runs (150 train.batch_size x 1 seed)")
    assert "train.batch_size" in lines[1] and not (tmp_path / "s").exists()


def test_long_grid_values_make_short_stable_folder_names():
    point = {"model.widths": [str(64 + i) for i in range(200)]}
    name = run_name(point, 3)
    assert len(name.encode()) <= 200 and name == run_name(point, 3) != run_name(point, 4)
    assert run_name({"optim.lr": 0.01}, 0) == "optim.lr=0.01__seed=0"  # short names unchanged


# --------------------------------------------------------------------------- data cache folders


def test_a_data_folder_that_is_a_file_is_one_line(cli, tmp_path, monkeypatch):
    tree = image_tree(tmp_path / "tree")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = imagefolder_train(cli, tree, tmp_path / "run")  # fine with a real data folder
    assert proc.returncode == 0, proc.stderr
    monkeypatch.setenv("NNLAB_DATA", str(blocker))
    proc = imagefolder_train(cli, tree, tmp_path / "run2")
    assert_one_line_error(proc, "cannot write the data cache")
    assert not (tmp_path / "run2").exists()


def test_report_md_escapes_raw_html_from_a_description(cli, tmp_path):
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    (tmp_path / "mine.toml").write_text(
        f'extends = "moons"\ndescription = "{evil}"\n[train]\nepochs = 1\n'
    )
    assert cli("train", "mine.toml", "--out", "run", cwd=tmp_path).returncode == 0
    assert cli("report", "run", "--out", "report", cwd=tmp_path).returncode == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "&lt;script>alert(1)&lt;/script>" in markdown  # shown as text, never run
    assert "<script" not in markdown and "<img" not in markdown
    assert "<script" not in (tmp_path / "report" / "report.html").read_text()


# --------------------------------------------------------------------------- downloads


class Server:
    """A local server misbehaving by ``mode``: endless (no length, never ends), liar (announces
    1 GB), stall (a few bytes, then nothing), trickle (a byte every 20 ms, forever)."""

    def __init__(self, mode: str) -> None:
        self.done = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                if mode == "liar":
                    self.send_header("Content-Length", str(10**9))
                self.end_headers()
                try:
                    if mode == "stall":
                        self.wfile.write(b"x" * 100)
                        self.wfile.flush()
                        outer.done.wait(60)
                    while not outer.done.is_set():
                        self.wfile.write(b"x" if mode == "trickle" else b"x" * 65536)
                        self.wfile.flush()
                        if mode == "trickle":
                            outer.done.wait(0.02)
                except OSError:  # the client hung up: what it should do
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-10-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.done.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(request):
    s = Server(request.param)
    yield s
    s.close()


@pytest.mark.parametrize("server", ["endless"], indirect=True)
def test_a_server_that_never_stops_is_cut_at_the_cap(server, tmp_path, cli, monkeypatch):
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(DataError, match="more than the 262,144 bytes expected"):
        download.download(server.url, dest, "0" * 32, progress=False, max_bytes=256 << 10)
    assert not dest.exists() and not (tmp_path / "a.tar.gz.part").exists()
    monkeypatch.setattr(download, "MAX_DOWNLOAD_BYTES", 256 << 10)  # the CLI's hard cap
    d = tmp_path / "d"
    proc = cli(
        "data", "cifar10", "--download", "--dir", str(d), "--url", server.url, "--no-progress"
    )
    assert_one_line_error(proc, "more than the 262,144 bytes expected")
    assert not (d / "cifar10").exists() and not any((d / "downloads").iterdir())


@pytest.mark.parametrize("server", ["liar"], indirect=True)
def test_an_announced_size_past_the_expected_is_refused_unread(server, tmp_path):
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(DataError, match="announces 1,000,000,000 bytes, more than the 170,498,071"):
        download.download(server.url, dest, "0" * 32, progress=False, size=download.CIFAR10_BYTES)
    assert not (tmp_path / "a.tar.gz.part").exists()


@pytest.mark.parametrize("server", ["stall"], indirect=True)
def test_a_stalled_server_times_out_and_keeps_the_part(server, tmp_path):
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(DataError, match="sent nothing for 0.5 s .*again to resume"):
        download.download(server.url, dest, "0" * 32, progress=False, timeout=0.5)
    assert (tmp_path / "a.tar.gz.part").stat().st_size == 100  # resumable


@pytest.mark.parametrize("server", ["trickle"], indirect=True)
def test_a_trickling_server_meets_the_deadline(server, tmp_path):
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(DataError, match="took longer than 0.5 s"):
        download.download(server.url, dest, "0" * 32, progress=False, timeout=5, deadline=0.5)
    assert not dest.exists()

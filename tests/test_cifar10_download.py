"""``nnlab data cifar10 --download`` against a local HTTP server (127.0.0.1 only, never the network).

The server serves a small generated archive in the official layout and can
honour or ignore ``Range`` requests, or cut the connection half-way, so resume,
restart, md5 checking and the cache's all-or-nothing rule are all exercised.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error
from nnlab.data.download import download
from nnlab.errors import DataError


def small_archive() -> bytes:
    """An official-layout .tar.gz with 10 random images per batch (every class in train)."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        for name in names:
            if name == "batches.meta":
                obj = {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": 10}
            else:
                obj = {
                    "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                    "labels": list(range(10)),
                }
            data = pickle.dumps(obj, protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server:
    """A local server for one payload; ``mode`` is 'range', 'ignore-range' or 'cut' (drop half-way once)."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.mode, self.requests = payload, "range", []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.headers.get("Range"))
                body, status = outer.payload, 200
                rng = self.headers.get("Range")
                if rng and outer.mode != "ignore-range":
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.mode == "cut":
                    outer.mode = "range"
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-file
                    return
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-10-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def payload() -> bytes:
    return small_archive()


@pytest.fixture
def server(payload):
    s = Server(payload)
    yield s
    s.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _download(cli, folder, url: str, checksum: str):
    """``nnlab data cifar10 --download`` into ``folder`` from ``url``, expecting ``checksum``."""
    return cli(
        "data",
        "cifar10",
        "--download",
        "--dir",
        str(folder),
        "--url",
        url,
        "--md5",
        checksum,
        "--no-progress",
    )


def test_download_imports_and_removes_archive(cli, server, payload, tmp_path):
    d = tmp_path / "d"
    proc = _download(cli, d, server.url, md5(payload))
    assert proc.returncode == 0, proc.stderr
    assert "50 train + 10 test" in proc.stdout
    assert (d / "cifar10" / "meta.json").is_file()
    assert not (d / "downloads" / "cifar-10-python.tar.gz").exists()


def test_resume_sends_range_and_completes(server, payload, tmp_path):
    dest = tmp_path / "a.tar.gz"
    (tmp_path / "a.tar.gz.part").write_bytes(payload[:1000])
    assert download(server.url, dest, md5(payload), progress=False).read_bytes() == payload
    assert server.requests == ["bytes=1000-"]


def test_server_ignoring_range_restarts(server, payload, tmp_path):
    server.mode = "ignore-range"
    dest = tmp_path / "a.tar.gz"
    (tmp_path / "a.tar.gz.part").write_bytes(b"garbage" * 10)
    assert download(server.url, dest, md5(payload), progress=False).read_bytes() == payload


def test_interrupted_download_resumes_on_rerun(server, payload, tmp_path):
    server.mode = "cut"
    dest = tmp_path / "a.tar.gz"
    with pytest.raises(DataError, match="again to resume"):
        download(server.url, dest, md5(payload), progress=False)
    assert not dest.exists() and 0 < (tmp_path / "a.tar.gz.part").stat().st_size < len(payload)
    assert download(server.url, dest, md5(payload), progress=False).read_bytes() == payload
    assert server.requests[-1].startswith("bytes=")


def test_md5_mismatch_leaves_nothing(cli, server, tmp_path):
    d = tmp_path / "d"
    proc = _download(cli, d, server.url, "0" * 32)
    assert_one_line_error(proc, "md5 mismatch", server.url)
    assert not (d / "cifar10").exists()
    assert not any((d / "downloads").iterdir())  # the bad partial file is gone too


def test_unreachable_server_is_one_line(cli, tmp_path):
    url = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # the discard port: nothing listens
    proc = cli(
        "data", "cifar10", "--download", "--dir", str(tmp_path), "--url", url, "--no-progress"
    )
    assert_one_line_error(proc, "download failed")
    assert not Path(tmp_path / "cifar10").exists()

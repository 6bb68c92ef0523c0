"""report.html in a real browser: headless Chromium, driven over the DevTools protocol.

Proves that the report opens from disk with no network and renders: no console
errors or page exceptions, every image decodes (``naturalWidth > 0``), every
table has body rows. A screenshot of the whole page is kept in
``tests/artifacts/report.png`` (path printed). A negative control (a broken
image, an empty table, a console error) shows the checks can fail.

The browser is Debian's ``chromium`` (``make test`` installs it where missing).
The DevTools client below is the standard library only: a websocket handshake,
masked client frames, JSON messages. Locally the test skips if no Chromium is
installed; with CI=true it fails instead.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--remote-debugging-port=0", "--window-size=1200,900",
]  # fmt: skip

# Runs in the page: what did not render? (an image that failed to decode has naturalWidth 0)
CHECK_JS = """(() => {
  const imgs = [...document.images];
  const tables = [...document.querySelectorAll('table')];
  return {
    images: imgs.length,
    broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt || i.src.slice(0, 40)),
    tables: tables.length,
    empty_tables: tables.map((t, k) => [k, t.querySelectorAll('tbody tr').length]).filter(x => x[1] === 0).map(x => x[0]),
    title: document.title,
  };
})()"""


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail(
            "Chromium is missing, and CI must have it (make test installs Debian's chromium package)"
        )
    pytest.skip("no Chromium found; `make test` installs it (apt-get install chromium)")


class DevTools:
    """A minimal Chrome DevTools Protocol client over one websocket (RFC 6455), stdlib only."""

    def __init__(self, ws_url: str, timeout: float = 60) -> None:
        u = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += self.sock.recv(4096)
        head, _, self.buf = reply.partition(b"\r\n\r\n")
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.next_id = 0
        self.events: list[dict] = []

    def _read(self, n: int) -> bytes:
        chunks, have = [self.buf], len(self.buf)
        while have < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            chunks.append(chunk)
            have += len(chunk)
        data = b"".join(chunks)
        self.buf = data[n:]
        return data[:n]

    def _message(self) -> dict:
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)  # server frames are never masked
            opcode = b0 & 0x0F
            if opcode == 8:
                raise ConnectionError("DevTools connection closed")
            if opcode in (9, 10):  # ping / pong: nothing to do for a short session
                continue
            parts.append(payload)
            if b0 & 0x80:  # FIN: the message is complete
                return json.loads(b"".join(parts))

    def call(self, method: str, **params) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self.next_id += 1
        data = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        n = len(data)
        head = bytes([0x81]) + (
            bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536
            else bytes([0x80 | 127]) + struct.pack(">Q", n)
        )  # fmt: skip
        mask = os.urandom(4)  # clients must mask every frame
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, msg in enumerate(self.events):
                if msg.get("method") == event:
                    return self.events.pop(i)
            self.events.append(self._message())
        raise TimeoutError(event)

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads logged so far."""
        out = []
        for msg in self.events:
            m, p = msg.get("method"), msg.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append("exception: " + p["exceptionDetails"].get("text", ""))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(
                    "console: "
                    + " ".join(
                        str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
                    )
                )
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
        return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium with a fresh profile; yields a DevTools session on its page."""
    exe = find_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while (
            not (port_file.is_file() and port_file.read_text().strip())
            and time.monotonic() < deadline
        ):
            assert proc.poll() is None, "Chromium exited at start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        yield tools
        tools.sock.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def render(tools: DevTools, page: Path) -> tuple[dict, list[str]]:
    """Open ``page`` from disk; returns the in-page check and the errors logged while loading."""
    tools.events.clear()
    tools.call("Page.navigate", url=page.resolve().as_uri())
    tools.wait_for("Page.loadEventFired")
    check = tools.call("Runtime.evaluate", expression=CHECK_JS, returnByValue=True)["result"][
        "value"
    ]
    return check, tools.errors()


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    """A real report from tiny runs: a moons sweep (torch vs numpy) and a palindrome length sweep."""
    from nnlab.cli import main

    root, cwd = tmp_path_factory.mktemp("browser-report"), Path.cwd()
    os.chdir(root)
    try:
        moons = ["--set", "train.epochs=40", "--set", "data.n_samples=200", "--seeds", "2"]
        assert (
            main(
                [
                    "sweep",
                    "seed-moons",
                    *moons,
                    "--grid",
                    "model.backend=torch,numpy",
                    "--out",
                    "moons",
                ]
            )
            == 0
        )
        pal = [
            "--set",
            "train.epochs=2",
            "--set",
            "data.n_samples=200",
            "--set",
            "data.epoch_size=0",
            "--seeds",
            "2",
        ]
        assert main(["sweep", "seed-rnn", *pal, "--grid", "data.length=3..5", "--out", "pal"]) == 0
        assert main(["report", "moons", "pal", "--out", "report"]) == 0
    finally:
        os.chdir(cwd)
    return root / "report" / "report.html"


def test_report_renders_in_chromium(browser, report_html):
    text = report_html.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text, (
        "the report must not load anything from the network"
    )
    check, errors = render(browser, report_html)
    assert errors == [], errors
    # curves (x2) and decision boundaries, accuracy against length
    assert check["images"] >= 3, check
    assert check["broken"] == [], check
    assert check["tables"] >= 3 and check["empty_tables"] == [], check
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "report.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000
    print(f"screenshot of report.html: {path}")


def test_checks_catch_a_broken_page(browser, tmp_path):
    """The negative control: the same checks flag a broken image, an empty table and a console error."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img alt="bad" src="data:image/png;base64,AAAA"><table><thead><tr><th>x</th></tr></thead><tbody></tbody></table>'
        "<script>console.error('boom')</script></body></html>",
        encoding="utf-8",
    )
    check, errors = render(browser, page)
    assert check["broken"] == ["bad"] and check["empty_tables"] == [0], check
    assert any("boom" in e for e in errors), errors

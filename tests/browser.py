"""Headless Debian chromium driven by Playwright, for the dashboard tests.

- Uses the system browser (``/usr/bin/chromium``, or ``WASMPROF_CHROMIUM``) through
  ``executable_path``: Playwright never downloads a browser. Missing browser: the test is
  skipped on a workstation but FAILS in CI (``CI=true``), where the test command installs it.
- :class:`Watch` records console errors, uncaught page errors, dialogs (alert/confirm/prompt)
  and failed requests of a page, so tests can assert a page loaded cleanly and ran nothing
  it should not have.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    """The system chromium, or skip (fail in CI) when it is not installed."""
    candidates = [os.environ.get("WASMPROF_CHROMIUM"), "/usr/bin/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    msg = "Debian chromium is not installed (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg + "; CI must have it (scripts/bootstrap.sh test installs it)")
    pytest.skip(msg)


@dataclass
class Watch:
    """Everything a page did that a clean page should not do."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"page error: {m}" for m in self.page_errors]
                + [f"dialog: {m}" for m in self.dialogs]
                + [f"request failed: {m}" for m in self.failed_requests]
                + [f"external request: {m}" for m in self.external_requests])


def watch_page(page, origin: str) -> Watch:
    """Attach listeners to ``page``; requests leaving ``origin`` are recorded and aborted."""
    w = Watch()

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            w.console_errors.append(f"{msg.text} ({loc.get('url', '')}:{loc.get('lineNumber', '')})")

    def on_dialog(dialog):
        w.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_failed(req):
        failure = req.failure or ""
        if "ERR_ABORTED" in failure and req.url.startswith(origin):
            return   # navigation away / iframe replaced while loading: not an error
        w.failed_requests.append(f"{req.url}: {failure}")

    def route(r):
        url = r.request.url
        if url.startswith((origin, "blob:", "data:", "about:")):
            r.continue_()
        else:
            w.external_requests.append(url)
            r.abort()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: w.page_errors.append(str(exc)))
    page.on("dialog", on_dialog)
    page.on("requestfailed", on_failed)
    page.context.route("**/*", route)
    return w


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


# -- a real wasmprof server in a subprocess ----------------------------------------------

@dataclass
class ServerProcess:
    """``wasmprof serve`` on a free loopback port (real uvicorn, real store)."""

    url: str
    data_dir: Path
    proc: "subprocess.Popen[bytes]"
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wasmprof_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run ``python -m wasmprof ARGS`` and return stdout (raises on a non-zero exit)."""
    r = subprocess.run([sys.executable, "-m", "wasmprof", *args], capture_output=True,
                       timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT)
    if r.returncode != 0:
        raise AssertionError(f"wasmprof {' '.join(args)} -> {r.returncode}\n{r.stderr.decode()}")
    return r.stdout.decode()


def start_server(data_dir: Path, *, demo: bool = False, env: dict[str, str] | None = None,
                 timeout: float = 90) -> ServerProcess:
    """Start ``wasmprof serve`` and wait for ``/healthz``; the log is kept in data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / "server.log"
    cmd = [sys.executable, "-m", "wasmprof", "serve", "--data", str(data_dir),
           "--host", "127.0.0.1", "--port", str(port)] + (["--demo"] if demo else [])
    full_env = {**os.environ, **(env or {})}
    full_env.pop("WASMPROF_DB", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT)
    server = ServerProcess(f"http://127.0.0.1:{port}", data_dir, proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"wasmprof serve exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"wasmprof serve did not answer /healthz in {timeout}s:\n{server.log_tail()}")


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.25, what: str = "condition"):
    """Poll ``predicate()`` until it returns a truthy value (which is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)

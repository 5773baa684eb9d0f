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
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server_proc import ServerProcess, wasmprof_cli

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
    in_flight: dict[int, str] = field(default_factory=dict)
    prompt_answer: str | None = None          # set to accept the next prompt() with it
    answered: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return ([f"console error: {m}" for m in self.console_errors]
                + [f"page error: {m}" for m in self.page_errors]
                + [f"dialog: {m}" for m in self.dialogs]
                + [f"request failed: {m}" for m in self.failed_requests]
                + [f"external request: {m}" for m in self.external_requests])


def watch_page(page, origin: str) -> Watch:
    """Attach listeners to ``page``; requests leaving ``origin`` are recorded (this machine
    has no route to the internet anyway, so they would also fail)."""
    w = Watch()

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            w.console_errors.append(f"{msg.text} ({loc.get('url', '')}:{loc.get('lineNumber', '')})")

    def on_dialog(dialog):
        if dialog.type == "prompt" and w.prompt_answer is not None:
            w.answered.append(dialog.message)
            dialog.accept(w.prompt_answer)
            w.prompt_answer = None
            return
        w.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_failed(req):
        w.in_flight.pop(id(req), None)
        failure = req.failure or ""
        if "ERR_ABORTED" in failure and req.url.startswith(origin):
            return   # navigation away / iframe replaced while loading: not an error
        w.failed_requests.append(f"{req.url}: {failure}")

    def on_request(req):
        w.in_flight[id(req)] = req.url
        if not req.url.startswith((origin, "blob:", "data:", "about:")):
            w.external_requests.append(req.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: w.page_errors.append(str(exc)))
    page.on("dialog", on_dialog)
    page.on("requestfailed", on_failed)
    page.on("request", on_request)
    page.on("requestfinished", lambda req: w.in_flight.pop(id(req), None))
    return w


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module (test modules import this fixture; a session-wide one
    would be instantiated once per importing module, and Playwright's sync API allows one
    at a time)."""
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


# -- a real wasmprof server in a subprocess (tests/server_proc.py) -------------------------

def start_server(data_dir: Path, *, demo: bool = False, anonymous: str = "") -> ServerProcess:
    """``wasmprof serve`` on a free loopback port, healthy. ``demo=True``: ``--demo`` (the
    README's command, bundled samples); else an empty store where ``anonymous`` scopes (e.g.
    ``"read,ingest,admin"``; ``""``: none, every request needs a token) need no token."""
    args = ["--demo"] if demo else (["--allow-anonymous", anonymous] if anonymous else [])
    env = {"WASMPROF_ANONYMOUS": "", "WASMPROF_DB": ""}
    return ServerProcess(data_dir, extra_args=[*args, "--quiet"], env=env).start(timeout=120)


def create_token(server: ServerProcess, name: str, scopes: str) -> str:
    """``wasmprof token create`` on the server's store; returns the token."""
    return wasmprof_cli("token", "create", name, "--scopes", scopes,
                        "--data", str(server.data_dir)).stdout.strip()


def settle(page, watch: Watch, timeout: float = 30.0, quiet: float = 0.5) -> None:
    """Wait until no request of the page (any frame) has been in flight for ``quiet``
    seconds. (Playwright's "networkidle" is unreliable across same-document navigations
    with sandboxed, out-of-process frames.) On a timeout, say which requests hang."""
    deadline = time.monotonic() + timeout
    idle_since = None
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)              # lets Playwright deliver events
        if watch.in_flight:
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= quiet:
            return
    raise AssertionError(f"network not idle after {timeout}s; in flight: "
                         f"{sorted(watch.in_flight.values())}")


def open_page(browser, server: ServerProcess, path: str = "/", *, width: int = 1360,
              height: int = 900):
    """A fresh context + page on ``server`` with a :class:`Watch`; returns (page, watch)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    watch = watch_page(page, server.url)
    page.goto(server.url + path)
    return page, watch


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

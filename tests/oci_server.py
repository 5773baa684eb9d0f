"""A real ``wasmprof serve`` set up for the module-source tests, and what they do with it:
tokens, setting a plugin source, posting a crash log, waiting for pulls and groups."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from occurrences import occurrence
from pg import wait_until
from server_proc import ROOT, ServerProcess

#: retries in seconds, not minutes (the backoff ladder is the same)
PULL_ENV = {"WASMPROF_PULL_BASE_DELAY": "0.3", "WASMPROF_PULL_MAX_DELAY": "1",
            "WASMPROF_PULL_MAX_ATTEMPTS": "40", "WASMPROF_PULL_TIMEOUT": "5"}


def start_server(data: Path, db: str | None, extra: list[str], env: dict[str, str] | None = None
                 ) -> ServerProcess:
    from wasmprof.config import resolve_store
    from wasmprof.store.state import open_store
    from wasmprof.store.tokens import create_token
    store = open_store(resolve_store(data, db))          # tokens in-process: no CLI start-ups
    try:
        tokens = {s: create_token(store.db, f"t-{s}", {s})[1] for s in ("ingest", "read", "admin")}
    finally:
        store.close()
    srv = ServerProcess(data, db, extra_args=["--rate-limit", "0", "--quiet", *extra],
                        env={**PULL_ENV, **(env or {})}).start()
    srv.tokens = tokens
    return srv


def call(srv: ServerProcess, scope: str, method: str, path: str, **kw: Any):
    with srv.client(srv.tokens[scope]) as c:
        return c.request(method, "/api/v1" + path, **kw)


def set_source(srv: ServerProcess, plugin: str, url: str, **body: Any) -> dict:
    r = call(srv, "admin", "PUT", f"/plugins/{plugin}/source", json={"url": url, "plain_http": True, **body})
    assert r.status_code == 200, r.text
    return r.json()


def post_log(srv: ServerProcess, path: Path, plugin: str, version: str | None = None, *,
             again: bool = False) -> dict:
    """Post the crash log at ``path``; ``again``: as a new occurrence of its crash (log
    ingest is idempotent: the same bytes twice are one event)."""
    params = {"plugin": plugin, **({"version": version} if version else {})}
    body = occurrence(path.read_text()) if again else path.read_bytes()
    r = call(srv, "ingest", "POST", "/logs", params=params, content=body)
    assert r.status_code == 200, r.text
    return r.json()


def source(srv: ServerProcess, plugin: str) -> dict:
    r = call(srv, "admin", "GET", f"/plugins/{plugin}/source")
    assert r.status_code == 200, r.text
    return r.json()


def wait_pull(srv: ServerProcess, plugin: str, states: tuple[str, ...], timeout: float = 60,
              kind: str | None = None) -> dict:
    """The plugin's source once its status is one of ``states`` (and of ``kind``)."""
    def ready():
        s = source(srv, plugin)
        st = s["status"]
        return s if st["state"] in states and (kind is None or st["error_kind"] == kind) else None
    try:
        return wait_until(ready, timeout=timeout, interval=0.2)
    except TimeoutError:
        raise AssertionError(f"pull status never reached {states}/{kind}: {source(srv, plugin)}\n"
                             f"{srv.log_tail()}") from None


def groups(srv: ServerProcess, plugin: str) -> list[dict]:
    r = call(srv, "read", "GET", "/crash-groups", params={"plugin": plugin})
    assert r.status_code == 200, r.text
    return r.json()["groups"]


def wait_symbolized(srv: ServerProcess, plugin: str, timeout: float = 60) -> dict:
    """The plugin's one crash group once its top frame is ``exact``."""
    def done():
        gs = groups(srv, plugin)
        return gs[0] if len(gs) == 1 and gs[0]["top_frames"] and \
            gs[0]["top_frames"][0]["status"] == "exact" else None
    try:
        return wait_until(done, timeout=timeout, interval=0.2)
    except TimeoutError:
        raise AssertionError(f"never symbolized: {groups(srv, plugin)}\n{source(srv, plugin)}") from None


def expected_top(data_dir: Path, log: str) -> dict:
    d = json.loads((data_dir / "expected" / "dumps" / f"{log}.expected.json").read_text())
    return d["frames"][0]["symbolized"]["frames"][0]


def events(srv: ServerProcess, plugin: str) -> list[dict]:
    out = []
    for g in groups(srv, plugin):
        r = call(srv, "read", "GET", f"/crash-groups/{g['id']}/events")
        out += r.json()["events"]
    return out


def module_cli(*args: str, stdin: str | None = None, real: bool = False) -> subprocess.CompletedProcess:
    """``wasmprof module ARGS`` in a subprocess (``real``) or in this process (faster)."""
    if real:
        return subprocess.run([sys.executable, "-m", "wasmprof", "module", *args], cwd=ROOT,
                              input=stdin, capture_output=True, text=True, timeout=120)
    from contextlib import redirect_stderr, redirect_stdout

    from wasmprof.cli import main
    raw, err = io.BytesIO(), io.StringIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    old = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with redirect_stdout(out), redirect_stderr(err):
            rc = main(["module", *args])
    finally:
        sys.stdin = old
    return subprocess.CompletedProcess(args, rc, raw.getvalue().decode(), err.getvalue())

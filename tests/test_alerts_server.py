"""Alerts through a running ``wasmprof serve`` (real uvicorn subprocess) and a real receiver.

- Done-when: a fixture crash log posted to the server produces ONE signed
  ``crash.new_group`` delivery; after resolving the group, posting it again produces
  ``crash.regressed``.
- ``kill -9`` with deliveries pending (receiver down): after restart every alert arrives.
- A crash storm through the API becomes a digest.
Run on SQLite and PostgreSQL (``db_url``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from pg import free_port, wait_until
from receiver import Receiver
from test_alerts_units import documented_verifier

pytestmark = pytest.mark.slow

FAST_ENV = {"WASMPROF_WEBHOOK_BASE_DELAY": "0.05", "WASMPROF_WEBHOOK_MAX_DELAY": "0.3",
            "WASMPROF_WEBHOOK_TIMEOUT": "3", "WASMPROF_WEBHOOK_POLL": "0.1",
            "WASMPROF_WEBHOOK_MAX_ATTEMPTS": "1000", "WASMPROF_PUBLIC_URL": "http://dash.test",
            "WASMPROF_PROFILE_CHECK_SETTLE": "0.2"}
DUMP = "dumps/crash_oob.O2.load.classic.log"
MODULE = "wasm/crash_oob.O2.wasm"


class Server:
    """``wasmprof serve`` as a subprocess; ``kill9()`` and ``start()`` again on the same store."""

    def __init__(self, data: Path, db_url: str | None) -> None:
        self.data, self.db_url = data, db_url
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = data.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        cmd = [sys.executable, "-m", "wasmprof", "serve", "--data", str(self.data),
               "--port", str(self.port), "--allow-anonymous", "ingest,read,admin",
               "--rate-limit", "0", "--quiet"]
        if self.db_url:
            cmd += ["--db", self.db_url]
        self.proc = subprocess.Popen(cmd, env={**os.environ, **FAST_ENV},
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        wait_until(self._healthy, timeout=60, interval=0.1)
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        r = httpx.request(method, self.url + path, timeout=60, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    """One server per database kind for this module (starting one costs seconds); each test
    adds its own webhooks and removes them at the end (``hooks`` fixture)."""
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_cluster").create_database("alerts")
    s = Server(tmp_path_factory.mktemp("alerts-server") / "data", url).start()
    yield s
    s.stop()


@pytest.fixture
def hooks_(server):
    """``hooks_(url, events, **kw)`` adds a webhook; all are removed after the test."""
    made: list[int] = []

    def add(url: str, events: list[str], **kw) -> dict:
        body = {"url": url, "events": events, "secret": "server-test-secret", **kw}
        hook = server.api("POST", "/api/v1/webhooks", json=body).json()
        made.append(hook["id"])
        return hook
    yield add
    for hid in made:
        httpx.delete(f"{server.url}/api/v1/webhooks/{hid}", timeout=30)


def deliveries(server: Server, hook: dict) -> list[dict]:
    return server.api("GET", "/api/v1/webhooks/deliveries",
                      params={"webhook_id": hook["id"]}).json()["deliveries"]


def envoy_log(data_dir: Path, second: int = 2) -> bytes:
    """The WAMR dump as it appears in an Envoy container log: the Envoy error line, then
    the runtime's stdout block (``second``: another occurrence of the crash)."""
    dump = (data_dir / DUMP).read_text()
    head = (f"[2026-11-25 20:01:{second:02d}.345][17][error][wasm] "
            "[source/extensions/common/wasm/wasm_vm.cc:38] Function: proxy_on_request_headers "
            "failed: Exception: out of bounds memory access\n")
    return (head + dump).encode()


def expected_top_frame(data_dir: Path) -> dict:
    exp = json.loads((data_dir / "expected" / (DUMP + ".expected.json")).read_text())
    first = next(f for f in exp["frames"] if f["symbolized"])
    return first["symbolized"]["frames"][0]


def test_new_group_then_regressed_after_resolve(server, hooks_, data_dir):
    verify = documented_verifier()
    with Receiver() as rx:
        server.api("POST", "/api/v1/modules", params={"plugin": "key-auth", "version": "1.0"},
                   files={"file": ("crash_oob.O2.wasm", (data_dir / MODULE).read_bytes())})
        hook = hooks_(rx.url, ["crash.new_group", "crash.regressed"])
        assert hook["secret"] == "server-test-secret"
        log = envoy_log(data_dir)
        r = server.api("POST", "/api/v1/logs", params={"plugin": "key-auth", "version": "1.0"},
                       content=log).json()
        assert r["crashes"] == 1
        gid = r["groups"][0]["id"]
        assert rx.wait_for(lambda reqs: len(reqs) >= 1)
        new = rx.requests[0]
        assert new.header("X-Wasmprof-Event") == "crash.new_group"
        assert verify("server-test-secret", new.body, new.headers)
        body = orjson.loads(new.body)
        assert body["group_id"] == str(gid) and body["plugin"] == "key-auth"
        assert body["module_version"] == "1.0"
        assert body["trap_kind"] == "out-of-bounds-memory"
        want = expected_top_frame(data_dir)
        assert any(f["function"] == want["function"]
                   and f["location"] == f"{want['file']}:{want['line']}"
                   for f in body["top_frames"]), body["top_frames"]
        assert body["links"]["dashboard"] == f"http://dash.test/#/crashes/{gid}"

        server.api("POST", f"/api/v1/crash-groups/{gid}/resolve")
        server.api("POST", "/api/v1/logs", params={"plugin": "key-auth", "version": "1.0"},
                   content=envoy_log(data_dir, 3))
        def regressed(reqs):
            return [q for q in reqs if q.header("X-Wasmprof-Event") == "crash.regressed"]
        assert rx.wait_for(regressed)
        again = regressed(rx.requests)[0]
        assert verify("server-test-secret", again.body, again.headers)
        assert orjson.loads(again.body)["group_id"] == str(gid)
        # a third crash of the (still regressed, not resolved) group is not a new alert
        server.api("POST", "/api/v1/logs", params={"plugin": "key-auth"},
                   content=envoy_log(data_dir, 4))
        assert sorted(d["event"] for d in deliveries(server, hook)) == [
            "crash.new_group", "crash.regressed"]
        assert wait_until(lambda: all(d["status"] == "delivered"
                                      for d in deliveries(server, hook)))
        by_id = {r.header("X-Wasmprof-Delivery"): r for r in rx.requests}  # receiver dedupes
        assert sorted(r.header("X-Wasmprof-Event") for r in by_id.values()) == [
            "crash.new_group", "crash.regressed"]


def test_kill_9_with_pending_deliveries_then_restart(server, hooks_, data_dir):
    rx = Receiver().start()
    port = rx.port
    rx.stop()                                         # receiver down: deliveries stay pending
    hook = hooks_(f"http://127.0.0.1:{port}/hook", ["crash.new_group"])
    log = envoy_log(data_dir)
    for i in range(5):
        server.api("POST", "/api/v1/logs", params={"plugin": f"kill9-plugin-{i}"}, content=log)

    def pending_with_attempts():
        ds = deliveries(server, hook)
        return len(ds) == 5 and all(d["status"] == "pending" and d["attempts"] >= 1 for d in ds)
    wait_until(pending_with_attempts, timeout=30)
    queued = {d["id"] for d in deliveries(server, hook)}
    server.kill9()
    with Receiver(port) as rx2:
        server.start()                                 # same store, new process
        assert rx2.wait_for(lambda reqs: {q.header("X-Wasmprof-Delivery") for q in reqs} >= queued,
                            timeout=60)
        ds = wait_until(lambda: (lambda d: d if all(x["status"] == "delivered" for x in d)
                                 else None)(deliveries(server, hook)))
        attempts = sum(d["attempts"] for d in ds)
        lost = len(queued - {q.header("X-Wasmprof-Delivery") for q in rx2.requests})
        print(f"\n[fault] kill -9 with pending deliveries: deliveries={len(ds)} "
              f"attempts={attempts} lost={lost}")
        assert lost == 0 and len(ds) == 5


def test_crash_storm_through_the_api_sends_a_digest(server, hooks_, data_dir):
    with Receiver() as rx:
        hook = hooks_(rx.url, ["crash.new_group"], rate_limit=2, rate_window=2.0)
        log = envoy_log(data_dir)
        for i in range(25):
            server.api("POST", "/api/v1/logs", params={"plugin": f"storm-{i}"}, content=log)

        def settled():
            ds = deliveries(server, hook)
            return ds if ds and all(d["status"] == "delivered" for d in ds) else None
        ds = wait_until(settled, timeout=30)
        messages = {r.header("X-Wasmprof-Delivery"): r for r in rx.requests}   # receiver dedupes
        singles = [r for r in messages.values() if r.header("X-Wasmprof-Event") == "crash.new_group"]
        digests = [orjson.loads(r.body) for r in messages.values()
                   if r.header("X-Wasmprof-Event") == "alerts.digest"]
        # at most rate_limit singles + one digest per 2 s window, and nothing lost
        assert len(singles) >= 2 and digests and len(messages) <= 8
        assert len(singles) + sum(d["total"] for d in digests) == 25
        assert len(messages) == len(ds)
        print(f"\n[fault] storm via API: 25 alerts -> {len(messages)} messages "
              f"({len(singles)} single + {len(digests)} digest), deliveries={len(ds)}, lost=0")


def test_profile_regression_versus_baseline_version(server, hooks_):
    with Receiver() as rx:
        hooks_(rx.url, ["profile.regression"], plugin="hmac-auth",
                    regression_points=10, baseline="version=1.0")
        before = b"on_request;lookup_key 80\non_request;hmac_sign;sha256_block 20\n"
        after = b"on_request;lookup_key 40\non_request;hmac_sign;sha256_block 60\n"
        server.api("POST", "/api/v1/profiles", params={"plugin": "hmac-auth", "version": "1.0",
                                                        "format": "folded"}, content=before)
        server.api("POST", "/api/v1/profiles", params={"plugin": "hmac-auth", "version": "1.1",
                                                        "format": "folded"}, content=after)
        assert rx.wait_for(lambda reqs: len(reqs) >= 1, timeout=30)
        req = rx.requests[0]
        assert req.header("X-Wasmprof-Event") == "profile.regression"
        body = orjson.loads(req.body)
        assert body["plugin"] == "hmac-auth" and body["module_version"] == "1.1"
        top = body["regressions"][0]
        assert (top["function"], top["metric"]) == ("sha256_block", "self")
        assert (top["baseline_share"], top["current_share"]) == (20.0, 60.0)
        assert "version=1.0" in top["baseline"]
        assert all(r["function"] != "lookup_key" for r in body["regressions"])   # it shrank

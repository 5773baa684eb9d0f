"""``wasmprof serve --workers 2``: two processes on one port (SQLite and PostgreSQL). Sample
batches and crash logs posted concurrently are each stored exactly once, both processes
serve requests, and only the first process runs the periodic store-wide threads."""

from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest

from server_proc import ServerProcess, wasmprof_cli

pytestmark = pytest.mark.slow

BATCHES_PER_CLIENT = 6
CLIENTS = 6


def _batch(k: int) -> tuple[bytes, int]:
    """Batch ``k``: its own thread name (so its samples are one series), 50..99 samples with
    counts 1..3 at distinct addresses; returns (body, total count)."""
    n = 50 + (k * 7) % 50
    samples = [{"stack": [0x1000 + 16 * ((k * 31 + i) % 400), 0x2000 + k % 5, 9000],
                "count": 1 + (i + k) % 3, "thread": f"batch-{k}"} for i in range(n)]
    return (json.dumps({"modules": [{"id": "m", "text_base": 4096}], "samples": samples}).encode(),
            sum(s["count"] for s in samples))


def _workers_seen(url: str, want: int, timeout: float = 60) -> set[str]:
    """Probe /healthz on fresh connections until ``want`` distinct workers answered."""
    seen: set[str] = set()
    end = time.monotonic() + timeout
    while len(seen) < want and time.monotonic() < end:
        try:
            seen.add(httpx.get(url + "/healthz", timeout=5).headers["x-wasmprof-worker"])
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return seen


def test_two_workers_store_every_acknowledged_sample_once(db_url, tmp_path, data_dir):
    data = tmp_path / "data"
    store = ["--data", str(data), "--db", db_url]
    token = json.loads(wasmprof_cli("token", "create", "w", "--scopes", "ingest,read",
                                    "--json", *store).stdout)["token"]
    server = ServerProcess(data, db_url, extra_args=["--quiet", "--rate-limit", "0",
                                                     "--workers", "2"]).start()
    try:
        assert len(_workers_seen(server.url, 2)) == 2
        log = (data_dir / "dumps" / "crash_trap.O2.trap.classic.log").read_bytes()
        acked: dict[int, int] = {}            # batch k -> samples acknowledged
        events: list[int] = []
        served: list[str] = []
        failures: list[str] = []
        lock = threading.Lock()

        def client(c_idx: int) -> None:
            # a new connection per request, so the kernel spreads them over both processes
            headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
            try:
                for j in range(BATCHES_PER_CLIENT):
                    k = c_idx * BATCHES_PER_CLIENT + j
                    body, total = _batch(k)
                    r = httpx.post(server.url + "/api/v1/samples", content=body, timeout=60,
                                   params={"plugin": "multi", "batch_id": f"b{k}"},
                                   headers=headers)
                    with lock:
                        served.append(r.headers.get("x-wasmprof-worker", "?"))
                        if r.status_code == 200:
                            acked[k] = total
                        else:
                            failures.append(f"samples {r.status_code} {r.text[:200]}")
                    if j % 2 == 0:
                        r = httpx.post(server.url + "/api/v1/logs", content=log, timeout=60,
                                       params={"plugin": "multi"}, headers=headers)
                        with lock:
                            served.append(r.headers.get("x-wasmprof-worker", "?"))
                            if r.status_code == 200:
                                events.extend(e["id"] for e in r.json()["events"])
                            else:
                                failures.append(f"log {r.status_code} {r.text[:200]}")
            except httpx.HTTPError as e:
                with lock:
                    failures.append(repr(e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert failures == []
        assert len(acked) == CLIENTS * BATCHES_PER_CLIENT
        pids = {w.split("/")[1] for w in served}
        assert len(pids) == 2, served            # both processes served ingest requests

        with server.client(token) as c:
            tl = c.get("/api/v1/profiles/timeline", params={"plugin": "multi", "by": "thread",
                                                            "step": 86400}).json()
            got = {s["name"]: round(sum(v for _t, v in s["points"])) for s in tl["series"]}
            assert got == {f"batch-{k}": n for k, n in acked.items()}
            stats = c.get("/api/v1/stats").json()
            assert stats["profile_samples_stored"] == sum(acked.values())
            assert stats["profile_inputs"] == len(acked)
            # the same crash posted by every client, on either process: one event
            assert len(set(events)) == 1
            assert c.get(f"/api/v1/crash-events/{events[0]}").status_code == 200
            again = c.post("/api/v1/samples", content=_batch(0)[0],
                           params={"plugin": "multi", "batch_id": "b0"})
            assert again.status_code == 200
            assert c.get("/api/v1/stats").json()["profile_samples_stored"] == sum(acked.values())
    finally:
        server.stop()
    assert server.proc.returncode == 0
    lines = [json.loads(x) for x in server.log_tail(10 ** 7).splitlines() if x.startswith("{")]
    assert {x.get("worker", "").split("/")[0] for x in lines if x.get("worker")} == {"0", "1"}


def test_only_worker_zero_runs_the_periodic_threads(tmp_path):
    from fastapi.testclient import TestClient

    from wasmprof.config import ServerConfig, resolve_store
    from wasmprof.server.app import create_app
    from wasmprof.server.workers import worker_config

    def names(index: int) -> set[str]:
        cfg = worker_config(ServerConfig(store=resolve_store(str(tmp_path / "d"), None),
                                         rate_limit=0), index)
        before = {t.ident for t in threading.enumerate()}
        with TestClient(create_app(cfg)):
            return {t.name for t in threading.enumerate()
                    if t.ident not in before and t.name.startswith("wasmprof-")}

    first, other = names(0), names(1)
    assert first == {"wasmprof-indexer", "wasmprof-puller", "wasmprof-profiles",
                     "wasmprof-webhooks", "wasmprof-health"}
    assert other == {"wasmprof-indexer", "wasmprof-puller"}
    assert os.environ.get("WASMPROF_WORKER") is None

"""kill -9 the server in the middle of concurrent ingest, restart it on the same store:
every acknowledged sample batch and crash log is still there (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from server_proc import ServerProcess, wasmprof_cli

pytestmark = pytest.mark.slow


def test_acknowledged_data_survives_kill_9(db_url, tmp_path, data_dir):
    data = tmp_path / "data"
    store = ["--data", str(data), "--db", db_url]
    token = json.loads(wasmprof_cli("token", "create", "dur", "--scopes", "ingest,read",
                                    "--json", *store).stdout)["token"]
    server = ServerProcess(data, db_url, extra_args=["--quiet", "--rate-limit", "0"]).start()
    log = (data_dir / "dumps" / "crash_trap.O2.trap.classic.log").read_bytes()
    batch = json.dumps({"modules": [{"id": "m", "text_base": 4096}],
                        "samples": [{"stack": [4100 + i, 9000], "count": 1} for i in range(200)]})
    acked_batches: list[int] = []
    acked_events: list[int] = []
    stop = threading.Event()

    def client(i: int) -> None:
        with server.client(token, timeout=10) as c:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if n % 4 == 0:
                        r = c.post("/api/v1/logs", params={"plugin": "dur"}, content=log)
                        if r.status_code == 200:
                            acked_events.extend(e["id"] for e in r.json()["events"])
                    else:
                        r = c.post("/api/v1/samples", params={"plugin": "dur", "batch_id": f"{i}-{n}"},
                                   content=batch)
                        if r.status_code == 200:
                            acked_batches.append(r.json()["id"])
                except httpx.HTTPError:
                    return                                   # the server died mid-request

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked_batches) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked_batches) >= 40 and acked_events
    restarted = ServerProcess(data, db_url, extra_args=["--quiet", "--rate-limit", "0"]).start()
    try:
        with restarted.client(token) as c:
            got = c.get("/api/v1/profiles/inputs",
                        params={"ids": ",".join(map(str, acked_batches))}).json()
            assert got["missing"] == [] and len(got["found"]) == len(set(acked_batches))
            for eid in acked_events:
                assert c.get(f"/api/v1/crash-events/{eid}").status_code == 200
            stats = c.get("/api/v1/stats").json()
            assert stats["samples"] >= 200 * len(acked_batches)
            # the restarted server still accepts data
            assert c.post("/api/v1/logs", params={"plugin": "dur"}, content=log).status_code == 200
    finally:
        restarted.stop()

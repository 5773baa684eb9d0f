"""Two ``wasmprof serve`` processes (replicas) sharing one PostgreSQL database, each with
its own local data dir (blob cache + symbol index): what one accepts, the other serves."""

from __future__ import annotations

import json
import threading

import pytest

from pg import wait_until
from server_proc import ServerProcess, wasmprof_cli
from logs_util import occurrence

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def replicas(pg_url, tmp_path):
    out = wasmprof_cli("token", "create", "both", "--scopes", "admin", "--json",
                       "--data", str(tmp_path / "cli"), "--db", pg_url)
    token = json.loads(out.stdout)["token"]
    a = ServerProcess(tmp_path / "a", pg_url, extra_args=["--quiet", "--rate-limit", "0"]).start()
    b = ServerProcess(tmp_path / "b", pg_url, extra_args=["--quiet", "--rate-limit", "0"]).start()
    yield a, b, token
    a.stop()
    b.stop()


def test_two_replicas_share_modules_groups_and_counts(replicas, data_dir):
    a, b, token = replicas
    wasm = data_dir / "wasm" / "crash_oob.O2.wasm"
    with a.client(token) as ca:
        m = ca.post("/api/v1/modules", params={"plugin": "shared"},
                    files={"file": (wasm.name, wasm.read_bytes())}).json()
        wait_until(lambda: ca.get(f"/api/v1/modules/{m['id']}").json()["symbols"]["index_ready"])
    # replica B never saw the upload: it fetches the blob from PostgreSQL into its own cache
    assert not (b.data_dir / "blobs" / m["sha256"][:2] / m["sha256"]).exists()
    log = (data_dir / "dumps" / "crash_oob.O2.load.classic.log").read_bytes()
    with b.client(token) as cb:
        first = cb.post("/api/v1/logs", params={"plugin": "shared"}, content=log).json()
        ev = cb.get(f"/api/v1/crash-events/{first['events'][0]['id']}").json()
    assert (b.data_dir / "blobs" / m["sha256"][:2] / m["sha256"]).exists()
    assert any(f["status"] == "exact" for f in ev["frames"])
    gid = first["groups"][0]["id"]
    results, errors = [], []

    def post(server, k):
        try:
            with server.client(token) as c:
                for j in range(5):
                    # the same crash again (a shipper retrying, on either replica): stored once
                    r = c.post("/api/v1/logs", params={"plugin": "shared"}, content=log)
                    r.raise_for_status()
                    assert r.json()["new_events"] == 0 and r.json()["groups"] == []
                    # another occurrence of it
                    r = c.post("/api/v1/logs", params={"plugin": "shared"},
                               content=occurrence(log, 1 + 5 * k + j))
                    r.raise_for_status()
                    results.append(r.json()["groups"][0])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=post, args=((a, b)[i % 2], i)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {g["id"] for g in results} == {gid} and not any(g["new"] for g in results)
    for server in (a, b):
        with server.client(token) as c:
            groups = c.get("/api/v1/crash-groups", params={"plugin": "shared"}).json()["groups"]
            assert [(g["id"], g["count"]) for g in groups] == [(gid, 31)]
    # resolving on A is seen on B, and B's next event regresses it exactly once
    with a.client(token) as ca:
        ca.post(f"/api/v1/crash-groups/{gid}/resolve")
    with b.client(token) as cb:
        assert cb.post("/api/v1/logs", params={"plugin": "shared"},
                       content=occurrence(log, 99)).json()["groups"][0]["regressed"] is True
        assert cb.get(f"/api/v1/crash-groups/{gid}").json()["status"] == "regressed"

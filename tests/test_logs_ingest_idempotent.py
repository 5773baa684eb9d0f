"""Log ingest is idempotent (SQLite and PostgreSQL): the same log posted twice, overlapping
windows of one stream (a shipper retrying) and replayed ``Idempotency-Key`` posts store each
crash event once; gzip bodies within the cap; the envelope shapes shippers post."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from test_logs_envelopes import bare_log
from wasmprof.config import ServerConfig, resolve_store
from wasmprof.ingest import envelopes
from wasmprof.ingest.crashlog import OPEN_AT_END
from wasmprof.ingest.logline import LineFormat
from wasmprof.server.app import create_app
from wasmprof.server.crash_service import IngestInProgress
from wasmprof.server.service import Service

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_LOG = ROOT / "samples" / "logs" / "higress-gateway.log"


@pytest.fixture
def svc(tmp_path, db_url):
    cfg = ServerConfig.from_env(resolve_store(tmp_path / "data", db_url), demo=True,
                                background=False)
    return Service(cfg)


def counts(c: TestClient) -> tuple[int, dict[str, int]]:
    groups = c.get("/api/v1/crash-groups", params={"limit": 1000}).json()["groups"]
    return sum(g["count"] for g in groups), {g["title"]: g["count"] for g in groups}


def test_posting_a_log_twice_leaves_the_event_counts_unchanged(svc):
    body = SAMPLE_LOG.read_bytes()
    with TestClient(create_app(svc.config, svc)) as c:
        first = c.post("/api/v1/logs", content=body).json()
        assert first["crashes"] == first["new_events"] >= 2 and first["duplicate_events"] == 0
        before = counts(c)
        again = c.post("/api/v1/logs", content=body).json()
        assert (again["crashes"], again["new_events"], again["duplicate_events"]) == (
            first["crashes"], 0, first["crashes"])
        assert again["events"] == [] and counts(c) == before
        assert before[0] == first["crashes"]


@pytest.mark.parametrize("fmt", [LineFormat.ENVOY, LineFormat.ISTIO])
def test_overlapping_windows_store_each_crash_once(svc, fmt):
    """A shipper's retry sends a window that overlaps the last one; the crash cut at the end
    of the first window (partial) is replaced by its complete copy."""
    lines = bare_log(fmt)
    go = next(i for i, x in enumerate(lines) if "go-auth" in x)             # Go's first record
    cut = next(i for i, x in enumerate(lines) if i > go and "in-VM backtrace" in x) + 2
    a, b = lines[:cut], lines[go:]          # B starts at a record boundary before the cut crash
    with TestClient(create_app(svc.config, svc)) as c:
        ra = c.post("/api/v1/logs", content="\n".join(a) + "\n").json()
        assert ra["new_events"] == 4
        events = [c.get(f"/api/v1/crash-events/{e['id']}").json() for e in ra["events"]]
        assert [OPEN_AT_END in e["notes"] for e in events] == [False, False, False, True]
        rb = c.post("/api/v1/logs", content="\n".join(b) + "\n").json()
        assert (rb["new_events"], rb["duplicate_events"]) == (1, 0)
        assert counts(c)[0] == 4                     # the partial one was replaced
        ev = c.get(f"/api/v1/crash-events/{rb['events'][0]['id']}").json()
        assert not ev["partial"] and ev["panic"]["kind"] == "go" and len(ev["raw_frames"]) == 3
        rc = c.post("/api/v1/logs", content="\n".join(lines) + "\n").json()
        assert (rc["new_events"], rc["duplicate_events"]) == (0, 4) and counts(c)[0] == 4
        rd = c.post("/api/v1/logs", content="\n".join(a) + "\n").json()    # the cut one again
        assert (rd["new_events"], rd["duplicate_events"]) == (0, 4) and counts(c)[0] == 4


def test_idempotency_key_replays_the_first_answer(svc):
    body = "\n".join(bare_log()) + "\n"
    with TestClient(create_app(svc.config, svc)) as c:
        r1 = c.post("/api/v1/logs", content=body, headers={"Idempotency-Key": "batch-7"}).json()
        r2 = c.post("/api/v1/logs", content=b"anything else",
                    headers={"Idempotency-Key": "batch-7"}).json()
        assert r2["duplicate"] is True and r2["ingest_id"] == r1["ingest_id"]
        assert r2["new_events"] == 0 and r2["crashes"] == r1["crashes"] == 4
        r3 = c.post("/api/v1/logs", params={"batch_id": "batch-8"}, content=body).json()
        assert r3.get("duplicate") is None and r3["new_events"] == 0   # same crashes, new key
        r4 = c.post("/api/v1/logs", params={"batch_id": "batch-8"}, content=body).json()
        assert r4["duplicate"] is True
        assert counts(c)[0] == 4
        bad = c.post("/api/v1/logs", content=body, headers={"Idempotency-Key": "a\x01b"})
        assert bad.status_code == 422 and bad.json()["source"] == "header.idempotency-key"
    # a first post still running: the second one is told so (409), not stored twice
    with svc.store.db.tx() as tx:
        tx.execute("INSERT INTO log_ingest_keys (idempotency_key, created_at) VALUES (?, 0)",
                   ("running",))
    with pytest.raises(IngestInProgress):
        svc.crashes.ingest_log(io.BytesIO(body.encode()), source="x", size=1, sha256=None,
                               plugin=None, version=None, labels={}, idempotency_key="running")
    with TestClient(create_app(svc.config, svc)) as c:
        r = c.post("/api/v1/logs", content=body, headers={"Idempotency-Key": "running"})
        assert r.status_code == 409 and r.json()["source"] == "Idempotency-Key"


def test_gzip_bodies_and_their_cap(svc, tmp_path):
    body = "\n".join(bare_log()).encode() + b"\n"
    with TestClient(create_app(svc.config, svc)) as c:
        r = c.post("/api/v1/logs", content=gzip.compress(body),
                   headers={"Content-Encoding": "gzip"})
        assert r.status_code == 200 and r.json()["crashes"] == 4
        r = c.post("/api/v1/logs", content=gzip.compress(body), params={"plugin": "other"})
        assert r.status_code == 200 and r.json()["crashes"] == 4     # gzip magic, no header
        r = c.post("/api/v1/logs", content=gzip.compress(body)[:-9],
                   headers={"Content-Encoding": "gzip"}, params={"plugin": "cut"})
        assert r.status_code == 400 and "gzip" in r.json()["error"]
        r = c.post("/api/v1/logs", content=b"\x1f\x8bnot really gzip",
                   headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400 and r.json()["source"] == "body"
        half = len(body) // 2                       # `cat a.gz b.gz`: two gzip members
        r = c.post("/api/v1/logs", content=gzip.compress(body[:half]) +
                   gzip.compress(body[half:]), params={"plugin": "two-members"})
        assert r.status_code == 200 and r.json()["crashes"] == 4
        assert r.json()["bytes"] == len(body)
    small = ServerConfig.from_env(resolve_store(tmp_path / "small", None), demo=True,
                                  background=False)
    small.max_log_bytes = 1 << 20
    svc2 = Service(small)
    bomb = gzip.compress(b"x" * (4 << 20))          # 4 KiB on the wire, 4 MiB inflated
    with TestClient(create_app(small, svc2)) as c:
        r = c.post("/api/v1/logs", content=bomb, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400 and "too large" in r.json()["error"]
        assert c.get("/api/v1/crash-groups").json()["total"] == 0


@pytest.mark.parametrize("shape", ["fluent-bit", "msg-records", "ndjson-array", "loki", "cri",
                                   "docker", "kubectl-prefix"])
def test_shippers_bodies(svc, shape):
    body = envelopes.wrap(shape, bare_log())
    with TestClient(create_app(svc.config, svc)) as c:
        r = c.post("/api/v1/logs", content=body,
                   headers={"Content-Type": "application/json" if shape in (
                       "ndjson-array", "loki") else "text/plain"}).json()
        assert r["crashes"] == 4, r
        groups = {g["plugin"] for g in c.get("/api/v1/crash-groups").json()["groups"]}
        assert "higress-system.go-auth" in groups and "higress-system.rust-auth" in groups
        ev = c.get(f"/api/v1/crash-events/{r['events'][0]['id']}").json()
        assert ev["panic"]["kind"] == "rust" and ev["panic"]["location"] == "src/dispatcher.rs:424:14"
        assert ev["breadcrumbs"][0]["text"] == "checking token"


def test_panic_reaches_the_api_and_the_alert_event(svc):
    body = "\n".join(bare_log()) + "\n"
    with TestClient(create_app(svc.config, svc)) as c:
        r = c.post("/api/v1/logs", content=body).json()
        go = next(e for e in r["events"] if e["plugin"] == "higress-system.go-auth")
        assert go["panic"]["kind"] == "go" and go["panic"]["location"] == "/src/plugin/main.go:42"
        ev = c.get(f"/api/v1/crash-events/{go['id']}").json()
        assert ev["frames"] == []                  # no module: not symbolized (yet) ...
        text = ev["panic"]["frames"]               # ... but Go's own frames are there
        assert [(f["function"], f["line"], f["status"]) for f in text] == [
            ("main.handle", 42, "runtime-text"), ("main.main", 77, "runtime-text")]
        tg = next(e for e in r["events"] if e["plugin"] == "higress-system.tg-filter")
        g = c.get(f"/api/v1/crash-groups/{tg['group_id']}").json()
        assert g["basis"] == "panic" and g["title"] == "panic: runtime error: slice out of range"
    from wasmprof.alerts.events import AlertEvent, EventType
    from wasmprof.alerts.payloads import render
    from wasmprof.alerts.hooks import crash_alert
    alert = crash_alert(EventType.CRASH_NEW_GROUP, g, tg, key="k", now=0.0)
    body = orjson.loads(render(alert, "json", delivery_id="d", base_url="http://x"))
    assert body["panic"] == {"kind": "tinygo", "language": "TinyGo",
                             "message": "runtime error: slice out of range", "location": None,
                             "recovered": False, "partial": False}
    assert AlertEvent.from_dict(alert.to_dict()).panic == alert.panic
    slack = orjson.loads(render(alert, "slack", delivery_id="d", base_url="http://x"))
    assert any("TinyGo: runtime error" in str(b) for b in slack["blocks"])

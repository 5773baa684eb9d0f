"""Auth configuration, rate limits (429 + Retry-After), body caps (413), structured logs
and the --demo loader, at unit level with FastAPI's TestClient (real app, real store)."""

from __future__ import annotations

import json
import logging
import shutil

from fastapi.testclient import TestClient

from wasmprof.config import ServerConfig, parse_scopes, resolve_store
from wasmprof.server.app import JsonLogFormatter, create_app
from wasmprof.store.state import open_store
from wasmprof.store.tokens import create_token


def _app(tmp_path, **kw):
    cfg = ServerConfig.from_env(resolve_store(tmp_path / "data", None), background=False, **kw)
    return create_app(cfg), cfg


def test_anonymous_access_only_when_configured(tmp_path):
    app, _ = _app(tmp_path)
    with TestClient(app) as c:
        assert c.get("/api/v1/crash-groups").status_code == 401
        assert c.get("/healthz").status_code == 200            # health needs no token
    app, _ = _app(tmp_path, anonymous_scopes=parse_scopes("read"))
    with TestClient(app) as c:
        assert c.get("/api/v1/crash-groups").status_code == 200
        assert c.post("/api/v1/logs", content=b"x\n").status_code == 401
    app, cfg = _app(tmp_path, demo=True)
    assert cfg.anonymous_scopes == {"ingest", "read", "admin"}
    with TestClient(app) as c:
        assert c.post("/api/v1/logs", content=b"x\n").status_code == 200


def test_rate_limit_answers_429_with_retry_after_per_token(tmp_path):
    app, cfg = _app(tmp_path, rate_limit=1.0, rate_burst=3)
    store = open_store(cfg.store)
    _, t1 = create_token(store.db, "one", {"read"})
    _, t2 = create_token(store.db, "two", {"read"})
    with TestClient(app) as c:
        codes = [c.get("/api/v1/stats", headers={"Authorization": f"Bearer {t1}"}).status_code
                 for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        r = c.get("/api/v1/stats", headers={"Authorization": f"Bearer {t1}"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        # another token has its own bucket
        assert c.get("/api/v1/stats", headers={"Authorization": f"Bearer {t2}"}).status_code == 200
        assert "wasmprof_rate_limited_total 3" in c.get("/metrics").text
    store.close()


def test_body_caps_answer_413_before_reading_everything(tmp_path):
    app, _ = _app(tmp_path, demo=True, max_log_bytes=1000, max_module_bytes=1000)
    with TestClient(app) as c:
        r = c.post("/api/v1/logs", content=b"a" * (2 << 20))
        assert r.status_code == 413 and r.json()["limit"] > 0

        def chunks():                                          # no Content-Length: streamed
            for _ in range(64):
                yield b"b" * 65536
        r = c.post("/api/v1/logs", content=chunks())
        assert r.status_code == 413
        assert c.post("/api/v1/logs", content=b"small\n").status_code == 200
        assert c.get("/api/v1/stats").json()["log_ingests"] == 1


def test_json_log_lines(caplog):
    rec = logging.LogRecord("wasmprof.access", logging.INFO, __file__, 1, "request", None, None)
    rec.path = "/api/v1/logs"
    rec.status = 200
    line = JsonLogFormatter().format(rec)
    d = json.loads(line)
    assert d["msg"] == "request" and d["path"] == "/api/v1/logs" and d["status"] == 200
    assert "\n" not in line


def test_demo_loads_samples_into_groups_and_profiles(tmp_path, data_dir, monkeypatch):
    samples = tmp_path / "samples"
    (samples / "modules").mkdir(parents=True)
    (samples / "logs").mkdir()
    (samples / "profiles").mkdir()
    shutil.copy(data_dir / "wasm" / "crash_oob.O2.wasm", samples / "modules" / "crash_oob.O2.wasm")
    shutil.copy(data_dir / "wasm" / "fib.O2.wasm", samples / "modules" / "fib.O2.wasm")
    shutil.copy(data_dir / "aot" / "fib.O2.perf.aot", samples / "modules" / "fib.O2.perf.aot")
    shutil.copy(data_dir / "dumps" / "crash_oob.O2.load.classic.log", samples / "logs" / "crash_oob.log")
    shutil.copy(data_dir / "perf" / "fib.O2.perf.g.perf-script.txt",
                samples / "profiles" / "fib.O2.perf.g.perf-script.txt")
    shutil.copy(data_dir / "perf" / "fib.O2.perf.g.perf-20737.map",
                samples / "profiles" / "fib.O2.perf.g.perf-20737.map")
    monkeypatch.setenv("WASMPROF_SAMPLES", str(samples))
    from wasmprof.server.demo import load_samples
    from wasmprof.server.service import Service
    cfg = ServerConfig.from_env(resolve_store(tmp_path / "data", None), demo=True, background=False)
    svc = Service(cfg)
    loaded = load_samples(svc)
    assert loaded["modules"] == 3 and loaded["crashes"] == 1 and loaded["profiles"] == 1
    assert loaded["errors"] == []
    with TestClient(create_app(cfg, svc)) as c:
        groups = c.get("/api/v1/crash-groups").json()["groups"]
        assert groups[0]["plugin"] == "crash_oob" and groups[0]["top_frames"][1]["status"] == "exact"
        ss = c.get("/api/v1/profiles", params={"plugin": "fib", "format": "json"}).json()
        assert ss["total"] > 0
        assert any("fib" in f["function"] and f["self"] > 0 for f in ss["functions"])

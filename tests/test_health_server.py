"""Plugin health through the real app: a real HTTP stats endpoint in Envoy's shapes (changed
between scrapes, restarted), the real store (SQLite and PostgreSQL), the real alerts worker
and a real webhook receiver. The monitor's clock is injected, so an hour of 30 s scrapes
takes a few seconds; one test runs ``wasmprof serve --scrape-envoy`` for real."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from envoy_stats import PAGE, Gateway, StatsServer, memory_block
from pg import wait_until
from receiver import Receiver
from server_proc import ServerProcess
from test_alerts_units import documented_verifier
from wasmprof.config import ServerConfig, resolve_store
from wasmprof.health import monitor_for
from wasmprof.ingest.logline import LineFormat, format_record
from wasmprof.server.app import create_app

SECRET = "health-test-secret"
FAST = {"WASMPROF_WEBHOOK_BASE_DELAY": "0.05", "WASMPROF_WEBHOOK_MAX_DELAY": "0.2",
        "WASMPROF_WEBHOOK_TIMEOUT": "2", "WASMPROF_WEBHOOK_POLL": "0.05"}


class Clock:
    def __init__(self) -> None:
        self.t = float(int(time.time()) - 4 * 3600)

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def app(tmp_path, monkeypatch, request):
    """The app with its lifespan (alerts worker running), the health thread paused and the
    monitor on an injected clock."""
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)
    url = request.getfixturevalue("pg_url") if getattr(request, "param", None) == "postgres" else None
    cfg = ServerConfig(store=resolve_store(tmp_path / "data", url),
                       anonymous_scopes=frozenset({"read", "admin", "ingest"}), log_json=False)
    with TestClient(create_app(cfg)) as c:
        mon = monitor_for(c.app.state.service)
        mon.stop_thread()
        mon.clock = Clock()
        yield c, mon


def ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json()


def deliveries_of(rx, event):
    return [orjson.loads(q.body) for q in rx.requests if q.header("X-Wasmprof-Event") == event]


@pytest.mark.parametrize("app", [None, "postgres"], indirect=True, ids=["sqlite", "postgres"])
def test_growth_crash_loop_restart_end_to_end(app, data_dir):
    c, mon = app
    clock = mon.clock
    verify = documented_verifier()
    # the plugin is known to wasmprof by its real name: stats call it key_auth
    ok(c.post("/api/v1/modules?plugin=key-auth&version=1.0",
              content=(data_dir / "wasm" / "crash_oob.O2.wasm").read_bytes()), 201)
    g = Gateway(flavor="higress", noise_clusters=30)
    g.add("key-auth")
    g.add("bot-detect")
    g.add("waf")
    with StatsServer(g) as srv, Receiver() as rx, Receiver() as rx_waf:
        ok(c.post("/api/v1/webhooks", json={"url": rx.url, "events": ["plugin.*"],
                                            "secret": SECRET}), 201)
        ok(c.post("/api/v1/webhooks", json={"url": rx_waf.url, "events": ["plugin.*"],
                                            "secret": SECRET, "plugin": "waf"}), 201)
        ok(c.put("/api/v1/health/settings", json={"memory_window": 1800, "crash_window": 600,
                                                  "crash_threshold": 3}))
        target = ok(c.post("/api/v1/health/targets", json={"url": srv.url, "interval": 30,
                                                           "name": "gw-a"}), 201)
        restart_at = None
        for i in range(75):
            g.grow("key-auth", 1)                    # +1 page per worker and scrape: a leak
            if i == 35:
                g.grow("waf", 60)                    # one step: not steady growth
            if 20 <= i < 25 or i == 65:
                g.crash("bot-detect")                # 5 crashes, then 1 after the restart
            if i == 60:
                g.restart()
                restart_at = clock.t
            res = mon.run_once()
            assert [s["ok"] for s in res["scrapes"]] == [True], res
            clock.t += 30
            g.tick(30)
        wait_until(lambda: len(rx.requests) >= 2, timeout=30)
        time.sleep(0.5)                              # nothing else may arrive
        mem = deliveries_of(rx, "plugin.memory_growth")
        loop = deliveries_of(rx, "plugin.crash_loop")
        assert len(mem) == 1 and len(loop) == 1, [q.body[:200] for q in rx.requests]
        assert rx_waf.requests == []                 # the step never looked like growth
        for q in rx.requests:
            assert verify(SECRET, q.body, q.headers)
        m = mem[0]
        assert m["plugin"] == "key-auth"
        h = m["health"]
        assert h["window_seconds"] == 1800
        assert h["slope_bytes_per_second"] == pytest.approx(2 * PAGE / 30, rel=1e-6)
        assert h["slope_bytes_per_hour"] == pytest.approx(2 * PAGE * 120, rel=1e-6)
        assert h["r2"] == pytest.approx(1.0) and h["source"] == "gw-a"
        assert h["seconds_to_limit"] > 0 and h["projected_limit_at"]
        assert h["window_start"] < h["window_end"]
        assert "#/health?plugin=key-auth" in m["links"]["dashboard"]
        assert loop[0]["plugin"] == "bot_detect"     # no module: Envoy's name for it
        assert loop[0]["health"]["crashes"] == 3 and loop[0]["health"]["threshold"] == 3

        # counters across the restart: the increases add up to the 6 crashes that happened
        start, end = clock.t - 76 * 30, clock.t
        view = ok(c.get("/api/v1/health/series", params={
            "plugin": "bot-detect", "metric": "crashes,rebuilds,memory_bytes",
            "from": start, "to": end, "step": 30}))
        assert sum(v or 0 for v in view["totals"]["crashes"]) == 6
        assert sum(v or 0 for v in view["totals"]["rebuilds"]) == 6
        crash_series = [s for s in view["series"] if s["metric"] == "crashes"]
        assert crash_series[0]["resets"] == [restart_at]
        assert all(v is None or v >= 0 for v in view["totals"]["crashes"])
        process = ok(c.get("/api/v1/health/series", params={"metric": "restarts", "from": start,
                                                             "to": end}))
        assert sum(v or 0 for v in process["totals"]["restarts"]) == 1
        key = ok(c.get("/api/v1/health/series", params={"plugin": "key-auth", "from": start,
                                                         "to": end, "step": 30}))
        threads = sorted(s["thread"] for s in key["series"] if s["metric"] == "memory_bytes")
        assert threads == ["worker_0", "worker_1"]
        levels = [v for v in key["totals"]["memory_bytes"] if v is not None]
        assert levels[0] == 2 * 17 * PAGE and max(levels) == 2 * (16 + 60) * PAGE

        # rankings, overview, alerts, /metrics
        by_growth = ok(c.get("/api/v1/health/plugins", params={"window": 3600}))["plugins"]
        assert by_growth[0]["plugin"] == "key-auth"
        by_crash = ok(c.get("/api/v1/health/plugins", params={"sort": "crash_rate",
                                                               "window": 3600}))["plugins"]
        assert by_crash[0]["plugin"] == "bot_detect" and by_crash[0]["crashes"] == 6
        ov = ok(c.get("/api/v1/health/overview"))
        assert ov["targets"][0]["status"] == "ok" and ov["failing"] == []
        assert [(a["kind"], a["plugin"]) for a in ov["alerts"]] == [
            ("plugin.memory_growth", "key-auth")]    # still growing until the restart
        episodes = ok(c.get("/api/v1/health/alerts", params={"status": "all"}))["alerts"]
        assert sorted((a["kind"], a["plugin"], a["status"]) for a in episodes) == [
            ("plugin.crash_loop", "bot_detect", "cleared"),     # a crash window without a loop
            ("plugin.memory_growth", "key-auth", "active")]
        metrics = c.get("/metrics").text
        assert 'wasmprof_health_scrape_up{target="gw-a"} 1' in metrics
        assert 'wasmprof_health_scrape_age_seconds{target="gw-a"} 30' in metrics
        assert 'wasmprof_plugin_memory_bytes{plugin="key-auth"}' in metrics
        assert 'wasmprof_plugin_health_alerts_active{kind="plugin.memory_growth",plugin="key-auth"} 1' in metrics
        assert ok(c.get(f"/api/v1/health/targets/{target['id']}"))["scrapes"] == 75


def test_upstream_reloads_and_vm_memory(app):
    c, mon = app
    clock = mon.clock
    g = Gateway(flavor="upstream")
    g.add("rate-limit")
    g.add("cache")
    with StatsServer(g) as srv:
        ok(c.put("/api/v1/health/settings", json={"memory_window": 600, "crash_threshold": 3}))
        ok(c.post("/api/v1/health/targets", json={"url": srv.url, "interval": 15}), 201)
        fired = []
        for i in range(50):
            g.grow("cache", 1, thread="worker_0")
            if i in (10, 12, 14):
                g.crash("rate-limit")                # vm_reload counts rebuilds
            res = mon.run_once()
            fired += [(f["kind"], f["plugin"]) for f in res["check"]["fired"]]
            clock.t += 15
    assert fired == [("plugin.memory_growth", "cache"), ("plugin.crash_loop", "rate_limit")] or \
        sorted(fired) == [("plugin.crash_loop", "rate_limit"), ("plugin.memory_growth", "cache")]
    rows = ok(c.get("/api/v1/health/plugins", params={"window": 900}))["plugins"]
    cache = next(r for r in rows if r["plugin"] == "cache")
    assert cache["memory_growth"]["steady"]
    assert cache["memory_growth"]["slope"] == pytest.approx(PAGE / 15, rel=1e-6)


def test_scrape_failures_are_visible_and_block_nothing(app, data_dir):
    c, mon = app
    good = Gateway()
    good.add("key-auth")
    hang_started, release = threading.Event(), threading.Event()
    with StatsServer(good) as ok_srv, StatsServer(good) as down, StatsServer(good) as html, \
            StatsServer(good) as slow:
        down.fail = 503
        html.gateway = type("Html", (), {"render": lambda self: b"<html>login</html>\n"})()

        class Hanging:
            def render(self):
                hang_started.set()
                release.wait(10)
                return b"# nothing\n"
        slow.gateway = Hanging()
        for s, t in ((ok_srv, None), (down, None), (html, None), (slow, 0.5)):
            body = {"url": s.url, "interval": 30}
            if t:
                body["timeout"] = t
            ok(c.post("/api/v1/health/targets", json=body), 201)
        res = mon.run_once()
        assert sorted(r["ok"] for r in res["scrapes"]) == [False, False, True, True]
        ov = ok(c.get("/api/v1/health/overview"))
        by_url = {t["url"]: t for t in ov["targets"]}
        assert by_url[ok_srv.url]["status"] == "ok"
        assert by_url[down.url]["status"] == "failing"
        assert by_url[down.url]["last_error"].startswith("HTTP 503")
        assert by_url[html.url]["status"] == "warning"
        assert "no Wasm metrics" in by_url[html.url]["last_error"]
        assert "timeout" in by_url[slow.url]["last_error"]
        assert {t["url"] for t in ov["failing"]} == {down.url, html.url, slow.url}
        release.set()
        # the monitor thread scraping a hanging gateway holds up neither ingest nor the API
        hang_started.clear()
        release.clear()
        mon.clock = time.time
        ok(c.patch(f"/api/v1/health/targets/{by_url[slow.url]['id']}", json={"timeout": 5}))
        mon.start()
        try:
            assert hang_started.wait(20)
            r = c.post("/api/v1/logs?plugin=key-auth",
                       content=(data_dir / "dumps" / "crash_oob.O2.load.classic.log").read_bytes())
            assert r.status_code == 200 and r.json()["crashes"] == 1
            assert ok(c.get("/api/v1/health/overview"))["targets"]
            assert not release.is_set()              # the scrape is still hanging
        finally:
            release.set()
            mon.stop_thread()


def test_wamr_blocks_in_posted_logs(app, data_dir):
    c, mon = app
    dump = (data_dir / "dumps" / "crash_oob.O2.load.classic.log").read_text()
    parts = [dump]
    for i in range(3):
        ts = f"2025-11-03 08:{10 + i:02d}:00.000"
        parts.append(format_record(LineFormat.ENVOY, "memory check", timestamp=ts, level="info"))
        parts.append("\n" + memory_block(uptime=600 + 60 * i, memories=(20 + 4 * i) * PAGE))
    r = ok(c.post("/api/v1/logs?plugin=key-auth&source=pod-7", content="".join(parts).encode()))
    assert r["crashes"] == 1
    assert r["memory"]["blocks"] == 3 and r["memory"]["plugins"] == ["key-auth"]
    view = ok(c.get("/api/v1/health/series", params={
        "plugin": "key-auth", "metric": "memory_bytes", "from": "2025-11-03T08:00:00Z",
        "to": "2025-11-03T09:00:00Z", "step": 60}))
    s = view["series"][0]
    assert (s["source"], s["runtime"], s["thread"], s["origin"]) == (
        "log:pod-7", "wamr", "7F3A2C1FE640", "wamr")
    assert [v for v in s["values"] if v is not None] == [20 * PAGE, 24 * PAGE, 28 * PAGE]

    # not tied to a plugin by the query: a `wasm log <plugin>` record just before names it,
    # else the block is per process
    named = format_record(LineFormat.ENVOY, "wasm log waf waf_root waf_vm: tick",
                          timestamp="2025-11-03 08:20:00.000", level="info")
    text = (named + "\n" + memory_block(uptime=10, tid="AB12", memories=9 * PAGE)
            + "unrelated\n" * 10 + memory_block(uptime=20, tid="CD34", memories=3 * PAGE))
    r = ok(c.post("/api/v1/logs?source=pod-8", content=text.encode()))
    assert r["memory"]["blocks"] == 2 and r["memory"]["per_process"] == 1
    span = {"from": "2025-11-03T08:00:00Z", "to": "2025-11-03T09:00:00Z"}
    waf = ok(c.get("/api/v1/health/series", params={"plugin": "waf", "metric": "memory_bytes", **span}))
    assert [(s["thread"], s["last_value"]) for s in waf["series"]] == [("AB12", 9 * PAGE)]
    proc = ok(c.get("/api/v1/health/series", params={"metric": "memory_bytes", **span}))
    assert [(s["source"], s["thread"], s["last_value"]) for s in proc["series"]] == [
        ("log:pod-8", "CD34", 3 * PAGE)]


def test_bad_input_is_refused_with_the_field(app):
    c, _mon = app
    # schema violations are 422 naming the field; what only the values together rule out
    # (an empty or too long time range) is a 400 naming `from`
    bad = [
        ("post", "/api/v1/health/targets", {"json": {"url": "ftp://x/stats"}}, 422, "body.url"),
        ("post", "/api/v1/health/targets", {"json": {"url": "http://x:1/s#frag"}}, 422, "body.url"),
        ("post", "/api/v1/health/targets", {"json": {"url": "http://x:1/s", "interval": 0}}, 422, "body.interval"),
        ("post", "/api/v1/health/targets", {"json": {"url": "http://x:1/s", "every": 3}}, 422, "body.every"),
        ("post", "/api/v1/health/targets", {"content": b"{nope",
                                            "headers": {"content-type": "application/json"}}, 400, "body"),
        ("post", "/api/v1/health/targets", {"json": {"url": "http://x:1/s", "interval": True}}, 422, "body.interval"),
        ("put", "/api/v1/health/settings", {"json": {"memory_window": -1}}, 422, "body.memory_window"),
        ("put", "/api/v1/health/settings", {"json": {"crash_threshold": 2.5}}, 422, "body.crash_threshold"),
        ("put", "/api/v1/health/settings", {"json": {"colour": 1}}, 422, "body.colour"),
        ("put", "/api/v1/health/settings", {"json": [1]}, 422, "body"),
        ("get", "/api/v1/health/series?metric=heat", {}, 422, "query.metric"),
        ("get", "/api/v1/health/series?from=10&to=5", {}, 400, "from"),
        ("get", "/api/v1/health/series?from=0&to=9000000", {}, 400, "from"),
        ("get", "/api/v1/health/series?to=nan", {}, 422, "query.to"),
        ("get", "/api/v1/health/series?from=yesterday", {}, 422, "query.from"),
        ("get", "/api/v1/health/plugins?sort=size", {}, 422, "query.sort"),
        ("get", "/api/v1/health/alerts?status=open", {}, 422, "query.status"),
    ]
    for method, path, kw, status, field in bad:
        r = getattr(c, method)(path, **kw)
        assert r.status_code == status, (path, kw, r.text)
        assert r.json()["source"] == field, (path, r.json())
    for path in ("/api/v1/health/targets/0", f"/api/v1/health/targets/{2 ** 63}",
                 "/api/v1/health/series?step=0"):
        assert c.get(path).status_code == 422, path
    # a subnormal step is valid (> 0) and is widened to the bucket cap, not an overflow
    tiny = ok(c.get("/api/v1/health/series", params={"step": "5e-324", "from": 0, "to": 86400}))
    assert 0 < tiny["step"] <= 86400 and len(tiny["times"]) <= 2000
    assert c.get("/api/v1/health/targets/99").status_code == 404
    assert c.delete("/api/v1/health/targets/99").status_code == 404
    assert c.post("/api/v1/health/targets/99/scrape").status_code == 404
    t = ok(c.post("/api/v1/health/targets", json={"url": "http://127.0.0.1:9/stats"}), 201)
    again = ok(c.post("/api/v1/health/targets", json={"url": "http://127.0.0.1:9/stats",
                                                      "interval": 60}), 200)
    assert again["id"] == t["id"] and again["interval"] == 60
    other = ok(c.post("/api/v1/health/targets", json={"url": "http://127.0.0.1:10/stats"}), 201)
    r = c.patch(f"/api/v1/health/targets/{other['id']}", json={"url": "http://127.0.0.1:9/stats"})
    assert r.status_code == 409 and r.json()["source"] == "url"
    assert ok(c.delete(f"/api/v1/health/targets/{t['id']}")) == {"removed": t["id"]}
    assert [x["id"] for x in ok(c.get("/api/v1/health/targets"))["targets"]] == [other["id"]]


def test_read_token_sees_redacted_urls_and_cannot_change_targets(tmp_path):
    from wasmprof.store.tokens import create_token
    cfg = ServerConfig(store=resolve_store(tmp_path / "data"), log_json=False, background=False)
    app = create_app(cfg)
    db = app.state.service.db
    admin = create_token(db, "a", {"admin"})[1]
    read = create_token(db, "r", {"read"})[1]
    c = TestClient(app)
    h_admin = {"Authorization": f"Bearer {admin}"}
    h_read = {"Authorization": f"Bearer {read}"}
    url = "http://ops:hunter2secret@10.0.0.5:15000/stats/prometheus?token=abcdef123456"
    ok(c.post("/api/v1/health/targets", json={"url": url}, headers=h_admin), 201)
    seen = ok(c.get("/api/v1/health/targets", headers=h_read))["targets"][0]["url"]
    assert "hunter2" not in seen and "abcdef" not in seen and "10.0.0.5:15000" in seen
    assert ok(c.get("/api/v1/health/targets", headers=h_admin))["targets"][0]["url"] == url
    assert c.post("/api/v1/health/targets", json={"url": "http://x:1/s"}, headers=h_read).status_code == 403
    assert c.put("/api/v1/health/settings", json={}, headers=h_read).status_code == 403
    assert c.get("/api/v1/health/plugins").status_code == 401


@pytest.mark.slow
def test_serve_scrape_envoy_flag_alerts_from_a_real_process(tmp_path):
    """``wasmprof serve --scrape-envoy URL --scrape-interval 0.2``: the real monitor thread
    scrapes a gateway whose plugin leaks on every scrape; one ``plugin.memory_growth``."""
    g = Gateway()
    g.add("leaky")
    grow = g.render

    def render():
        g.grow("leaky", 1)
        return grow()
    g.render = render
    with StatsServer(g) as srv, Receiver() as rx:
        server = ServerProcess(tmp_path / "data", extra_args=[
            "--allow-anonymous", "read,admin,ingest", "--quiet", "--scrape-envoy", srv.url,
            "--scrape-interval", "0.2"], env=FAST).start()
        try:
            with server.client() as c:
                ok(c.post("/api/v1/webhooks", json={"url": rx.url, "events": "plugin.memory_growth",
                                                    "secret": SECRET}), 201)
                ok(c.put("/api/v1/health/settings", json={
                    "memory_window": 3, "memory_min_points": 6, "memory_min_growth_bytes": 1,
                    "check_interval": 0.2}))
                targets = ok(c.get("/api/v1/health/targets"))["targets"]
                assert [(t["url"], t["origin"], t["interval"]) for t in targets] == [
                    (srv.url, "config", 0.2)]
                assert wait_until(lambda: rx.requests, timeout=60)
                time.sleep(2.0)                      # growth goes on: still one episode
                assert len(rx.requests) == 1
                body = orjson.loads(rx.requests[0].body)
                assert body["event"] == "plugin.memory_growth" and body["plugin"] == "leaky"
                assert body["health"]["window_seconds"] == 3
                assert body["health"]["slope_bytes_per_second"] > 0
        finally:
            server.stop()


def test_demo_gateway_has_a_leak_a_crash_loop_and_a_restart(tmp_path):
    from wasmprof.health import settings, store
    from wasmprof.health.demo import load_demo_health
    from wasmprof.store.db import Database
    from wasmprof.store.migrations import migrate
    db = Database.open(f"sqlite:///{tmp_path / 'demo.db'}")
    migrate(db)
    now = 1_790_000_000.0
    got = load_demo_health(db, now=now)
    assert got["alerts"] == 2 and got["scrapes"] == 181
    ranked = store.plugin_health(db, settings.load(db), now=now)
    by = {e["plugin"]: e for e in ranked}
    assert store.rank(ranked, "memory_growth")[0]["plugin"] == "higress_system_crash_oob"
    assert by["higress_system_crash_oob"]["memory_growth"]["steady"]
    assert by["higress_system_crash_oob"]["memory_growth"]["slope"] == pytest.approx(2 * PAGE / 240)
    assert not by["higress_system_bot_detect"]["memory_growth"]["steady"]     # warm-up plateau
    assert store.rank(ranked, "crash_rate")[0]["plugin"] == "higress_system_inline_chain"
    view = store.series_view(db, plugin="", start=now - 6 * 3600 - 1, end=now, step=600)
    assert sum(v or 0 for v in view["totals"]["restarts"]) == 1
    db.close()

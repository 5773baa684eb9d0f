"""A crash that arrives before its module: alerts when the module arrives and the crashes
are regrouped (``wasmprof.alerts.on_crash_regrouped``), through a running ``wasmprof serve``
and a real receiver, on SQLite and PostgreSQL.

Rule under test: the group created by the regrouping alerts ``crash.new_group`` with
symbolized frames; the unsymbolized group's ``crash.new_group`` is cancelled when no
receiver has taken it yet, and stays delivered when one has. Also checks that links use
``wasmprof serve --public-url`` over ``$WASMPROF_PUBLIC_URL``.
"""

from __future__ import annotations

import orjson
import pytest

from pg import wait_until
from receiver import Receiver, Reply
from server_proc import ServerProcess, wasmprof_cli
from test_alerts_server import FAST_ENV, MODULE, envoy_log, expected_top_frame
from test_alerts_units import documented_verifier

pytestmark = pytest.mark.slow

PUBLIC = "https://wasmprof.example.test/base"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def srv(request, tmp_path_factory):
    url = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_cluster").create_database("regroup")
    server = ServerProcess(tmp_path_factory.mktemp("regroup") / "data", url, env=FAST_ENV,
                           extra_args=["--allow-anonymous", "ingest,read,admin",
                                       "--rate-limit", "0", "--quiet",
                                       "--public-url", PUBLIC + "/"]).start()
    yield server
    server.stop()


def _api(srv, method: str, path: str, **kw):
    with srv.client() as c:
        r = c.request(method, path, **kw)
    assert r.status_code < 300, (r.status_code, r.text)
    return r.json()


def _deliveries(srv, hook: dict) -> list[dict]:
    return _api(srv, "GET", "/api/v1/webhooks/deliveries",
                params={"webhook_id": hook["id"]})["deliveries"]


def _crash_before_module(srv, rx: Receiver, data_dir, plugin: str) -> tuple[dict, int]:
    hook = _api(srv, "POST", "/api/v1/webhooks",
                json={"url": rx.url, "events": ["crash.new_group"], "secret": "regroup-secret",
                      "plugin": plugin})
    posted = _api(srv, "POST", "/api/v1/logs", params={"plugin": plugin},
                  content=envoy_log(data_dir))
    assert posted["crashes"] == 1 and posted["groups"][0]["new"]
    return hook, posted["groups"][0]["id"]


def _upload_module(srv, data_dir, plugin: str) -> None:
    _api(srv, "POST", "/api/v1/modules", params={"plugin": plugin},
         files={"file": ("crash_oob.O2.wasm", (data_dir / MODULE).read_bytes())})


def _symbolized_top(body: dict, data_dir) -> bool:
    want = expected_top_frame(data_dir)
    return any(f["function"] == want["function"]
               and f["location"] == f"{want['file']}:{want['line']}" for f in body["top_frames"])


def test_undelivered_unsymbolized_alert_is_replaced(srv, data_dir):
    """Receiver parks the first alert (503, Retry-After: 1 h). The module arrives: the
    unsymbolized group disappears, its parked delivery is cancelled, and the one alert that
    goes out names the new group with symbolized frames."""
    plugin = f"late-module-a-{srv.port}"
    with Receiver() as rx:
        rx.script = [Reply(503, {"Retry-After": "3600"})]
        hook, old_gid = _crash_before_module(srv, rx, data_dir, plugin)
        assert rx.wait_for(lambda reqs: len(reqs) >= 1)
        first = orjson.loads(rx.requests[0].body)
        assert first["group_id"] == str(old_gid) and not _symbolized_top(first, data_dir)
        wait_until(lambda: [d["attempts"] for d in _deliveries(srv, hook)] == [1])

        _upload_module(srv, data_dir, plugin)
        assert rx.wait_for(lambda reqs: len(reqs) >= 2)
        new = rx.requests[1]
        assert documented_verifier()("regroup-secret", new.body, new.headers)
        body = orjson.loads(new.body)
        assert new.header("X-Wasmprof-Event") == "crash.new_group" and new.answered == 200
        groups = _api(srv, "GET", "/api/v1/crash-groups", params={"plugin": plugin})["groups"]
        assert [g["id"] for g in groups] == [int(body["group_id"])] != [old_gid]
        assert groups[0]["count"] == 1 and body["count"] == 1
        assert _symbolized_top(body, data_dir), body["top_frames"]
        assert body["links"]["dashboard"] == f"{PUBLIC}/#/crashes/{body['group_id']}"
        with srv.client() as c:
            assert c.get(f"/api/v1/crash-groups/{old_gid}").status_code == 404
        ds = wait_until(lambda: (ds := _deliveries(srv, hook))
                        and {d["status"] for d in ds} == {"cancelled", "delivered"} and ds)
        by_group = {d["group_id"]: d for d in ds}
        assert len(ds) == 2 and by_group[str(old_gid)]["status"] == "cancelled"
        assert "superseded" in by_group[str(old_gid)]["last_error"]
        assert by_group[body["group_id"]]["status"] == "delivered"


def test_delivered_unsymbolized_alert_is_followed_by_the_symbolized_group(srv, data_dir):
    plugin = f"late-module-b-{srv.port}"
    with Receiver() as rx:
        hook, old_gid = _crash_before_module(srv, rx, data_dir, plugin)
        assert rx.wait_for(lambda reqs: len(reqs) >= 1)
        _upload_module(srv, data_dir, plugin)
        assert rx.wait_for(lambda reqs: len(reqs) >= 2)
        first, second = (orjson.loads(r.body) for r in rx.requests[:2])
        assert first["group_id"] == str(old_gid) and not _symbolized_top(first, data_dir)
        assert second["group_id"] != str(old_gid) and _symbolized_top(second, data_dir)
        ds = wait_until(lambda: (ds := _deliveries(srv, hook))
                        and all(d["status"] == "delivered" for d in ds) and ds)
        assert sorted(d["group_id"] for d in ds) == sorted([first["group_id"],
                                                            second["group_id"]])
        # a regrouping that changes nothing (runs synchronously here) alerts nothing more
        again = _api(srv, "PUT", f"/api/v1/plugins/{plugin}/runtime", json={"runtime": None})
        assert again["regrouped"] == {"events": 1, "changed": 0, "moved": 0}
        assert len(_deliveries(srv, hook)) == 2


@pytest.mark.parametrize("url", ["ftp://dash.example", "dash.example", "http://h/?q=1"])
def test_serve_rejects_a_bad_public_url(url, tmp_path):
    out = wasmprof_cli("serve", "--public-url", url, "--data", str(tmp_path), check=False)
    assert out.returncode == 2 and "bad public URL" in out.stderr and "--public-url" in out.stderr


def _with_custom_section(wasm: bytes, payload: bytes) -> bytes:
    """The same module (same code, same DWARF) as other bytes: a build with a note appended."""
    body = bytes([4]) + b"note" + payload
    assert len(body) < 128
    return wasm + bytes([0, len(body)]) + body


def test_crash_regrouped_into_a_resolved_group_alerts_regressed(srv, data_dir):
    """Version 2.0 first got a wrong module (fib.O2.wasm), so its crash landed in a group of
    its own; the right 2.0 build arrives, the crash moves into the resolved group of 1.0's
    same crash, posted after the resolve: ``crash.regressed`` (as ingest would have sent),
    and the misgrouped group's undelivered alert is cancelled."""
    plugin = f"regress-{srv.port}"
    module = (data_dir / MODULE).read_bytes()
    with Receiver() as rx:
        hook = _api(srv, "POST", "/api/v1/webhooks",
                    json={"url": rx.url, "events": ["crash.new_group", "crash.regressed"],
                          "secret": "regroup-secret", "plugin": plugin})

        def upload(data: bytes, version: str) -> None:
            m = _api(srv, "POST", "/api/v1/modules", params={"plugin": plugin, "version": version},
                     files={"file": ("plugin.wasm", data)})
            wait_until(lambda: _api(srv, "GET", f"/api/v1/modules/{m['id']}")["symbols"]["index"]
                       in ("ready", "failed"), timeout=60)

        def post(version: str) -> int:
            r = _api(srv, "POST", "/api/v1/logs", params={"plugin": plugin, "version": version},
                     content=envoy_log(data_dir))
            return r["groups"][0]["id"]

        upload(module, "1.0")
        gid = post("1.0")
        assert rx.wait_for(lambda reqs: len(reqs) >= 1)
        _api(srv, "POST", f"/api/v1/crash-groups/{gid}/resolve")
        upload((data_dir / "wasm/fib.O2.wasm").read_bytes(), "2.0")
        rx.default = Reply(503, {"Retry-After": "3600"})      # park what comes next
        wrong = post("2.0")
        assert wrong != gid
        assert rx.wait_for(lambda reqs: len(reqs) >= 2)
        rx.default = Reply()
        upload(_with_custom_section(module, b"2.0"), "2.0")
        assert rx.wait_for(lambda reqs: any(r.header("X-Wasmprof-Event") == "crash.regressed"
                                            for r in reqs))
        reg = next(r for r in rx.requests if r.header("X-Wasmprof-Event") == "crash.regressed")
        body = orjson.loads(reg.body)
        assert body["group_id"] == str(gid) and body["module_version"] == "2.0"
        assert _symbolized_top(body, data_dir)
        group = _api(srv, "GET", f"/api/v1/crash-groups/{gid}")
        assert group["status"] == "regressed" and group["count"] == 2
        with srv.client() as c:
            assert c.get(f"/api/v1/crash-groups/{wrong}").status_code == 404
        ds = {d["group_id"]: d["status"] for d in _deliveries(srv, hook)
              if d["event"] == "crash.new_group"}
        assert ds == {str(gid): "delivered", str(wrong): "cancelled"}

"""``wasmprof webhook`` end to end: a real CLI process, a real store, a real receiver."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from receiver import Receiver, Reply
from test_alerts_units import documented_verifier


def wasmprof(*args: str, data) -> subprocess.CompletedProcess:
    env = {**os.environ, "WASMPROF_WEBHOOK_TIMEOUT": "2"}
    return subprocess.run([sys.executable, "-m", "wasmprof", *args, "--data", str(data)],
                          capture_output=True, text=True, env=env, timeout=60)


def test_add_list_test_deliveries_redeliver_remove(tmp_path):
    data = tmp_path / "state"
    with Receiver() as rx:
        r = wasmprof("webhook", "add", rx.url, "--events", "crash.new_group,crash.spike",
                     "--plugin", "key-auth", "--json", data=data)
        assert r.returncode == 0, r.stderr
        hook = orjson.loads(r.stdout)
        secret = hook["secret"]
        assert hook["events"] == ["crash.new_group", "crash.spike"] and secret.startswith("whsec_")

        r = wasmprof("webhook", "list", "--json", data=data)
        listed = orjson.loads(r.stdout)["webhooks"]
        assert [h["id"] for h in listed] == [hook["id"]]
        assert secret not in r.stdout                     # masked after creation

        r = wasmprof("webhook", "test", str(hook["id"]), data=data)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "delivered" in r.stdout
        req = rx.requests[-1]
        assert req.header("X-Wasmprof-Event") == "webhook.test"
        assert documented_verifier()(secret, req.body, req.headers)

        rx.script = [Reply(500)]
        r = wasmprof("webhook", "test", str(hook["id"]), data=data)
        assert r.returncode == 1 and "HTTP 500" in r.stdout

        r = wasmprof("webhook", "deliveries", "--status", "dead", "--json", data=data)
        dead = orjson.loads(r.stdout)["deliveries"]
        assert len(dead) == 1 and dead[0]["last_status"] == 500
        r = wasmprof("webhook", "redeliver", dead[0]["id"], data=data)
        assert r.returncode == 0 and "queued again" in r.stdout

        r = wasmprof("webhook", "remove", str(hook["id"]), data=data)
        assert r.returncode == 0
        r = wasmprof("webhook", "deliveries", "--json", data=data)
        assert {d["status"] for d in orjson.loads(r.stdout)["deliveries"]} == {
            "delivered", "cancelled"}
        assert wasmprof("webhook", "remove", str(hook["id"]), data=data).returncode == 1


def test_bad_arguments_exit_2_with_the_field_named(tmp_path):
    r = wasmprof("webhook", "add", "file:///etc/passwd", "--events", "crash.new_group",
                 data=tmp_path)
    assert r.returncode == 2 and "http" in r.stderr and "Traceback" not in r.stderr
    r = wasmprof("webhook", "add", "http://h/", "--events", "crash.new_group",
                 "--rate-limit", "lots", data=tmp_path)
    assert r.returncode == 2 and "--rate-limit" in r.stderr
    r = wasmprof("webhook", "add", "http://h/", "--events", "crash.oops", data=tmp_path)
    assert r.returncode == 2 and "crash.oops" in r.stderr

"""Webhook delivery against REAL HTTP receivers on loopback, with the real outbox in the
store, on SQLite and on a real PostgreSQL (``db_url`` from tests/pg.py).

Fault tests each assert that no alert is lost: every queued delivery ends ``delivered``
(or, where the test expects it, ``dead`` and then redelivered), and the receiver saw each
delivery id. Delays are tiny (configurable policy), so the ladder runs in seconds; tests
assert outcomes and attempt counts, never durations — except lower bounds that the
receiver must observe (Retry-After).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from receiver import Receiver, Reply
from test_alerts_units import documented_verifier
from wasmprof.alerts import hooks, outbox, webhooks
from wasmprof.alerts.events import EventType, function_shares
from wasmprof.alerts.retry import RetryPolicy
from wasmprof.alerts.webhooks import WebhookSpec
from wasmprof.alerts.worker import DeliveryWorker
from wasmprof.config import resolve_store
from wasmprof.store.state import open_store

FAST = RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=0.3, jitter=0.3, timeout=2.0,
                   poll_interval=0.05, lease_margin=0.5)
BASE = "http://wasmprof.test"


@pytest.fixture
def db(tmp_path, monkeypatch, db_url):
    """The real store on SQLite and on PostgreSQL (``db_url`` is parametrized)."""
    monkeypatch.setenv("WASMPROF_PUBLIC_URL", BASE)
    store = open_store(resolve_store(tmp_path / "data", db_url))
    yield store.db
    store.close()


@pytest.fixture
def worker_factory(db):
    made: list[DeliveryWorker] = []

    def make(policy: RetryPolicy = FAST, start: bool = True) -> DeliveryWorker:
        w = DeliveryWorker(db, base_url=BASE, policy=policy)
        hooks.configure(waker=w.wake)
        if start:
            w.start()
        made.append(w)
        return w
    yield make
    for w in made:
        hooks.unregister_waker(w.wake)
        w.stop()


def wait_until(pred: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def add_hook(db, url: str, events=(EventType.CRASH_NEW_GROUP,), **kw) -> webhooks.Webhook:
    return webhooks.create(db, WebhookSpec(url=url, events=list(events), secret="test-secret-1",
                                           **kw), now=time.time())


def crash(db, n: int, *, plugin: str = "key-auth", regressed: bool = False,
          new: bool = True) -> list[str]:
    """Store crash group + event rows like the service does, then call its hook."""
    now = time.time()
    with db.tx() as tx:
        gid = tx.insert(
            "INSERT INTO crash_groups (fingerprint, plugin, trap_kind, title, top_frames, "
            "first_seen, last_seen, count, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, "
            "'open', ?) RETURNING id",
            (f"fp-{plugin}-{n}-{now}", plugin, "out-of-bounds-memory", f"oob #{n}",
             orjson.dumps([{"function": "oob_read", "file": "oob_buffer.c", "line": 12,
                            "status": "exact"}]).decode(), now, now, now))
        eid = tx.insert(
            "INSERT INTO crash_events (group_id, plugin, version, trap_kind, message, "
            "received_at, crash, frames) VALUES (?, ?, '1.0', ?, ?, ?, '{}', ?) RETURNING id",
            (gid, plugin, "out-of-bounds-memory", "out of bounds memory access", now,
             orjson.dumps([{"function": "oob_read", "file": "oob_buffer.c", "line": 12,
                            "status": "exact"}]).decode()))
        group = tx.one("SELECT * FROM crash_groups WHERE id = ?", (gid,))
        event = tx.one("SELECT * FROM crash_events WHERE id = ?", (eid,))
        return hooks.on_crash_event(db, group, event, new, regressed)


def statuses(db) -> dict[str, int]:
    return {k: v for k, v in outbox.counts(db).items() if v}


def test_signed_delivery_verified_by_documented_snippet(db, worker_factory):
    verify = documented_verifier()
    with Receiver() as rx:
        add_hook(db, rx.url)
        ids = crash(db, 1)
        assert len(ids) == 1
        worker_factory()
        assert rx.wait_for(lambda r: len(r) >= 1)
        req = rx.requests[0]
        assert verify("test-secret-1", req.body, req.headers)
        assert not verify("wrong-secret", req.body, req.headers)
        assert req.header("X-Wasmprof-Delivery") == ids[0]
        assert req.header("X-Wasmprof-Event") == "crash.new_group"
        body = orjson.loads(req.body)
        assert body["plugin"] == "key-auth" and body["trap_kind"] == "out-of-bounds-memory"
        assert body["top_frames"][0]["location"] == "oob_buffer.c:12"
        assert body["links"]["dashboard"].startswith(BASE)
        assert wait_until(lambda: statuses(db) == {"delivered": 1})


def test_same_occurrence_queued_once_and_plugin_filter(db):
    with Receiver() as rx:
        add_hook(db, rx.url, plugin="key-auth")
        add_hook(db, rx.url, plugin="other")
        now = time.time()
        group = {"id": 5, "plugin": "key-auth", "count": 1, "first_seen": now, "last_seen": now}
        event = {"id": 9, "group_id": 5, "plugin": "key-auth", "frames": "[]"}
        first = hooks.on_crash_event(db, group, event, True, False)
        again = hooks.on_crash_event(db, group, event, True, False)
        assert len(first) == 1 and again == []
        assert statuses(db) == {"pending": 1}


def test_receiver_down_then_up(db, worker_factory):
    rx = Receiver().start()
    port = rx.port
    rx.stop()                                  # down: connection refused
    add_hook(db, f"http://127.0.0.1:{port}/hook", max_attempts=100)
    ids = [i for n in range(3) for i in crash(db, n)]
    worker_factory()
    assert wait_until(lambda: all(d.attempts >= 2 for d in outbox.list_deliveries(db)))
    assert statuses(db) == {"pending": 3}
    errors = {d.last_error.split(":")[0] for d in outbox.list_deliveries(db)}
    assert errors == {"connection error"}
    with Receiver(port) as rx2:                # up again on the same port
        assert rx2.wait_for(lambda r: {q.header("X-Wasmprof-Delivery") for q in r} >= set(ids))
        assert wait_until(lambda: statuses(db) == {"delivered": 3})
    report(db, "receiver down then up")


def test_slow_receiver_times_out_then_delivers(db, worker_factory):
    with Receiver() as rx:
        rx.script = [Reply(delay=2.5), Reply(delay=2.5)]
        add_hook(db, rx.url, timeout=0.5)
        (did,) = crash(db, 1)
        worker_factory()
        assert wait_until(lambda: statuses(db) == {"delivered": 1})
        d = outbox.get_delivery(db, did)
        assert d.attempts == 3
        assert [a["outcome"] for a in d.attempt_log] == ["retry", "retry", "delivered"]
        assert all(a["error"].startswith("timeout") for a in d.attempt_log[:2])
        # the receiver saw the same delivery id each time (its idempotency key)
        assert {r.header("X-Wasmprof-Delivery") for r in rx.requests} == {did}
        report(db, "slow receiver")


def test_500s_then_200(db, worker_factory):
    with Receiver() as rx:
        rx.script = [Reply(500), Reply(502), Reply(503)]
        add_hook(db, rx.url)
        (did,) = crash(db, 1)
        worker_factory()
        assert wait_until(lambda: statuses(db) == {"delivered": 1})
        d = outbox.get_delivery(db, did)
        assert [a["status_code"] for a in d.attempt_log] == [500, 502, 503, 200]
        assert d.attempts == 4 and len(rx.requests) == 4
        report(db, "500s then 200")


def test_429_with_retry_after_is_honoured(db, worker_factory):
    with Receiver() as rx:
        rx.script = [Reply(429, {"Retry-After": "1"})]
        add_hook(db, rx.url)
        (did,) = crash(db, 1)
        worker_factory()
        assert wait_until(lambda: statuses(db) == {"delivered": 1})
        d = outbox.get_delivery(db, did)
        assert [a["status_code"] for a in d.attempt_log] == [429, 200]
        first, second = d.attempt_log
        # scheduled by Retry-After (1 s), not by the 0.05 s backoff
        assert first["next_attempt_at"] - first["started_at"] >= 1.0
        assert rx.requests[1].at - rx.requests[0].at >= 1.0 - 0.05
        assert "Retry-After" in outbox.get_delivery(db, did).attempt_log[0]["error"]
        report(db, "429 with Retry-After")


def test_dead_letter_then_manual_redeliver(db, worker_factory):
    with Receiver() as rx:
        rx.default = Reply(503)
        add_hook(db, rx.url, max_attempts=3)
        (did,) = crash(db, 1)
        worker_factory()
        assert wait_until(lambda: statuses(db) == {"dead": 1})
        dead = outbox.list_deliveries(db, status="dead")
        assert [d.id for d in dead] == [did] and dead[0].attempts == 3
        assert dead[0].to_dict()["dead_letter"] is True
        assert "gave up after 3 attempts" in dead[0].last_error
        rx.default = Reply(200)
        assert outbox.redeliver(db, did, now=time.time()) is not None
        hooks._wake()
        assert wait_until(lambda: statuses(db) == {"delivered": 1})
        assert [r.answered for r in rx.requests] == [503, 503, 503, 200]
        assert {r.header("X-Wasmprof-Delivery") for r in rx.requests} == {did}


def test_client_error_is_final_and_redirects_are_not_followed(db, worker_factory):
    with Receiver() as rx, Receiver() as elsewhere:
        rx.script = [Reply(302, {"Location": elsewhere.url}), Reply(400)]
        add_hook(db, rx.url)
        ids = crash(db, 1) + crash(db, 2)
        worker_factory()
        assert wait_until(lambda: statuses(db) == {"dead": 2})
        errors = sorted(outbox.get_delivery(db, i).last_error for i in ids)
        assert any("redirects are not followed" in e for e in errors)
        assert any(e.startswith("HTTP 400") for e in errors)
        assert elsewhere.requests == []       # only the configured URL was called
        assert all(outbox.get_delivery(db, i).attempts == 1 for i in ids)


def test_removed_webhook_is_never_called(db, worker_factory):
    with Receiver() as rx:
        hook = add_hook(db, rx.url)
        crash(db, 1)
        assert webhooks.remove(db, hook.id, now=time.time())
        w = worker_factory(start=False)
        assert w.run_once() == 0
        assert rx.requests == [] and statuses(db) == {"cancelled": 1}
        assert webhooks.list_all(db) == []


def test_crash_storm_sends_a_digest(db, worker_factory):
    with Receiver() as rx:
        add_hook(db, rx.url, rate_limit=3, rate_window=2.0)
        queued = set()
        for n in range(40):
            queued.update(crash(db, n, plugin=f"plugin-{n % 4}"))
        worker_factory()
        assert wait_until(lambda: set(statuses(db)) == {"delivered"})
        messages = {r.header("X-Wasmprof-Delivery"): r for r in rx.requests}  # receiver dedupes
        events = [r.header("X-Wasmprof-Event") for r in messages.values()]
        singles = events.count("crash.new_group")
        digests = [orjson.loads(r.body) for r in messages.values()
                   if r.header("X-Wasmprof-Event") == "alerts.digest"]
        assert singles >= 3 and len(digests) >= 1
        assert len(messages) <= 8                 # not 40 messages
        assert set(messages) == queued            # every queued delivery (and digest) arrived
        assert singles + sum(d["total"] for d in digests) == 40   # every alert accounted for
        assert sum(d["by_event"]["crash.new_group"] for d in digests) == 40 - singles
        report(db, "crash storm → digest", extra=f"40 alerts in {len(messages)} messages")


def test_spike_alert_once_per_window(db, worker_factory):
    with Receiver() as rx:
        add_hook(db, rx.url, events=(EventType.CRASH_SPIKE,), spike_threshold=3,
                 spike_window=60.0)
        now = time.time()
        with db.tx() as tx:
            gid = tx.insert("INSERT INTO crash_groups (fingerprint, plugin, trap_kind, first_seen, "
                            "last_seen, count, created_at) VALUES ('fp', 'p', 'unreachable', ?, ?,"
                            " 0, ?) RETURNING id", (now, now, now))
        fired = []
        for i in range(6):
            with db.tx() as tx:
                eid = tx.insert("INSERT INTO crash_events (group_id, plugin, received_at, crash) "
                                "VALUES (?, 'p', ?, '{}') RETURNING id", (gid, time.time()))
                tx.execute("UPDATE crash_groups SET count = count + 1 WHERE id = ?", (gid,))
                group = tx.one("SELECT * FROM crash_groups WHERE id = ?", (gid,))
                event = tx.one("SELECT * FROM crash_events WHERE id = ?", (eid,))
                fired.append(len(hooks.on_crash_event(db, group, event, False, False)))
        assert fired == [0, 0, 1, 0, 0, 0]
        worker_factory()
        assert rx.wait_for(lambda r: len(r) == 1)
        body = orjson.loads(rx.requests[0].body)
        assert body["event"] == "crash.spike"
        assert body["spike"] == {"window_seconds": 60.0, "count_in_window": 3, "threshold": 3}


def test_profile_regression_alert(db, worker_factory):
    with Receiver() as rx:
        add_hook(db, rx.url, events=(EventType.PROFILE_REGRESSION,), regression_points=10,
                 format="slack")
        base = function_shares([(("sha256_block", "hmac_sign", "on_request"), 20),
                                (("lookup_key", "on_request"), 80)])
        cur = function_shares([(("sha256_block", "hmac_sign", "on_request"), 60),
                               (("lookup_key", "on_request"), 40)])
        ids = hooks.on_profile_stored(db, plugin="hmac-auth", profile_key="p1", current=cur,
                                      baseline_for=lambda spec: (base, "version=1.0"),
                                      current_desc="version=1.1", version="1.1")
        assert len(ids) == 1
        worker_factory()
        assert rx.wait_for(lambda r: len(r) == 1)
        body = orjson.loads(rx.requests[0].body)
        assert set(body) == {"text", "blocks"}
        assert "sha256_block" in body["text"] and "+40.0 points" in body["text"]


def test_claim_of_a_worker_that_died_expires_and_is_delivered(db, worker_factory):
    with Receiver() as rx:
        add_hook(db, rx.url, timeout=0.5)         # lease = 2 × 0.5 s + margin
        (did,) = crash(db, 1)
        # a worker claims the delivery, then dies before attempting it (kill -9 mid-send)
        (claimed,) = outbox.claim(db, owner="dead-worker", now=time.time(), policy=FAST,
                                  base_url=BASE)
        assert claimed.id == did
        w = worker_factory(start=False)
        assert w.run_once() == 0                  # the lease still holds: nobody else sends
        w.start()
        assert wait_until(lambda: statuses(db) == {"delivered": 1})
        assert [r.header("X-Wasmprof-Delivery") for r in rx.requests] == [did]
        report(db, "worker died holding a claim")


def test_two_workers_share_the_outbox_without_duplicates(db, worker_factory):
    with Receiver() as rx:
        add_hook(db, rx.url, rate_limit=1000)
        ids = [i for n in range(24) for i in crash(db, n)]
        worker_factory()
        worker_factory()
        assert wait_until(lambda: statuses(db) == {"delivered": 24})
        seen = [r.header("X-Wasmprof-Delivery") for r in rx.requests]
        assert sorted(seen) == sorted(ids)       # each exactly once


def report(db, name: str, extra: str = "") -> None:
    """Figures for the closing note (shown with pytest -s / -rP)."""
    ds = outbox.list_deliveries(db, limit=1000)
    attempts = sum(d.attempts for d in ds)
    lost = sum(1 for d in ds if d.status != "delivered")
    print(f"\n[fault] {name}: deliveries={len(ds)} attempts={attempts} lost={lost} {extra}")
    assert lost == 0


def test_prune_keeps_dead_letters_and_recent_deliveries(db, worker_factory):
    with Receiver() as rx:
        rx.script = [Reply(410)]
        add_hook(db, rx.url)
        crash(db, 1)
        crash(db, 2)
        w = worker_factory(start=False)
        assert wait_until(lambda: (w.run_once() or True) and statuses(db) == {
            "dead": 1, "delivered": 1})
        (dead_id,) = [d.id for d in outbox.list_deliveries(db, status="dead")]
        (ok_id,) = [d.id for d in outbox.list_deliveries(db, status="delivered")]
        assert outbox.prune(db, now=time.time(), keep_seconds=3600) == 0
        assert outbox.prune(db, now=time.time() + 7200, keep_seconds=3600) == 1
        assert outbox.get_delivery(db, ok_id) is None
        assert outbox.get_delivery(db, dead_id).status == "dead"


def test_sustained_storm_stays_in_digests_until_quiet(db):
    """Rate-limit bookkeeping over simulated time (enqueue only; no clock games in delivery)."""
    with Receiver() as rx:
        hook = add_hook(db, rx.url, rate_limit=2, rate_window=10.0)
        t0 = time.time()

        def at(t: float, n: int):
            from wasmprof.alerts.events import AlertEvent
            ev = AlertEvent(EventType.CRASH_NEW_GROUP, f"k{n}", t, plugin="p", group_id=str(n))
            return outbox.enqueue(db, hook, ev, now=t, base_url=BASE)

        singles = {at(t0 + i, i) for i in range(2)}                # within the limit
        d1 = {at(t0 + 2 + i, 10 + i) for i in range(5)}            # over it: one digest
        assert len(singles) == 2 and len(d1) == 1 and not (d1 & singles)
        # the first digest is sent at the end of its window; the storm goes on
        w = DeliveryWorker(db, base_url=BASE, policy=FAST, clock=lambda: t0 + 12.5)
        try:
            w.run_once()
        finally:
            w.stop()
        d2 = {at(t0 + 14 + i, 20 + i) for i in range(3)}           # still a storm: digest 2
        assert len(d2) == 1 and d2 != d1
        # a quiet window after the last digest: individual messages again
        assert at(t0 + 40, 30) not in d1 | d2
        items = {d: len(outbox.digest_items(db, d)) for d in d1 | d2}
        assert sorted(items.values()) == [3, 5]

"""The durable outbox: alert deliveries stored in the database until a receiver took them.

Life of a delivery (``alert_deliveries.status``)::

    enqueue ─► pending ──attempt 2xx──► delivered
       │          │ ▲ 408/429/5xx/timeout/connection error: next_attempt_at = now + backoff
       │          │ └──────────────────┘          (or Retry-After)
       │          └─ other answer, or attempts exhausted ─► dead ─(redeliver)─► pending
       └─ over the webhook's rate limit ─► collecting (a digest) ─(window over)─► pending

Guarantees:

- :func:`enqueue` only inserts rows (no network), inside the caller's transaction when one
  is given, so an alert commits with the crash that caused it and ingest never waits on a
  receiver.
- Each event occurrence (``AlertEvent.key``) becomes at most one delivery or digest item per
  webhook (unique index), so a retried ingest does not double-alert.
- Nothing is lost to a crash of the worker: a claimed row carries a lease; when the
  process dies, the lease expires and another worker (or the restarted one) claims it.
  Delivery is therefore *at least once*; receivers dedupe on ``X-Wasmprof-Delivery``.
- Only the URL stored in the webhook row at claim time is ever called; deliveries of a
  removed webhook are cancelled.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from wasmprof.alerts import payloads
from wasmprof.alerts.events import AlertEvent, EventType
from wasmprof.alerts.retry import Outcome, RetryPolicy
from wasmprof.alerts.webhooks import Webhook

STATUSES = ("collecting", "pending", "delivered", "dead", "cancelled")
_NOT_RATE_LIMITED = (str(EventType.DIGEST), str(EventType.TEST))


def new_delivery_id() -> str:
    return "dlv_" + secrets.token_hex(12)


@contextmanager
def _transaction(db_or_tx: Any) -> Iterator[Any]:
    """Use the caller's open transaction (a ``Tx``) or open a write transaction on a
    ``Database``."""
    if hasattr(db_or_tx, "tx"):
        with db_or_tx.tx() as tx:
            yield tx
    else:
        yield db_or_tx


@dataclass(slots=True)
class Delivery:
    """One row of the outbox, as the API and CLI show it."""

    id: str
    webhook_id: int
    event: str
    status: str
    attempts: int
    item_count: int
    plugin: str | None
    group_id: str | None
    next_attempt_at: float | None
    last_status: int | None
    last_error: str | None
    created_at: float
    updated_at: float
    delivered_at: float | None
    body: bytes | None = None
    attempt_log: list[dict[str, Any]] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], *, with_body: bool = False) -> Delivery:
        body = row.get("body") if with_body else None
        return cls(
            id=row["id"], webhook_id=int(row["webhook_id"]), event=row["event"],
            status=row["status"], attempts=int(row["attempts"]),
            item_count=int(row["item_count"]), plugin=row["plugin"], group_id=row["group_id"],
            next_attempt_at=(row["next_attempt_at"]
                             if row["status"] in ("pending", "collecting") else None),
            last_status=row["last_status"], last_error=row["last_error"],
            created_at=float(row["created_at"]), updated_at=float(row["updated_at"]),
            delivered_at=row["delivered_at"], body=bytes(body) if body is not None else None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "webhook_id": self.webhook_id, "event": self.event,
            "status": self.status, "dead_letter": self.status == "dead",
            "attempts": self.attempts, "items": self.item_count, "plugin": self.plugin,
            "group_id": self.group_id, "next_attempt_at": self.next_attempt_at,
            "last_status": self.last_status, "last_error": self.last_error,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "delivered_at": self.delivered_at,
        }
        if self.body is not None:
            try:
                d["payload"] = orjson.loads(self.body)
            except orjson.JSONDecodeError:
                d["payload"] = None
        if self.attempt_log is not None:
            d["attempt_log"] = self.attempt_log
        return d


@dataclass(slots=True)
class Claim:
    """A delivery leased to one worker for one attempt."""

    id: str
    webhook_id: int
    url: str
    secret: str
    event: str
    body: bytes
    attempts: int              # attempts made before this one
    max_attempts: int
    timeout: float
    owner: str


@dataclass(slots=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    started_at: float = 0.0
    duration_ms: float = 0.0


# -- enqueue -------------------------------------------------------------------------------

def enqueue(db_or_tx: Any, webhook: Webhook, event: AlertEvent, *, now: float,
            base_url: str) -> str | None:
    """Queue ``event`` for ``webhook``; returns the delivery id (of the digest when the
    webhook is rate-limited), or None when this occurrence was already queued.

    Rate limit: at most ``webhook.rate_limit`` individual messages per ``rate_window``
    seconds; beyond that, events are folded into one digest per window (sent at the end of
    its window), and individual messages resume only once a window has passed after the
    last digest closed without a new one opening.
    """
    with _transaction(db_or_tx) as tx:
        dup = tx.scalar(
            "SELECT COUNT(*) AS n FROM alert_deliveries WHERE webhook_id = ? AND event_key = ?",
            (webhook.id, event.key)) or tx.scalar(
            "SELECT COUNT(*) AS n FROM alert_digest_items WHERE webhook_id = ? AND event_key = ?",
            (webhook.id, event.key))
        if dup:
            return None
        # Serializes enqueues per webhook across replicas (row lock on PostgreSQL).
        tx.execute("UPDATE alert_webhooks SET last_event_at = ? WHERE id = ?", (now, webhook.id))
        since = now - webhook.rate_window
        recent = tx.scalar(
            "SELECT COUNT(*) AS n FROM alert_deliveries WHERE webhook_id = ? AND created_at > ? "
            "AND event NOT IN (?, ?)", (webhook.id, since, *_NOT_RATE_LIMITED))
        # A digest opened within the last two windows (one collecting, one after it was
        # sent) means the storm goes on: keep folding events into digests.
        storm = tx.scalar(
            "SELECT COUNT(*) AS n FROM alert_deliveries WHERE webhook_id = ? AND created_at > ? "
            "AND event = ?", (webhook.id, now - 2 * webhook.rate_window, str(EventType.DIGEST)))
        if event.type is EventType.TEST or (int(recent or 0) < webhook.rate_limit and not storm):
            delivery_id = new_delivery_id()
            body = payloads.render(event, webhook.format, delivery_id=delivery_id,
                                   base_url=base_url)
            tx.execute(
                "INSERT INTO alert_deliveries (id, webhook_id, event, event_key, status, body, "
                "item_count, plugin, group_id, attempts, next_attempt_at, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?, 1, ?, ?, 0, ?, ?, ?)",
                (delivery_id, webhook.id, str(event.type), event.key, body, event.plugin,
                 event.group_id, now, now, now))
            return delivery_id
        return _add_to_digest(tx, webhook, event, now=now)


def _add_to_digest(tx: Any, webhook: Webhook, event: AlertEvent, *, now: float) -> str:
    row = tx.one("SELECT id FROM alert_deliveries WHERE webhook_id = ? AND status = 'collecting' "
                 "ORDER BY created_at LIMIT 1", (webhook.id,))
    delivery_id = None
    if row is not None:
        # Re-checks the status under the row lock: a worker may have frozen it meanwhile.
        cur = tx.execute("UPDATE alert_deliveries SET item_count = item_count + 1, updated_at = ? "
                         "WHERE id = ? AND status = 'collecting'", (now, row["id"]))
        if cur.rowcount == 1:
            delivery_id = row["id"]
    if delivery_id is None:
        delivery_id = new_delivery_id()
        tx.execute(
            "INSERT INTO alert_deliveries (id, webhook_id, event, event_key, status, body, "
            "item_count, plugin, group_id, attempts, next_attempt_at, created_at, updated_at) "
            "VALUES (?, ?, ?, NULL, 'collecting', NULL, 1, NULL, NULL, 0, ?, ?, ?)",
            (delivery_id, webhook.id, str(EventType.DIGEST), now + webhook.rate_window, now, now))
    tx.execute("INSERT INTO alert_digest_items (delivery_id, webhook_id, event, event_key, item, "
               "created_at) VALUES (?, ?, ?, ?, ?, ?)",
               (delivery_id, webhook.id, str(event.type), event.key,
                orjson.dumps(event.to_dict()).decode(), now))
    return delivery_id


# -- claim and record ---------------------------------------------------------------------

def claim(db: Any, *, owner: str, now: float, policy: RetryPolicy, base_url: str,
          limit: int = 8, only_id: str | None = None) -> list[Claim]:
    """Lease up to ``limit`` due deliveries to ``owner``. Digests whose window is over are
    frozen (their body rendered from their items) as they are claimed."""
    out: list[Claim] = []
    with db.tx() as tx:
        sql = ("SELECT d.id AS id FROM alert_deliveries d JOIN alert_webhooks w "
               "ON w.id = d.webhook_id WHERE d.status IN ('pending', 'collecting') "
               "AND w.deleted_at IS NULL AND w.enabled = 1 "
               "AND (d.lease_until IS NULL OR d.lease_until < ?) ")
        params: list[Any] = [now]
        if only_id is not None:
            sql += "AND d.id = ? "
            params.append(only_id)
        else:
            sql += "AND d.next_attempt_at <= ? "
            params.append(now)
        sql += "ORDER BY d.next_attempt_at LIMIT ?"
        params.append(limit)
        for cand in tx.all(sql, params):
            hook_row = tx.one("SELECT * FROM alert_webhooks WHERE id = (SELECT webhook_id "
                              "FROM alert_deliveries WHERE id = ?)", (cand["id"],))
            assert hook_row is not None
            hook = Webhook.from_row(hook_row)
            timeout = hook.timeout or policy.timeout
            cur = tx.execute(
                "UPDATE alert_deliveries SET lease_until = ?, lease_owner = ?, updated_at = ? "
                "WHERE id = ? AND status IN ('pending', 'collecting') "
                "AND (lease_until IS NULL OR lease_until < ?)",
                (now + lease_seconds(timeout, policy.lease_margin), owner, now, cand["id"], now))
            if cur.rowcount != 1:
                continue            # another worker won it
            row = tx.one("SELECT * FROM alert_deliveries WHERE id = ?", (cand["id"],))
            assert row is not None
            if row["status"] == "collecting":
                row = _freeze_digest(tx, row, hook, now=now, base_url=base_url)
            max_attempts = 1 if row["event"] == str(EventType.TEST) else (
                hook.max_attempts or policy.max_attempts)
            out.append(Claim(id=row["id"], webhook_id=hook.id, url=hook.url, secret=hook.secret,
                             event=row["event"], body=bytes(row["body"]),
                             attempts=int(row["attempts"]), max_attempts=max_attempts,
                             timeout=timeout, owner=owner))
    return out


def lease_seconds(timeout: float, margin: float = 5.0) -> float:
    """How long a claimed delivery stays with its worker before others may take it."""
    return 2 * timeout + margin


def _freeze_digest(tx: Any, row: dict[str, Any], hook: Webhook, *, now: float,
                   base_url: str) -> dict[str, Any]:
    cur = tx.execute("UPDATE alert_deliveries SET status = 'pending' WHERE id = ? "
                     "AND status = 'collecting'", (row["id"],))
    if cur.rowcount != 1:
        fresh = tx.one("SELECT * FROM alert_deliveries WHERE id = ?", (row["id"],))
        assert fresh is not None
        return fresh
    items = tx.all("SELECT item FROM alert_digest_items WHERE delivery_id = ? ORDER BY id",
                   (row["id"],))
    events = [AlertEvent.from_dict(orjson.loads(r["item"])) for r in items]
    body = payloads.render_digest(events, hook.format, delivery_id=row["id"], base_url=base_url,
                                  window_start=float(row["created_at"]), window_end=now)
    tx.execute("UPDATE alert_deliveries SET body = ?, item_count = ?, updated_at = ? "
               "WHERE id = ?", (body, len(events), now, row["id"]))
    fresh = tx.one("SELECT * FROM alert_deliveries WHERE id = ?", (row["id"],))
    assert fresh is not None
    return fresh


def record(db: Any, claim_: Claim, result: AttemptResult, *, policy: RetryPolicy,
           now: float, delay: float | None = None) -> str:
    """Store the outcome of one attempt; returns the delivery's new status.

    ``delay`` (seconds until the next attempt) is computed by the caller from the policy
    and Retry-After; it is used only when the outcome is RETRY and attempts remain.
    """
    attempt_no = claim_.attempts + 1
    next_at: float | None = None
    if result.outcome is Outcome.DELIVERED:
        status = "delivered"
    elif result.outcome is Outcome.RETRY and attempt_no < claim_.max_attempts:
        status = "pending"
        next_at = now + (delay if delay is not None else policy.next_delay(attempt_no,
                                                                           result.retry_after))
    else:
        status = "dead"
    error = result.error
    if status == "dead" and result.outcome is Outcome.RETRY:
        error = f"gave up after {attempt_no} attempt{'s' if attempt_no > 1 else ''}: {error}"
    with db.tx() as tx:
        tx.execute("INSERT INTO alert_attempts (delivery_id, attempt, started_at, duration_ms, "
                   "status_code, outcome, error, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (claim_.id, attempt_no, result.started_at, result.duration_ms,
                    result.status_code, str(result.outcome), result.error, next_at))
        tx.execute(
            "UPDATE alert_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, "
            "lease_until = NULL, lease_owner = NULL, last_status = ?, last_error = ?, "
            "updated_at = ?, delivered_at = ? WHERE id = ? AND status = 'pending'",
            (status, attempt_no, next_at if next_at is not None else now, result.status_code,
             error, now, now if status == "delivered" else None, claim_.id))
    return status


# -- queries and operator actions --------------------------------------------------------

def list_deliveries(db: Any, *, webhook_id: int | None = None, status: str | None = None,
                    event: str | None = None, limit: int = 100,
                    before: float | None = None) -> list[Delivery]:
    """Newest first. ``status='dead'`` lists the dead-letter queue."""
    sql = "SELECT * FROM alert_deliveries WHERE 1 = 1"
    params: list[Any] = []
    if webhook_id is not None:
        sql += " AND webhook_id = ?"
        params.append(int(webhook_id))
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    if event is not None:
        sql += " AND event = ?"
        params.append(event)
    if before is not None:
        sql += " AND created_at < ?"
        params.append(before)
    sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
    params.append(max(1, min(int(limit), 1000)))
    with db.read() as tx:
        rows = tx.all(sql, params)
    return [Delivery.from_row(r) for r in rows]


def get_delivery(db: Any, delivery_id: str) -> Delivery | None:
    """One delivery with its body and every attempt."""
    with db.read() as tx:
        row = tx.one("SELECT * FROM alert_deliveries WHERE id = ?", (delivery_id,))
        if row is None:
            return None
        attempts = tx.all("SELECT attempt, started_at, duration_ms, status_code, outcome, error, "
                          "next_attempt_at FROM alert_attempts WHERE delivery_id = ? ORDER BY id",
                          (delivery_id,))
    d = Delivery.from_row(row, with_body=True)
    d.attempt_log = attempts
    return d


def redeliver(db: Any, delivery_id: str, *, now: float) -> Delivery | None:
    """Queue a dead (or delivered) delivery again with a fresh attempt budget; same id and
    body, so receivers can dedupe. None when unknown, cancelled, or its webhook is gone."""
    with db.tx() as tx:
        cur = tx.execute(
            "UPDATE alert_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, "
            "lease_until = NULL, lease_owner = NULL, updated_at = ?, delivered_at = NULL "
            "WHERE id = ? AND status IN ('dead', 'delivered') AND webhook_id IN "
            "(SELECT id FROM alert_webhooks WHERE deleted_at IS NULL)",
            (now, now, delivery_id))
        if cur.rowcount != 1:
            return None
        row = tx.one("SELECT * FROM alert_deliveries WHERE id = ?", (delivery_id,))
    return Delivery.from_row(row) if row else None


def counts(db: Any) -> dict[str, int]:
    """Deliveries per status (for /metrics and the dashboard)."""
    with db.read() as tx:
        rows = tx.all("SELECT status, COUNT(*) AS n FROM alert_deliveries GROUP BY status")
    out = {s: 0 for s in STATUSES}
    out.update({r["status"]: int(r["n"]) for r in rows})
    return out


def prune(db: Any, *, now: float, keep_seconds: float) -> int:
    """Forget delivered and cancelled deliveries (with their attempts and digest items) older
    than ``keep_seconds``; dead letters stay until redelivered. Returns rows removed."""
    cutoff = now - keep_seconds
    with db.tx() as tx:
        old = "SELECT id FROM alert_deliveries WHERE status IN ('delivered', 'cancelled') " \
              "AND updated_at < ?"
        tx.execute(f"DELETE FROM alert_attempts WHERE delivery_id IN ({old})", (cutoff,))
        tx.execute(f"DELETE FROM alert_digest_items WHERE delivery_id IN ({old})", (cutoff,))
        cur = tx.execute("DELETE FROM alert_deliveries WHERE status IN ('delivered', "
                         "'cancelled') AND updated_at < ?", (cutoff,))
        tx.execute("DELETE FROM alert_profile_checks WHERE status = 'done' AND updated_at < ?",
                   (cutoff,))
        return max(cur.rowcount, 0)


def digest_items(db: Any, delivery_id: str) -> list[AlertEvent]:
    with db.read() as tx:
        rows = tx.all("SELECT item FROM alert_digest_items WHERE delivery_id = ? ORDER BY id",
                      (delivery_id,))
    return [AlertEvent.from_dict(orjson.loads(r["item"])) for r in rows]

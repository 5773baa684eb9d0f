"""Database tables of the alerts package (appended to the store's migrations list).

Timestamps are unix seconds (``{float}``). DDL placeholders are expanded per dialect by
``Database.ddl``.

- ``alert_webhooks``: configured receivers. Removing a webhook soft-deletes it
  (``deleted_at``) and cancels its undelivered deliveries; a deleted webhook's URL is
  never called again.
- ``alert_deliveries``: the durable outbox. One row per message to send; ``id`` is the
  ``X-Wasmprof-Delivery`` idempotency key; ``body`` is frozen when the row becomes
  ``pending`` (a digest collects items while ``collecting``); ``lease_until``/``lease_owner``
  let several workers (replicas) share the queue; an expired lease (worker killed) makes
  the row claimable again.
- ``alert_attempts``: every HTTP attempt with its outcome.
- ``alert_digest_items``: events folded into a digest while a webhook is rate-limited.
- ``alert_spikes``: when a spike alert last fired per webhook and crash group.
- ``alert_profile_checks`` (2): profile inputs waiting to be compared with their baseline;
  one pending row per (plugin, version) coalesces a burst of uploads.
"""

from __future__ import annotations

COMPONENT = "alerts"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE alert_webhooks (
        id {id},
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        secret TEXT NOT NULL,
        format TEXT NOT NULL DEFAULT 'json',
        plugin TEXT,
        description TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        max_attempts INTEGER,
        timeout {float},
        rate_limit INTEGER NOT NULL DEFAULT 20,
        rate_window {float} NOT NULL DEFAULT 60,
        spike_threshold INTEGER NOT NULL DEFAULT 50,
        spike_window {float} NOT NULL DEFAULT 300,
        regression_points {float} NOT NULL DEFAULT 5,
        baseline TEXT,
        last_event_at {float},
        created_at {float} NOT NULL,
        deleted_at {float}
    );
    CREATE TABLE alert_deliveries (
        id TEXT PRIMARY KEY,
        webhook_id {bigint} NOT NULL REFERENCES alert_webhooks (id),
        event TEXT NOT NULL,
        event_key TEXT,
        status TEXT NOT NULL,
        body {blob},
        item_count INTEGER NOT NULL DEFAULT 1,
        plugin TEXT,
        group_id TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at {float} NOT NULL,
        lease_until {float},
        lease_owner TEXT,
        last_status INTEGER,
        last_error TEXT,
        created_at {float} NOT NULL,
        updated_at {float} NOT NULL,
        delivered_at {float}
    );
    CREATE UNIQUE INDEX alert_deliveries_event_key ON alert_deliveries (webhook_id, event_key);
    CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_attempt_at);
    CREATE INDEX alert_deliveries_webhook ON alert_deliveries (webhook_id, created_at);
    CREATE TABLE alert_attempts (
        id {id},
        delivery_id TEXT NOT NULL REFERENCES alert_deliveries (id),
        attempt INTEGER NOT NULL,
        started_at {float} NOT NULL,
        duration_ms {float},
        status_code INTEGER,
        outcome TEXT NOT NULL,
        error TEXT,
        next_attempt_at {float}
    );
    CREATE INDEX alert_attempts_delivery ON alert_attempts (delivery_id, attempt);
    CREATE TABLE alert_digest_items (
        id {id},
        delivery_id TEXT NOT NULL REFERENCES alert_deliveries (id),
        webhook_id {bigint} NOT NULL,
        event TEXT NOT NULL,
        event_key TEXT NOT NULL,
        item TEXT NOT NULL,
        created_at {float} NOT NULL
    );
    CREATE UNIQUE INDEX alert_digest_items_key ON alert_digest_items (webhook_id, event_key);
    CREATE INDEX alert_digest_items_delivery ON alert_digest_items (delivery_id);
    CREATE TABLE alert_spikes (
        webhook_id {bigint} NOT NULL,
        group_id TEXT NOT NULL,
        fired_at {float} NOT NULL,
        PRIMARY KEY (webhook_id, group_id)
    );
    """,
    """
    CREATE TABLE alert_profile_checks (
        id {id},
        plugin TEXT,
        version TEXT,
        start_ts {float},
        end_ts {float},
        inputs INTEGER NOT NULL DEFAULT 1,
        last_input_id {bigint},
        status TEXT NOT NULL,
        due_at {float} NOT NULL,
        lease_until {float},
        result TEXT,
        created_at {float} NOT NULL,
        updated_at {float} NOT NULL
    );
    CREATE INDEX alert_profile_checks_due ON alert_profile_checks (status, due_at);
    """,
]

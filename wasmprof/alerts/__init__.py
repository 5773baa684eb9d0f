"""Alert webhooks: crash and profile events → signed, retried, durable HTTP deliveries.

Modules (each small, one job):

- :mod:`~wasmprof.alerts.events` — event types, :class:`AlertEvent`, detection rules (spike,
  profile regression)
- :mod:`~wasmprof.alerts.payloads` — JSON and Slack bodies (attacker-controlled names escaped)
- :mod:`~wasmprof.alerts.signing` — HMAC-SHA256 headers and verification
- :mod:`~wasmprof.alerts.retry` — backoff, jitter, Retry-After, what is retried
- :mod:`~wasmprof.alerts.webhooks` — webhook configuration (validation + CRUD)
- :mod:`~wasmprof.alerts.outbox` — the durable outbox in the database (enqueue, lease, record,
  dead-letter, redeliver, rate limit → digest)
- :mod:`~wasmprof.alerts.worker` — the delivery thread
- :mod:`~wasmprof.alerts.hooks` — entry points the service calls after storing data
- :mod:`~wasmprof.alerts.schema` — tables, appended to the store's migrations

- :mod:`~wasmprof.alerts.profile_checks` — ``profile.regression`` checks, off the ingest path

The service calls :func:`on_crash_event` after it stored and grouped a crash event, and
:func:`on_profile_input` after it stored a profile input, and :func:`on_crash_regrouped`
after a late module re-symbolized and regrouped stored crashes; the health checker
(:mod:`wasmprof.health.checks`) calls :func:`on_health_alert` for ``plugin.*`` events.
"""

from __future__ import annotations

from typing import Any

from wasmprof.alerts import hooks
from wasmprof.alerts.hooks import (configure, on_crash_event, on_crash_regrouped, on_health_alert,
                                   on_profile_input, on_profile_stored, public_url)

__all__ = ["configure", "on_crash_event", "on_crash_regrouped", "on_health_alert",
           "on_profile_input", "on_profile_stored", "public_url", "start_worker"]


def start_worker(db: Any, config: Any = None) -> Any:
    """Start this process's delivery worker on ``db`` (called by ``wasmprof serve``'s
    lifespan; stop it with ``.stop()``). Links use ``config.public_url``, else
    ``$WASMPROF_PUBLIC_URL``, else ``http://HOST:PORT``; timing comes from
    ``WASMPROF_WEBHOOK_*`` (:meth:`RetryPolicy.from_env`)."""
    from wasmprof.alerts.retry import RetryPolicy
    from wasmprof.alerts.worker import DeliveryWorker
    explicit = getattr(config, "public_url", None)
    own = f"http://{getattr(config, 'host', '127.0.0.1')}:{getattr(config, 'port', 8080)}"
    configure(public_url=explicit, default_url=own)
    public = hooks.public_url()
    worker = DeliveryWorker(db, base_url=public, policy=RetryPolicy.from_env(),
                            tasks=hooks.worker_tasks(db))
    configure(waker=worker.wake)
    worker.start()
    return worker

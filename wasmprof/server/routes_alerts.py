"""API routes for alert webhooks.

Inputs are typed (:mod:`wasmprof.server.contract`, bodies in :mod:`wasmprof.server.bodies`);
bad input raises :class:`UsageError` (400) or fails validation (422).

The app factory includes ``build_router(service, require)``; building it also registers the
``profile.regression`` checks (run by the delivery worker that ``wasmprof.alerts.start_worker``
starts in the app's lifespan) on the service's profile data.

Routes (JSON; webhook configuration needs the ``admin`` scope, reading deliveries ``read``):

- ``GET  /api/v1/webhooks`` · ``POST /api/v1/webhooks`` (secret shown once, in the answer)
- ``GET  /api/v1/webhooks/overview`` (``read``; the dashboard's Alerts page): every webhook
  with its URL redacted (:func:`redact_url`), events, filter, format, enabled, counts of
  deliveries per status; no secret
- ``GET|PATCH|DELETE /api/v1/webhooks/{id}`` (PATCH: ``{"enabled": bool}``)
- ``POST /api/v1/webhooks/{id}/test`` — queue a ``webhook.test`` delivery
- ``GET  /api/v1/webhooks/deliveries?status=dead&webhook_id=&event=&limit=&before=``
  (``status=dead`` is the dead-letter queue) · ``GET /api/v1/webhooks/deliveries/{id}``
  (payload + every attempt) · ``POST /api/v1/webhooks/deliveries/{id}/redeliver``
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response

from wasmprof.alerts import hooks, outbox, webhooks
from wasmprof.alerts.profile_checks import ProfileCheck, run_due_checks
from wasmprof.errors import WasmprofError
from wasmprof.output import dumps
from wasmprof.server import bodies
from wasmprof.server.contract import IdPath, IdQuery, TextQuery, limit_query
from wasmprof.server.responses import ERROR_RESPONSES

DeliveryId = Annotated[str, Path(max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
                                 description="a delivery id (dlv_…)")]
DeliveryStatus = Literal["collecting", "pending", "delivered", "dead", "cancelled"]


def _json(obj: Any, status: int = 200) -> Response:
    return Response(content=dumps(obj), status_code=status, media_type="application/json")


class ServiceShares:
    """Function shares of profile selections, summed from the profile store by the server's
    profile service like every other profile view (:class:`ShareSource`)."""

    def __init__(self, profiles: Any) -> None:
        self.profiles = profiles

    def _shares(self, sel: Any) -> dict[str, tuple[float, float]]:
        return self.profiles.function_shares(sel)

    def current(self, check: ProfileCheck) -> tuple[dict[str, tuple[float, float]], str]:
        from wasmprof.server.profile_service import Selection
        sel = Selection(plugin=check.plugin, version=check.version, start=check.start,
                        end=check.end)
        return self._shares(sel), sel.describe()

    def baseline(self, check: ProfileCheck, spec: str | None
                 ) -> tuple[dict[str, tuple[float, float]], str]:
        from wasmprof.server.profile_service import Selection, parse_labels
        if spec:
            labels = parse_labels(spec)
            version = labels.pop("version", None)
            sel = Selection(plugin=check.plugin, version=version, labels=labels)
            desc = sel.describe()
        else:
            before = (check.start if check.start is not None else time.time()) - 1e-3
            sel = Selection(plugin=check.plugin, end=before)
            desc = sel.describe() + " (earlier profiles)"
        return self._shares(sel), desc


_TOKENISH = re.compile(r"[A-Za-z0-9_\-]{16,}|(?=[^/]*\d)(?=[^/]*[A-Za-z])[A-Za-z0-9_\-]{8,}")


def redact_url(url: str) -> str:
    """``url`` without the parts that act as credentials, for read-only views: user info,
    query values, and every path segment after the first that looks like a token (8+
    characters mixing letters and digits, or 16+ characters): a Slack URL
    ``https://hooks.slack.com/services/T000/B000/XXXX…`` keeps ``/services/T000/B000/…``.
    Unparsable input gives ``"…"``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "…"
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None or parts.password is not None:
        netloc = "…@" + netloc
    segments = parts.path.split("/")
    for i, seg in enumerate(segments):
        if i >= 2 and _TOKENISH.fullmatch(seg):
            segments[i] = "…"
    query = "&".join(f"{kv.split('=', 1)[0]}=…" if "=" in kv else "…"
                     for kv in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, "/".join(segments), query, ""))


def _overview_entry(hook: Any) -> dict[str, Any]:
    d = hook.to_dict()
    keep = ("id", "events", "format", "plugin", "description", "enabled", "max_attempts",
            "created_at")
    out = {k: d[k] for k in keep}
    out["url"] = redact_url(hook.url)
    out["stats"] = {s: int(hook.stats.get(s, 0)) for s in outbox.STATUSES}
    return out


def build_router(service: Any, require: Callable[[str], Any]) -> APIRouter:
    """Routes on ``service.db`` (a ``Service``; a bare ``Database`` works too, without
    profile checks)."""
    db = getattr(service, "db", service)
    profiles = getattr(service, "profiles", None)
    if profiles is not None:
        source = ServiceShares(profiles)
        hooks.set_worker_task(db, "profile_checks",
                              lambda now: run_due_checks(db, source, now=now))
    metrics = getattr(service, "metrics", None)
    if metrics is not None and hasattr(metrics, "gauges"):
        for status in ("pending", "collecting", "dead"):
            metrics.gauges[f"wasmprof_webhook_deliveries_{status}"] = (
                lambda st=status: float(outbox.counts(db)[st]))
    wake = hooks.wake_workers
    r = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)
    admin = [Depends(require("admin"))]
    read = [Depends(require("read"))]

    # deliveries first: "/deliveries" must not be taken for a webhook id
    @r.get("/deliveries", dependencies=read, summary="List deliveries (status=dead: dead letters)")
    def list_deliveries(status: DeliveryStatus | None = None, webhook_id: IdQuery = None,
                        event: TextQuery = None, limit: int = limit_query(100, 1000),
                        before: Annotated[float | None, Query(
                            ge=0, le=1e11, allow_inf_nan=False,
                            description="unix seconds: deliveries created before")] = None
                        ) -> Response:
        items = outbox.list_deliveries(db, webhook_id=webhook_id, status=status, event=event,
                                       limit=limit, before=before)
        return _json({"deliveries": [d.to_dict() for d in items], "counts": outbox.counts(db)})

    @r.get("/overview", dependencies=read,
           summary="Webhooks with redacted URLs and delivery counts (for the dashboard)")
    def overview() -> Response:
        return _json({"webhooks": [_overview_entry(h) for h in webhooks.list_all(db)],
                      "counts": outbox.counts(db)})

    @r.get("/deliveries/{delivery_id}", dependencies=read, summary="One delivery with attempts",
           operation_id="get_delivery")
    def get_delivery(delivery_id: DeliveryId) -> Response:
        d = outbox.get_delivery(db, delivery_id)
        if d is None:
            raise HTTPException(404, "no such delivery")
        return _json(d.to_dict())

    @r.post("/deliveries/{delivery_id}/redeliver", dependencies=admin,
            summary="Queue a dead (or delivered) delivery again", operation_id="redeliver",
            responses={202: {"description": "Queued again"},
                       409: {"model": ERROR_RESPONSES[400]["model"],
                             "description": "The delivery is pending or its webhook is gone"}})
    def redeliver(delivery_id: DeliveryId) -> Response:
        d = outbox.redeliver(db, delivery_id, now=time.time())
        if d is None:
            cur = outbox.get_delivery(db, delivery_id)
            if cur is None:
                raise HTTPException(404, "no such delivery")
            raise HTTPException(409, f"delivery is {cur.status}; only dead or delivered "
                                     "deliveries of an existing webhook can be redelivered")
        wake()
        return _json(d.to_dict(), 202)

    @r.get("", dependencies=admin, summary="List webhooks")
    def list_hooks() -> Response:
        return _json({"webhooks": [h.to_dict() for h in webhooks.list_all(db)]})

    @r.post("", dependencies=admin, summary="Add a webhook (the secret is shown only here)",
            description='`{"url": ..., "events": ["crash.new_group", "crash.regressed", '
                        '"crash.spike", "profile.regression"], "secret"?, "format"?: '
                        '"json"|"slack", "plugin"?, ...}`; deliveries are signed with '
                        "`X-Wasmprof-Signature: sha256=HMAC(secret, timestamp.body)`.",
            status_code=201, responses=bodies.ok_schema(bodies.WEBHOOK_SCHEMA,
                                                        bodies.WEBHOOK_LINKS, 201))
    async def add_hook(body: bodies.WebhookBody) -> Response:
        spec = webhooks.spec_from_dict(body.model_dump(exclude_unset=True))
        hook = webhooks.create(db, spec, now=time.time())
        return _json(hook.to_dict(show_secret=True), 201)

    @r.get("/{webhook_id:int}", dependencies=admin, summary="One webhook",
           operation_id="get_webhook", responses=bodies.ok_schema(bodies.WEBHOOK_SCHEMA))
    def get_hook(webhook_id: IdPath) -> Response:
        hook = webhooks.get(db, webhook_id)
        if hook is None:
            raise HTTPException(404, "no such webhook")
        return _json(hook.to_dict())

    @r.patch("/{webhook_id:int}", dependencies=admin, summary="Enable or disable a webhook",
             operation_id="patch_webhook", responses=bodies.ok_schema(bodies.WEBHOOK_SCHEMA))
    async def patch_hook(webhook_id: IdPath, body: bodies.EnabledBody) -> Response:
        if not webhooks.set_enabled(db, webhook_id, body.enabled):
            raise HTTPException(404, "no such webhook")
        if body.enabled:
            wake()
        return _json(webhooks.get(db, webhook_id).to_dict())  # type: ignore[union-attr]

    @r.delete("/{webhook_id:int}", dependencies=admin, summary="Remove a webhook",
              operation_id="delete_webhook")
    def delete_hook(webhook_id: IdPath) -> Response:
        if not webhooks.remove(db, webhook_id, now=time.time()):
            raise HTTPException(404, "no such webhook")
        return _json({"removed": webhook_id})

    @r.post("/{webhook_id:int}/test", dependencies=admin, summary="Queue a test delivery",
            operation_id="test_webhook", status_code=202,
            responses=bodies.ok_schema(bodies.DELIVERY_QUEUED_SCHEMA, bodies.DELIVERY_LINKS,
                                       202))
    def test_hook(webhook_id: IdPath) -> Response:
        hook = webhooks.get(db, webhook_id)
        if hook is None:
            raise HTTPException(404, "no such webhook")
        did = hooks.queue_test(db, hook)
        return _json({"delivery_id": did, "status": "pending"}, 202)

    return r

"""Webhook configuration: validation and CRUD on the store (``alert_webhooks``).

Shared by the CLI (``wasmprof webhook``) and the API (``/api/v1/webhooks``) so both accept
and reject exactly the same input. Secrets are stored as given (they must be usable to
sign) and never shown in full after creation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from wasmprof.alerts.events import EventType, parse_event_list
from wasmprof.alerts.signing import new_secret
from wasmprof.errors import UsageError

FORMATS = ("json", "slack")
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")


@dataclass(slots=True)
class WebhookSpec:
    """What a user asks for when adding a webhook (validated by :func:`validate`)."""

    url: str
    events: list[EventType]
    secret: str | None = None
    format: str = "json"
    plugin: str | None = None
    description: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    rate_limit: int = 20
    rate_window: float = 60.0
    spike_threshold: int = 50
    spike_window: float = 300.0
    regression_points: float = 5.0
    baseline: str | None = None


@dataclass(slots=True)
class Webhook:
    id: int
    url: str
    events: list[EventType]
    secret: str
    format: str
    plugin: str | None
    description: str | None
    enabled: bool
    max_attempts: int | None
    timeout: float | None
    rate_limit: int
    rate_window: float
    spike_threshold: int
    spike_window: float
    regression_points: float
    baseline: str | None
    created_at: float
    deleted_at: float | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Webhook:
        return cls(
            id=int(row["id"]), url=row["url"],
            events=[EventType(e) for e in row["events"].split(",") if e],
            secret=row["secret"], format=row["format"], plugin=row["plugin"],
            description=row["description"], enabled=bool(row["enabled"]),
            max_attempts=row["max_attempts"], timeout=row["timeout"],
            rate_limit=int(row["rate_limit"]), rate_window=float(row["rate_window"]),
            spike_threshold=int(row["spike_threshold"]), spike_window=float(row["spike_window"]),
            regression_points=float(row["regression_points"]), baseline=row["baseline"],
            created_at=float(row["created_at"]), deleted_at=row["deleted_at"])

    def wants(self, event: EventType, plugin: str | None) -> bool:
        """True when this webhook subscribes to ``event`` for ``plugin``."""
        if not self.enabled or self.deleted_at is not None or event not in self.events:
            return False
        return self.plugin is None or self.plugin == plugin

    def to_dict(self, *, show_secret: bool = False) -> dict[str, Any]:
        return {
            "id": self.id, "url": self.url, "events": [str(e) for e in self.events],
            "format": self.format, "plugin": self.plugin, "description": self.description,
            "enabled": self.enabled,
            "secret": self.secret if show_secret else mask_secret(self.secret),
            "max_attempts": self.max_attempts, "timeout": self.timeout,
            "rate_limit": {"max": self.rate_limit, "window_seconds": self.rate_window},
            "spike": {"threshold": self.spike_threshold, "window_seconds": self.spike_window},
            "profile_regression": {"points": self.regression_points, "baseline": self.baseline},
            "created_at": self.created_at, "stats": dict(self.stats),
        }


def mask_secret(secret: str) -> str:
    return "…" + secret[-4:] if len(secret) > 12 else "…"


def validate_url(url: str, *, source: str = "url", what: str = "webhook URL",
                 expected: str = "http(s)://host[:port]/path") -> str:
    """An absolute http(s) URL with a host, no whitespace/control characters, ≤ 2048 chars
    (``what``/``expected`` word the errors; the health scrape targets use it too)."""
    if not isinstance(url, str) or not url or len(url) > 2048 or _BAD_URL_CHARS.search(url):
        raise UsageError(f"{what} must be a non-empty URL without spaces or control "
                         "characters (at most 2048 characters)", source=source,
                         expected=expected, found=repr(str(url)[:100]))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UsageError(f"{what} cannot be parsed: {e}", source=source,
                         found=repr(url[:100])) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{what} must be absolute http:// or https://", source=source,
                         expected=expected, found=repr(url[:100]))
    if port == 0:
        raise UsageError(f"{what} has port 0", source=source, found=repr(url[:100]))
    return url


def _positive(value: Any, name: str, *, integer: bool = False, allow_none: bool = False,
              minimum: float = 0.0) -> Any:
    if value is None and allow_none:
        return None
    try:
        num = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number", source=name, found=repr(value)) from None
    if num != num or num in (float("inf"), float("-inf")) or num <= minimum:
        raise UsageError(f"{name} must be greater than {minimum:g}", source=name, found=repr(value))
    return num


def validate(spec: WebhookSpec) -> WebhookSpec:
    """Check every field; raises :class:`UsageError` naming the field."""
    validate_url(spec.url)
    if not spec.events:
        raise UsageError("at least one event is required", source="events",
                         expected="crash.new_group, crash.regressed, crash.spike, "
                                  "profile.regression, plugin.memory_growth, plugin.crash_loop")
    if spec.format not in FORMATS:
        raise UsageError("unknown webhook format", source="format", expected=" or ".join(FORMATS),
                         found=repr(spec.format))
    if spec.secret is not None and (len(spec.secret) < 8 or len(spec.secret) > 512):
        raise UsageError("secret must be 8 to 512 characters", source="secret",
                         found=f"{len(spec.secret)} characters")
    if spec.plugin is not None and (not spec.plugin or len(spec.plugin) > 256):
        raise UsageError("plugin filter must be 1 to 256 characters", source="plugin")
    spec.max_attempts = _positive(spec.max_attempts, "max_attempts", integer=True,
                                  allow_none=True)
    if spec.max_attempts is not None and spec.max_attempts > 100:
        raise UsageError("max_attempts must be at most 100", source="max_attempts",
                         found=str(spec.max_attempts))
    spec.timeout = _positive(spec.timeout, "timeout", allow_none=True)
    spec.rate_limit = _positive(spec.rate_limit, "rate_limit", integer=True)
    spec.rate_window = _positive(spec.rate_window, "rate_window")
    spec.spike_threshold = _positive(spec.spike_threshold, "spike_threshold", integer=True)
    spec.spike_window = _positive(spec.spike_window, "spike_window")
    spec.regression_points = _positive(spec.regression_points, "regression_points")
    if spec.regression_points >= 100:
        raise UsageError("regression_points is in percentage points (0-100)",
                         source="regression_points", found=str(spec.regression_points))
    return spec


def spec_from_dict(d: dict[str, Any]) -> WebhookSpec:
    """Build a spec from API JSON (``events`` as a list or comma string)."""
    if not isinstance(d, dict):
        raise UsageError("webhook must be a JSON object", source="body")
    unknown = set(d) - set(WebhookSpec.__slots__)
    if unknown:
        raise UsageError("unknown webhook field", source="body",
                         expected=", ".join(WebhookSpec.__slots__), found=", ".join(sorted(unknown)))
    if "url" not in d or "events" not in d:
        raise UsageError("webhook needs url and events", source="body")
    events = d["events"]
    if isinstance(events, list):
        if not all(isinstance(e, str) for e in events):
            raise UsageError("events must be strings", source="events")
        events = ",".join(events)
    if not isinstance(events, str):
        raise UsageError("events must be a list or a comma-separated string", source="events")
    try:
        parsed = parse_event_list(events)
    except ValueError as e:
        raise UsageError(str(e), source="events") from None
    for key in ("url", "secret", "format", "plugin", "description", "baseline"):
        if d.get(key) is not None and not isinstance(d[key], str):
            raise UsageError(f"{key} must be a string", source=key)
    kw = {k: v for k, v in d.items() if k != "events" and v is not None}
    return WebhookSpec(events=parsed, **kw)


def create(db: Any, spec: WebhookSpec, *, now: float) -> Webhook:
    """Validate and store ``spec``; a missing secret is generated. Returns the webhook
    (with its secret: show it to the user once)."""
    spec = validate(spec)
    secret = spec.secret or new_secret()
    with db.tx() as tx:
        wid = tx.insert(
            "INSERT INTO alert_webhooks (url, events, secret, format, plugin, description, "
            "enabled, max_attempts, timeout, rate_limit, rate_window, spike_threshold, "
            "spike_window, regression_points, baseline, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (spec.url, ",".join(str(e) for e in spec.events), secret, spec.format, spec.plugin,
             spec.description, spec.max_attempts, spec.timeout, spec.rate_limit,
             spec.rate_window, spec.spike_threshold, spec.spike_window,
             spec.regression_points, spec.baseline, now))
        row = tx.one("SELECT * FROM alert_webhooks WHERE id = ?", (wid,))
    assert row is not None
    return Webhook.from_row(row)


def get(db: Any, webhook_id: int, *, include_deleted: bool = False) -> Webhook | None:
    with db.read() as tx:
        row = tx.one("SELECT * FROM alert_webhooks WHERE id = ?", (int(webhook_id),))
    if row is None or (row["deleted_at"] is not None and not include_deleted):
        return None
    return Webhook.from_row(row)


def list_all(db: Any, *, with_stats: bool = True) -> list[Webhook]:
    """Active webhooks, oldest first, with delivery counts per status."""
    with db.read() as tx:
        rows = tx.all("SELECT * FROM alert_webhooks WHERE deleted_at IS NULL ORDER BY id")
        stats_rows = tx.all(
            "SELECT d.webhook_id AS webhook_id, d.status AS status, COUNT(*) AS n "
            "FROM alert_deliveries d JOIN alert_webhooks w ON w.id = d.webhook_id "
            "WHERE w.deleted_at IS NULL GROUP BY d.webhook_id, d.status") if with_stats else []
    hooks = [Webhook.from_row(r) for r in rows]
    by_id = {h.id: h for h in hooks}
    for r in stats_rows:
        h = by_id.get(int(r["webhook_id"]))
        if h is not None:
            h.stats[r["status"]] = int(r["n"])
    return hooks


def active_for(tx: Any, event: EventType, plugin: str | None) -> list[Webhook]:
    """Webhooks (inside an open transaction) that want ``event`` for ``plugin``."""
    rows = tx.all("SELECT * FROM alert_webhooks WHERE deleted_at IS NULL AND enabled = 1 "
                  "ORDER BY id")
    return [h for h in (Webhook.from_row(r) for r in rows) if h.wants(event, plugin)]


def remove(db: Any, webhook_id: int, *, now: float) -> bool:
    """Soft-delete the webhook and cancel its undelivered deliveries. False if unknown."""
    with db.tx() as tx:
        cur = tx.execute("UPDATE alert_webhooks SET deleted_at = ?, enabled = 0 "
                         "WHERE id = ? AND deleted_at IS NULL", (now, int(webhook_id)))
        if cur.rowcount != 1:
            return False
        tx.execute("UPDATE alert_deliveries SET status = 'cancelled', updated_at = ?, "
                   "last_error = 'webhook removed', lease_until = NULL, lease_owner = NULL "
                   "WHERE webhook_id = ? AND status IN ('pending', 'collecting')",
                   (now, int(webhook_id)))
    return True


def set_enabled(db: Any, webhook_id: int, enabled: bool) -> bool:
    with db.tx() as tx:
        cur = tx.execute("UPDATE alert_webhooks SET enabled = ? WHERE id = ? "
                         "AND deleted_at IS NULL", (1 if enabled else 0, int(webhook_id)))
        return cur.rowcount == 1

"""Scrape targets (``health_targets``): validation, CRUD, leases, scrape outcomes.

A target is an Envoy admin ``/stats/prometheus`` URL (``http://127.0.0.1:15000/stats/prometheus``,
Istio's ``:15090/stats/prometheus``, a Higress gateway's admin port) with an interval.
``wasmprof serve --scrape-envoy URL…`` upserts its URLs at start (``origin='config'``);
the API adds and removes others. Several replicas share targets through a lease: the
replica that claims a due target scrapes it and moves ``next_scrape_at`` on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from wasmprof.errors import ConflictError, UsageError

DEFAULT_INTERVAL = 30.0
MIN_INTERVAL = 0.1              # tests scrape fast; a gateway is fine with 1 s or more
MAX_INTERVAL = 86400.0
MAX_TARGETS = 500
_FIELDS = ("url", "name", "interval", "timeout", "enabled")


@dataclass(slots=True)
class Target:
    id: int
    url: str
    name: str
    interval: float
    timeout: float
    enabled: bool
    origin: str
    created_at: float
    updated_at: float
    next_scrape_at: float | None
    last_scrape_at: float | None
    last_ok_at: float | None
    last_error: str | None
    last_duration_ms: float | None
    last_bytes: int | None
    last_series: int | None
    last_plugins: list[str]
    unmapped: list[str]
    consecutive_failures: int
    scrapes: int
    failures: int

    @property
    def source(self) -> str:
        """The ``source`` of this target's series."""
        return f"envoy:{self.id}"

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Target:
        return cls(
            id=int(r["id"]), url=r["url"], name=r["name"] or default_name(r["url"]),
            interval=float(r["interval"]), timeout=float(r["timeout"] or default_timeout(r["interval"])),
            enabled=bool(r["enabled"]), origin=r["origin"], created_at=float(r["created_at"]),
            updated_at=float(r["updated_at"]), next_scrape_at=r["next_scrape_at"],
            last_scrape_at=r["last_scrape_at"], last_ok_at=r["last_ok_at"],
            last_error=r["last_error"], last_duration_ms=r["last_duration_ms"],
            last_bytes=r["last_bytes"], last_series=r["last_series"],
            last_plugins=_json_list(r["last_plugins"]), unmapped=_json_list(r["unmapped"]),
            consecutive_failures=int(r["consecutive_failures"] or 0),
            scrapes=int(r["scrapes"] or 0), failures=int(r["failures"] or 0))

    def status(self, now: float) -> str:
        """``ok`` / ``warning`` (scraped, but e.g. no Wasm metrics in it) / ``failing`` /
        ``stale`` (no scrape for 3 intervals) / ``pending`` / ``disabled``."""
        if not self.enabled:
            return "disabled"
        if self.last_scrape_at is None:
            return "pending"
        if self.consecutive_failures:
            return "failing"
        if now - self.last_scrape_at > max(3 * self.interval, self.interval + 10.0):
            return "stale"
        return "warning" if self.last_error else "ok"

    def to_dict(self, *, now: float, redact: bool = False) -> dict[str, Any]:
        age = None if self.last_ok_at is None else max(0.0, now - self.last_ok_at)
        return {
            "id": self.id, "url": redact_url(self.url) if redact else self.url,
            "name": self.name, "source": self.source, "interval": self.interval,
            "timeout": self.timeout, "enabled": self.enabled, "origin": self.origin,
            "status": self.status(now), "created_at": self.created_at,
            "last_scrape_at": self.last_scrape_at, "last_ok_at": self.last_ok_at,
            "last_ok_age_seconds": age, "last_error": self.last_error,
            "last_duration_ms": self.last_duration_ms, "last_bytes": self.last_bytes,
            "last_series": self.last_series, "plugins": self.last_plugins,
            "unmapped_metrics": self.unmapped, "consecutive_failures": self.consecutive_failures,
            "scrapes": self.scrapes, "failures": self.failures,
            "next_scrape_at": self.next_scrape_at,
        }


def _json_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        v = orjson.loads(text)
    except orjson.JSONDecodeError:
        return []
    return [str(x) for x in v] if isinstance(v, list) else []


def default_name(url: str) -> str:
    try:
        p = urlsplit(url)
        return p.netloc.rsplit("@", 1)[-1] or url[:80]
    except ValueError:
        return url[:80]


def default_timeout(interval: float) -> float:
    return max(0.5, min(10.0, float(interval) * 0.8))


def redact_url(url: str) -> str:
    """The URL without the parts that may act as credentials (the webhooks' rule)."""
    from wasmprof.server.routes_alerts import redact_url as redact
    return redact(url)


def validate_url(url: Any, *, source: str = "url") -> str:
    """An absolute http(s) URL (the webhooks' rule) without a ``#fragment``."""
    from wasmprof.alerts.webhooks import validate_url as validate_http_url
    validate_http_url(url, source=source, what="scrape URL",
                      expected="http(s)://host:port/stats/prometheus")
    if "#" in url:
        raise UsageError("scrape URL must not have a #fragment", source=source,
                         found=repr(url[:100]))
    return url


def validate_interval(value: Any, *, source: str = "interval") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError("interval must be a number of seconds", source=source,
                         found=repr(value)[:60])
    v = float(value)
    if not (MIN_INTERVAL <= v <= MAX_INTERVAL):
        raise UsageError("interval out of range", source=source,
                         expected=f"{MIN_INTERVAL:g} .. {MAX_INTERVAL:g} seconds", found=repr(value))
    return v


def _validate_fields(body: Any, *, partial: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise UsageError("target must be a JSON object", source="body",
                         expected='{"url": "http://host:15000/stats/prometheus", "interval": 30}')
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise UsageError("unknown target field", source=unknown[0][:60],
                         expected=", ".join(_FIELDS), found=unknown[0][:60])
    out: dict[str, Any] = {}
    if "url" in body:
        out["url"] = validate_url(body["url"])
    elif not partial:
        raise UsageError("a target needs a url", source="url",
                         expected="http(s)://host:port/stats/prometheus")
    if body.get("interval") is not None:
        out["interval"] = validate_interval(body["interval"])
    if body.get("timeout") is not None:
        t = body["timeout"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.05 <= float(t) <= 300):
            raise UsageError("timeout must be 0.05 .. 300 seconds", source="timeout",
                             found=repr(t)[:60])
        out["timeout"] = float(t)
    if body.get("name") is not None:
        n = body["name"]
        if not isinstance(n, str) or not n or len(n) > 200 or any(ord(c) < 32 for c in n):
            raise UsageError("name must be 1 to 200 printable characters", source="name",
                             found=repr(n)[:60])
        out["name"] = n
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise UsageError("enabled must be true or false", source="enabled",
                             found=repr(body["enabled"])[:20])
        out["enabled"] = body["enabled"]
    return out


def create(db: Any, body: Any, *, now: float, origin: str = "api") -> tuple[Target, bool]:
    """Add a target (or, for the same URL, update its interval/name): (target, created)."""
    f = _validate_fields(body, partial=False)
    with db.tx() as tx:
        row = tx.one("SELECT * FROM health_targets WHERE url = ? AND deleted_at IS NULL",
                     (f["url"],))
        if row is not None:
            sets = {k: v for k, v in f.items() if k != "url"}
            if sets:
                _update(tx, int(row["id"]), sets, now)
            row = tx.one("SELECT * FROM health_targets WHERE id = ?", (row["id"],))
            return Target.from_row(row), False  # type: ignore[arg-type]
        n = int(tx.scalar("SELECT COUNT(*) AS n FROM health_targets WHERE deleted_at IS NULL") or 0)
        if n >= MAX_TARGETS:
            raise ConflictError("too many scrape targets", source="url",
                             expected=f"at most {MAX_TARGETS}")
        tid = tx.insert(
            "INSERT INTO health_targets (url, name, interval, timeout, enabled, origin, "
            "created_at, updated_at, next_scrape_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (f["url"], f.get("name"), f.get("interval", DEFAULT_INTERVAL), f.get("timeout"),
             1 if f.get("enabled", True) else 0, origin, now, now, now))
        row = tx.one("SELECT * FROM health_targets WHERE id = ?", (tid,))
    return Target.from_row(row), True  # type: ignore[arg-type]


def _update(tx: Any, tid: int, sets: dict[str, Any], now: float) -> None:
    cols = ", ".join(f"{k} = ?" for k in sets)
    vals = [1 if v is True else 0 if v is False else v for v in sets.values()]
    tx.execute(f"UPDATE health_targets SET {cols}, updated_at = ?, next_scrape_at = ? "
               "WHERE id = ?", (*vals, now, now, tid))


def update(db: Any, tid: int, body: Any, *, now: float) -> Target | None:
    f = _validate_fields(body, partial=True)
    with db.tx() as tx:
        row = tx.one("SELECT id FROM health_targets WHERE id = ? AND deleted_at IS NULL", (tid,))
        if row is None:
            return None
        if "url" in f and tx.one("SELECT id FROM health_targets WHERE url = ? AND id <> ? AND "
                                 "deleted_at IS NULL", (f["url"], tid)):
            raise ConflictError("another target has this URL", source="url",
                                found=f["url"][:100])
        if f:
            _update(tx, tid, f, now)
        row = tx.one("SELECT * FROM health_targets WHERE id = ?", (tid,))
    return Target.from_row(row)  # type: ignore[arg-type]


def get(db: Any, tid: int) -> Target | None:
    with db.read() as tx:
        row = tx.one("SELECT * FROM health_targets WHERE id = ? AND deleted_at IS NULL", (tid,))
    return Target.from_row(row) if row else None


def list_all(db: Any) -> list[Target]:
    with db.read() as tx:
        rows = tx.all("SELECT * FROM health_targets WHERE deleted_at IS NULL ORDER BY id")
    return [Target.from_row(r) for r in rows]


def remove(db: Any, tid: int, *, now: float) -> bool:
    with db.tx() as tx:
        cur = tx.execute("UPDATE health_targets SET deleted_at = ?, enabled = 0 WHERE id = ? "
                         "AND deleted_at IS NULL", (now, tid))
        return cur.rowcount == 1


def claim_due(db: Any, *, owner: str, now: float, limit: int = 8,
              only_id: int | None = None) -> list[Target]:
    """Lease due targets (``next_scrape_at <= now``, enabled, not leased) to ``owner``."""
    out: list[Target] = []
    with db.tx() as tx:
        sql = ("SELECT id, timeout, interval FROM health_targets WHERE deleted_at IS NULL "
               "AND (lease_until IS NULL OR lease_until < ?) ")
        params: list[Any] = [now]
        if only_id is not None:
            sql += "AND id = ? "
            params.append(only_id)
        else:
            sql += "AND enabled = 1 AND (next_scrape_at IS NULL OR next_scrape_at <= ?) "
            params.append(now)
        sql += "ORDER BY next_scrape_at LIMIT ?"
        params.append(limit)
        for r in tx.all(sql, params):
            timeout = float(r["timeout"] or default_timeout(r["interval"]))
            cur = tx.execute("UPDATE health_targets SET lease_until = ?, lease_owner = ? "
                             "WHERE id = ? AND (lease_until IS NULL OR lease_until < ?)",
                             (now + 2 * timeout + 5.0, owner, r["id"], now))
            if cur.rowcount == 1:
                row = tx.one("SELECT * FROM health_targets WHERE id = ?", (r["id"],))
                out.append(Target.from_row(row))  # type: ignore[arg-type]
    return out


def record_outcome(db: Any, target: Target, *, now: float, started: float, ok: bool,
                   error: str | None = None, duration_ms: float = 0.0, size: int | None = None,
                   series: int | None = None, plugins: list[str] | None = None,
                   unmapped: list[str] | None = None) -> None:
    """Store how a scrape went (``error`` of a successful scrape is a warning, e.g. no Wasm
    metrics in the page), release the lease and schedule the next one (one interval after
    this one started, never in the past)."""
    nxt = max(started + target.interval, now)
    with db.tx() as tx:
        if ok:
            tx.execute(
                "UPDATE health_targets SET lease_until = NULL, lease_owner = NULL, "
                "next_scrape_at = ?, last_scrape_at = ?, last_ok_at = ?, last_error = ?, "
                "last_duration_ms = ?, last_bytes = ?, last_series = ?, last_plugins = ?, "
                "unmapped = ?, consecutive_failures = 0, scrapes = scrapes + 1 WHERE id = ?",
                (nxt, started, started, error, duration_ms, size, series,
                 orjson.dumps(plugins or []).decode(), orjson.dumps(unmapped or []).decode(),
                 target.id))
        else:
            tx.execute(
                "UPDATE health_targets SET lease_until = NULL, lease_owner = NULL, "
                "next_scrape_at = ?, last_scrape_at = ?, last_error = ?, last_duration_ms = ?, "
                "consecutive_failures = consecutive_failures + 1, scrapes = scrapes + 1, "
                "failures = failures + 1 WHERE id = ?",
                (nxt, started, (error or "failed")[:1000], duration_ms, target.id))

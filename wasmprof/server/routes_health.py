"""API routes of plugin memory / VM health (:mod:`wasmprof.health`), under ``/api/v1/health``.

Read (``read`` scope):

- ``GET /series?plugin=&source=&metric=a,b&from=&to=&step=`` — every series of a plugin
  (no ``plugin``: the process/runtime-level series) on one time axis: gauges' level at the
  end of each bucket, counters' increases (restarts handled) per bucket, plus per-metric
  ``totals`` over threads, runtimes and sources;
- ``GET /plugins?window=&sort=memory_growth|crash_rate|memory&limit=`` — plugins ranked by
  steady memory growth (slope, fit, projected time to the limit) or crash/rebuild rate;
- ``GET /overview`` — scrape targets with their status (URLs redacted), failing ones, the
  two rankings' top entries and open alerts, for the dashboard's overview;
- ``GET /alerts?status=active|cleared|all&plugin=&limit=`` — alert episodes;
- ``GET /settings``; ``GET /targets``, ``GET /targets/{id}`` (URLs redacted without ``admin``).

Admin: ``PUT /settings`` (some fields), ``POST /targets`` (``{"url", "interval"?,
"name"?, "timeout"?, "enabled"?}``; the same URL again updates it), ``PATCH|DELETE
/targets/{id}``, ``POST /targets/{id}/scrape`` (scrape now), ``POST /check`` (run the
checks now). Bad input → 400 with the error shape naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from wasmprof.errors import UsageError
from wasmprof.health import monitor_for, settings, store, targets
from wasmprof.health.metrics import collector
from wasmprof.model import HealthMetric
from wasmprof.server.responses import ERROR_RESPONSES, JSON_BODY, raw_body
from wasmprof.server.contract import read_json_body as _body
from wasmprof.server.routes_alerts import _json
from wasmprof.server.security import Principal

MAX_ID = 2 ** 63 - 1
MAX_SPAN = 90 * 86400.0
DEFAULT_SPAN = 6 * 3600.0
SORTS = ("memory_growth", "crash_rate", "memory")
NOT_FOUND = {404: {"description": "No such scrape target"}}


def parse_when(value: str | None, what: str) -> float | None:
    """Unix seconds or ISO 8601 (UTC when no zone) → finite seconds; UsageError otherwise."""
    if value is None or value == "":
        return None
    try:
        t = float(value)
    except ValueError:
        try:
            d = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError("bad time", source=what, expected="unix seconds or ISO 8601",
                             found=value[:40]) from None
        t = (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()
    if not math.isfinite(t) or not (0 <= t <= 1e11):
        raise UsageError("time out of range", source=what, expected="unix seconds",
                         found=value[:40])
    return t


def _span(frm: str | None, to: str | None, now: float) -> tuple[float, float]:
    end = parse_when(to, "to")
    start = parse_when(frm, "from")
    end = now if end is None else end
    start = end - DEFAULT_SPAN if start is None else start
    if start >= end:
        raise UsageError("from must be before to", source="from", found=f"{start:g} >= {end:g}")
    if end - start > MAX_SPAN:
        raise UsageError("time range too long", source="from",
                         expected=f"at most {MAX_SPAN / 86400:g} days")
    return start, end


def _name(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if len(value) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"bad {what}", source=what, expected="at most 256 printable characters",
                         found=value[:40])
    return value


def _metrics(value: str | None) -> list[str] | None:
    if not value:
        return None
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if part not in HealthMetric._value2member_map_:
            raise UsageError("unknown health metric", source="metric",
                             expected=", ".join(m.value for m in HealthMetric), found=part[:60])
        out.append(part)
    return out or None


def build_router(service: Any, require: Callable[[str], Any]) -> APIRouter:
    db = service.db
    metrics = getattr(service, "metrics", None)
    if metrics is not None and hasattr(metrics, "collectors"):
        mon = monitor_for(service)
        metrics.collectors.append(collector(db, clock=lambda: mon.clock(), names=mon.names))
    r = APIRouter(prefix="/api/v1/health", tags=["health"], responses=ERROR_RESPONSES)
    read = Depends(require("read"))
    admin = Depends(require("admin"))

    def clock() -> float:
        return monitor_for(service).clock()

    # -- series and rankings -----------------------------------------------------------
    @r.get("/series", summary="A plugin's memory / VM / crash / rebuild series on one time axis",
           description="No `plugin`: the process- and runtime-level series. `metric` = comma "
                       "list of " + ", ".join(m.value for m in HealthMetric) + ". Gauges: the "
                       "level at the end of each bucket; counters: increases per bucket "
                       "(counter resets of a restarted gateway handled). `from`/`to`: unix "
                       "seconds or ISO 8601 (default the last 6 h); `step` seconds (default: "
                       "about 240 buckets).")
    def get_series(plugin: str | None = Query(None, max_length=256),
                   source: str | None = Query(None, max_length=300),
                   metric: str | None = Query(None, max_length=2000),
                   frm: str | None = Query(None, alias="from", max_length=64),
                   to: str | None = Query(None, max_length=64),
                   step: float | None = Query(None, gt=0, le=86400 * 7),
                   p: Principal = read) -> Response:
        start, end = _span(frm, to, clock())
        if step is not None and not math.isfinite(step):
            raise UsageError("step must be a number of seconds", source="step")
        view = store.series_view(db, plugin=_name(plugin, "plugin") or "", start=start, end=end,
                                 step=step, source=_name(source, "source"),
                                 metrics=_metrics(metric), names=monitor_for(service).names)
        return _json(view)

    @r.get("/plugins", summary="Plugins ranked by steady memory growth or crash/rebuild rate")
    def get_plugins(window: float | None = Query(None, ge=1, le=30 * 86400),
                    sort: str = Query("memory_growth", max_length=32),
                    limit: int = Query(100, ge=1, le=1000),
                    plugin: str | None = Query(None, max_length=256),
                    p: Principal = read) -> Response:
        if sort not in SORTS:
            raise UsageError("unknown sort", source="sort", expected=", ".join(SORTS),
                             found=sort[:40])
        st = settings.load(db)
        now = clock()
        entries = store.plugin_health(db, st, now=now, window=window,
                                      plugin=_name(plugin, "plugin"), names=monitor_for(service).names)
        ranked = store.rank(entries, sort)
        return _json({"at": now, "window_seconds": window or st.memory_window, "sort": sort,
                      "plugins": ranked[:limit], "total": len(ranked)})

    @r.get("/overview", summary="Scrape targets and their status, top plugins, open alerts")
    def get_overview(p: Principal = read) -> Response:
        st = settings.load(db)
        now = clock()
        ts = [t.to_dict(now=now, redact=not p.allows("admin")) for t in targets.list_all(db)]
        entries = store.plugin_health(db, st, now=now, names=monitor_for(service).names)
        with db.read() as tx:
            open_alerts = tx.all("SELECT kind, plugin, source, started_at, last_seen_at FROM "
                                 "health_alerts WHERE status = 'active' ORDER BY started_at DESC "
                                 "LIMIT 100")
        return _json({
            "at": now, "targets": ts,
            "failing": [t for t in ts if t["status"] in ("failing", "stale", "warning")],
            "memory_growth": store.rank(entries, "memory_growth")[:10],
            "crash_rate": [e for e in store.rank(entries, "crash_rate")
                           if e["crashes"] or e["rebuilds"]][:10],
            "plugins": len(entries), "alerts": open_alerts, "settings": st.to_dict()})

    @r.get("/alerts", summary="Plugin health alert episodes (memory growth, crash loops)")
    def get_alerts(status: str = Query("active", max_length=16),
                   plugin: str | None = Query(None, max_length=256),
                   limit: int = Query(100, ge=1, le=1000), p: Principal = read) -> Response:
        if status not in ("active", "cleared", "all"):
            raise UsageError("unknown status", source="status", expected="active, cleared, all",
                             found=status)
        sql = "SELECT * FROM health_alerts WHERE 1 = 1"
        params: list[Any] = []
        if status != "all":
            sql += " AND status = ?"
            params.append(status)
        if plugin is not None:
            sql += " AND plugin = ?"
            params.append(_name(plugin, "plugin"))
        sql += " ORDER BY started_at DESC LIMIT ?"
        params.append(limit)
        with db.read() as tx:
            rows = tx.all(sql, params)
        for row in rows:
            row["info"] = orjson.loads(row["info"]) if row["info"] else None
        return _json({"alerts": rows})

    @r.post("/check", summary="Run the health checks now (alerts are queued as usual)")
    def post_check(p: Principal = admin) -> Response:
        mon = monitor_for(service)
        return _json(mon.checker.run(mon.clock()).to_dict())

    # -- settings --------------------------------------------------------------------------
    @r.get("/settings", summary="Detection settings (windows, thresholds, limit)")
    def get_settings(p: Principal = read) -> Response:
        return _json(settings.load(db).to_dict())

    @r.put("/settings", summary="Change some detection settings",
           description="A JSON object with any of: " + ", ".join(settings.HealthSettings.__slots__),
           openapi_extra=raw_body(JSON_BODY, "the settings to change"))
    async def put_settings(request: Request, p: Principal = admin) -> Response:
        body = await _body(request)
        new = await run_in_threadpool(settings.save, db, body)
        return _json(new.to_dict())

    # -- targets --------------------------------------------------------------------------
    @r.get("/targets", summary="Scrape targets and how their last scrape went")
    def list_targets(p: Principal = read) -> Response:
        now = clock()
        return _json({"targets": [t.to_dict(now=now, redact=not p.allows("admin"))
                                  for t in targets.list_all(db)]})

    @r.post("/targets", summary="Add an Envoy /stats/prometheus endpoint to scrape",
            description='`{"url": "http://gw:15000/stats/prometheus", "interval": 30, "name"?, '
                        '"timeout"?, "enabled"?}`; 201 when new, 200 when the URL was known '
                        "(its settings updated).",
            status_code=201, responses={200: {"description": "Known URL, updated"}},
            openapi_extra=raw_body(JSON_BODY, "the target"))
    async def add_target(request: Request, p: Principal = admin) -> Response:
        body = await _body(request)
        t, created = await run_in_threadpool(lambda: targets.create(db, body, now=clock()))
        monitor_for(service).wake()
        return _json(t.to_dict(now=clock()), 201 if created else 200)

    @r.get("/targets/{target_id}", summary="One scrape target", responses=NOT_FOUND)
    def get_target(target_id: int = Path(ge=1, le=MAX_ID), p: Principal = read) -> Response:
        t = targets.get(db, target_id)
        if t is None:
            raise HTTPException(404, "no such scrape target")
        return _json(t.to_dict(now=clock(), redact=not p.allows("admin")))

    @r.patch("/targets/{target_id}", summary="Change a target (url, interval, name, timeout, "
                                             "enabled)", responses=NOT_FOUND,
             openapi_extra=raw_body(JSON_BODY, "the fields to change"))
    async def patch_target(request: Request, target_id: int = Path(ge=1, le=MAX_ID),
                           p: Principal = admin) -> Response:
        body = await _body(request)
        t = await run_in_threadpool(lambda: targets.update(db, target_id, body, now=clock()))
        if t is None:
            raise HTTPException(404, "no such scrape target")
        monitor_for(service).wake()
        return _json(t.to_dict(now=clock()))

    @r.delete("/targets/{target_id}", summary="Stop scraping a target (its series stay)",
              responses=NOT_FOUND)
    def delete_target(target_id: int = Path(ge=1, le=MAX_ID), p: Principal = admin) -> Response:
        if not targets.remove(db, target_id, now=clock()):
            raise HTTPException(404, "no such scrape target")
        return _json({"removed": target_id})

    @r.post("/targets/{target_id}/scrape", summary="Scrape a target now",
            responses={**NOT_FOUND, 409: {"description": "Another worker is scraping it"}})
    def scrape_target(target_id: int = Path(ge=1, le=MAX_ID), p: Principal = admin) -> Response:
        if targets.get(db, target_id) is None:
            raise HTTPException(404, "no such scrape target")
        result = monitor_for(service).scrape_now(target_id)
        if result is None:
            raise HTTPException(409, "the target is being scraped by another worker")
        return _json(result.to_dict())

    return r




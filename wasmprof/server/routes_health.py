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
checks now). Parameters and bodies are typed (:mod:`wasmprof.server.contract`,
:mod:`wasmprof.server.bodies_health`): a value outside its schema is a 422 naming the field;
a time range that is empty or longer than 90 days is a 400 naming ``from``; a URL another
target has, or one target too many, is a 409.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from starlette.concurrency import run_in_threadpool

from wasmprof.errors import UsageError
from wasmprof.health import monitor_for, settings, store, targets
from wasmprof.health.metrics import collector
from wasmprof.model import HealthMetric
from wasmprof.server import bodies_health as hb
from wasmprof.server.bodies import ok_schema
from wasmprof.server.contract import (IdPath, TimeQuery, comma_list_pattern, limit_query,
                                      text_query, time_query)
from wasmprof.server.profile_query import parse_time
from wasmprof.server.responses import ERROR_RESPONSES, ErrorBody
from wasmprof.server.routes_alerts import _json
from wasmprof.server.security import Principal

MAX_SPAN = 90 * 86400.0
DEFAULT_SPAN = 6 * 3600.0
Sort = Literal["memory_growth", "crash_rate", "memory"]
SORTS = Sort.__args__
AlertStatus = Literal["active", "cleared", "all"]
#: Plugin names of the health series (Envoy stats names can be longer than API names).
PluginQuery = Annotated[str | None, text_query(256)]
MetricQuery = Annotated[str | None, Query(
    max_length=2000, pattern=comma_list_pattern(m.value for m in HealthMetric),
    description="comma list of " + ", ".join(m.value for m in HealthMetric))]
CONFLICT = {409: {"model": ErrorBody, "description": "Another target has this URL, or "
                                                     "there are as many targets as allowed"}}


def parse_when(value: str | None, what: str) -> float | None:
    """Unix seconds or ISO 8601 (UTC when no zone) → finite seconds ≥ 0; UsageError
    otherwise (the routes' :data:`~wasmprof.server.contract.TimeQuery` lets only such
    values through)."""
    t = parse_time(value, what)
    if t is None:
        return None
    if not (0 <= t <= 1e11):
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
                       "seconds or ISO 8601 (default the last 6 h; `from` before `to`, at most "
                       "90 days apart, else 400); `step` seconds (default: about 240 buckets).")
    def get_series(plugin: PluginQuery = None, source: Annotated[str | None, text_query(256)] = None,
                   metric: MetricQuery = None,
                   frm: Annotated[str | None, time_query("from")] = None,
                   to: TimeQuery = None,
                   step: float | None = Query(None, gt=0, le=86400 * 7, allow_inf_nan=False),
                   p: Principal = read) -> Response:
        start, end = _span(frm, to, clock())
        view = store.series_view(db, plugin=plugin or "", start=start, end=end, step=step,
                                 source=source, metrics=_metrics(metric),
                                 names=monitor_for(service).names)
        return _json(view)

    @r.get("/plugins", summary="Plugins ranked by steady memory growth or crash/rebuild rate")
    def get_plugins(window: float | None = Query(None, ge=1, le=30 * 86400, allow_inf_nan=False),
                    sort: Sort = "memory_growth", limit: int = limit_query(100, 1000),
                    plugin: PluginQuery = None, p: Principal = read) -> Response:
        st = settings.load(db)
        now = clock()
        entries = store.plugin_health(db, st, now=now, window=window, plugin=plugin,
                                      names=monitor_for(service).names)
        ranked = store.rank(entries, sort)
        return _json({"at": now, "window_seconds": window or st.memory_window, "sort": sort,
                      "plugins": ranked[:limit], "total": len(ranked)})

    @r.get("/overview", summary="Scrape targets and their status, top plugins, open alerts",
           responses=ok_schema(bodies_overview(), hb.TARGET_LIST_LINKS))
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
    def get_alerts(status: AlertStatus = "active", plugin: PluginQuery = None,
                   limit: int = limit_query(100, 1000), p: Principal = read) -> Response:
        sql = "SELECT * FROM health_alerts WHERE 1 = 1"
        params: list[Any] = []
        if status != "all":
            sql += " AND status = ?"
            params.append(status)
        if plugin is not None:
            sql += " AND plugin = ?"
            params.append(plugin)
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
    @r.get("/settings", summary="Detection settings (windows, thresholds, limit)",
           responses=ok_schema(hb.SETTINGS_SCHEMA))
    def get_settings(p: Principal = read) -> Response:
        return _json(settings.load(db).to_dict())

    @r.put("/settings", summary="Change some detection settings",
           description="A JSON object with any of: " + ", ".join(settings.HealthSettings.__slots__)
                       + " (each within its bounds; the others stay). Answers all of them.",
           responses=ok_schema(hb.SETTINGS_SCHEMA))
    async def put_settings(body: hb.SettingsBody, p: Principal = admin) -> Response:
        new = await run_in_threadpool(settings.save, db, hb.changes(body))
        return _json(new.to_dict())

    # -- targets --------------------------------------------------------------------------
    @r.get("/targets", summary="Scrape targets and how their last scrape went",
           responses=ok_schema(hb.TARGET_LIST_SCHEMA, hb.TARGET_LIST_LINKS))
    def list_targets(p: Principal = read) -> Response:
        now = clock()
        return _json({"targets": [t.to_dict(now=now, redact=not p.allows("admin"))
                                  for t in targets.list_all(db)]})

    @r.post("/targets", summary="Add an Envoy /stats/prometheus endpoint to scrape",
            description='`{"url": "http://gw:15000/stats/prometheus", "interval": 30, "name"?, '
                        '"timeout"?, "enabled"?}`; 201 when new, 200 when the URL was known '
                        "(its settings updated); 409 past the allowed number of targets.",
            status_code=201,
            responses={**ok_schema(hb.TARGET_SCHEMA, hb.TARGET_LINKS, 201),
                       **ok_schema(hb.TARGET_SCHEMA, hb.TARGET_LINKS, 200), **CONFLICT})
    async def add_target(body: hb.TargetBody, p: Principal = admin) -> Response:
        t, created = await run_in_threadpool(
            lambda: targets.create(db, hb.changes(body), now=clock()))
        monitor_for(service).wake()
        return _json(t.to_dict(now=clock()), 201 if created else 200)

    @r.get("/targets/{target_id:int}", summary="One scrape target",
           operation_id="get_health_target", responses=ok_schema(hb.TARGET_SCHEMA))
    def get_target(target_id: IdPath, p: Principal = read) -> Response:
        t = targets.get(db, target_id)
        if t is None:
            raise HTTPException(404, "no such scrape target")
        return _json(t.to_dict(now=clock(), redact=not p.allows("admin")))

    @r.patch("/targets/{target_id:int}", summary="Change a target (url, interval, name, timeout, "
                                                 "enabled)", operation_id="patch_health_target",
             responses={**ok_schema(hb.TARGET_SCHEMA), **CONFLICT})
    async def patch_target(target_id: IdPath, body: hb.TargetPatch,
                           p: Principal = admin) -> Response:
        t = await run_in_threadpool(
            lambda: targets.update(db, target_id, hb.changes(body), now=clock()))
        if t is None:
            raise HTTPException(404, "no such scrape target")
        monitor_for(service).wake()
        return _json(t.to_dict(now=clock()))

    @r.delete("/targets/{target_id:int}", summary="Stop scraping a target (its series stay)",
              operation_id="delete_health_target",
              responses=ok_schema(bodies_removed()))
    def delete_target(target_id: IdPath, p: Principal = admin) -> Response:
        if not targets.remove(db, target_id, now=clock()):
            raise HTTPException(404, "no such scrape target")
        return _json({"removed": target_id})

    @r.post("/targets/{target_id:int}/scrape", summary="Scrape a target now",
            operation_id="scrape_health_target",
            description="Answers how the scrape went (a failed scrape is still a 200 that "
                        "says why); 409 while another worker scrapes it.",
            responses={409: {"model": ErrorBody, "description": "Another worker is scraping it"}})
    def scrape_target(target_id: IdPath, p: Principal = admin) -> Response:
        if targets.get(db, target_id) is None:
            raise HTTPException(404, "no such scrape target")
        result = monitor_for(service).scrape_now(target_id)
        if result is None:
            raise HTTPException(409, "the target is being scraped by another worker")
        return _json(result.to_dict())

    return r


def bodies_overview() -> dict[str, Any]:
    return hb._obj(["at", "targets"], at=hb.NUM, targets={"type": "array",
                                                         "items": hb.TARGET_SCHEMA})


def bodies_removed() -> dict[str, Any]:
    return hb._obj(["removed"], removed={"type": "integer"})

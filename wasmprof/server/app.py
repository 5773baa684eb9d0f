"""FastAPI app factory: ``create_app(config) -> FastAPI``.

Mounts API v1 (:mod:`wasmprof.server.routes_api`), the alerts routes
(``wasmprof.server.routes_alerts.router`` or ``build_router(svc, require)`` when present),
the plugin health routes (``wasmprof.server.routes_health``; its monitor thread starts in
the lifespan with ``wasmprof.health.start_monitor``),
the dashboard (``wasmprof.server.web.mount_web(app)`` when present), ``/healthz``,
``/metrics``; OpenAPI at ``/openapi.json``, Swagger UI at ``/docs`` served from local files
(no CDN; no ReDoc, whose bundle loads a logo from a CDN). Errors follow one shape
(:mod:`wasmprof.server.contract`): :class:`WasmprofError` → its ``http_status`` (400) with its
``to_dict()``, validation → 422, body over the cap → 413, slow body → 408, rate limit → 429.
Requests are bounded by :mod:`wasmprof.server.guards` (outermost middleware: size caps, body
timeouts, wall budget of heavy routes, ``nosniff``). One JSON access-log line per request on
the ``wasmprof.access`` logger.
"""

from __future__ import annotations

import importlib
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse, Response
from fastapi_offline import FastAPIOffline

from wasmprof import __version__
from wasmprof.config import ServerConfig
from wasmprof.server.contract import install_error_handlers, repeated_scalar_params
from wasmprof.server.guards import Limits, RequestGuard
from wasmprof.server.responses import ERROR_RESPONSES, OrjsonResponse
from wasmprof.server.routes_api import build_router
from wasmprof.server.security import RateLimiter, TokenCache, make_require, metrics_guard
from wasmprof.server.service import Service

access_log = logging.getLogger("wasmprof.access")
log = logging.getLogger(__name__)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    _SKIP = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
        "message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                             "logger": record.name, "msg": record.getMessage()}
        for k, v in record.__dict__.items():
            if k not in self._SKIP:
                d[k] = v
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(d, default=str).decode()


class AccessLogMiddleware:
    """Pure ASGI: one structured log line + metrics per HTTP request."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(msg: dict) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            dt = time.perf_counter() - t0
            self.metrics.inc("http_responses", code=f"{status // 100}xx")
            self.metrics.observe("request", dt)
            if access_log.isEnabledFor(logging.INFO):
                p = (scope.get("state") or {}).get("principal")
                client = scope.get("client")
                access_log.info("request", extra={
                    "method": scope.get("method"), "path": scope.get("path"), "status": status,
                    "ms": round(dt * 1000, 2), "client": client[0] if client else None,
                    "token": p.name if p is not None else None})


def _limit_for(config: ServerConfig):
    def limit(path: str) -> int:
        if path.startswith("/api/v1/modules"):
            return config.max_module_bytes + (1 << 20)      # multipart overhead
        if path.startswith("/api/v1/logs"):
            return config.max_log_bytes + (1 << 20)
        if path.startswith("/api/v1/samples"):
            return config.max_samples_bytes
        if path.startswith("/api/v1/profiles") or path == "/ingest":
            return config.max_profile_bytes + (1 << 20)
        return config.max_json_bytes
    return limit


#: Read-only routes whose work can grow with the stored data: they get a wall budget.
HEAVY_ROUTES = (("GET", "/api/v1/profiles"), ("POST", "/api/v1/symbolize"),
                ("GET", "/api/v1/web/source"))


def _budget_for(config: ServerConfig):
    def budget(method: str, path: str) -> float | None:
        if config.request_budget <= 0:
            return None
        for m, prefix in HEAVY_ROUTES:
            if method == m and path.startswith(prefix):
                return config.request_budget
        return None
    return budget


def limits_of(config: ServerConfig) -> Limits:
    return Limits(header_timeout=config.header_timeout,
                  body_idle_timeout=config.body_idle_timeout,
                  body_min_rate=config.body_min_rate, request_budget=config.request_budget)


def create_app(config: ServerConfig, service: Service | None = None) -> FastAPI:
    svc = service or Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.background:
            svc.start()
        starter = _optional("wasmprof.alerts", "start_worker")
        worker = None
        if (starter is not None and config.background and config.deliver_webhooks
                and config.maintenance):
            try:
                worker = starter(svc.db, config)
            except Exception:  # noqa: BLE001 - alerts must not stop the service
                log.exception("alerts worker did not start")
        health_starter = _optional("wasmprof.health", "start_monitor")
        health = None
        if health_starter is not None and config.background and config.maintenance:
            try:
                health = health_starter(svc, config)
            except Exception:  # noqa: BLE001 - health scraping must not stop the service
                log.exception("health monitor did not start")
        try:
            yield
        finally:
            if health is not None:
                health.stop()
            if worker is not None and hasattr(worker, "stop"):
                worker.stop()
            svc.stop()

    # Swagger UI at /docs from files shipped in the fastapi-offline package (under
    # /static-offline-docs): the docs work with no external network. No ReDoc: its bundle
    # fetches a logo from its vendor's CDN.
    app: FastAPI = FastAPIOffline(
        title="wasmprof", version=__version__, lifespan=lifespan, redoc_url=None,
        default_response_class=OrjsonResponse,
        dependencies=[Depends(repeated_scalar_params)],
        swagger_ui_parameters={"validatorUrl": None},   # no badge from validator.swagger.io
        description="Crash symbolication and profiles for WebAssembly plugins. "
                    "Authenticate with `Authorization: Bearer <token>`; create one with "
                    "`wasmprof token create NAME --scopes ingest,read` (scopes: ingest, "
                    "read, admin). Errors are JSON objects with `error` and `detail` "
                    "(bad input also names `source`, `offset`, `expected`, `found`).")
    app.state.service = svc
    app.state.config = config
    configure_alerts = _optional("wasmprof.alerts", "configure")
    if config.public_url and configure_alerts is not None:
        configure_alerts(public_url=config.public_url)   # links in alerts queued by ingest
    tokens = TokenCache(svc.db)
    limiter = RateLimiter(config.rate_limit, config.rate_burst)
    require = make_require(config, tokens, limiter,
                           lambda: svc.metrics.inc("rate_limited"))
    app.state.require = require

    install_error_handlers(app)
    app.add_middleware(RequestGuard, limits=limits_of(config), limit_for=_limit_for(config),
                       budget_for=_budget_for(config))
    app.add_middleware(AccessLogMiddleware, metrics=svc.metrics)

    @app.get("/healthz", include_in_schema=True, summary="Liveness + database check",
             responses={503: {"description": "The database does not answer"}})
    def healthz() -> Response:
        try:
            with svc.db.read() as tx:
                tx.scalar("SELECT 1 AS one")
            ok = True
        except Exception as e:  # noqa: BLE001
            log.warning("health check failed: %s", e)
            ok = False
        body = {"status": "ok" if ok else "unavailable", "version": __version__,
                "database": svc.db.dialect, "queue_depth": svc.queue.qsize(),
                "demo": config.demo}
        return OrjsonResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics",
             description="Open unless the server runs with `--metrics-token`; then it needs "
                         "`Authorization: Bearer <metrics token>` or an admin token.",
             dependencies=[Depends(metrics_guard(config, tokens))],
             responses={401: ERROR_RESPONSES[401]})
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(svc.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(build_router(svc, require))
    from wasmprof.server.routes_profiles import build_router as build_profile_router
    app.include_router(build_profile_router(svc, require))
    from wasmprof.server import routes_sourcemaps
    app.include_router(routes_sourcemaps.build_router(svc, require))

    alerts_routes = _optional_module("wasmprof.server.routes_alerts")
    if alerts_routes is not None:
        if hasattr(alerts_routes, "build_router"):
            app.include_router(alerts_routes.build_router(svc, require))
        elif hasattr(alerts_routes, "router"):
            app.include_router(alerts_routes.router)
    from wasmprof.server.routes_sources import build_router as build_sources_router
    app.include_router(build_sources_router(svc, require))
    health_routes = _optional_module("wasmprof.server.routes_health")
    if health_routes is not None:
        app.include_router(health_routes.build_router(svc, require))
    web = _optional_module("wasmprof.server.web")
    if web is not None and hasattr(web, "mount_web"):
        web.mount_web(app)
    return app


def _optional_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            return None
        raise


def _optional(module: str, attr: str) -> Any:
    mod = _optional_module(module)
    return getattr(mod, attr, None) if mod is not None else None

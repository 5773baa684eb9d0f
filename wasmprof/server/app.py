"""FastAPI app factory: ``create_app(config) -> FastAPI``.

Mounts API v1 (:mod:`wasmprof.server.routes_api`), the alerts routes
(``wasmprof.server.routes_alerts.router`` or ``build_router(svc, require)`` when present),
the dashboard (``wasmprof.server.web.mount_web(app)`` when present), ``/healthz``,
``/metrics``; OpenAPI at ``/openapi.json``, Swagger UI at ``/docs`` served from local files
(no CDN; no ReDoc, whose bundle loads a logo from a CDN). Errors: :class:`WasmprofError` → 400 with its
``to_dict()``; body over the cap → 413; rate limit → 429. One JSON access-log line per
request on the ``wasmprof.access`` logger.
"""

from __future__ import annotations

import importlib
import logging
import time
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi_offline import FastAPIOffline

from wasmprof.server.responses import OrjsonResponse

from wasmprof import __version__
from wasmprof.config import ServerConfig
from wasmprof.errors import WasmprofError
from wasmprof.server.routes_api import build_router
from wasmprof.server.security import (BodyLimitMiddleware, RateLimiter, TokenCache,
                                      make_require)
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
        if path.startswith("/api/v1/profiles"):
            return config.max_profile_bytes + (1 << 20)
        return config.max_json_bytes
    return limit


def create_app(config: ServerConfig, service: Service | None = None) -> FastAPI:
    svc = service or Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.background:
            svc.start()
        starter = _optional("wasmprof.alerts", "start_worker")
        worker = None
        if starter is not None and config.background:
            try:
                worker = starter(svc.db, config)
            except Exception:  # noqa: BLE001 - alerts must not stop the service
                log.exception("alerts worker did not start")
        try:
            yield
        finally:
            if worker is not None and hasattr(worker, "stop"):
                worker.stop()
            svc.stop()

    # Swagger UI at /docs from files shipped in the fastapi-offline package (under
    # /static-offline-docs): the docs work with no external network. No ReDoc: its bundle
    # fetches a logo from its vendor's CDN.
    app: FastAPI = FastAPIOffline(
        title="wasmprof", version=__version__, lifespan=lifespan, redoc_url=None,
        default_response_class=OrjsonResponse,
        swagger_ui_parameters={"validatorUrl": None},   # no badge from validator.swagger.io
        description="Crash symbolication and profiles for WebAssembly plugins. "
                    "Authenticate with `Authorization: Bearer <token>` "
                    "(`wasmprof token create --scopes ingest,read`).")
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

    @app.exception_handler(WasmprofError)
    async def _wasmprof_error(request: Request, exc: WasmprofError) -> Response:
        return OrjsonResponse(exc.to_dict(), status_code=getattr(exc, "status_code", 400))

    app.add_middleware(BodyLimitMiddleware, limit_for=_limit_for(config))
    app.add_middleware(AccessLogMiddleware, metrics=svc.metrics)

    @app.get("/healthz", include_in_schema=True, summary="Liveness + database check")
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

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(svc.metrics.render(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(build_router(svc, require))

    alerts_routes = _optional_module("wasmprof.server.routes_alerts")
    if alerts_routes is not None:
        if hasattr(alerts_routes, "build_router"):
            app.include_router(alerts_routes.build_router(svc, require))
        elif hasattr(alerts_routes, "router"):
            app.include_router(alerts_routes.router)
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

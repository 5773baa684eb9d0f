"""``wasmprof serve``: the HTTP service (API v1, dashboard, metrics) on FastAPI + uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

from wasmprof.config import (ServerConfig, add_store_arguments, parse_scopes, resolve_store,
                             store_config_from_args)
from wasmprof.errors import UsageError

EPILOG = """examples:
  wasmprof serve                                   # SQLite in ~/.local/share/wasmprof, 127.0.0.1:8080
  wasmprof serve --data ./state --port 9000
  wasmprof serve --db postgresql://wasmprof@db:5432/wasmprof --host 0.0.0.0   # one of N replicas
  wasmprof serve --workers 2 --host 0.0.0.0        # 2 processes on one port (2 cores)
  wasmprof serve --demo                            # bundled samples, anonymous access, fresh data dir
  wasmprof serve --allow-anonymous read            # dashboards without a token, ingest needs one
  wasmprof serve --host 0.0.0.0 --public-url https://wasmprof.example.com   # links in alerts
  wasmprof serve --symbol-source https://symbols.example.com/wasm \\
                 --symbol-source oci://registry.example.com/debug-builds     # debug builds by identity
  wasmprof serve --scrape-envoy http://gw-1:15000/stats/prometheus http://gw-2:15000/stats/prometheus
                                                   # plugin memory / VM health every 30 s
  wasmprof serve --metrics-token "$(cat /run/secrets/metrics)"   # /metrics needs that token
  wasmprof serve --header-timeout 5 --body-timeout 15 --request-budget 60

API: http://HOST:PORT/docs (OpenAPI), /healthz, /metrics (Prometheus).
Tokens: wasmprof token create NAME --scopes ingest,read (scopes: ingest, read, admin)."""


def add_serve_arguments(p: argparse.ArgumentParser, *, demo_default: bool = False) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    from wasmprof.server.workers import worker_count
    p.add_argument("--workers", type=worker_count, default=1, metavar="N",
                   help="server processes sharing the port (default 1; e.g. one per core: "
                        "ingest is CPU-bound Python). Works with SQLite and PostgreSQL. "
                        "Every process indexes its uploads; the first also runs profile "
                        "maintenance, webhook delivery and health scraping. Rate limits are "
                        "per process. Responses carry X-Wasmprof-Worker: INDEX/PID")
    if not demo_default:
        p.add_argument("--demo", action="store_true",
                       help="load the bundled samples into the store (a fresh temporary data "
                            "dir unless --data/--db is given) and allow anonymous access")
    p.add_argument("--allow-anonymous", metavar="SCOPES", default=None,
                   help="scopes granted without a token, e.g. 'read' (default none; all in --demo; "
                        "env WASMPROF_ANONYMOUS)")
    p.add_argument("--max-log-mb", type=float, default=1024, help="cap of one log upload (MiB)")
    p.add_argument("--max-module-mb", type=float, default=256, help="cap of one module upload (MiB)")
    p.add_argument("--max-samples-mb", type=float, default=64, help="cap of one sample batch (MiB)")
    p.add_argument("--rate-limit", type=float, default=200.0,
                   help="requests per second per token, per replica (0 = off; default 200)")
    p.add_argument("--rate-burst", type=int, default=400, help="burst size of the rate limit")
    p.add_argument("--log-format", choices=("json", "text"), default=None,
                   help="log lines on stderr: structured JSON or text (default: text on a "
                        "terminal, JSON otherwise)")
    p.add_argument("--quiet", action="store_true", help="no per-request access log lines")
    p.add_argument("--public-url", metavar="URL", default=None,
                   help="the URL users reach this service at (behind a proxy or load "
                        "balancer), used in webhook links and printed URLs (default: env "
                        "WASMPROF_PUBLIC_URL, else http://HOST:PORT)")
    from wasmprof.sources.config import add_arguments as add_source_arguments
    add_source_arguments(p)
    p.add_argument("--scrape-envoy", metavar="URL", nargs="+", default=None,
                   help="Envoy admin /stats/prometheus endpoints to scrape for per-plugin "
                        "memory, VM, crash and rebuild series (env WASMPROF_SCRAPE_ENVOY, "
                        "comma-separated); more can be added with POST /api/v1/health/targets")
    p.add_argument("--scrape-interval", metavar="SECONDS", type=float, default=None,
                   help="seconds between scrapes of those endpoints (default 30; env "
                        "WASMPROF_SCRAPE_INTERVAL)")
    g = p.add_argument_group("bounded requests")
    g.add_argument("--header-timeout", type=float, default=10.0, metavar="S",
                   help="request line and headers must arrive within S seconds, else 408 "
                        "and the connection is closed (default 10; 0 = off)")
    g.add_argument("--body-timeout", type=float, default=30.0, metavar="S",
                   help="longest pause between two chunks of a request body, else 408 "
                        "(default 30; 0 = off)")
    g.add_argument("--body-min-rate", type=float, default=8.0, metavar="KIB_S",
                   help="after 10 s a body must average at least this many KiB/s, else 408 "
                        "(default 8; 0 = off)")
    g.add_argument("--request-budget", type=float, default=120.0, metavar="S",
                   help="wall-time budget of heavy read routes (profile exports and diffs, "
                        "symbolize, source excerpts): 503 + Retry-After past it (default "
                        "120; 0 = off)")
    p.add_argument("--metrics-token", metavar="TOKEN", default=None,
                   help="require `Authorization: Bearer TOKEN` (or an admin API token) on "
                        "/metrics (default: env WASMPROF_METRICS_TOKEN; unset = open)")
    p.add_argument("--no-webhook-delivery", action="store_true",
                   help="queue webhook alerts but do not send them from this replica "
                        "(another replica sends them)")
    add_store_arguments(p)


def scrape_options(args: argparse.Namespace) -> dict:
    """``scrape_envoy`` / ``scrape_interval`` for ServerConfig from flags or environment."""
    from wasmprof.health.targets import validate_interval, validate_url
    urls = args.scrape_envoy or [u.strip() for u in
                                 os.environ.get("WASMPROF_SCRAPE_ENVOY", "").split(",") if u.strip()]
    interval = args.scrape_interval
    if interval is None:
        env = os.environ.get("WASMPROF_SCRAPE_INTERVAL")
        try:
            interval = float(env) if env else 30.0
        except ValueError:
            raise UsageError("bad scrape interval", source="WASMPROF_SCRAPE_INTERVAL",
                             expected="seconds", found=env[:40]) from None
    return {"scrape_envoy": tuple(validate_url(u, source="--scrape-envoy") for u in urls),
            "scrape_interval": validate_interval(interval, source="--scrape-interval")}


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="run the HTTP service (API, dashboard, metrics)",
                              description="Run the wasmprof service: ingest API, module "
                                          "registry, crash grouping, profiles, dashboard. "
                                          "SQLite by default; several replicas can share one "
                                          "PostgreSQL (--db).",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_serve_arguments(p)
    p.set_defaults(func=run)


def setup_logging(fmt: str, quiet: bool, *, worker: str | None = None) -> None:
    """Log lines on stderr; with ``worker`` (``<index>/<pid>`` of a ``--workers`` process)
    every line carries it."""
    from wasmprof.server.app import JsonLogFormatter
    handler = logging.StreamHandler(sys.stderr)
    if worker is not None:
        from wasmprof.server.workers import WorkerField
        handler.addFilter(WorkerField(worker))
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        prefix = f"[worker {worker}] " if worker else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s {prefix}%(levelname)s %(name)s: "
                                               "%(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)
    logging.getLogger("wasmprof").setLevel(logging.INFO)
    logging.getLogger("wasmprof.access").setLevel(logging.WARNING if quiet else logging.INFO)


def build_config(args: argparse.Namespace, *, demo: bool) -> ServerConfig:
    from wasmprof.sources.config import from_args as sources_from_args
    if demo and not args.data and not args.db:
        store = resolve_store(tempfile.mkdtemp(prefix="wasmprof-demo-"), None)
    else:
        store = store_config_from_args(args)
    return ServerConfig.from_env(
        store, host=args.host, port=args.port, demo=demo,
        anonymous_scopes=parse_scopes(args.allow_anonymous, source="--allow-anonymous"),
        max_log_bytes=int(args.max_log_mb * (1 << 20)),
        max_module_bytes=int(args.max_module_mb * (1 << 20)),
        max_samples_bytes=int(args.max_samples_mb * (1 << 20)),
        rate_limit=args.rate_limit, rate_burst=args.rate_burst,
        public_url=public_url(args.public_url or os.environ.get("WASMPROF_PUBLIC_URL")),
        metrics_token=args.metrics_token or os.environ.get("WASMPROF_METRICS_TOKEN") or None,
        header_timeout=_seconds(args.header_timeout, "--header-timeout"),
        body_idle_timeout=_seconds(args.body_timeout, "--body-timeout"),
        body_min_rate=_seconds(args.body_min_rate, "--body-min-rate") * 1024,
        request_budget=_seconds(args.request_budget, "--request-budget"),
        deliver_webhooks=not args.no_webhook_delivery,
        sources=sources_from_args(args),
        **scrape_options(args))


def _seconds(value: float, option: str) -> float:
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"{option} must be a number >= 0", source=option, found=str(value))
    return value


def public_url(url: str | None) -> str | None:
    """An absolute http(s) URL without a trailing slash; UsageError otherwise."""
    if not url:
        return None
    from urllib.parse import urlsplit
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise UsageError("bad public URL", source="--public-url",
                         expected="http(s)://host[:port][/path]", found=url[:80])
    return url.strip().rstrip("/")


def serve(config: ServerConfig, *, banner: bool = False, log_format: str | None = None,
          quiet: bool = False, workers: int = 1) -> int:
    """Run the service until SIGTERM/SIGINT: one process, or ``workers`` processes on one
    socket (:mod:`wasmprof.server.workers`)."""
    if log_format is None:
        log_format = "text" if sys.stderr.isatty() else "json"
    setup_logging(log_format, quiet)
    if workers > 1:
        from wasmprof.server.workers import run_workers

        def prepare(cfg: ServerConfig) -> None:      # once, in the parent, before forking
            from wasmprof.store.state import open_store
            if cfg.demo:
                from wasmprof.server.service import Service
                svc = Service(cfg)
                _load_demo(svc)
                svc.store.close()
            else:
                open_store(cfg.store).close()        # migrations run here, not N times at once
            _log_serving(cfg, workers)
            if banner:
                print_banner(cfg)

        def run_one(cfg: ServerConfig, sockets: list, worker: str) -> int:
            setup_logging(log_format, quiet, worker=worker)
            return _run_server(cfg, sockets=sockets, worker=worker)

        return run_workers(config, workers, run_one, prepare)
    from wasmprof.server.service import Service
    svc = Service(config)
    if config.demo:
        _load_demo(svc)
    _log_serving(config, 1)
    if banner:
        print_banner(config)
    return _run_server(config, svc=svc)


def _load_demo(svc) -> None:
    from wasmprof.server.demo import load_samples
    log = logging.getLogger("wasmprof.serve")
    if svc.stats()["modules"] == 0:
        loaded = load_samples(svc)
        log.info("demo samples loaded", extra={k: v for k, v in loaded.items() if k != "errors"})
        for e in loaded["errors"]:
            log.warning("demo sample skipped: %s", e)


def _log_serving(config: ServerConfig, workers: int) -> None:
    from wasmprof.config import redact_url
    logging.getLogger("wasmprof.serve").info(
        "wasmprof serving", extra={"host": config.host, "port": config.port,
                                   "db": redact_url(config.store.db_url),
                                   "data": str(config.store.data_dir), "demo": config.demo,
                                   "anonymous": sorted(config.anonymous_scopes),
                                   "public_url": config.public_url, "workers": workers})


def _run_server(config: ServerConfig, *, svc=None, sockets: list | None = None,
                worker: str | None = None) -> int:
    """uvicorn on ``config.host:port`` (or the inherited ``sockets``) until stopped; 3 when
    the app did not start."""
    import uvicorn

    from wasmprof.server.app import create_app
    from wasmprof.server.guards import protocol_with
    from wasmprof.server.service import Service

    svc = svc or Service(config)
    app = create_app(config, svc)
    if worker is not None:
        from wasmprof.server.workers import WorkerHeader
        app = WorkerHeader(app, worker)
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port,
                                           log_config=None, access_log=False, lifespan="on",
                                           http=protocol_with(config.header_timeout),
                                           timeout_graceful_shutdown=10))
    try:
        server.run(sockets=sockets)
    finally:
        svc.store.close()
    return 0 if server.started else 3


def print_banner(config: ServerConfig) -> None:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    base = config.public_url or f"http://{host}:{config.port}"
    print(f"""
wasmprof demo is starting on {base}
  dashboard   {base}/
  API docs    {base}/docs
  data        {config.store.data_dir}

Try it (anonymous access is on in --demo):
  curl -s {base}/api/v1/crash-groups | python3 -m json.tool | head -40
  curl -s -F file=@tests/data/wasm/crash_trap.O2.wasm '{base}/api/v1/modules?plugin=crash-trap&version=1.0'
  curl -s --data-binary @tests/data/dumps/crash_trap.O2.trap.classic.log '{base}/api/v1/logs?plugin=crash-trap&version=1.0'
  curl -s '{base}/api/v1/crash-groups?plugin=crash-trap'
Stop with Ctrl-C.
""", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    config = build_config(args, demo=args.demo)
    return serve(config, banner=args.demo, log_format=args.log_format, quiet=args.quiet,
                 workers=args.workers)

"""Where wasmprof keeps its state, resolved the same way for every state command.

Every command that touches the store (``serve``, ``demo``, ``token``, ``webhook``) calls
:func:`add_store_arguments` on its parser and :func:`store_config_from_args` on the parsed
arguments, so ``--data DIR`` / ``--db URL`` (or the environment variables
``WASMPROF_DATA`` / ``WASMPROF_DB``) always point them at the same database.

Resolution order:

- database: ``--db URL`` > ``$WASMPROF_DB`` > SQLite file ``<data dir>/wasmprof.db``;
- data dir: ``--data DIR`` > ``$WASMPROF_DATA`` > ``$XDG_DATA_HOME/wasmprof``
  (``~/.local/share/wasmprof``).

The data dir always exists locally: with SQLite it holds the database and the module
blobs; with PostgreSQL it is this replica's cache (blob copies, symbol indexes), and the
database is the only shared state.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasmprof.errors import UsageError

ENV_DATA = "WASMPROF_DATA"
ENV_DB = "WASMPROF_DB"
ENV_ANONYMOUS = "WASMPROF_ANONYMOUS"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wasmprof"


@dataclass(slots=True)
class StoreConfig:
    """``db_url`` is ``sqlite:///ABS/PATH`` or ``postgresql://…``."""

    data_dir: Path
    db_url: str

    @property
    def is_postgres(self) -> bool:
        return self.db_url.startswith(("postgresql://", "postgres://"))

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"


def resolve_store(data: str | os.PathLike | None = None, db: str | None = None) -> StoreConfig:
    """Apply the resolution order above. Raises :class:`UsageError` for an unknown URL scheme."""
    data_dir = Path(data or os.environ.get(ENV_DATA) or default_data_dir()).expanduser()
    url = db or os.environ.get(ENV_DB) or ""
    if not url:
        url = f"sqlite:///{(data_dir / 'wasmprof.db').resolve()}"
    elif url.startswith("sqlite:///"):
        pass
    elif url.startswith(("postgresql://", "postgres://")):
        pass
    else:
        raise UsageError("unsupported database URL", source="--db",
                         expected="sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
                         found=_redact(url))
    return StoreConfig(data_dir=data_dir.resolve(), db_url=url)


def _redact(url: str) -> str:
    """Hide a password in a URL before it reaches a message or a log."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":***"
        return f"{scheme}://{creds}@{host}"
    return url


redact_url = _redact


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data`` and ``--db`` (identical for every state command)."""
    g = parser.add_argument_group("state (shared by serve, demo, token, webhook)")
    g.add_argument("--data", metavar="DIR", default=None,
                   help=f"data directory (default ${ENV_DATA} or ~/.local/share/wasmprof); "
                        "holds the SQLite database and module blobs, or the local cache "
                        "when --db is PostgreSQL")
    g.add_argument("--db", metavar="URL", default=None,
                   help=f"database URL (default ${ENV_DB} or SQLite in the data dir), "
                        "e.g. postgresql://wasmprof@db:5432/wasmprof")


def store_config_from_args(args: argparse.Namespace) -> StoreConfig:
    return resolve_store(getattr(args, "data", None), getattr(args, "db", None))


SCOPES = ("ingest", "read", "admin")


def parse_scopes(text: str | None, *, source: str = "scopes") -> frozenset[str]:
    """``"ingest,read"`` -> frozenset. Empty/None -> empty set. Unknown scope -> UsageError."""
    if not text:
        return frozenset()
    out = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if part not in SCOPES:
            raise UsageError(f"unknown scope {part!r}", source=source,
                             expected=", ".join(SCOPES), found=part)
        out.add(part)
    return frozenset(out)


@dataclass(slots=True)
class ServerConfig:
    """Everything ``create_app`` needs. Sizes in bytes; rate in requests/second per token."""

    store: StoreConfig
    host: str = "127.0.0.1"
    port: int = 8080
    demo: bool = False
    anonymous_scopes: frozenset[str] = field(default_factory=frozenset)
    max_module_bytes: int = 256 * 1024 * 1024
    max_log_bytes: int = 1024 * 1024 * 1024
    max_samples_bytes: int = 64 * 1024 * 1024
    max_profile_bytes: int = 256 * 1024 * 1024
    max_json_bytes: int = 4 * 1024 * 1024
    rate_limit: float = 200.0          # requests per second per token (0 = unlimited)
    rate_burst: int = 400
    background: bool = True            # run the indexing worker thread
    #: run the periodic replica-wide work here too (profile maintenance/downsampler/rebuilds,
    #: webhook delivery, health scraping); False in `serve --workers` processes but the first
    maintenance: bool = True
    public_url: str | None = None      # used in links (webhooks, demo banner)
    metrics_token: str | None = None   # /metrics needs it (or an admin token) when set
    header_timeout: float = 10.0       # request line + headers must arrive within (s)
    body_idle_timeout: float = 30.0    # longest pause between body chunks (s)
    body_min_rate: float = 8192.0      # bytes/s a body must average after 10 s
    request_budget: float = 120.0      # wall budget of heavy read routes (s)
    deliver_webhooks: bool = True      # run this replica's webhook delivery worker
    log_json: bool = True
    sources: Any = None                # wasmprof.sources.config.SourcesConfig (None: defaults)
    scrape_envoy: tuple[str, ...] = ()  # Envoy admin /stats/prometheus URLs (wasmprof.health)
    scrape_interval: float = 30.0      # seconds between scrapes of those

    @classmethod
    def from_env(cls, store: StoreConfig, **kw) -> "ServerConfig":
        cfg = cls(store=store, **kw)
        env_anon = os.environ.get(ENV_ANONYMOUS)
        if env_anon and not cfg.anonymous_scopes:
            cfg.anonymous_scopes = parse_scopes(env_anon, source=ENV_ANONYMOUS)
        if cfg.demo and not cfg.anonymous_scopes:
            cfg.anonymous_scopes = frozenset(SCOPES)
        return cfg

"""How the server pulls plugin modules and looks debug builds up (``wasmprof serve`` flags).

Symbol sources are configured on the command line (``--symbol-source URL``, repeatable,
tried in order; ``--symbol-source-plain-http`` for ``oci://`` sources on a local registry
without TLS; ``--registry-config`` a Docker ``config.json`` with their credentials) and
listed read-only by ``GET /api/v1/symbol-sources``. Plugin sources are set per plugin
through the API (``PUT /api/v1/plugins/{name}/source``).

Retry timing of failed pulls: ``WASMPROF_PULL_{BASE_DELAY,MAX_DELAY,MAX_ATTEMPTS,TIMEOUT}``
(seconds, except the attempt count), so tests run the ladder in seconds.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from wasmprof.alerts.retry import RetryPolicy
from wasmprof.errors import UsageError
from wasmprof.sources.symbols import SymbolSource, parse_symbol_source

ENV_PREFIX = "WASMPROF_PULL_"


@dataclass(frozen=True, slots=True)
class PullPolicy:
    """Backoff of failed pulls: ``base_delay * 2**(n-1)`` capped at ``max_delay``, with
    jitter, a registry's ``Retry-After`` honoured; after ``max_attempts`` the pull stays
    ``failed`` until the source is set again or a retry is asked for."""

    base_delay: float = 30.0
    max_delay: float = 3600.0
    max_attempts: int = 8
    timeout: float = 30.0
    jitter: float = 0.3

    def delay(self, attempt: int, retry_after: float | None) -> float:
        return RetryPolicy(base_delay=self.base_delay, max_delay=self.max_delay,
                           jitter=self.jitter).next_delay(attempt, retry_after)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "PullPolicy":
        env = os.environ if env is None else env
        values: dict[str, float | int] = {}
        for attr in ("base_delay", "max_delay", "max_attempts", "timeout"):
            name = ENV_PREFIX + attr.upper()
            raw = env.get(name)
            if not raw:
                continue
            try:
                num = float(raw)
            except ValueError:
                raise UsageError(f"{name} must be a number", source="environment",
                                 found=repr(raw[:40])) from None
            if not (0 <= num < float("inf")) or (attr == "max_attempts" and num < 1):
                raise UsageError(f"{name} out of range", source="environment", found=raw[:40])
            values[attr] = int(num) if attr == "max_attempts" else num
        return cls(**values)  # type: ignore[arg-type]


@dataclass(slots=True)
class SourcesConfig:
    symbol_sources: list[SymbolSource] = field(default_factory=list)
    registry_config: Path | None = None      # Docker config.json for oci:// symbol sources
    negative_ttl: float = 3600.0             # a missing debug build is asked for again after this
    error_ttl: float = 300.0                 # a failed lookup is retried after this
    policy: PullPolicy = field(default_factory=PullPolicy.from_env)
    poll_interval: float = 1.0               # how often the puller looks for due pulls


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("module sources (OCI registries, symbol sources)")
    g.add_argument("--symbol-source", metavar="URL", action="append", default=[],
                   help="where debug builds of stripped modules are looked up by identity, in "
                        "order (repeatable): http(s)://BASE (BASE/<key>/debug.wasm) or "
                        "oci://HOST/REPO (tag = key); key = build_id or code-section sha256 "
                        "in hex")
    g.add_argument("--symbol-source-plain-http", action="store_true",
                   help="reach oci:// symbol sources over plain HTTP (a local registry)")
    g.add_argument("--registry-config", metavar="PATH", default=None,
                   help="Docker config.json with credentials for oci:// symbol sources "
                        "(plugin sources carry their own)")
    g.add_argument("--symbol-negative-ttl", metavar="SECONDS", type=float, default=3600.0,
                   help="how long a debug build that was not found is not asked for again "
                        "(default 3600)")


def from_args(args: argparse.Namespace) -> SourcesConfig:
    plain = bool(getattr(args, "symbol_source_plain_http", False))
    sources = [parse_symbol_source(u, plain_http=plain)
               for u in (getattr(args, "symbol_source", None) or [])]
    ttl = float(getattr(args, "symbol_negative_ttl", 3600.0))
    if not (0 <= ttl < 10 * 365 * 86400):
        raise UsageError("bad --symbol-negative-ttl", source="--symbol-negative-ttl",
                         expected="seconds >= 0", found=str(ttl))
    cfg = getattr(args, "registry_config", None)
    return SourcesConfig(symbol_sources=sources, registry_config=Path(cfg) if cfg else None,
                         negative_ttl=ttl, error_ttl=min(300.0, ttl))

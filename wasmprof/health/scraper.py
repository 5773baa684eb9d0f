"""Scraping one Envoy admin stats endpoint: fetch, keep the Wasm metrics, store them.

:func:`scrape` never raises for a target's problems (unreachable, slow, HTTP error, not
Prometheus text, too large): the outcome is stored on the target (shown on the overview)
and returned. Only the configured URL is called (redirects are not followed, proxy
environment variables are ignored) and at most :data:`MAX_BYTES` are read.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from wasmprof.errors import WasmprofError
from wasmprof.health import store, targets
from wasmprof.health.targets import Target
from wasmprof.ingest.envoy_stats import parse_envoy_stats

MAX_BYTES = 128 * 1024 * 1024
USER_AGENT = "wasmprof-health-scraper"


@dataclass(slots=True)
class ScrapeResult:
    target_id: int
    ok: bool
    at: float
    duration_ms: float
    bytes: int = 0
    series: int = 0
    points: int = 0
    resets: int = 0
    restarted: bool = False
    plugins: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_client() -> httpx.Client:
    return httpx.Client(follow_redirects=False, trust_env=False,
                        headers={"User-Agent": USER_AGENT, "Accept": "text/plain"})


def fetch(client: httpx.Client, url: str, timeout: float) -> bytes:
    """The body of ``GET url`` (2xx only), at most :data:`MAX_BYTES`; raises ``_Failed``."""
    try:
        with client.stream("GET", url, timeout=httpx.Timeout(timeout)) as resp:
            if resp.status_code >= 300:
                snippet = b""
                for chunk in resp.iter_bytes():
                    snippet += chunk
                    if len(snippet) > 200:
                        break
                text = snippet[:200].decode("utf-8", "replace").strip().replace("\n", " ")
                why = f"HTTP {resp.status_code}" + (f": {text}" if text else "")
                if 300 <= resp.status_code < 400:
                    why += " (redirects are not followed)"
                raise _Failed(why)
            parts: list[bytes] = []
            size = 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > MAX_BYTES:
                    raise _Failed(f"response larger than {MAX_BYTES} bytes")
                parts.append(chunk)
            return b"".join(parts)
    except httpx.TimeoutException:
        raise _Failed(f"timeout after {timeout:g}s") from None
    except httpx.TransportError as e:
        raise _Failed(f"connection error: {type(e).__name__}: {str(e)[:200]}") from None
    except httpx.HTTPError as e:
        raise _Failed(f"{type(e).__name__}: {str(e)[:200]}") from None


class _Failed(Exception):
    pass


def scrape(db: Any, target: Target, *, client: httpx.Client, clock=time.time,
           names: store.PluginNames | None = None) -> ScrapeResult:
    """Scrape ``target`` once (the caller holds its lease), store the samples stamped with
    the scrape's start time, record the outcome on the target."""
    started = clock()
    t0 = time.monotonic()
    result = ScrapeResult(target.id, False, started, 0.0)
    try:
        body = fetch(client, target.url, target.timeout)
        result.bytes = len(body)
        reading = parse_envoy_stats(body, source=target.url)
        rec = store.record(db, reading.samples, source=target.source, origin="envoy",
                           ts=started, names=names)
        result.ok = True
        result.series, result.points = rec.series, rec.points
        result.resets, result.restarted = rec.resets, rec.restarted
        result.plugins, result.unmapped = rec.plugins, reading.unmapped
        if not reading.samples:
            result.error = ("no Wasm metrics in the response" if reading.wasm_lines == 0
                            else "Wasm metrics found but none understood")
    except _Failed as e:
        result.error = str(e)
    except WasmprofError as e:
        result.error = e.message + (f"; found {e.found}" if e.found else "")
    result.duration_ms = round((time.monotonic() - t0) * 1000.0, 2)
    targets.record_outcome(db, target, now=clock(), started=started, ok=result.ok,
                           error=result.error, duration_ms=result.duration_ms, size=result.bytes,
                           series=result.series, plugins=result.plugins,
                           unmapped=result.unmapped)
    return result

"""Symbol sources: where debug builds of stripped modules are found by module identity.

A source is one of

- ``http(s)://BASE`` — a directory laid out ``BASE/<key>/debug.wasm`` (like debuginfod's
  by-build-id layout);
- ``oci://HOST/REPO`` — a repository where each debug build is pushed with the key as its
  tag (either image variant, see :mod:`wasmprof.oci.image`).

The key of a module (:func:`lookup_keys`) is its ``build_id`` in hex when it has one, and
the sha256 of its Code section in hex (the ``code:`` identity ``wasmprof inspect``
prints): a stripped build and its unstripped original share both. A candidate is accepted
only when it parses, has the same identity as the module and carries DWARF or names the
module lacks; anything else is a ``mismatch`` and is not used (never silently wrong).

Outcomes are remembered in a :class:`LookupCache` (``missing``, ``mismatch`` and ``error``
are negative entries, kept ``negative_ttl`` / ``error_ttl`` seconds; symbolicator keeps a
missing file one hour); the server's cache is a table shared by replicas.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from wasmprof.errors import UsageError, WasmprofError
from wasmprof.model import Module
from wasmprof.oci.auth import Credentials
from wasmprof.oci.client import USER_AGENT, RegistryClient, read_capped, send
from wasmprof.oci.errors import RegistryError
from wasmprof.oci.pull import fetch, resolve
from wasmprof.oci.reference import TAG_RE, Reference, parse_reference

log = logging.getLogger(__name__)

DEBUG_FILE = "debug.wasm"


@dataclass(frozen=True, slots=True)
class SymbolSource:
    """One configured source. ``url`` is the text it was configured with."""

    url: str
    kind: str                         # "http" | "oci"
    reference: Reference | None = None
    plain_http: bool = False

    def location(self, key: str) -> str:
        if self.kind == "http":
            return f"{self.url.rstrip('/')}/{key}/{DEBUG_FILE}"
        assert self.reference is not None
        return str(self.reference.with_tag(key))

    def to_dict(self) -> dict[str, Any]:
        layout = (self.location("<key>") if self.kind == "http"
                  else f"{self.reference}:<key>")
        return {"url": redact(self.url), "kind": self.kind, "plain_http": self.plain_http,
                "layout": layout}


def redact(url: str) -> str:
    """A source URL without user info (``https://u:p@host/x`` → ``https://…@host/x``)."""
    if "@" in url.split("/", 3)[2 if "://" in url else 0]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


def parse_symbol_source(text: str, *, plain_http: bool = False,
                        source: str = "--symbol-source") -> SymbolSource:
    """``http(s)://BASE`` or ``oci://HOST/REPO`` (no tag: the key is the tag)."""
    raw = (text or "").strip()
    lower = raw.lower()
    if lower.startswith(("http://", "https://")):
        parts = urlsplit(raw)
        if not parts.netloc or parts.query or parts.fragment:
            raise UsageError("bad symbol source URL", source=source,
                             expected="http(s)://HOST/PATH (no query)", found=raw[:80])
        return SymbolSource(url=raw.rstrip("/"), kind="http")
    if lower.startswith("oci://"):
        ref = parse_reference(raw, source=source)
        if ref.tag or ref.digest:
            raise UsageError("an OCI symbol source names a repository, not an image",
                             source=source, expected="oci://HOST/REPO (each debug build is "
                             "tagged with its module's key)", found=raw[:80])
        return SymbolSource(url=raw, kind="oci", reference=ref, plain_http=plain_http)
    raise UsageError("unknown symbol source", source=source,
                     expected="http(s)://BASE (BASE/<key>/debug.wasm) or oci://HOST/REPO",
                     found=raw[:80])


def lookup_keys(module: Module) -> list[str]:
    """The keys a debug build of ``module`` is looked up by, best first."""
    keys = []
    if module.build_id:
        keys.append(module.build_id.lower())
    kind, _, value = module.identity.partition(":")
    if kind == "code" and value:
        keys.append(value)
    code = getattr(getattr(module, "wasm", None), "code_sha256", None)
    if isinstance(code, str) and code:
        keys.append(code)
    return [k for i, k in enumerate(keys) if k and k not in keys[:i]]


def wants_debug(module: Module) -> bool:
    """A Wasm module that lacks DWARF (its own or its companion's)."""
    if str(module.kind) not in ("wasm", "aot.wasm"):
        return False
    comp = module.companion
    return not module.has_dwarf and not (comp is not None and comp.has_dwarf)


class LookupCache(Protocol):
    def get(self, source: str, key: str) -> tuple[str, str | None] | None:
        """(outcome, detail) of an unexpired entry, or None."""

    def put(self, source: str, key: str, outcome: str, detail: str | None, ttl: float,
            module_id: int | None = None) -> None: ...


@dataclass(slots=True)
class MemoryCache:
    """A per-process :class:`LookupCache` (the CLI's)."""

    entries: dict[tuple[str, str], tuple[str, str | None, float]] = field(default_factory=dict)

    def get(self, source: str, key: str) -> tuple[str, str | None] | None:
        hit = self.entries.get((source, key))
        if hit and hit[2] > time.time():
            return hit[0], hit[1]
        return None

    def put(self, source: str, key: str, outcome: str, detail: str | None, ttl: float,
            module_id: int | None = None) -> None:
        self.entries[(source, key)] = (outcome, detail, time.time() + ttl)


@dataclass(slots=True)
class Attempt:
    source: str
    key: str
    location: str
    outcome: str                  # found | missing | mismatch | error | cached-<outcome>
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": redact(self.source), "key": self.key, "location": redact(self.location),
                "outcome": self.outcome, "detail": self.detail}


@dataclass(slots=True)
class Found:
    source: SymbolSource
    key: str
    location: str
    data: bytes
    module: Module


@dataclass(slots=True)
class SymbolLookup:
    """Looks debug builds up in ``sources`` in order. ``credentials(host)`` gives the
    registry credentials of an OCI source (None: anonymous)."""

    sources: list[SymbolSource]
    cache: LookupCache = field(default_factory=MemoryCache)
    credentials: Any = None
    max_bytes: int = 256 * 1024 * 1024
    timeout: float = 30.0
    negative_ttl: float = 3600.0
    error_ttl: float = 300.0
    transport: httpx.BaseTransport | None = None

    def find(self, module: Module) -> tuple[Found | None, list[Attempt]]:
        """The first acceptable debug build of ``module``, and every attempt made."""
        attempts: list[Attempt] = []
        for key in lookup_keys(module):
            for src in self.sources:
                loc = src.location(key) if (src.kind == "http" or TAG_RE.fullmatch(key)) else None
                if loc is None:
                    continue
                hit = self.cache.get(src.url, key)
                if hit is not None and hit[0] != "found":
                    attempts.append(Attempt(src.url, key, loc, f"cached-{hit[0]}", hit[1]))
                    continue
                try:
                    data = self._get(src, key)
                except RegistryError as e:
                    self.cache.put(src.url, key, "error", str(e)[:500], self.error_ttl)
                    attempts.append(Attempt(src.url, key, loc, "error", str(e)[:500]))
                    continue
                if data is None:
                    self.cache.put(src.url, key, "missing", None, self.negative_ttl)
                    attempts.append(Attempt(src.url, key, loc, "missing"))
                    continue
                cand, why = self._check(module, data, loc)
                if cand is None:
                    self.cache.put(src.url, key, "mismatch", why, self.negative_ttl)
                    attempts.append(Attempt(src.url, key, loc, "mismatch", why))
                    continue
                attempts.append(Attempt(src.url, key, loc, "found"))
                return Found(src, key, loc, data, cand), attempts
        return None, attempts

    @staticmethod
    def _check(module: Module, data: bytes, where: str) -> tuple[Module | None, str | None]:
        from wasmprof.binary.loader import load_module
        try:
            cand = load_module(where, data)
        except WasmprofError as e:
            return None, f"not a module wasmprof can read: {e}"[:500]
        if cand.identity != module.identity:
            return None, (f"identity {cand.identity} differs from the module's "
                          f"{module.identity}")
        if not (cand.has_dwarf or (cand.has_name_section and not module.has_name_section)):
            return None, "carries no DWARF (nor names the module lacks)"
        return cand, None

    def _get(self, src: SymbolSource, key: str) -> bytes | None:
        if src.kind == "http":
            return self._http_get(src.location(key))
        assert src.reference is not None
        creds: Credentials | None = self.credentials(src.reference.registry) if self.credentials else None
        with RegistryClient(src.reference.registry, credentials=creds, plain_http=src.plain_http,
                            timeout=self.timeout, transport=self.transport) as client:
            try:
                resolved = resolve(client, src.reference.with_tag(key))
            except RegistryError as e:
                if e.kind == "not-found":
                    return None
                raise
            return fetch(client, resolved, max_bytes=self.max_bytes).data

    def _http_get(self, url: str) -> bytes | None:
        with httpx.Client(timeout=httpx.Timeout(self.timeout), follow_redirects=True,
                          max_redirects=3, transport=self.transport,
                          headers={"User-Agent": USER_AGENT}) as http:
            resp = send(http, "GET", url, {}, stream=True, timeout=self.timeout,
                        plain_http=url.startswith("http://"))
            try:
                if resp.status_code in (404, 410):
                    return None
                if resp.status_code != 200:
                    status = resp.status_code
                    kind = {401: "unauthorized", 403: "denied", 429: "rate-limited"}.get(
                        status, "server-error")
                    raise RegistryError(f"unexpected answer HTTP {status}", kind=kind,
                                        source=url, status=status)
                if resp.url.scheme == "http" and url.startswith("https://"):
                    raise RegistryError("redirected from HTTPS to HTTP", kind="tls", source=url)
                return read_capped(resp, self.max_bytes, url, what="debug build")
            finally:
                resp.close()

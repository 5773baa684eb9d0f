"""The server side of module sources: plugin sources, the background puller and debug-build
lookups in symbol sources. One :class:`SourcesService` per replica, owned by the server's
``Service``.

- **Ingest never waits.** Crash, sample and profile ingest call :meth:`note` with the
  (plugin, version) pairs they stored; when the plugin has a source and no module linked for
  that version, one ``source_pulls`` row is created (an in-memory set of pairs already seen
  keeps this off the hot path) and the puller thread is woken. Nothing else happens on the
  request thread.
- **The puller** (:meth:`process`) resolves the reference (tag → digest), reuses a stored
  module pulled from the same digest ("cached by digest") or downloads and verifies the
  layer, and stores the module through ``Service.upload_module`` — exactly the path of a
  late upload: indexing in the background, then the plugin's stored crashes are
  re-symbolized and regrouped. Failures are recorded with their kind and retried with
  backoff (:mod:`wasmprof.sources.pulls`); the overview shows them.
- **Debug builds**: when a module without DWARF has been indexed (:meth:`module_indexed`)
  and symbol sources are configured, the puller looks its debug build up by identity
  (:mod:`wasmprof.sources.symbols`) and stores it; the registry then links it as the
  module's companion and re-symbolizes, as for an uploaded companion.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from wasmprof.errors import WasmprofError
from wasmprof.oci.auth import docker_config_credentials
from wasmprof.oci.client import RegistryClient, digest_of
from wasmprof.oci.errors import RegistryError
from wasmprof.oci.pull import fetch, resolve
from wasmprof.sources import origins, pulls
from wasmprof.sources.config import SourcesConfig
from wasmprof.sources.origins import DbLookupCache, Origin
from wasmprof.sources.plugin_sources import (PluginSource, delete_source, get_source,
                                             list_sources, put_source, source_from_body)
from wasmprof.sources.symbols import SymbolLookup, wants_debug

log = logging.getLogger(__name__)

SOURCES_TTL = 5.0          # seconds a replica trusts its copy of the plugin sources
KNOWN_TTL = 60.0           # seconds a (plugin, version) seen by ingest is not checked again


def module_filename(repository: str, tag_or_digest: str) -> str:
    """``plugins/key-auth`` + ``1.0.0`` → ``key-auth-1.0.0.wasm`` (the stored file name)."""
    base = repository.rsplit("/", 1)[-1]
    suffix = tag_or_digest.split(":", 1)[-1][:12] if tag_or_digest.startswith("sha") else tag_or_digest
    return f"{base}-{suffix}.wasm"[:200]


class SourcesService:
    def __init__(self, svc: Any, config: SourcesConfig | None = None) -> None:
        self.svc = svc
        self.db = svc.db
        self.config = config or SourcesConfig()
        self.policy = self.config.policy
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lookups = DbLookupCache(self.db)
        self.symbols = SymbolLookup(
            self.config.symbol_sources, cache=self.lookups, credentials=self._registry_creds,
            max_bytes=svc.config.max_module_bytes, timeout=self.policy.timeout,
            negative_ttl=self.config.negative_ttl, error_ttl=self.config.error_ttl)
        self._sources: tuple[float, dict[str, PluginSource]] = (0.0, {})
        self._known: set[tuple[str, str]] = set()
        self._known_at = time.monotonic()
        self._debug: queue.Queue[int] = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        for name in ("crashes", "profiles"):
            part = getattr(svc, name, None)
            if part is not None:
                part.on_ingest = self.note
        self._counts: tuple[float, dict[str, int]] = (0.0, {})
        for state in pulls.STATES:
            svc.metrics.gauges[f"wasmprof_source_pulls_{state}"] = (
                lambda st=state: float(self._pull_counts().get(st, 0)))

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wasmprof-puller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_due(limit=1)
            except Exception:  # noqa: BLE001 - keep the thread alive; rows keep the state
                log.exception("puller iteration failed")
                worked = 0
            if not worked:
                self._wake.wait(self.config.poll_interval)
                self._wake.clear()

    def run_due(self, limit: int | None = None, *, plugin: str | None = None) -> int:
        """Do queued debug lookups and due pulls (of ``plugin`` only, when given) now: the
        thread's body; tests and the CLI call it directly. Returns how many jobs were done."""
        done = 0
        while limit is None or done < limit:
            try:
                mid = self._debug.get_nowait()
            except queue.Empty:
                pull = pulls.claim_due(self.db, self.owner, plugin=plugin)
                if pull is None:
                    break
                self.process(pull)
            else:
                self.lookup_debug(mid)
            done += 1
            if self._stop.is_set():
                break
        return done

    def _pull_counts(self) -> dict[str, int]:
        """Pulls per state for /metrics: one query per scrape, not one per gauge."""
        t, counts = self._counts
        if time.monotonic() - t > 1.0:
            counts = pulls.counts(self.db)
            self._counts = (time.monotonic(), counts)
        return counts

    # -- hooks ------------------------------------------------------------------------
    def _source_map(self) -> dict[str, PluginSource]:
        t, cached = self._sources
        if time.monotonic() - t < SOURCES_TTL:
            return cached
        fresh = {s.plugin: s for s in list_sources(self.db)}
        self._sources = (time.monotonic(), fresh)
        return fresh

    def _invalidate(self) -> None:
        self._sources = (0.0, {})
        with self._lock:
            self._known.clear()

    def note(self, pairs: Iterable[tuple[str | None, str | None]], trigger: str = "ingest") -> int:
        """Ingest stored data of these (plugin, version) pairs: queue the pulls they need.
        Never raises (ingest must not fail because of a source)."""
        try:
            return self._note(pairs, trigger)
        except Exception:  # noqa: BLE001
            log.exception("queueing pulls after ingest failed")
            return 0

    def _note(self, pairs: Iterable[tuple[str | None, str | None]], trigger: str) -> int:
        sources = self._source_map()
        if not sources:
            return 0
        if time.monotonic() - self._known_at > KNOWN_TTL:
            with self._lock:
                self._known.clear()
                self._known_at = time.monotonic()
        queued = 0
        for plugin, version in sorted({(p, v or "") for p, v in pairs if p}):
            src = sources.get(plugin)
            if src is None:
                continue
            target = src.target(version or None)
            key = (plugin, target.version)
            with self._lock:
                if key in self._known:
                    continue
            with self.db.tx() as tx:
                linked = tx.one("SELECT 1 AS one FROM module_links WHERE plugin = ? AND "
                                "version = ? LIMIT 1", (plugin, target.version))
                if target.reference is None and not linked:
                    linked = tx.one("SELECT 1 AS one FROM module_links WHERE plugin = ? LIMIT 1",
                                    (plugin,))
                created = not linked and pulls.request(
                    tx, plugin, target.version,
                    str(target.reference) if target.reference else None,
                    f"{trigger} of {plugin}" + (f" {version}" if version else ""), target.reason)
            with self._lock:
                self._known.add(key)
            if created and target.reference is not None:
                queued += 1
        if queued:
            self.wake()
        return queued

    def module_indexed(self, mid: int) -> None:
        """A module finished indexing: look its debug build up when it lacks DWARF."""
        if not self.symbols.sources:
            return
        self._debug.put(mid)
        self.wake()

    # -- plugin sources (API) -----------------------------------------------------------
    def set_source(self, plugin: str, body: Any) -> dict[str, Any]:
        src = source_from_body(plugin, body, get_source(self.db, plugin))
        with self.db.tx() as tx:
            stored = put_source(tx, src)
            pulls.forget_unfinished(tx, plugin)
        self._invalidate()
        queued = self.scan_plugin(plugin, trigger="source set")
        return {**self.describe(stored, admin=True), "queued": queued}

    def remove_source(self, plugin: str) -> bool:
        with self.db.tx() as tx:
            gone = delete_source(tx, plugin)
            if gone:
                pulls.forget_unfinished(tx, plugin)
        self._invalidate()
        return gone

    def scan_plugin(self, plugin: str, *, trigger: str) -> int:
        """Queue pulls for the versions the plugin's stored crashes and profiles have (and
        at once for a fixed tag or digest)."""
        src = get_source(self.db, plugin)
        if src is None:
            return 0
        with self.db.read() as tx:
            versions = {r["version"] or "" for r in tx.all(
                "SELECT DISTINCT version FROM crash_events WHERE plugin = ?", (plugin,))}
            versions |= {r["version"] or "" for r in tx.all(
                "SELECT DISTINCT version FROM profile_inputs WHERE plugin = ?", (plugin,))}
        if src.fixed:
            versions.add("")
        return self.note([(plugin, v) for v in sorted(versions)], trigger)

    def retry(self, plugin: str, version: str | None = None) -> int:
        n = pulls.retry(self.db, plugin, version)
        self._invalidate()
        n += self.scan_plugin(plugin, trigger="retry asked")
        self.wake()
        return n

    def describe(self, src: PluginSource, *, admin: bool) -> dict[str, Any]:
        items = pulls.list_pulls(self.db, src.plugin, limit=50)
        return {**src.to_dict(admin=admin), "status": _status(items, self.policy),
                "pulls": [p.to_dict(self.policy) for p in items]}

    def get(self, plugin: str, *, admin: bool) -> dict[str, Any] | None:
        src = get_source(self.db, plugin)
        return self.describe(src, admin=admin) if src else None

    def overview(self) -> dict[str, Any]:
        """Every plugin source with its pull status (no credentials), for the dashboard."""
        return {"sources": [self.describe(s, admin=False) for s in list_sources(self.db)],
                "counts": pulls.counts(self.db), "symbol_sources": self.symbol_overview()}

    def symbol_overview(self) -> dict[str, Any]:
        return {"sources": [s.to_dict() for s in self.symbols.sources],
                "negative_ttl": self.config.negative_ttl,
                "recent": self.lookups.recent(50) if self.symbols.sources else []}

    # -- the puller -------------------------------------------------------------------
    def _registry_creds(self, host: str) -> Any:
        if self.config.registry_config is None:
            return None
        return docker_config_credentials(host, self.config.registry_config, required=True)

    def process(self, pull: pulls.Pull) -> pulls.Pull:
        """One attempt at ``pull`` (claimed). Never raises."""
        src = get_source(self.db, pull.plugin)
        if src is None:
            pulls.release(self.db, pull.id)
            return pull
        target = src.target(pull.version or None)
        try:
            if target.reference is None:
                raise RegistryError(target.reason or "no reference", kind="bad-reference",
                                    source=src.url)
            self._pull(pull, src, target.reference, target.version)
        except RegistryError as e:
            log.warning("pull of %s for %s failed: %s", target.reference or src.url, pull.plugin, e)
            return pulls.mark_failed(self.db, pull, e, self.policy)
        except Exception as e:  # noqa: BLE001 - record it; the thread lives on
            log.exception("pull of %s for %s failed", src.url, pull.plugin)
            err = RegistryError(f"{type(e).__name__}: {e}"[:500], kind="internal", source=src.url)
            return pulls.mark_failed(self.db, pull, err, self.policy)
        return pull

    def _pull(self, pull: pulls.Pull, src: PluginSource, ref: Any, version: str) -> None:
        notes: list[str] = []
        with RegistryClient(ref.registry, credentials=src.credentials(),
                            plain_http=src.plain_http, timeout=self.policy.timeout) as client:
            resolved = resolve(client, ref)
            notes += resolved.notes
            cached = origins.module_for_digest(self.db, resolved.digest, resolved.manifest.digest)
            row = self.svc.registry.get_row(cached) if cached else None
            if row is not None:
                data = self.svc.store.blobs.get(row["sha256"])
                layer_digest = next((o["layer_digest"] for o in origins.origins_of(
                    self.db, [row["id"]]).get(row["id"], []) if o["layer_digest"]), None)
                filename, variant = row["filename"], resolved.variant
                notes.append(f"digest {resolved.digest} was pulled before: module {row['id']} "
                             "reused, nothing downloaded")
            else:
                got = fetch(client, resolved, max_bytes=self.svc.config.max_module_bytes)
                notes += got.notes
                data, layer_digest, variant = got.data, got.layer.digest, got.resolved.variant
                filename = module_filename(ref.repository, ref.tag or resolved.digest)
        try:
            desc, _created = self.svc.upload_module(data, filename, plugin=pull.plugin,
                                                    version=version or None)
        except WasmprofError as e:
            raise RegistryError(f"the image's module cannot be read: {e}", kind="bad-module",
                                source=str(resolved.pinned)) from None
        origins.record(self.db, desc["id"], Origin(
            ref_url=str(ref), digest=resolved.digest, image_digest=resolved.manifest.digest,
            layer_digest=layer_digest, variant=variant, filename=filename))
        pulls.mark_ready(self.db, pull.id, module_id=desc["id"], digest=resolved.digest,
                         image_digest=resolved.manifest.digest, layer_digest=layer_digest,
                         notes=notes)
        log.info("pulled %s for %s: module %s", resolved.pinned, pull.plugin, desc["id"])

    def lookup_debug(self, mid: int) -> dict[str, Any]:
        """Look the debug build of module ``mid`` up in the symbol sources; store it."""
        row = self.svc.registry.get_row(mid)
        if row is None:
            return {"module": mid, "skipped": "no such module"}
        try:
            module = self.svc.registry.module(row)
        except (WasmprofError, OSError) as e:
            return {"module": mid, "skipped": f"unusable: {e}"}
        if not wants_debug(module):
            return {"module": mid, "skipped": "has DWARF"}
        found, attempts = self.symbols.find(module)
        out: dict[str, Any] = {"module": mid, "attempts": [a.to_dict() for a in attempts]}
        if found is None:
            return out
        stem = (row["filename"] or f"module-{mid}").rsplit(".", 1)[0]
        try:
            desc, _created = self.svc.upload_module(found.data, f"{stem}.debug.wasm",
                                                    plugin=None, version=None)
        except WasmprofError as e:
            self.lookups.put(found.source.url, found.key, "mismatch", str(e)[:500],
                             self.config.negative_ttl)
            return {**out, "error": str(e)}
        self.lookups.put(found.source.url, found.key, "found", found.location,
                         self.config.negative_ttl, module_id=desc["id"])
        origins.record(self.db, desc["id"], Origin(
            ref_url=found.location, digest=digest_of(found.data), variant=found.source.kind,
            filename=f"{stem}.debug.wasm", role="debug"))
        log.info("debug build of module %s found at %s: module %s", mid, found.location, desc["id"])
        return {**out, "found": found.location, "debug_module": desc["id"]}


def _status(items: list[pulls.Pull], policy: Any) -> dict[str, Any]:
    """The plugin's pull status in one object: the worst open problem, else the latest."""
    if not items:
        return {"state": "idle", "summary": "nothing pulled yet: a pull starts when a crash, "
                                            "sample batch or profile arrives for a version "
                                            "without a module"}
    order = {"failed": 0, "retrying": 1, "waiting": 2, "pulling": 3, "pending": 4, "ready": 5}
    worst = min(items, key=lambda p: (order.get(p.state, 9), -p.updated_at))
    return {"state": worst.state, "summary": pulls.summary(worst, policy),
            "error_kind": worst.error_kind,
            "version": worst.version or None}

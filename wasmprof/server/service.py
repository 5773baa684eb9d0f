"""The service object behind the HTTP API (and ``--demo`` loading): store + registry +
resolver + crash/profile services + the background indexing worker.

Background work is per replica: a thread takes module ids from a queue (filled on upload
and, at start, with every module still ``pending`` or whose claim went stale), links
companions, warms the resolver's on-disk index, marks the module ``ready`` and
re-symbolizes/regroups the stored crashes of its plugin. Claims go through the database
(``index_state`` + ``index_claimed_at``) so two replicas never index the same module at
once and a replica killed mid-job is replaced after :data:`STALE_CLAIM` seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from wasmprof.config import ServerConfig
from wasmprof.errors import WasmprofError
from wasmprof.model import AddressSpace
from wasmprof.server.crash_service import CrashService
from wasmprof.server.metrics import Metrics
from wasmprof.server.profile_service import ProfileService
from wasmprof.server.registry import ModuleRegistry
from wasmprof.store.db import now
from wasmprof.store.state import Store, open_store

log = logging.getLogger(__name__)

STALE_CLAIM = 600.0


def make_resolver(cache_dir: Any) -> Any:
    from wasmprof.addr2line.resolver import Resolver
    return Resolver(cache_dir)


class Service:
    def __init__(self, config: ServerConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.store)
        self.db = self.store.db
        self.metrics = Metrics()
        self.registry = ModuleRegistry(self.store)
        config.store.cache_dir.mkdir(parents=True, exist_ok=True)
        self.resolver = make_resolver(config.store.cache_dir)
        # one lock for every use of the shared Resolver (its caches are not thread-safe)
        self.resolve_lock = threading.Lock()
        self.crashes = CrashService(self.store, self.registry, self.resolver, self.metrics,
                                    self.resolve_lock)
        self.profiles = ProfileService(self.store, self.registry, self.resolver, self.metrics,
                                       self.resolve_lock)
        self.queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._warm_resolver: Any = None
        self._stop = threading.Event()
        self.metrics.gauges["wasmprof_queue_depth"] = lambda: float(self.queue.qsize())
        self.metrics.external["wasmprof_module_cache_hits_total"] = lambda: float(self.registry.cache_hits)
        self.metrics.external["wasmprof_module_cache_misses_total"] = lambda: float(self.registry.cache_misses)
        from wasmprof.sources.service import SourcesService
        self.sources = SourcesService(self, config.sources)   # plugin sources, puller, symbol sources

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is not None:
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="wasmprof-indexer", daemon=True)
        self._worker.start()
        self.enqueue_pending()
        if self.config.maintenance:   # periodic store maintenance: one process per host is enough
            self.profiles.start()
        self.sources.start()

    def stop(self) -> None:
        self.sources.stop()
        self.profiles.stop()
        self._stop.set()
        self.queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None

    def close(self) -> None:
        self.stop()
        self.store.close()

    def enqueue_pending(self) -> int:
        with self.db.read() as tx:
            rows = tx.all("SELECT id FROM modules WHERE index_state = 'pending' OR "
                          "(index_state = 'indexing' AND index_claimed_at < ?) ORDER BY id",
                          (now() - STALE_CLAIM,))
        for r in rows:
            self.queue.put(("module", int(r["id"])))
        return len(rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.queue.get(timeout=5.0)
            except queue.Empty:
                continue
            if job is None:
                break
            kind, arg = job
            try:
                if kind == "module":
                    self.index_module(arg)
                else:
                    self.crashes.resymbolize(plugin=arg)
                    self.profiles.on_modules_changed(arg)
            except Exception:  # noqa: BLE001 - keep the worker alive; state says failed
                log.exception("background job %s %s failed", kind, arg)

    # -- modules -----------------------------------------------------------------------
    def upload_module(self, data: bytes, filename: str | None, *, plugin: str | None,
                      version: str | None, background: bool | None = None) -> tuple[dict, bool]:
        desc, created = self.registry.upload(data, filename, plugin=plugin, version=version)
        self.metrics.inc("ingest_requests", kind="module")
        self.metrics.inc("ingest_bytes", len(data), kind="module")
        bg = background if background is not None else (self._worker is not None)
        if created:
            if bg:
                self.queue.put(("module", desc["id"]))
            else:
                self.index_module(desc["id"])
                desc = self.registry.describe(self.registry.get_row(desc["id"]))
        elif plugin:                     # known bytes, maybe a new plugin/version link
            if bg:
                self.queue.put(("plugin", plugin))
            else:
                self.crashes.resymbolize(plugin=plugin)
                self.profiles.on_modules_changed(plugin)
        return desc, created

    def _claim(self, mid: int) -> bool:
        t = now()
        with self.db.tx() as tx:
            row = tx.one("UPDATE modules SET index_state = 'indexing', index_claimed_at = ? "
                         "WHERE id = ? AND (index_state = 'pending' OR (index_state = 'indexing' "
                         "AND index_claimed_at < ?)) RETURNING id", (t, mid, t - STALE_CLAIM))
        return row is not None

    def index_module(self, mid: int) -> dict[str, Any]:
        """Link companions, warm the index, mark ready, regroup the plugin's crashes."""
        if not self._claim(mid):
            return {"module": mid, "skipped": "claimed elsewhere or done"}
        row = self.registry.get_row(mid)
        try:
            changed = self.registry.link_companions(mid)
            row = self.registry.get_row(mid)
            module = self.registry.module(row)
            self._warm(module)
        except (WasmprofError, OSError) as e:
            with self.db.tx() as tx:
                tx.execute("UPDATE modules SET index_state = 'failed', index_error = ? WHERE id = ?",
                           (str(e)[:2000], mid))
            self.metrics.inc("index_jobs", outcome="failed")
            return {"module": mid, "error": str(e)}
        with self.db.tx() as tx:
            tx.execute("UPDATE modules SET index_state = 'ready', index_error = NULL, "
                       "indexed_at = ? WHERE id = ?", (now(), mid))
        self.metrics.inc("index_jobs", outcome="ready")
        plugins = {link["plugin"] for m in (mid, *changed) for link in self.registry.links(m)}
        regrouped = {}
        for p in sorted(x for x in plugins if x):
            regrouped[p] = self.crashes.resymbolize(plugin=p)
            self.profiles.on_modules_changed(p)
        self.sources.module_indexed(mid)      # no DWARF: look the debug build up (background)
        return {"module": mid, "companions_changed": changed, "regrouped": regrouped}

    def _warm(self, module: Any) -> None:
        """Build the on-disk index now rather than on the first crash. Uses a Resolver of
        its own (same cache dir) so request threads are never blocked by a long build."""
        if self._warm_resolver is None:
            self._warm_resolver = make_resolver(self.config.store.cache_dir)
        warm = getattr(self._warm_resolver, "build_index", None)
        target = module.companion or module
        if warm is not None:
            warm(target)
            return
        start = target.code_payload_start
        if start is not None:
            self._warm_resolver.resolve_address(target, start + 1, AddressSpace.FILE)

    # -- stats ---------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self.db.read() as tx:
            return {
                "modules": tx.scalar("SELECT COUNT(*) AS n FROM modules"),
                "crash_groups": tx.scalar("SELECT COUNT(*) AS n FROM crash_groups"),
                "crash_events": tx.scalar("SELECT COUNT(*) AS n FROM crash_events"),
                "profile_inputs": tx.scalar("SELECT COUNT(*) AS n FROM profile_inputs"),
                "samples": int(tx.scalar("SELECT COALESCE(SUM(sample_count), 0) AS n "
                                         "FROM profile_inputs") or 0),
                "profile_samples_stored": int(tx.scalar(
                    "SELECT COALESCE(SUM(samples), 0) AS n FROM profile_counts") or 0),
                "profile_stacks": tx.scalar("SELECT COUNT(*) AS n FROM profile_stacks"),
                "log_ingests": tx.scalar("SELECT COUNT(*) AS n FROM ingests WHERE kind = 'log'"),
                "pending_index_jobs": tx.scalar("SELECT COUNT(*) AS n FROM modules WHERE "
                                                "index_state IN ('pending', 'indexing')"),
            }

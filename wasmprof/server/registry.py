"""The module registry: uploaded binaries, their companions, plugins and their runtime.

Uploads are parsed (``wasmprof.binary.loader``), never executed, stored content-addressed
(``modules.sha256`` unique: the same bytes uploaded twice are one module) and indexed in
the background (:meth:`ModuleRegistry.index_module`). A stripped module and its debug
companion share an identity; an ``.aot`` is linked to the ``.wasm`` it was compiled from
(``find_companion``: identity, else shape). Loaded :class:`Module` objects are cached per
replica (LRU); symbol indexes live in the Resolver's cache dir on local disk.

A module (content-addressed) may belong to several (plugin, version) pairs: ``module_links``
holds one row per link with its time; re-uploading the same bytes for another version adds
a link. :meth:`ModuleRegistry.plugin_links` lists them one per link (the crash service
groups them into per-version builds); :meth:`ModuleRegistry.rows` one per module with all
its versions, most recently linked first.

Address space of WAMR dumps per plugin: ``plugins.runtime`` when set through the API,
else AOT semantics when the plugin has an ``.aot``/``.aot.wasm`` module, else the classic
interpreter.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from typing import Any

import orjson

from wasmprof.errors import UsageError, WasmprofError
from wasmprof.model import Module, ModuleKind
from wasmprof.store.db import Tx, now
from wasmprof.store.state import Store

log = logging.getLogger(__name__)

AOT_KINDS = (str(ModuleKind.AOT), str(ModuleKind.AOT_WASM), str(ModuleKind.ELF_OBJECT))
RUNTIMES = {  # plugins.runtime -> CrashSymbolizer mode
    "wamr-interp": "interp", "wamr-fast-interp": "fast-interp", "wamr-aot": "aot",
    "v8": "v8", "wasmtime": "wasmtime",
}
MODULE_COLUMNS = ", ".join(f"m.{c}" for c in (
    "id", "sha256", "identity", "kind", "filename", "name", "plugin", "version", "size",
    "has_dwarf", "has_name_section", "build_id", "shape", "arch", "function_count", "info",
    "companion_id", "index_state", "index_error", "indexed_at", "uploaded_at"))


def _load(path: str, data: bytes | None, name: str | None) -> Module:
    from wasmprof.binary.loader import load_module
    try:
        return load_module(path, data, name=name)
    except TypeError:                       # older signature without name=
        return load_module(path, data)


def module_hints(row: dict[str, Any], companion: dict[str, Any] | None) -> list[str]:
    """What to fix when a module cannot be symbolized well (shown by the dashboard)."""
    hints = []
    dwarf = row["has_dwarf"] or (companion is not None and companion["has_dwarf"])
    names = row["has_name_section"] or (companion is not None and companion["has_name_section"])
    if row["kind"] in AOT_KINDS and companion is None and row["kind"] != "aot.wasm":
        hints.append("AOT module without its .wasm: upload the .wasm it was compiled from "
                     "(same plugin) to get names, files and lines")
    if not dwarf:
        hints.append("no DWARF: compile with -g (keep it in a debug companion and strip the "
                     "deployed module if size matters), then upload the unstripped .wasm")
    if not names:
        hints.append("no name section: frames show as $fN; keep the name section "
                     "(wasm-ld --no-strip / do not pass --strip-all)")
    return hints


class ModuleRegistry:
    def __init__(self, store: Store, *, cache_size: int = 32) -> None:
        self.store = store
        self.db = store.db
        self._cache: OrderedDict[str, Module] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_size = cache_size
        self.cache_hits = 0
        self.cache_misses = 0

    # -- upload -------------------------------------------------------------------------
    def upload(self, data: bytes, filename: str | None, *, plugin: str | None = None,
               version: str | None = None) -> tuple[dict[str, Any], bool]:
        """Store a module. Returns (module dict, created). Bad bytes -> WasmprofError."""
        filename = (filename or "upload.wasm").replace("/", "_").replace("\\", "_")[:200]
        sha = hashlib.sha256(data).hexdigest()
        existing = self.get_row_by_sha(sha)
        if existing is not None:
            if plugin:
                with self.db.tx() as tx:
                    self._link(tx, existing["id"], plugin, version)
            return self.describe(existing), False
        module = _load(f"upload {filename}", data, filename.rsplit(".", 1)[0])
        info = {"notes": list(module.notes)[:50], "aot_version": module.aot_version,
                "aot_layout": module.aot_layout, "import_function_count": module.import_function_count,
                "external_debug_info": module.external_debug_info,
                "source_mapping_url": module.source_mapping_url}
        with self.db.tx() as tx:
            self.store.blobs.put(tx, data, sha)
            row = tx.one("SELECT id FROM modules m WHERE sha256 = ?", (sha,))
            if row is not None:                  # a concurrent upload of the same bytes won
                mid, created = row["id"], False
            else:
                ins = tx.one(
                    "INSERT INTO modules (sha256, identity, kind, filename, name, plugin, version, "
                    "size, has_dwarf, has_name_section, build_id, shape, arch, function_count, info, "
                    "index_state, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "'pending', ?) ON CONFLICT (sha256) DO NOTHING RETURNING id",
                    (sha, module.identity, str(module.kind), filename, module.name, plugin, version,
                     len(data), int(module.has_dwarf), int(module.has_name_section), module.build_id,
                     module.shape, module.arch, len(module.functions),
                     orjson.dumps(info).decode(), now()))
                if ins is None:                      # lost a race with the same bytes
                    mid = tx.scalar("SELECT id FROM modules WHERE sha256 = ?", (sha,))
                    created = False
                else:
                    mid, created = ins["id"], True
            if plugin:
                self._link(tx, mid, plugin, version)
        with self._cache_lock:
            self._cache[sha] = module
            self._trim()
        return self.describe(self.get_row(mid)), created

    def _link(self, tx: Tx, mid: int, plugin: str, version: str | None) -> None:
        """Record that ``plugin`` (at ``version``) uses module ``mid``."""
        tx.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, NULL, ?) "
                   "ON CONFLICT (name) DO NOTHING", (plugin, now()))
        tx.execute("INSERT INTO module_links (module_id, plugin, version, created_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (module_id, plugin, version) DO NOTHING",
                   (mid, plugin, version or "", now()))

    def links(self, mid: int) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            return [{"plugin": r["plugin"], "version": r["version"] or None} for r in tx.all(
                "SELECT plugin, version FROM module_links WHERE module_id = ? "
                "ORDER BY created_at, plugin", (mid,))]

    # -- rows ---------------------------------------------------------------------------
    def get_row(self, mid: int) -> dict[str, Any] | None:
        with self.db.read() as tx:
            return tx.one(f"SELECT {MODULE_COLUMNS} FROM modules m WHERE id = ?", (mid,))

    def get_row_by_sha(self, sha: str) -> dict[str, Any] | None:
        with self.db.read() as tx:
            return tx.one(f"SELECT {MODULE_COLUMNS} FROM modules m WHERE sha256 = ?", (sha,))

    def rows(self, *, plugin: str | None = None) -> list[dict[str, Any]]:
        """Module rows by id; of one ``plugin``: every module linked to it, once, with
        ``link_versions`` (every version it was linked as, in link order; unversioned links
        are left out), ``link_version`` (the most recently linked of them, or None) and
        ``linked_at`` (its latest link to the plugin), most recently linked first."""
        if plugin is None:
            with self.db.read() as tx:
                return tx.all(f"SELECT {MODULE_COLUMNS} FROM modules m ORDER BY id")
        out: dict[int, dict[str, Any]] = {}
        for r in self.plugin_links(plugin):
            row = out.get(r["id"])
            if row is None:
                row = out[r["id"]] = {**r, "link_versions": [], "linked_at": r["linked_at"]}
            if r["link_version"]:
                row["link_versions"].append(r["link_version"])
                row["link_version"] = r["link_version"]
            row["linked_at"] = max(row["linked_at"], r["linked_at"])
        return sorted(out.values(), key=lambda r: (-r["linked_at"], -r["id"]))

    def plugin_links(self, plugin: str) -> list[dict[str, Any]]:
        """One row per (module, version) link of ``plugin``, oldest link first: the module
        columns plus ``link_version`` (None for an unversioned link) and ``linked_at``."""
        with self.db.read() as tx:
            rows = tx.all(f"SELECT {MODULE_COLUMNS}, l.version AS link_version, "
                          "l.created_at AS linked_at FROM modules m JOIN module_links l "
                          "ON l.module_id = m.id WHERE l.plugin = ? ORDER BY l.created_at, m.id",
                          (plugin,))
        for r in rows:
            r["link_version"] = r["link_version"] or None
        return rows

    def describe(self, row: dict[str, Any], companion: dict[str, Any] | None = None) -> dict[str, Any]:
        if companion is None and row.get("companion_id"):
            companion = self.get_row(row["companion_id"])
        info = orjson.loads(row["info"]) if row.get("info") else {}
        dwarf = bool(row["has_dwarf"] or (companion and companion["has_dwarf"]))
        names = bool(row["has_name_section"] or (companion and companion["has_name_section"]))
        url = info.get("source_mapping_url")
        smap = "uploaded" if self.source_map_row(row["id"]) is not None else \
            "embedded" if url and url.lower().startswith("data:") else \
            "missing" if url else None
        hints = module_hints(row, companion)
        if not dwarf and smap in ("uploaded", "embedded"):     # lines come from the map
            hints = [h for h in hints if not h.startswith("no DWARF")]
        elif smap == "missing":
            hints.append(f"the module names a source map ({url[:100]}): upload it with POST "
                         f"/api/v1/modules/{row['id']}/source-map")
        return {
            "id": row["id"], "sha256": row["sha256"], "identity": row["identity"],
            "kind": row["kind"], "filename": row["filename"], "name": row["name"],
            "plugin": row["plugin"], "version": row["version"], "size": row["size"],
            "plugins": self.links(row["id"]),
            "arch": row["arch"], "function_count": row["function_count"],
            "uploaded_at": row["uploaded_at"],
            "companion": ({"id": companion["id"], "filename": companion["filename"],
                           "sha256": companion["sha256"], "kind": companion["kind"]}
                          if companion else None),
            "symbols": {
                "dwarf": bool(row["has_dwarf"]), "names": bool(row["has_name_section"]),
                "build_id": row["build_id"], "dwarf_via_companion": dwarf and not row["has_dwarf"],
                "names_via_companion": names and not row["has_name_section"],
                "aot_matched_to_wasm": (row["kind"] in AOT_KINDS and companion is not None)
                if row["kind"] in AOT_KINDS else None,
                "index": row["index_state"], "index_ready": row["index_state"] == "ready",
                "index_error": row["index_error"],
                "source_map": smap,
            },
            "hints": hints,
            "info": info,
        }

    # -- plugins ------------------------------------------------------------------------
    def set_runtime(self, plugin: str, runtime: str | None) -> dict[str, Any]:
        if runtime is not None and runtime not in RUNTIMES:
            raise UsageError("unknown runtime", source="runtime", expected=", ".join(RUNTIMES),
                             found=runtime)
        with self.db.tx() as tx:
            tx.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET runtime = excluded.runtime, "
                       "updated_at = excluded.updated_at", (plugin, runtime, now()))
        return self.plugin_info(plugin)

    def plugins(self) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            names = {r["name"] for r in tx.all("SELECT name FROM plugins")}
            names |= {r["plugin"] for r in tx.all("SELECT DISTINCT plugin FROM module_links")}
            names |= {r["plugin"] for r in tx.all(
                "SELECT DISTINCT plugin FROM crash_groups WHERE plugin IS NOT NULL")}
        return [self.plugin_info(n) for n in sorted(names)]

    def plugin_info(self, plugin: str) -> dict[str, Any]:
        with self.db.read() as tx:
            row = tx.one("SELECT runtime FROM plugins WHERE name = ?", (plugin,))
            kinds = [r["kind"] for r in tx.all(
                "SELECT DISTINCT m.kind FROM modules m JOIN module_links l ON l.module_id = m.id "
                "WHERE l.plugin = ?", (plugin,))]
            versions = sorted({r["version"] for r in tx.all(
                "SELECT DISTINCT version FROM module_links WHERE plugin = ? AND version != ''",
                (plugin,))})
        explicit = row["runtime"] if row else None
        mode, why = self._mode(explicit, kinds)
        return {"name": plugin, "runtime": explicit, "wamr_dump_space": mode,
                "wamr_dump_space_reason": why, "module_kinds": sorted(kinds),
                "versions": versions}

    @staticmethod
    def _mode(explicit: str | None, kinds: list[str]) -> tuple[str, str]:
        if explicit:
            return RUNTIMES[explicit], f"runtime set to {explicit} through the API"
        if any(k in (str(ModuleKind.AOT), str(ModuleKind.AOT_WASM)) for k in kinds):
            return "aot", "the plugin has an uploaded .aot/.aot.wasm module"
        return "interp", "no .aot module uploaded for the plugin: classic interpreter assumed"

    def wamr_mode(self, plugin: str | None) -> tuple[str, str]:
        if not plugin:
            return "auto", "no plugin given"
        info = self.plugin_info(plugin)
        return info["wamr_dump_space"], info["wamr_dump_space_reason"]

    # -- Module objects --------------------------------------------------------------
    def _trim(self) -> None:
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def module(self, row: dict[str, Any], *, with_companion: bool = True) -> Module:
        """The parsed Module for a row (cached), with ``companion`` attached when linked."""
        sha = row["sha256"]
        with self._cache_lock:
            mod = self._cache.get(sha)
            if mod is not None:
                self._cache.move_to_end(sha)
                self.cache_hits += 1
        if mod is None:
            self.cache_misses += 1
            path = self.store.blobs.local_path(sha)
            fname = row["filename"] or f"module-{row['id']}"
            mod = _load(fname, path.read_bytes(), fname.rsplit(".", 1)[0])
            with self._cache_lock:
                self._cache[sha] = mod
                self._trim()
        if mod.source_map is None:
            self._attach_uploaded_map(row["id"], mod)
        if with_companion and row.get("companion_id") and mod.companion is None:
            comp_row = self.get_row(row["companion_id"])
            if comp_row is not None:
                try:
                    mod.companion = self.module(comp_row, with_companion=False)
                except (WasmprofError, FileNotFoundError) as e:
                    log.warning("companion %s of module %s unusable: %s", comp_row["id"], row["id"], e)
        return mod

    # -- source maps (modules without DWARF: AssemblyScript, Emscripten -gsource-map) -------
    def upload_source_map(self, mid: int, data: bytes, filename: str | None) -> dict[str, Any]:
        """Store ``data`` as module ``mid``'s source map (validated: a Wasm source map whose
        offsets lie inside the module file) and use it from now on."""
        from wasmprof.addr2line.sourcemap import SourceMap, SourceMapError
        row = self.get_row(mid)
        if row is None:
            raise KeyError(mid)
        where = f"upload {(filename or 'source map')[:200]}"
        if row["kind"] != str(ModuleKind.WASM):
            raise UsageError("source maps apply to Wasm modules", source=where,
                             expected="a module of kind wasm", found=row["kind"])
        sm = SourceMap.parse(data, where)
        if len(sm) and sm.offsets[-1] >= row["size"]:
            raise SourceMapError("the map does not describe this module", source=where,
                                 expected=f"offsets below the module's {row['size']} bytes",
                                 found=f"offset {sm.offsets[-1]}")
        sha = hashlib.sha256(data).hexdigest()
        with self.db.tx() as tx:
            self.store.blobs.put(tx, data, sha)
            tx.execute("DELETE FROM module_source_maps WHERE module_id = ?", (mid,))
            tx.execute("INSERT INTO module_source_maps (module_id, sha256, filename, size, "
                       "uploaded_at) VALUES (?, ?, ?, ?, ?)",
                       (mid, sha, (filename or "")[:200] or None, len(data), now()))
        with self._cache_lock:               # reload: the cached Module has no map yet
            self._cache.pop(row["sha256"], None)
        return {"module_id": mid, "sha256": sha, "filename": filename, "size": len(data),
                "mappings": len(sm), "sources": len(sm.sources)}

    def source_map_row(self, mid: int) -> dict[str, Any] | None:
        with self.db.read() as tx:
            return tx.one("SELECT module_id, sha256, filename, size, uploaded_at FROM "
                          "module_source_maps WHERE module_id = ?", (mid,))

    def _attach_uploaded_map(self, mid: int, mod: Module) -> None:
        row = self.source_map_row(mid)
        if row is None:
            return
        from wasmprof.binary.loader import attach_source_map
        try:
            attach_source_map(mod, self.store.blobs.get(row["sha256"]),
                              f"uploaded {row['filename'] or 'source map'}")
        except (WasmprofError, FileNotFoundError) as e:   # validated at upload: a lost blob
            log.warning("source map of module %s unusable: %s", mid, e)

    def modules_for(self, plugin: str | None, version: str | None) -> list[tuple[dict, Module]]:
        """Modules of ``plugin`` linked as ``version`` when there are any, else all of the
        plugin's modules; most recently linked first. Crash symbolization chooses among
        versions itself (``CrashService``); this is the simple rule for profiles."""
        if not plugin:
            return []
        rows = self.rows(plugin=plugin)
        if version:
            rows = [r for r in rows if version in r["link_versions"]] or rows
        return self.loaded(rows)

    def loaded(self, rows: list[dict[str, Any]]) -> list[tuple[dict, Module]]:
        """(row, Module) for each row whose module loads; the others are logged and left out."""
        out = []
        for r in rows:
            try:
                out.append((r, self.module(r)))
            except (WasmprofError, FileNotFoundError) as e:
                log.warning("module %s unusable: %s", r["id"], e)
        return out

    # -- companions (background) -------------------------------------------------------
    def link_companions(self, mid: int) -> list[int]:
        """Link this module and the modules it completes; returns ids whose link changed."""
        row = self.get_row(mid)
        if row is None:
            return []
        changed = []
        with self.db.read() as tx:
            related = tx.all(
                f"SELECT {MODULE_COLUMNS} FROM modules m WHERE id != ? AND (identity = ? "
                "OR (shape IS NOT NULL AND shape = ?))", (mid, row["identity"], row["shape"]))
        group = [row, *related]
        for target in group:
            others = [r for r in group if r["id"] != target["id"]]
            comp = self._best_companion(target, others)
            new_id = comp["id"] if comp else None
            if new_id != target["companion_id"] and new_id is not None:
                with self.db.tx() as tx:
                    tx.execute("UPDATE modules SET companion_id = ? WHERE id = ?", (new_id, target["id"]))
                changed.append(target["id"])
                with self._cache_lock:       # drop the cached object: its companion changed
                    self._cache.pop(target["sha256"], None)
        return changed

    def _best_companion(self, target: dict, others: list[dict]) -> dict | None:
        if not others:
            return None
        if target["kind"] == "wasm" and target["has_dwarf"] and target["has_name_section"]:
            return None                       # nothing to gain
        try:
            from wasmprof.binary.loader import find_companion
        except ImportError:
            find_companion = None
        if find_companion is not None:
            try:
                tmod = self.module(target, with_companion=False)
                cands = []
                for o in others:
                    if o["kind"] == "wasm":
                        cands.append((o, self.module(o, with_companion=False)))
                found = find_companion(tmod, [m for _, m in cands])
                tmod.companion = None         # we attach companions ourselves
                for o, m in cands:
                    if m is found:
                        return o
                return None
            except (WasmprofError, FileNotFoundError) as e:
                log.warning("companion search for module %s failed: %s", target["id"], e)
        wasm = [o for o in others if o["kind"] == "wasm"
                and (o["identity"] == target["identity"] or o["shape"] == target["shape"])]
        wasm.sort(key=lambda o: (-o["has_dwarf"], -o["has_name_section"], -o["uploaded_at"]))
        return wasm[0] if wasm else None

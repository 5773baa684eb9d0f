"""Load the bundled ``samples/`` into a store so ``wasmprof serve --demo`` shows real data.

Layout (filled by the crash-log and profile work):

- ``samples/modules/*.{wasm,aot,aot.wasm}``: plugin = file name up to the first ``.``
  (``crash_oob.O2.wasm`` → ``crash_oob``) unless ``samples/plugins.json`` maps file names to
  ``{"plugin": …, "version": …}``;
- ``samples/logs/*``: gateway logs, posted like ``POST /api/v1/logs`` (plugin from the log
  lines, else from ``plugins.json`` by file name, else from the file name's first part when
  a module of that plugin exists);
- ``samples/profiles/``: ``*.perf-script.txt`` (+ a ``*.map`` of the same stem prefix),
  ``*.folded``, ``*.json`` agent batches;
- ``samples/sources/``: the plugins' source files, stored as ``/fixtures/src/<name>`` (the
  path the samples' DWARF names) for the dashboard's source context.

Loading runs the same service code as the HTTP API (upload, ingest, index) synchronously.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from wasmprof.errors import WasmprofError

log = logging.getLogger(__name__)

MODULE_SUFFIXES = (".aot.wasm", ".wasm", ".aot", ".cwasm", ".o")


def samples_dir() -> Path | None:
    env = os.environ.get("WASMPROF_SAMPLES")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[2] / "samples")
    cands.append(Path.cwd() / "samples")
    for c in cands:
        if c.is_dir():
            return c
    return None


def _plugin_of(name: str, mapping: dict[str, Any]) -> tuple[str | None, str | None]:
    m = mapping.get(name)
    if isinstance(m, dict):
        return m.get("plugin"), m.get("version")
    if isinstance(m, str):
        return m, None
    return name.split(".", 1)[0], None


def load_samples(svc: Any, root: Path | None = None) -> dict[str, Any]:
    """Upload modules, post logs and profiles from ``root``; returns what was loaded."""
    root = root or samples_dir()
    out: dict[str, Any] = {"root": str(root) if root else None, "modules": 0, "crashes": 0,
                           "profiles": 0, "errors": []}
    if root is None:
        out["errors"].append("no samples/ directory found")
        return out
    mapping: dict[str, Any] = {}
    if (root / "plugins.json").is_file():
        try:
            mapping = orjson.loads((root / "plugins.json").read_bytes())
        except orjson.JSONDecodeError as e:
            out["errors"].append(f"plugins.json: {e}")
    plugins = set()
    mdir = root / "modules"
    for path in sorted(mdir.iterdir()) if mdir.is_dir() else []:
        if not path.name.endswith(MODULE_SUFFIXES) or not path.is_file():
            continue
        plugin, version = _plugin_of(path.name, mapping)
        try:
            svc.upload_module(path.read_bytes(), path.name, plugin=plugin, version=version,
                              background=False)
            out["modules"] += 1
            plugins.add(plugin)
        except WasmprofError as e:
            out["errors"].append(str(e))
    ldir = root / "logs"
    for path in sorted(ldir.iterdir()) if ldir.is_dir() else []:
        if not path.is_file() or path.name.startswith("."):
            continue
        plugin, version = (mapping[path.name].get("plugin"), mapping[path.name].get("version")) \
            if isinstance(mapping.get(path.name), dict) else (None, None)
        if plugin is None and path.name.split(".", 1)[0] in plugins:
            plugin = path.name.split(".", 1)[0]
        with path.open("rb") as f:
            res = svc.crashes.ingest_log(f, source=path.name, size=path.stat().st_size,
                                         sha256=None, plugin=plugin, version=version,
                                         labels={"source": "demo"})
        out["crashes"] += res["crashes"]
    sdir = root / "sources"           # plugin sources, shown as context around frames
    if sdir.is_dir():
        from wasmprof.server.routes_web import load_sources_dir
        out["sources"] = load_sources_dir(svc.store, sdir, prefix="/fixtures/src")
    pdir = root / "profiles"
    files = sorted(pdir.iterdir()) if pdir.is_dir() else []
    maps = [p for p in files if p.name.endswith(".map")]
    for path in files:
        if not path.is_file() or path.name.endswith((".map", ".md", ".log")):
            continue
        plugin, version = _plugin_of(path.name, mapping)
        aux = None
        if "perf-script" in path.name or path.suffix == ".perf":
            stem = path.name.split(".perf-script", 1)[0]
            for m in maps:
                if m.name.startswith(stem):
                    aux = m.read_bytes()
                    break
        labels = {"source": "demo"}
        if isinstance(mapping.get(path.name), dict):
            labels.update(mapping[path.name].get("labels") or {})
        try:
            svc.profiles.ingest(path.read_bytes(), fmt=None, aux=aux, plugin=plugin,
                                version=version, labels=labels, name=path.name)
            out["profiles"] += 1
        except WasmprofError as e:
            out["errors"].append(str(e))
    return out

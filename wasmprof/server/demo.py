"""Load the bundled ``samples/`` into a store so ``wasmprof serve --demo`` shows real data.

Layout:

- ``samples/modules/*.{wasm,aot,aot.wasm}``: plugin = file name up to the first ``.``
  (``crash_oob.O2.wasm`` → ``crash_oob``) unless ``samples/plugins.json`` maps the file name
  to ``{"plugin": …, "version": …}`` or to a list of them (one module used by several
  plugins or versions);
- ``samples/timeline.json`` + ``samples/dumps/``: a week of crash history replayed first
  (:func:`timeline_logs`): real WAMR dumps embedded in gateway lines at times relative to
  now, posted per plugin + version, some groups marked resolved, so the dashboard shows
  sparklines and every status (new, ongoing, regressed, resolved);
- ``samples/logs/*``: gateway logs, their timestamps shifted so the newest record is
  :data:`LOG_AGE` seconds old (:func:`shift_timestamps`), posted like ``POST /api/v1/logs``
  with the plugin, version and labels of ``plugins.json``. A log holding several plugins'
  crashes is mapped to ``{"versions": {plugin: version}}`` and posted once per plugin, each
  time without the other plugins' crash lines (:func:`split_by_plugin`);
- ``samples/profile-history.json`` + ``samples/profiles/``: hours of agent sample batches
  per pod and version built from the real perf recordings it names
  (:mod:`wasmprof.server.demo_profiles`); other files in ``profiles/`` are posted as they
  are: ``*.perf-script.txt`` (+ a ``*.map`` of the same stem prefix), ``*.folded``,
  ``*.json`` agent batches;
- ``samples/sources/``: the plugins' source files, stored as ``/fixtures/src/<name>`` (the
  path the samples' DWARF names) for the dashboard's source context.

Loading runs the same service code as the HTTP API (upload, ingest, index) synchronously.
Only the demo rewrites log text (times); the ingest path stores what it is given.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from wasmprof.errors import WasmprofError

log = logging.getLogger(__name__)

MODULE_SUFFIXES = (".aot.wasm", ".wasm", ".aot", ".cwasm", ".o")
#: Age of the newest record of a sample log once shifted (seconds).
LOG_AGE = 4 * 60
DEMO_LABELS = {"source": "demo"}
DAY = 86400.0

# A log record's time: Istio "2025-11-03T08:14:21.007000Z", Envoy "[2025-11-03 08:14:21.007]",
# istio JSON "time":"…". The first one in a line's first 80 characters is the record's.
_TIME = re.compile(r"(?<!\d)(\d{4})-(\d\d)-(\d\d)([T ])(\d\d):(\d\d):(\d\d)(\.\d{1,9})?")


def samples_dir() -> Path | None:
    env = os.environ.get("WASMPROF_SAMPLES")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[2] / "samples")
    cands.append(Path.cwd() / "samples")
    for c in cands:
        if c.is_dir():
            return c
    return None


def _targets(name: str, mapping: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(plugin, version) pairs a sample file belongs to."""
    m = mapping.get(name)
    entries = m if isinstance(m, list) else [m]
    out = []
    for e in entries:
        if isinstance(e, dict) and e.get("plugin"):
            out.append((e.get("plugin"), e.get("version")))
        elif isinstance(e, str):
            out.append((e, None))
    return out or [(name.split(".", 1)[0], None)]


def _upload_order(path: Path) -> tuple[bool, str]:
    """Plain .wasm files first: each AOT/cwasm then finds the .wasm it was compiled from
    when it is uploaded (the profile store resolves AOT code through it)."""
    name = path.name
    return (not (name.endswith(".wasm") and not name.endswith(".aot.wasm")), name)


def _plugin_of(name: str, mapping: dict[str, Any]) -> tuple[str | None, str | None]:
    return _targets(name, mapping)[0]


# -- log time shifting -------------------------------------------------------------------
def _record_time(m: re.Match) -> float:
    y, mo, d, _, hh, mi, ss, frac = m.groups()
    t = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss), tzinfo=timezone.utc)
    return t.timestamp() + (float(frac) if frac else 0.0)


def _format_time(t: float, like: re.Match) -> str:
    frac = like.group(8)
    digits = len(frac) - 1 if frac else 0
    whole, units = divmod(round(t * 10 ** digits), 10 ** digits)
    out = datetime.fromtimestamp(whole, tz=timezone.utc).strftime(f"%Y-%m-%d{like.group(4)}%H:%M:%S")
    return out + (f".{units:0{digits}d}" if digits else "")


def shift_timestamps(text: str, newest: float) -> str:
    """``text`` with every line's record time moved by one offset so that the newest is
    ``newest`` (epoch seconds, UTC); spacing, formats and precision are kept, lines
    without a time (dump lines) are unchanged."""
    lines = text.split("\n")
    found: list[tuple[int, re.Match]] = []
    for i, line in enumerate(lines):
        m = _TIME.search(line, 0, 80)
        if m is not None:
            try:
                _record_time(m)
            except ValueError:
                continue
            found.append((i, m))
    if not found:
        return text
    delta = newest - max(_record_time(m) for _, m in found)
    # whole milliseconds keep 3-digit fractions exact
    delta = round(delta, 3)
    for i, m in found:
        line = lines[i]
        lines[i] = line[:m.start()] + _format_time(_record_time(m) + delta, m) + line[m.end():]
    return "\n".join(lines)


def split_by_plugin(text: str, source: str) -> dict[str | None, str]:
    """{plugin: the log without the lines of other plugins' crashes} for each plugin the
    crash scanner attributes a crash to (``None``: crashes naming no plugin). One entry
    (the whole text) when the log holds one plugin's crashes or none."""
    from wasmprof.ingest.crashlog import scan_crashes
    crashes = list(scan_crashes(io.BytesIO(text.encode()), source))
    plugins = {c.plugin for c in crashes}
    if len(plugins) <= 1:
        return {next(iter(plugins), None): text}
    lines = text.split("\n")
    owner: dict[int, str | None] = {}
    for c in crashes:
        # the crash's raw lines, in order, around its first line (dump lines may precede it)
        i = max(0, (c.first_line or 1) - 1 - 2 * len(c.raw) - 50)
        for raw in c.raw:
            while i < len(lines) and (lines[i] != raw or i in owner):
                i += 1
            if i < len(lines):
                owner[i] = c.plugin
                i += 1
    return {p: "\n".join(line for i, line in enumerate(lines) if owner.get(i, p) == p)
            for p in plugins}


# -- crash history ------------------------------------------------------------------------
@dataclass(slots=True)
class HistoryPost:
    """One post of the replayed history: one crash's log text for ``plugin`` at ``version``
    (one post per crash, as a log shipper sends them: identical crashes back to back in one
    text would be flagged as a duplicated block), or (when ``resolve_at`` is set) the
    instruction to mark the groups of timeline entry ``entry``'s earlier posts resolved."""

    entry: int
    plugin: str
    version: str | None = None
    text: str = ""
    crashes: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    resolve_at: float | None = None


def _envoy_time(t: float) -> str:
    dt = datetime.fromtimestamp(t, tz=timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def _event_times(rng: random.Random, start: float, end: float, per_day: tuple[int, int]) -> list[float]:
    out: list[float] = []
    day = start
    while day < end:
        span = min(DAY, end - day)
        n = rng.randint(*per_day)
        n = max(1, round(n * span / DAY)) if span < DAY else n
        out += [day + rng.random() * span for _ in range(n)]
        day += DAY
    return sorted(out)


def timeline_logs(spec: dict[str, Any], dumps: Path, now: float) -> list[HistoryPost]:
    """The posts that replay ``samples/timeline.json`` (see its ``about``) ending at ``now``,
    in the order to post them. Times are pseudo-random but fixed per crash entry."""
    from wasmprof.ingest.logline import LineFormat, format_record
    fmt = LineFormat.ISTIO
    labels = {str(k): str(v) for k, v in (spec.get("labels") or {}).items()}
    posts: list[HistoryPost] = []
    for k, entry in enumerate(spec.get("crashes") or []):
        plugin, dump_name = str(entry["plugin"]), str(entry["dump"])
        dump = (dumps / Path(dump_name).name).read_text(encoding="utf-8").rstrip("\n")
        rng = random.Random(zlib.crc32(f"{plugin}/{dump_name}".encode()))
        thread = str(entry.get("thread") or "24")
        short = plugin.rsplit(".", 1)[-1].replace("-", "_")
        for phase in entry.get("phases") or []:
            if "resolve_days_ago" in phase:
                posts.append(HistoryPost(k, plugin, resolve_at=now - float(phase["resolve_days_ago"]) * DAY))
                continue
            start = now - float(phase["from_days_ago"]) * DAY
            end = now - float(phase["to_days_ago"]) * DAY
            per_day = tuple(int(x) for x in phase.get("per_day") or (1, 1))
            times = _event_times(rng, start, end, (per_day[0], per_day[-1]))
            for t in times:
                lines = [format_record(fmt, f"wasm log {plugin} {short}_root {short}_vm: "
                                       "handling request", timestamp=_envoy_time(t - 0.004),
                                       thread=thread, level="info",
                                       location="source/extensions/common/wasm/context.cc:1157"),
                         format_record(fmt, "Function: proxy_on_request_headers failed: "
                                       f"Exception: {entry['exception']}",
                                       timestamp=_envoy_time(t), thread=thread),
                         dump]
                posts.append(HistoryPost(k, plugin, phase.get("version"), "\n".join(lines) + "\n",
                                         1, dict(labels)))
    return posts


def _post_log(svc: Any, text: str, source: str, plugin: str | None, version: str | None,
              labels: dict[str, str]) -> dict[str, Any]:
    data = text.encode()
    return svc.crashes.ingest_log(io.BytesIO(data), source=source, size=len(data), sha256=None,
                                  plugin=plugin, version=version, labels={**DEMO_LABELS, **labels})


def _mark_resolved(svc: Any, group_ids: set[int], at: float) -> None:
    """Resolve the groups and date the resolution ``at`` (the history's time, not now)."""
    for gid in sorted(group_ids):
        svc.crashes.set_resolved(gid, True)
    with svc.store.db.tx() as tx:
        for gid in sorted(group_ids):
            tx.execute("UPDATE crash_groups SET resolved_at = ? WHERE id = ? AND status = 'resolved'",
                       (at, gid))


def load_history(svc: Any, root: Path, now: float) -> dict[str, Any]:
    """Replay ``root/timeline.json`` (see :func:`timeline_logs`); returns counts."""
    out: dict[str, Any] = {"crashes": 0, "resolved": 0, "errors": []}
    path = root / "timeline.json"
    if not path.is_file():
        return out
    try:
        posts = timeline_logs(orjson.loads(path.read_bytes()), root / "dumps", now)
    except (orjson.JSONDecodeError, OSError, KeyError, TypeError, ValueError) as e:
        out["errors"].append(f"timeline.json: {e}")
        return out
    groups: dict[int, set[int]] = {}
    for post in posts:
        if post.resolve_at is not None:
            gids = groups.get(post.entry, set())
            _mark_resolved(svc, gids, post.resolve_at)
            out["resolved"] += len(gids)
            continue
        res = _post_log(svc, post.text, f"demo-history.{post.plugin}.log", post.plugin,
                        post.version, post.labels)
        groups.setdefault(post.entry, set()).update(g["id"] for g in res["groups"])
        out["crashes"] += res["crashes"]
    return out


def load_samples(svc: Any, root: Path | None = None, *, now: float | None = None) -> dict[str, Any]:
    """Upload modules, replay the crash history, post logs and profiles from ``root``;
    returns what was loaded. ``now``: the time the demo's data ends (default: now)."""
    from wasmprof.store.db import now as db_now
    now = db_now() if now is None else now
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
    for path in sorted(mdir.iterdir(), key=_upload_order) if mdir.is_dir() else []:
        if not path.name.endswith(MODULE_SUFFIXES) or not path.is_file():
            continue
        data = path.read_bytes()
        try:
            for plugin, version in _targets(path.name, mapping):
                svc.upload_module(data, path.name, plugin=plugin, version=version, background=False)
                plugins.add(plugin)
            out["modules"] += 1
        except WasmprofError as e:
            out["errors"].append(str(e))
    history = load_history(svc, root, now - LOG_AGE)
    out["crashes"] += history["crashes"]
    out["resolved"] = history["resolved"]
    out["errors"] += history["errors"]
    ldir = root / "logs"
    for path in sorted(ldir.iterdir()) if ldir.is_dir() else []:
        if not path.is_file() or path.name.startswith("."):
            continue
        entry = mapping.get(path.name) if isinstance(mapping.get(path.name), dict) else {}
        labels = {str(k): str(v) for k, v in (entry.get("labels") or {}).items()}
        text = shift_timestamps(path.read_bytes().decode("utf-8", errors="replace"), now - LOG_AGE)
        versions = entry.get("versions") if isinstance(entry.get("versions"), dict) else None
        if versions:
            parts = split_by_plugin(text, path.name)
        else:
            plugin = entry.get("plugin")
            if plugin is None and path.name.split(".", 1)[0] in plugins:
                plugin = path.name.split(".", 1)[0]
            parts = {plugin: text}
        for plugin, part in parts.items():
            version = versions.get(plugin) if versions else entry.get("version")
            res = _post_log(svc, part, path.name, plugin, version, labels)
            out["crashes"] += res["crashes"]
    sdir = root / "sources"           # plugin sources, shown as context around frames
    if sdir.is_dir():
        from wasmprof.server.routes_web import load_sources_dir
        out["sources"] = load_sources_dir(svc.store, sdir, prefix="/fixtures/src")
    from wasmprof.server.demo_profiles import load_profile_history
    history = load_profile_history(svc, root, now, DEMO_LABELS)
    out["profiles"] += history["batches"]
    out["profile_samples"] = history["samples"]
    out["errors"] += history["errors"]
    pdir = root / "profiles"
    files = sorted(pdir.iterdir()) if pdir.is_dir() else []
    maps = [p for p in files if p.name.endswith(".map")]
    for path in files:
        if not path.is_file() or path.name.endswith((".map", ".md", ".log")) or path.name in history["used"]:
            continue
        plugin, version = _plugin_of(path.name, mapping)
        aux = None
        if "perf-script" in path.name or path.suffix == ".perf":
            stem = path.name.split(".perf-script", 1)[0]
            for m in maps:
                if m.name.startswith(stem):
                    aux = m.read_bytes()
                    break
        labels = dict(DEMO_LABELS)
        if isinstance(mapping.get(path.name), dict):
            labels.update(mapping[path.name].get("labels") or {})
        try:
            svc.profiles.ingest(path.read_bytes(), fmt=None, aux=aux, plugin=plugin,
                                version=version, labels=labels, name=path.name)
            out["profiles"] += 1
        except WasmprofError as e:
            out["errors"].append(str(e))
    try:                                  # plugin health: scrapes of a demo gateway
        from wasmprof.health.demo import load_demo_health
    except ImportError:
        return out
    out["health"] = load_demo_health(svc.db, now=now)
    return out

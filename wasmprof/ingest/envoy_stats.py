"""Envoy admin ``/stats/prometheus`` text → Wasm health samples (issue 17).

Contract: :func:`parse_envoy_stats` takes the Prometheus text exposition an Envoy (upstream,
Istio's proxy or Higress' fork) serves and returns a :class:`StatsReading`: one
:class:`~wasmprof.model.HealthSample` per Wasm series (no timestamps: the caller stamps the
scrape time), plus the Wasm metric names it could not map (never dropped silently). Lines
of other subsystems are skipped by a byte filter before the maintained parser
(``prometheus_client.parser``) sees the text, so a 50 MB stats page costs little. Bad text
raises :class:`~wasmprof.errors.LogFormatError` naming the line.

Names (Envoy turns the stat ``a.b-c`` into ``envoy_a_b_c``; a plugin or thread name with
``.``/``-`` therefore comes back with ``_``):

- ``wasm.<runtime>.{created,active,memory_size}`` (``<runtime>`` is
  ``envoy.wasm.runtime.v8`` etc.): runtime-wide VM counts and memory (plugin ""),
  ``wasm_vm.<runtime>.{created,cloned,active}`` of old Envoy, ``wasm.wasm_vm_count``;
- upstream per plugin (``wasm.<plugin>.``): ``vm_memory_size``, ``vm_reload``,
  ``vm_reload_success``, ``vm_reload_failure``, ``vm_reload_backoff``;
- ``server.uptime`` (the restart signal of the counters);
- Higress per plugin (``wasm.<runtime>.plugin.<plugin>.``): ``crash_total``,
  ``recover_total``, ``rebuild_total``, ``rebuild_memory_total``, ``rebuild_explicit_total``,
  ``recover_error``, the ``crash`` gauge, the ``reclaim_latency`` histogram (its count) and per
  thread ``<thread>.memory_size`` (threads are Envoy's dispatchers: ``main_thread``,
  ``worker_N``).

The ``<plugin>_<thread>`` of a Higress memory gauge is split at a known plugin name (one
that has a counter in the same text), else at a dispatcher-like thread name; when neither
applies the whole is taken as the plugin and the sample says so in ``note``. Labels from
tag extraction (``plugin_name``/``plugin``, ``thread``, ``runtime``) win over names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from wasmprof.errors import LogFormatError
from wasmprof.model import HealthMetric, HealthSample

RUNTIMES = ("v8", "wamr", "wasmtime", "wavm", "null")

#: Lines kept from a stats page: the Wasm subsystem's (``envoy_wasm*`` samples and their
#: TYPE/HELP comments) and the server's uptime (it tells a restart even when a counter
#: climbed back).
_KEEP_PREFIXES = (b"envoy_wasm", b"envoy_server_uptime")
_RUNTIME_PREFIX = re.compile(r"(?:envoy_wasm_runtime_|vm_)?(" + "|".join(RUNTIMES) + r")_(.+)\Z")
_THREAD = re.compile(r"(.+?)_(main_thread|worker_\d+|wrk_\d+|thread_\d+)\Z")

#: runtime-level leaves (after ``wasm.<runtime>.``)
_RUNTIME_LEAVES = {
    "created": HealthMetric.VM_CREATED, "cloned": HealthMetric.VM_CLONED,
    "active": HealthMetric.VM_ACTIVE, "memory_size": HealthMetric.MEMORY_BYTES,
}
#: Higress per-plugin leaves (after ``wasm.<runtime>.plugin.<plugin>.``), longest first
_HIGRESS_LEAVES = (
    ("rebuild_explicit_total", HealthMetric.REBUILDS_EXPLICIT),
    ("rebuild_memory_total", HealthMetric.REBUILDS_MEMORY),
    ("reclaim_latency_count", HealthMetric.RECLAIMS),
    ("recover_total", HealthMetric.RECOVERIES),
    ("rebuild_total", HealthMetric.REBUILDS),
    ("recover_error", HealthMetric.RECOVER_ERRORS),
    ("crash_total", HealthMetric.CRASHES),
    ("memory_size", HealthMetric.MEMORY_BYTES),
    ("crash", HealthMetric.CRASHED),
)
#: Higress leaves read but not mapped to a health series (worker init bookkeeping, histogram
#: buckets and sums)
_HIGRESS_IGNORED = ("reclaim_latency_bucket", "reclaim_latency_sum", "reclaim_latency",
                    "worker_init_retryable_failure_total", "worker_init_terminal_failure_total",
                    "worker_init_retry_total", "worker_init_recovered_total",
                    "worker_fail_open_skip_total", "worker_uninitialized")
#: upstream per-plugin leaves (after ``wasm.<plugin>.``), longest first
_UPSTREAM_LEAVES = (
    ("vm_reload_backoff", HealthMetric.RELOAD_BACKOFFS),
    ("vm_reload_success", None),             # successes are reloads minus failures
    ("vm_reload_failure", HealthMetric.RELOAD_FAILURES),
    ("vm_memory_size", HealthMetric.MEMORY_BYTES),
    ("vm_reload", HealthMetric.REBUILDS),
)
#: ``wasm.*`` stats that are not about a plugin's or VM's health
_GLOBAL_IGNORED = frozenset({
    "remote_load_cache_hits", "remote_load_cache_negative_hits", "remote_load_cache_misses",
    "remote_load_fetch_successes", "remote_load_fetch_failures", "remote_load_cache_entries"})
_PLUGIN_LABELS = ("plugin_name", "plugin", "wasm_plugin", "wasm_plugin_name")
_THREAD_LABELS = ("thread", "thread_name", "worker", "dispatcher")
_RUNTIME_LABELS = ("runtime", "wasm_runtime")


@dataclass(slots=True)
class StatsReading:
    """What one stats page said about Wasm: samples, names not understood, and how much text
    was looked at (``wasm_lines`` of ``total_bytes``)."""

    samples: list[HealthSample] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    wasm_lines: int = 0
    total_bytes: int = 0

    @property
    def plugins(self) -> list[str]:
        return sorted({s.plugin for s in self.samples if s.plugin})


def wasm_lines(text: bytes) -> bytes:
    """Only the ``envoy_wasm*`` samples and their TYPE/HELP lines of a stats page (and
    ``envoy_server_uptime``), in page order. Found with ``bytes.find`` (C speed) and kept only
    when the line's metric name starts with the prefix (not a label value mentioning it)."""
    keep: list[tuple[int, bytes]] = []
    n = len(text)
    for needle in _KEEP_PREFIXES:
        heads = (needle, b"# TYPE " + needle, b"# HELP " + needle)
        pos = 0
        while True:
            i = text.find(needle, pos)
            if i < 0:
                break
            start = text.rfind(b"\n", 0, i) + 1
            end = text.find(b"\n", i)
            end = n if end < 0 else end + 1
            line = text[start:end]
            if line.startswith(heads) and (needle != b"envoy_server_uptime"
                                           or line[line.find(needle) + len(needle):][:1] in b"{ "):
                keep.append((start, line if line.endswith(b"\n") else line + b"\n"))
            pos = end
    keep.sort(key=lambda x: x[0])
    return b"".join(line for _, line in keep)


def parse_envoy_stats(text: bytes | str, *, source: str = "stats") -> StatsReading:
    """Map the Wasm metrics of a Prometheus text page to health samples (see the module
    docstring). Raises :class:`LogFormatError` when the Wasm part is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    raw = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    kept = wasm_lines(raw)
    reading = StatsReading(total_bytes=len(raw), wasm_lines=kept.count(b"\n"))
    pending: list[tuple[str, str, dict[str, str], float]] = []
    try:
        for fam in text_string_to_metric_families(kept.decode("utf-8", "replace")):
            for s in fam.samples:
                value = float(s.value)
                if value == value and abs(value) != float("inf"):     # NaN/Inf carry nothing
                    pending.append((s.name, fam.type, dict(s.labels), value))
    except (ValueError, TypeError, IndexError) as e:
        raise LogFormatError(f"not Prometheus text: {e}", source=source,
                             expected="Envoy /stats/prometheus output",
                             found=_first_bad_line(kept)) from None
    known_plugins: dict[str, set[str]] = {}      # runtime -> plugins with a counter/gauge leaf
    parsed: list[tuple[_Name, dict[str, str], float, str]] = []
    for name, kind, labels, value in pending:
        n = _classify(name, kind)
        if n is None:
            if name not in reading.unmapped and len(reading.unmapped) < 50:
                reading.unmapped.append(name)
            continue
        if n.metric is None:
            continue
        if n.split_pending is None and n.plugin:
            known_plugins.setdefault(n.runtime, set()).add(n.plugin)
        parsed.append((n, labels, value, name))
    merged: dict[tuple[str, str, str, HealthMetric], HealthSample] = {}
    for n, labels, value, name in parsed:
        plugin, thread, note = n.plugin, n.thread, None
        if n.split_pending is not None:
            plugin, thread, note = _split_plugin_thread(n.split_pending,
                                                        known_plugins.get(n.runtime, set()))
        plugin = _label(labels, _PLUGIN_LABELS) or plugin
        thread = _label(labels, _THREAD_LABELS) or thread
        runtime = _short_runtime(_label(labels, _RUNTIME_LABELS)) or n.runtime
        key = (plugin, runtime, thread, n.metric)
        if key in merged:                       # same series under other labels: add up
            merged[key].value += value
            merged[key].note = "summed over samples with other labels"
            continue
        merged[key] = HealthSample(metric=n.metric, value=value, plugin=plugin, runtime=runtime,
                                   thread=thread, name=name, note=note)
    reading.samples = list(merged.values())
    return reading


@dataclass(slots=True)
class _Name:
    metric: HealthMetric | None        # None: a known name that is not a health series
    plugin: str = ""
    runtime: str = ""
    thread: str = ""
    split_pending: str | None = None   # "<plugin>_<thread>" still to be split


def _classify(name: str, kind: str) -> _Name | None:
    """Which series a sample name belongs to; None when it is a Wasm name we do not know."""
    if name == "envoy_server_uptime":
        return _Name(HealthMetric.UPTIME_SECONDS)
    if not name.startswith("envoy_wasm_"):
        return None
    for rest in _candidates(name[len("envoy_wasm_"):], kind):
        if rest in _GLOBAL_IGNORED:
            return _Name(None)
        if rest == "wasm_vm_count":
            return _Name(HealthMetric.VM_ACTIVE)
        m = _RUNTIME_PREFIX.match(rest)
        if m:
            runtime, leaf = m.group(1), m.group(2)
            if leaf in _RUNTIME_LEAVES:
                return _Name(_RUNTIME_LEAVES[leaf], runtime=runtime)
            if leaf.startswith("plugin_"):
                got = _higress(leaf[len("plugin_"):], runtime)
                if got is not None:
                    return got
        for suffix, metric in _UPSTREAM_LEAVES:
            if rest.endswith("_" + suffix) and len(rest) > len(suffix) + 1:
                return _Name(metric, plugin=rest[:-len(suffix) - 1])
    return None


def _candidates(rest: str, kind: str) -> tuple[str, ...]:
    """The stat as Envoy named it. ``prometheus_client`` appends ``_total`` to every counter
    sample name that lacks it, so a counter ``…_created`` arrives as ``…_created_total``."""
    if kind == "counter" and rest.endswith("_total"):
        return (rest, rest[:-len("_total")])
    return (rest,)


def _higress(rest: str, runtime: str) -> _Name | None:
    for leaf in _HIGRESS_IGNORED:
        if rest.endswith("_" + leaf) and len(rest) > len(leaf) + 1:
            return _Name(None)
    for leaf, metric in _HIGRESS_LEAVES:
        if rest == leaf:                     # tag extraction took the plugin into a label
            return _Name(metric, runtime=runtime)
        if not rest.endswith("_" + leaf) or len(rest) <= len(leaf) + 1:
            continue
        head = rest[:-len(leaf) - 1]
        if metric is HealthMetric.MEMORY_BYTES:
            return _Name(metric, runtime=runtime, split_pending=head)
        return _Name(metric, plugin=head, runtime=runtime)
    return None


def _split_plugin_thread(head: str, known: set[str]) -> tuple[str, str, str | None]:
    """``key_auth_worker_0`` → (``key_auth``, ``worker_0``). A plugin known from other
    metrics wins (longest first); then a dispatcher-like thread name; else the whole is
    the plugin and the note says the thread could not be told apart."""
    for plugin in sorted(known, key=len, reverse=True):
        if head.startswith(plugin + "_") and len(head) > len(plugin) + 1:
            return plugin, head[len(plugin) + 1:], None
    m = _THREAD.match(head)
    if m:
        return m.group(1), m.group(2), "thread split by its name (no other metric names the plugin)"
    return head, "", f"could not split plugin and thread in {head!r}: taken as the plugin"


def _label(labels: dict[str, str], keys: tuple[str, ...]) -> str:
    for k in keys:
        v = labels.get(k)
        if v:
            return v
    return ""


def _short_runtime(value: str) -> str:
    v = value.lower().replace("envoy.wasm.runtime.", "").replace("envoy_wasm_runtime_", "")
    return v if v in RUNTIMES else (value if value else "")


def _first_bad_line(text: bytes) -> str:
    from prometheus_client.parser import text_string_to_metric_families
    for line in text.decode("utf-8", "replace").splitlines()[:10000]:
        if line.startswith("#") or not line.strip():
            continue
        try:
            list(text_string_to_metric_families(line + "\n"))
        except (ValueError, TypeError, IndexError):
            return repr(line[:120])
    return "unparsable text"


def sanitize(name: str) -> str:
    """The form Envoy's Prometheus output gives a name: every character outside
    ``[A-Za-z0-9_]`` becomes ``_`` (used to match stats plugin names to known plugins)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)

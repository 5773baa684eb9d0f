"""Process-local Prometheus metrics (text exposition format 0.0.4), no dependency.

Counters: ingest requests/bytes per kind, crash events, samples, HTTP responses per status
class, rate-limit rejections, module index cache hits/misses (read from the registry).
Histogram: symbolization latency (per crash) and request latency. Gauge: background
queue depth. Each replica exposes its own numbers; Prometheus sums them. ``collectors``
add labelled series computed at render time (e.g. per-plugin health from the database):
each is a callable returning ``(name, type, help, labels, value)`` tuples.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_HELP = {
    "wasmprof_ingest_requests_total": ("counter", "Ingest requests accepted, by kind"),
    "wasmprof_ingest_bytes_total": ("counter", "Bytes accepted by ingest endpoints, by kind"),
    "wasmprof_crash_events_total": ("counter", "Crash events stored"),
    "wasmprof_samples_total": ("counter", "Profile samples stored"),
    "wasmprof_http_responses_total": ("counter", "HTTP responses by status class"),
    "wasmprof_rate_limited_total": ("counter", "Requests answered 429"),
    "wasmprof_module_cache_hits_total": ("counter", "Parsed-module cache hits"),
    "wasmprof_module_cache_misses_total": ("counter", "Parsed-module cache misses (loads)"),
    "wasmprof_index_jobs_total": ("counter", "Background module index jobs, by outcome"),
    "wasmprof_queue_depth": ("gauge", "Background jobs waiting"),
    "wasmprof_symbolize_seconds": ("histogram", "Symbolization latency per crash"),
    "wasmprof_request_seconds": ("histogram", "HTTP request latency"),
}


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    parts = []
    for k, v in sorted(labels.items()):
        v = str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{k}="{v}"')
    return "{" + ",".join(parts) + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], float] = {}
        self._hist: dict[tuple[str, str], list[float]] = {}   # buckets..., sum, count
        self.gauges: dict[str, Callable[[], float]] = {}
        self.external: dict[str, Callable[[], float]] = {}
        self.collectors: list[Callable[[], list[tuple[str, str, str, dict[str, str], float]]]] = []

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = (f"wasmprof_{name}_total", _labels(labels))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (f"wasmprof_{name}_seconds", _labels(labels))
        with self._lock:
            h = self._hist.get(key)
            if h is None:
                h = self._hist[key] = [0.0] * (len(_BUCKETS) + 2)
            for i, b in enumerate(_BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def counter_value(self, name: str, **labels: str) -> float:
        return self._counters.get((f"wasmprof_{name}_total", _labels(labels)), 0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            counters = dict(self._counters)
            hist = {k: list(v) for k, v in self._hist.items()}
        for name, fn in self.external.items():
            counters[(name, "")] = fn()
        names = sorted({n for n, _ in counters} | {n for n, _ in hist} | set(self.gauges))
        for name in names:
            kind, help_ = _HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            if name in self.gauges:
                lines.append(f"{name} {self.gauges[name]():g}")
            for (n, lab), v in sorted(counters.items()):
                if n == name:
                    lines.append(f"{n}{lab} {v:g}")
            for (n, lab), h in sorted(hist.items()):
                if n != name:
                    continue
                inner = lab[1:-1] + "," if lab else ""
                for i, b in enumerate(_BUCKETS):
                    lines.append(f'{n}_bucket{{{inner}le="{b:g}"}} {h[i]:g}')
                lines.append(f'{n}_bucket{{{inner}le="+Inf"}} {h[-1]:g}')
                lines.append(f"{n}_sum{lab} {h[-2]:.6f}")
                lines.append(f"{n}_count{lab} {h[-1]:g}")
        lines += self._collected()
        return "\n".join(lines) + "\n"

    def _collected(self) -> list[str]:
        by_name: dict[str, tuple[str, str, list[str]]] = {}
        for collect in list(self.collectors):
            try:
                rows = collect()
            except Exception:  # noqa: BLE001 - /metrics must answer even if a collector fails
                continue
            for name, kind, help_, labels, value in rows:
                entry = by_name.setdefault(name, (kind, help_, []))
                text = str(int(value)) if float(value).is_integer() else repr(float(value))
                entry[2].append(f"{name}{_labels(labels)} {text}")
        out: list[str] = []
        for name in sorted(by_name):
            kind, help_, samples = by_name[name]
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]
        return out

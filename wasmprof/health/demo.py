"""Plugin health data for ``wasmprof serve --demo``: six hours of scrapes of one Higress
gateway, written as Envoy's Prometheus handler writes its Wasm stats and read back through
the real parser (:func:`wasmprof.ingest.envoy_stats.parse_envoy_stats`) and store, so the
dashboard's Health page and the overview's ranking have something true to show:

- ``higress-system.crash-oob`` leaks: +1 page (64 KiB) per worker every 4 minutes;
- ``higress-system.inline-chain`` crash-loops in the last 40 minutes (a crash, a recovery
  and a VM rebuild about every 3 minutes, at most one per scrape; memory starts over each
  time);
- ``higress-system.bot-detect`` warms up for 20 minutes, then stays flat;
- ``higress-system.hmac-auth`` stays flat;
- the gateway restarted 4 hours ago: its counters start over (the series show the reset).

The checker then runs once, so the leak and the crash loop are open alert episodes.
"""

from __future__ import annotations

import re
from typing import Any

PAGE = 65536
GATEWAY = "demo:higress-gateway-6c8d9f-x2k4q"
RUNTIME = "wasm.envoy.wasm.runtime.v8"
THREADS = ("worker_0", "worker_1")


def _name(stat: str) -> str:
    return "envoy_" + re.sub(r"[^A-Za-z0-9_]", "_", stat)


def _page(state: dict[str, dict[str, Any]], uptime: int, created: int) -> bytes:
    out: list[str] = []

    def emit(stat: str, kind: str, value: int) -> None:
        out.append(f"# TYPE {_name(stat)} {kind}")
        out.append(f"{_name(stat)}{{}} {value}")
    emit("server.uptime", "gauge", uptime)
    emit(f"{RUNTIME}.created", "counter", created)
    emit(f"{RUNTIME}.active", "gauge", len(state) * len(THREADS))
    for plugin, s in state.items():
        base = f"{RUNTIME}.plugin.{plugin}"
        for leaf in ("crash_total", "recover_total", "rebuild_total"):
            emit(f"{base}.{leaf}", "counter", s[leaf])
        emit(f"{base}.crash", "gauge", 0)
        for t in THREADS:
            emit(f"{base}.{t}.memory_size", "gauge", s["pages"][t] * PAGE)
    return ("\n".join(out) + "\n").encode()


def load_demo_health(db: Any, *, now: float, hours: float = 6.0, step: float = 120.0) -> dict[str, Any]:
    """Store the demo gateway's scrapes ending at ``now``; returns counts."""
    from wasmprof.health import store
    from wasmprof.health.checks import HealthChecker

    plugins = ("higress-system.crash-oob", "higress-system.inline-chain",
               "higress-system.bot-detect", "higress-system.hmac-auth")

    def fresh() -> dict[str, dict[str, Any]]:
        return {p: {"crash_total": 0, "recover_total": 0, "rebuild_total": 0,
                    "pages": {t: 18 for t in THREADS}} for p in plugins}
    state = fresh()
    n = int(hours * 3600 / step)
    start = now - n * step
    restart_at = n - int(4 * 3600 / step)
    uptime, created = 7 * 86400, len(plugins) * len(THREADS)
    names = store.PluginNames(db)
    with db.tx():                  # one commit for all scrapes (record() joins it)
        points = _scrapes(db, state, fresh, n, start, restart_at, uptime, created, names, step)
    checked = HealthChecker(db, names=names, alert=lambda *a, **k: []).run(now)
    return {"scrapes": n + 1, "points": points, "alerts": len(checked.fired)}


def _scrapes(db: Any, state: dict, fresh: Any, n: int, start: float, restart_at: int,
             uptime: int, created: int, names: Any, step: float = 60.0) -> int:
    from wasmprof.health import store
    from wasmprof.ingest.envoy_stats import parse_envoy_stats
    plugins = tuple(state)
    points = 0
    for i in range(n + 1):
        t = start + i * step
        minute = int(i * step // 60)
        if i == restart_at:
            state, uptime, created = fresh(), 5, len(plugins) * len(THREADS)
        leak = state["higress-system.crash-oob"]["pages"]
        if minute % 4 == 0:
            for th in THREADS:
                leak[th] += 1
        bot = state["higress-system.bot-detect"]["pages"]
        if i - max(restart_at, 0) < 20 and i >= restart_at:
            for th in THREADS:
                bot[th] = 18 + (i - restart_at)
        if i > n - int(40 * 60 / step) and i % max(1, int(180 / step)) == 0:
            s = state["higress-system.inline-chain"]
            s["crash_total"] += 1
            s["recover_total"] += 1
            s["rebuild_total"] += 1
            s["pages"] = {th: 18 for th in THREADS}
            created += 1
        reading = parse_envoy_stats(_page(state, uptime, created), source=GATEWAY)
        points += store.record(db, reading.samples, source=GATEWAY, origin="envoy", ts=t,
                               names=names).points
        uptime += int(step)
    return points

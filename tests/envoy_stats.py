"""A stand-in for an Envoy admin ``/stats/prometheus`` endpoint (no Envoy binary here).

:class:`Gateway` holds the state of one gateway's Wasm plugins (per-thread linear memory,
crash/recover/rebuild counters, VM counts) and renders the text Envoy's Prometheus handler
writes for it, in the shapes of ``../shared/docs/field.md``:

- ``flavor="higress"``: ``wasm.<runtime>.plugin.<name>.{crash_total,recover_total,
  rebuild_total,…}``, the ``crash`` gauge, the ``reclaim_latency`` histogram and per thread
  ``<thread>.memory_size``, plus ``wasm.<runtime>.{created,active}``;
- ``flavor="upstream"``: ``wasm.<runtime>.{created,active,memory_size}`` and per plugin
  ``wasm.<name>.{vm_memory_size,vm_reload,vm_reload_success,vm_reload_failure,
  vm_reload_backoff}``.

Names are written as Envoy does (``envoy_`` + the stat with every character outside
``[A-Za-z0-9_]`` turned into ``_``; ``# TYPE`` once per name; ``{}`` for untagged samples),
between ``noise_clusters`` clusters' worth of other metrics whose values change on every
render (never one repeated block). ``restart()`` zeroes every counter, as a restarted Envoy
does. :class:`StatsServer` serves ``gateway.render()`` from a real HTTP server on loopback;
``fail`` makes it answer an HTTP error or hang.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNTIME = "envoy.wasm.runtime.v8"
PAGE = 65536


def prom(name: str) -> str:
    return "envoy_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


@dataclass
class Plugin:
    name: str
    threads: list[str] = field(default_factory=lambda: ["worker_0", "worker_1"])
    memory: dict[str, int] = field(default_factory=dict)
    crashes: int = 0
    recovers: int = 0
    rebuilds: int = 0
    rebuilds_memory: int = 0
    recover_errors: int = 0
    crashed: int = 0
    reloads: int = 0
    reload_failures: int = 0
    reclaims: int = 0

    def __post_init__(self) -> None:
        for t in self.threads:
            self.memory.setdefault(t, 16 * PAGE)


@dataclass
class Gateway:
    flavor: str = "higress"
    plugins: dict[str, Plugin] = field(default_factory=dict)
    noise_clusters: int = 20
    created: int = 0
    seed: int = 1

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._renders = 0
        self._lock = threading.Lock()
        self.uptime = 1000           # seconds; advance with tick(), restart() sets it to 1

    def add(self, name: str, **kw) -> Plugin:
        p = self.plugins[name] = Plugin(name, **kw)
        self.created += len(p.threads)
        return p

    def grow(self, name: str, pages: int = 1, thread: str | None = None) -> None:
        p = self.plugins[name]
        for t in ([thread] if thread else p.threads):
            p.memory[t] += pages * PAGE

    def crash(self, name: str) -> None:
        """A VM crash that Higress recovers by rebuilding the VM (memory starts over)."""
        p = self.plugins[name]
        p.crashes += 1
        p.rebuilds += 1
        p.recovers += 1
        p.reloads += 1
        self.created += 1
        for t in p.threads:
            p.memory[t] = 16 * PAGE

    def tick(self, seconds: float) -> None:
        self.uptime += int(seconds)

    def restart(self) -> None:
        """Envoy restarted: counters start from zero, VMs are new."""
        self.uptime = 1
        self.created = 0
        for p in self.plugins.values():
            p.crashes = p.recovers = p.rebuilds = p.rebuilds_memory = p.recover_errors = 0
            p.reloads = p.reload_failures = p.reclaims = 0
            p.crashed = 0
            self.created += len(p.threads)
            for t in p.threads:
                p.memory[t] = 16 * PAGE

    # -- text ---------------------------------------------------------------------------
    def render(self) -> bytes:
        with self._lock:
            self._renders += 1
            out: list[str] = []
            self._noise(out, self.noise_clusters // 2)
            self._emit(out, "server.uptime", "gauge", self.uptime)
            if self.flavor == "higress":
                self._higress(out)
            else:
                self._upstream(out)
            self._emit(out, "wasm.remote_load_cache_hits", "counter", 0)
            self._emit(out, "wasm.remote_load_cache_entries", "gauge", len(self.plugins))
            self._noise(out, self.noise_clusters - self.noise_clusters // 2)
            return ("\n".join(out) + "\n").encode()

    def _emit(self, out: list[str], stat: str, kind: str, value: float, labels: str = "") -> None:
        name = prom(stat)
        out.append(f"# TYPE {name} {kind}")
        text = str(int(value)) if float(value).is_integer() else repr(float(value))
        out.append(f"{name}{{{labels}}} {text}")

    def _higress(self, out: list[str]) -> None:
        rt = f"wasm.{RUNTIME}"
        self._emit(out, f"{rt}.created", "counter", self.created)
        self._emit(out, f"{rt}.active", "gauge", sum(len(p.threads) for p in self.plugins.values()))
        for p in self.plugins.values():
            base = f"{rt}.plugin.{p.name}"
            for leaf, v in (("recover_total", p.recovers), ("rebuild_total", p.rebuilds),
                            ("rebuild_memory_total", p.rebuilds_memory),
                            ("rebuild_explicit_total", 0), ("crash_total", p.crashes),
                            ("recover_error", p.recover_errors)):
                self._emit(out, f"{base}.{leaf}", "counter", v)
            self._emit(out, f"{base}.crash", "gauge", p.crashed)
            name = prom(f"{base}.reclaim_latency")
            out.append(f"# TYPE {name} histogram")
            for le in ("0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "+Inf"):
                out.append(f'{name}_bucket{{le="{le}"}} {p.reclaims if le in ("50", "100", "250", "500", "1000", "+Inf") else 0}')
            out.append(f"{name}_sum{{}} {p.reclaims * 42.5!r}")
            out.append(f"{name}_count{{}} {p.reclaims}")
            for t in p.threads:
                self._emit(out, f"{base}.{t}.memory_size", "gauge", p.memory[t])

    def _upstream(self, out: list[str]) -> None:
        rt = f"wasm.{RUNTIME}"
        self._emit(out, f"{rt}.created", "counter", self.created)
        self._emit(out, f"{rt}.active", "gauge", sum(len(p.threads) for p in self.plugins.values()))
        self._emit(out, f"{rt}.memory_size", "gauge",
                   sum(sum(p.memory.values()) for p in self.plugins.values()))
        self._emit(out, "wasm.wasm_vm_count", "gauge", sum(len(p.threads) for p in self.plugins.values()))
        for p in self.plugins.values():
            base = f"wasm.{p.name}"
            self._emit(out, f"{base}.vm_memory_size", "gauge", sum(p.memory.values()))
            self._emit(out, f"{base}.vm_reload", "counter", p.reloads)
            self._emit(out, f"{base}.vm_reload_success", "counter", p.reloads - p.reload_failures)
            self._emit(out, f"{base}.vm_reload_failure", "counter", p.reload_failures)
            self._emit(out, f"{base}.vm_reload_backoff", "counter", 0)

    def _noise(self, out: list[str], clusters: int) -> None:
        r = self._rng
        n = self._renders
        for metric, kind in (("upstream_cx_total", "counter"), ("upstream_rq_total", "counter"),
                             ("upstream_cx_active", "gauge"), ("upstream_rq_pending_active", "gauge"),
                             ("upstream_cx_rx_bytes_total", "counter"), ("membership_healthy", "gauge")):
            name = f"envoy_cluster_{metric}"
            out.append(f"# TYPE {name} {kind}")
            for c in range(clusters):
                v = n * (c + 1) * 7 + r.randrange(1000) if kind == "counter" else r.randrange(50)
                out.append(f'{name}{{envoy_cluster_name="outbound|8{c % 10}||svc-{c}.ns-{c % 7}.svc.cluster.local"}} {v}')


class StatsServer:
    """``GET /stats/prometheus`` → ``gateway.render()`` on 127.0.0.1. ``fail`` = None (ok),
    an HTTP status to answer, or ``"hang"`` (sleep ``hang_seconds`` before answering)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.fail: int | str | None = None
        self.hang_seconds = 5.0
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/stats/prometheus"

    def start(self) -> StatsServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.requests += 1
                if owner.fail == "hang":
                    time.sleep(owner.hang_seconds)
                if isinstance(owner.fail, int):
                    body = b"admin unavailable\n"
                    self.send_response(owner.fail)
                else:
                    body = owner.gateway.render()
                    self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         kwargs={"poll_interval": 0.05}).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StatsServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def memory_block(*, uptime: float, tid: str = "7F3A2C1FE640", memories: int, total: int | None = None,
                 app_heap_used: int = 0, stack_used: int = 2792, aot: bool = True,
                 native_stack: bool = True) -> str:
    """A WAMR ``Memory consumption summary`` block as ``wasm_runtime_dump_mem_consumption``
    prints it, every line with the ``bh_log`` prefix ``[HH:MM:SS:mmm - TID]: ``."""
    t = int(uptime) % 86400
    ms = int(round((uptime - int(uptime)) * 1000)) % 1000
    prefix = f"[{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}:{ms:03d} - {tid}]: "
    module = [("module struct", 304), ("types", 532), ("imports", 1332), ("funcs", 13579),
              ("tables", 168), ("memories", 16), ("globals", 96), ("exports", 72),
              ("table segs", 44), ("data segs", 80), ("const strings", 0)]
    if aot:
        module.append(("aot code", 40960))
    mod_total = sum(v for _, v in module)
    inst = [("module inst struct", 668), ("memories", memories), ("tables", 4),
            ("functions", 6440), ("globals", 96), ("exports", 24)]
    inst_total = sum(v for _, v in inst)
    env_total = 1704 + 32768
    total = total if total is not None else mod_total + inst_total + env_total
    lines = ["", "Memory consumption summary (bytes):",
             f"WASM module memory consumption, total size: {mod_total}"]
    lines += [f"    {k} size: {v}" for k, v in module]
    lines.append(f"WASM module inst memory consumption, total size: {inst_total}")
    for k, v in inst:
        lines.append(f"    {k} size: {v}")
        if k == "memories":
            lines.append("        app heap size: 0")
    lines += [f"Exec env memory consumption, total size: {env_total}",
              "    exec env struct size: 1704", "        block addr cache size: 1536",
              "    stack size: 32768", "",
              f"Total memory consumption of module, module inst and exec env: {total}",
              f"Total interpreter stack used: {stack_used}",
              "Total aux stack used: no enough info to profile"]
    if native_stack:
        lines.append("Native stack left: 245760")
    lines.append(f"Total app heap used: {app_heap_used}")
    return "".join(prefix + line + "\n" for line in lines)

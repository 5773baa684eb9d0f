"""WAMR ``Memory consumption summary (bytes):`` blocks in logs (issue 17).

WAMR built with memory profiling prints this block from ``wasm_runtime_dump_mem_consumption``
(``core/iwasm/common/wasm_runtime_common.c``), one ``os_printf`` per line, to the process's
stdout (outside Envoy's log format, so other threads' lines can come in between)::

    Memory consumption summary (bytes):
    WASM module memory consumption, total size: 16223
        module struct size: 304
        ...                                   (types, imports, funcs, …, aot code)
    WASM module inst memory consumption, total size: 72972
        module inst struct size: 668
        memories size: 65740                  <- the instance's linear memory
            app heap size: 0
        ...
    Exec env memory consumption, total size: 34472
        exec env struct size: 1704
        stack size: 32768

    Total memory consumption of module, module inst and exec env: 123667
    Total interpreter stack used: 2792
    Total auxiliary stack used: 2480          (or "Total aux stack used: no enough info …")
    Native stack left: 12345                  (WAMR >= 1.3; or "… no enough info …")
    Total app heap used: 0                    <- last line

Each line may carry WAMR's ``bh_log`` prefix ``[HH:MM:SS:mmm - TID]: `` (time since boot
modulo 24 h, thread id in hex), and any envelope :func:`wasmprof.ingest.logline.parse_line`
knows (Envoy, Istio, a container-runtime prefix) around that. Blocks of different TIDs may
interleave; lines of other output inside a block are skipped (at most :data:`MAX_FOREIGN`).

Contract: :class:`MemoryBlockScanner` is fed chunks that end at line ends (constant memory;
a byte search skips text without a block), and :func:`parse_memory_blocks` does the same for
a whole text. Neither raises on damaged input: a cut block is returned with ``partial=True``
and its ``notes``. :func:`block_samples` turns blocks into health samples (parsers never
look anything up: the plugin comes from a ``wasm log <plugin> …`` record just before the
block, else from the caller).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from wasmprof.ingest.logline import decode, parse_line
from wasmprof.model import HealthMetric, HealthSample

HEADER = "Memory consumption summary (bytes):"
TRIGGER = b"consumption summary (bytes)"
MAX_FOREIGN = 64          # other lines tolerated inside one open block
LOOKBACK = 16 * 1024      # bytes before a header searched for its plugin and time
PLUGIN_LINES = 5          # a `wasm log <plugin>` record at most this many lines before

_BH_PREFIX = re.compile(r"\[(\d\d):(\d\d):(\d\d):(\d{3}) - ([0-9A-Fa-f]{1,16})\]: ?")
_ISO_PREFIX = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)) ")
_SECTION = re.compile(r"(WASM module|WASM module inst|Exec env) memory consumption, "
                      r"total size: (\d{1,20})\s*\Z")
_FIELD = re.compile(r"\s+([a-z][a-z ]{1,40}?) size: (\d{1,20})\s*\Z")
_TOTAL = re.compile(r"(Total memory consumption of module, module inst and exec env"
                    r"|Total interpreter stack used|Total auxiliary stack used|Total aux stack used"
                    r"|Native stack left|Total app heap used): (-?\d{1,20}|no enough info to profile)"
                    r"\s*\Z")
_SECTIONS = {"WASM module": "module", "WASM module inst": "instance", "Exec env": "exec_env"}
_TOTAL_KEYS = {
    "Total memory consumption of module, module inst and exec env": "total",
    "Total interpreter stack used": "interp_stack_used",
    "Total auxiliary stack used": "aux_stack_used", "Total aux stack used": "aux_stack_used",
    "Native stack left": "native_stack_left", "Total app heap used": "app_heap_used",
}


@dataclass(slots=True)
class WamrMemoryBlock:
    """One memory-consumption block. Sizes in bytes; ``None`` when the block lacked the line.

    ``sections`` maps ``module``/``instance``/``exec_env`` to ``{"total": N, "<field>": N}``
    (fields as WAMR names them: ``memories``, ``app heap``, ``stack``, …). ``timestamp`` is
    the envelope time of the header line (ISO/Envoy text) when it had one, else the time of
    the last Envoy record before it (``time_note`` says which). ``uptime`` is the ``bh_log``
    prefix time (seconds since boot, modulo a day); ``tid`` its thread id. ``plugin`` is set
    when a ``wasm log <plugin> …`` record came just before the block (``plugin_note``).
    """

    line: int
    tid: str | None = None
    uptime: float | None = None
    timestamp: str | None = None
    time_note: str | None = None
    plugin: str | None = None
    plugin_note: str | None = None
    sections: dict[str, dict[str, int]] = field(default_factory=dict)
    totals: dict[str, int | None] = field(default_factory=dict)
    lines: int = 1
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    _section: str | None = None
    _foreign: int = 0

    @property
    def linear_memory(self) -> int | None:
        """The instance's ``memories size``: its linear memory (app heap included)."""
        return self.sections.get("instance", {}).get("memories")

    @property
    def complete(self) -> bool:
        return "app_heap_used" in self.totals

    def to_dict(self) -> dict:
        return {"line": self.line, "tid": self.tid, "uptime": self.uptime,
                "timestamp": self.timestamp, "time_note": self.time_note, "plugin": self.plugin,
                "plugin_note": self.plugin_note, "sections": self.sections,
                "totals": self.totals, "linear_memory": self.linear_memory,
                "partial": self.partial, "notes": list(self.notes)}


def _strip(text: str) -> tuple[str, str | None, str | None, float | None]:
    """(message, envelope timestamp, bh_log tid, bh_log uptime seconds) of one line."""
    ts = None
    m = _ISO_PREFIX.match(text)
    if m:
        ts, text = m.group(1), text[m.end():]
    ll = parse_line(text)
    msg = ll.message
    ts = ll.timestamp or ts
    tid = uptime = None
    b = _BH_PREFIX.match(msg) or _BH_PREFIX.search(msg, 0, 120)
    if b:
        h, mi, s, ms = (int(b.group(i)) for i in range(1, 5))
        uptime = h * 3600 + mi * 60 + s + ms / 1000.0
        tid = b.group(5).upper()
        msg = msg[b.end():]
    return msg, ts, tid, uptime


class MemoryBlockParser:
    """Line-level state machine; several blocks (one per TID) may be open at once."""

    def __init__(self) -> None:
        self.open: dict[str | None, WamrMemoryBlock] = {}
        self.done: list[WamrMemoryBlock] = []

    @property
    def idle(self) -> bool:
        return not self.open

    def feed(self, text: str, lineno: int, *, context: tuple[str | None, str | None, str | None]
             = (None, None, None)) -> None:
        """One physical line (decoded, no line end). ``context`` = (plugin, plugin note,
        time of the last Envoy record) found before a header (used when it starts a block)."""
        msg, ts, tid, uptime = _strip(text)
        body = msg.rstrip()
        if body.endswith(HEADER):
            prev = self.open.pop(tid, None)
            if prev is not None:
                self._close(prev, "a new block started before this one ended")
            plugin, pnote, ctx_ts = context
            blk = WamrMemoryBlock(line=lineno, tid=tid, uptime=uptime, timestamp=ts or ctx_ts,
                                  plugin=plugin, plugin_note=pnote)
            if ts:
                blk.time_note = "time of the header line"
            elif ctx_ts:
                blk.time_note = "time of the last Envoy record before the block"
            self.open[tid] = blk
            return
        blk = self.open.get(tid)
        if blk is None and len(self.open) == 1:
            only_tid, only = next(iter(self.open.items()))
            if only_tid is None or tid is None:     # one side printed without the prefix
                blk = only
        if blk is None:
            return                                  # another thread's line
        if self._line(blk, body):
            blk.lines += 1
            blk._foreign = 0
            if blk.complete:
                self._finish(blk)
            return
        if not body.strip():
            return
        blk._foreign += 1
        if blk._foreign > MAX_FOREIGN:
            self._close(blk, f"more than {MAX_FOREIGN} other lines inside the block")

    def _line(self, blk: WamrMemoryBlock, body: str) -> bool:
        m = _SECTION.match(body)
        if m:
            blk._section = _SECTIONS[m.group(1)]
            blk.sections.setdefault(blk._section, {})["total"] = int(m.group(2))
            return True
        m = _FIELD.match(body)
        if m and blk._section is not None:
            blk.sections[blk._section][m.group(1).strip()] = int(m.group(2))
            return True
        m = _TOTAL.match(body)
        if m:
            key = _TOTAL_KEYS[m.group(1)]
            val = m.group(2)
            blk.totals[key] = None if val.startswith("no ") else int(val)
            blk._section = None
            return True
        return False

    def _finish(self, blk: WamrMemoryBlock) -> None:
        for k, b in list(self.open.items()):
            if b is blk:
                del self.open[k]
        self.done.append(blk)

    def _close(self, blk: WamrMemoryBlock, why: str) -> None:
        blk.partial = True
        blk.notes.append(f"block cut short: {why}")
        self._finish(blk)

    def finish(self) -> None:
        for blk in list(self.open.values()):
            self._close(blk, "the input ended")

    def drain(self) -> list[WamrMemoryBlock]:
        out, self.done = self.done, []
        return out


class MemoryBlockScanner:
    """Feed chunks that end at line ends (``feed``), then ``finish``; read ``blocks``.

    Text without the header costs one byte search per chunk (plus counting line ends);
    only lines of open blocks are decoded and parsed."""

    def __init__(self) -> None:
        self.parser = MemoryBlockParser()
        self.blocks: list[WamrMemoryBlock] = []
        self._lineno = 1          # line number of the start of the current chunk
        self._tail = b""          # the end of the previous chunk, for look-back

    def feed(self, chunk: bytes) -> None:
        p = self.parser
        n = len(chunk)
        pos = 0
        counted = 0               # line ends counted up to `counted`
        lineno = self._lineno
        while pos < n:
            if p.idle:
                hit = chunk.find(TRIGGER, pos)
                if hit < 0:
                    break
                pos = chunk.rfind(b"\n", 0, hit) + 1
            nl = chunk.find(b"\n", pos)
            end = n if nl < 0 else nl + 1
            lineno += chunk.count(b"\n", counted, pos)
            counted = pos
            line = chunk[pos:end]
            context = (None, None, None)
            if p.idle or TRIGGER in line:
                before = chunk[max(0, pos - LOOKBACK):pos]
                context = _lookback(self._tail + before if pos < LOOKBACK else before)
            p.feed(decode(line), lineno, context=context)
            pos = end
        self._lineno = lineno + chunk.count(b"\n", counted, n)
        self._tail = (self._tail + chunk)[-LOOKBACK:] if n < LOOKBACK else chunk[-LOOKBACK:]
        self.blocks.extend(p.drain())

    def finish(self) -> list[WamrMemoryBlock]:
        self.parser.finish()
        self.blocks.extend(self.parser.drain())
        return self.blocks


def tap(chunks: Iterable[bytes], scanner: MemoryBlockScanner) -> Iterator[bytes]:
    """Pass ``chunks`` through unchanged while feeding ``scanner`` whole lines (a partial
    last line is held back for the scanner only)."""
    rest = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = rest + chunk if rest else chunk
        cut = data.rfind(b"\n") + 1
        if cut:
            scanner.feed(data[:cut])
            rest = data[cut:]
        else:
            rest = data
            if len(rest) > (1 << 20):        # an overlong line: not part of a block
                rest = rest[-4096:]
        yield chunk
    if rest:
        scanner.feed(rest + b"\n")


def parse_memory_blocks(text: bytes | str) -> list[WamrMemoryBlock]:
    """Every memory-consumption block in ``text`` (a whole log)."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    sc = MemoryBlockScanner()
    sc.feed(data if data.endswith(b"\n") else data + b"\n")
    return sc.finish()


def _lookback(before: bytes) -> tuple[str | None, str | None, str | None]:
    """(plugin, why, Envoy time) from the text just before a header line: a ``wasm log
    <plugin> <root> <vm>:`` record within :data:`PLUGIN_LINES` lines, and the time of the
    nearest line with a log prefix."""
    lines = before[-LOOKBACK:].split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    plugin = note = ts = None
    for back, raw in enumerate(reversed(lines[-200:]), start=1):
        near = back <= PLUGIN_LINES
        if not (near and b"wasm log " in raw) and (ts is not None or raw[:1] not in b"[{0123456789"):
            if ts is not None and not near:
                break
            continue
        ll = parse_line(decode(raw))
        if ts is None and ll.has_prefix and ll.timestamp:
            ts = ll.timestamp
        if plugin is None and near:
            plugin = _wasm_log_plugin(ll.message)
            if plugin is not None:
                note = (f"plugin named by the 'wasm log' record {back} line"
                        f"{'s' if back != 1 else ''} before the block")
        if ts is not None and not near:
            break
    return plugin, note, ts


def _wasm_log_plugin(msg: str) -> str | None:
    """The plugin of ``wasm log <plugin> <root_id> <vm_id>: …`` (or ``wasm log <plugin>:``);
    None for ``wasm log: …`` and ``wasm log <root_id> <vm_id>: …``."""
    start = msg.find("wasm log")
    if start < 0:
        return None
    colon = msg.find(":", start)
    if colon < 0:
        return None
    ids = msg[start + 8:colon].split()
    if len(ids) >= 3 or len(ids) == 1:
        return ids[0][:200]
    return None


def block_time(block: WamrMemoryBlock) -> float | None:
    """Unix seconds of the block's envelope time (UTC when the text has no zone)."""
    if not block.timestamp:
        return None
    try:
        t = datetime.fromisoformat(block.timestamp.strip().replace("Z", "+00:00").replace(",", "."))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def block_times(blocks: list[WamrMemoryBlock], received: float) -> list[tuple[float, str]]:
    """A time and its provenance for every block, best first:

    1. the header line's own envelope time;
    2. from the ``bh_log`` uptimes (unwrapped: a smaller uptime after a larger one is the next
       day), relative to the nearest block that has an envelope time (its own or its
       neighbour's), else to the newest block placed at ``received``;
    3. the time of the last Envoy record before the block;
    4. ``received`` (earlier blocks a millisecond apart, so each stays its own sample)."""
    unwrapped: list[float | None] = []
    day, last = 0.0, None
    for b in blocks:
        if b.uptime is None:
            unwrapped.append(None)
            continue
        if last is not None and b.uptime + day < last - 1.0:
            day += 86400.0
        last = b.uptime + day
        unwrapped.append(last)
    absolute = [block_time(b) for b in blocks]
    anchors = [i for i, b in enumerate(blocks) if absolute[i] is not None and unwrapped[i] is not None]
    newest = next((i for i in range(len(blocks) - 1, -1, -1) if unwrapped[i] is not None), None)
    out: list[tuple[float, str]] = []
    n = len(blocks)
    for i, b in enumerate(blocks):
        own = absolute[i] is not None and b.time_note == "time of the header line"
        if own:
            out.append((absolute[i], "time of the header line"))  # type: ignore[arg-type]
            continue
        if unwrapped[i] is not None:
            if anchors:
                a = min(anchors, key=lambda j: abs(j - i))
                out.append((absolute[a] + (unwrapped[i] - unwrapped[a]),  # type: ignore[operator]
                            "WAMR uptime relative to the block with a log time"
                            if a != i else b.time_note or "log time"))
                continue
            if newest is not None:
                out.append((received - (unwrapped[newest] - unwrapped[i]),  # type: ignore[operator]
                            "WAMR uptime relative to the newest block, placed at the receive time"))
                continue
        if absolute[i] is not None:
            out.append((absolute[i] + i * 0.001, b.time_note or "log time"))  # type: ignore[operator]
            continue
        out.append((received - (n - 1 - i) * 0.001, "receive time (the block has no time)"))
    return out


_METRICS = (
    (HealthMetric.WAMR_TOTAL_BYTES, lambda b: b.totals.get("total")),
    (HealthMetric.WAMR_MODULE_BYTES, lambda b: b.sections.get("module", {}).get("total")),
    (HealthMetric.WAMR_INSTANCE_BYTES, lambda b: b.sections.get("instance", {}).get("total")),
    (HealthMetric.WAMR_APP_HEAP_USED_BYTES, lambda b: b.totals.get("app_heap_used")),
    (HealthMetric.WAMR_STACK_USED_BYTES, lambda b: b.totals.get("interp_stack_used")),
)


def block_samples(blocks: list[WamrMemoryBlock], *, received: float,
                  plugin: str | None = None) -> list[HealthSample]:
    """Health samples of ``blocks``: ``memory_bytes`` (the instance's linear memory) and the
    WAMR totals, runtime ``wamr``, thread = the block's TID. ``plugin`` (the caller's, e.g.
    the ``plugin`` of a posted log) wins over one named by a ``wasm log`` record; a block
    with neither is per process (plugin "")."""
    out: list[HealthSample] = []
    for blk, (ts, tnote) in zip(blocks, block_times(blocks, received)):
        who = plugin or blk.plugin or ""
        notes = [tnote]
        if not plugin and blk.plugin_note:
            notes.append(blk.plugin_note)
        if not who:
            notes.append("not tied to a plugin: per process")
        if blk.partial:
            notes.append("partial block")
        note = "; ".join(notes)
        name = f"WAMR memory block at line {blk.line}"
        values = [(HealthMetric.MEMORY_BYTES, blk.linear_memory)]
        values += [(m, get(blk)) for m, get in _METRICS]
        for metric, value in values:
            if value is None:
                continue
            out.append(HealthSample(metric=metric, value=float(value), plugin=who,
                                    runtime="wamr", thread=blk.tid or "", ts=ts, name=name,
                                    note=note))
    return out

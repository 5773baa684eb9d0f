"""The core model every part of wasmprof shares: one definition each.

Layering (see design notes): readers (``wasmprof.binary``) produce :class:`Module`;
parsers (``wasmprof.ingest``) produce :class:`Crash` and :class:`Profile` holding
:class:`RawFrame`; the resolver (``wasmprof.addr2line``) turns RawFrames into
:class:`Frame`; outputs (CLI, ``wasmprof.flamegraph``, server) only read these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar


class AddressSpace(StrEnum):
    """What a number printed next to a Wasm frame means. Never pass a bare int around.

    - ``file``: byte offset in the .wasm file (wasm-tools addr2line's default).
    - ``code``: offset from the Code section payload start = DWARF address.
    - ``interp``: WAMR classic interpreter dump: file offset *after* the instruction (-1).
    - ``fast-interp``: WAMR fast interpreter: offset into transformed code, unusable; function only.
    - ``aot``: WAMR AOT with call-stack frames: file offset of the instruction start.
    - ``v8``: V8 module offset (file offset of the instruction).
    - ``wasmtime``: Wasmtime module offset (file offset of the instruction).
    - ``native``: offset into an AOT/cwasm text section.
    - ``perf``: perf-map symbol + offset (``aot_func#N+0x34``): function N, native offset within it.
    """

    FILE = "file"
    CODE = "code"
    INTERP = "interp"
    FAST_INTERP = "fast-interp"
    AOT = "aot"
    V8 = "v8"
    WASMTIME = "wasmtime"
    NATIVE = "native"
    PERF = "perf"

    @property
    def is_wasm_file_offset(self) -> bool:
        """Offsets in this space are file offsets into the .wasm (possibly adjusted)."""
        return self in (AddressSpace.FILE, AddressSpace.INTERP, AddressSpace.AOT,
                        AddressSpace.V8, AddressSpace.WASMTIME)

    @property
    def lookup_adjust(self) -> int:
        """Amount added to a printed offset to get the instruction's own file offset."""
        return -1 if self is AddressSpace.INTERP else 0


class ModuleKind(StrEnum):
    WASM = "wasm"
    AOT = "aot"
    AOT_WASM = "aot.wasm"
    ELF_OBJECT = "elf-object"
    CWASM = "cwasm"


class FrameStatus(StrEnum):
    """How a frame was resolved.

    - ``exact``: function, file and line from DWARF at this address.
    - ``function-only``: the function is known (DWARF subprogram, name section, symbol),
      but no line: no DWARF line row, an offset of 0, a stale/garbage offset, native code
      without an address map...
    - ``index-only``: only a function index is known (``$f12``, ``aot_func#3``), no name.
    - ``unknown``: nothing could be resolved (no module, address outside any function).
    - ``runtime-text``: function, file and line as the language runtime printed them in its
      own traceback text (Go's goroutine traceback: Go Wasm modules carry no DWARF). Never
      looked up in DWARF nor checked against the module; ``reason`` says where the text
      came from. Such frames have no ``input_index`` (they are not in-VM frames).
    """

    EXACT = "exact"
    FUNCTION_ONLY = "function-only"
    INDEX_ONLY = "index-only"
    UNKNOWN = "unknown"
    RUNTIME_TEXT = "runtime-text"


@dataclass(slots=True)
class FunctionInfo:
    """One function of a module, in the Wasm function index space (imports first).

    ``body_start``/``body_end`` are file offsets of the body (just after the size LEB, as
    wasm-objdump and DWARF low_pc count) in the .wasm; ``aot_index``/``text_offset``/``size``
    describe native code (AOT ``aot_func#N``, cwasm ``function[i]``) when known.
    """

    wasm_index: int
    name: str | None = None
    imported: bool = False
    body_start: int | None = None
    body_end: int | None = None
    aot_index: int | None = None
    text_offset: int | None = None
    size: int | None = None
    internal_text_offset: int | None = None   # aot_func_internal#N (stack-bounds-check builds)
    internal_size: int | None = None
    exports: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RawFrame:
    """A frame as an input printed it, before any lookup.

    ``index``: the printed frame number (``#03`` -> 3), or the position in a sample stack.
    ``offset``: the printed number in ``space`` (None when the input printed none).
    ``func_index``: Wasm function index when the input states it (``$f12``, ``aot_func#3`` is
    converted by whoever knows the import count: keep ``aot_index`` then).
    ``native``: a host (Envoy/runtime) frame, never resolved against a Wasm module.
    """

    index: int
    space: AddressSpace
    offset: int | None = None
    printed_name: str | None = None
    func_index: int | None = None
    aot_index: int | None = None
    module: str | None = None         # module name/hint printed with the frame
    native: bool = False
    truncated: bool = False           # the runtime cut the line (WAMR: 255 bytes + "...")
    raw: str | None = None            # the input line, verbatim
    kernel: bool = False              # a kernel frame (perf: [kernel.kallsyms], vmlinux, ...)


@dataclass(slots=True)
class Frame:
    """A resolved frame. One input frame expands into its inline chain, innermost first;
    ``inlined`` is True for all but the last (outermost) element of a chain.

    Frames with status ``runtime-text`` (see :class:`FrameStatus`) were read from a
    language runtime's own traceback text (``Panic.frames``), not resolved: they follow the
    in-VM frames in ``Crash.frames`` and have ``input_index`` None."""

    function: str | None
    status: FrameStatus
    raw_function: str | None = None
    file: str | None = None
    line: int | None = None
    column: int | None = None
    inlined: bool = False
    reason: str | None = None
    wasm_index: int | None = None
    module: str | None = None         # module identity or name it was resolved against
    address: int | None = None        # lookup address (code offset for Wasm spaces)
    input_index: int | None = None
    raw_offset: int | None = None
    printed_name: str | None = None
    native: bool = False
    dwarf_function: str | None = None  # DWARF's name when the printed name won and differs
    decl_file: str | None = None      # function-only frames: DW_AT_decl_file / decl_line
    decl_line: int | None = None
    kernel: bool = False              # a host frame in the kernel (always with native=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function, "raw_function": self.raw_function,
            "file": self.file, "line": self.line, "column": self.column,
            "inlined": self.inlined, "status": str(self.status), "reason": self.reason,
            "wasm_index": self.wasm_index, "module": self.module, "address": self.address,
            "input_index": self.input_index, "raw_offset": self.raw_offset,
            "printed_name": self.printed_name, "native": self.native,
            "dwarf_function": self.dwarf_function, "decl_file": self.decl_file,
            "decl_line": self.decl_line, "kernel": self.kernel,
        }


class TrapKind(StrEnum):
    UNREACHABLE = "unreachable"
    OUT_OF_BOUNDS = "out-of-bounds-memory"
    DIVIDE_BY_ZERO = "divide-by-zero"
    INTEGER_OVERFLOW = "integer-overflow"
    INVALID_CONVERSION = "invalid-conversion"
    STACK_OVERFLOW = "stack-overflow"
    INDIRECT_CALL_MISMATCH = "indirect-call-mismatch"
    UNDEFINED_ELEMENT = "undefined-element"
    TABLE_OUT_OF_BOUNDS = "table-out-of-bounds"
    NULL_REFERENCE = "null-reference"
    OUT_OF_MEMORY = "out-of-memory"
    UNLINKED_IMPORT = "unlinked-import"
    HOST_ERROR = "host-error"
    NATIVE_CRASH = "native-crash"
    PANIC = "panic"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"


class Runtime(StrEnum):
    """The dialect a crash was printed in."""

    WAMR_INTERP = "wamr-interp"
    WAMR_FAST_INTERP = "wamr-fast-interp"
    WAMR_AOT = "wamr-aot"
    WAMR = "wamr"                     # WAMR dump whose mode the log does not tell
    V8 = "v8"
    V8_JS = "v8-js"                   # err.stack of node / Chrome / Deno (outside Envoy)
    WASMTIME = "wasmtime"
    WAVM = "wavm"
    ENVOY_NATIVE = "envoy-native"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class Panic:
    """What the plugin's language runtime printed when it gave up, reassembled from the
    plugin's output (Envoy ``wasm log`` records, one per ``fd_write``, or plain lines).

    ``kind``: ``go`` (gc: ``panic:`` / ``fatal error:`` and a goroutine traceback),
    ``tinygo`` (``panic: …`` on one line, no traceback), ``rust`` (``panicked at``, both
    the pre-1.73 and the 1.73+ layout), ``cxx`` (``terminate called …``, ``libc++abi: …``)
    or ``c`` (``Assertion failed: …``). ``locations`` are ``(file, line, column)`` as
    printed, the panic site first (Go: the innermost non-runtime frame). ``frames`` are the
    runtime's text frames (Go's traceback), status ``runtime-text``. ``lines`` is the
    reassembled output text; ``records`` counts the log records it came from and
    ``log_lines`` the log lines they took (the first ones of ``Crash.raw``).
    ``partial``: no trap followed within the window (the crash is this panic alone).
    """

    kind: str
    language: str
    message: str | None = None
    locations: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    recovered: bool = False
    frames: list[Frame] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    records: int = 0
    log_lines: int = 0
    first_line: int | None = None
    partial: bool = False

    @property
    def location(self) -> str | None:
        """``file:line[:col]`` of the panic site, when printed."""
        if not self.locations:
            return None
        f, line, col = self.locations[0]
        return f + (f":{line}" if line is not None else "") + (f":{col}" if col is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "language": self.language, "message": self.message,
                "location": self.location,
                "locations": [{"file": f, "line": ln, "column": c} for f, ln, c in self.locations],
                "recovered": self.recovered, "frames": [f.to_dict() for f in self.frames],
                "lines": list(self.lines), "records": self.records,
                "log_lines": self.log_lines, "first_line": self.first_line,
                "partial": self.partial}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Panic:
        frames = []
        for f in d.get("frames") or []:
            f = dict(f)
            f["status"] = FrameStatus(f["status"])
            frames.append(Frame(**f))
        return cls(kind=d.get("kind") or "unknown", language=d.get("language") or "unknown",
                   message=d.get("message"),
                   locations=[(x.get("file") or "", x.get("line"), x.get("column"))
                              for x in d.get("locations") or []],
                   recovered=bool(d.get("recovered")), frames=frames,
                   lines=list(d.get("lines") or []), records=int(d.get("records") or 0),
                   log_lines=int(d.get("log_lines") or 0), first_line=d.get("first_line"),
                   partial=bool(d.get("partial")))


@dataclass(slots=True)
class Breadcrumb:
    """One of the plugin's log records on the crash's thread before the crash (oldest
    first in ``Crash.breadcrumbs``): ``level`` as Envoy logged it (``info`` = the plugin's
    stdout, ``error`` = stderr or ``proxy_log`` at that level), ``text`` after
    ``wasm log …:`` (cut to a bounded length)."""

    line: int
    level: str | None
    text: str
    plugin: str | None = None
    timestamp: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "level": self.level, "text": self.text,
                "plugin": self.plugin, "timestamp": self.timestamp}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Breadcrumb:
        return cls(line=int(d.get("line") or 0), level=d.get("level"), text=d.get("text") or "",
                   plugin=d.get("plugin"), timestamp=d.get("timestamp"))


@dataclass(slots=True)
class Crash:
    """One crash found in a log.

    ``raw_frames`` keep what the log said; ``frames`` are filled by the resolver (flat,
    innermost first, inline chains expanded, each carrying ``input_index``).
    ``partial`` is True when the block was cut short or damaged; ``notes`` say why.
    ``panic``: the plugin's own panic output attached to the crash (or the whole crash, when
    no trap followed it: then ``partial``); ``breadcrumbs``: the plugin's last log records on
    the crash's thread before it (bounded). ``origin``: the log stream within the input
    (pod/container of a kubectl/stern prefix or a shipper's record) when the input says.
    """

    message: str | None = None
    trap_kind: TrapKind = TrapKind.UNKNOWN
    runtime: Runtime = Runtime.UNKNOWN
    space: AddressSpace | None = None
    plugin: str | None = None
    vm_id: str | None = None
    root_id: str | None = None
    function: str | None = None       # the proxy-wasm export that failed (proxy_on_...)
    thread: str | None = None
    timestamp: str | None = None
    source: str | None = None         # log file name
    first_line: int | None = None     # 1-based line number in the source
    raw: list[str] = field(default_factory=list)
    raw_frames: list[RawFrame] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    partial: bool = False
    notes: list[str] = field(default_factory=list)
    panic: Panic | None = None
    breadcrumbs: list[Breadcrumb] = field(default_factory=list)
    origin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message, "trap_kind": str(self.trap_kind),
            "runtime": str(self.runtime), "space": str(self.space) if self.space else None,
            "plugin": self.plugin, "vm_id": self.vm_id, "root_id": self.root_id,
            "function": self.function, "thread": self.thread, "timestamp": self.timestamp,
            "source": self.source, "first_line": self.first_line, "partial": self.partial,
            "notes": list(self.notes),
            "frames": [f.to_dict() for f in self.frames],
            "raw": list(self.raw),
            "panic": self.panic.to_dict() if self.panic is not None else None,
            "breadcrumbs": [b.to_dict() for b in self.breadcrumbs],
            "origin": self.origin,
        }


StackFrame = TypeVar("StackFrame", RawFrame, Frame)


@dataclass(slots=True)
class Sample(Generic[StackFrame]):
    """One sampled stack, leaf first, with a weight. Parsers produce ``Sample[RawFrame]``;
    symbolization produces ``Sample[Frame]`` whose stack has inline chains expanded
    (innermost first, ``inlined=True`` on all but the last frame of each chain).

    ``count`` is the weight every output sums: the number of samples (1 per parsed sample;
    the sum when identical samples were aggregated), or, when a profile is weighted by period
    (``wasmprof flamegraph --weight period``, the profile's ``unit`` then names it), the summed
    period. ``period`` is what the recorder printed for the sample (perf's sample period: ns
    for cpu-clock, events for cycles/page-faults; summed when aggregated), None when it
    printed none. ``timestamp`` is None for aggregated samples."""

    stack: tuple[StackFrame, ...]
    count: int = 1
    timestamp: float | None = None
    thread: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    period: int | None = None


@dataclass(slots=True)
class Profile(Generic[StackFrame]):
    """Samples from one input: ``Profile[RawFrame]`` as parsed, ``Profile[Frame]`` once
    symbolized. ``unit`` is "samples" or a time unit (WAMR's profiler block, where ``count``
    holds self time)."""

    samples: list[Sample[StackFrame]] = field(default_factory=list)
    unit: str = "samples"
    name: str | None = None
    plugin: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    start: float | None = None
    end: float | None = None
    source: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Module:
    """One binary a user gave us, read but not resolved.

    ``identity``: ``build_id:<hex>`` when the module has a build_id section, else
    ``code:<sha256 of the Code section payload>`` (a stripped module and its unstripped
    debug companion share it); for AOT/objects, the identity of the embedded or linked Wasm
    when known, else ``file:<sha256>``. ``sha256`` is the whole file's hash.
    ``functions`` is indexed by Wasm function index (imports first).
    ``wasm``/``aot``/``elf`` hold the format-level readings (``WasmBinary``, ``AotFile``,
    ``ElfObject``) for code that needs more than this summary.
    """

    kind: ModuleKind
    path: str
    sha256: str
    identity: str
    import_function_count: int
    functions: list[FunctionInfo]
    name: str | None = None           # module name from the name section, or the file stem
    arch: str | None = None
    aot_version: int | None = None
    aot_layout: str | None = None
    has_dwarf: bool = False
    has_name_section: bool = False
    build_id: str | None = None
    external_debug_info: str | None = None
    source_mapping_url: str | None = None
    code_payload_start: int | None = None
    shape: str | None = None          # hash of (import count, defined functions' type
                                      # indices, function exports): matches an .aot to the
                                      # .wasm it was compiled from when no identity links them
    notes: list[str] = field(default_factory=list)
    wasm: Any = None
    aot: Any = None
    elf: Any = None
    companion: "Module | None" = None  # the .wasm with DWARF/names this module resolves against
    source_map: Any = None            # a parsed wasmprof.addr2line.sourcemap.SourceMap of
                                      # this file (sourceMappingURL, --source-map, upload)


class HealthMetric(StrEnum):
    """What a plugin/VM health sample measures (issue 17). Gauges hold a level, counters a
    running total that resets when the process restarts (stored with the reset-aware
    increase since the previous sample, see ``wasmprof.health``)."""

    MEMORY_BYTES = "memory_bytes"           # Wasm linear memory of the plugin's VM(s)
    VM_ACTIVE = "vm_active"                 # VMs alive now
    VM_CREATED = "vm_created"               # VMs created (counter)
    VM_CLONED = "vm_cloned"                 # VMs cloned per worker (counter, old Envoy)
    CRASHES = "crashes"                     # VM crashes (counter, Higress crash_total)
    CRASHED = "crashed"                     # 1 while the plugin's VM is crashed (Higress gauge)
    RECOVERIES = "recoveries"               # recoveries after a crash (counter)
    RECOVER_ERRORS = "recover_errors"       # failed recoveries (counter)
    REBUILDS = "rebuilds"                   # VM rebuilds / reloads (counter)
    REBUILDS_MEMORY = "rebuilds_memory"     # rebuilds because of memory (Higress, counter)
    REBUILDS_EXPLICIT = "rebuilds_explicit"  # rebuilds asked for (Higress, counter)
    RELOAD_FAILURES = "reload_failures"     # failed VM reloads (upstream, counter)
    RELOAD_BACKOFFS = "reload_backoffs"     # reloads delayed by backoff (upstream, counter)
    RECLAIMS = "reclaims"                   # memory reclaims (Higress reclaim_latency count)
    RESTARTS = "restarts"                   # the scraped process restarted (counters reset)
    UPTIME_SECONDS = "uptime_seconds"       # the scraped process' uptime (restart signal)
    WAMR_TOTAL_BYTES = "wamr_total_bytes"   # WAMR: module + instance + exec env
    WAMR_MODULE_BYTES = "wamr_module_bytes"
    WAMR_INSTANCE_BYTES = "wamr_instance_bytes"
    WAMR_APP_HEAP_USED_BYTES = "wamr_app_heap_used_bytes"
    WAMR_STACK_USED_BYTES = "wamr_stack_used_bytes"

    @property
    def is_counter(self) -> bool:
        return self in _HEALTH_COUNTERS


_HEALTH_COUNTERS = frozenset({
    HealthMetric.VM_CREATED, HealthMetric.VM_CLONED, HealthMetric.CRASHES,
    HealthMetric.RECOVERIES, HealthMetric.RECOVER_ERRORS, HealthMetric.REBUILDS,
    HealthMetric.REBUILDS_MEMORY, HealthMetric.REBUILDS_EXPLICIT, HealthMetric.RELOAD_FAILURES,
    HealthMetric.RELOAD_BACKOFFS, HealthMetric.RECLAIMS, HealthMetric.RESTARTS})


@dataclass(slots=True)
class HealthSample:
    """One value of one health series, as a parser read it (no storage ids).

    ``plugin`` is the name the input gave ("" = the whole process or runtime, not one
    plugin); ``runtime`` a short runtime name (``v8``, ``wamr``, ``wasmtime``, ``wavm``,
    ``null``; "" when the input does not say); ``thread`` the worker ("" = all threads).
    ``name`` is the input's own metric name or line (provenance); ``note`` says anything
    guessed (an ambiguous plugin/thread split, a time taken from a neighbouring line).
    """

    metric: HealthMetric
    value: float
    plugin: str = ""
    runtime: str = ""
    thread: str = ""
    ts: float | None = None
    name: str | None = None
    note: str | None = None

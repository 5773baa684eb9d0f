"""Crash fingerprints: which crashes are "the same bug", and why.

fingerprint = sha256(plugin, trap kind, top N in-app frames), where a frame's key is

1. its symbolized function name, normalized (Rust ``::h<16 hex>`` hash suffixes dropped,
   template/generic arguments collapsed to ``<T>``, parameter lists dropped), when the
   frame was resolved (``exact``/``function-only``) or the runtime printed a real name;
2. else ``<module identity>#f<wasm index>`` (or ``aot#<N>``) — the "function indices"
   fallback for modules without symbols or crashes that arrived before their module;
3. with no usable frame at all, the trap message with numbers masked.

A crash whose plugin printed a panic (``Crash.panic``) and whose Wasm frames are all glue
(runtime, panic machinery, the proxy-wasm SDK's dispatch and ``proxy_on_*`` entry points:
every TinyGo crash is ``runtime._panic`` < ``proxy_on_…``) is grouped on the panic instead
(basis ``panic``): Go's own traceback functions (in-app ones, top N) when it printed them,
else the panic kind + the file of its location + its message with numbers and quoted text
masked (no line number, so a rebuilt version keeps its group).

Frames skipped as not in-app: host/native frames, language runtimes and panic machinery
(``runtime.*``, ``core::panicking``, ``std::panicking``, ``rust_panic``, ``abort``,
``__assert_fail``…), allocators (``malloc``, ``dlmalloc``, ``__rust_alloc``…), libc memory
routines and the ``_start`` entry glue. If every frame is skipped, the top frames are used
anyway (and the reason says so). :class:`GroupKey.reason` records all of this so a user
can see why a crash landed in its group.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from wasmprof.addr2line.demangle import runtime_glue
from wasmprof.model import Crash, Frame, FrameStatus, Panic, RawFrame

DEFAULT_TOP_N = 5

_SKIP_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("runtime/panic", re.compile(
        r"^(runtime[./]|std::panicking|core::panicking|std::rt::|std::sys::|std::sys_common::"
        r"|panic_abort::|panic_unwind::|core::panic::|core::result::unwrap_failed"
        r"|core::option::(expect|unwrap)_failed|rust_panic|rust_begin_unwind|__rust_start_panic"
        r"|__rust_end_short_backtrace|__rust_begin_short_backtrace|__rust_panic|_panic$|panic$"
        r"|abort$|__assert_fail|__wasi_|__wasilibc_|_Exit$|_exit$|exit$|raise$"
        r"|__cxa_|std::terminate|std::__terminate|__cxxabiv1|__abort_message|abort_message"
        r"|demangling_terminate_handler|std::__1::__throw_|std::__throw_|__assert_func)")),
    ("runtime/panic", re.compile(               # Rust std's panic path, as DWARF names it inlined
        r"(?:^|::)(?:begin_panic_handler|begin_panic|panic_fmt|panic_bounds_check|panic_display"
        r"|rust_panic_with_hook|rust_panic|__rust_end_short_backtrace|__rust_start_panic"
        r"|abort_internal|unwrap_failed|expect_failed)(?:::|$)")),
    ("allocator", re.compile(
        r"^(malloc|free|calloc|realloc|aligned_alloc|posix_memalign|memalign|dlmalloc|dlfree"
        r"|dlrealloc|dlcalloc|internal_memalign|sbrk|__rust_alloc|__rust_dealloc|__rust_realloc"
        r"|__rdl_|__rg_|alloc::alloc|alloc::raw_vec|wee_alloc|operator new|operator delete)")),
    ("libc memory routine", re.compile(
        r"^(memcpy|memmove|memset|memcmp|strlen|strcmp|strncmp|strcpy|__memcpy|__memset"
        r"|__stpcpy|__strchrnul)$")),
    ("entry glue", re.compile(
        r"^(_start|_start\.command_export|__original_main|__main_void|_initialize"
        r"|__wasm_call_ctors|__wasm_call_dtors)$")),
]

_RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")
_INDEX_NAME = re.compile(r"^(\$f|f)(\d+)$|^aot_func(?:_internal)?#(\d+)$|^unknown\(function index:(\d+)\)$")
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")


def normalize_function(name: str) -> str:
    """Stable display-independent key for a function name (see module docstring)."""
    name = _RUST_HASH.sub("", name.strip()[:512])
    name = re.sub(r"\s+const$", "", name)
    if name.startswith("<"):                 # Rust qualified path: <Type as Trait>::method
        depth = 0
        for k, c in enumerate(name):
            depth += (c == "<") - (c == ">")
            if depth == 0:
                return "<" + normalize_function(name[1:k]) + ">" + normalize_function(name[k + 1:])
    out: list[str] = []
    depth = 0
    i, n = 0, len(name)
    while i < n:
        if name.startswith("operator", i) and depth == 0:
            j = i + 8
            if name.startswith("()", j):
                j += 2
            else:
                while j < n and name[j] in "<>=-!+*/%&|^~[]":
                    j += 1
            out.append(name[i:j])
            i = j
            continue
        c = name[i]
        if c == "<":
            if depth == 0:
                out.append("<T>")
            depth += 1
        elif c == ">" and depth > 0:
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    text = "".join(out)
    if text.endswith(")"):                   # drop a trailing parameter list "(int, char*)"
        depth = 0
        for k in range(len(text) - 1, -1, -1):
            if text[k] == ")":
                depth += 1
            elif text[k] == "(":
                depth -= 1
                if depth == 0:
                    if k > 0 and not text[:k].endswith("operator"):
                        text = text[:k]
                    break
    return text.strip() or name


_SDK = re.compile(r"^(?:proxy_on_\w+$|proxy_abi_version|_?proxy_wasm|proxy_wasm::|"
                  r"github\.com[/_][\w.\-/]*proxy[_\-]wasm[_\-]go[_\-]sdk|"
                  r"github\.com[/_][\w.\-/]*wasm[_\-]go[/_.]pkg[/_.]wrapper)")
_QUOTED = re.compile(r"'[^']{0,200}'|\"[^\"]{0,200}\"|`[^`]{0,200}`")


def skip_reason(function: str) -> str | None:
    """Why a frame with this (normalized) function is not in-app, or None when it is."""
    for why, rx in _SKIP_RULES:
        if rx.search(function):
            return why
    if runtime_glue(function):
        return "runtime/panic"
    return None


def _panic_glue(key: FrameKey) -> bool:
    """Frames that say nothing about where a panic came from: proxy-wasm entry points and
    SDK dispatch (in-app only when the plugin printed no panic)."""
    return bool(_SDK.search(key.function or key.key))


def _panic_key(panic: Panic, top_n: int) -> tuple[str, list[str], str, list[FrameKey]]:
    """(title after the trap kind, fingerprint parts, explanation, Go frames used)."""
    go = []
    for f in panic.frames:
        norm = normalize_function(f.function or "")
        if norm and not skip_reason(norm) and not _SDK.search(norm):
            go.append(FrameKey(key=norm, function=f.function, kind="symbol",
                               status=str(f.status), input_index=None))
    if go:
        used = go[:top_n]
        return (f"in {used[0].function or used[0].key}", [f"{panic.kind}-traceback", *(k.key for k in used)],
                f"{panic.language} panic + the top {len(used)} in-app function(s) of its own "
                f"traceback: {' < '.join(k.key for k in used)}", used)
    msg = _NUMBERS.sub("N", _QUOTED.sub("'…'", (panic.message or "").strip()))[:300]
    where = panic.locations[0][0] if panic.locations else ""
    lead = f": {msg}" if msg else f" at {panic.location or '(unknown location)'}"
    if msg and panic.location:
        lead += f" at {panic.location}"
    return (lead, [panic.kind, where, msg],
            f"{panic.language} panic at {where or '(no location printed)'} + its message "
            f"{msg!r} (numbers and quoted text masked; line numbers left out)", [])


@dataclass(slots=True)
class FrameKey:
    key: str
    function: str | None
    kind: str                       # "symbol" | "index" | "offset"
    status: str | None
    input_index: int | None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "function": self.function, "kind": self.kind,
                "status": self.status, "input_index": self.input_index,
                **({"skipped": self.skipped} if self.skipped else {})}


@dataclass(slots=True)
class GroupKey:
    fingerprint: str
    title: str
    basis: str                      # "symbols" | "function-indices" | "message"
    used: list[FrameKey] = field(default_factory=list)
    skipped: list[FrameKey] = field(default_factory=list)
    explanation: str = ""

    @property
    def reason(self) -> dict[str, Any]:
        return {"basis": self.basis, "explanation": self.explanation,
                "frames": [f.to_dict() for f in self.used],
                "skipped": [f.to_dict() for f in self.skipped]}


def _index_from_name(name: str | None) -> tuple[str, int] | None:
    if not name:
        return None
    m = _INDEX_NAME.match(name)
    if not m:
        return None
    if m.group(2):
        return ("f", int(m.group(2)))
    if m.group(3):
        return ("aot", int(m.group(3)))
    return ("f", int(m.group(4)))


def _key_resolved(f: Frame, identity: str) -> FrameKey | None:
    if f.native:
        return FrameKey(key="", function=f.function, kind="native", status=str(f.status),
                        input_index=f.input_index, skipped="host frame")
    named = f.function and f.status in (FrameStatus.EXACT, FrameStatus.FUNCTION_ONLY) \
        and _index_from_name(f.function) is None
    if named:
        norm = normalize_function(f.function)
        return FrameKey(key=norm, function=f.function, kind="symbol", status=str(f.status),
                        input_index=f.input_index, skipped=skip_reason(norm))
    if f.wasm_index is not None:
        return FrameKey(key=f"{identity}#f{f.wasm_index}", function=f.function, kind="index",
                        status=str(f.status), input_index=f.input_index)
    idx = _index_from_name(f.function) or _index_from_name(f.printed_name)
    if idx:
        return FrameKey(key=f"{identity}#{idx[0]}{idx[1]}", function=f.function, kind="index",
                        status=str(f.status), input_index=f.input_index)
    return None


def _key_raw(r: RawFrame, identity: str) -> FrameKey | None:
    if r.native:
        return FrameKey(key="", function=r.printed_name, kind="native", status=None,
                        input_index=r.index, skipped="host frame")
    idx = _index_from_name(r.printed_name)
    if r.printed_name and idx is None and not r.truncated:
        norm = normalize_function(r.printed_name)
        return FrameKey(key=norm, function=r.printed_name, kind="symbol", status="printed",
                        input_index=r.index, skipped=skip_reason(norm))
    if r.func_index is not None:
        return FrameKey(key=f"{identity}#f{r.func_index}", function=r.printed_name,
                        kind="index", status="printed", input_index=r.index)
    if r.aot_index is not None:
        return FrameKey(key=f"{identity}#aot{r.aot_index}", function=r.printed_name,
                        kind="index", status="printed", input_index=r.index)
    if idx:
        return FrameKey(key=f"{identity}#{idx[0]}{idx[1]}", function=r.printed_name,
                        kind="index", status="printed", input_index=r.index)
    if r.printed_name:                      # truncated name: still better than nothing
        norm = normalize_function(r.printed_name.rstrip("."))
        return FrameKey(key=norm, function=r.printed_name, kind="symbol", status="printed",
                        input_index=r.index, skipped=skip_reason(norm))
    return None


def fingerprint(crash: Crash, *, plugin: str | None = None, module_identity: str | None = None,
                top_n: int = DEFAULT_TOP_N) -> GroupKey:
    """Group key of a crash. Uses ``crash.frames`` when resolved, else ``crash.raw_frames``."""
    plugin = plugin if plugin is not None else (crash.plugin or "")
    identity = module_identity or "unknown-module"
    trap = str(crash.trap_kind)
    resolved = [f for f in crash.frames if not f.native]
    keys: list[FrameKey] = []
    if resolved:
        keys = [k for f in crash.frames if (k := _key_resolved(f, identity)) is not None]
    else:
        keys = [k for r in crash.raw_frames if (k := _key_raw(r, identity)) is not None]
    in_app = [k for k in keys if not k.skipped]
    skipped = [k for k in keys if k.skipped]
    panic = crash.panic
    if panic is not None and not [k for k in in_app if not _panic_glue(k)]:
        lead, parts, why, used = _panic_key(panic, top_n)
        h = hashlib.sha256("\x1f".join([plugin, trap, "panic", *parts]).encode("utf-8", "replace"))
        explanation = (f"plugin {plugin or '(none)'} + trap {trap} + {why}: every Wasm frame is "
                       "runtime, panic or SDK glue")
        glue = [FrameKey(key=k.key, function=k.function, kind=k.kind, status=k.status,
                         input_index=k.input_index, skipped=k.skipped or "proxy-wasm entry/SDK")
                for k in keys]
        title = f"{trap} {lead}" if lead.startswith("in ") else f"{trap}{lead}"
        return GroupKey(fingerprint=h.hexdigest()[:40], title=title[:300],
                        basis="panic", used=used, skipped=glue, explanation=explanation)
    note = ""
    only_glue = bool(keys) and all(k.skipped in ("entry glue", "host frame") for k in keys)
    if not in_app and keys and not only_glue:
        in_app = [k for k in keys if k.kind != "native"]
        note = " (every frame is runtime/library code, so those frames are used)"
    used = in_app[:top_n]
    if used:
        basis = "symbols" if all(k.kind == "symbol" for k in used) else "function-indices"
        parts = [k.key for k in used]
        lead = used[0].function or used[0].key
        title = f"{trap} in {lead}"
        explanation = (f"plugin {plugin or '(none)'} + trap {trap} + top {len(used)} in-app "
                       f"frame(s) by {'function name' if basis == 'symbols' else 'module identity + function index'}"
                       f": {' < '.join(parts)}{note}")
        if skipped:
            explanation += f"; skipped {len(skipped)} runtime/allocator/host frame(s)"
    else:
        basis = "message"
        msg = _NUMBERS.sub("N", (crash.message or "").strip())[:300]
        parts = [msg]
        title = f"{trap}: {crash.message or 'no message'}"[:200]
        why = ("only entry/host frames were printed (e.g. AOT built without "
               "--enable-dump-call-stack)" if only_glue else "the crash has no usable frames")
        explanation = f"plugin {plugin or '(none)'} + trap {trap} + message {msg!r}: {why}"
    h = hashlib.sha256("\x1f".join([plugin, trap, basis, *parts]).encode("utf-8", "replace"))
    return GroupKey(fingerprint=h.hexdigest()[:40], title=title[:300], basis=basis, used=used,
                    skipped=skipped, explanation=explanation)

"""Crash symbolization: a parsed :class:`Crash` + the modules a user gave -> resolved frames.

Contract (:class:`CrashSymbolizer`):

- ``symbolize(crash)`` picks the module the crash ran (:meth:`CrashSymbolizer.match`),
  decides the address space of the crash's offsets (:meth:`CrashSymbolizer.decide_space`),
  asks the Resolver for every input frame and stores the flat list in ``crash.frames``:
  innermost first, each input frame expanded to its inline chain, every Frame carrying
  ``input_index``, ``raw_offset`` and ``printed_name``. Frames that cannot be resolved
  still come out, with a status and a reason (no module, native Envoy frame...).
- ``describe_choice(crash)`` says in one line which module and space were chosen and why.
- ``agreement(crash)`` measures how well the best of the modules agrees with what the crash
  printed (names, offsets inside the named functions): callers holding several candidate
  builds (the service: one symbolizer per plugin version) rank builds with it.
- Never guesses silently: ambiguous module choices and assumed modes are noted in
  ``crash.notes``.

Space rules (``mode="auto"``): V8 (in Envoy, and node/Chrome/Deno ``err.stack``) -> ``v8``,
Wasmtime -> ``wasmtime``, Envoy native ->
``native``; a WAMR dump -> ``aot`` when the module is an ``.aot``/``.aot.wasm``/wamrc
object, else decided from the bytes at the printed caller offsets: a ``call`` opcode *at*
the offset means AOT, a ``call`` instruction *ending* at it means the classic interpreter,
neither (offsets outside the named functions) means the fast interpreter (function only).
An explicit mode applies to every Wasm frame.

A crash carrying a panic with the runtime's own text frames (Go's goroutine traceback) gets
them appended to ``crash.frames`` after the in-VM frames, status ``runtime-text``, never
resolved. Printed names that cannot be resolved (no module) are shown demangled
(:func:`wasmprof.addr2line.demangle.display_name`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from wasmprof.addr2line.demangle import display_name
from wasmprof.model import (AddressSpace, Crash, Frame, FrameStatus, Module, ModuleKind,
                            RawFrame, Runtime)

MODES = ("auto", "interp", "fast-interp", "aot", "v8", "wasmtime")
_MODE_SPACE = {"interp": AddressSpace.INTERP, "fast-interp": AddressSpace.FAST_INTERP,
               "aot": AddressSpace.AOT, "v8": AddressSpace.V8,
               "wasmtime": AddressSpace.WASMTIME}
_AOT_KINDS = (ModuleKind.AOT, ModuleKind.AOT_WASM, ModuleKind.ELF_OBJECT)
_CALL, _CALL_INDIRECT = 0x10, 0x11
_EVIDENCE_FRAMES = 64


class ResolverLike(Protocol):
    def resolve(self, module: Module, raw_frame: RawFrame, *,
                input_index: int | None = None) -> list[Frame]: ...


@dataclass(slots=True)
class Choice:
    """What :class:`CrashSymbolizer` decided for one crash, and why."""

    module: Module | None
    module_reason: str
    space: AddressSpace | None
    space_reason: str


@dataclass(slots=True)
class Agreement:
    """How well a module agrees with what a crash printed (:meth:`CrashSymbolizer.agreement`):
    ``named`` Wasm frames printed with a real name (not ``$fN``) among the first frames,
    ``missing`` of them name no function of ``module``; ``agreeing`` frames and ``points``
    as scored by ``match``."""

    module: Module | None
    points: int
    agreeing: int
    named: int
    missing: int


class CrashSymbolizer:
    """Symbolize crashes against ``modules`` (see the module docstring for the rules)."""

    def __init__(self, modules: list[Module], resolver: ResolverLike, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.modules = list(modules)
        self.resolver = resolver
        self.mode = mode
        self._names: dict[tuple[int, bool], dict[str, int]] = {}

    # -- module choice -----------------------------------------------------------------
    def match(self, crash: Crash) -> tuple[Module | None, str]:
        """The module this crash ran, and how it was chosen."""
        mods = self.modules
        if not mods:
            return None, "no module given"
        if len(mods) == 1:
            return mods[0], f"the only module given ({_label(mods[0])})"
        pool = self._runtime_compatible(crash, mods) or mods
        if crash.plugin:
            by_plugin = [m for m in pool if _plugin_matches(crash.plugin, m)]
            if len(by_plugin) == 1:
                return by_plugin[0], f"plugin '{crash.plugin}' matches {_label(by_plugin[0])}"
            if by_plugin:
                pool = by_plugin
        frame_modules = {f.module for f in crash.raw_frames if f.module}
        if frame_modules:
            named = [m for m in pool
                     if m.name in frame_modules or Path(m.path).name in frame_modules]
            if len(named) == 1:
                return named[0], f"the frames name module {_label(named[0])}"
            if named:
                pool = named
        scored = sorted(((self._score(crash, m), i, m) for i, m in enumerate(pool)),
                        key=lambda t: (-t[0][0], t[1]))
        best_score, agreeing = scored[0][0]
        if best_score <= 0:
            if len(pool) < len(mods) or len(pool) == 1:
                return pool[0], f"{_label(pool[0])} (by plugin/module name only)"
            return None, (f"none of the {len(mods)} modules matches the frames' names or "
                          f"offsets")
        tied = [m for s, _, m in scored if s[0] == best_score]
        best = tied[0]
        why = (f"{_label(best)} agrees with {agreeing} of "
               f"{min(len(crash.raw_frames), _EVIDENCE_FRAMES)} frames")
        if len(tied) > 1:
            return self._break_tie(crash, tied, why)
        return best, why

    def _break_tie(self, crash: Crash, tied: list[Module], why: str
                   ) -> tuple[Module | None, str]:
        """Same program as .wasm and .aot (a WAMR dump names them alike): the bytes at the
        call sites tell AOT from the interpreters; the same code in several files (stripped
        and debug builds): prefer debug info. Different programs: choose none, say so."""
        wasm = [m for m in tied if m.kind is ModuleKind.WASM]
        aot = [m for m in tied if m.kind in _AOT_KINDS]
        pairs = [(a, a.companion) for a in aot if a.companion is not None and a.companion in wasm]
        if crash.runtime is Runtime.WAMR and pairs and self.mode == "auto":
            a, w = pairs[0]
            space, reason = self._wamr_mode_from_bytes(crash, w)
            pick = a if space is AddressSpace.AOT else w
            if not reason.startswith("assumed"):
                if len(tied) > 2:
                    self._note_tie(crash, pick, tied)
                return pick, f"{_label(pick)}: {reason}"
        if self.mode == "aot" and aot:
            return aot[0], f"{_label(aot[0])} (--mode aot)"
        if self.mode in ("interp", "fast-interp") and wasm:
            return wasm[0], f"{_label(wasm[0])} (--mode {self.mode})"
        programs = {(m.companion or m).identity for m in tied}
        if len(programs) > 1:
            return None, (f"{len(tied)} modules of {len(programs)} different programs match "
                          f"equally ({_names(tied)}): pass --module to choose")
        top = max(_debug_rank(m) for m in tied)
        best = next(m for m in tied if _debug_rank(m) == top)
        return best, why + " (same code as " + _names([m for m in tied if m is not best]) + ")"

    @staticmethod
    def _note_tie(crash: Crash, best: Module, tied: list[Module]) -> None:
        note = (f"{len(tied)} modules match this crash equally ({_names(tied)}); chose "
                f"{_label(best)} - pass --module to decide")
        if note not in crash.notes:
            crash.notes.append(note)

    def _runtime_compatible(self, crash: Crash, mods: list[Module]) -> list[Module]:
        if crash.runtime in (Runtime.V8, Runtime.V8_JS, Runtime.WAVM):
            return [m for m in mods if m.kind in (ModuleKind.WASM, ModuleKind.AOT_WASM)]
        if crash.runtime is Runtime.WASMTIME:
            return [m for m in mods if m.kind in (ModuleKind.WASM, ModuleKind.AOT_WASM,
                                                  ModuleKind.CWASM)]
        return mods

    def _own_names(self, module: Module) -> dict[int, str]:
        """The module's own function names as a runtime sees them (the AOT NAME section for
        AOT files, the ``name`` section for Wasm); a companion's names are not used."""
        if module.kind in _AOT_KINDS:
            own = dict(module.aot.names) if getattr(module, "aot", None) is not None else {}
            if module.kind is ModuleKind.ELF_OBJECT and not own:
                own = {f.wasm_index: f.name for f in module.functions if f.name}
            return own
        wnames = getattr(module.wasm, "names", None)
        return dict(wnames.function_names) if wnames is not None else {}

    def _name_index(self, module: Module, *, with_names: bool = True) -> dict[str, int]:
        """Name -> Wasm index as the runtime named frames when it ran ``module``: WAMR's
        order is the module's own name table, then export names. ``with_names=False``: a
        runtime built without name-section support (it printed ``$fN`` for named
        functions), so only export names."""
        key = (id(module), with_names)
        table = self._names.get(key)
        if table is None:
            table = {}
            if with_names:
                for idx, name in sorted(self._own_names(module).items()):
                    table.setdefault(name, idx)
            for f in module.functions:
                for e in f.exports:
                    table.setdefault(e, f.wasm_index)
            self._names[key] = table
        return table

    def _runtime_used_names(self, crash: Crash, module: Module) -> bool:
        """False when the dump printed ``$fN`` for a function the module has a name for."""
        own = self._own_names(module)
        return not any(f.func_index is not None and f.func_index in own
                       and f.printed_name and f.printed_name.startswith("$f")
                       for f in crash.raw_frames[:_EVIDENCE_FRAMES])

    def _score(self, crash: Crash, module: Module) -> tuple[int, int]:
        """(points, frames that agree): +2 for a printed name the module has, +1 when the
        printed offset lies in the body of the function the frame names."""
        names = self._name_index(module, with_names=self._runtime_used_names(crash, module))
        funcs = _wasm_functions(module)
        points = agreeing = 0
        for f in crash.raw_frames[:_EVIDENCE_FRAMES]:
            if f.native:
                continue
            index = _func_index(f, names)
            hit = 0
            if f.printed_name and not f.printed_name.startswith("$f") and f.printed_name in names:
                hit += 2
            if index is not None and index < len(funcs):
                fi = funcs[index]
                if (f.offset and fi.body_start is not None and fi.body_end is not None
                        and fi.body_start <= f.offset <= fi.body_end + 1):
                    hit += 1
            points += hit
            agreeing += hit > 0
        return points, agreeing

    # -- space choice -------------------------------------------------------------------
    def decide_space(self, crash: Crash, module: Module | None) -> tuple[AddressSpace | None, str]:
        if crash.runtime is Runtime.ENVOY_NATIVE:
            return AddressSpace.NATIVE, "Envoy native crash: frames are host addresses"
        if self.mode != "auto":
            return _MODE_SPACE[self.mode], f"--mode {self.mode}"
        if crash.runtime is Runtime.V8:
            return AddressSpace.V8, "V8 backtrace: module offsets of the instruction"
        if crash.runtime is Runtime.V8_JS:
            return AddressSpace.V8, ("V8 err.stack (node/Chrome/Deno): module offsets of the "
                                     "instruction")
        if crash.runtime is Runtime.WASMTIME:
            return AddressSpace.WASMTIME, "Wasmtime backtrace: module offsets of the instruction"
        if crash.runtime is Runtime.WAVM:
            return AddressSpace.FILE, "WAVM backtrace: no byte offsets, names only"
        if crash.space is not None and crash.runtime is not Runtime.WAMR:
            return crash.space, "as the log says"
        if module is not None and module.kind in _AOT_KINDS:
            return AddressSpace.AOT, f"{module.kind} module given: WAMR AOT offsets"
        if not any(f.offset for f in crash.raw_frames):
            return ((AddressSpace.AOT if module is None else AddressSpace.INTERP),
                    "the dump prints no usable offsets (all 0 or none): functions only")
        if module is None:
            return AddressSpace.AOT, ("no module: offsets kept as printed (assumed AOT; pass "
                                      "--mode)")
        return self._wamr_mode_from_bytes(crash, module)

    def _wamr_mode_from_bytes(self, crash: Crash, module: Module) -> tuple[AddressSpace, str]:
        wb = module.wasm if module.wasm is not None else getattr(module.companion, "wasm", None)
        data = getattr(wb, "data", None)
        if not data:
            return AddressSpace.INTERP, "assumed the classic interpreter (pass --mode)"
        names = self._name_index(module, with_names=self._runtime_used_names(crash, module))
        funcs = _wasm_functions(module)
        aot = interp = outside = checked = 0
        for f in crash.raw_frames[:_EVIDENCE_FRAMES]:
            if f.index == 0 or not f.offset or f.offset >= len(data):
                continue        # the top frame's offset is the trap, not a call site
            checked += 1
            if data[f.offset] in (_CALL, _CALL_INDIRECT) and _call_end(data, f.offset) is not None:
                aot += 1
            if _call_ends_at(data, f.offset):
                interp += 1
            index = _func_index(f, names)
            if index is not None and index < len(funcs):
                fi = funcs[index]
                if (fi.body_start is not None and fi.body_end is not None
                        and not fi.body_start <= f.offset <= fi.body_end):
                    outside += 1
        if checked and outside * 2 > checked:
            return AddressSpace.FAST_INTERP, (f"{outside} of {checked} caller offsets fall "
                                              "outside their functions: fast interpreter, "
                                              "function names only")
        if aot > interp:
            return AddressSpace.AOT, (f"{aot} of {checked} caller offsets point at a call "
                                      "instruction: WAMR AOT")
        if interp > aot:
            return AddressSpace.INTERP, (f"{interp} of {checked} caller offsets end a call "
                                         "instruction: WAMR classic interpreter (offset-1)")
        return AddressSpace.INTERP, "assumed the classic interpreter (no call-site evidence; " \
                                    "pass --mode)"

    def choose(self, crash: Crash) -> Choice:
        module, module_reason = self.match(crash)
        space, space_reason = self.decide_space(crash, module)
        return Choice(module, module_reason, space, space_reason)

    def describe_choice(self, crash: Crash, choice: Choice | None = None) -> str:
        c = self.choose(crash) if choice is None else choice
        mod = _label(c.module) if c.module is not None else "no module"
        return f"{mod} ({c.module_reason}); offsets as {c.space}: {c.space_reason}"

    def agreement(self, crash: Crash) -> Agreement:
        """How the best-agreeing runtime-compatible module (highest ``_score``: +2 per
        printed name the module has, +1 per printed offset inside the body of the function
        the frame names) agrees with what the crash printed."""
        named = [f for f in crash.raw_frames[:_EVIDENCE_FRAMES]
                 if not f.native and not f.truncated and f.printed_name
                 and not f.printed_name.startswith("$f")]
        pool = self._runtime_compatible(crash, self.modules)
        if not pool:
            return Agreement(None, 0, 0, len(named), len(named))
        (points, agreeing), _, best = max(((self._score(crash, m), -i, m)
                                           for i, m in enumerate(pool)), key=lambda t: t[:2])
        names = self._name_index(best, with_names=self._runtime_used_names(crash, best))
        missing = sum(1 for f in named if f.printed_name not in names)
        return Agreement(best, points, agreeing, len(named), missing)

    # -- resolution -----------------------------------------------------------------------
    def symbolize(self, crash: Crash, choice: Choice | None = None) -> Crash:
        """Resolve every frame (see the module docstring); ``choice``: a ``choose(crash)``
        result the caller already has (it then knows which module was used)."""
        choice = self.choose(crash) if choice is None else choice
        module = choice.module
        crash.space = choice.space
        note = f"module: {choice.module_reason}; space: {choice.space} ({choice.space_reason})"
        crash.notes = [n for n in crash.notes if not n.startswith("module: ")] + [note]
        frames: list[Frame] = []
        names = (self._name_index(module, with_names=self._runtime_used_names(crash, module))
                 if module is not None else {})
        for raw in crash.raw_frames:
            if not raw.native and choice.space is not None:
                raw.space = choice.space
        asked = [None if raw.native else _with_index(names, raw) for raw in crash.raw_frames]
        if module is not None:
            # one partial DWARF decode for the whole crash instead of one per frame
            self.resolver.prefetch(module, [r for r in asked if r is not None])
        for i, raw in enumerate(crash.raw_frames):
            if raw.native:
                chain = [_native_frame(raw)]
            elif module is None:
                chain = [_unresolved(raw, choice.module_reason)]
            else:
                chain = self.resolver.resolve(module, asked[i], input_index=i) or [
                    _unresolved(raw, "the resolver returned nothing")]
            for fr in chain:
                fr.input_index = i
                if fr.raw_offset is None:
                    fr.raw_offset = raw.offset
                if fr.printed_name is None:
                    fr.printed_name = raw.printed_name
            frames.extend(chain)
        if crash.panic is not None and crash.panic.frames:
            frames.extend(_runtime_text_frames(crash))
        crash.frames = frames
        return crash



# -- helpers ------------------------------------------------------------------------------
def _label(m: Module) -> str:
    return Path(m.path).name


def _names(mods: list[Module], limit: int = 4) -> str:
    text = ", ".join(_label(m) for m in mods[:limit])
    return text + (f" and {len(mods) - limit} more" if len(mods) > limit else "")


def _debug_rank(m: Module) -> tuple:
    c = m.companion
    return (m.has_dwarf or bool(c and c.has_dwarf), m.has_name_section or bool(c and c.has_name_section))


def _norm(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _plugin_matches(plugin: str, module: Module) -> bool:
    """``istio-system.my-filter`` matches ``my_filter.wasm``/``my-filter.O2.aot``."""
    stem = _norm(Path(module.path).name.split(".")[0])
    if not stem:
        return False
    parts = [plugin] + plugin.replace("/", ".").split(".")
    return any(_norm(p) == stem for p in parts if p) or (
        module.name is not None and _norm(module.name) in {_norm(p) for p in parts if p})


def _wasm_functions(module: Module) -> list:
    """The function table with Wasm body offsets (the companion's for AOT modules)."""
    if module.kind in _AOT_KINDS and module.companion is not None:
        return module.companion.functions
    return module.functions


def _func_index(frame: RawFrame, names: dict[str, int]) -> int | None:
    if frame.func_index is not None:
        return frame.func_index
    if frame.printed_name and not frame.truncated:
        return names.get(frame.printed_name)
    return None


def _with_index(names: dict[str, int], raw: RawFrame) -> RawFrame:
    """The frame with the function index its printed name had in the runtime's name table
    (a copy; the input frame stays as printed)."""
    if raw.func_index is not None or not raw.printed_name or raw.truncated:
        return raw
    index = names.get(raw.printed_name)
    return raw if index is None else replace(raw, func_index=index)


def _uleb_end(data: bytes, pos: int, limit: int = 5) -> int | None:
    for k in range(limit):
        if pos + k >= len(data):
            return None
        if not data[pos + k] & 0x80:
            return pos + k + 1
    return None


def _call_end(data: bytes, pos: int) -> int | None:
    """End offset of a ``call``/``call_indirect`` instruction starting at ``pos``."""
    op = data[pos]
    end = _uleb_end(data, pos + 1)
    if end is None:
        return None
    if op == _CALL_INDIRECT:
        return _uleb_end(data, end)
    return end if op == _CALL else None


def _call_ends_at(data: bytes, end: int) -> bool:
    """Some call instruction (up to 11 bytes long) ends exactly at ``end``."""
    for length in range(2, 12):
        pos = end - length
        if pos < 0:
            break
        if data[pos] in (_CALL, _CALL_INDIRECT) and _call_end(data, pos) == end:
            return True
    return False


def _native_frame(raw: RawFrame) -> Frame:
    return Frame(function=raw.printed_name, status=FrameStatus.FUNCTION_ONLY if raw.printed_name
                 else FrameStatus.UNKNOWN, raw_function=raw.printed_name, native=True,
                 address=raw.offset, raw_offset=raw.offset, printed_name=raw.printed_name,
                 reason="native Envoy frame: symbolize it with Envoy's tools/stack_decode.py"
                 if raw.printed_name else "native address without a symbol (JIT/AOT code?)")


def _runtime_text_frames(crash: Crash) -> list[Frame]:
    """The panic's text frames (copies), each saying which in-VM frame names the same
    function (Go's linker prints ``main.(*T).M`` as ``main.__T_.M`` in the name section)."""
    assert crash.panic is not None
    by_name: dict[str, int] = {}
    for i, raw in enumerate(crash.raw_frames):
        if raw.printed_name:
            by_name.setdefault(_go_symbol(raw.printed_name), i)
    out = []
    for f in crash.panic.frames:
        k = by_name.get(_go_symbol(f.function or ""))
        reason = f.reason or "printed by the language runtime"
        if k is not None:
            reason += f"; the in-VM frame #{crash.raw_frames[k].index} names the same function"
        out.append(replace(f, reason=reason, input_index=None))
    return out


def _go_symbol(name: str) -> str:
    """A Go function name as Go's linker writes it into the name section."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)


def _unresolved(raw: RawFrame, why: str) -> Frame:
    name = raw.printed_name if raw.printed_name and not raw.printed_name.startswith("$f") else None
    if name:
        name = display_name(name)
    if name:
        status = FrameStatus.FUNCTION_ONLY
    elif raw.func_index is not None:
        status = FrameStatus.INDEX_ONLY
    else:
        status = FrameStatus.UNKNOWN
    return Frame(function=name or (f"$f{raw.func_index}" if raw.func_index is not None else None),
                 status=status, raw_function=raw.printed_name, wasm_index=raw.func_index,
                 reason=f"printed by the runtime; not resolved: {why}",
                 raw_offset=raw.offset, printed_name=raw.printed_name)

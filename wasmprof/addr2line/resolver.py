"""The resolver: RawFrame (any address space) -> inline chain of Frames with status + reason.

Contract (other layers code against it):

- ``resolve(module, raw, input_index=)`` returns the inline chain innermost first
  (``inlined=True`` on all but the last), each Frame carrying ``status``, ``reason`` when not
  ``exact``, ``input_index``, ``raw_offset``, ``printed_name``, ``wasm_index``, ``address``
  (the DWARF/code address for Wasm spaces, the text offset for native ones).
  ``resolve_many`` and ``resolve_addresses`` give the same answers in bulk: every path asks
  :meth:`wasmprof.addr2line.chains.ChainLookup.lookup`.
- It never raises for a bad address: offsets that are 0, stale, outside the code or in
  another function than the frame names give ``function-only`` / ``index-only`` /
  ``unknown`` frames whose reason says why. Damaged DWARF raises ``BinaryFormatError``
  (an input problem, reported once per module).
- DWARF that does not describe the code any more (its subprogram at an address does not
  span exactly the function body holding it, or a ghost range makes the chain unsure) is
  never ``exact``: the frame is ``function-only`` and the reason says the DWARF is stale.
- Names: DWARF (innermost subprogram / inlined subroutine; the outermost function comes
  from DWARF, never from a symbol table) -> ``name`` section (module, AOT-embedded or
  companion) -> ``$f<index>``. ``function`` is the display name (demangled linkage name for
  C++/Rust, else ``DW_AT_name``), ``raw_function`` the linkage / name-section name. When the
  runtime printed a real name for the frame's function (not ``$fN``), that name is the
  outermost frame's ``function`` and the DWARF name, when it differs, is kept in
  ``dwarf_function``. Function-only frames carry ``decl_file``/``decl_line`` from DWARF.
- ``module.companion`` (set by ``wasmprof.binary.loader.find_companion``) supplies DWARF and
  names for stripped modules and AOT files; DWARF is indexed once per (identity, DWARF
  bytes) and cached under ``$WASMPROF_CACHE_DIR`` (see :mod:`wasmprof.addr2line.index`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path

from wasmprof.addr2line.bulk import paused_gc
from wasmprof.addr2line.chains import ChainLookup, display_name
from wasmprof.addr2line.debuginfo import FULL_BUILD_THRESHOLD, ModuleDebug
from wasmprof.addr2line.demangle import demangle, is_mangled
from wasmprof.addr2line.hygiene import CodeLayout
from wasmprof.addr2line.index import cache_root
from wasmprof.addr2line.spaces import file_offset, index_from_printed_name, maps_to_wasm
from wasmprof.errors import BinaryFormatError
from wasmprof.model import AddressSpace, Frame, FrameStatus, Module, RawFrame

__all__ = ["Resolver", "display_name"]

_CODE = AddressSpace.CODE
_INTERP = AddressSpace.INTERP
_FILE_LIKE = frozenset({AddressSpace.FILE, AddressSpace.AOT, AddressSpace.V8,
                        AddressSpace.WASMTIME})
EXACT = FrameStatus.EXACT
FUNCTION_ONLY = FrameStatus.FUNCTION_ONLY
INDEX_ONLY = FrameStatus.INDEX_ONLY
UNKNOWN = FrameStatus.UNKNOWN


class _View:
    """Per-module helpers: Wasm layout for offsets, DWARF, names."""

    def __init__(self, module: Module, debug: ModuleDebug | None) -> None:
        self.module = module
        comp = module.companion
        self.wasm = module.wasm if module.wasm is not None else (
            comp.wasm if comp is not None else None)
        self.cps = self.wasm.code_payload_start if self.wasm is not None else None
        self.layout = CodeLayout.of_wasm(self.wasm) if self.wasm is not None else None
        self.debug = debug if self.layout is not None else None
        self.label = module.name or Path(module.path).name
        self.imports = module.import_function_count
        self._by_name: dict[str, int] | None = None
        self._alternatives: dict[str, set[int]] = {}
        self._starts: list[int] | None = None
        self._chains: ChainLookup | None = None
        self.dwarf_error: str | None = None
        # a source map (the module's, else its companion's) and the code payload start of
        # the file its offsets refer to
        self.smap = self.smap_cps = None
        for m in (module, comp):
            if m is not None and m.source_map is not None and m.wasm is not None and \
                    m.wasm.code_payload_start is not None:
                self.smap, self.smap_cps = m.source_map, m.wasm.code_payload_start
                break

    def ensure(self, codes) -> bool:
        """Decode DWARF for code addresses (None: all of it); on damaged DWARF fall back to
        names (the reason of every frame then says so) instead of failing the whole job."""
        if self.debug is None:
            return False
        try:
            if codes is None:
                self.debug.build_full()
            else:
                self.debug.ensure(codes)
            return True
        except BinaryFormatError as e:
            self.dwarf_error = str(e)
            self.debug = None
            return False

    def chains(self) -> ChainLookup | None:
        """The lookup over the current DWARF block (rebuilt when a partial block grows)."""
        blk = self.debug.block if self.debug is not None else None
        if blk is None:
            return None
        c = self._chains
        if c is None or c.block is not blk:
            c = self._chains = ChainLookup(blk, self.layout, self.section_name, self.describe)
        return c

    def complete(self) -> bool:
        return self.debug is not None and self.debug.complete and \
            self.debug.block is not None

    # -- names -----------------------------------------------------------------------------
    def section_name(self, idx: int) -> str | None:
        """Name from the module (name section / AOT NAME / export) or its companion."""
        for m in (self.module, self.module.companion):
            if m is not None and 0 <= idx < len(m.functions):
                f = m.functions[idx]
                if f.name:
                    return f.name
        return None

    def index_of_name(self, name: str, truncated: bool) -> int | None:
        if self._by_name is None:
            # WAMR prints the name-section name, else the export name. When the module that
            # ran has no names of its own (AOT without a NAME section), printed names are
            # export names, so exports win; otherwise name-section names win.
            by: dict[str, int] = {}
            names: dict[str, int] = {}
            exports: dict[str, int] = {}
            for m in (self.module.companion, self.module):
                if m is None:
                    continue
                for f in m.functions:
                    if f.name and f.name not in f.exports:
                        names[f.name] = f.wasm_index
                    for n in f.exports:
                        exports.setdefault(n, f.wasm_index)
            if self.wasm is not None and self.wasm.names is not None:
                for i, n in self.wasm.names.function_names.items():
                    names[n] = i
            own_names = self.module.has_name_section or (
                self.module.aot is None and self.module.wasm is not None)
            first, second = (exports, names) if own_names else (names, exports)
            by.update(first)
            by.update(second)
            self._by_name = by
            # Every function a printed name may denote: a name-section name and an export
            # name can coincide (wasm-ld's `_start` vs the `_start` export of
            # `_start.command_export`); the offset then decides between them.
            alt: dict[str, set[int]] = {}
            for table in (names, exports):
                for n, i in table.items():
                    alt.setdefault(n, set()).add(i)
            self._alternatives = alt
        hit = self._by_name.get(name)
        if hit is None and is_mangled(name):
            hit = self._by_name.get(demangle(name))
        if hit is None and truncated:
            stem = name[:-3] if name.endswith("...") else name
            cands = {i for n, i in self._by_name.items() if n.startswith(stem)}
            if len(cands) == 1:
                hit = cands.pop()
        return hit

    def may_denote(self, name: str | None, wasm_index: int) -> bool:
        """True when a printed ``name`` can denote function ``wasm_index`` (by name-section
        name or export name), whichever of the two :meth:`index_of_name` preferred."""
        if not name:
            return False
        if self._by_name is None:
            self.index_of_name(name, False)
        return wasm_index in self._alternatives.get(name, ()) or \
            self.index_of_name(name, False) == wasm_index

    def printed_function(self, raw: RawFrame, idx: int) -> str | None:
        """The name the runtime printed for function ``idx``, when it printed a real one
        (not ``$fN``/``aot_func#N``, not cut short) that denotes that function."""
        name = raw.printed_name
        if not name or raw.truncated or index_from_printed_name(name, self.imports) is not None:
            return None
        return name if self.may_denote(name, idx) else None

    def body_starts(self) -> list[int]:
        if self._starts is None:
            self._starts = [b.start for b in self.wasm.bodies]
        return self._starts

    def body_at(self, file_offset: int):
        """The function body holding a file offset (bisect over body starts)."""
        i = bisect_right(self.body_starts(), file_offset) - 1
        if i >= 0:
            b = self.wasm.bodies[i]
            if b.start <= file_offset < b.end:
                return b
        return None

    def body(self, idx: int):
        w = self.wasm
        if w is None:
            return None
        k = idx - w.import_function_count
        return w.bodies[k] if 0 <= k < len(w.bodies) else None

    def describe(self, idx: int) -> str:
        n = self.section_name(idx)
        return f"$f{idx} ({n})" if n else f"$f{idx}"

    def entry_node(self, idx: int) -> int:
        """The DWARF subprogram node of function ``idx`` when it spans exactly its body
        (else -1: no DWARF for it, or stale DWARF)."""
        body = self.body(idx)
        if body is None or self.debug is None or not self.ensure((body.start - self.cps,)):
            return -1
        chains = self.chains()
        if chains is None:
            return -1
        node = chains.block.subprogram_at_entry(body.start - self.cps)
        if node < 0 or not chains.entry_ok(node, idx - self.wasm.import_function_count):
            return -1
        return node


class Resolver:
    """Symbolizes RawFrames against Modules. Keeps decoded DWARF per module in memory."""

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_root(cache_dir)
        self._debug: dict[tuple[str, str], ModuleDebug | None] = {}
        self._views: dict[tuple[str, str | None], _View] = {}

    # -- module state ------------------------------------------------------------------------
    def _dwarf_wasm(self, module: Module):
        for m in (module, module.companion):
            if m is not None and m.wasm is not None and m.wasm.has_dwarf:
                return m
        return None

    def debug_for(self, module: Module) -> ModuleDebug | None:
        """The DWARF lookups for ``module`` (its own DWARF or its companion's), or None."""
        src = self._dwarf_wasm(module)
        if src is None:
            return None
        key = (src.identity, src.sha256)
        if key not in self._debug:
            code = module.wasm if module.wasm is not None and module.wasm.bodies else src.wasm
            self._debug[key] = ModuleDebug(src.wasm, src.identity, self.cache_dir,
                                           CodeLayout.of_wasm(code))
        return self._debug[key]

    def _view(self, module: Module) -> _View:
        key = (module.sha256, module.companion.sha256 if module.companion else None)
        v = self._views.get(key)
        if v is None or v.module is not module:
            v = self._views[key] = _View(module, self.debug_for(module))
        return v

    def build_index(self, module: Module) -> bool:
        """Decode all DWARF of ``module`` now and store the index; False when no DWARF."""
        d = self.debug_for(module)
        if d is None:
            return False
        d.build_full()
        return True

    # -- public API -------------------------------------------------------------------------
    def resolve_address(self, module: Module, address: int, space: AddressSpace) -> list[Frame]:
        return self.resolve(module, RawFrame(index=0, space=AddressSpace(space), offset=address))

    def prefetch(self, module: Module, raws: Sequence[RawFrame]) -> None:
        """Decode, in one go, the DWARF that resolving ``raws`` will need (call it with a
        crash's frames before resolving them one by one with :meth:`resolve`: a few
        addresses asked together cost one partial decode instead of one per frame)."""
        view = self._view(module)
        if view.debug is None or view.cps is None or view.debug.complete:
            return
        cps = view.cps
        addrs = {file_offset(r.space, r.offset, cps) - cps for r in raws
                 if r.offset and not r.native and maps_to_wasm(r.space)}
        for r in raws:                  # function-only fallbacks name the entry's DIE
            b = view.body(r.func_index) if r.func_index is not None else None
            if b is not None:
                addrs.add(b.start - cps)
        bodies = [view.body_at(a + cps) for a in addrs]
        addrs.update(b.start - cps for b in bodies if b is not None)
        if addrs:
            view.ensure(None if len(addrs) > FULL_BUILD_THRESHOLD else addrs)

    def resolve_many(self, module: Module, raws: Sequence[RawFrame]) -> list[list[Frame]]:
        """``resolve`` for each RawFrame (``input_index`` = its position); identical inputs
        are resolved once. DWARF for all addresses is decoded in one go."""
        with paused_gc(len(raws) > 256):
            return self._resolve_many(module, raws)

    def _resolve_many(self, module: Module, raws: Sequence[RawFrame]) -> list[list[Frame]]:
        view = self._view(module)
        if view.debug is not None and view.cps is not None and not view.debug.complete:
            cps = view.cps
            addrs = {file_offset(r.space, r.offset, cps) - cps for r in raws
                     if r.offset and not r.native and maps_to_wasm(r.space)}
            if addrs:
                view.ensure(None if len(addrs) > FULL_BUILD_THRESHOLD else addrs)
        done: dict[tuple, list[Frame]] = {}
        out: list[list[Frame]] = []
        chains = view.chains() if view.complete() else None
        codes: list[int | None] = []
        if chains is not None:
            # Bulk jobs: a bare offset in a Wasm space is answered from the slot memo
            # (the same lookup as the generic path); everything else goes the generic way.
            cps = view.cps
            for r in raws:
                code = None
                if r.printed_name is None and r.func_index is None and \
                        r.aot_index is None and r.offset and not r.native:
                    sp = r.space
                    if sp is _CODE:
                        code = r.offset
                    elif sp is _INTERP:
                        code = r.offset - 1 - cps
                    elif sp in _FILE_LIKE:
                        code = r.offset - cps
                codes.append(code)
            bounds, slots = chains.slots()
            todo = [c for c in codes if c is not None]
            slot_of = list(map(bisect_right, repeat(bounds, len(todo)), todo))
            ks = dict(zip(slot_of, todo))
            next_slot = iter(slot_of).__next__
            chains.fill(slots, list(ks), ks)
            label = view.label
        for i, r in enumerate(raws):
            if chains is not None:
                code = codes[i]
                if code is not None:
                    ent = slots[next_slot()]
                    if ent:
                        specs, idx, _ = ent
                        off = r.offset
                        out.append([Frame(fn, st, rf, file, line, col, inl, why, idx, label,
                                          code, i, off, None, False)
                                    for fn, st, rf, file, line, col, inl, why in specs])
                        continue
            key = (r.space, r.offset, r.printed_name, r.func_index, r.aot_index, r.native,
                   r.truncated)
            frames = done.get(key)
            if frames is None:
                frames = done[key] = self._resolve(view, r, None)
                out.append(frames)
                for f in frames:
                    f.input_index = i
            else:
                out.append([_copy(f, i) for f in frames])
        return out

    def resolve_addresses(self, module: Module, addresses: Sequence[int],
                          space: AddressSpace = AddressSpace.FILE) -> list[list[Frame]]:
        """Bulk ``resolve_address``: the chain of each address (``[i]`` answers
        ``addresses[i]``), for big jobs (the addr2line CLI, benchmarks).

        Results are SHARED: addresses with the same answer (same function body, scope and
        line row) get the same list holding the same Frame objects; treat them as
        read-only. Such shared frames carry no per-input fields: ``address``,
        ``input_index`` and ``raw_offset`` are None. Addresses off the fast path (outside
        function bodies, no DWARF there, non-Wasm spaces, offset 0) get their own frames
        from :meth:`resolve` with those fields set (``input_index`` = position)."""
        groups, shared = self.resolve_address_groups(module, addresses, space)
        out = list(map(shared.__getitem__, groups))
        if None in out:
            space = AddressSpace(space)
            view = self._view(module)
            for i, a in enumerate(addresses):
                if out[i] is None:
                    out[i] = self._resolve(view, RawFrame(index=i, space=space, offset=a), i)
        return out

    def resolve_address_groups(self, module: Module, addresses: Sequence[int],
                               space: AddressSpace = AddressSpace.FILE
                               ) -> tuple[list[int], list[list[Frame] | None]]:
        """The bulk core of :meth:`resolve_addresses`: ``(groups, shared)`` where every
        address i with a shared answer has ``shared[groups[i]]`` (a read-only Frame list,
        the same object for all addresses of the group) and the others have
        ``shared[groups[i]] is None`` (resolve them one by one). Lets a caller render each
        distinct answer once."""
        got = self.bulk_entries(module, addresses, space)
        if got is None:
            return list(range(len(addresses))), [None] * len(addresses)
        keys, answers = got
        label = self._view(module).label
        shared: list = [None] * len(answers)
        callers: dict[int, list[Frame]] = {}          # id(memoised tail) -> its Frames
        for k in set(keys):
            ent = answers[k]
            if ent:
                specs, idx, tail = ent
                first = Frame(*specs[0], idx, label)
                if tail is None:
                    shared[k] = [first]
                    continue
                frames = callers.get(id(tail))
                if frames is None:
                    frames = callers[id(tail)] = [Frame(*t, idx, label) for t in tail]
                shared[k] = [first, *frames]
        return keys, shared

    def bulk_entries(self, module: Module, addresses: Sequence[int],
                     space: AddressSpace = AddressSpace.FILE) -> tuple[list[int], list] | None:
        """The fastest bulk form, for renderers: ``(keys, answers)`` where ``answers[keys[i]]``
        is address i's chain as a :class:`~wasmprof.addr2line.chains.ChainLookup` entry
        ``(specs, wasm index, tail)`` (Frame field tuples, the same objects for every address
        with the same answer), or falsy when address i needs :meth:`resolve` (offset 0,
        outside every body, stale or unsure DWARF, no DWARF there). None when nothing can be
        answered in bulk (no DWARF, a non-Wasm space). Same answers as :meth:`resolve`."""
        with paused_gc(len(addresses) > 256):
            got = self.bulk_chains(module, addresses, space)
            if got is None:
                return None
            chains, codes = got
            bounds, slots = chains.slots()
            # the hot part runs in C: one bisect per address, then one list lookup
            keys = list(map(bisect_right, repeat(bounds, len(codes)), codes))
            firsts = dict(zip(keys, codes))
            chains.fill(slots, list(firsts), firsts)
            if 0 in addresses:          # offset 0 means "unknown": never a shared answer
                zero = len(slots)
                keys = [zero if not a else k for a, k in zip(addresses, keys)]
                return keys, [*slots, None]
            return keys, slots

    def bulk_chains(self, module: Module, addresses: Sequence[int],
                    space: AddressSpace = AddressSpace.FILE
                    ) -> tuple[ChainLookup, Sequence[int]] | None:
        """For bulk renderers: the module's complete :class:`ChainLookup` (decoding all DWARF
        when many addresses are asked) and the code addresses of ``addresses``; None when
        the space or the module has no DWARF lookup. Addresses 0 and those whose answer is
        not an entry must still go through :meth:`resolve`."""
        space = AddressSpace(space)
        view = self._view(module)
        if view.debug is not None and view.cps is not None and not view.debug.complete \
                and maps_to_wasm(space):
            cps = view.cps
            if len(addresses) > FULL_BUILD_THRESHOLD:
                view.ensure(None)
            else:
                view.ensure({file_offset(space, a, cps) - cps for a in addresses if a})
        chains = view.chains() if view.complete() and _bulk_space(space) else None
        if chains is None:
            return None
        return chains, _codes(view, addresses, space)

    def text_table(self, module: Module, addresses: Sequence[int],
                   space: AddressSpace = AddressSpace.FILE):
        """For ``wasmprof addr2line``'s default text: the module's
        :class:`~wasmprof.addr2line.texttable.TextTable` (read from the cache next to the
        index, without reading the index; else built from the complete lookup and saved)
        and the code addresses of ``addresses``; None when :meth:`bulk_chains` has no bulk
        lookup."""
        from wasmprof.addr2line import texttable as tt
        space = AddressSpace(space)
        view = self._view(module)
        debug = view.debug
        if debug is None or view.cps is None or not _bulk_space(space):
            return None
        key = {"identity": debug.identity, "dwarf": debug.hash, "module": module.sha256,
               "companion": module.companion.sha256 if module.companion else None,
               "layout": tt.layout_digest(view.layout)}
        path = tt.table_path(debug.path, module.sha256) if debug.path is not None else None
        table = tt.load_table(path, key) if path is not None else None
        if table is not None:
            return table, _codes(view, addresses, space)
        got = self.bulk_chains(module, addresses, space)
        if got is None:
            return None
        chains, codes = got
        with paused_gc():
            table = tt.TextTable.build(chains, lambda code: self._resolve(
                view, RawFrame(index=0, space=_CODE, offset=code), None),
                per_address_without_dwarf=view.smap is not None)
        if path is not None:
            tt.save_table(path, table, key)
        return table, codes

    def resolve(self, module: Module, raw: RawFrame, *, input_index: int | None = None
                ) -> list[Frame]:
        return self._resolve(self._view(module), raw, input_index)

    # -- the rules ------------------------------------------------------------------------
    def _resolve(self, v: _View, raw: RawFrame, input_index: int | None) -> list[Frame]:
        base = {"input_index": input_index, "raw_offset": raw.offset,
                "printed_name": raw.printed_name, "module": v.label}
        if raw.native:
            return [Frame(function=raw.printed_name, raw_function=raw.printed_name,
                          status=FUNCTION_ONLY if raw.printed_name else UNKNOWN,
                          reason="host (native) frame: not part of the Wasm module",
                          native=True, **base)]
        claimed = self._claimed_index(v, raw)
        space = raw.space
        if space is AddressSpace.FAST_INTERP:
            return [self._function_frame(
                v, claimed, "fast interpreter offsets point into WAMR's transformed code, not "
                "the .wasm: function only", base, None, raw)]
        if space is AddressSpace.PERF:
            return [self._function_frame(
                v, claimed, "perf samples name the AOT function; native code has no line map",
                base, None, raw)]
        if space is AddressSpace.NATIVE:
            return self._native(v, raw, claimed, base)
        return self._wasm_offset(v, raw, claimed, base)

    def _claimed_index(self, v: _View, raw: RawFrame) -> int | None:
        if raw.func_index is not None:
            return raw.func_index
        if raw.aot_index is not None:
            return raw.aot_index + v.imports
        idx = index_from_printed_name(raw.printed_name, v.imports)
        if idx is not None:
            return idx
        if raw.printed_name:
            return v.index_of_name(raw.printed_name, raw.truncated)
        return None

    def _wasm_offset(self, v: _View, raw: RawFrame, claimed: int | None, base: dict
                     ) -> list[Frame]:
        off = raw.offset
        if off is None or off == 0:
            why = "no offset printed" if off is None else \
                "offset 0 means unknown (host frame, or no call-stack frame data)"
            return [self._function_frame(v, claimed, why, base, None, raw)]
        if v.wasm is None or v.cps is None:
            return [self._function_frame(
                v, claimed, f"no .wasm for {v.label} to map {raw.space} offsets into "
                "(give the module or a companion)", base, None, raw)]
        fo = file_offset(raw.space, off, v.cps)
        code = fo - v.cps
        body = v.body_at(fo)
        if body is None:
            return [self._function_frame(
                v, claimed, f"offset 0x{off:x} is outside every function body (stale or "
                "garbage value)", base, None, raw)]
        if claimed is not None and body.wasm_index != claimed and raw.func_index is None \
                and raw.aot_index is None and v.may_denote(raw.printed_name, body.wasm_index):
            claimed = body.wasm_index
        if claimed is not None and body.wasm_index != claimed:
            return [self._function_frame(
                v, claimed, f"offset 0x{off:x} lies in {v.describe(body.wasm_index)}, not in the "
                f"frame's function: stale offset (the runtime did not record this frame's "
                "instruction)", base, None, raw)]
        idx = body.wasm_index
        entry = None
        if v.debug is not None and v.ensure((code, body.start - v.cps)):
            chains = v.chains()
            entry = chains.lookup([code])[0] if chains is not None else None
        if not isinstance(entry, tuple):
            if entry is None and v.smap is not None:
                return [self._source_mapped(v, raw, code, body, base)]
            why = entry if isinstance(entry, str) else \
                "no DWARF line info for this function" if v.debug is not None else \
                f"DWARF unreadable: {v.dwarf_error}" if v.dwarf_error else \
                "module has no DWARF or source map (stripped? pass the unstripped build as " \
                "companion, or the .wasm.map with --source-map)"
            return [self._function_frame(v, idx, why, base, code, raw)]
        ii, ro, pn, label = base["input_index"], base["raw_offset"], base["printed_name"], \
            base["module"]
        frames = [Frame(fn, status, rawfn, file, line, col, inl, reason, idx, label, code, ii,
                        ro, pn, False)
                  for fn, status, rawfn, file, line, col, inl, reason in entry[0]]
        printed = v.printed_function(raw, idx)
        if printed is not None:
            _use_printed_name(frames[-1], printed, True)
        return frames

    def _source_mapped(self, v: _View, raw: RawFrame, code: int, body, base: dict) -> Frame:
        """The frame at ``code`` from the source map: file, line, column of the mapping at or
        before the instruction within its function; the function from the printed name,
        the name section, or the mapping's original name."""
        idx = body.wasm_index
        m = v.smap.lookup(code + v.smap_cps, body.start - v.cps + v.smap_cps)
        if m is None:
            return self._function_frame(
                v, idx, f"the source map ({v.smap.where}) has no mapping for this instruction "
                "in its function", base, code, raw)
        sec = v.section_name(idx)
        name = sec or m.name
        frame = Frame(function=demangle(name) if name else f"$f{idx}", status=EXACT,
                      raw_function=name, file=m.file, line=m.line, column=m.column,
                      wasm_index=idx, address=code, **base)
        printed = v.printed_function(raw, idx)
        if printed is not None:
            _use_printed_name(frame, printed, False)
        return frame

    def _native(self, v: _View, raw: RawFrame, claimed: int | None, base: dict) -> list[Frame]:
        m = v.module
        off = raw.offset
        if off is None:
            return [self._function_frame(v, claimed, "no native offset printed", base, None,
                                         raw)]
        # Wasmtime .cwasm: a native -> Wasm offset map gives lines
        n2w = getattr(m.elf, "native_to_wasm", None)
        if n2w is not None:
            fo = n2w(off)
            if fo is not None and v.wasm is not None:
                sub = RawFrame(index=raw.index, space=AddressSpace.FILE, offset=fo,
                               printed_name=raw.printed_name, func_index=raw.func_index,
                               aot_index=raw.aot_index)
                frames = self._wasm_offset(v, sub, claimed, dict(base))
                for f in frames:
                    f.raw_offset = off
                return frames
        found = None
        if m.aot is not None:
            hit = m.aot.function_at(off)
            if hit is not None:
                found = hit[0] + m.aot.import_func_count
        elif m.elf is not None and hasattr(m.elf, "function_at"):
            hit = m.elf.function_at(off)
            if isinstance(hit, tuple):
                found = hit[0] + m.import_function_count
            elif hit is not None:
                found = hit.wasm_index
        if found is None:
            for f in m.functions:
                if f.text_offset is not None and f.size is not None and \
                        f.text_offset <= off < f.text_offset + f.size:
                    found = f.wasm_index
                    break
        if found is None:
            if claimed is not None:
                return [self._function_frame(
                    v, claimed, f"native offset 0x{off:x} is outside every function's code",
                    base, None, raw)]
            return [Frame(function=None, status=UNKNOWN, address=off,
                          reason=f"native offset 0x{off:x} is outside every function's code",
                          **base)]
        if claimed is not None and found != claimed:
            return [self._function_frame(
                v, claimed, f"native offset 0x{off:x} lies in {v.describe(found)}, not in the "
                "frame's function", base, None, raw)]
        fr = self._function_frame(v, found, "native code offset: this file has no "
                                  "native-to-Wasm line map, function only", base, None, raw)
        fr.address = off
        return [fr]

    def _function_frame(self, v: _View, idx: int | None, reason: str, base: dict,
                        address: int | None, raw: RawFrame) -> Frame:
        """One frame naming function ``idx`` (printed name -> DWARF -> name section ->
        ``$f``), no line; the DWARF declaration's file and line when DWARF describes it."""
        if idx is None:
            name = raw.printed_name
            if name and index_from_printed_name(name, v.imports) is None:
                return Frame(function=demangle(name), raw_function=name, status=FUNCTION_ONLY,
                             reason=reason + "; function name as printed (not found in the "
                             "module)", address=address, **base)
            return Frame(function=name, status=UNKNOWN, address=address,
                         reason=reason + "; no function index or name to fall back on",
                         **base)
        node = v.entry_node(idx)
        frame = None
        from_dwarf = False
        if node >= 0:
            blk = v.chains().block
            names = blk.names(node)
            if names[0] or names[1]:
                df = blk.node_dfile[node]
                frame = Frame(function=display_name(*names), raw_function=names[1] or names[0],
                              status=FUNCTION_ONLY, reason=reason, wasm_index=idx,
                              address=address, decl_file=blk.strings[df] if df >= 0 else None,
                              decl_line=blk.node_dline[node] or None, **base)
                from_dwarf = True
        if frame is None:
            sec = v.section_name(idx)
            if sec:
                frame = Frame(function=demangle(sec), raw_function=sec, status=FUNCTION_ONLY,
                              reason=reason, wasm_index=idx, address=address, **base)
        printed = v.printed_function(raw, idx)
        if frame is None:
            if printed is not None:
                return Frame(function=demangle(printed), raw_function=printed,
                             status=FUNCTION_ONLY, reason=reason, wasm_index=idx,
                             address=address, **base)
            return Frame(function=f"$f{idx}", status=INDEX_ONLY, wasm_index=idx,
                         address=address,
                         reason=reason + "; no DWARF or name section names this function",
                         **base)
        if printed is not None:
            _use_printed_name(frame, printed, from_dwarf)
        return frame


def _bulk_space(space: AddressSpace) -> bool:
    """Spaces whose offsets map to code addresses by a constant shift."""
    return space is _CODE or space is _INTERP or space in _FILE_LIKE


def _codes(view: _View, addresses: Sequence[int], space: AddressSpace) -> Sequence[int]:
    """The code addresses of ``addresses`` in a :func:`_bulk_space` space."""
    shift = 0 if space is _CODE else -1 - view.cps if space is _INTERP else -view.cps
    return addresses if not shift else [a + shift for a in addresses]


def _use_printed_name(frame: Frame, printed: str, from_dwarf: bool) -> None:
    """The runtime's name for the frame's own function wins; a DWARF name it replaces
    stays visible in ``dwarf_function`` when it reads differently."""
    shown = demangle(printed)
    if shown != frame.function:
        if from_dwarf:
            frame.dwarf_function = frame.function
        frame.function = shown
        frame.raw_function = printed


def _copy(f: Frame, input_index: int) -> Frame:
    return Frame(function=f.function, status=f.status, raw_function=f.raw_function, file=f.file,
                 line=f.line, column=f.column, inlined=f.inlined, reason=f.reason,
                 wasm_index=f.wasm_index, module=f.module, address=f.address,
                 input_index=input_index, raw_offset=f.raw_offset,
                 printed_name=f.printed_name, native=f.native,
                 dwarf_function=f.dwarf_function, decl_file=f.decl_file,
                 decl_line=f.decl_line)

"""JSON sample batches from an in-process agent → Profile, validated whole at the door.

::

    {"name": "...", "plugin": "...", "labels": {...},          (all optional)
     "modules": [{"id" or "name": "bot", "text_base": 1096388612 | "0x41599004",
                  "text_size": 40960,                          (optional: bounds check)
                  "space": "native"}],                         (optional, see below)
     "samples": [{"stack": [pc, ...], "count": 1, "timestamp": 12.5,
                  "thread": "wrk:worker_0", "labels": {"route": "/api"}}]}

``stack`` is leaf first. A PC (int or hex string) inside a module's text
(``text_base <= pc``, and ``< text_base + text_size`` when given; the highest base wins) becomes
``RawFrame(space=native, offset=pc - text_base, module=<id>)``: an offset into that module's
AOT text, resolved through its function table. Other PCs are host frames. A stack entry may
instead be an object: ``{"pc": ...}``, ``{"name": "host_fn"}`` (a host frame the agent named)
or ``{"module": "bot", "offset": 1234, "space": "v8"|"wasmtime"|"aot"|"file"|"code"|...}``
(a Wasm-offset frame, e.g. V8/Wasmtime module offsets or WAMR call-stack frames) with an
optional ``"func_index"``.

Validation (anything that could fail later is refused now, naming the JSON path, e.g.
``samples[3].stack[1]``, in a :class:`~wasmprof.errors.LogFormatError`):

- counts are integers ``0 <= n <= 2**53`` (no fractions, booleans or strings);
- PCs, offsets, text bases and sizes are integers (or ``0x`` hex / decimal strings) that fit
  64 bits; ``func_index`` fits 32 bits;
- ``space`` is one of :class:`~wasmprof.model.AddressSpace`;
- stacks are non-empty lists of at most :data:`MAX_STACK_DEPTH` entries;
- timestamps are finite numbers, and inside ``time_range`` when the caller gives one (the
  server does: a sample from 1970 or next year is a broken agent clock);
- thread, names and label keys/values are strings of at most :data:`MAX_TEXT` characters,
  at most :data:`MAX_LABELS` labels per sample and per batch.

Speed: identical stack entries are interned (one :class:`RawFrame` per distinct PC and
leaf/caller position), so symbolization dedupes by object identity; the common case (stacks
of plain PCs) validates each distinct PC once.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

import orjson

from wasmprof.errors import LogFormatError
from wasmprof.model import AddressSpace, Profile, RawFrame, Sample

MAX_STACK_DEPTH = 1024
MAX_COUNT = 1 << 53
MAX_U64 = (1 << 64) - 1
MAX_U32 = (1 << 32) - 1
MAX_TEXT = 512
MAX_LABELS = 64
_SPACES = {s.value: s for s in AddressSpace}
_INT_ONLY = {int}


class _Err:
    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, path: str, expected: str, found: Any) -> LogFormatError:
        text = repr(found)
        return LogFormatError(f"bad agent sample batch field {path}", source=self.source,
                              expected=expected, found=text[:80])


def _int(value: Any, path: str, err: _Err, limit: int = MAX_U64) -> int:
    """A non-negative integer (JSON int, or a decimal / 0x-hex string) ``<= limit``."""
    if type(value) is int:
        n = value
    elif isinstance(value, str) and len(value) <= 40:
        try:
            n = int(value, 16) if value[:2].lower() == "0x" else int(value, 10)
        except ValueError:
            raise err(path, "an integer or hex string", value) from None
    else:
        raise err(path, "an integer or hex string", value)
    if n < 0:
        raise err(path, "a non-negative integer", value)
    if n > limit:
        raise err(path, f"an integer <= {limit:#x}", value)
    return n


def _text(value: Any, path: str, err: _Err) -> str:
    if not isinstance(value, str):
        raise err(path, "a string", value)
    if len(value) > MAX_TEXT:
        raise err(path, f"at most {MAX_TEXT} characters", value)
    return value


def _labels(value: Any, path: str, err: _Err) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise err(path, "an object of string values", value)
    if len(value) > MAX_LABELS:
        raise err(path, f"at most {MAX_LABELS} labels", len(value))
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise err(f"{path}.{k}"[:120], "a string or number", v)
        out[_text(k, f"{path} key", err)] = _text(str(v), f"{path}.{k}"[:120], err)
    return out


class _Frames:
    """Builds and interns RawFrames for one batch: one object per (PC, leaf/caller)."""

    def __init__(self, bases: list[tuple[int, int | None, str]], err: _Err) -> None:
        bases.sort()
        self.bases = bases
        self.starts = [b[0] for b in bases]
        self.err = err
        self.leaf: dict[int, RawFrame] = {}
        self.caller: dict[int, RawFrame] = {}

    def pc(self, pc: int, caller: bool) -> RawFrame:
        table = self.caller if caller else self.leaf
        raw = table.get(pc)
        if raw is None:
            raw = table[pc] = self._pc_frame(pc, 1 if caller else 0)
        return raw

    def leaf_pc(self, pc: int) -> RawFrame:
        return self.pc(pc, False)

    def caller_pc(self, pc: int) -> RawFrame:
        return self.pc(pc, True)

    def _pc_frame(self, pc: int, pos: int) -> RawFrame:
        k = bisect.bisect_right(self.starts, pc) - 1
        if k >= 0:
            base, size, ident = self.bases[k]
            if size is None or pc < base + size:
                return RawFrame(index=pos, space=AddressSpace.NATIVE, offset=pc - base,
                                module=ident)
        return RawFrame(index=pos, space=AddressSpace.NATIVE, offset=pc, native=True)

    def entry(self, item: Any, pos: int, p: str) -> RawFrame:
        """A stack entry of any form (slow path: objects, strings, odd values)."""
        err = self.err
        if isinstance(item, dict):
            if "pc" in item:
                return self.pc(_int(item["pc"], p + ".pc", err), pos > 0)
            if "name" in item and "offset" not in item and "func_index" not in item:
                name = _text(item["name"], p + ".name", err)
                mod = item.get("module")
                if mod is not None:
                    mod = _text(mod, p + ".module", err)
                return RawFrame(index=pos, space=AddressSpace.NATIVE, printed_name=name,
                                native=True, module=mod)
            if "offset" in item or "func_index" in item:
                space = item.get("space", "file")
                if not isinstance(space, str) or space not in _SPACES:
                    raise err(p + ".space", "one of " + ", ".join(sorted(_SPACES)), space)
                mod = item.get("module")
                if mod is not None:
                    mod = _text(mod, p + ".module", err)
                name = item.get("name")
                if name is not None:
                    name = _text(name, p + ".name", err)
                return RawFrame(
                    index=pos, space=_SPACES[space],
                    offset=_int(item["offset"], p + ".offset", err) if "offset" in item else None,
                    func_index=(_int(item["func_index"], p + ".func_index", err, MAX_U32)
                                if "func_index" in item else None),
                    printed_name=name, module=mod, raw=None)
            raise err(p, "a PC or an object with pc, name or module+offset", item)
        return self.pc(_int(item, p, err), pos > 0)


def parse_agent_json(data: bytes, source: str = "<agent json>", *,
                     time_range: tuple[float, float] | None = None) -> Profile:
    """Parse and validate one batch. ``time_range`` = (earliest, latest) unix seconds a
    sample timestamp may have (None: any finite number, e.g. for offline files)."""
    err = _Err(source)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise LogFormatError(f"not JSON: {e}", source=source, offset=getattr(e, "pos", None)) from None
    if not isinstance(doc, dict):
        raise err("$", "an object with 'modules' and 'samples'", type(doc).__name__)
    modules = doc.get("modules", [])
    samples_in = doc.get("samples")
    if not isinstance(modules, list):
        raise err("modules", "a list", modules)
    if not isinstance(samples_in, list):
        raise err("samples", "a list", samples_in)
    bases: list[tuple[int, int | None, str]] = []
    for i, m in enumerate(modules):
        if not isinstance(m, dict):
            raise err(f"modules[{i}]", "an object", m)
        ident = m.get("id", m.get("name"))
        if not isinstance(ident, str) or not ident:
            raise err(f"modules[{i}].id", "a module id or name (string)", ident)
        _text(ident, f"modules[{i}].id", err)
        if "space" in m and (not isinstance(m["space"], str) or m["space"] not in _SPACES):
            raise err(f"modules[{i}].space", "one of " + ", ".join(sorted(_SPACES)), m["space"])
        if "text_base" in m:
            size = _int(m["text_size"], f"modules[{i}].text_size", err) if "text_size" in m else None
            bases.append((_int(m["text_base"], f"modules[{i}].text_base", err), size, ident))
    frames = _Frames(bases, err)
    leaf_get, caller_get = frames.leaf.get, frames.caller.get
    leaf_pc, caller_pc = frames.leaf_pc, frames.caller_pc
    lo, hi = time_range if time_range is not None else (-math.inf, math.inf)

    samples: list[Sample] = []
    start = end = None
    for si, s in enumerate(samples_in):
        where = f"samples[{si}]"
        if type(s) is not dict:
            raise err(where, "an object", s)
        stack_in = s.get("stack")
        if type(stack_in) is not list or not stack_in:
            raise err(f"{where}.stack", "a non-empty list of PCs, leaf first", stack_in)
        if len(stack_in) > MAX_STACK_DEPTH:
            raise err(f"{where}.stack", f"at most {MAX_STACK_DEPTH} frames",
                      f"{len(stack_in)} frames")
        if set(map(type, stack_in)) == _INT_ONLY and min(stack_in) >= 0:
            # the common case: plain PCs (orjson keeps ints within 64 bits)
            x = stack_in[0]
            stack = [leaf_get(x) or leaf_pc(x)]
            if len(stack_in) > 1:
                stack += [caller_get(x) or caller_pc(x) for x in islice(stack_in, 1, None)]
        else:
            stack = [frames.entry(item, pos, f"{where}.stack[{pos}]")
                     for pos, item in enumerate(stack_in)]
        count = s.get("count", 1)
        if type(count) is not int or not 0 <= count <= MAX_COUNT:
            raise err(f"{where}.count", "an integer 0..2^53", count)
        ts = s.get("timestamp")
        if ts is not None:
            if type(ts) not in (int, float) or not math.isfinite(ts):
                raise err(f"{where}.timestamp", "a number (unix seconds)", ts)
            if not lo <= ts <= hi:
                raise err(f"{where}.timestamp",
                          f"unix seconds between {lo:.0f} and {hi:.0f} (the agent's clock?)", ts)
            ts = float(ts)
            if start is None:
                start = end = ts
            elif ts < start:
                start = ts
            elif ts > end:
                end = ts
        thread = s.get("thread")
        if thread is not None:
            thread = _text(thread, f"{where}.thread", err)
        labels = s.get("labels")
        samples.append(Sample(stack=tuple(stack), count=count, timestamp=ts, thread=thread,
                              labels=_labels(labels, f"{where}.labels", err) if labels else {}))
    if not samples:
        raise err("samples", "at least one sample", [])
    name, plugin = doc.get("name"), doc.get("plugin")
    return Profile(samples=samples, unit="samples",
                   name=_text(name, "name", err) if name is not None else None,
                   plugin=_text(plugin, "plugin", err) if plugin is not None else None,
                   labels=_labels(doc.get("labels"), "labels", err),
                   start=start, end=end, source=source)


def looks_like_agent_json(head: bytes) -> bool:
    return head.lstrip()[:1] == b"{"


# --------------------------------------------------------------------------------------
# Columnar fast path: the common batch (stacks of plain integer PCs) as arrays.

@dataclass(slots=True)
class AgentColumns:
    """A validated batch whose stacks are all plain PCs, flattened (leaf first per sample).

    ``module[k]`` is the index in ``modules`` of the text range holding PC ``k`` (-1: a host
    PC), ``offset[k]`` the PC minus that text base (the PC itself for host PCs); sample ``i``
    holds positions ``starts[i]:starts[i + 1]``. Same meaning and checks as
    :func:`parse_agent_json`, which gives the error (naming the field) when this returns None."""

    modules: list[str]
    module: Any
    offset: Any
    starts: Any
    counts: Any
    timestamps: Any                    # float64, NaN where absent
    threads: list[str | None]
    labels: list[dict[str, str]]
    plugin: str | None
    name: str | None
    batch_labels: dict[str, str]
    start: float | None
    end: float | None

    def __len__(self) -> int:
        return len(self.counts)


def parse_agent_columns(data: bytes, source: str = "<agent json>", *,
                        time_range: tuple[float, float] | None = None) -> AgentColumns | None:
    """The batch as :class:`AgentColumns`, or None when it is not the plain-PC common case
    or anything in it is invalid (then :func:`parse_agent_json` names the problem)."""
    import numpy as np

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict:
        return None
    samples_in, modules = doc.get("samples"), doc.get("modules", [])
    if type(samples_in) is not list or not samples_in or type(modules) is not list:
        return None
    if set(map(type, samples_in)) != {dict}:
        return None
    err = _Err(source)
    try:                               # the small parts through the exact checks
        bases: list[tuple[int, int | None, str]] = []
        for i, m in enumerate(modules):
            if type(m) is not dict:
                return None
            ident = m.get("id", m.get("name"))
            if not isinstance(ident, str) or not ident:
                return None
            _text(ident, "", err)
            if "space" in m and (not isinstance(m["space"], str) or m["space"] not in _SPACES):
                return None
            if "text_base" in m:
                size = _int(m["text_size"], "", err) if "text_size" in m else None
                bases.append((_int(m["text_base"], "", err), size, ident))
        batch_labels = _labels(doc.get("labels"), "labels", err)
        name, plugin = doc.get("name"), doc.get("plugin")
        name = _text(name, "name", err) if name is not None else None
        plugin = _text(plugin, "plugin", err) if plugin is not None else None
    except LogFormatError:
        return None
    stacks = [s.get("stack") for s in samples_in]
    if set(map(type, stacks)) != {list}:
        return None
    lens = list(map(len, stacks))
    if min(lens) < 1 or max(lens) > MAX_STACK_DEPTH:
        return None
    flat = list(chain.from_iterable(stacks))
    if set(map(type, flat)) != _INT_ONLY:
        return None
    try:                               # a negative PC or one past 2^64 - 1 overflows uint64
        pcs = np.array(flat, dtype=np.uint64)
    except OverflowError:
        return None
    counts = [s.get("count", 1) for s in samples_in]
    if set(map(type, counts)) != _INT_ONLY or min(counts) < 0 or max(counts) > MAX_COUNT:
        return None
    stamps = [s.get("timestamp") for s in samples_in]
    st_types = set(map(type, stamps))
    if not st_types <= {int, float, type(None)}:
        return None
    ts = np.array([math.nan if t is None else t for t in stamps], dtype=np.float64)
    present = ts[~np.isnan(ts)]
    if len(present):
        if not np.isfinite(present).all():
            return None
        if time_range is not None and (present.min() < time_range[0]
                                       or present.max() > time_range[1]):
            return None
    threads = [s.get("thread") for s in samples_in]
    if not set(map(type, threads)) <= {str, type(None)}:
        return None
    if any(t is not None and len(t) > MAX_TEXT for t in set(threads)):
        return None
    raw_labels = [s.get("labels") for s in samples_in]
    if any(raw_labels):
        try:
            labels = [_labels(lb, "", err) if lb else {} for lb in raw_labels]
        except LogFormatError:
            return None
    else:
        labels = [{}] * len(samples_in)
    module = np.full(len(pcs), -1, dtype=np.int32)
    offset = pcs.copy()
    bases.sort()
    idents = []
    if bases:
        bstart = np.array([b[0] for b in bases], dtype=np.uint64)
        k = np.searchsorted(bstart, pcs, side="right").astype(np.int64) - 1
        for j, (base, size, ident) in enumerate(bases):
            sel = k == j
            if size is not None:
                sel &= pcs < np.uint64(min(base + size, MAX_U64))
            module[sel] = j
            offset[sel] = pcs[sel] - np.uint64(base)
            idents.append(ident)
    starts = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    return AgentColumns(
        modules=idents, module=module, offset=offset, starts=starts,
        counts=np.array(counts, dtype=np.int64), timestamps=ts, threads=threads,
        labels=labels, plugin=plugin, name=name, batch_labels=batch_labels,
        start=float(present.min()) if len(present) else None,
        end=float(present.max()) if len(present) else None)

"""pprof ``profile.proto`` (perftools.profiles, usually gzipped) → Profile, and back.

Decoding and encoding use the ``protobuf`` package with the message types declared below
from the published schema (github.com/google/pprof ``proto/profile.proto``), so no generated
code and no ``protoc`` are needed.

Reading (:func:`parse_pprof`), validated like every input:

- the body may be gzip-compressed (inflated with a cap of :data:`MAX_INFLATED` bytes: no
  gzip bomb) or raw protobuf;
- the sample value used is the ``default_sample_type`` when set, else a type named
  ``samples``/``sample``/``count``, else the first; values are integers ``0 <= v <= 2**53``;
- every ``location_id``/``function_id``/string index must exist (else LogFormatError naming
  ``sample[i].location_id[j]`` …); stacks are at most ``MAX_STACK_DEPTH`` entries;
- a location with lines becomes one RawFrame per line (``line[0]`` innermost, as pprof
  stores inline chains) carrying the function name; a location with only an address becomes
  a native frame of its mapping (a Wasm module file, by its suffix, becomes a ``native``
  text-offset frame resolved against the plugin's AOT module; anything else is a host frame);
- string labels become sample labels (``thread``/``thread_name`` → thread); the profile's
  ``time_nanos`` becomes each sample's timestamp.

Writing (:func:`write_pprof`): a SymbolizedProfile → gzipped ``profile.proto`` with one
``Function`` per (name, file), one ``Location`` per inline chain (``line`` innermost first),
sample type ``samples/count`` (or the profile's time unit), labels ``thread`` and ``plugin``.
"""

from __future__ import annotations

import gzip
import zlib
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from wasmprof.errors import LogFormatError
from wasmprof.model import AddressSpace, Profile, RawFrame, Sample

MAX_INFLATED = 512 << 20
MAX_STACK_DEPTH = 1024
MAX_VALUE = 1 << 53
_WASM_SUFFIXES = (".wasm", ".aot", ".cwasm", ".aot.wasm")

# (message, [(field name, number, type, repeated)]) — profile.proto, proto3
_T = {"u64": 4, "i64": 3, "str": 9, "bool": 8, "msg": 11}
_SCHEMA: list[tuple[str, list[tuple[str, int, str, bool, str | None]]]] = [
    ("ValueType", [("type", 1, "i64", False, None), ("unit", 2, "i64", False, None)]),
    ("Label", [("key", 1, "i64", False, None), ("str", 2, "i64", False, None),
               ("num", 3, "i64", False, None), ("num_unit", 4, "i64", False, None)]),
    ("Sample", [("location_id", 1, "u64", True, None), ("value", 2, "i64", True, None),
                ("label", 3, "msg", True, "Label")]),
    ("Mapping", [("id", 1, "u64", False, None), ("memory_start", 2, "u64", False, None),
                 ("memory_limit", 3, "u64", False, None), ("file_offset", 4, "u64", False, None),
                 ("filename", 5, "i64", False, None), ("build_id", 6, "i64", False, None),
                 ("has_functions", 7, "bool", False, None),
                 ("has_filenames", 8, "bool", False, None),
                 ("has_line_numbers", 9, "bool", False, None),
                 ("has_inline_frames", 10, "bool", False, None)]),
    ("Line", [("function_id", 1, "u64", False, None), ("line", 2, "i64", False, None),
              ("column", 3, "i64", False, None)]),
    ("Location", [("id", 1, "u64", False, None), ("mapping_id", 2, "u64", False, None),
                  ("address", 3, "u64", False, None), ("line", 4, "msg", True, "Line"),
                  ("is_folded", 5, "bool", False, None)]),
    ("Function", [("id", 1, "u64", False, None), ("name", 2, "i64", False, None),
                  ("system_name", 3, "i64", False, None), ("filename", 4, "i64", False, None),
                  ("start_line", 5, "i64", False, None)]),
    ("Profile", [("sample_type", 1, "msg", True, "ValueType"), ("sample", 2, "msg", True, "Sample"),
                 ("mapping", 3, "msg", True, "Mapping"), ("location", 4, "msg", True, "Location"),
                 ("function", 5, "msg", True, "Function"), ("string_table", 6, "str", True, None),
                 ("drop_frames", 7, "i64", False, None), ("keep_frames", 8, "i64", False, None),
                 ("time_nanos", 9, "i64", False, None), ("duration_nanos", 10, "i64", False, None),
                 ("period_type", 11, "msg", False, "ValueType"), ("period", 12, "i64", False, None),
                 ("comment", 13, "i64", True, None), ("default_sample_type", 14, "i64", False, None)]),
]


@lru_cache(maxsize=1)
def profile_class() -> Any:
    """The ``perftools.profiles.Profile`` message class (built once from :data:`_SCHEMA`)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="wasmprof_pprof_profile.proto",
                                             package="perftools.profiles", syntax="proto3")
    for msg, fields in _SCHEMA:
        m = fdp.message_type.add(name=msg)
        for name, number, typ, repeated, ref in fields:
            f = m.field.add(name=name, number=number, type=_T[typ],
                            label=3 if repeated else 1)
            if ref:
                f.type_name = f".perftools.profiles.{ref}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("perftools.profiles.Profile"))


def _inflate(data: bytes, source: str) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, MAX_INFLATED)
    except zlib.error as e:
        raise LogFormatError(f"bad gzip data: {e}", source=source) from None
    if d.unconsumed_tail:
        raise LogFormatError("gzip body inflates past the cap", source=source,
                             expected=f"at most {MAX_INFLATED >> 20} MiB of profile.proto")
    return out


def parse_pprof(data: bytes, source: str = "<pprof>") -> Profile:
    from google.protobuf.message import DecodeError

    raw = _inflate(data, source)
    msg = profile_class()()
    try:
        msg.ParseFromString(raw)
    except DecodeError as e:
        raise LogFormatError(f"not a pprof profile.proto: {e}", source=source,
                             expected="gzipped or raw perftools.profiles.Profile") from None
    strings = list(msg.string_table)
    if strings and strings[0] != "":
        raise LogFormatError("bad pprof string table", source=source,
                             expected="string_table[0] == ''", found=repr(strings[0])[:40])

    def s(i: int, where: str) -> str:
        if not 0 <= i < len(strings):
            raise LogFormatError(f"bad pprof field {where}", source=source,
                                 expected=f"a string index < {len(strings)}", found=str(i))
        return strings[i]

    types = [(s(v.type, f"sample_type[{i}].type"), s(v.unit, f"sample_type[{i}].unit"))
             for i, v in enumerate(msg.sample_type)]
    if not types:
        raise LogFormatError("pprof profile without sample_type", source=source)
    idx = 0
    if msg.default_sample_type:
        want = s(msg.default_sample_type, "default_sample_type")
        idx = next((i for i, (t, _) in enumerate(types) if t == want), 0)
    else:
        idx = next((i for i, (t, _) in enumerate(types) if t in ("samples", "sample", "count")), 0)
    unit = types[idx][1]
    unit = "samples" if unit in ("count", "", "samples") else unit

    functions = {f.id: (s(f.name, f"function[{i}].name") or s(f.system_name,
                                                               f"function[{i}].system_name"))
                 for i, f in enumerate(msg.function)}
    mappings = {m.id: m for m in msg.mapping}
    locations: dict[int, tuple[RawFrame, ...]] = {}
    callers: dict[int, tuple[RawFrame, ...]] = {}
    for i, loc in enumerate(msg.location):
        frames: list[RawFrame] = []
        for j, ln in enumerate(loc.line):
            if ln.function_id not in functions:
                raise LogFormatError(f"bad pprof field location[{i}].line[{j}].function_id",
                                     source=source, expected="an id of a function",
                                     found=str(ln.function_id))
            frames.append(RawFrame(index=0, space=AddressSpace.NATIVE,
                                   printed_name=functions[ln.function_id] or "[unknown]",
                                   native=False))
        if not frames:
            m = mappings.get(loc.mapping_id)
            name = PurePosixPath(s(m.filename, f"mapping {m.id}.filename")).name if m else ""
            if m is not None and name.endswith(_WASM_SUFFIXES):
                off = loc.address - m.memory_start + m.file_offset
                frames.append(RawFrame(index=0, space=AddressSpace.NATIVE, offset=off,
                                       module=name, raw=hex(loc.address)))
            else:
                frames.append(RawFrame(index=0, space=AddressSpace.NATIVE, offset=loc.address,
                                       native=True, module=name or None, raw=hex(loc.address)))
        locations[loc.id] = tuple(frames)
        callers[loc.id] = tuple(RawFrame(index=1, space=f.space, offset=f.offset,
                                         printed_name=f.printed_name, module=f.module,
                                         native=f.native, raw=f.raw) for f in frames)
    ts = msg.time_nanos / 1e9 if msg.time_nanos else None
    samples: list[Sample] = []
    interned: dict[tuple[int, ...], tuple[RawFrame, ...]] = {}
    for i, smp in enumerate(msg.sample):
        if len(smp.value) != len(types):
            raise LogFormatError(f"bad pprof field sample[{i}].value", source=source,
                                 expected=f"{len(types)} values (one per sample_type)",
                                 found=str(len(smp.value)))
        v = smp.value[idx]
        if not 0 <= v <= MAX_VALUE:
            raise LogFormatError(f"bad pprof field sample[{i}].value[{idx}]", source=source,
                                 expected="an integer 0..2^53", found=str(v))
        ids = tuple(smp.location_id)
        if not ids or len(ids) > MAX_STACK_DEPTH:
            raise LogFormatError(f"bad pprof field sample[{i}].location_id", source=source,
                                 expected=f"1..{MAX_STACK_DEPTH} locations", found=str(len(ids)))
        stack = interned.get(ids)
        if stack is None:
            parts: list[RawFrame] = []
            for j, lid in enumerate(ids):
                table = locations if j == 0 else callers
                if lid not in table:
                    raise LogFormatError(f"bad pprof field sample[{i}].location_id[{j}]",
                                         source=source, expected="an id of a location",
                                         found=str(lid))
                frs = table[lid]
                parts += frs if j == 0 else callers[lid]
            stack = interned[ids] = tuple(parts)
        labels: dict[str, str] = {}
        thread = None
        for lb in smp.label:
            if lb.str:
                k, val = s(lb.key, f"sample[{i}].label.key"), s(lb.str, f"sample[{i}].label.str")
                if k in ("thread", "thread_name"):
                    thread = val
                else:
                    labels[k[:200]] = val[:200]
        if v:
            samples.append(Sample(stack=stack, count=int(v), timestamp=ts, thread=thread,
                                  labels=labels))
    end = ts + msg.duration_nanos / 1e9 if ts is not None else None
    return Profile(samples=samples, unit=unit, name=None, source=source, start=ts, end=end,
                   notes=[f"pprof sample type {types[idx][0]}/{types[idx][1]}"]
                   if len(types) > 1 else [])


def write_pprof(profile: Any) -> bytes:
    """Gzipped profile.proto of a SymbolizedProfile."""
    from wasmprof.profiles import frame_label

    msg = profile_class()()
    strings: dict[str, int] = {"": 0}

    def sid(text: str | None) -> int:
        text = text or ""
        i = strings.get(text)
        if i is None:
            i = strings[text] = len(strings)
        return i

    unit = profile.unit
    vt = msg.sample_type.add()
    vt.type, vt.unit = (sid("samples"), sid("count")) if unit == "samples" else \
        (sid("time"), sid(unit))
    functions: dict[tuple[str, str | None], int] = {}
    locations: dict[tuple, int] = {}

    def location(chain: list[Any]) -> int:
        key = tuple((frame_label(f), f.file, f.line or 0, f.column or 0) for f in chain)
        lid = locations.get(key)
        if lid is None:
            lid = locations[key] = len(locations) + 1
            loc = msg.location.add(id=lid)
            for name, file, line, col in key:
                fk = (name, file)
                fid = functions.get(fk)
                if fid is None:
                    fid = functions[fk] = len(functions) + 1
                    msg.function.add(id=fid, name=sid(name), system_name=sid(name),
                                     filename=sid(file))
                loc.line.add(function_id=fid, line=line, column=col)
        return lid

    stacks: dict[int, list[int]] = {}
    for smp in profile.samples:
        ids = stacks.get(id(smp.stack))
        if ids is None:
            ids, chain = [], []
            for f in smp.stack:
                chain.append(f)
                if not f.inlined:
                    ids.append(location(chain))
                    chain = []
            if chain:
                ids.append(location(chain))
            stacks[id(smp.stack)] = ids
        out = msg.sample.add(location_id=ids, value=[smp.count])
        if smp.thread:
            out.label.add(key=sid("thread"), str=sid(smp.thread))
        plugin = smp.labels.get("plugin") if smp.labels else None
        if plugin:
            out.label.add(key=sid("plugin"), str=sid(plugin))
    if profile.start is not None:
        msg.time_nanos = int(profile.start * 1e9)
        if profile.end is not None and profile.end >= profile.start:
            msg.duration_nanos = int((profile.end - profile.start) * 1e9)
    msg.string_table.extend(strings)
    return gzip.compress(msg.SerializeToString(), 6)


def looks_like_pprof(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b"

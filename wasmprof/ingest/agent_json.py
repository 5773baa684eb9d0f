"""JSON sample batches from an in-process agent → Profile.

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
optional ``"func_index"``. Any shape error raises
:class:`~wasmprof.errors.LogFormatError` naming the JSON path (``samples[3].stack[1]``).
"""

from __future__ import annotations

import bisect
from typing import Any

import orjson

from wasmprof.errors import LogFormatError
from wasmprof.model import AddressSpace, Profile, RawFrame, Sample


class _Err:
    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, path: str, expected: str, found: Any) -> LogFormatError:
        text = repr(found)
        return LogFormatError(f"bad agent sample batch field {path}", source=self.source,
                              expected=expected, found=text[:80])


def _int(value: Any, path: str, err: _Err) -> int:
    if isinstance(value, bool):
        raise err(path, "an integer or hex string", value)
    if isinstance(value, int):
        if value < 0:
            raise err(path, "a non-negative integer", value)
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.lower().startswith("0x") else int(value)
        except ValueError:
            pass
    raise err(path, "an integer or hex string", value)


def parse_agent_json(data: bytes, source: str = "<agent json>") -> Profile:
    err = _Err(source)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise LogFormatError(f"not JSON: {e}", source=source, offset=getattr(e, "pos", None)) from e
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
        if "text_base" in m:
            size = _int(m["text_size"], f"modules[{i}].text_size", err) if "text_size" in m else None
            bases.append((_int(m["text_base"], f"modules[{i}].text_base", err), size, ident))
    bases.sort()
    starts = [b[0] for b in bases]

    def pc_frame(pc: int, pos: int, raw: str) -> RawFrame:
        k = bisect.bisect_right(starts, pc) - 1
        if k >= 0:
            base, size, ident = bases[k]
            if size is None or pc < base + size:
                return RawFrame(index=pos, space=AddressSpace.NATIVE, offset=pc - base,
                                module=ident, raw=raw)
        return RawFrame(index=pos, space=AddressSpace.NATIVE, offset=pc, native=True, raw=raw)

    spaces = {s.value for s in AddressSpace}
    samples: list[Sample] = []
    start = end = None
    for si, s in enumerate(samples_in):
        where = f"samples[{si}]"
        if not isinstance(s, dict):
            raise err(where, "an object", s)
        stack_in = s.get("stack")
        if not isinstance(stack_in, list) or not stack_in:
            raise err(f"{where}.stack", "a non-empty list of PCs, leaf first", stack_in)
        stack = []
        for pos, item in enumerate(stack_in):
            p = f"{where}.stack[{pos}]"
            if isinstance(item, dict):
                if "pc" in item:
                    stack.append(pc_frame(_int(item["pc"], p + ".pc", err), pos, str(item["pc"])))
                elif "name" in item and "offset" not in item:
                    name = item["name"]
                    if not isinstance(name, str):
                        raise err(p + ".name", "a string", name)
                    stack.append(RawFrame(index=pos, space=AddressSpace.NATIVE, printed_name=name,
                                          native=True, module=item.get("module"), raw=name))
                elif "offset" in item or "func_index" in item:
                    space = item.get("space", "file")
                    if space not in spaces:
                        raise err(p + ".space", "one of " + ", ".join(sorted(spaces)), space)
                    mod = item.get("module")
                    if mod is not None and not isinstance(mod, str):
                        raise err(p + ".module", "a string", mod)
                    stack.append(RawFrame(
                        index=pos, space=AddressSpace(space),
                        offset=_int(item["offset"], p + ".offset", err) if "offset" in item else None,
                        func_index=(_int(item["func_index"], p + ".func_index", err)
                                    if "func_index" in item else None),
                        printed_name=item.get("name") if isinstance(item.get("name"), str) else None,
                        module=mod, raw=None))
                else:
                    raise err(p, "a PC or an object with pc, name or module+offset", item)
            else:
                stack.append(pc_frame(_int(item, p, err), pos, str(item)))
        count = _int(s.get("count", 1), f"{where}.count", err)
        ts = s.get("timestamp")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float))):
            raise err(f"{where}.timestamp", "a number", ts)
        labels = s.get("labels") or {}
        if not isinstance(labels, dict):
            raise err(f"{where}.labels", "an object", labels)
        thread = s.get("thread")
        if thread is not None and not isinstance(thread, str):
            raise err(f"{where}.thread", "a string", thread)
        if ts is not None:
            start = ts if start is None else min(start, ts)
            end = ts if end is None else max(end, ts)
        samples.append(Sample(stack=tuple(stack), count=count,
                              timestamp=float(ts) if ts is not None else None, thread=thread,
                              labels={str(k): str(v) for k, v in labels.items()}))
    if not samples:
        raise err("samples", "at least one sample", [])
    labels = doc.get("labels") or {}
    if not isinstance(labels, dict):
        raise err("labels", "an object", labels)
    name, plugin = doc.get("name"), doc.get("plugin")
    return Profile(samples=samples, unit="samples",
                   name=name if isinstance(name, str) else None,
                   plugin=plugin if isinstance(plugin, str) else None,
                   labels={str(k): str(v) for k, v in labels.items()},
                   start=start, end=end, source=source)


def looks_like_agent_json(head: bytes) -> bool:
    return head.lstrip()[:1] == b"{"

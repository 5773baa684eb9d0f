"""Source maps for WebAssembly (AssemblyScript ``--sourceMap``, Emscripten ``-gsource-map``).

A Wasm source map is a Source Map v3 JSON whose mappings sit on one generated line: the
generated column is the **file offset** of an instruction in the ``.wasm``. Lookups take
the greatest mapping at or below an offset (npm ``source-map``'s ``GREATEST_LOWER_BOUND``),
so an instruction between two mappings belongs to the earlier one; a one-field segment
(offset only) marks code with no source. Segments at the same offset are ordered as npm's
``source-map`` orders them (mapped ones first), so the last one there answers.

:meth:`SourceMap.parse` validates the whole document at the door and raises
:class:`SourceMapError` (file, character offset into ``mappings``, expected, found) for
anything it cannot use: not JSON, not version 3, an index map (``sections``), a bad VLQ
digit, a segment of 2, 3 or more than 5 fields, indexes outside ``sources``/``names``,
negative positions, more than one generated line (not a Wasm map).

Positions come out as DWARF gives them: ``line`` and ``column`` 1-based (the map stores
both 0-based); ``file`` is the ``sources`` entry as written (``sourceRoot`` is kept apart:
toolchains fill it with output-relative prefixes such as AssemblyScript's ``./plugin``).

Hand-written on purpose (about fifty lines of VLQ): the maintained PyPI option (Sentry's
``symbolic``) carries a 78 MB native library for this; the decoder is checked against
Mozilla's npm ``source-map`` at every mapping in ``tests/test_sourcemap.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from wasmprof.errors import WasmprofError

MAX_MAP_BYTES = 64 << 20
_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


class SourceMapError(WasmprofError):
    """A source map that cannot be used (see :meth:`SourceMap.parse`)."""


@dataclass(frozen=True, slots=True)
class Mapping:
    """One original position: ``file``, 1-based ``line``/``column``, ``name`` when the map
    carries one, ``offset`` the file offset the mapping starts at."""

    file: str
    line: int
    column: int
    name: str | None
    offset: int


@dataclass(slots=True)
class SourceMap:
    """A decoded Wasm source map (see the module doc). ``where`` names it in messages."""

    where: str
    sources: list[str]
    names: list[str]
    contents: list[str | None]
    source_root: str | None = None
    offsets: array = field(default_factory=lambda: array("I"))
    src: array = field(default_factory=lambda: array("i"))        # -1: unmapped segment
    line: array = field(default_factory=lambda: array("I"))
    col: array = field(default_factory=lambda: array("I"))
    name: array = field(default_factory=lambda: array("i"))

    @classmethod
    def parse(cls, data: bytes | str, where: str) -> "SourceMap":
        if len(data) > MAX_MAP_BYTES:
            raise SourceMapError("source map too large", source=where,
                                 expected=f"at most {MAX_MAP_BYTES} bytes",
                                 found=f"{len(data)} bytes")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise SourceMapError(f"not JSON ({e})", source=where,
                                 expected="a source map (JSON)") from None
        if not isinstance(doc, dict):
            raise SourceMapError("not a source map", source=where, expected="a JSON object",
                                 found=type(doc).__name__)
        if "sections" in doc:
            raise SourceMapError("index source maps are not supported", source=where,
                                 expected="a flat source map (mappings)", found="sections")
        if doc.get("version") != 3:
            raise SourceMapError("unsupported source map version", source=where,
                                 expected="version 3", found=repr(doc.get("version"))[:40])
        sources, names = doc.get("sources"), doc.get("names", [])
        mappings = doc.get("mappings")
        contents = doc.get("sourcesContent") or []
        root = doc.get("sourceRoot")
        for key, val, kind in (("sources", sources, list), ("names", names, list),
                               ("mappings", mappings, str), ("sourcesContent", contents, list)):
            if not isinstance(val, kind) or (kind is list and not all(
                    isinstance(x, str) or (key == "sourcesContent" and x is None)
                    for x in val)):
                raise SourceMapError(f"bad '{key}'", source=where,
                                     expected="a list of strings" if kind is list else
                                     "a string", found=type(val).__name__)
        if root is not None and not isinstance(root, str):
            raise SourceMapError("bad 'sourceRoot'", source=where, expected="a string",
                                 found=type(root).__name__)
        sm = cls(where, list(sources), list(names),
                 [c for c in contents] + [None] * (len(sources) - len(contents)), root)
        sm._decode(mappings)
        return sm

    def _decode(self, mappings: str) -> None:
        if mappings.rstrip(";").count(";"):
            raise SourceMapError("mappings span several generated lines: not a WebAssembly "
                                 "source map", source=self.where, expected="one line of "
                                 "mappings (columns = file offsets)")
        text = mappings.rstrip(";")
        offsets, src_a, line_a, col_a, name_a = self.offsets, self.src, self.line, self.col, \
            self.name
        b64 = _B64
        nsrc, nnames = len(self.sources), len(self.names)
        gen = src = line = col = name = 0
        pos = 0
        ordered = True
        last = -1
        for seg in text.split(","):
            start = pos
            pos += len(seg) + 1
            if not seg:
                continue
            vals = []
            value = shift = 0
            for k, ch in enumerate(seg):
                digit = b64.get(ch)
                if digit is None:
                    raise SourceMapError("bad character in mappings", source=self.where,
                                         offset=start + k, expected="base64 VLQ digits",
                                         found=repr(ch))
                value += (digit & 31) << shift
                if digit & 32:
                    shift += 5
                    continue
                vals.append(-(value >> 1) if value & 1 else value >> 1)
                value = shift = 0
            n = len(vals)
            if shift or n not in (1, 4, 5):
                raise SourceMapError("bad mapping segment", source=self.where, offset=start,
                                     expected="1, 4 or 5 VLQ fields",
                                     found=f"{n} fields" + (" (cut short)" if shift else ""))
            gen += vals[0]
            if gen < 0:
                raise SourceMapError("negative generated offset", source=self.where,
                                     offset=start, found=str(gen))
            if gen <= last:
                ordered = False
            last = gen
            if n == 1:
                offsets.append(gen)
                src_a.append(-1)
                line_a.append(0)
                col_a.append(0)
                name_a.append(-1)
                continue
            src += vals[1]
            line += vals[2]
            col += vals[3]
            if not 0 <= src < nsrc or line < 0 or col < 0:
                raise SourceMapError("mapping outside the map's sources", source=self.where,
                                     offset=start, expected=f"source index < {nsrc}, "
                                     "line and column >= 0",
                                     found=f"source {src}, line {line}, column {col}")
            nm = -1
            if n == 5:
                name += vals[4]
                if not 0 <= name < nnames:
                    raise SourceMapError("mapping names a missing name", source=self.where,
                                         offset=start, expected=f"name index < {nnames}",
                                         found=str(name))
                nm = name
            offsets.append(gen)
            src_a.append(src)
            line_a.append(line)
            col_a.append(col)
            name_a.append(nm)
        if not ordered:
            # npm source-map's order: by offset, mapped segments before an unmapped one at
            # the same offset (a lookup takes the last one there)
            order = sorted(range(len(offsets)), key=lambda i: (
                offsets[i], src_a[i] < 0, src_a[i], line_a[i], col_a[i], name_a[i]))
            for a in ("offsets", "src", "line", "col", "name"):
                old = getattr(self, a)
                setattr(self, a, array(old.typecode, (old[i] for i in order)))

    def __len__(self) -> int:
        return len(self.offsets)

    def lookup(self, offset: int, lowest: int = 0) -> Mapping | None:
        """The mapping holding file ``offset``: the greatest one at or below it, if it is at
        or above ``lowest`` (pass the function body's start: a mapping of the previous
        function never applies) and not an unmapped segment."""
        i = bisect_right(self.offsets, offset) - 1
        if i < 0 or self.offsets[i] < lowest:
            return None
        s = self.src[i]
        if s < 0:
            return None
        n = self.name[i]
        return Mapping(self.sources[s], self.line[i] + 1, self.col[i] + 1,
                       self.names[n] if n >= 0 else None, self.offsets[i])

    def content(self, file: str) -> str | None:
        """The embedded source text (``sourcesContent``) of ``file``, when the map has it."""
        try:
            return self.contents[self.sources.index(file)]
        except (ValueError, IndexError):
            return None


def decode_data_url(url: str, where: str) -> bytes:
    """The bytes of a ``data:`` URL (base64 or percent-encoded)."""
    head, sep, body = url.partition(",")
    if not sep or not head.lower().startswith("data:"):
        raise SourceMapError("bad data: URL", source=where, expected="data:[<type>][;base64],"
                             "<data>", found=url[:40])
    if head.lower().endswith(";base64"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise SourceMapError("bad base64 in data: URL", source=where,
                                 expected="base64") from None
    return unquote_to_bytes(body)

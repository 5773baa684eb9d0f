"""``wasmprof addr2line``'s default text for every code address of a module, pre-rendered
once per module and cached next to its index (the warm path is then a bisect per address
and a join of strings).

A :class:`TextTable` is built from a complete :class:`~wasmprof.addr2line.chains.ChainLookup`
by asking it what :meth:`ChainLookup.lookup` composes an answer from: per segment its
innermost function, inline mark and callers (:meth:`ChainLookup.segment`), per line row
its location and status (:meth:`ChainLookup.row`). The address space is cut into *slots*
(:meth:`ChainLookup.slots`: between two consecutive segment starts, line rows, body starts
or ends every address has the same answer); each slot prints either

- the pieces of its segment and row (``": " fn " at " where inlined status callers``), or
- a text of its own: the function-only answer of a segment where DWARF is stale or the
  chain unsure, rendered from :meth:`Resolver.resolve` at the slot's first address (the
  answer is the same for every address of the slot), or
- nothing: the address is resolved on its own (no DWARF scope, outside every body).

Callers' lines are joined by :data:`~wasmprof.addr2line.text.PAD`, which becomes the
newline and indentation once the address's width is known. Texts are therefore exactly
what rendering ``resolve``'s frames prints (checked over every instruction of the
toolchain builds in ``tests/test_toolchain_modules.py``).

On disk (``<index>.text``): ``MAGIC``, a JSON header (format version, the index's
identity and DWARF hash, a digest of the function layout, counts), the strings joined by
``\\x1f`` (names are escaped, so no string holds one), the int32 arrays, and a CRC32.
:func:`load_table` returns None for a missing, damaged or other-version file.
"""

from __future__ import annotations

import hashlib
import json
import operator
import struct
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import chain, compress, repeat
from pathlib import Path

from wasmprof.addr2line.chains import ChainLookup
from wasmprof.addr2line.hygiene import CodeLayout
from wasmprof.addr2line.index import write_atomic
from wasmprof.addr2line.text import PAD, clean, frames_text, pad_for, status_text, text_frame, \
    where

FORMAT_VERSION = 1
MAGIC = b"WPRFTXT\0"
SEP = "\x1f"
ALONE = -1        # slot_part: resolve the address on its own
DENSE_MAX = 1 << 22   # code sections up to 4 MiB also get an address -> slot array
_INT = struct.Struct("=i")              # as array("i") stores them
_ARRAYS = (("bounds", "q"), ("slot_part", "i"), ("slot_tail", "i"), ("dense", "i"))


class TextTable:
    """Slots (``bounds``; slot k holds the addresses in ``[bounds[k-1], bounds[k])``;
    ``dense[code]`` is the slot of a code address when the code section is small) and per
    slot what is printed after the address: ``parts[slot_part[k]]`` (the innermost frame,
    or :data:`ALONE`) then ``tails[slot_tail[k]]`` (its callers, each on a line of its own
    indented for addresses ``width`` characters wide, and the newline)."""

    __slots__ = ("width", "bounds", "slot_part", "slot_tail", "dense", "parts", "tails",
                 "_tails")

    def __init__(self, width: int, parts: list[str], tails: list[str], arrays: dict) -> None:
        self.width = width
        self.parts = parts
        self.tails = tails
        self.bounds = arrays["bounds"]
        self.slot_part = arrays["slot_part"]
        self.slot_tail = arrays["slot_tail"]
        self.dense = arrays["dense"]
        self._tails: dict[int, list] = {}

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, chains: ChainLookup, resolve_code: Callable[[int], list],
              per_address_without_dwarf: bool = False) -> "TextTable":
        """The table of a complete lookup. ``resolve_code(code)``: the frames
        :meth:`Resolver.resolve` gives at a code address, for the slots whose answer is
        not an entry (the same for every address of the slot, except outside the bodies
        and, with ``per_address_without_dwarf`` (a source map), where DWARF has no
        scope: those addresses are resolved on their own)."""
        blk = chains.block
        lay = chains.layout
        end = max(lay.ends, default=0)
        width = len(hex(max(end - 1, 0)))
        pad = pad_for(width)
        tails: list[str] = ["\n"]
        tail_ids: dict[str, int] = {"\n": 0}

        def intern(text: str, table: list[str], ids: dict[str, int]) -> int:
            i = ids.get(text)
            if i is None:
                i = ids[text] = len(table)
                table.append(text)
            return i

        nseg = len(blk.seg_start)
        seg_pre = [""] * (nseg + 1)
        seg_inl = [""] * (nseg + 1)
        seg_tail = [0] * (nseg + 1)
        seg_mode = [0] * (nseg + 1)     # 1 entry, 0 no scope, 2 ghosts: the row decides,
        seg_reason: dict[int, str] = {}  # 3 a reason for the whole segment
        by_tail: dict[int, int] = {}
        for sg in range(1, nseg + 1):
            info = chains.segment(sg)
            if info is None:
                continue
            if info.__class__ is not tuple:
                seg_mode[sg] = 3
                seg_reason[sg] = info
                continue
            nm, _, tail, ghosts, _ = info
            seg_mode[sg] = 1 if ghosts < 0 else 2
            seg_pre[sg] = f": {clean(nm[0])} at "
            if nm[2]:
                seg_inl[sg] = " (inlined)"
            if tail:
                t = by_tail.get(id(tail))
                if t is None:
                    t = by_tail[id(tail)] = intern(pad + pad.join(
                        [text_frame((*x, None, None)) for x in tail]) + "\n", tails, tail_ids)
                seg_tail[sg] = t
        # per row its location (and status when not exact): rows with a file, a line and a
        # column formatted in C, line-0 rows (compiler-generated) as their file and the
        # status of the first of them, the few others as ChainLookup.row says
        rf, rl, rc = chains.row_columns()
        nr = len(rf)
        names = dict.fromkeys(rf)
        for f in names:
            names[f] = clean(blk.strings[f]) if f >= 0 else "??"
        file_of = list(map(names.__getitem__, rf))
        num = list(map(str, range(max(max(rl, default=0), max(rc, default=0)) + 1))) \
            if max(rl, default=0) < 1 << 20 and max(rc, default=0) < 1 << 20 else None
        row_loc = list(map(":".join, zip(file_of, map(num.__getitem__, rl),
                                         map(num.__getitem__, rc)))) if num is not None \
            else list(map("{}:{}:{}".format, file_of, rl, rc))
        row_status = [""] * nr
        zero = [rw for rw in compress(range(nr), map(operator.not_, rl)) if rf[rw] != -1]
        if zero:
            kind = chains.row(zero[0])
            line0 = status_text(kind[3], kind[4])
            for rw in zero:
                row_loc[rw] = file_of[rw]
                row_status[rw] = line0
        for rw in {*compress(range(nr), map(operator.not_, rc)),
                   *compress(range(nr), map((-1).__eq__, rf))}:
            file, line, col, status, reason = chains.row(rw)
            row_loc[rw] = where(file, line, col)
            row_status[rw] = status_text(status, reason)
        bounds, _ = chains.slots()
        firsts = [-1, *bounds]                    # slot k's first address: bounds[k-1]
        n = len(firsts)
        # slot k's segment and row: bisect_right(starts, bounds[k-1]), as a running max
        # over the bounds (every segment start and row address is one)
        slot_seg = _positions(blk.seg_start, bounds)
        slot_row = _positions(blk.row_addr, bounds)
        modes = list(map(seg_mode.__getitem__, slot_seg))
        # every slot as if its segment were an entry; the others are fixed below
        raw: list = list(map("".join, zip(map(seg_pre.__getitem__, slot_seg),
                                          map(row_loc.__getitem__, slot_row),
                                          map(seg_inl.__getitem__, slot_seg),
                                          map(row_status.__getitem__, slot_row))))
        slot_tail = list(map(seg_tail.__getitem__, slot_seg))
        raw[0] = None
        starts, ends = lay.starts, lay.ends
        memo: dict[tuple, tuple[str, int]] = {}
        for k in compress(range(1, n), map((1).__ne__, modes[1:])):
            mode = modes[k]
            sg = slot_seg[k]
            why = seg_reason.get(sg) if mode == 3 else None
            if mode == 2:
                ent = chains.lookup([firsts[k]])[0]
                if ent.__class__ is tuple:
                    continue                    # the ghost does not own this row
                mode, why = 3, ent              # a ghost may own this row: unsure
            code = firsts[k]
            bi = bisect_right(starts, code) - 1
            if bi < 0 or code >= ends[bi] or (mode == 0 and per_address_without_dwarf):
                raw[k] = None                   # ALONE
                continue
            key = (bi, why)
            got = memo.get(key)
            if got is None:
                first, sep, rest = frames_text(resolve_code(code))[:-1].partition(PAD)
                got = memo[key] = (first, intern(
                    pad + rest.replace(PAD, pad) + "\n" if sep else "\n", tails, tail_ids))
            raw[k], slot_tail[k] = got
        uniq = dict.fromkeys(raw)
        uniq.pop(None, None)
        parts = list(uniq)
        ids = dict(zip(parts, range(len(parts))))
        slot_part = list(map(ids.get, raw, repeat(ALONE)))
        dense = array("i")
        if bounds and 0 <= bounds[0] and bounds[-1] <= DENSE_MAX:
            lengths = map(operator.sub, bounds, [0, *bounds[:-1]])
            dense.frombytes(b"".join(map(bytes.__mul__, map(_INT.pack, range(len(bounds))),
                                         lengths)))
            dense.append(len(bounds))            # the slot of every address past the last
        return cls(width, parts, tails, {"bounds": bounds, "slot_part": slot_part,
                                         "slot_tail": slot_tail, "dense": dense})

    # -- rendering -----------------------------------------------------------------------
    def slots_of(self, codes: Sequence[int]) -> list[int]:
        """The slot of each code address."""
        dense = self.dense
        if dense:
            top = len(dense) - 1
            if codes and (min(codes) < 0 or max(codes) > top):
                return [dense[c] if 0 <= c < top else (dense[top] if c > 0 else 0)
                        for c in codes]
            return list(map(dense.__getitem__, codes))
        return list(map(bisect_right, repeat(self.bounds, len(codes)), codes))

    def tails_for(self, width: int, needed) -> list:
        """:attr:`tails` indented for ``width``-wide addresses (at least those ``needed``)."""
        if width == self.width:
            return self.tails
        got = self._tails.get(width)
        if got is None:
            got = self._tails[width] = [None] * len(self.tails)
        old, new = pad_for(self.width), pad_for(width)
        tails = self.tails
        for t in needed:
            if got[t] is None:
                got[t] = tails[t].replace(old, new)
        return got

    def render(self, values: Sequence[int], codes: Sequence[int],
               resolve: Callable[[int], list]) -> list[str]:
        """The text of every address, in chunks: ``values[i]`` as printed (hex), answered
        at code address ``codes[i]``; ``resolve(i)`` gives address i's frames where the
        table has no text for it (offset 0, no DWARF scope, outside every body)."""
        n = len(values)
        slots = self.slots_of(codes)
        ids = list(map(self.slot_part.__getitem__, slots))
        tids = list(map(self.slot_tail.__getitem__, slots))
        heads = list(map(hex, values))
        col = list(map(self.parts.__getitem__, ids))
        widths = list(map(len, heads))
        main = max(set(widths), key=widths.count) if n else self.width
        col_tail = list(map(self.tails_for(main, set(tids)).__getitem__, tids))
        by_width: dict[int, list[int]] = {}     # callers' indentation for other widths
        for i in compress(range(n), map(main.__ne__, widths)):
            by_width.setdefault(widths[i], []).append(i)
        for w, idx in by_width.items():
            got = map(self.tails_for(w, set(map(tids.__getitem__, idx))).__getitem__,
                      map(tids.__getitem__, idx))
            for i, t in zip(idx, got):
                col_tail[i] = t
        special = list(compress(range(n), map(ALONE.__eq__, ids))) if ALONE in ids else []
        if 0 in values:                     # offset 0 means "unknown": never shared
            special = sorted({*special, *compress(range(n), map(operator.not_, values))})
        for i in special:
            col[i] = frames_text(resolve(i)).replace(PAD, pad_for(widths[i]))
            col_tail[i] = ""
        step = 65536
        return ["".join(chain.from_iterable(zip(heads[lo:lo + step], col[lo:lo + step],
                                                col_tail[lo:lo + step])))
                for lo in range(0, n, step)]

    # -- (de)serialisation -------------------------------------------------------------
    def to_bytes(self, key: dict) -> bytes:
        blobs = [SEP.join(self.parts).encode("utf-8", "surrogatepass"),
                 SEP.join(self.tails).encode("utf-8", "surrogatepass")]
        arrays = [(name, self.dense if name == "dense" else array(code, getattr(self, name)))
                  for name, code in _ARRAYS]
        header = {"format": FORMAT_VERSION, **key, "width": self.width,
                  "lists": [[len(self.parts), len(blobs[0])], [len(self.tails), len(blobs[1])]],
                  "arrays": [[name, a.typecode, len(a)] for name, a in arrays]}
        hb = json.dumps(header).encode()
        body = b"".join([MAGIC, len(hb).to_bytes(4, "little"), hb, *blobs,
                         *(a.tobytes() for _, a in arrays)])
        return body + zlib.crc32(body).to_bytes(4, "little")

    @classmethod
    def from_bytes(cls, data: bytes, key: dict) -> "TextTable | None":
        """The table in ``data``, or None when it is damaged, of another version or for
        another module (the CRC vouches for the bytes: the file is our own cache)."""
        try:
            if len(data) < 16 or not data.startswith(MAGIC):
                return None
            body = memoryview(data)[:-4]            # no copies of the (large) texts
            if zlib.crc32(body) != int.from_bytes(data[-4:], "little"):
                return None
            hl = int.from_bytes(body[8:12], "little")
            header = json.loads(bytes(body[12:12 + hl]))
            if header.get("format") != FORMAT_VERSION or \
                    any(header.get(k) != v for k, v in key.items()):
                return None
            pos = 12 + hl
            lists = []
            for count, size in header["lists"]:
                got = str(body[pos:pos + size], "utf-8", "surrogatepass").split(SEP) \
                    if count else []
                pos += size
                if len(got) != count:
                    return None
                lists.append(got)
            arrays: dict = {}
            for (name, code, count), (want, want_code) in zip(header["arrays"], _ARRAYS):
                a = array(code)
                size = a.itemsize * count
                if name != want or code != want_code or pos + size > len(body):
                    return None
                a.frombytes(body[pos:pos + size])
                pos += size
                arrays[name] = a if name == "dense" else a.tolist()
            parts, tails = lists
            k = len(arrays.get("bounds", ())) + 1
            if pos != len(body) or len(arrays) != len(_ARRAYS) or \
                    not len(arrays["slot_part"]) == len(arrays["slot_tail"]) == k or \
                    max(arrays["slot_part"], default=0) >= len(parts) or \
                    max(arrays["slot_tail"], default=0) >= len(tails) or \
                    min(arrays["slot_tail"], default=0) < 0:
                return None
            return cls(int(header["width"]), parts, tails, arrays)
        except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
            return None


def _positions(starts: Sequence[int], bounds: Sequence[int]) -> list[int]:
    """``[0, *(bisect_right(starts, b) for b in bounds)]`` for sorted ``bounds`` that
    include every element of ``starts`` (a forward fill: cheaper than a bisect each)."""
    at = dict(zip(starts, range(1, len(starts) + 1)))     # duplicates: the last one
    out = [0]
    append = out.append
    cur = 0
    for v in map(at.get, bounds, repeat(0)):
        if v:
            cur = v
        append(cur)
    return out


def layout_digest(lay: CodeLayout) -> str:
    """What the table depends on besides the DWARF: the function bodies' layout."""
    h = hashlib.sha256()
    for part in (lay.starts, lay.ends, lay.wasm_index):
        h.update(array("q", part).tobytes())
    return h.hexdigest()[:32]


def table_path(index_path: Path, module_sha256: str) -> Path:
    """Next to the index of the DWARF, one per module using it."""
    return index_path.with_name(f"{index_path.name}.{module_sha256[:16]}.text{FORMAT_VERSION}")


def load_table(path: Path, key: dict) -> TextTable | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return TextTable.from_bytes(data, key)


def save_table(path: Path, table: TextTable, key: dict) -> bool:
    """Write atomically; False (and no partial file) when the disk refuses."""
    return write_atomic(path, table.to_bytes(key))



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
import operator
import os
import zlib
from array import array
from collections import Counter
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import chain, compress, repeat
from pathlib import Path

import orjson

from wasmprof.addr2line.chains import ChainLookup
from wasmprof.addr2line.hygiene import CodeLayout
from wasmprof.addr2line.text import PAD, clean, frames_text, pad_for, status_text, text_frame, \
    where

FORMAT_VERSION = 1
MAGIC = b"WPRFTXT\0"
SEP = "\x1f"
PIECES = -1       # slot_text: the slot prints its segment's and row's pieces
ALONE = -2        # slot_text: resolve the address on its own
_ARRAYS = ("bounds", "slot_seg", "slot_row", "slot_text", "seg_pre", "seg_inl", "seg_tail",
           "row_where", "row_status")


class TextTable:
    """Slots (``bounds``; slot k holds the addresses in ``[bounds[k-1], bounds[k])``), per
    slot its segment, row and text (:data:`PIECES`, :data:`ALONE` or a string), per
    segment its pieces, per row its pieces (all as Python lists, ready for ``map``)."""

    __slots__ = ("bounds", "slot_seg", "slot_row", "slot_text", "seg_pre", "seg_inl",
                 "seg_tail", "row_where", "row_status", "strings")

    def __init__(self, strings: list[str], arrays: dict[str, list[int]]) -> None:
        self.strings = strings
        self.bounds = arrays["bounds"]
        self.slot_seg = arrays["slot_seg"]
        self.slot_row = arrays["slot_row"]
        self.slot_text = arrays["slot_text"]
        get = strings.__getitem__
        self.seg_pre = list(map(get, arrays["seg_pre"]))
        self.seg_inl = list(map(get, arrays["seg_inl"]))
        self.seg_tail = list(map(get, arrays["seg_tail"]))
        self.row_where = list(map(get, arrays["row_where"]))
        self.row_status = list(map(get, arrays["row_status"]))

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, chains: ChainLookup, resolve_code: Callable[[int], list]) -> "TextTable":
        """The table of a complete lookup; ``resolve_code(code)``: the frames
        :meth:`Resolver.resolve` gives at a code address (for the slots whose answer is not
        an entry)."""
        blk = chains.block
        strings: list[str] = [""]
        sid: dict[str, int] = {"": 0}

        def intern(s: str) -> int:
            i = sid.get(s)
            if i is None:
                i = sid[s] = len(strings)
                strings.append(s)
            return i

        inl_id = intern(" (inlined)")
        nseg = len(blk.seg_start)
        seg_pre = [0] * (nseg + 1)
        seg_inl = [0] * (nseg + 1)
        seg_tail = [intern("\n")] * (nseg + 1)
        seg_mode = [ALONE] * (nseg + 1)      # PIECES, ALONE, -3 ghost rows, -4 a reason
        seg_reason: dict[int, str] = {}
        tails: dict[int, int] = {}
        for sg in range(1, nseg + 1):
            info = chains.segment(sg)
            if info is None:
                continue
            if info.__class__ is not tuple:
                seg_mode[sg] = -4
                seg_reason[sg] = info
                continue
            nm, _, tail, ghosts, _ = info
            seg_mode[sg] = PIECES if ghosts < 0 else -3
            seg_pre[sg] = intern(f": {clean(nm[0])} at ")
            if nm[2]:
                seg_inl[sg] = inl_id
            if tail:
                t = tails.get(id(tail))
                if t is None:
                    t = tails[id(tail)] = intern(
                        PAD + PAD.join([text_frame((*x, None, None)) for x in tail]) + "\n")
                seg_tail[sg] = t
        nrow = len(blk.row_addr)
        row_where = [0] * (nrow + 1)
        row_status = [0] * (nrow + 1)
        for rw in range(nrow + 1):
            file, line, col, status, reason = chains.row(rw)
            row_where[rw] = intern(where(file, line, col))
            if status != "exact":
                row_status[rw] = intern(status_text(status, reason))
        bounds, _ = chains.slots()
        firsts = [-1, *bounds]                    # slot k's first address: bounds[k-1]
        n = len(firsts)
        seg_starts = list(blk.seg_start)
        row_addrs = list(blk.row_addr)
        slot_seg = list(map(bisect_right, repeat(seg_starts, n), firsts))
        slot_row = list(map(bisect_right, repeat(row_addrs, n), firsts))
        slot_text = list(map(seg_mode.__getitem__, slot_seg))
        slot_text[0] = ALONE
        starts = chains.layout.starts
        own: dict[tuple, int] = {}
        for k in [k for k, m in enumerate(slot_text) if m < ALONE]:
            code = firsts[k]
            sg = slot_seg[k]
            if seg_mode[sg] == -3:              # ghosts: the row decides
                ent = chains.lookup([code])[0]
                if ent.__class__ is tuple:
                    slot_text[k] = PIECES
                    continue
                why = ent
            else:
                why = seg_reason[sg]
            key = (bisect_right(starts, code), why)
            t = own.get(key)
            if t is None:
                t = own[key] = intern(frames_text(resolve_code(code)))
            slot_text[k] = t
        return cls(strings, {"bounds": bounds, "slot_seg": slot_seg, "slot_row": slot_row,
                             "slot_text": slot_text, "seg_pre": seg_pre, "seg_inl": seg_inl,
                             "seg_tail": seg_tail, "row_where": row_where,
                             "row_status": row_status})

    # -- rendering -----------------------------------------------------------------------
    def render(self, values: Sequence[int], codes: Sequence[int],
               resolve: Callable[[int], list]) -> list[str]:
        """The text of every address, in chunks: ``values[i]`` as printed (hex), answered
        at code address ``codes[i]``; ``resolve(i)`` gives address i's frames where the
        table has no text for it (offset 0, no DWARF scope, outside every body)."""
        n = len(values)
        keys = list(map(bisect_right, repeat(self.bounds, n), codes))
        segs = list(map(self.slot_seg.__getitem__, keys))
        rows = list(map(self.slot_row.__getitem__, keys))
        own = list(map(self.slot_text.__getitem__, keys))
        heads = list(map(hex, values))
        col_pre = list(map(self.seg_pre.__getitem__, segs))
        col_where = list(map(self.row_where.__getitem__, rows))
        col_inl = list(map(self.seg_inl.__getitem__, segs))
        col_status = list(map(self.row_status.__getitem__, rows))
        col_tail = list(map(self.seg_tail.__getitem__, segs))
        strings = self.strings
        widths = list(map(len, heads))
        count = Counter(widths)
        main = count.most_common(1)[0][0] if count else 0
        special = list(compress(range(n), map(PIECES.__ne__, own)))
        if 0 in values:                     # offset 0 means "unknown": never shared
            special = sorted({*special, *compress(range(n), map(operator.not_, values))})
        for i in special:
            t = own[i]
            txt = frames_text(resolve(i)) if t == ALONE or not values[i] else strings[t]
            col_pre[i] = col_inl[i] = col_status[i] = col_tail[i] = ""
            col_where[i] = txt if widths[i] == main else txt.replace(PAD, pad_for(widths[i]))
        for w in count:                     # callers' indentation for the other widths
            if w != main:
                pad = pad_for(w)
                tails = self.seg_tail
                memo: dict[int, str] = {}
                for i in compress(range(n), map(w.__eq__, widths)):
                    sg = segs[i]
                    t = memo.get(sg)
                    if t is None:
                        t = memo[sg] = tails[sg].replace(PAD, pad)
                    if col_tail[i]:
                        col_tail[i] = t
        pad = pad_for(main)
        step = 65536
        return ["".join(chain.from_iterable(zip(
            heads[lo:lo + step], col_pre[lo:lo + step], col_where[lo:lo + step],
            col_inl[lo:lo + step], col_status[lo:lo + step], col_tail[lo:lo + step]
        ))).replace(PAD, pad) for lo in range(0, n, step)]

    # -- (de)serialisation -------------------------------------------------------------
    def to_bytes(self, key: dict) -> bytes:
        arrays = {"bounds": self.bounds, "slot_seg": self.slot_seg, "slot_row": self.slot_row,
                  "slot_text": self.slot_text}
        sid = {s: i for i, s in enumerate(self.strings)}
        for name in ("seg_pre", "seg_inl", "seg_tail", "row_where", "row_status"):
            arrays[name] = [sid[s] for s in getattr(self, name)]
        blob = SEP.join(self.strings).encode("utf-8", "surrogatepass")
        header = {"format": FORMAT_VERSION, **key, "strings": len(self.strings),
                  "blob": len(blob), "arrays": [[a, len(arrays[a])] for a in _ARRAYS]}
        hb = orjson.dumps(header)
        body = b"".join([MAGIC, len(hb).to_bytes(4, "little"), hb, blob,
                         *(array("q" if a == "bounds" else "i", arrays[a]).tobytes()
                           for a in _ARRAYS)])
        return body + zlib.crc32(body).to_bytes(4, "little")

    @classmethod
    def from_bytes(cls, data: bytes, key: dict) -> "TextTable | None":
        try:
            if len(data) < 16 or not data.startswith(MAGIC):
                return None
            body, crc = data[:-4], int.from_bytes(data[-4:], "little")
            if zlib.crc32(body) != crc:
                return None
            hl = int.from_bytes(body[8:12], "little")
            header = orjson.loads(body[12:12 + hl])
            if header.get("format") != FORMAT_VERSION or \
                    any(header.get(k) != v for k, v in key.items()):
                return None
            pos = 12 + hl
            blob = body[pos:pos + header["blob"]]
            pos += header["blob"]
            strings = blob.decode("utf-8", "surrogatepass").split(SEP)
            if len(strings) != header["strings"]:
                return None
            arrays: dict[str, list[int]] = {}
            for (name, n), want in zip(header["arrays"], _ARRAYS):
                code = "q" if want == "bounds" else "i"
                a = array(code)
                size = a.itemsize * n
                if name != want or pos + size > len(body):
                    return None
                a.frombytes(body[pos:pos + size])
                pos += size
                arrays[name] = a.tolist()
            # the CRC vouches for the bytes (the table is our own cache): only the shape
            k = len(arrays["bounds"]) + 1
            if pos != len(body) or len(arrays) != len(_ARRAYS) or not (
                    len(arrays["slot_seg"]) == len(arrays["slot_row"]) ==
                    len(arrays["slot_text"]) == k) or \
                    len(arrays["seg_pre"]) != len(arrays["seg_inl"]) or \
                    len(arrays["seg_pre"]) != len(arrays["seg_tail"]) or \
                    len(arrays["row_where"]) != len(arrays["row_status"]):
                return None
            return cls(strings, arrays)
        except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError,
                orjson.JSONDecodeError):
            return None


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(table.to_bytes(key))
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False



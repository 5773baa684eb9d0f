"""The hand-written DWARF decoder and the index, checked against pyelftools' reading of the
same bytes (DWARF 4, DWARF 5, wasi-libc CUs from clang 14, zig-built modules)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wasmprof.addr2line import dwarf as ref
from wasmprof.addr2line.debuginfo import ModuleDebug
from wasmprof.addr2line.fastdwarf import DwarfReader, DwarfSections
from wasmprof.addr2line.index import TOMBSTONE_MIN
from wasmprof.binary.wasm import parse_wasm

sys.path.insert(0, str(Path(__file__).parent))
from compile import compile_wasm  # noqa: E402

FIXTURE_MODULES = ["crash_oob.O0.wasm", "crash_oob.O2.wasm", "crash_oob.O2d4.wasm",
                   "inline_chain.O2.wasm", "inline_chain.O2d4.wasm", "cxx_plugin.O2.wasm",
                   "cxx_plugin.O0.wasm"]

MIXED_SRC = r'''
static inline __attribute__((always_inline)) int leaf(int x) { return x * 7 + 3; }
static inline __attribute__((always_inline)) int mid(int x) { return leaf(x) ^ (x >> 2); }
__attribute__((noinline)) int work(int n) { int s = 0; for (int i = 0; i < n; i++) s += mid(i); return s; }
int main(int argc, char **argv) { (void)argv; return work(argc * 100) & 1; }
'''


def _wasm(path: Path):
    return parse_wasm(path.read_bytes(), str(path))


def _compare_module(wasm, samples: int = 600) -> int:
    """Compare rows, scopes and every row address's chain; returns addresses checked."""
    di = ref.dwarfinfo(wasm.dwarf_sections)
    reader = DwarfReader(DwarfSections.from_wasm(wasm))
    ref_rows = ref.reference_line_rows(di)
    assert len(ref_rows) == len(reader.units)
    for unit, rows in zip(reader.units, ref_rows):
        lt = reader.decode_line_program(unit)
        mine = []
        if lt is not None:
            for addrs, files, lines, cols in lt.sequences:
                for a, f, ln, c in zip(addrs, files, lines, cols):
                    mine.append((a, None if f == -1 else lt.files[f], ln, c, f == -1))
        # pyelftools does not wrap 32-bit addresses in tombstoned sequences (formats.md §6.4)
        assert [(a & 0xFFFFFFFF, *rest) for a, *rest in rows] == \
            [(a & 0xFFFFFFFF, *rest) for a, *rest in mine], unit.name

    # scopes: same (name, linkage, ranges, depth) multiset
    ref_scopes = ref.reference_scopes(di)
    mine_scopes = []
    for unit in reader.units:
        sc = reader.decode_unit(unit)
        names = reader.resolve_names(sc)
        for i, parent in enumerate(sc.parent):
            d = 0
            p = parent
            while p >= 0:
                d += 1
                p = sc.parent[p]
            mine_scopes.append((names[i][0], names[i][1], tuple(sc.ranges[i]), d))
    theirs = sorted(((s.name, s.linkage, tuple(s.ranges), s.depth) for s in ref_scopes),
                    key=repr)
    assert sorted(mine_scopes, key=repr) == theirs

    # chains at every live row address (and one byte after) agree with the naive walk
    md = ModuleDebug(wasm, wasm.identity, None)
    block = md.build_full()
    checked = 0
    addrs = sorted({r[0] for rows in ref_rows for r in rows if 0 < r[0] < TOMBSTONE_MIN})
    for a in addrs[:: max(1, len(addrs) // samples)]:
        for probe in (a, a + 1):
            want = ref.reference_frames(di, probe, scopes=ref_scopes, rows=ref_rows)
            got = block.chain(probe)
            assert [(w["function"], w["linkage"], w["file"], w["line"], w["column"])
                    for w in want] == [tuple(g) for g in got], hex(probe)
            checked += 1
    return checked


@pytest.mark.parametrize("name", FIXTURE_MODULES)
def test_fast_decoder_matches_pyelftools_on_fixtures(data_dir, name):
    wasm = _wasm(data_dir / "wasm" / name)
    assert _compare_module(wasm) > 50


@pytest.mark.parametrize("flags", [["-O0", "-g", "-gdwarf-4"], ["-O2", "-g", "-gdwarf-5"]])
def test_fast_decoder_matches_pyelftools_on_zig_builds(flags):
    """zig links its own wasi-libc (DWARF 4) with our CU (DWARF 4 or 5): mixed units."""
    wasm = _wasm(compile_wasm({"mixed.c": MIXED_SRC}, flags))
    versions = {u.version for u in DwarfReader(DwarfSections.from_wasm(wasm)).units}
    assert (5 in versions) == ("-gdwarf-5" in flags)
    assert _compare_module(wasm, samples=120) > 50


def test_tombstones_never_win(data_dir):
    """wasi-libc CUs carry functions removed by --gc-sections (low_pc 0xffffffff / ranges
    -2): they are decoded but never appear in the index."""
    wasm = _wasm(data_dir / "wasm" / "crash_oob.O2.wasm")
    reader = DwarfReader(DwarfSections.from_wasm(wasm))
    dead = 0
    for unit in reader.units:
        sc = reader.decode_unit(unit)
        dead += sum(1 for rs in sc.ranges for lo, _ in rs if lo >= TOMBSTONE_MIN)
    assert dead > 0, "fixture should contain tombstoned subprograms"
    block = ModuleDebug(wasm, wasm.identity, None).build_full()
    assert all(s < TOMBSTONE_MIN for s in block.seg_start)
    assert all(a < TOMBSTONE_MIN for a in block.row_addr)
    assert any("dead-code" in n for n in block.notes)


def test_damaged_dwarf_is_a_located_error(data_dir):
    from wasmprof.errors import BinaryFormatError
    wasm = _wasm(data_dir / "wasm" / "crash_oob.O2.wasm")
    secs = DwarfSections.from_wasm(wasm)
    info = bytearray(secs.data[".debug_info"])
    info[0:4] = (len(info) * 2).to_bytes(4, "little")      # unit length past the end
    secs.data[".debug_info"] = bytes(info)
    with pytest.raises(BinaryFormatError) as e:
        DwarfReader(secs)
    assert e.value.offset == secs.file_offsets[".debug_info"]
    # a truncated line program
    secs = DwarfSections.from_wasm(wasm)
    secs.data[".debug_line"] = secs.data[".debug_line"][:40]
    r = DwarfReader(secs)
    with pytest.raises(BinaryFormatError):
        for u in r.units:
            r.decode_line_program(u)


def test_garbled_dwarf_never_breaks_resolution(data_dir):
    """Random byte damage in any DWARF section: every address still gets frames (exact,
    or a fallback whose reason names the DWARF problem); never an exception or a hang."""
    import random

    from wasmprof.addr2line.resolver import Resolver
    from wasmprof.binary.loader import load_module
    from wasmprof.model import AddressSpace, RawFrame

    path = data_dir / "wasm" / "inline_chain.O2.wasm"
    clean = path.read_bytes()
    wasm = parse_wasm(clean, str(path))
    secs = wasm.custom
    rnd = random.Random(7)
    bodies = wasm.bodies
    addrs = [rnd.randrange(b.start, b.end) for b in bodies for _ in range(3)]
    damaged_seen = 0
    for trial in range(40):
        data = bytearray(clean)
        name = rnd.choice([n for n in secs if n.startswith(".debug_")])
        s = secs[name][0]
        for _ in range(rnd.choice([1, 4, 32])):
            pos = rnd.randrange(s.content_start, s.end)
            data[pos] = rnd.randrange(256)
        module = load_module(str(path), bytes(data))
        raws = [RawFrame(index=i, space=AddressSpace.FILE, offset=a) for i, a in enumerate(addrs)]
        out = Resolver(cache_dir=None).resolve_many(module, raws)
        assert len(out) == len(raws)
        for frames in out:
            assert frames and all(f.status == "exact" or f.reason for f in frames)
        damaged_seen += any("DWARF unreadable" in (f.reason or "") for fr in out for f in fr)
    assert damaged_seen > 0


def test_ghosts_and_overlaps_follow_the_filter_rules():
    """formats.md §6.4 on synthetic scopes: a binaryen ghost (low_pc 0, stale high_pc) and
    wasm-ld tombstones never win; between overlapping subprograms the smaller one does;
    inlined subroutines of a dead subprogram are dropped with it; line sequences that start
    at 0 or at a tombstone are ignored."""
    from wasmprof.addr2line.fastdwarf import LineTable, Unit, UnitScopes
    from wasmprof.addr2line.index import build_block

    sc = UnitScopes(0)
    def node(parent, kind, ranges, name, call=(None, 0, 0)):
        sc.parent.append(parent)
        sc.kind.append(kind)
        sc.ranges.append(ranges)
        sc.call.append(call)
        sc.origin.append((name, None, None))
        return len(sc.parent) - 1
    node(-1, 0, [(0, 0x500)], "ghost")                       # binaryen ghost
    ghost_child = node(0, 1, [(0x10, 0x20)], "ghost_inline")  # dies with its parent
    assert ghost_child == 1
    node(-1, 0, [(0xFFFFFFFF, 0xFFFFFFFF + 0x40)], "tombstoned")
    real = node(-1, 0, [(0x100, 0x200)], "real")
    node(real, 1, [(0x140, 0x160)], "inl", (1, 7, 3))
    node(-1, 0, [(0x180, 0x1A0)], "nested_smaller")           # overlaps "real": smaller wins
    lines = LineTable(["<file 0>", "/src/a.c"], [
        ([0, 0x30], [1, -1], [99, 0], [1, 0]),                   # ghost sequence at 0
        ([0xFFFFFFFF, 0xFFFFFFFF + 8], [1, -1], [98, 0], [1, 0]),  # tombstoned sequence
        ([0x100, 0x150, 0x200], [1, 1, -1], [10, 12, 0], [5, 6, 0]),
    ])
    block = build_block(None, [Unit(0, 0, 0, 4, 1, 4, 0, 0)],
                        {0: (sc, [o[:2] for o in sc.origin], lines)})
    assert block.chain(0x18) == [] and block.chain(0x300) == []
    assert block.chain(0x150) == [("inl", None, "/src/a.c", 12, 6),
                                  ("real", None, "/src/a.c", 7, 3)]
    assert block.chain(0x190)[0][0] == "nested_smaller"
    assert block.chain(0x1B0)[0][0] == "real"
    assert block.chain(0x120) == [("real", None, "/src/a.c", 10, 5)]
    assert block.row_at(0x10) == -1 and block.row_at(0x250) == -1


# -- partial decoding (small cold jobs) must answer exactly like the full index ------------
PARTIAL_MODULES = FIXTURE_MODULES + ["bot_detect.O2.wasm", "hmac_auth.O2.wasm"]


def _body_addresses(wasm, rnd, n):
    cps = wasm.code_payload_start
    out = []
    for _ in range(n):
        b = wasm.bodies[rnd.randrange(len(wasm.bodies))]
        out.append(rnd.randrange(b.start, b.end) - cps)
    return out


@pytest.mark.parametrize("name", PARTIAL_MODULES)
def test_directories_match_the_full_decoders(data_dir, name):
    """The cheap walks behind partial decoding: the subprogram directory holds exactly the
    code ranges of the full walk's subprograms; decoding the listed subtrees gives the full
    walk's nodes; the line directory's sequences decode to the full program's rows and
    start at their first row."""
    wasm = _wasm(data_dir / "wasm" / name)
    reader = DwarfReader(DwarfSections.from_wasm(wasm))
    for unit in reader.units:
        full = reader.decode_unit(unit)
        directory = reader.subprogram_directory(unit)
        want = sorted(r for i, rs in enumerate(full.ranges) if full.kind[i] == 0 for r in rs)
        assert sorted((lo, hi) for lo, hi, _ in directory) == want, unit.name
        part = reader.decode_subprograms(unit, [off for _, _, off in directory])
        # the full walk also keeps inlined subroutines outside any code-carrying
        # subprogram (never live); compare the nodes under subprograms
        def nodes(sc):
            keep = []
            for i, p in enumerate(sc.parent):
                root = i
                while sc.parent[root] >= 0:
                    root = sc.parent[root]
                if sc.kind[root] == 0:
                    keep.append((sc.kind[i], tuple(sc.ranges[i]), sc.call[i], sc.origin[i]))
            return keep
        assert nodes(part) == nodes(full), unit.name
        lt = reader.decode_line_program(unit)
        ld = reader.line_directory(unit)
        if lt is None:
            assert ld is None
            continue
        assert ld.exact, unit.name
        assert [s[0] for s in ld.sequences] == [q[0][0] for q in lt.sequences]
        got = reader.decode_line_sequences(unit, ld, list(range(len(ld.sequences))))
        assert got.sequences == lt.sequences and got.files == lt.files


@pytest.mark.parametrize("name", PARTIAL_MODULES)
def test_partial_decoding_answers_like_the_full_index(data_dir, name):
    """A small job decodes only the subprograms and line sequences covering its addresses
    (asked all at once or one by one, as the crash symbolizer does); every asked address,
    and every function entry, gets the full index's chain and names."""
    import random

    wasm = _wasm(data_dir / "wasm" / name)
    full = ModuleDebug(wasm, wasm.identity, None).build_full()
    rnd = random.Random(name)
    cps = wasm.code_payload_start
    partial = 0
    for trial in range(6):
        addrs = _body_addresses(wasm, rnd, [1, 5, 20, 40, 8, 30][trial])
        md = ModuleDebug(wasm, wasm.identity, None)
        if trial % 2:
            md.ensure(addrs)
            assert not md.complete
        else:
            # one by one: after enough rebuilds the work budget switches to a full decode
            for a in addrs:
                md.ensure((a,))
            assert not md.complete or len(addrs) > 1
        partial += not md.complete
        for a in addrs:
            assert md.block.chain(a) == full.chain(a), (name, hex(a))
        for b in wasm.bodies[:: max(1, len(wasm.bodies) // 8)]:
            entry = b.start - cps
            node = full.subprogram_at_entry(entry)
            want = full.names(node) if node >= 0 else None
            assert md.entry_names(entry) == want, (name, hex(entry))
    assert partial >= 4


def test_partial_line_picks_fall_back_when_sequences_overlap():
    """Overlapping line sequences (garbage the full index resolves by keeping the first):
    the partial decoder cannot vouch for its pick, so it decodes the whole program."""
    from wasmprof.addr2line.fastdwarf import LineDirectory, LineTable, Unit, _LineHeader

    seqs = [([0x100, 0x180], [0, -1], [1, 0], [0, 0]),     # overlaps the next one
            ([0x140, 0x200], [0, -1], [2, 0], [0, 0])]

    class Reader:
        calls = 0

        def decode_line_sequences(self, unit, ld, picks):
            return LineTable(["f"], [seqs[k] for k in picks])

        def decode_line_program(self, unit):
            self.calls += 1
            return LineTable(["f"], ["whole"])

    ld = LineDirectory(_LineHeader(["f"], 0, 0, 1, -5, 14, 13, []),
                       [(0x100, 0, 1), (0x140, 1, 2)], True)
    md = ModuleDebug.__new__(ModuleDebug)
    md._reader = Reader()
    md._seqs, md._lines, md._dirs, md.layout = {}, {}, {0: ([], ld)}, None
    unit = Unit(0, 0, 0, 4, 1, 4, 0, 0)
    assert md._pick_sequences([unit], [0x150]) == {0: LineTable(["f"], ["whole"])}
    assert md._reader.calls == 1
    md._seqs, md._lines = {}, {}
    seqs[0] = ([0x100, 0x140], [0, -1], [1, 0], [0, 0])      # now they only touch
    picked = md._pick_sequences([unit], [0x150])
    assert picked[0].sequences == seqs and md._reader.calls == 1

"""Programs compiled on the fly (zig cc, wasm32-wasi): inline chains 2 and 4 deep, a trap
mid-loop run under Wasmtime, C++ templates/namespaces, -O2, DWARF 4 and 5, a stripped
module + companion — compared with ``wasm-tools addr2line`` and with real trap frames."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import find_companion, load_module
from wasmprof.binary.wasm import wasm_tools_path
from wasmprof.model import AddressSpace, RawFrame

sys.path.insert(0, str(Path(__file__).parent))
from compile import compile_wasm, strip_wasm  # noqa: E402
from peers import wasm_tools_chains  # noqa: E402

pytestmark = pytest.mark.slow

INLINE_SRC = r'''
#define AI static inline __attribute__((always_inline))
volatile unsigned trap_mode;
AI unsigned clamp(unsigned w) {
    if (w > 0xF000u && trap_mode == 2)
        __builtin_trap();                                   /* TRAP2 */
    return w > 255u ? 255u : w;
}
AI unsigned norm(unsigned char c, unsigned k) { return clamp((unsigned)c * k); }
__attribute__((noinline)) unsigned score(const char *v, unsigned k) {
    unsigned s = 0;
    for (unsigned i = 0; v[i]; i++)
        s += norm((unsigned char)v[i], k);                  /* CALL_NORM */
    return s;
}
AI unsigned guard(unsigned x, unsigned r) {
    if (trap_mode == 4 && r == 3 && x != 7u)
        __builtin_trap();                                   /* TRAP4 */
    return x ^ (x >> 13);
}
AI unsigned mix(unsigned x, unsigned y, unsigned r) { x += y * 0x9e3779b1u; return guard(x, r); }
AI unsigned round_(unsigned x, unsigned y, unsigned r) { return mix(x, y, r) + r; }
AI unsigned digest(const char *t, unsigned n) {
    unsigned h = 2166136261u;
    for (unsigned i = 0; i < n; i++)
        h = round_(h, (unsigned char)t[i], i & 3);
    return h;
}
__attribute__((noinline)) unsigned check(const char *t, unsigned n) { return digest(t, n) & 7; }
int main(int argc, char **argv) {
    trap_mode = argc <= 1 ? 4 : 0;          /* wasmtime runs us without argv */
    unsigned s = score("user-agent", 300u + (unsigned)argc);
    return (int)(s + check("abcdefgh-token-xyz", 18));
}
'''

LOOP_SRC = r'''
volatile int poison = 42;
__attribute__((noinline)) int sum_until_bad(const int *v, int n) {
    int s = 0;
    for (int i = 0; i < n; i++) {
        s += v[i];
        if (v[i] == poison)
            __builtin_trap();                               /* TRAP */
        s ^= i;
    }
    return s;
}
int main(int argc, char **argv) {
    (void)argv;
    int v[64];
    for (int i = 0; i < 64; i++) v[i] = i * 3 + argc;
    return sum_until_bad(v, 64);
}
'''

CXX_SRC = r'''
namespace gw { namespace util {
template <typename T, unsigned N> struct Ring {
    T items[N]; unsigned head = 0;
    __attribute__((noinline)) T at(unsigned i) const {
        if (i >= N) __builtin_trap();                       /* CXX_TRAP */
        return items[(head + i) % N];
    }
};
template <typename F> __attribute__((noinline)) int apply(F f, int x) { return f(x) + 1; }
} }
extern "C" int main(int argc, char **) {
    gw::util::Ring<int, 8> r{};
    for (int i = 0; i < 8; i++) r.items[i] = i * argc;
    int k = gw::util::apply([&](int x) { return r.at((unsigned)x); }, argc + 9);
    return k;
}
'''


def _line_of(src: str, marker: str) -> int:
    return next(i for i, ln in enumerate(src.splitlines(), 1) if marker in ln)


def _run_wasmtime(path: Path):
    """Run ``_start`` under Wasmtime; return the trap's frames (innermost first)."""
    wasmtime = pytest.importorskip("wasmtime")
    eng = wasmtime.Engine()
    store = wasmtime.Store(eng)
    linker = wasmtime.Linker(eng)
    linker.define_wasi()
    store.set_wasi(wasmtime.WasiConfig())
    inst = linker.instantiate(store, wasmtime.Module.from_file(eng, str(path)))
    with pytest.raises(wasmtime.Trap) as e:
        inst.exports(store)["_start"](store)
    return e.value.frames


def _wasm_tools(path: Path, code_addrs: list[int]) -> dict[int, list[tuple]]:
    return wasm_tools_chains(path, code_addrs)


def _strip_templates(s: str) -> str:
    out, depth = [], 0
    for ch in s:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _same_cxx_name(g, name: str) -> bool:
    """wasm-tools (cpp_demangle) prints template literals as ``(unsigned int)8`` where
    libiberty prints ``8u``; the rest must be identical."""
    return bool(g.raw_function and g.raw_function.startswith("_Z")) and \
        _strip_templates(g.function) == _strip_templates(name)


def _compare_with_wasm_tools(path: Path, resolver: Resolver, limit: int = 400) -> int:
    module = load_module(path)
    debug = resolver.debug_for(module)
    block = debug.build_full()
    addrs = sorted(set(block.row_addr))
    addrs = [a for a in addrs if block.row_at(a) >= 0][:: max(1, len(addrs) // limit)]
    want = _wasm_tools(path, addrs)
    checked = 0
    for a in addrs:
        got = resolver.resolve_address(module, a, AddressSpace.CODE)
        exp = want[a]
        if not exp:
            assert got[-1].status != "exact"
            continue
        assert len(got) == len(exp), (hex(a), got, exp)
        for g, (name, file, line, col) in zip(got, exp):
            assert name in (g.function, g.raw_function) or _same_cxx_name(g, name), \
                (hex(a), g, name)
            assert g.file == file and g.line == line, (hex(a), g, exp)
            if line is not None:
                assert g.column == col and g.status == "exact", (hex(a), g, exp)
            else:
                assert g.status == "function-only" and "line 0" in g.reason
        checked += 1
    return checked


@pytest.mark.parametrize("flags", [["-O0", "-g", "-gdwarf-4"], ["-O2", "-g", "-gdwarf-4"],
                                   ["-O2", "-g", "-gdwarf-5"]])
def test_inline_chains_agree_with_wasm_tools(flags):
    path = compile_wasm({"inl.c": INLINE_SRC}, flags)
    assert _compare_with_wasm_tools(path, Resolver()) > 100


@pytest.mark.parametrize("flags", [["-O1", "-g", "-gdwarf-5"], ["-O2", "-g", "-gdwarf-4"]])
def test_trapping_inline_chains_2_and_4_deep(flags):
    """The trap inside the 4-deep chain (no argv): a real Wasmtime trap offset gives
    guard <- mix <- round_ <- digest <- check with the call lines of the source."""
    path = compile_wasm({"inl.c": INLINE_SRC}, flags)
    frames = _run_wasmtime(path)
    module = load_module(path)
    r = Resolver()
    top = r.resolve(module, RawFrame(index=0, space=AddressSpace.WASMTIME,
                                     offset=frames[0].module_offset,
                                     func_index=frames[0].func_index))
    names = [f.function for f in top]
    assert names == ["guard", "mix", "round_", "digest", "check"], top
    # optimised code may attribute the trap to the guarding `if` (what DWARF says: the
    # reference tool must agree), never to the function's first line
    assert top[0].line in (_line_of(INLINE_SRC, "TRAP4"), _line_of(INLINE_SRC, "TRAP4") - 1)
    assert top[0].status == "exact"
    ref = _wasm_tools(path, [top[0].address])[top[0].address]
    assert [(f.line, f.column) for f in top] == [(ln, c) for _, _, ln, c in ref]
    assert all(f.inlined for f in top[:-1]) and not top[-1].inlined
    assert top[1].line == _line_of(INLINE_SRC, "return guard(x, r)")
    # depth 2: every address of score's loop that lies in clamp has clamp <- norm <- score
    dbg = r.debug_for(module)
    block = dbg.build_full()
    chains = {tuple(n for n, *_ in block.chain(a)) for a in set(block.row_addr)}
    assert ("clamp", "norm", "score") in chains


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
def test_trap_mid_loop_keeps_its_line(opt):
    """The trap in a loop body maps to the __builtin_trap line, not the function's first."""
    path = compile_wasm({"loop.c": LOOP_SRC}, [opt, "-g"])
    frames = _run_wasmtime(path)
    module = load_module(path)
    raws = [RawFrame(index=i, space=AddressSpace.WASMTIME, offset=f.module_offset,
                     func_index=f.func_index) for i, f in enumerate(frames)]
    out = Resolver().resolve_many(module, raws)
    top = out[0]
    assert top[-1].function == "sum_until_bad"
    trap = _line_of(LOOP_SRC, "TRAP")
    assert top[0].line in (trap, trap - 1) and top[0].line != _line_of(LOOP_SRC, "int sum_until_")
    ref = _wasm_tools(path, [top[0].address])[top[0].address]
    assert [(f.function, f.line, f.column) for f in top] == [(n, ln, c) for n, _, ln, c in ref]
    assert top[0].file == "/src/loop.c" and top[0].status == "exact"
    assert out[1][-1].function == "main" and out[1][-1].line == \
        _line_of(LOOP_SRC, "return sum_until_bad")
    assert [f[0].input_index for f in out] == list(range(len(frames)))


def test_cxx_templates_and_namespaces():
    path = compile_wasm({"ring.cpp": CXX_SRC}, ["-O1", "-g"])
    frames = _run_wasmtime(path)
    module = load_module(path)
    top = Resolver().resolve(module, RawFrame(index=0, space=AddressSpace.WASMTIME,
                                              offset=frames[0].module_offset))
    assert top[0].function == "gw::util::Ring<int, 8u>::at(unsigned int) const"
    assert top[0].raw_function == "_ZNK2gw4util4RingIiLj8EE2atEj"
    assert top[0].line == _line_of(CXX_SRC, "CXX_TRAP")
    assert _compare_with_wasm_tools(path, Resolver(), limit=150) > 20


def test_stripped_module_resolves_through_companion(tmp_path):
    path = compile_wasm({"loop.c": LOOP_SRC}, ["-O2", "-g", "-gdwarf-5"])
    stripped = strip_wasm(path, all_custom=True)
    frames = _run_wasmtime(stripped)
    prod = load_module(stripped)
    debug = load_module(path)
    assert not prod.has_dwarf and prod.identity == debug.identity
    r = Resolver()
    raw = RawFrame(index=0, space=AddressSpace.WASMTIME, offset=frames[0].module_offset)
    alone = r.resolve(prod, raw)
    assert alone[0].status == "index-only" and "no DWARF" in alone[0].reason
    assert find_companion(prod, [debug]) is debug
    r2 = Resolver()
    got = r2.resolve(prod, raw)
    assert got[-1].function == "sum_until_bad"
    assert got[0].status == "exact" and got[0].line in (_line_of(LOOP_SRC, "TRAP"),
                                                        _line_of(LOOP_SRC, "TRAP") - 1)
    direct = Resolver().resolve(debug, raw)
    assert [(f.function, f.file, f.line, f.column) for f in got] == \
        [(f.function, f.file, f.line, f.column) for f in direct]


def test_native_offsets_in_a_wamrc_object(data_dir):
    """``native`` space on a wamrc --format=object file: text offset -> aot_func#N -> Wasm
    function N + imports, named from the companion; function-only (no native line map)."""
    import json
    exp = json.loads((data_dir / "expected/aot/crash_oob.O2.obj.o.expected.json").read_text())
    obj = load_module(data_dir / "aot/crash_oob.O2.obj.o")
    wasm = load_module(data_dir / exp["source_wasm"])
    assert find_companion(obj, [wasm]) is not None
    r = Resolver()
    raws, want = [], []
    for f in exp["functions"]:
        sym = f["elf_symbol"]
        for off in (sym["value"], sym["value"] + sym["size"] - 1):
            raws.append(RawFrame(index=len(raws), space=AddressSpace.NATIVE, offset=off))
            want.append(f)
    for got, f in zip(r.resolve_many(obj, raws), want):
        assert got[0].wasm_index == f["wasm_index"] and got[0].status == "function-only"
        assert f["name"] in (got[0].function, got[0].raw_function), (got[0], f)
        assert "native" in got[0].reason
    far = r.resolve(obj, RawFrame(index=0, space=AddressSpace.NATIVE, offset=10**7))
    assert far[0].status == "unknown" and "outside" in far[0].reason


def test_native_offsets_in_a_cwasm_use_the_address_map(tmp_path):
    """Wasmtime .cwasm: native .text offset -> Wasm offset via .wasmtime.addrmap -> DWARF of
    the companion: the same chain as the Wasm offset itself."""
    wasmtime = pytest.importorskip("wasmtime")
    path = compile_wasm({"loop.c": LOOP_SRC}, ["-O2", "-g"])
    eng = wasmtime.Engine()
    cw = tmp_path / "loop.cwasm"
    cw.write_bytes(wasmtime.Module.from_file(eng, str(path)).serialize())
    native = load_module(cw)
    wasm = load_module(path)
    native.companion = wasm          # a .cwasm does not record the module it came from
    amap = native.elf.addrmap
    assert amap is not None
    body = next(b for b in wasm.wasm.bodies
                if wasm.functions[b.wasm_index].name == "sum_until_bad")
    picks = [(pc, pos) for pc, pos in zip(amap.pcs, amap.positions)
             if pos is not None and body.start <= pos < body.end]
    assert picks
    r = Resolver()
    for pc, pos in picks[:: max(1, len(picks) // 20)]:
        got = r.resolve(native, RawFrame(index=0, space=AddressSpace.NATIVE, offset=pc))
        ref = r.resolve(wasm, RawFrame(index=0, space=AddressSpace.WASMTIME, offset=pos))
        assert [(f.function, f.file, f.line, f.column, f.status) for f in got] == \
            [(f.function, f.file, f.line, f.column, f.status) for f in ref]
        assert got[-1].function == "sum_until_bad" and got[0].raw_offset == pc

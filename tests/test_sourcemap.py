"""Source maps (issue 13): AssemblyScript ``--debug --sourceMap`` and Emscripten
``-gsource-map`` modules resolve to their original file:line:column through the map.

- the decoder equals Mozilla's npm ``source-map`` at every mapping and at every instruction
  offset (node runs it: tests/js/sourcemap_truth.js);
- AssemblyScript traps produced live under Wasmtime and node's V8, and WAMR dumps of the
  same stacks (AOT: instruction offsets; classic interpreter: the byte after), resolve to
  ``plugin.ts`` lines: the ``unreachable()`` line, then its callers' call lines;
- the map is found as a companion (sourceMappingURL relative to the module), from a
  ``data:`` URL, or given with ``--source-map``; bad maps are refused with the offset.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wasmprof.addr2line.resolver import Resolver
from wasmprof.addr2line.sourcemap import SourceMap, SourceMapError, decode_data_url
from wasmprof.binary.loader import load_module
from wasmprof.model import AddressSpace, RawFrame

sys.path.insert(0, str(Path(__file__).parent))
from peers import instruction_offsets  # noqa: E402
from toolchains import asc, emxx, npm_tools  # noqa: E402
from toolchain_sources import EM_SRC  # noqa: E402

pytestmark = pytest.mark.slow
JS = Path(__file__).parent / "js"

AS_SRC = r'''// A request filter written for wasmprof's tests.
class Route {
  constructor(public prefix: string, public weight: i32) {}
}

function buildRoutes(n: i32): Array<Route> {
  const routes = new Array<Route>();
  for (let i = 0; i < n; i++) routes.push(new Route("/svc/" + i.toString(), (i * 7) % 13));
  return routes;
}

function checkWeight(w: i32): i32 {
  if (w > 11) unreachable();                                   // AS_TRAP
  return w * 2;
}

function score(routes: Array<Route>, path: string): i32 {
  let s = 0;
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i];
    if (path.startsWith(r.prefix)) s += checkWeight(r.weight);  // AS_CALL_CHECK
  }
  return s;
}

export function onRequest(n: i32): i32 {
  const routes = buildRoutes(n);
  return score(routes, "/svc/11/items");                       // AS_CALL_SCORE
}
'''


def _line(marker: str) -> int:
    return next(i for i, ln in enumerate(AS_SRC.splitlines(), 1) if marker in ln)


@pytest.fixture(scope="session")
def as_module() -> tuple[Path, Path]:
    if npm_tools() is None:
        pytest.fail("npm assemblyscript missing: run the tests with bash scripts/bootstrap.sh "
                    "test")
    return asc({"plugin.ts": AS_SRC}, "plugin.ts", ["--debug", "--sourceMap"], "plugin.wasm")


@pytest.fixture(scope="session")
def em_source_mapped() -> Path:
    return emxx({"route.cpp": EM_SRC}, ["-gsource-map", "-O2"], "route.wasm")


def _npm_truth(map_path: Path, offsets: list[int]) -> dict:
    env = dict(os.environ, WASMPROF_NPM_TOOLS=str(npm_tools()))
    args = [str(o) for o in offsets]
    got = {"lookups": {}}
    for i in range(0, max(len(args), 1), 4000):
        out = subprocess.run(["node", str(JS / "sourcemap_truth.js"), str(map_path),
                              *args[i:i + 4000]], capture_output=True, text=True, env=env,
                             check=True).stdout
        part = json.loads(out)
        got["mappings"] = part["mappings"]
        got["lookups"].update(part["lookups"])
    return got


@pytest.mark.parametrize("which", ["assemblyscript", "emscripten"])
def test_decoder_equals_npm_source_map(which, as_module, em_source_mapped):
    wasm, map_path = as_module if which == "assemblyscript" else \
        (em_source_mapped, em_source_mapped.with_name("route.wasm.map"))
    module = load_module(wasm)
    assert module.source_map is not None and not module.has_dwarf
    sm = module.source_map
    offsets = instruction_offsets(wasm)
    truth = _npm_truth(map_path, offsets)
    root = json.loads(map_path.read_text()).get("sourceRoot") or ""
    want = [(m[0], m[1], m[2], m[3]) for m in truth["mappings"]]
    got = []
    for i in range(len(sm)):
        s = sm.src[i]
        got.append((sm.offsets[i], None if s < 0 else _rooted(root, sm.sources[s]),
                    None if s < 0 else sm.line[i] + 1, None if s < 0 else sm.col[i]))
    assert got == want
    assert len(got) > 500
    for off in offsets:
        npm = truth["lookups"][str(off)]
        mine = sm.lookup(off)
        if npm["source"] is None:
            assert mine is None, hex(off)
        else:
            assert (_rooted(root, mine.file), mine.line, mine.column - 1) == \
                (npm["source"], npm["line"], npm["column"]), hex(off)


def _rooted(root: str, source: str) -> str:
    """npm source-map joins sourceRoot and the source like a URL (``./plugin`` + ``x.ts``
    -> ``plugin/x.ts``); wasmprof keeps the source as written."""
    if not root:
        return source
    root = root[2:] if root.startswith("./") else root
    return f"{root.rstrip('/')}/{source}"


def _wasmtime_frames(wasm: Path) -> list[tuple[int, str]]:
    import wasmtime
    eng = wasmtime.Engine()
    store = wasmtime.Store(eng)
    linker = wasmtime.Linker(eng)
    linker.define_func("env", "abort", wasmtime.FuncType([wasmtime.ValType.i32()] * 4, []),
                       lambda *a: None)
    inst = linker.instantiate(store, wasmtime.Module.from_file(eng, str(wasm)))
    with pytest.raises(wasmtime.Trap) as e:
        inst.exports(store)["onRequest"](store, 20)
    return [(f.module_offset, f.func_name) for f in e.value.frames]


def _v8_frames(wasm: Path) -> list[tuple[int, str]]:
    out = subprocess.run(["node", str(JS / "run_v8.js"), str(wasm), "onRequest", "20"],
                         capture_output=True, text=True, check=True).stdout
    got = json.loads(out)
    assert got["message"] == "unreachable"
    return [(f["offset"], f["name"]) for f in got["frames"]]


def _expect(frames) -> None:
    """innermost checkWeight at the trap line, then score and onRequest at the calls."""
    assert [f.file for f in frames] == ["plugin.ts"] * 3
    assert [f.line for f in frames] == [_line("AS_TRAP"), _line("AS_CALL_CHECK"),
                                        _line("AS_CALL_SCORE")]
    assert [f.function for f in frames] == ["plugin/checkWeight", "plugin/score",
                                            "plugin/onRequest"]
    assert all(f.status == "exact" and f.column for f in frames)


@pytest.mark.parametrize("runtime", ["wasmtime", "v8"])
def test_assemblyscript_traps_resolve_to_ts_lines(runtime, as_module):
    wasm, map_path = as_module
    live = _wasmtime_frames(wasm) if runtime == "wasmtime" else _v8_frames(wasm)
    space = AddressSpace.WASMTIME if runtime == "wasmtime" else AddressSpace.V8
    module = load_module(wasm)
    r = Resolver()
    frames = [r.resolve(module, RawFrame(index=i, space=space, offset=off, printed_name=name))
              for i, (off, name) in enumerate(live)]
    assert all(len(f) == 1 for f in frames)
    _expect([f[0] for f in frames])
    truth = _npm_truth(map_path, [off for off, _ in live])["lookups"]
    for (off, _), (fr,) in zip(live, frames):
        assert (fr.line, fr.column - 1) == (truth[str(off)]["line"], truth[str(off)]["column"])


def _call_end(wasm: Path, off: int) -> int:
    """The offset of the instruction after the one at ``off``."""
    offs = instruction_offsets(wasm)
    return offs[offs.index(off) + 1]


@pytest.mark.parametrize("mode", ["aot", "interp"])
def test_assemblyscript_wamr_dumps_through_the_cli(mode, as_module, tmp_path):
    """WAMR dumps of the V8 stack (no WAMR runtime is installed: the frames are the live V8
    offsets in WAMR's spaces, AOT = instruction start, classic interpreter = the byte after
    the instruction), through ``wasmprof symbolize`` with the map found next to the module."""
    wasm, _ = as_module
    live = _v8_frames(wasm)
    lines = [""]
    for i, (off, name) in enumerate(live):
        printed = off if mode == "aot" else (off + 1 if i == 0 else _call_end(wasm, off))
        lines.append(f"#{i:02d}: 0x{printed:04x} - {name}")
    log = tmp_path / "iwasm.out"
    log.write_text("\n".join(lines + ["", "Exception: unreachable", ""]))
    out = subprocess.run([sys.executable, "-m", "wasmprof", "symbolize", str(log),
                          "--module", str(wasm), "--mode", mode, "--json"],
                         capture_output=True, text=True, check=True).stdout
    crash = json.loads(out)["crashes"][0]
    frames = [type("F", (), f) for f in crash["frames"]]
    _expect(frames)


def test_emscripten_gsource_map_frames(em_source_mapped):
    """Emscripten -gsource-map (no DWARF; binaryen inlined pick() into main): the trap
    line of route.cpp is found through the map, functions come from the name section."""
    module = load_module(em_source_mapped)
    names = module.wasm.names.function_names
    r = Resolver()
    hits = [r.resolve(module, RawFrame(index=0, space=AddressSpace.FILE, offset=o))
            for o in instruction_offsets(em_source_mapped)]
    assert all(len(h) == 1 for h in hits)
    mine = [h[0] for h in hits if (h[0].file or "").endswith("/src/route.cpp")]
    assert len(mine) > 50 and all(h.status == "exact" and h.line and h.column for h in mine)
    assert all(h.function == names[h.wasm_index] for h in mine)
    trap = next(i for i, ln in enumerate(EM_SRC.splitlines(), 1) if "EM_TRAP" in ln)
    assert any(h.line == trap for h in mine)


def _with_url(wasm: bytes, url: str) -> bytes:
    """The module with its sourceMappingURL custom section replaced by ``url``."""
    out, pos = bytearray(wasm[:8]), 8

    def leb(b, p):
        v = s = 0
        while True:
            c = b[p]
            p += 1
            v |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return v, p

    def enc(n):
        b = bytearray()
        while True:
            c, n = n & 0x7F, n >> 7
            b.append(c | (0x80 if n else 0))
            if not n:
                return bytes(b)

    while pos < len(wasm):
        sid = wasm[pos]
        size, body = leb(wasm, pos + 1)
        if sid == 0:
            nlen, npos = leb(wasm, body)
            if wasm[npos:npos + nlen] == b"sourceMappingURL":
                pos = body + size
                continue
        out += wasm[pos:body + size]
        pos = body + size
    payload = enc(16) + b"sourceMappingURL" + enc(len(url)) + url.encode()
    return bytes(out + b"\0" + enc(len(payload)) + payload)


def test_map_found_as_companion_data_url_or_option(as_module, tmp_path):
    wasm, map_path = as_module
    off = _v8_frames(wasm)[0][0]

    def line_of(module):
        return Resolver().resolve(module, RawFrame(index=0, space=AddressSpace.V8,
                                                   offset=off))[0].line

    assert line_of(load_module(wasm)) == _line("AS_TRAP")           # relative URL
    data = base64.b64encode(map_path.read_bytes()).decode()
    inline = tmp_path / "inline.wasm"
    inline.write_bytes(_with_url(wasm.read_bytes(), "data:application/json;base64," + data))
    assert line_of(load_module(inline)) == _line("AS_TRAP")         # data: URL
    moved = tmp_path / "moved.wasm"
    moved.write_bytes(wasm.read_bytes())
    m = load_module(moved)                                          # map not next to it
    assert m.source_map is None and any("not found" in n for n in m.notes)
    fr = Resolver().resolve(m, RawFrame(index=0, space=AddressSpace.V8, offset=off))[0]
    assert fr.status == "function-only" and "source map" in fr.reason
    assert line_of(load_module(moved, source_map=map_path)) == _line("AS_TRAP")
    out = subprocess.run([sys.executable, "-m", "wasmprof", "addr2line", str(moved), hex(off),
                          "--source-map", str(map_path)], capture_output=True, text=True,
                         check=True).stdout
    assert f"plugin.ts:{_line('AS_TRAP')}:" in out


@pytest.mark.parametrize("doc,message,offset", [
    (b"{not json", "not JSON", None),
    (b'{"version": 2, "sources": [], "mappings": ""}', "version", None),
    (b'{"version": 3, "sections": []}', "index source maps", None),
    (b'{"version": 3, "sources": ["a.ts"], "mappings": "AAAA,A!AA"}', "bad character", 6),
    (b'{"version": 3, "sources": ["a.ts"], "mappings": "AAAA,AA"}', "segment", 5),
    (b'{"version": 3, "sources": ["a.ts"], "mappings": "AAAA,ACAA"}', "sources", 5),
    (b'{"version": 3, "sources": ["a.ts"], "mappings": "AAAA;AAAA"}', "several", None),
    (b'{"version": 3, "sources": ["a.ts"], "mappings": "AAAAC"}', "name", 0),
    (b'{"version": 3, "sources": "a.ts", "mappings": ""}', "sources", None),
    (b'{"version": 3, "sources": ["a.ts"], "mappings": "AAAAg"}', "cut short", 0),
])
def test_bad_maps_are_refused_with_where(doc, message, offset):
    with pytest.raises(SourceMapError) as e:
        SourceMap.parse(doc, "x.wasm.map")
    assert message in str(e.value) and e.value.source == "x.wasm.map"
    assert e.value.offset == offset
    with pytest.raises(SourceMapError):
        decode_data_url("data:application/json;base64,@@@", "url")

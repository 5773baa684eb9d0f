"""Every frame of every WAMR crash dump in the fixture corpus against ground truth
(``expected/dumps/*.expected.json``, produced with llvm-symbolizer and wasm-tools).

Rules checked per frame:
- a usable offset with DWARF: same inline chain (function, file, line, column, inlined),
  status ``exact``; ``function`` is DW_AT_name or the demangled linkage name;
- an unusable offset (0, stale, garbage, fast interpreter) or no DWARF: a non-exact status,
  a reason, and the function the frame names.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import cxxfilt
import pytest

from wasmprof.addr2line.demangle import demangle
from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import find_companion, load_module
from wasmprof.model import AddressSpace, RawFrame

SPACES = {"aot": AddressSpace.AOT, "classic-interp": AddressSpace.INTERP}


def _space(exec_mode: str) -> AddressSpace:
    return SPACES.get(exec_mode, AddressSpace.FAST_INTERP)


class _Modules:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, object] = {}

    def get(self, rel: str):
        if rel not in self.cache:
            p = self.root / rel
            self.cache[rel] = load_module(p) if p.exists() else None
        return self.cache[rel]


def _name_ok(got, exp) -> bool:
    if got.function in (exp["function"], exp["qualified_function"]):
        return True
    # C++: ours is libiberty's demangling of the DWARF linkage name (what WAMR's name section
    # shows); wasm-tools' cpp_demangle prints template literals differently ("(unsigned
    # int)8" vs "8u"). Accept when the linkage name demangles to ours and carries the
    # DW_AT_name llvm-symbolizer printed.
    raw = got.raw_function or ""
    short = exp["function"].split("<")[0]
    return raw.startswith("_Z") and cxxfilt.demangle(raw) == got.function and short in raw


def check_dump(path: Path, mods: _Modules, resolver: Resolver) -> tuple[int, list[str], dict]:
    d = json.loads(path.read_text())
    run = d["run"]
    wasm = mods.get(d["symbolized_against"])
    module = mods.get(run["module"]) or wasm
    assert wasm is not None, d["symbolized_against"]
    if module is not wasm:
        module.companion = None
        # an .aot.wasm carries its own DWARF and names: no companion needed
        assert find_companion(module, [wasm]) is wasm or module.has_dwarf
    space = _space(run["exec_mode"])
    frames = d["frames"]
    raws = [RawFrame(index=fr["frame"], space=space, offset=fr["raw_offset"],
                     printed_name=fr["printed_name"], truncated=fr["printed_name_truncated"])
            for fr in frames]
    results = resolver.resolve_many(module, raws)
    errors: list[str] = []
    stats = {"exact": 0, "non_exact": 0, "stale": 0, "symtab_suspect": 0}
    for fr, got in zip(frames, results):
        where = f"{path.name} #{fr['frame']} {fr['raw_offset_hex']} {fr['printed_name']}"
        sym = fr["symbolized"]
        usable = sym is not None and fr.get("offset_consistent_with_name") is not False
        if usable and sym["frames"]:
            exp = sym["frames"]
            if len(exp) != len(got):
                errors.append(f"{where}: chain length {len(got)} != {len(exp)}")
                continue
            for e, g in zip(exp, got):
                if not (_name_ok(g, e) and g.file == e["file"] and g.line == e["line"]
                        and g.column == e["column"] and g.inlined == e["inlined"]
                        and g.status == "exact" and g.input_index == raws.index(
                            next(r for r in raws if r.index == fr["frame"]))):
                    errors.append(f"{where}: {g} != {e}")
            stats["exact"] += 1
            if sym.get("llvm_symbolizer_linkage_outer_name_from_symbol_table_suspect"):
                stats["symtab_suspect"] += 1
        else:
            g = got[-1]
            exported = g.wasm_index is not None and g.wasm_index < len(wasm.functions) and \
                fr["printed_name"] in wasm.functions[g.wasm_index].exports
            if g.status == "exact" or not g.reason:
                errors.append(f"{where}: expected a non-exact frame with a reason, got {g}")
            elif fr["expected_func_index"] is not None and g.wasm_index != \
                    fr["expected_func_index"] and not exported:
                # ground truth maps an export name through the name section; WAMR without
                # names prints the *export* name, whose function the offset confirms
                errors.append(f"{where}: function {g.wasm_index} != "
                              f"{fr['expected_func_index']} ({g})")
            elif fr["expected_function_name"] and not exported and \
                    g.function != fr["expected_function_name"]:
                errors.append(f"{where}: name {g.function!r} != "
                              f"{fr['expected_function_name']!r}")
            if fr.get("offset_consistent_with_name") is False and fr["raw_offset"] and \
                    not exported:
                stats["stale"] += 1
                if not any(w in g.reason for w in ("stale", "outside")):
                    errors.append(f"{where}: stale offset without saying so: {g.reason}")
            stats["non_exact"] += 1
    return len(frames), errors, stats


def _run_all(root: Path) -> tuple[int, list[str], dict]:
    mods = _Modules(root)
    resolver = Resolver()
    total, errors = 0, []
    stats = {"exact": 0, "non_exact": 0, "stale": 0, "symtab_suspect": 0}
    files = sorted((root / "expected" / "dumps").glob("*.expected.json"))
    assert files
    for f in files:
        n, errs, st = check_dump(f, mods, resolver)
        total += n
        errors += errs
        for k, v in st.items():
            stats[k] += v
    return total, errors, stats


def test_local_dumps_match_ground_truth(data_dir):
    total, errors, stats = _run_all(data_dir)
    assert not errors, "\n".join(errors[:20])
    assert total > 100 and stats["exact"] > 50 and stats["non_exact"] > 10
    assert stats["stale"] > 0 and stats["symtab_suspect"] > 0


@pytest.mark.fixtures
def test_shared_dumps_match_ground_truth(shared_fixtures):
    total, errors, stats = _run_all(shared_fixtures)
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors[:20])
    assert total > 2000 and stats["exact"] > 1000


def test_llvm_symbol_table_override_is_not_repeated(data_dir):
    """Where llvm-symbolizer's default mode names the wrong outermost function (symbol-table
    override), the DWARF subprogram wins: crash_oob.O2 code offset 543 is in
    headers_total_size, which llvm-symbolizer --functions=linkage calls ``main``."""
    d = json.loads((data_dir / "expected/dumps/crash_oob.O2.load.classic.log.expected.json")
                   .read_text())
    fr = next(f for f in d["frames"] if f["symbolized"] and
              f["symbolized"]["llvm_symbolizer_linkage_outer_name_from_symbol_table_suspect"])
    wrong = fr["symbolized"]["llvm_symbolizer_linkage"][-1]["function"]
    module = load_module(data_dir / "wasm/crash_oob.O2.wasm")
    got = Resolver().resolve_address(module, fr["symbolized"]["code_offset"],
                                     AddressSpace.CODE)
    assert got[-1].function == fr["symbolized"]["frames"][-1]["function"] != wrong


def test_perf_frames_name_the_aot_function(data_dir):
    """perf-map frames (aot_func#N+off) resolve to wasm function N + imports, by name."""
    files = sorted((data_dir / "expected" / "perf").glob("*.expected.json*"))
    if not files:
        pytest.skip("no perf ground truth in tests/data")
    resolver = Resolver()
    checked = 0
    for f in files:
        raw_bytes = f.read_bytes()
        d = json.loads(gzip.decompress(raw_bytes) if f.name.endswith(".gz") else raw_bytes)
        wasm = load_module(data_dir / d["source_wasm"]) if (data_dir / d["source_wasm"]).exists() \
            else None
        if wasm is None:
            continue
        for s in d["samples"][:50]:
            for fr in s["frames"]:
                if not fr.get("in_aot_code") or fr.get("aot_func") is None:
                    continue
                raw = RawFrame(index=0, space=AddressSpace.PERF, aot_index=fr["aot_func"],
                               offset=fr.get("offset_in_func"))
                got = resolver.resolve(wasm, raw)
                assert got[0].wasm_index == fr["wasm_func_index"]
                assert got[0].status == "function-only" and got[0].reason
                if fr.get("wasm_name"):
                    assert fr["wasm_name"] in (got[0].function, got[0].raw_function)
                checked += 1
    assert checked > 0


def _check_function_tables(root: Path) -> tuple[int, list[str]]:
    """Every defined function of every module in expected/wasm: an address inside its body
    resolves to that function (DWARF subprogram, else the name section), never another."""
    resolver = Resolver()
    errors: list[str] = []
    n = 0
    for f in sorted((root / "expected" / "wasm").glob("*.module.expected.json")):
        d = json.loads(f.read_text())
        wasm_path = root / "wasm" / f.name.replace(".module.expected.json", "")
        if not wasm_path.exists():
            continue
        module = load_module(wasm_path)
        comp = d.get("debug_companion") or {}
        if comp.get("file") and (root / comp["file"]).exists():
            find_companion(module, [load_module(root / comp["file"])])
        raws = [RawFrame(index=i, space=AddressSpace.FILE, offset=fn["body_end"] - 1)
                for i, fn in enumerate(d["functions"])]
        for fn, got in zip(d["functions"], resolver.resolve_many(module, raws)):
            n += 1
            outer = got[-1]
            if outer.wasm_index != fn["index"]:
                errors.append(f"{f.name} {fn['index']}: resolved to {outer.wasm_index}")
            elif fn["name"] and outer.function not in (fn["name"], demangle(fn["name"])):
                # (wasm-ld leaves names it cannot demangle, e.g. lambdas' $_0, mangled)
                errors.append(f"{f.name} {fn['index']}: {outer.function!r} != {fn['name']!r}")
            elif not fn["name"] and not module.companion and not module.has_dwarf and \
                    outer.status != "index-only":
                errors.append(f"{f.name} {fn['index']}: expected index-only, got {outer}")
    return n, errors


def test_local_function_tables(data_dir):
    n, errors = _check_function_tables(data_dir)
    assert n > 500 and not errors, "\n".join(errors[:20])


@pytest.mark.fixtures
def test_shared_function_tables(shared_fixtures):
    n, errors = _check_function_tables(shared_fixtures)
    assert n > 1500 and not errors, "\n".join(errors[:20])

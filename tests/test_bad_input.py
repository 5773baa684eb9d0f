"""Bad input: a clear WasmprofError naming file, offset and expectation; CLI exit 2; never a
traceback, hang or memory blow-up. Plus a property test mutating real fixtures."""

from __future__ import annotations

import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from aotgen import build_aot, simple_spec  # noqa: E402

from wasmprof.binary.aot import parse_aot  # noqa: E402
from wasmprof.binary.loader import find_companion, load_module  # noqa: E402
from wasmprof.binary.wasm import parse_wasm  # noqa: E402
from wasmprof.cli import main  # noqa: E402
from wasmprof.commands.inspect import module_to_dict  # noqa: E402
from wasmprof.errors import BinaryFormatError, WasmprofError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def _cli_error(tmp_path: Path, name: str, data: bytes, capsys) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    rc = main(["inspect", str(p)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert str(p) in err
    return err


def _uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _wasm_section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + _uleb(len(payload)) + payload


WASM_HDR = b"\0asm\1\0\0\0"


def test_empty_file(tmp_path, capsys):
    err = _cli_error(tmp_path, "empty.wasm", b"", capsys)
    assert "at offset 0 (0x0): empty file; expected" in err


def test_wrong_magic(tmp_path, capsys):
    err = _cli_error(tmp_path, "x.wasm", b"MZ\x90\x00" + b"\0" * 60, capsys)
    assert "at offset 0" in err and "unrecognised file type" in err and "found 4d 5a 90 00" in err


def test_truncated_wasm_section(tmp_path, capsys):
    data = (DATA / "wasm" / "fib.O2.wasm").read_bytes()
    wb = parse_wasm(data)
    cut = wb.code_section.payload_start + 10
    err = _cli_error(tmp_path, "cut.wasm", data[:cut], capsys)
    off = wb.code_section.payload_start
    assert f"at offset {off} (0x{off:x}): code section size" in err
    assert "runs past the end of the file" in err and "expected at most 10 bytes" in err


def test_truncated_aot_section(tmp_path, capsys):
    data = (DATA / "aot" / "fib.O2.plain.aot").read_bytes()
    aot = parse_aot(data)
    text = next(s for s in aot.sections if s.id == 2)
    err = _cli_error(tmp_path, "cut.aot", data[:text.payload_start + 100], capsys)
    assert f"at offset {text.offset + 4} " in err and "TEXT section size" in err
    assert "runs past the end" in err


def test_section_size_past_eof(tmp_path, capsys):
    mod = WASM_HDR + b"\x01" + _uleb(1_000_000) + b"\x00"
    err = _cli_error(tmp_path, "big.wasm", mod, capsys)
    assert "at offset 12 (0xc): type section size 1000000 runs past the end" in err
    assert "expected at most 1 bytes" in err


def test_leb128_overflow(tmp_path, capsys):
    mod = WASM_HDR + b"\x01" + b"\xff\xff\xff\xff\xff\x7f" + b"\0" * 8
    err = _cli_error(tmp_path, "leb.wasm", mod, capsys)
    assert "at offset 9 (0x9): section size overflows u32" in err
    assert "expected at most 5 LEB128 bytes" in err


def test_absurd_wasm_function_count_does_not_allocate(tmp_path, capsys):
    payload = _uleb(2**32 - 1) + b"\x00" * 16
    mod = WASM_HDR + _wasm_section(3, payload)
    tracemalloc.start()
    try:
        err = _cli_error(tmp_path, "many.wasm", mod, capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "at offset 15 (0xf): function count 4294967295 cannot fit" in err
    assert peak < 20_000_000


def test_absurd_aot_counts_do_not_allocate(tmp_path, capsys):
    spec = simple_spec("L3")
    blob = bytearray(build_aot(spec))
    aot = parse_aot(bytes(blob))
    exp = next(s for s in aot.sections if s.id == 4)
    blob[exp.payload_start:exp.payload_start + 4] = struct.pack("<I", 0xFFFFFFFF)
    tracemalloc.start()
    try:
        err = _cli_error(tmp_path, "many.aot", bytes(blob), capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"at offset {exp.payload_start + 4} " in err
    assert "export count 4294967295 cannot fit" in err
    assert peak < 20_000_000


def test_misaligned_aot_data(tmp_path, capsys):
    spec = simple_spec("L3")
    blob = bytearray(build_aot(spec))
    aot = parse_aot(bytes(blob))
    exp = next(s for s in aot.sections if s.id == 4)
    # export 0 = (u32 index, u8 kind, u8 0, u16 len 7, "memory\0") ends at +19: 1 pad byte
    pad = exp.payload_start + 19
    assert blob[pad] == 0 and blob[pad - 7:pad] == b"memory\0"
    blob[pad] = 0x55
    err = _cli_error(tmp_path, "skew.aot", bytes(blob), capsys)
    assert f"at offset {pad} (0x{pad:x}): misaligned AOT data: non-zero padding" in err
    assert "expected 1 zero bytes to 4-byte alignment, found 55" in err


def test_unknown_aot_version(tmp_path, capsys):
    blob = bytearray((DATA / "aot" / "fib.O2.plain.aot").read_bytes())
    blob[4:8] = struct.pack("<I", 42)
    err = _cli_error(tmp_path, "v42.aot", bytes(blob), capsys)
    assert "at offset 4 (0x4): unknown AOT version 42; expected version 3, 4, 5 or 6" in err


def test_truncated_elf_object(tmp_path, capsys):
    data = (DATA / "aot" / "crash_oob.O2.obj.o").read_bytes()
    err = _cli_error(tmp_path, "cut.o", data[:4000], capsys)
    assert "expected" in err and ("runs past the end" in err or "malformed ELF" in err)


def test_size_cap_refuses_before_reading(tmp_path, monkeypatch, capsys):
    p = tmp_path / "huge.wasm"
    with open(p, "wb") as f:        # sparse: 2 GiB without writing them
        f.truncate(2 << 30)
    with pytest.raises(BinaryFormatError) as e:
        load_module(p)
    assert "larger than the module size limit" in str(e.value)
    monkeypatch.setenv("WASMPROF_MAX_MODULE_BYTES", "100")
    err = _cli_error(tmp_path, "small.wasm", (DATA / "wasm" / "fib.O2.wasm").read_bytes(),
                     capsys)
    assert "at most 100 bytes" in err


def test_no_traceback_from_a_real_process(tmp_path):
    p = tmp_path / "junk.aot"
    p.write_bytes(b"\0aot\x06\0\0\0" + b"\xff" * 40)
    proc = subprocess.run([sys.executable, "-m", "wasmprof", "inspect", str(p)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"wasmprof: error: {p} at offset 8 (0x8): ")


# ---------------------------------------------------------------------------------------
# property test: mutated real fixtures parse cleanly or fail cleanly
# ---------------------------------------------------------------------------------------
SEEDS = {n: (DATA / "aot" / n).read_bytes() if n.endswith((".aot", ".o", ".aot.wasm")) else
         (DATA / "wasm" / n).read_bytes()
         for n in ("fib.O2.wasm", "fib.O2.strip-all.wasm", "crash_oob.O2.csn.aot",
                   "crash_oob.O2.aarch64.aot", "crash_oob.O2.objsbc.o", "fib.O2.plain.aot.wasm")}
SEEDS["synthetic-L1.aot"] = build_aot(simple_spec("L1", elem_segments=[[2]]))
SEEDS["synthetic-L2-i386.aot"] = build_aot(simple_spec("L2", 4, bits=32, elem_segments=[[2]]))
try:
    import wasmtime
    SEEDS["fib.O2.cwasm"] = wasmtime.Module(wasmtime.Engine(),
                                            SEEDS["fib.O2.wasm"]).serialize()
except ImportError:   # the test extra is not installed: the other seeds still run
    pass


def _size_fields(data: bytes) -> list[int]:
    """Offsets of section-size fields (AOT u32 sizes; Wasm size LEBs)."""
    try:
        if data[:4] == b"\0aot":
            return [s.offset + 4 for s in parse_aot(data).sections]
        if data[:4] == b"\0asm":
            return [s.offset + 1 for s in parse_wasm(data).sections]
    except WasmprofError:
        pass
    return []


SIZE_FIELDS = {n: _size_fields(d) for n, d in SEEDS.items()}


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    kind = draw(st.sampled_from(["flip", "truncate", "size", "mix"]))
    if kind in ("flip", "mix"):
        for _ in range(draw(st.integers(1, 8))):
            pos = draw(st.integers(0, len(data) - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
    if kind in ("size", "mix") and SIZE_FIELDS[name]:
        pos = draw(st.sampled_from(SIZE_FIELDS[name]))
        if data[:4] == b"\0aot":
            data[pos:pos + 4] = struct.pack("<I", draw(st.sampled_from(
                [0, 1, 3, 0x7FFFFFFF, 0xFFFFFFFF, draw(st.integers(0, 2**32 - 1))])))
        else:
            data[pos] = draw(st.integers(0, 255))
    if kind in ("truncate", "mix"):
        data = data[:draw(st.integers(0, len(data)))]
    return name, bytes(data)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated(), st.integers(0, 1 << 16))
def test_mutated_fixtures_parse_or_fail_cleanly(case, probe):
    name, data = case
    try:
        mod = load_module(name, data)
    except WasmprofError as e:
        assert e.source == name
        return
    # whatever was accepted must be usable downstream without exceptions
    module_to_dict(mod)
    find_companion(mod, [mod])
    if mod.aot is not None:
        mod.aot.function_at(probe)
    if mod.elf is not None:
        mod.elf.function_at(probe)
    if mod.wasm is not None:
        mod.wasm.function_at(probe)

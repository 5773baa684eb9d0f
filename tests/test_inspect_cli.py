"""``wasmprof inspect``: JSON contract, table, name escaping, exit codes (real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from wasmprof.binary.wasm import parse_wasm

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasmprof", "inspect", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_json_for_an_aot_with_its_wasm(data_dir):
    aot = data_dir / "aot" / "crash_oob.O2.plain.aot"
    wasm = data_dir / "wasm" / "crash_oob.O2.wasm"
    p = _run("--json", str(aot), str(wasm))
    assert p.returncode == 0, p.stderr
    docs = json.loads(p.stdout)
    a, w = docs
    for key in ("kind", "identity", "sha256", "import_function_count", "functions", "arch",
                "aot_version", "layout", "has_dwarf", "has_name_section", "build_id",
                "sections"):
        assert key in a and key in w
    assert a["kind"] == "aot" and a["arch"] == "x86_64" and a["aot_version"] == 6
    assert a["layout"] == "L3" and a["companion"] == str(wasm)
    assert w["kind"] == "wasm" and w["has_dwarf"] and w["identity"].startswith("code:")
    exp = json.loads((data_dir / "expected" / "aot" /
                      "crash_oob.O2.plain.aot.expected.json").read_text())
    assert a["import_function_count"] == exp["imported_function_count"]
    defined = [f for f in a["functions"] if not f["imported"]]
    assert [(f["aot_index"], f["wasm_index"], f["name"]) for f in defined] == \
        [(f["aot_index"], f["wasm_index"], f["name"]) for f in exp["functions"]]
    assert all({"wasm_index", "name", "aot_index", "text_offset", "size"} <= set(f)
               for f in a["functions"])
    assert defined[0]["text_offset"] == 0 and all(f["size"] > 0 for f in defined)
    wexp = json.loads((data_dir / "expected" / "wasm" /
                       "crash_oob.O2.wasm.module.expected.json").read_text())
    assert [f["import"] for f in a["functions"] if f["imported"]] == \
        [f["import"] for f in wexp["imported_functions"]]
    assert [s["kind"] for s in a["sections"] if s["format"] == "aot"][:6] == \
        ["TARGET_INFO", "INIT_DATA", "TEXT", "FUNCTION", "EXPORT", "RELOCATION"]


def test_single_file_json_is_one_object(data_dir):
    p = _run("--json", "--summary", str(data_dir / "aot" / "fib.O2.plain.aot.wasm"))
    doc = json.loads(p.stdout)
    assert doc["kind"] == "aot.wasm" and "functions" not in doc
    assert doc["target"]["features"] == [] and doc["target"]["bits"] == 64


def test_table_output(data_dir):
    p = _run(str(data_dir / "aot" / "crash_oob.O2.objsbc.o"),
             str(data_dir / "aot" / "crash_oob.O2.sbc.aot"), str(data_dir / "wasm" /
                                                              "crash_oob.O2.wasm"))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "wamrc object file (ELF) (elf-object)" in out
    assert "AOT version 6 layout L3" in out and "stack-check wrappers" in out
    line = next(ln for ln in out.splitlines() if ln.strip().endswith(" on_request_headers"))
    assert line.split()[:3] == ["9", "2", "0x150"]


def test_hostile_names_are_escaped_in_the_table(data_dir, tmp_path):
    """A name section carrying terminal escapes must not reach the terminal raw."""
    src = (data_dir / "wasm" / "fib.O2.strip-all.wasm").read_bytes()
    wb = parse_wasm(src)
    evil = "\x1b]0;pwned\x07\x1b[2J\u202eevil"
    name = evil.encode()
    entry = bytes([wb.import_function_count]) + bytes([len(name)]) + name
    sub = b"\x01" + bytes([len(entry) + 1]) + b"\x01" + entry
    content = b"\x04name" + sub
    p = tmp_path / "evil.wasm"
    p.write_bytes(src + b"\x00" + bytes([len(content)]) + content)
    out = _run(str(p))
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\u202e" not in out.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil" in out.stdout
    js = json.loads(_run("--json", str(p)).stdout)
    assert js["functions"][wb.import_function_count]["name"] == evil   # JSON keeps the data


def test_bad_file_exit_code_2_and_others_still_reported(data_dir, tmp_path):
    bad = tmp_path / "bad.aot"
    bad.write_bytes(b"\0aot\x07\0\0\0")
    p = _run("--json", str(data_dir / "wasm" / "fib.O2.wasm"), str(bad))
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert f"{bad} at offset 4 (0x4): unknown AOT version 7" in p.stderr
    docs = json.loads(p.stdout)
    assert docs[0]["kind"] == "wasm" and docs[1]["error"]["offset"] == 4


def test_validate(data_dir, tmp_path):
    good = data_dir / "wasm" / "fib.O2.wasm"
    p = _run("--summary", "--validate", str(good))
    assert p.returncode == 0 and "validation   valid" in p.stdout
    data = bytearray(good.read_bytes())
    body = parse_wasm(bytes(data)).bodies[2]
    data[body.end - 1] = 0x02
    bad = tmp_path / "invalid.wasm"
    bad.write_bytes(bytes(data))
    p = _run("--summary", "--validate", "--json", str(bad))
    assert p.returncode == 1
    assert json.loads(p.stdout)["validation"]["ok"] is False


def test_help_has_examples():
    p = _run("--help")
    assert p.returncode == 0 and "examples:" in p.stdout and "--json" in p.stdout

"""``wasmprof symbolize`` end to end: the README sample, JSON shape, exit codes, escaping."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wasmprof.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "logs" / "higress-gateway.log"
MODULES = ROOT / "samples" / "modules"


def run(capsysbinary, *argv: str) -> tuple[int, bytes, str]:
    code = main(["symbolize", *argv])
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def test_readme_sample_symbolizes_both_crashes(capsysbinary):
    code, out, _ = run(capsysbinary, str(SAMPLE), "--modules-dir", str(MODULES))
    assert code == 0
    text = out.decode()
    # the AOT crash: a five-deep inline chain at the trapping instruction
    assert ("mix_guard (inlined into round_mix) at /fixtures/src/inline_chain.c:54:9" in text)
    assert "check_token at /fixtures/src/inline_chain.c:82:18" in text
    assert "wamr/aot | plugin higress-system.inline-chain" in text
    # the interpreter crash: offsets read as interp (offset-1), inline frame included
    assert "header_value_len (inlined into headers_total_size) at /fixtures/src/oob_buffer.c:23:12" in text
    assert "wamr/interp | plugin higress-system.crash-oob" in text
    # the stale top offset is not turned into a wrong line, and says why
    assert "buf_load_u32  [function-only: offset 0xa86d1558 is outside every function body" in text
    # every input line is still there
    for line in SAMPLE.read_text().splitlines():
        assert line in text or line.replace("\t", "\t") in text


def test_json_shape(capsysbinary):
    code, out, _ = run(capsysbinary, str(SAMPLE), "--modules-dir", str(MODULES), "--json")
    assert code == 0
    doc = json.loads(out)
    assert [c["trap_kind"] for c in doc["crashes"]] == ["unreachable", "out-of-bounds-memory"]
    first = doc["crashes"][0]
    for key in ("message", "trap_kind", "runtime", "space", "plugin", "thread", "partial",
                "frames", "raw"):
        assert key in first
    assert (first["space"], first["plugin"], first["thread"]) == (
        "aot", "higress-system.inline-chain", "24")
    chain = [f for f in first["frames"] if f["input_index"] == 0]
    assert [f["inlined"] for f in chain] == [True, True, True, True, False]
    assert all(f["raw_offset"] == 0x491 and f["printed_name"] == "check_token" for f in chain)
    assert first["frames"][-1]["input_index"] == 5


def test_only_crashes_and_gzip(capsysbinary, tmp_path):
    gz = tmp_path / "gw.log.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    code, out, _ = run(capsysbinary, str(gz), "--module", str(MODULES / "crash_oob.O2.wasm"),
                       "--only-crashes")
    assert code == 0
    text = out.decode()
    assert "consumer 'alice'" not in text and text.count("==> wasm crash") == 2
    # one module given: it applies to all crashes, even the inline_chain one (names mismatch)
    assert "the only module given" in text


def test_exit_codes(capsysbinary, tmp_path):
    quiet = tmp_path / "quiet.log"
    quiet.write_text("[2025-01-01 00:00:00.000][1][info][main] [x.cc:1] nothing here\n")
    assert run(capsysbinary, str(quiet))[0] == 1
    code, _, err = run(capsysbinary, str(tmp_path / "missing.log"))
    assert code == 2 and "missing.log" in err
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0\x0a\xff")
    code, _, err = run(capsysbinary, str(SAMPLE), "--module", str(bad))
    assert code == 2 and "bad.wasm" in err
    with pytest.raises(SystemExit) as e:
        main(["symbolize", str(SAMPLE), "--mode", "jit"])
    assert e.value.code == 2
    code, _, err = run(capsysbinary, str(SAMPLE), "--modules-dir", str(quiet))
    assert code == 2 and "not a directory" in err
    corrupt = tmp_path / "cut.log.gz"
    corrupt.write_bytes(gzip.compress(SAMPLE.read_bytes())[:300])
    code, _, err = run(capsysbinary, str(corrupt))
    assert code == 2 and "cut.log.gz" in err


def test_hostile_names_are_escaped(capsysbinary, tmp_path):
    log = tmp_path / "evil.log"
    log.write_bytes(b"Exception: unreachable\n\n#00: 0x0010 - evil\x1b]0;pwn\x07\xe2\x80\xae\n\n")
    code, out, _ = run(capsysbinary, str(log), "--only-crashes")
    assert code == 0
    assert b"\x1b" not in out and b"\x07" not in out and "\u202e".encode() not in out
    assert b"evil\\x1b]0;pwn\\x07\\u202e" in out


def test_stdin_and_help():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "wasmprof", "symbolize", "-", "--modules-dir",
                        str(MODULES), "--json"], input=SAMPLE.read_bytes(), capture_output=True,
                       env=env, timeout=120)
    assert p.returncode == 0 and len(json.loads(p.stdout)["crashes"]) == 2
    h = subprocess.run([sys.executable, "-m", "wasmprof", "symbolize", "--help"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert h.returncode == 0 and "examples:" in h.stdout and "--modules-dir" in h.stdout

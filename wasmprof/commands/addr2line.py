"""``wasmprof addr2line MODULE ADDR...``: addresses -> function, file:line:column, inlines.

Exit codes: 0 every address was read (whatever its status), 2 bad usage, an unreadable
module or an address that is not a number (the other addresses are still answered).

Output styles: ``wasmprof`` (default: one entry per address, the inline chain indented, a
``[status: reason]`` on every frame that is not exact), ``--json`` (wasmprof's Frames, one
object per line), ``--output-style=JSON`` / ``LLVM`` (llvm-symbolizer's shapes, so scripts
written for it work; each JSON symbol also carries wasmprof's ``Status`` and ``Reason``).
Bulk input renders each distinct answer once (:meth:`Resolver.bulk_entries`); answers off
the bulk path (offset 0, stale DWARF, no DWARF...) come from :meth:`Resolver.resolve`. Both
are the same lookup, so the text does not depend on how many addresses were asked.
"""

from __future__ import annotations

import argparse
import re
import sys
from itertools import chain, repeat
from operator import itemgetter

from wasmprof.addr2line.spaces import SPACE_HELP
from wasmprof.addr2line.text import PAD, clean, frame_fields, frames_text, pad_for, text_frame
from wasmprof.errors import UsageError
from wasmprof.model import AddressSpace, ModuleKind, RawFrame

EPILOG = """\
examples:
  wasmprof addr2line plugin.wasm 0x3fc 0x399          file offsets (wasm-tools' default)
  wasmprof addr2line --space interp plugin.wasm 0x3fd WAMR classic-interpreter dump offset
  wasmprof addr2line --space aot plugin.aot 0x3fc --companion plugin.wasm
  wasmprof addr2line --space code --json plugin.wasm 543
  wasmprof addr2line --space native plugin.aot 0x1a0  AOT text offset -> function
  wasmprof addr2line --space perf plugin.aot 'aot_func#4+0x34' --companion plugin.wasm
  wasmprof addr2line --space fast-interp --func '$f12' plugin.wasm 0x2c
  wasmprof addr2line --source-map plugin.wasm.map plugin.wasm 0x1a2   AssemblyScript/Emscripten
  cut -d' ' -f2 offsets.txt | wasmprof addr2line plugin.wasm      addresses from stdin
  wasmprof addr2line --output-style=JSON --space code plugin.wasm < addrs.txt   like
                                                      llvm-symbolizer --output-style=JSON

address spaces (--space):
""" + "\n".join(f"  {str(s):12} {t}" for s, t in SPACE_HELP.items()) + """

Every frame says how it was resolved: exact, function-only, index-only or unknown, with a
reason when not exact (offset 0 = unknown in WAMR dumps; stale offsets that fall outside the
function the frame names keep that function; DWARF that does not match the code, e.g. after
wasm-opt, is never exact). Stripped modules resolve through an unstripped --companion with
the same code section; modules without DWARF through their source map (sourceMappingURL or
--source-map). JSON: one object per address per line, {"address", "space", "frames": [...]}.
"""

STYLES = ("wasmprof", "LLVM", "JSON")
_PERF = re.compile(r"^(?:\[[^\]]*\]#)?aot_func(?:_internal)?#(\d+)(?:\+(0x[0-9a-fA-F]+|\d+))?$")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "addr2line", help="resolve addresses to function, file:line:column and inline chains",
        description="Resolve ADDRs (hex 0x.. or decimal; from stdin when none are given) "
                    "in MODULE (.wasm, .aot, .aot.wasm, wamrc .o, .cwasm) to the inline "
                    "chain of functions with file, line and column from DWARF or a source "
                    "map, falling back to the name section and $f<index>.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("module", metavar="MODULE", help="the module the addresses belong to")
    p.add_argument("addresses", nargs="*", metavar="ADDR",
                   help="addresses (0x.. or decimal; perf space: aot_func#N+0x..)")
    p.add_argument("--space", default="file", choices=[str(s) for s in AddressSpace],
                   help="what the addresses mean (default: file)")
    p.add_argument("--companion", action="append", default=[], metavar="FILE",
                   help="unstripped .wasm with DWARF/names (for stripped modules, .aot, .o); "
                        "repeatable")
    p.add_argument("--source-map", metavar="FILE",
                   help="the module's source map (.wasm.map) when its sourceMappingURL does "
                        "not lead to it")
    p.add_argument("--func", dest="frame_function", metavar="NAME",
                   help="the function the frame names ($f12, aot_func#3 or a name): used for "
                        "fast-interp offsets and to detect stale offsets")
    p.add_argument("--json", action="store_true", help="one JSON object per address per line")
    p.add_argument("--output-style", choices=STYLES, default="wasmprof",
                   help="wasmprof (default), or llvm-symbolizer's LLVM / JSON output")
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


_clean = clean
_fields = frame_fields
_text_frame = text_frame


def _llvm_frame(fields: tuple) -> str:
    fn, _, _, file, line, col, _, _, _, _ = fields
    return f"{_clean(fn) if fn else '??'}\n{_clean(file) if file else '??'}:{line or 0}:" \
           f"{col or 0}\n"


def _llvm_symbol(fields: tuple) -> dict:
    fn, status, _, file, line, col, _, reason, decl_file, decl_line = fields
    return {"Column": col or 0, "Discriminator": 0, "FileName": file or "",
            "FunctionName": fn or "", "Line": line or 0, "StartAddress": "",
            "StartFileName": decl_file or "", "StartLine": decl_line or 0,
            "Status": str(status), "Reason": reason}


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


def read_tokens(args) -> list[str]:
    if args.addresses:
        return list(args.addresses)
    return sys.stdin.buffer.read().decode("utf-8", "replace").split()


def run(args: argparse.Namespace) -> int:
    from wasmprof.addr2line.bulk import paused_gc
    from wasmprof.binary.loader import find_companion, load_module

    space = AddressSpace(args.space)
    module = load_module(args.module, source_map=args.source_map)
    companions = [load_module(c) for c in args.companion]
    if companions:
        if find_companion(module, companions) is None and not _cwasm_companion(module,
                                                                                 companions):
            # an explicit companion that does not match by identity/shape: refuse, a wrong
            # companion would give silently wrong lines
            raise UsageError("the companion does not match the module (different code "
                             "section / function shape)", source=args.companion[0],
                             expected=f"a build of {args.module}")
    tokens = read_tokens(args)
    with paused_gc(len(tokens) > 256):
        return _answer(args, space, module, tokens)


def _parse_all(tokens: list[str], space: AddressSpace, func: str | None
               ) -> tuple[list[RawFrame | None], list[int] | None, list[str]]:
    """Per token its RawFrame (None when it is not an address); the plain offsets when
    every token is a bare hex/decimal number (the bulk path); error messages."""
    values: list[int] | None = None
    if not func and space not in (AddressSpace.PERF, AddressSpace.NATIVE,
                                  AddressSpace.FAST_INTERP):
        try:
            values = list(map(int, tokens, repeat(0)))
            if values and (min(values) < 0 or max(values) > 0xFFFFFFFFFFFFFFFF):
                values = None
        except ValueError:
            values = None
    if values is not None:
        return [None] * len(tokens), values, []
    raws: list[RawFrame | None] = []
    bad: list[str] = []
    for i, t in enumerate(tokens):
        try:
            r = parse_address(t, space)
        except UsageError as e:
            bad.append(str(e))
            raws.append(None)
            continue
        r.index = i
        if func and r.printed_name is None:
            r.printed_name = func
        raws.append(r)
    return raws, None, bad


def _answer(args, space: AddressSpace, module, tokens: list[str]) -> int:
    from wasmprof.addr2line.resolver import Resolver

    resolver = Resolver()
    style = "json" if args.json else args.output_style
    raws, values, bad = _parse_all(tokens, space, args.frame_function)
    if values is not None and style == "wasmprof":
        text = fast_text(resolver, module, values, space)
        if text is not None:
            write = sys.stdout.buffer.write
            for part in text:
                write(part.encode("utf-8", "replace"))
            sys.stdout.flush()
            return 0
    answers: list = []
    keys: list[int] = []
    if values is not None and style != "json":
        got = resolver.bulk_entries(module, values, space)
        if got is not None:
            keys, answers = got
    if values is not None and not keys:
        raws = [RawFrame(index=i, space=space, offset=v) for i, v in enumerate(values)]
    if not keys:
        # per-input Frames (JSON, non-Wasm spaces, --func, no DWARF): one resolve_many
        asked = [r for r in raws if r is not None]
        results = iter(resolver.resolve_many(module, asked))
        answers = [next(results) if r is not None else None for r in raws]
        keys = list(range(len(tokens)))
        values = [r.offset if r is not None else None for r in raws]
    else:
        # bulk answers are shared per interval; the few that are not come from resolve()
        answers = list(answers)
        extra: dict[int, int] = {}
        for i, k in enumerate(keys):
            if not answers[k]:
                extra[i] = len(answers)
                answers.append(resolver.resolve(module, RawFrame(index=i, space=space,
                                                                 offset=values[i]),
                                                input_index=i))
        if extra:
            keys = [extra.get(i, k) for i, k in enumerate(keys)]
    write = sys.stdout.buffer.write
    if style == "json":
        _write_json(write, tokens, raws, answers, space)
    else:
        if style == "LLVM":
            heads = [""] * len(values)          # llvm-symbolizer prints no address
        else:
            heads = [hex(v) if v is not None and (raws[i] is None or raws[i].aot_index is None)
                     else _clean(tokens[i]) for i, v in enumerate(values)]
        _write_rendered(write, heads, keys, answers, raws, _Renderer(style, module.path))
    sys.stdout.flush()
    for msg in bad:
        print(f"wasmprof: error: {msg}", file=sys.stderr)
    return 2 if bad else 0


class _Renderer:
    """Turns answers into text for one output style: ``(pre, post)`` per (answer, head
    width) so that an address prints ``pre + head + post``. An answer is a bulk entry
    ``(specs, wasm index, tail)`` (frame field tuples; ``tail`` is shared by every entry
    with the same callers, so its text is rendered once) or a list of Frames."""

    def __init__(self, style: str, module_path: str) -> None:
        self.style = style
        self._line: dict = {}
        self._tail: dict[tuple[int, int], str] = {}
        if style == "JSON":
            from wasmprof.output import dumps
            self._dumps = dumps
            self._json_head = '{"Address":"'
            self._json_mod = dumps(module_path).decode()

    def frame(self, f) -> str:
        """One frame's text in this style (memoised per frame fields)."""
        key = f if f.__class__ is tuple else _fields(f)
        got = self._line.get(key)
        if got is None:
            full = key if len(key) == 10 else (*key, None, None)
            got = self._line[key] = _text_frame(full) if self.style == "wasmprof" else \
                _llvm_frame(full) if self.style == "LLVM" else \
                self._dumps(_llvm_symbol(full)).decode()
        return got

    def __call__(self, answer, width: int) -> tuple[str, str]:
        if answer.__class__ is tuple:
            specs, _, tail = answer
            first = [self.frame(specs[0])]
            rest = self._tail_text(tail, width) if tail else None
        else:
            first = [self.frame(f) for f in answer]
            rest = None
        if self.style == "wasmprof":
            sep = "\n" + " " * (width + 2)
            lines = sep.join(first) if first else "?? [unknown]"
            return "", f": {lines}{sep + rest if rest else ''}\n"
        if self.style == "LLVM":
            return ("".join(first) + (rest or "") or "??\n??:0:0\n") + "\n", ""
        syms = ",".join(first) + ("," + rest if rest else "")
        if not syms:
            syms = self.frame((None, "unknown", None, None, None, None, False, None))
        return self._json_head, f'","ModuleName":{self._json_mod},"Symbol":[{syms}]}}\n'

    def _tail_text(self, tail: list, width: int) -> str:
        key = (id(tail), width)
        got = self._tail.get(key)
        if got is None:
            parts = [self.frame(t) for t in tail]
            sep = "\n" + " " * (width + 2) if self.style == "wasmprof" else \
                "" if self.style == "LLVM" else ","
            got = self._tail[key] = sep.join(parts)
        return got


def fast_text(resolver, module, values: list[int], space: AddressSpace) -> list[str] | None:
    """The default text output for bare addresses (in chunks), from the module's
    pre-rendered :class:`~wasmprof.addr2line.texttable.TextTable` (the pieces
    :meth:`ChainLookup.lookup` composes answers from, rendered once per module); addresses
    the table has no text for (offset 0, no DWARF scope, outside every body) are resolved
    one by one. None: no bulk lookup."""
    got = resolver.text_table(module, values, space)
    if got is None:
        return None
    table, codes = got
    return table.render(values, codes, lambda i: resolver.resolve(
        module, RawFrame(index=i, space=space, offset=values[i]), input_index=i))


def _render_text(frames: list, width: int) -> tuple[str, str]:
    return "", frames_text(frames).replace(PAD, pad_for(width))


def _write_rendered(write, heads, keys, answers, raws, render: _Renderer) -> None:
    """Each address prints ``pre + head + post``; ``render`` gives (pre, post) once per
    distinct (answer, head width); the output is joined in C. Tokens that were not
    addresses print nothing (their error goes to stderr)."""
    widths = list(map(len, heads))
    wide = max(widths, default=0) + 1
    combo = [k * wide + w for k, w in zip(keys, widths)]
    texts: dict[int, tuple[str, str]] = {}
    for c in set(combo):
        k, w = divmod(c, wide)
        ans = answers[k]
        texts[c] = render(ans, w) if ans is not None else ("", "")
    keep = [i for i, r in enumerate(raws) if r is None and answers[keys[i]] is None]
    if keep:                        # tokens that were not addresses: nothing for them
        drop = set(keep)
        heads = ["" if i in drop else h for i, h in enumerate(heads)]
    got = list(map(texts.__getitem__, combo))
    step = 65536
    for lo in range(0, len(got), step):
        part = got[lo:lo + step]
        out = "".join(chain.from_iterable(zip(map(itemgetter(0), part), heads[lo:lo + step],
                                              map(itemgetter(1), part))))
        write(out.encode("utf-8", "replace"))


def _write_json(write, tokens, raws, answers, space) -> None:
    from wasmprof.output import dumps
    sp = str(space)
    chunk: list[bytes] = []
    for i, t in enumerate(tokens):
        r = raws[i]
        if r is None:
            continue
        chunk.append(dumps({"address": r.offset, "input": t, "space": sp,
                            "frames": [f.to_dict() for f in answers[i]]}) + b"\n")
        if len(chunk) >= 4096:
            write(b"".join(chunk))
            chunk.clear()
    write(b"".join(chunk))


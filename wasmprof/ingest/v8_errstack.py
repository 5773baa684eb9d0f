"""V8 outside Envoy: ``err.stack`` of node, Chrome and Deno (a dialect of its own).

Contract: line-level recognisers; never raise. A trace is an error line
(``RuntimeError: unreachable``, ``RangeError: Maximum call stack size exceeded``,
``Uncaught (in promise) RuntimeError: …`` in Chrome's console, ``error: Uncaught …`` in
Deno) followed by ``    at`` lines, innermost first. Wasm frames are

    at [<name> (]wasm://wasm/[<module>-]<hash>:wasm-function[<N>]:0x<offset>[)]

where ``<name>`` is ``<module>.<function>`` when the name section names the module (just
``<module>`` for an unnamed function) and absent for an unnamed function of an unnamed
module; ``<N>`` is the Wasm function index (imports included) and ``<offset>`` the byte
offset of the instruction in the module: :attr:`AddressSpace.V8`. JavaScript frames
(``at Object.<anonymous> (/x/run.js:3:17)``) belong to the trace but are not Wasm frames.
V8 prints at most ``Error.stackTraceLimit`` (default 10) frames.
"""

from __future__ import annotations

import re

from wasmprof.model import AddressSpace, RawFrame

MARK = "wasm://wasm/"
_WASM_AT = re.compile(r"\s{1,16}at (?:(.{1,2000}?) \()?wasm://wasm/(?:([^:()\s]{1,500})-)?"
                      r"([0-9a-fA-F]{1,16}):wasm-function\[(\d{1,9})\]:0x([0-9a-fA-F]{1,16})\)?\s*\Z")
_JS_AT = re.compile(r"\s{1,16}at \S")
_ERROR = re.compile(r"(?:error: )?(?:Uncaught (?:\(in promise\) )?)?"
                    r"((?:[A-Z]\w{0,40})?(?:Error|Exception)(?:: .{0,2000})?)\s*\Z", re.S)


def parse_frame(line: str, position: int) -> RawFrame | None:
    """A Wasm ``at`` line, or None."""
    if MARK not in line:
        return None
    m = _WASM_AT.match(line)
    if not m:
        return None
    name, module, _hash, index, offset = m.groups()
    if name and module:
        if name == module:
            name = None                                 # unnamed function of a named module
        elif name.startswith(module + "."):
            name = name[len(module) + 1:]
    return RawFrame(index=position, space=AddressSpace.V8, offset=int(offset, 16),
                    printed_name=name or None, func_index=int(index), module=module,
                    raw=line)


def is_js_frame(line: str) -> bool:
    """Another ``at`` line of the trace (a JavaScript frame)."""
    return bool(_JS_AT.match(line)) and MARK not in line


def error_message(line: str) -> str | None:
    """``RuntimeError: unreachable`` (the line before the frames) -> the message, else None."""
    m = _ERROR.match(line.strip())
    return m.group(1) if m else None

"""Language-runtime panics in a plugin's output: Go, TinyGo, Rust, C++ and C.

Contract:

- :func:`opens` tells whether one record / output line starts a panic, and how its writer
  writes (``tokens``: one ``print`` token per write, as Go's runtime and Rust's unbuffered
  stderr do; else one line per write). Cheap; never raises.
- :func:`parse` reads the reassembled output lines (:func:`wasmprof.ingest.plugin_output.
  reassemble`) into a :class:`~wasmprof.model.Panic`: kind, language, message, source
  location(s) as printed, ``recovered``, and for Go the goroutine traceback as frames with
  status ``runtime-text``. Text after the panic that is not part of it is ignored. Never
  raises; returns None when the lines hold no panic after all.

Shapes (field.md; Go ``runtime/panic.go printpanics``, ``traceback.go``; TinyGo
``runtime/panic.go``; Rust ``std::panicking::default_hook`` and ``PanicInfo``'s Display before
and after 1.73; libc++abi ``abort_message``; libstdc++ ``__verbose_terminate_handler``; musl
and Emscripten ``__assert_fail``):

- Go: ``panic: MSG[ [recovered]]`` (chained: ``\\tpanic: MSG``), ``fatal error: MSG``, a blank
  line, ``goroutine N [STATUS]:``, then per frame ``FUNC(ARGS)`` / ``FUNC(...)`` and
  ``\\tFILE:LINE[ +0xOFF]``, ``created by FUNC[ in goroutine N]``;
- TinyGo: ``panic: MSG`` (one buffered line, no traceback);
- Rust: ``[thread 'NAME' ]panicked at 'MSG', FILE:L:C`` (< 1.73) or
  ``[thread 'NAME' ]panicked at FILE:L:C:`` + the message on the next line(s) (>= 1.73);
- C++: ``libc++abi: terminating[ due to| with] uncaught exception of type T: MSG``,
  ``terminate called after throwing an instance of 'T'`` + ``  what():  MSG``;
- C: ``Assertion failed: EXPR (FILE: FUNC: LINE)`` (musl / wasi-libc) or
  ``Assertion failed: EXPR, at: FILE,LINE,FUNC`` (Emscripten).
"""

from __future__ import annotations

import re

from wasmprof.model import Frame, FrameStatus, Panic

LANGUAGES = {"go": "Go", "tinygo": "TinyGo", "rust": "Rust", "cxx": "C++", "c": "C"}
MAX_FRAMES = 200

_RUST_OLD = re.compile(r"(?:thread '([^']{0,200})' )?panicked at '(.*)', (\S{1,500}?):(\d{1,9}):(\d{1,9})\s*\Z",
                       re.S)
_RUST_NEW = re.compile(r"(?:thread '([^']{0,200})' )?panicked at (\S{1,500}?):(\d{1,9}):(\d{1,9}):\s*\Z")
_GO_HEADER = re.compile(r"goroutine (\d{1,12})(?: gp=\S+ m=\S+(?: mp=\S+)?)? \[([^\]]{1,200})\]:\s*\Z")
_GO_FUNC = re.compile(r"(\S.{0,1000})\((.{0,2000}?)\)\s*\Z")
# "\tFILE:LINE +0xOFF" (the tab may have become spaces, or gone, on its way)
_GO_FILE = re.compile(r"\s*(\S.{0,1000}?):(\d{1,9})(?: \+0x([0-9a-fA-F]{1,16}))?(?: fp=\S+ sp=\S+ pc=\S+)?\s*\Z")
_GO_CREATED = re.compile(r"created by (\S{1,1000})(?: in goroutine \d{1,12})?\s*\Z")
_LIBCXXABI = re.compile(r"libc\+\+abi: (?:terminating(?: (?:due to|with) uncaught exception of type"
                        r" (.{1,500}?)(?:: (.*))?)?|(.*))\s*\Z", re.S)
_STDCXX = re.compile(r"terminate called (?:after throwing an instance of '(.{1,500})'|(.{1,500}))\s*\Z")
_WHAT = re.compile(r"\s{0,4}what\(\):\s{1,4}(.*)\Z", re.S)
_ASSERT_MUSL = re.compile(r"Assertion failed: (.{0,1000}) \((.{1,500}): (.{1,300}): (\d{1,9})\)\s*\Z")
_ASSERT_EMS = re.compile(r"Assertion failed: (.{0,1000}), at: (.{1,500}),(\d{1,9}),(.{1,300})\s*\Z")


def opens(text: str) -> tuple[str, bool] | None:
    """``(kind, tokens)`` when ``text`` (one record or line) starts a panic, else None."""
    if "anic" in text:
        s = text.lstrip()
        if s in ("panic:", "panic: "):
            return "go", True                     # Go's runtime: "panic: " is one write
        if s.startswith("panic: "):
            return "tinygo", False                # TinyGo buffers the whole line
        if "panicked at" in s and (s.startswith("panicked at") or s.startswith("thread '")):
            return "rust", False
        if s.startswith("' panicked at"):
            return "rust", True                   # Rust's raw stderr, from its third piece
    if text in ("thread '",):
        return "rust", True                       # Rust's raw stderr: one piece per write
    if text.startswith("fatal error: "):
        return "go", text == "fatal error: "
    if text.startswith(("libc++abi: ", "terminate called ")):
        return "cxx", text in ("libc++abi: ", "libc++abi:")  # abort_message: 3 writes
    if text.startswith("Assertion failed: "):
        return "c", False
    return None


def parse(lines: list[str], kind: str) -> Panic | None:
    """The panic in ``lines`` (reassembled output, starting at the panic)."""
    lines = [x.rstrip("\r") for x in lines]
    if kind in ("go", "tinygo"):
        return _parse_go(lines, kind)
    if kind == "rust":
        return _parse_rust(lines)
    if kind == "cxx":
        return _parse_cxx(lines)
    if kind == "c":
        return _parse_assert(lines)
    return None


def _panic(kind: str, lines: list[str], **kw) -> Panic:
    return Panic(kind=kind, language=LANGUAGES[kind], lines=lines[:400], **kw)


# -- Go / TinyGo --------------------------------------------------------------------------
def _parse_go(lines: list[str], kind: str) -> Panic | None:
    messages: list[str] = []
    recovered = False
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("panic: "):
            msg = s[len("panic: "):]
            if msg.endswith("]") and " [recovered" in msg:
                recovered = True
                msg = msg[:msg.rindex(" [recovered")]
            messages.append(msg)
        elif s.startswith("fatal error: "):
            messages.append(s)
        elif s and not s.startswith("[signal ") and not s.startswith("runtime: "):
            break
        i += 1
    if not messages:
        return None
    frames: list[Frame] = []
    end = i
    for k in range(i, min(len(lines), i + 4)):    # a blank line, then the goroutine header
        m = _GO_HEADER.match(lines[k].strip())
        if m:
            kind = "go"
            frames, used = _go_frames(lines[k + 1:], f"goroutine {m.group(1)} [{m.group(2)}]")
            end = k + 1 + used
            break
        if lines[k].strip():
            break
    locations = []
    for f in frames:
        if f.file and not _go_runtime(f.function or "", f.file):
            locations.append((f.file, f.line, None))
            break
    return _panic(kind, lines[:end], message=messages[0], locations=locations,
                  recovered=recovered, frames=frames)


def _go_frames(lines: list[str], goroutine: str) -> tuple[list[Frame], int]:
    """The frames of one goroutine's traceback, and how many lines they took."""
    frames: list[Frame] = []
    pending: tuple[str, str] | None = None
    used = 0
    for used, line in enumerate(lines, 1):
        if not line.strip():
            used -= 1
            break                                  # the next goroutine, or the end
        m = _GO_FILE.match(line) if pending is not None else None
        if m is not None or line.startswith("\t"):
            if m and pending is not None:
                func, args = pending
                off = f" +0x{m.group(3)}" if m.group(3) else ""
                frames.append(Frame(
                    function=func, status=FrameStatus.RUNTIME_TEXT, raw_function=func + args,
                    file=m.group(1), line=int(m.group(2)),
                    reason=f"from Go's traceback text ({goroutine}, printed '{m.group(1)}:"
                           f"{m.group(2)}{off}'): not DWARF (Go Wasm modules carry none)",
                    printed_name=func))
                pending = None
                if len(frames) >= MAX_FRAMES:
                    break
            continue
        m = _GO_CREATED.match(line.strip())
        if m:
            pending = (m.group(1), " (created by)")
            continue
        m = _GO_FUNC.match(line.strip())
        if m:
            pending = (m.group(1), f"({m.group(2)})")
        elif not (line.strip().startswith("...") and "frames elided" in line):
            used -= 1
            break
    return frames, used


def _go_runtime(function: str, file: str) -> bool:
    """A frame of Go's runtime (``panic``, ``runtime.*``, files under GOROOT/src/runtime)."""
    return (function == "panic" or function.startswith("runtime.")
            or file.startswith("runtime/") or "/src/runtime/" in file)


# -- Rust ---------------------------------------------------------------------------------
def _parse_rust(lines: list[str]) -> Panic | None:
    for i, line in enumerate(lines):
        if "panicked at" not in line:
            continue
        s = line.strip()
        m = _RUST_NEW.search(s)
        if m:
            body = []
            for nxt in lines[i + 1:]:
                if nxt.startswith("note: ") or nxt.startswith("stack backtrace:"):
                    break
                body.append(nxt)
            while body and not body[-1].strip():
                body.pop()
            return _panic("rust", lines[:i + 1 + len(body)], message="\n".join(body) or None,
                          locations=[(m.group(2), int(m.group(3)), int(m.group(4)))])
        text = "\n".join([s, *lines[i + 1:i + 20]])
        for j in range(min(20, len(lines) - i), 0, -1):   # the message may span lines
            text = "\n".join([s, *lines[i + 1:i + j]])
            m = _RUST_OLD.search(text)
            if m:
                return _panic("rust", lines[:i + j], message=m.group(2),
                              locations=[(m.group(3), int(m.group(4)), int(m.group(5)))])
        return _panic("rust", lines[:i + 1], message=s.split("panicked at", 1)[1].strip(" :'"))
    return None


# -- C++ / C ------------------------------------------------------------------------------
def _parse_cxx(lines: list[str]) -> Panic | None:
    for i, line in enumerate(lines):
        s = line.strip()
        m = _LIBCXXABI.match(s)
        if m:
            if m.group(1):
                msg = f"uncaught {m.group(1)}" + (f": {m.group(2)}" if m.group(2) else "")
            else:
                msg = m.group(3) or "terminating"
            return _panic("cxx", lines[:i + 1], message=msg)
        m = _STDCXX.match(s)
        if m:
            if m.group(1):
                msg = f"uncaught {m.group(1)}"
                if i + 1 < len(lines):
                    w = _WHAT.match(lines[i + 1])
                    if w:
                        return _panic("cxx", lines[:i + 2], message=f"{msg}: {w.group(1)}")
                return _panic("cxx", lines[:i + 1], message=msg)
            return _panic("cxx", lines[:i + 1], message=f"terminate called {m.group(2)}")
        if s.startswith("Assertion failed: "):
            return _parse_assert(lines[i:])
    return None


def _parse_assert(lines: list[str]) -> Panic | None:
    s = lines[0].strip() if lines else ""
    m = _ASSERT_MUSL.match(s)
    if m:
        return _panic("c", lines[:1], message=f"Assertion failed: {m.group(1)} in {m.group(3)}",
                      locations=[(m.group(2), int(m.group(4)), None)])
    m = _ASSERT_EMS.match(s)
    if m:
        return _panic("c", lines[:1], message=f"Assertion failed: {m.group(1)} in {m.group(4)}",
                      locations=[(m.group(2), int(m.group(3)), None)])
    if s.startswith("Assertion failed: "):
        return _panic("c", lines[:1], message=s)
    return None

"""Trap message -> :class:`TrapKind`, for every runtime dialect wasmprof reads.

Contract: :func:`classify` takes the message as the log printed it (``Exception: out of
bounds memory access``, ``Uncaught RuntimeError: unreachable``, ``wasm trap: integer divide
by zero``, ``wavm.outOfBoundsMemoryAccess``, ``Caught Segmentation fault``...) and returns
the kind; anything it does not know is :attr:`TrapKind.UNKNOWN` (never an exception).
Matching is on lower-cased substrings, ordered from most to least specific, so it is
linear in the message length.
"""

from __future__ import annotations

from wasmprof.model import TrapKind

# (substring, kind): first match wins. Sources: WAMR exception_msgs[] (formats.md §4.4),
# V8 RuntimeError texts, wasmtime TrapCode descriptions, WAVM exception type names.
_RULES: tuple[tuple[str, TrapKind], ...] = (
    # stack overflow (WAMR: native / operand / auxiliary; V8: RangeError; wasmtime; WAVM)
    ("stack overflow", TrapKind.STACK_OVERFLOW),
    ("maximum call stack size exceeded", TrapKind.STACK_OVERFLOW),
    ("stackoverflow", TrapKind.STACK_OVERFLOW),
    ("stack underflow", TrapKind.STACK_OVERFLOW),
    ("call stack exhausted", TrapKind.STACK_OVERFLOW),
    # unreachable (WAMR, V8, wasmtime `wasm \`unreachable\` instruction executed`, WAVM)
    ("unreachable", TrapKind.UNREACHABLE),
    # table accesses before memory ("out of bounds table access" must not read as memory)
    ("out of bounds table access", TrapKind.TABLE_OUT_OF_BOUNDS),
    ("table index is out of bounds", TrapKind.TABLE_OUT_OF_BOUNDS),
    ("table out of bounds", TrapKind.TABLE_OUT_OF_BOUNDS),
    ("outofboundstableaccess", TrapKind.TABLE_OUT_OF_BOUNDS),
    ("undefined element", TrapKind.UNDEFINED_ELEMENT),
    ("uninitialized element", TrapKind.UNDEFINED_ELEMENT),
    ("invalid function index", TrapKind.UNDEFINED_ELEMENT),
    ("uninitializedtableelement", TrapKind.UNDEFINED_ELEMENT),
    ("indirect call type mismatch", TrapKind.INDIRECT_CALL_MISMATCH),
    ("indirect call signature mismatch", TrapKind.INDIRECT_CALL_MISMATCH),
    ("function signature mismatch", TrapKind.INDIRECT_CALL_MISMATCH),
    ("bad signature", TrapKind.INDIRECT_CALL_MISMATCH),
    ("indirectcallsignaturemismatch", TrapKind.INDIRECT_CALL_MISMATCH),
    ("null function", TrapKind.NULL_REFERENCE),
    ("null reference", TrapKind.NULL_REFERENCE),
    ("dereferencing a null pointer", TrapKind.NULL_REFERENCE),
    ("nullreference", TrapKind.NULL_REFERENCE),
    # memory
    ("out of bounds memory access", TrapKind.OUT_OF_BOUNDS),
    ("memory access out of bounds", TrapKind.OUT_OF_BOUNDS),
    ("memory fault", TrapKind.OUT_OF_BOUNDS),
    ("outofboundsmemoryaccess", TrapKind.OUT_OF_BOUNDS),
    ("out of bounds array access", TrapKind.OUT_OF_BOUNDS),
    ("unaligned atomic", TrapKind.OUT_OF_BOUNDS),
    ("misaligned", TrapKind.OUT_OF_BOUNDS),
    # arithmetic
    ("divide by zero", TrapKind.DIVIDE_BY_ZERO),
    ("division by zero", TrapKind.DIVIDE_BY_ZERO),
    ("remainder by zero", TrapKind.DIVIDE_BY_ZERO),
    ("integerdividebyzero", TrapKind.DIVIDE_BY_ZERO),
    ("integer overflow", TrapKind.INTEGER_OVERFLOW),
    ("integeroverflow", TrapKind.INTEGER_OVERFLOW),
    ("invalid conversion to integer", TrapKind.INVALID_CONVERSION),
    ("float unrepresentable", TrapKind.INVALID_CONVERSION),
    ("invalidfloatoperation", TrapKind.INVALID_CONVERSION),
    ("invalid conversion", TrapKind.INVALID_CONVERSION),
    # resources and host
    ("allocate memory failed", TrapKind.OUT_OF_MEMORY),
    ("out of memory", TrapKind.OUT_OF_MEMORY),
    ("outofmemory", TrapKind.OUT_OF_MEMORY),
    ("unlinked import", TrapKind.UNLINKED_IMPORT),
    ("unknown import", TrapKind.UNLINKED_IMPORT),
    ("instruction limit exceeded", TrapKind.TIMEOUT),
    ("terminated by user", TrapKind.TIMEOUT),
    ("terminationexception", TrapKind.TIMEOUT),
    ("interrupt", TrapKind.TIMEOUT),
    ("restricted_callback", TrapKind.HOST_ERROR),
    ("uncaught error", TrapKind.HOST_ERROR),
    ("host error", TrapKind.HOST_ERROR),
    ("calledabort", TrapKind.HOST_ERROR),
    ("panic", TrapKind.PANIC),
)


def classify(message: str | None) -> TrapKind:
    """The trap kind a message names, or ``UNKNOWN``."""
    if not message:
        return TrapKind.UNKNOWN
    low = message[:2000].lower()
    if low.startswith("caught "):        # Envoy's fatal signal handler (not "Uncaught …")
        return TrapKind.NATIVE_CRASH
    for needle, kind in _RULES:
        if needle in low:
            return kind
    return TrapKind.UNKNOWN

"""Helpers for tests that post logs: log ingest is idempotent (the same crash text posted
again is the same crash event), so a test that wants another occurrence of a crash posts
it as it would appear again in a gateway log: with its own time."""

from __future__ import annotations


def occurrence(dump: bytes | str, k: int, *, thread: str = "24",
               exception: str | None = None) -> bytes:
    """A WAMR dump as the ``k``-th occurrence of its crash in an Envoy log: an Envoy
    ``Function: … failed: Exception: …`` record timed ``k`` seconds after 10:00, then the
    runtime's stdout block (the dump's ``Exception:`` line names the trap when not given)."""
    text = dump.decode() if isinstance(dump, bytes) else dump
    if exception is None:
        exception = next((ln[len("Exception: "):] for ln in text.splitlines()
                          if ln.startswith("Exception: ")), "unreachable")
    head = (f"[2026-01-01 10:{k // 60 % 60:02d}:{k % 60:02d}.{k // 3600 % 1000:03d}][{thread}]"
            "[error][wasm] [source/extensions/common/wasm/wasm_vm.cc:38] Function: "
            f"proxy_on_request_headers failed: Exception: {exception}\n")
    return (head + text).encode()

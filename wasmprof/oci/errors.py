"""What can go wrong talking to a registry or a symbol source.

Every failure is a :class:`RegistryError` (a :class:`~wasmprof.errors.WasmprofError`, so the
CLI prints it and exits 2, the server answers 400 when it is a request's fault) with a
``kind`` from :data:`KINDS` that the background puller stores as the plugin's pull status
and uses to decide how to retry.
"""

from __future__ import annotations

import json
from typing import Any

from wasmprof.errors import WasmprofError

#: kind -> what it means (shown next to the status on the dashboard)
KINDS: dict[str, str] = {
    "unreachable": "the registry could not be reached (connection refused, DNS, timeout)",
    "tls": "the TLS handshake failed or the certificate is not trusted",
    "unauthorized": "the registry wants credentials (HTTP 401) or refused the ones given",
    "denied": "the credentials may not pull this repository (HTTP 403)",
    "not-found": "no such repository, tag or digest (HTTP 404)",
    "rate-limited": "the registry answered 429 Too Many Requests",
    "server-error": "the registry answered 5xx or something that is not the distribution API",
    "bad-reference": "the reference is not oci://HOST/REPO[:TAG][@sha256:DIGEST]",
    "bad-manifest": "the manifest or index is not one wasmprof can read",
    "digest-mismatch": "content does not match its digest or size (corrupted or tampered)",
    "too-large": "the layer or manifest is over the size cap",
    "no-wasm-layer": "the image holds no Wasm module (no Wasm layer, no plugin.wasm)",
    "ambiguous-platform": "an image index without a wasi/wasm manifest and with several others",
    "bad-module": "the layer is not a module wasmprof can read",
    "internal": "wasmprof failed while pulling (a bug): the server log has the details",
}

#: kinds worth retrying soon (the same request may work later without any change)
TRANSIENT = frozenset({"unreachable", "rate-limited", "server-error"})


class RegistryError(WasmprofError):
    """A registry / symbol-source failure. ``kind`` is a key of :data:`KINDS`;
    ``status`` the HTTP status when there was one; ``retry_after`` seconds when the
    registry said when to come back."""

    def __init__(self, message: str, *, kind: str, source: str | None = None,
                 expected: str | None = None, found: str | None = None,
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, source=source, expected=expected, found=found)
        if kind not in KINDS:
            raise ValueError(f"unknown registry error kind {kind!r}")
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """1 for "nothing found" (no such tag/digest, no Wasm layer), 2 otherwise."""
        return 1 if self.kind in ("not-found", "no-wasm-layer") else 2

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT

    def to_dict(self) -> dict:
        return {**super().to_dict(), "kind": self.kind, "status": self.status}


def json_object(raw: bytes, *, what: str, kind: str, source: str) -> dict[str, Any]:
    """``raw`` parsed as a JSON object, else a RegistryError of ``kind`` naming ``what``."""
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise RegistryError(f"{what} is not JSON: {e}", kind=kind, source=source) from None
    if not isinstance(value, dict):
        raise RegistryError(f"{what} is not a JSON object", kind=kind, source=source)
    return value

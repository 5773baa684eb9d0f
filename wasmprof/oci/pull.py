"""Pulling a module: :func:`resolve` (reference → digest → image manifest → candidate
layers; small requests only) then :func:`fetch` (the layer bytes, verified, and the module
taken out of them). The server's puller looks its cache up between the two, by digest.
:func:`pull` does both with a client of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from wasmprof.oci.auth import Credentials
from wasmprof.oci.client import Descriptor, Manifest, RegistryClient
from wasmprof.oci.errors import RegistryError
from wasmprof.oci.image import PLUGIN_FILE, choose_manifest, module_layers, scan_tar_layer
from wasmprof.oci.reference import Reference

DEFAULT_MAX_BYTES = 256 * 1024 * 1024


@dataclass(slots=True)
class Resolved:
    """What a reference points at: ``digest`` is what the tag resolved to (the index's or
    the manifest's), ``manifest`` the image manifest used (after platform selection)."""

    reference: Reference
    digest: str
    manifest: Manifest
    variant: str                       # "artifact" | "compat"
    layers: list[Descriptor]
    notes: list[str] = field(default_factory=list)

    @property
    def pinned(self) -> Reference:
        """The reference with its digest: what to pull again to get the same bytes."""
        return self.reference.with_digest(self.digest)


@dataclass(slots=True)
class Pulled:
    """A module taken out of an image."""

    resolved: Resolved
    layer: Descriptor
    filename: str                      # plugin.wasm, the artifact layer's title, or a tar path
    data: bytes
    notes: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        r = self.resolved
        return {"reference": str(r.reference), "pinned": str(r.pinned), "digest": r.digest,
                "image_digest": r.manifest.digest, "manifest_media_type": r.manifest.media_type,
                "variant": r.variant, "layer": self.layer.to_dict(), "filename": self.filename,
                "size": len(self.data), "sha256": self.sha256, "notes": [*r.notes, *self.notes]}


def resolve(client: RegistryClient, ref: Reference) -> Resolved:
    """Follow ``ref`` to the image manifest and its candidate layers."""
    top = client.manifest(ref)
    notes: list[str] = []
    manifest = top
    for _ in range(2):                           # an index may point at one more index
        if not manifest.is_index:
            break
        desc, why = choose_manifest(manifest)
        notes.append(why)
        manifest = client.manifest(ref.with_digest(desc.digest))
    if manifest.is_index:
        raise RegistryError("image indexes nested too deep", kind="bad-manifest", source=str(ref))
    layers = module_layers(manifest)
    return Resolved(ref, top.digest, manifest, layers.variant, layers.candidates,
                    [*notes, *layers.notes])


def fetch(client: RegistryClient, resolved: Resolved, *, max_bytes: int = DEFAULT_MAX_BYTES,
          progress: Callable[[int], None] | None = None) -> Pulled:
    """Download the layer(s) and take the module out; verified against the digests."""
    repo = resolved.reference.repository
    if resolved.variant == "artifact":
        layer = resolved.layers[0]
        data = client.blob(repo, layer, max_bytes=max_bytes, progress=progress)
        return Pulled(resolved, layer, layer.title or PLUGIN_FILE, data)
    others: list[tuple[Descriptor, str, bytes]] = []
    seen: list[str] = []
    for layer in resolved.layers:
        blob = client.blob(repo, layer, max_bytes=max_bytes, progress=progress)
        where = f"{resolved.reference.name}@{layer.digest}"
        found = scan_tar_layer(blob, max_bytes=max_bytes, where=where)
        if found.plugin is not None:
            path, body = found.plugin
            return Pulled(resolved, layer, path, body)
        others += [(layer, p, b) for p, b in found.wasm]
        seen += found.names
    if len(others) == 1:
        layer, path, body = others[0]
        return Pulled(resolved, layer, path, body,
                      [f"no {PLUGIN_FILE} in the image; took its only .wasm file, {path}"])
    listing = ", ".join(seen[:12]) or "no files"
    raise RegistryError(f"no {PLUGIN_FILE} in the image's tar layers", kind="no-wasm-layer",
                        source=str(resolved.reference),
                        expected=f"{PLUGIN_FILE} (or exactly one .wasm file)",
                        found=(f"{len(others)} .wasm files: " if others else "") + listing)


def pull(ref: Reference, *, credentials: Credentials | None = None, plain_http: bool = False,
         max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 30.0,
         progress: Callable[[int], None] | None = None,
         transport: httpx.BaseTransport | None = None) -> Pulled:
    """Resolve and fetch with a client of its own."""
    with RegistryClient(ref.registry, credentials=credentials, plain_http=plain_http,
                        timeout=timeout, transport=transport) as client:
        return fetch(client, resolve(client, ref.or_latest()), max_bytes=max_bytes,
                     progress=progress)

"""Where the module is in an image: index → manifest → layer → bytes.

- Image index (OCI index, Docker manifest list): the manifest for ``wasi/wasm`` (``os`` one
  of ``wasi``, ``wasip1``, ``wasip2``; ``architecture`` ``wasm``), else the only real
  platform (attestation manifests and ``unknown/unknown`` are not platforms); several
  others and no ``wasi/wasm`` is ``ambiguous-platform``.
- Wasm OCI artifact (the variant Istio, Higress and solo-io's wasm spec define): a layer of
  media type ``application/vnd.module.wasm.content.layer.v1+wasm`` (also the CNCF Wasm
  artifact's ``application/wasm``): the layer *is* the module.
- Docker/OCI image (the "compat" variant, ``FROM scratch`` + ``COPY main.wasm
  plugin.wasm``): tar layers (gzip or plain, sniffed by magic, not trusted from the media
  type), read as a stream from the topmost layer down; the first ``plugin.wasm`` (at any
  depth) wins; when no layer has one and exactly one ``*.wasm`` file exists, that one, with
  a note. Nothing is written to disk; decompressed bytes are capped (a gzip bomb stops at
  :data:`INFLATE_FACTOR` × the module cap).
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import IO

from wasmprof.oci.client import Descriptor, Manifest
from wasmprof.oci.errors import RegistryError

WASM_LAYER_TYPES = ("application/vnd.module.wasm.content.layer.v1+wasm", "application/wasm")
WASM_CONFIG_TYPES = ("application/vnd.module.wasm.config.v1+json",
                     "application/vnd.wasm.config.v0+json")
TAR_LAYER_TYPES = ("application/vnd.docker.image.rootfs.diff.tar.gzip",
                   "application/vnd.oci.image.layer.v1.tar+gzip",
                   "application/vnd.oci.image.layer.v1.tar",
                   "application/vnd.docker.image.rootfs.diff.tar")
WASI_OS = ("wasi", "wasip1", "wasip2")
PLUGIN_FILE = "plugin.wasm"
INFLATE_FACTOR = 8


def _platform(d: Descriptor) -> str:
    p = d.platform or {}
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    return text + (f"/{p['variant']}" if p.get("variant") else "")


def choose_manifest(index: Manifest) -> tuple[Descriptor, str]:
    """The index entry to follow, and a note saying why."""
    entries = index.descriptors("manifests")
    if not entries:
        raise RegistryError("image index lists no manifests", kind="bad-manifest",
                            source=index.where)
    wasm = [d for d in entries if (d.platform or {}).get("architecture") == "wasm"
            and (d.platform or {}).get("os") in WASI_OS]
    if wasm:
        return wasm[0], f"picked platform {_platform(wasm[0])} of {len(entries)} in the index"
    real = [d for d in entries
            if d.annotations.get("vnd.docker.reference.type") != "attestation-manifest"
            and _platform(d) != "unknown/unknown"]
    if len(real) == 1:
        return real[0], f"the index's only platform, {_platform(real[0])}"
    raise RegistryError("image index has no wasi/wasm manifest and several platforms",
                        kind="ambiguous-platform", source=index.where, expected="wasi/wasm",
                        found=", ".join(_platform(d) for d in real[:8]))


@dataclass(slots=True)
class Layers:
    """The layers that may hold the module, in the order to try them."""

    variant: str                          # "artifact" or "compat"
    candidates: list[Descriptor]
    notes: list[str] = field(default_factory=list)


def module_layers(manifest: Manifest) -> Layers:
    """Artifact layer(s) when there are any, else the tar layers topmost first."""
    layers = manifest.descriptors("layers")
    artifact = [d for d in layers if d.media_type in WASM_LAYER_TYPES]
    if artifact:
        titled = [d for d in artifact if d.title == PLUGIN_FILE]
        first = (titled or artifact)[0]
        notes = ([f"{len(artifact)} Wasm layers; took {first.title or first.digest}"]
                 if len(artifact) > 1 else [])
        return Layers("artifact", [first], notes)
    tars = [d for d in layers if d.media_type in TAR_LAYER_TYPES]
    if tars:
        return Layers("compat", list(reversed(tars)))
    config = manifest.config
    found = ", ".join(sorted({d.media_type for d in layers})) or "no layers"
    hint = (" (zstd-compressed layers are not supported)"
            if any("zstd" in d.media_type for d in layers) else "")
    raise RegistryError(f"image has no Wasm layer and no tar layer{hint}", kind="no-wasm-layer",
                        source=manifest.where,
                        expected=f"a layer of {WASM_LAYER_TYPES[0]} or a tar layer holding "
                                 f"{PLUGIN_FILE}",
                        found=found + (f"; config {config.media_type}" if config else ""))


class _Capped(io.RawIOBase):
    """A read-only stream that fails once more than ``cap`` bytes came through."""

    def __init__(self, inner: IO[bytes], cap: int, where: str) -> None:
        self.inner, self.cap, self.where, self.count = inner, cap, where, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.inner.read(len(b))
        self.count += len(data)
        if self.count > self.cap:
            raise RegistryError("layer inflates past the size cap", kind="too-large",
                                source=self.where, expected=f"at most {self.cap} bytes unpacked")
        b[:len(data)] = data
        return len(data)


def _member_path(name: str) -> str:
    """``./a/b`` and ``/a/b`` are ``a/b`` (for matching only: nothing is extracted)."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


@dataclass(slots=True)
class TarFind:
    plugin: tuple[str, bytes] | None = None      # (member path, bytes) of the last plugin.wasm
    wasm: list[tuple[str, bytes]] = field(default_factory=list)   # other *.wasm files
    names: list[str] = field(default_factory=list)                # what else was there


def scan_tar_layer(data: bytes, *, max_bytes: int, where: str) -> TarFind:
    """Read a (gzip or plain) tar layer as a stream; collect ``plugin.wasm`` and ``*.wasm``
    regular files up to ``max_bytes`` each."""
    stream: IO[bytes] = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    capped = io.BufferedReader(_Capped(stream, max(INFLATE_FACTOR * max_bytes, 1 << 20), where))
    found = TarFind()
    try:
        with tarfile.open(fileobj=capped, mode="r|") as tar:
            for m in tar:
                path = _member_path(m.name)
                base = path.rsplit("/", 1)[-1]
                if len(found.names) < 20:
                    found.names.append(path[:120])
                if not m.isfile() or base.startswith(".wh.") or not base.endswith(".wasm"):
                    continue
                if m.size > max_bytes:
                    raise RegistryError(f"{path} in the layer is over the size cap",
                                        kind="too-large", source=where,
                                        expected=f"at most {max_bytes} bytes",
                                        found=f"{m.size} bytes")
                f = tar.extractfile(m)
                sink = io.BytesIO()          # chunked: one copy of the member, not two
                while f is not None and (chunk := f.read(1 << 20)):
                    sink.write(chunk)
                body = sink.getvalue()
                if base == PLUGIN_FILE:
                    found.plugin = (path, body)
                elif len(found.wasm) < 4:
                    found.wasm.append((path, body))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise RegistryError(f"layer is not a readable tar: {e}", kind="bad-module",
                            source=where) from None
    return found

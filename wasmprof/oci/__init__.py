"""Pulling plugin modules from OCI registries (the CNCF distribution API), never executing
anything from them.

Modules (each small, one job):

- :mod:`~wasmprof.oci.reference` — ``oci://HOST/REPO:TAG`` / ``…@sha256:DIGEST`` parsing
- :mod:`~wasmprof.oci.errors` — :class:`RegistryError` with a ``kind`` (what went wrong)
- :mod:`~wasmprof.oci.auth` — credentials (basic, Docker ``config.json``), the
  ``WWW-Authenticate`` challenge and the bearer-token flow
- :mod:`~wasmprof.oci.client` — :class:`RegistryClient` on httpx: manifests and blobs with
  digest verification and size caps
- :mod:`~wasmprof.oci.image` — which manifest of an index (``wasi/wasm`` or the only
  platform) and which layer holds the module: the Wasm OCI artifact layer or the
  ``plugin.wasm`` in a Docker/OCI image's tar layer (the Higress/Istio "compat" variant)
- :mod:`~wasmprof.oci.pull` — :func:`resolve` (tag → digest → layer) and :func:`fetch`
"""

from wasmprof.oci.errors import RegistryError
from wasmprof.oci.reference import Reference, parse_reference

__all__ = ["Reference", "RegistryError", "parse_reference"]

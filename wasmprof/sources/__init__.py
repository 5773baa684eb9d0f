"""Where modules come from, automatically: plugin sources (OCI references per plugin), the
server's background puller, and symbol sources for debug builds looked up by identity.

- :mod:`~wasmprof.sources.plugin_sources` — plugin → OCI reference (+ credentials), which tag
  a version is
- :mod:`~wasmprof.sources.pulls` — pull jobs shared by replicas (claims, backoff, status)
- :mod:`~wasmprof.sources.origins` — which image a module came from (the cache by digest),
  the shared symbol-lookup cache
- :mod:`~wasmprof.sources.symbols` — symbol sources (HTTP directory, OCI repository) and
  lookups by identity with negative caching
- :mod:`~wasmprof.sources.service` — the server side: ingest hook, puller thread, debug lookups
- :mod:`~wasmprof.sources.config` — ``wasmprof serve`` flags and retry timing
- :mod:`~wasmprof.sources.schema` — the "sources" migration component

The registry client itself is :mod:`wasmprof.oci`.
"""

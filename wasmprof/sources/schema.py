"""Tables of the "sources" component (listed in ``EXTENSION_MODULES`` of
:mod:`wasmprof.store.migrations`).

- ``plugin_sources``: where a plugin's modules come from (one OCI reference per plugin);
  ``secret`` is the registry password/token, stored like webhook secrets (plaintext: it
  must be sent to the registry) and never returned by the API.
- ``source_pulls``: one row per (plugin, version) the server pulled or is pulling; the
  state machine of :mod:`wasmprof.sources.pulls` (``pending`` → ``pulling`` → ``ready`` |
  ``retrying`` → … | ``failed``; ``waiting`` when the source cannot say which tag).
- ``module_origins``: which image (reference, digest the tag resolved to, image manifest,
  layer) a stored module came from; the cache "by digest" (a tag that resolves to a known
  digest is linked without downloading it again).
- ``symbol_lookups``: the outcome of looking a module identity up in a symbol source
  (``found`` / ``missing`` / ``error`` / ``mismatch``) until ``expires_at``: the negative
  cache shared by replicas.
"""

from __future__ import annotations

COMPONENT = "sources"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE plugin_sources (
        plugin TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        plain_http INTEGER NOT NULL DEFAULT 0,
        username TEXT,
        secret TEXT,
        created_at {float} NOT NULL,
        updated_at {float} NOT NULL
    );
    CREATE TABLE source_pulls (
        id {id},
        plugin TEXT NOT NULL,
        version TEXT NOT NULL DEFAULT '',
        ref_url TEXT NOT NULL,
        state TEXT NOT NULL,
        trigger TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        error_kind TEXT,
        next_attempt_at {float},
        claimed_at {float},
        claimed_by TEXT,
        digest TEXT,
        image_digest TEXT,
        layer_digest TEXT,
        module_id {bigint},
        notes TEXT,
        created_at {float} NOT NULL,
        updated_at {float} NOT NULL,
        UNIQUE (plugin, version)
    );
    CREATE INDEX source_pulls_due ON source_pulls (state, next_attempt_at);
    CREATE TABLE module_origins (
        id {id},
        module_id {bigint} NOT NULL,
        role TEXT NOT NULL,
        ref_url TEXT NOT NULL,
        digest TEXT NOT NULL,
        image_digest TEXT,
        layer_digest TEXT,
        variant TEXT,
        filename TEXT,
        created_at {float} NOT NULL,
        UNIQUE (module_id, ref_url, digest)
    );
    CREATE INDEX module_origins_digest ON module_origins (digest);
    CREATE TABLE symbol_lookups (
        source TEXT NOT NULL,
        lookup_key TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT,
        module_id {bigint},
        checked_at {float} NOT NULL,
        expires_at {float} NOT NULL,
        PRIMARY KEY (source, lookup_key)
    )
    """,
]

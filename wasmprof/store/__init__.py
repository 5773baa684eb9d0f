"""Storage: one code path for SQLite (default) and PostgreSQL.

- :mod:`wasmprof.store.db`: ``Database`` (placeholders, transactions, per-thread connections)
- :mod:`wasmprof.store.migrations`: append-only schema lists (how other packages add tables)
- :mod:`wasmprof.store.blobs`: content-addressed module blobs
- :mod:`wasmprof.store.tokens`: API tokens
- :mod:`wasmprof.store.state`: ``open_store(StoreConfig) -> Store``
"""

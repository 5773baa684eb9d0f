"""Where stored modules came from (``module_origins``) and the shared symbol-lookup cache
(``symbol_lookups``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wasmprof.store.db import Database, now

ROLES = ("plugin", "debug")


@dataclass(frozen=True, slots=True)
class Origin:
    """``digest``: what the reference's tag resolved to (or the digest it named);
    ``image_digest``: the platform manifest used; ``layer_digest``: the layer read."""

    ref_url: str
    digest: str
    image_digest: str | None = None
    layer_digest: str | None = None
    variant: str | None = None
    filename: str | None = None
    role: str = "plugin"


def record(db: Database, module_id: int, o: Origin) -> None:
    with db.tx() as tx:
        tx.execute("INSERT INTO module_origins (module_id, role, ref_url, digest, image_digest, "
                   "layer_digest, variant, filename, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                   "ON CONFLICT (module_id, ref_url, digest) DO NOTHING",
                   (module_id, o.role, o.ref_url[:1024], o.digest, o.image_digest, o.layer_digest,
                    o.variant, (o.filename or "")[:200] or None, now()))


def module_for_digest(db: Database, *digests: str | None) -> int | None:
    """A stored module that was pulled from one of these manifest or layer digests."""
    wanted = [d for d in digests if d]
    if not wanted:
        return None
    marks = ",".join("?" for _ in wanted)
    with db.read() as tx:
        r = tx.one(f"SELECT o.module_id FROM module_origins o JOIN modules m ON m.id = o.module_id "
                   f"WHERE o.digest IN ({marks}) OR o.image_digest IN ({marks}) "
                   f"OR o.layer_digest IN ({marks}) ORDER BY o.id DESC LIMIT 1",
                   [*wanted, *wanted, *wanted])
    return int(r["module_id"]) if r else None


def origins_of(db: Database, module_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for i in range(0, len(module_ids), 500):
        part = module_ids[i:i + 500]
        if not part:
            continue
        marks = ",".join("?" for _ in part)
        with db.read() as tx:
            for r in tx.all(f"SELECT module_id, role, ref_url, digest, image_digest, layer_digest, "
                            f"variant, filename, created_at FROM module_origins WHERE module_id "
                            f"IN ({marks}) ORDER BY id", part):
                out.setdefault(int(r.pop("module_id")), []).append(r)
    return out


class DbLookupCache:
    """:class:`~wasmprof.sources.symbols.LookupCache` in ``symbol_lookups`` (all replicas)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, source: str, key: str) -> tuple[str, str | None] | None:
        with self.db.read() as tx:
            r = tx.one("SELECT outcome, detail FROM symbol_lookups WHERE source = ? AND "
                       "lookup_key = ? AND expires_at > ?", (source, key, now()))
        return (r["outcome"], r["detail"]) if r else None

    def put(self, source: str, key: str, outcome: str, detail: str | None, ttl: float,
            module_id: int | None = None) -> None:
        t = now()
        with self.db.tx() as tx:
            tx.execute("INSERT INTO symbol_lookups (source, lookup_key, outcome, detail, module_id, "
                       "checked_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, "
                       "lookup_key) DO UPDATE SET outcome = excluded.outcome, detail = "
                       "excluded.detail, module_id = excluded.module_id, checked_at = "
                       "excluded.checked_at, expires_at = excluded.expires_at",
                       (source, key, outcome, detail, module_id, t, t + ttl))

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.read() as tx:
            rows = tx.all("SELECT source, lookup_key, outcome, detail, module_id, checked_at, "
                          "expires_at FROM symbol_lookups ORDER BY checked_at DESC LIMIT ?",
                          (int(limit),))
        return rows

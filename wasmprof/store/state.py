"""The opened store: database (migrated) + blob storage, from a :class:`StoreConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from wasmprof.config import StoreConfig
from wasmprof.store.blobs import BlobStore
from wasmprof.store.db import Database
from wasmprof.store.migrations import migrate


@dataclass
class Store:
    config: StoreConfig
    db: Database
    blobs: BlobStore

    def close(self) -> None:
        self.db.close()


def open_store(config: StoreConfig, *, run_migrations: bool = True) -> Store:
    """Open (creating when needed) the store; migrations run unless told otherwise."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.open(config.db_url)
    if run_migrations:
        migrate(db)
    return Store(config=config, db=db, blobs=BlobStore(db, config.data_dir / "blobs"))

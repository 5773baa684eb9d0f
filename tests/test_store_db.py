"""The store on SQLite and on a real PostgreSQL: migrations, transactions, blobs, tokens,
and concurrent writers (two "replicas" = two Database objects on one database)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from wasmprof.config import resolve_store
from wasmprof.store.blobs import BlobStore
from wasmprof.store.db import Database
from wasmprof.store.migrations import CORE, migrate, split_statements
from wasmprof.store.state import open_store
from wasmprof.store.tokens import authenticate, create_token, list_tokens, revoke_token


def _open(url: str) -> Database:
    db = Database.open(url)
    migrate(db)
    return db


def test_migrations_apply_once_and_record_versions(db_url):
    db = Database.open(db_url)
    applied = migrate(db)
    assert f"core:{CORE[-1].version}" in applied
    assert migrate(db) == []
    with db.read() as tx:
        versions = {r["version"] for r in tx.all(
            "SELECT version FROM schema_migrations WHERE component = 'core'")}
    assert versions == {m.version for m in CORE}
    db.close()


def test_commit_rollback_nested_and_savepoint(db_url):
    db = _open(db_url)
    with db.tx() as tx:
        tx.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, ?, ?)",
                   ("keep", None, 1.0))
    with pytest.raises(RuntimeError):
        with db.tx() as tx:
            tx.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, ?, ?)",
                       ("lost", None, 1.0))
            raise RuntimeError("boom")
    with db.tx() as outer:
        with db.tx() as inner:                   # joins the outer transaction
            assert inner is outer
            inner.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, ?, ?)",
                          ("nested", None, 1.0))
        with pytest.raises(ValueError):
            with db.savepoint(outer, "sp1"):
                outer.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, ?, ?)",
                              ("undone", None, 1.0))
                raise ValueError("hook failed")
        # the transaction is still usable after the savepoint rollback (PostgreSQL too)
        outer.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, ?, ?)",
                      ("after", None, 1.0))
    with db.read() as tx:
        names = {r["name"] for r in tx.all("SELECT name FROM plugins")}
    assert names == {"keep", "nested", "after"}
    db.close()


def test_placeholders_and_percent_signs_are_literal(db_url):
    db = _open(db_url)
    with db.tx() as tx:
        tx.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, ?, ?)",
                   ("50%?off", "x", 2.0))
    with db.read() as tx:
        row = tx.one("SELECT name FROM plugins WHERE name LIKE '%' || ? || '%'", ("%?o",))
    assert row == {"name": "50%?off"}
    db.close()


def test_blobs_are_content_addressed_and_shared(db_url, tmp_path):
    db = _open(db_url)
    a = BlobStore(db, tmp_path / "replica-a")
    data = b"\0asm\1\0\0\0" + bytes(range(256)) * 10
    with db.tx() as tx:
        sha = a.put(tx, data)
        assert a.put(tx, data) == sha
    assert a.get(sha) == data
    b = BlobStore(db, tmp_path / "replica-b")              # another replica's cache dir
    if db.dialect == "postgresql":
        assert b.get(sha) == data                          # fetched from the database
    else:
        assert not b.path_for(sha).exists()
    with pytest.raises(ValueError):
        a.path_for("../../etc/passwd")
    db.close()


def test_tokens_hash_scope_and_revoke(db_url):
    db = _open(db_url)
    info, plain = create_token(db, "ci", {"ingest"})
    assert plain.startswith("wpt_") and info.prefix == plain[:10]
    with db.read() as tx:
        stored = tx.scalar("SELECT token_hash FROM tokens WHERE id = ?", (info.id,))
    assert plain not in stored
    got = authenticate(db, plain)
    assert got is not None and got.allows("ingest") and not got.allows("read")
    assert authenticate(db, plain + "x") is None
    assert revoke_token(db, "ci") == 1
    assert authenticate(db, plain) is None
    assert list_tokens(db) == []
    with pytest.raises(Exception):
        create_token(db, "bad", {"root"})
    db.close()


def test_concurrent_group_upserts_from_two_replicas(db_url, tmp_path):
    """Two Database objects (two replicas) x 4 threads bump the same fingerprint:
    exactly one group is created and no increment is lost."""
    from wasmprof.server.crash_service import CrashService
    from wasmprof.grouping import GroupKey

    store_a = open_store(resolve_store(tmp_path / "a", db_url))
    store_b = open_store(resolve_store(tmp_path / "b", db_url))
    services = [CrashService(s, None, None) for s in (store_a, store_b)]
    key = GroupKey(fingerprint="f" * 40, title="t", basis="symbols")
    created = []
    errors = []

    def worker(svc: CrashService) -> None:
        try:
            for _ in range(25):
                with svc.db.tx() as tx:
                    gid, new, _ = svc._upsert_group(tx, key, "p", "unreachable", 1.0, 1.0, [], count=1)
                    if new:
                        created.append(gid)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(services[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(created) == 1
    with store_a.db.read() as tx:
        assert tx.scalar("SELECT count FROM crash_groups WHERE fingerprint = ?", (key.fingerprint,)) == 100
    store_a.close()
    store_b.close()


def test_split_statements_respects_quotes():
    assert split_statements("CREATE TABLE a (x TEXT DEFAULT 'a;b'); CREATE INDEX i ON a (x);") == [
        "CREATE TABLE a (x TEXT DEFAULT 'a;b')", "CREATE INDEX i ON a (x)"]


def test_store_config_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("WASMPROF_DATA", str(tmp_path / "env-data"))
    monkeypatch.delenv("WASMPROF_DB", raising=False)
    cfg = resolve_store()
    assert cfg.data_dir == (tmp_path / "env-data").resolve()
    assert cfg.db_url == f"sqlite:///{(tmp_path / 'env-data' / 'wasmprof.db').resolve()}"
    monkeypatch.setenv("WASMPROF_DB", "postgresql://u:secret@h/db")
    assert resolve_store(tmp_path / "x").is_postgres
    assert resolve_store(tmp_path / "x", "sqlite:////tmp/y.db").db_url == "sqlite:////tmp/y.db"
    with pytest.raises(Exception) as e:
        resolve_store(tmp_path, "mysql://u:secret@h/db")
    assert "secret" not in str(e.value)
    assert Path(str(cfg.data_dir)).is_absolute()


def test_token_cli_create_list_revoke(tmp_path, capsys, monkeypatch):
    import json as _json

    from wasmprof.cli import main
    monkeypatch.delenv("WASMPROF_DB", raising=False)
    store = ["--data", str(tmp_path / "d")]
    assert main(["token", "create", "ci", "--scopes", "ingest,read", "--json", *store]) == 0
    created = _json.loads(capsys.readouterr().out)
    assert created["token"].startswith("wpt_") and created["scopes"] == ["ingest", "read"]
    assert main(["token", "list", "--json", *store]) == 0
    listed = _json.loads(capsys.readouterr().out)["tokens"]
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    assert main(["token", "create", "x", "--scopes", "root", *store]) == 2     # bad scope
    assert "unknown scope" in capsys.readouterr().err
    assert main(["token", "revoke", "ci", *store]) == 0
    assert main(["token", "revoke", "ci", *store]) == 1                         # nothing left
    monkeypatch.setenv("WASMPROF_DATA", str(tmp_path / "d"))                    # same store via env
    assert main(["token", "list", "--all", "--json"]) == 0
    out = capsys.readouterr().out
    assert _json.loads(out)["tokens"][0]["revoked_at"] is not None

"""API tokens: created by ``wasmprof token create``, checked by the server.

Only a sha256 of each token is stored; the plain token is shown once at creation.
Scopes: ``ingest`` (POST logs/samples/profiles/modules), ``read`` (GET anything,
stateless symbolize), ``admin`` (everything, incl. resolving groups, plugin runtime,
webhooks). ``admin`` implies the others.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from wasmprof.config import SCOPES
from wasmprof.errors import UsageError
from wasmprof.store.db import Database, now

TOKEN_PREFIX = "wpt_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    scopes: frozenset[str]
    prefix: str
    created_at: float
    revoked_at: float | None = None
    last_used_at: float | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "scopes": sorted(self.scopes),
                "prefix": self.prefix, "created_at": self.created_at,
                "revoked_at": self.revoked_at, "last_used_at": self.last_used_at}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _info(row: dict) -> TokenInfo:
    return TokenInfo(id=int(row["id"]), name=row["name"],
                     scopes=frozenset(s for s in row["scopes"].split(",") if s),
                     prefix=row["prefix"], created_at=row["created_at"],
                     revoked_at=row["revoked_at"], last_used_at=row["last_used_at"])


def create_token(db: Database, name: str, scopes: frozenset[str] | set[str]) -> tuple[TokenInfo, str]:
    """Returns (info, plain token). The plain token is not stored."""
    if not name or len(name) > 200:
        raise UsageError("a token needs a name of 1-200 characters", source="token create")
    bad = set(scopes) - set(SCOPES)
    if not scopes or bad:
        raise UsageError("bad scopes", source="--scopes", expected=", ".join(SCOPES),
                         found=",".join(sorted(bad)) or "none")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.tx() as tx:
        tid = tx.insert("INSERT INTO tokens (name, token_hash, prefix, scopes, created_at) "
                        "VALUES (?, ?, ?, ?, ?) RETURNING id",
                        (name, hash_token(plain), plain[:10], ",".join(sorted(scopes)), now()))
        row = tx.one("SELECT * FROM tokens WHERE id = ?", (tid,))
    return _info(row), plain


def list_tokens(db: Database, *, include_revoked: bool = False) -> list[TokenInfo]:
    with db.read() as tx:
        rows = tx.all("SELECT * FROM tokens ORDER BY id")
    return [_info(r) for r in rows if include_revoked or r["revoked_at"] is None]


def revoke_token(db: Database, ident: str) -> int:
    """Revoke by id, name or prefix; returns how many tokens were revoked."""
    with db.tx() as tx:
        if ident.isdigit():
            cur = tx.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (now(), int(ident)))
        else:
            cur = tx.execute("UPDATE tokens SET revoked_at = ? WHERE (name = ? OR prefix = ?) "
                             "AND revoked_at IS NULL", (now(), ident, ident[:10]))
        return cur.rowcount or 0


def authenticate(db: Database, plain: str) -> TokenInfo | None:
    """The token's info when it exists and is not revoked."""
    if not plain.startswith(TOKEN_PREFIX) or len(plain) > 200:
        return None
    with db.read() as tx:
        row = tx.one("SELECT * FROM tokens WHERE token_hash = ?", (hash_token(plain),))
    if row is None or row["revoked_at"] is not None:
        return None
    return _info(row)

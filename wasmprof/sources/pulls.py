"""Pull jobs: one ``source_pulls`` row per (plugin, link version), shared by replicas.

States: ``pending`` (due at ``next_attempt_at``) → ``pulling`` (claimed by one replica;
a claim older than :data:`STALE_CLAIM` is taken over) → ``ready`` (``module_id`` set) or
``retrying`` (the error and its kind kept, due again after backoff) → … → ``failed`` (after
the policy's attempts, or at once for a reference that can never work; stays until the
source is set again or a retry is asked for). ``waiting``: the source cannot say which tag
to pull (a crash without version, a version that is no tag); never claimed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from wasmprof.oci.errors import KINDS, RegistryError
from wasmprof.sources.config import PullPolicy
from wasmprof.store.db import Database, Tx, now

STATES = ("pending", "pulling", "ready", "retrying", "failed", "waiting")
OPEN_STATES = ("pending", "pulling", "retrying")
STALE_CLAIM = 600.0
FINAL_KINDS = frozenset({"bad-reference"})
COLUMNS = ("id, plugin, version, ref_url, state, trigger, attempts, error, error_kind, "
           "next_attempt_at, claimed_at, claimed_by, digest, image_digest, layer_digest, "
           "module_id, notes, created_at, updated_at")


@dataclass(slots=True)
class Pull:
    id: int
    plugin: str
    version: str
    ref_url: str
    state: str
    trigger: str | None
    attempts: int
    error: str | None
    error_kind: str | None
    next_attempt_at: float | None
    digest: str | None
    image_digest: str | None
    layer_digest: str | None
    module_id: int | None
    notes: list[str]
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> "Pull":
        return cls(id=r["id"], plugin=r["plugin"], version=r["version"], ref_url=r["ref_url"],
                   state=r["state"], trigger=r["trigger"], attempts=r["attempts"],
                   error=r["error"], error_kind=r["error_kind"],
                   next_attempt_at=r["next_attempt_at"], digest=r["digest"],
                   image_digest=r["image_digest"], layer_digest=r["layer_digest"],
                   module_id=r["module_id"],
                   notes=orjson.loads(r["notes"]) if r["notes"] else [],
                   created_at=r["created_at"], updated_at=r["updated_at"])

    def to_dict(self, policy: PullPolicy | None = None) -> dict[str, Any]:
        d = {"id": self.id, "plugin": self.plugin, "version": self.version or None,
             "reference": self.ref_url, "state": self.state, "trigger": self.trigger,
             "attempts": self.attempts, "error": self.error, "error_kind": self.error_kind,
             "error_meaning": KINDS.get(self.error_kind or ""),
             "next_attempt_at": self.next_attempt_at if self.state in OPEN_STATES else None,
             "digest": self.digest, "image_digest": self.image_digest,
             "layer_digest": self.layer_digest, "module_id": self.module_id,
             "notes": self.notes, "created_at": self.created_at, "updated_at": self.updated_at}
        if policy is not None:
            d["max_attempts"] = policy.max_attempts
        d["summary"] = summary(self, policy)
        return d


def summary(p: Pull, policy: PullPolicy | None = None) -> str:
    """One line for people: what happened to this pull."""
    what = f"{p.ref_url}" + (f" (version {p.version})" if p.version else "")
    if p.state == "ready":
        return f"pulled {what} → {p.digest or '?'}, module {p.module_id}"
    if p.state == "waiting":
        return f"not pulled: {p.error}"
    if p.state == "pulling":
        return f"pulling {what}"
    if p.state == "pending":
        return f"pull of {what} queued"
    of = f" of {policy.max_attempts}" if policy else ""
    head = "failing" if p.state == "retrying" else "failed"
    tail = ("; retrying" if p.state == "retrying" else
            "; no more retries: fix the source (PUT it again) or ask for a retry")
    return f"{head} ({p.error_kind}, attempt {p.attempts}{of}): {p.error}{tail}"


def request(tx: Tx, plugin: str, version: str, ref_url: str | None, trigger: str,
            reason: str | None = None) -> bool:
    """Ask for a pull (``ref_url`` None: record why it cannot be done). True when a row was
    created; an existing row for (plugin, version) is left alone."""
    t = now()
    state = "pending" if ref_url else "waiting"
    row = tx.one("INSERT INTO source_pulls (plugin, version, ref_url, state, trigger, attempts, "
                 "error, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, "
                 "?, ?) ON CONFLICT (plugin, version) DO NOTHING RETURNING id",
                 (plugin, version, ref_url or "", state, trigger[:200], reason, t, t, t))
    return row is not None


def claim_due(db: Database, owner: str, *, at: float | None = None,
              plugin: str | None = None) -> Pull | None:
    """Take the oldest due pull (or a stale claim; of ``plugin`` only when given) for
    ``owner``; None when none is due."""
    t = now() if at is None else at
    only, params = ("AND plugin = ? ", [plugin]) if plugin else ("", [])
    with db.read() as tx:       # the idle poll only reads: no write lock every second
        rows = tx.all("SELECT id FROM source_pulls WHERE ((state IN ('pending', 'retrying') AND "
                      "next_attempt_at <= ?) OR (state = 'pulling' AND claimed_at < ?)) "
                      f"{only}ORDER BY next_attempt_at, id LIMIT 5", [t, t - STALE_CLAIM, *params])
    if not rows:
        return None
    with db.tx() as tx:
        for r in rows:
            got = tx.one(f"UPDATE source_pulls SET state = 'pulling', claimed_at = ?, "
                         f"claimed_by = ?, updated_at = ? WHERE id = ? AND ((state IN "
                         f"('pending', 'retrying') AND next_attempt_at <= ?) OR (state = "
                         f"'pulling' AND claimed_at < ?)) RETURNING {COLUMNS}",
                         (t, owner, t, r["id"], t, t - STALE_CLAIM))
            if got is not None:
                return Pull.from_row(got)
    return None


def mark_ready(db: Database, pull_id: int, *, module_id: int, digest: str,
               image_digest: str | None, layer_digest: str | None, notes: list[str]) -> None:
    with db.tx() as tx:
        tx.execute("UPDATE source_pulls SET state = 'ready', module_id = ?, digest = ?, "
                   "image_digest = ?, layer_digest = ?, notes = ?, error = NULL, "
                   "error_kind = NULL, attempts = attempts + 1, claimed_at = NULL, "
                   "next_attempt_at = NULL, updated_at = ? WHERE id = ?",
                   (module_id, digest, image_digest, layer_digest,
                    orjson.dumps(notes[:20]).decode(), now(), pull_id))


def mark_failed(db: Database, pull: Pull, err: RegistryError, policy: PullPolicy) -> Pull:
    """Record a failed attempt; retry later unless the policy's attempts are used up."""
    attempts = pull.attempts + 1
    final = attempts >= policy.max_attempts or err.kind in FINAL_KINDS
    t = now()
    nxt = None if final else t + policy.delay(attempts, err.retry_after)
    with db.tx() as tx:
        row = tx.one(f"UPDATE source_pulls SET state = ?, attempts = ?, error = ?, error_kind = ?, "
                     f"next_attempt_at = ?, claimed_at = NULL, updated_at = ? WHERE id = ? "
                     f"RETURNING {COLUMNS}",
                     ("failed" if final else "retrying", attempts, str(err)[:2000], err.kind, nxt,
                      t, pull.id))
    return Pull.from_row(row) if row else pull


def release(db: Database, pull_id: int) -> None:
    """Give a claim back (shutting down mid-pull): due again at once."""
    with db.tx() as tx:
        tx.execute("UPDATE source_pulls SET state = 'pending', claimed_at = NULL, "
                   "next_attempt_at = ?, updated_at = ? WHERE id = ? AND state = 'pulling'",
                   (now(), now(), pull_id))


def retry(db: Database, plugin: str, version: str | None = None) -> int:
    """Make the plugin's unfinished pulls (or one version's) due now with fresh attempts."""
    t = now()
    sql = ("UPDATE source_pulls SET state = 'pending', attempts = 0, next_attempt_at = ?, "
           "updated_at = ? WHERE plugin = ? AND state IN ('retrying', 'failed', 'pending')")
    params: list[Any] = [t, t, plugin]
    if version is not None:
        sql += " AND version = ?"
        params.append(version)
    with db.tx() as tx:
        return len(tx.all(sql + " RETURNING id", params))


def forget_unfinished(tx: Tx, plugin: str) -> int:
    """Drop every pull of ``plugin`` that did not succeed (its source changed)."""
    return len(tx.all("DELETE FROM source_pulls WHERE plugin = ? AND state != 'ready' "
                      "RETURNING id", (plugin,)))


def list_pulls(db: Database, plugin: str | None = None, *, limit: int = 200) -> list[Pull]:
    where, params = ("WHERE plugin = ?", [plugin]) if plugin else ("", [])
    with db.read() as tx:
        rows = tx.all(f"SELECT {COLUMNS} FROM source_pulls {where} ORDER BY updated_at DESC, id "
                      f"DESC LIMIT {int(limit)}", params)
    return [Pull.from_row(r) for r in rows]


def counts(db: Database) -> dict[str, int]:
    with db.read() as tx:
        rows = tx.all("SELECT state, COUNT(*) AS n FROM source_pulls GROUP BY state")
    out = {s: 0 for s in STATES}
    out.update({r["state"]: int(r["n"]) for r in rows})
    return out

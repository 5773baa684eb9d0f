"""``profile.regression``: compare newly stored profiles with a baseline, off the ingest path.

Ingest only records that a (plugin, version) received profile data
(:func:`note_profile_input`, one pending row per pair, coalescing bursts of agent batches,
due ``settle`` seconds later; the time range noted is the one the samples were bucketed at).
The delivery worker then runs :func:`run_due_checks`, which asks a :class:`ShareSource` (the
server's profile service, ``ProfileService.function_shares``: counts summed from the profile
store over the range, so a check costs O(distinct stacks), not a re-parse of the inputs) for
the function shares of

- the *current* selection: the plugin + version over the time range of the inputs noted, and
- each subscribed webhook's *baseline* selection (``--baseline version=1.2,env:prod``;
  default: the plugin's profiles that started before the current range),

and queues an alert when a function's self or total share grew by more than the webhook's
``regression_points``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from wasmprof.alerts import hooks, webhooks
from wasmprof.alerts.events import EventType

log = logging.getLogger(__name__)

Shares = dict[str, tuple[float, float]]


@dataclass(slots=True)
class ProfileCheck:
    id: int
    plugin: str | None
    version: str | None
    start: float | None
    end: float | None
    inputs: int


class ShareSource(Protocol):
    def current(self, check: ProfileCheck) -> tuple[Shares, str]:
        """Function shares (self %, total %) of the checked data, and its description."""

    def baseline(self, check: ProfileCheck, spec: str | None) -> tuple[Shares, str]:
        """Shares of the baseline selection ``spec`` (None: earlier profiles of the plugin);
        empty shares when nothing matches."""


def settle_seconds() -> float:
    try:
        return max(float(os.environ.get("WASMPROF_PROFILE_CHECK_SETTLE", "10")), 0.0)
    except ValueError:
        return 10.0


def note_profile_input(db: Any, info: dict[str, Any], *, now: float) -> bool:
    """Called inside the profile-ingest transaction. Writes at most one small row; nothing
    when no webhook wants ``profile.regression`` for the plugin."""
    plugin = info.get("plugin")
    with db.tx() as tx:
        if not webhooks.active_for(tx, EventType.PROFILE_REGRESSION, plugin):
            return False
        version = info.get("version")
        start, end = info.get("start"), info.get("end")
        row = tx.one("SELECT id FROM alert_profile_checks WHERE status = 'pending' AND "
                     "plugin IS NOT DISTINCT FROM ? AND version IS NOT DISTINCT FROM ? "
                     "ORDER BY id LIMIT 1" if db.dialect == "postgresql" else
                     "SELECT id FROM alert_profile_checks WHERE status = 'pending' AND "
                     "plugin IS ? AND version IS ? ORDER BY id LIMIT 1", (plugin, version))
        if row is not None:
            cur = tx.execute(
                "UPDATE alert_profile_checks SET inputs = inputs + 1, last_input_id = ?, "
                "start_ts = CASE WHEN start_ts IS NULL OR start_ts > ? THEN ? ELSE start_ts END, "
                "end_ts = CASE WHEN end_ts IS NULL OR end_ts < ? THEN ? ELSE end_ts END, "
                "updated_at = ? WHERE id = ? AND status = 'pending'",
                (info.get("id"), start, start, end, end, now, row["id"]))
            if cur.rowcount == 1:
                return True
        tx.execute("INSERT INTO alert_profile_checks (plugin, version, start_ts, end_ts, inputs, "
                   "last_input_id, status, due_at, created_at, updated_at) "
                   "VALUES (?, ?, ?, ?, 1, ?, 'pending', ?, ?, ?)",
                   (plugin, version, start, end, info.get("id"), now + settle_seconds(), now, now))
    return True


def run_due_checks(db: Any, source: ShareSource, *, now: float, limit: int = 2,
                   lease: float = 600.0) -> int:
    """Claim and run up to ``limit`` due checks; returns how many ran."""
    ran = 0
    with db.read() as tx:
        cands = tx.all("SELECT id FROM alert_profile_checks WHERE (status = 'pending' AND "
                       "due_at <= ?) OR (status = 'running' AND lease_until < ?) "
                       "ORDER BY due_at LIMIT ?", (now, now, limit))
    for c in cands:
        with db.tx() as tx:
            cur = tx.execute("UPDATE alert_profile_checks SET status = 'running', lease_until = ?, "
                             "updated_at = ? WHERE id = ? AND ((status = 'pending' AND due_at <= ?)"
                             " OR (status = 'running' AND lease_until < ?))",
                             (now + lease, now, c["id"], now, now))
            if cur.rowcount != 1:
                continue
            row = tx.one("SELECT * FROM alert_profile_checks WHERE id = ?", (c["id"],))
        assert row is not None
        check = ProfileCheck(int(row["id"]), row["plugin"], row["version"], row["start_ts"],
                             row["end_ts"], int(row["inputs"]))
        try:
            result = run_check(db, source, check, now=now)
        except Exception as e:  # noqa: BLE001 - a bad profile must not stop the worker
            log.exception("profile regression check %s failed", check.id)
            result = {"error": f"{type(e).__name__}: {e}"[:500]}
        with db.tx() as tx:
            tx.execute("UPDATE alert_profile_checks SET status = 'done', lease_until = NULL, "
                       "result = ?, updated_at = ? WHERE id = ?",
                       (orjson.dumps(result).decode(), now, check.id))
        ran += 1
    return ran


def run_check(db: Any, source: ShareSource, check: ProfileCheck, *, now: float) -> dict[str, Any]:
    with db.read() as tx:
        subscribed = webhooks.active_for(tx, EventType.PROFILE_REGRESSION, check.plugin)
    if not subscribed:
        return {"skipped": "no webhook subscribed"}
    current, current_desc = source.current(check)
    if not current:
        return {"skipped": "no current data"}
    ids = hooks.on_profile_stored(
        db, plugin=check.plugin, profile_key=f"check:{check.id}", current=current,
        baseline_for=lambda spec: source.baseline(check, spec), current_desc=current_desc,
        version=check.version, now=now)
    return {"deliveries": ids}

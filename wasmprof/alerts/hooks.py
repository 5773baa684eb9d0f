"""Where the service tells the alerts package that something happened.

- :func:`on_crash_event` — after a crash event is stored and grouped (called by the ingest
  code, inside its transaction when it has one: the outbox rows then commit atomically with
  the crash; a failure here is logged and never fails the ingest).
- :func:`on_profile_input` — after a profile input is stored (inside the ingest
  transaction): only notes it; the comparison runs later in the worker
  (:mod:`wasmprof.alerts.profile_checks`), which calls :func:`on_profile_stored` with the
  function shares of the new selection and of each baseline.

Both only write outbox rows and wake the delivery worker; no network I/O happens here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from wasmprof.alerts import outbox, webhooks
from wasmprof.alerts.events import (AlertEvent, AlertFrame, EventType, RegressionInfo,
                                    SpikeInfo, profile_regressions, spike_due)

log = logging.getLogger(__name__)

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
_settings_lock = threading.Lock()
_public_url: str | None = None
_default_url: str | None = None
_wakers: list[Callable[[], None]] = []
_tasks: weakref.WeakKeyDictionary[Any, dict[str, Callable[[float], int]]] = \
    weakref.WeakKeyDictionary()


def configure(*, public_url: str | None = None, default_url: str | None = None,
              waker: Callable[[], None] | None = None) -> None:
    """Set the base URL used in alert links (``public_url``: explicit, e.g. ``wasmprof serve
    --public-url``; ``default_url``: the server's own address, used when neither that nor
    ``$WASMPROF_PUBLIC_URL`` is set) and register a worker to wake on enqueue."""
    global _public_url, _default_url
    with _settings_lock:
        if public_url:
            _public_url = public_url
        if default_url:
            _default_url = default_url
        if waker is not None and waker not in _wakers:
            _wakers.append(waker)


def unregister_waker(waker: Callable[[], None]) -> None:
    with _settings_lock:
        if waker in _wakers:
            _wakers.remove(waker)


def public_url() -> str:
    """``configure(public_url=…)`` > ``$WASMPROF_PUBLIC_URL`` > ``configure(default_url=…)``
    > ``http://127.0.0.1:8080``."""
    return (_public_url or os.environ.get("WASMPROF_PUBLIC_URL") or _default_url
            or DEFAULT_PUBLIC_URL)


def set_worker_task(db: Any, name: str, task: Callable[[float], int]) -> None:
    """Register a periodic job ``task(now) -> done`` for workers started on ``db`` (the
    server registers ``profile.regression`` checks this way)."""
    with _settings_lock:
        _tasks.setdefault(db, {})[name] = task


def worker_tasks(db: Any) -> list[Callable[[float], int]]:
    with _settings_lock:
        return list(_tasks.get(db, {}).values())


def wake_workers() -> None:
    """Tell this process's delivery workers to look at the outbox now."""
    _wake()


def _wake() -> None:
    for w in list(_wakers):
        try:
            w()
        except Exception:  # noqa: BLE001
            log.exception("waking the webhook worker failed")


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _as_float(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def frames_from(value: Any, limit: int = 8) -> list[AlertFrame]:
    """Top frames from a stored JSON text, a list of frame dicts or :class:`Frame` objects.
    Native (host) frames are skipped."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if isinstance(value, dict):
        value = value.get("frames")
    if not isinstance(value, list):
        return []
    out: list[AlertFrame] = []
    for f in value:
        if _get(f, "native"):
            continue
        fn = _get(f, "function") or _get(f, "printed_name") or _get(f, "raw_function")
        line = _get(f, "line")
        out.append(AlertFrame(function=str(fn) if fn is not None else None,
                              file=_get(f, "file"),
                              line=int(line) if isinstance(line, int) else None,
                              status=str(_get(f, "status")) if _get(f, "status") else None,
                              inlined=bool(_get(f, "inlined", False))))
        if len(out) >= limit:
            break
    return out


def crash_alert(kind: EventType, group: Any, event: Any, *, key: str, now: float) -> AlertEvent:
    """An :class:`AlertEvent` from a stored crash group and crash event (rows or objects)."""
    frames = frames_from(_get(event, "frames")) or frames_from(_get(group, "top_frames"))
    gid = _get(group, "id", _get(event, "group_id"))
    return AlertEvent(
        type=kind, key=key, occurred_at=now,
        plugin=_get(event, "plugin") or _get(group, "plugin"),
        module_version=_get(event, "version"),
        group_id=str(gid) if gid is not None else None,
        title=_get(group, "title"),
        trap_kind=_get(event, "trap_kind") or _get(group, "trap_kind"),
        message=_get(event, "message"),
        count=int(_get(group, "count")) if _get(group, "count") is not None else None,
        first_seen=_as_float(_get(group, "first_seen")),
        last_seen=_as_float(_get(group, "last_seen")),
        frames=frames, panic=_get(event, "panic"))


def on_crash_event(db: Any, group: Any, event: Any, is_new_group: bool, regressed: bool, *,
                   now: float | None = None) -> list[str]:
    """Queue ``crash.new_group`` / ``crash.regressed`` / ``crash.spike`` deliveries for
    every webhook that wants them. Returns the delivery ids queued (empty on failure)."""
    now = time.time() if now is None else now
    try:
        with db.tx() as tx, db.savepoint(tx, "wasmprof_alerts"):
            ids = _crash_event_tx(tx, group, event, is_new_group, regressed, now)
    except Exception:  # noqa: BLE001 - alerts must never fail an ingest
        log.exception("queueing crash alerts failed (group %s)", _get(group, "id"))
        return []
    if ids:
        _wake()
    return ids


def muted(group: Any) -> bool:
    """An ignored crash group alerts nothing (``POST /crash-groups/{id}/ignore``)."""
    return (_get(group, "stored_status") or _get(group, "status")) == "ignored"


def _crash_event_tx(tx: Any, group: Any, event: Any, is_new_group: bool, regressed: bool,
                    now: float) -> list[str]:
    if muted(group):
        return []
    gid = _get(group, "id", _get(event, "group_id"))
    eid = _get(event, "id")
    plugin = _get(event, "plugin") or _get(group, "plugin")
    base = public_url()
    ids: list[str] = []
    kinds: list[tuple[EventType, str]] = []
    if is_new_group:
        kinds.append((EventType.CRASH_NEW_GROUP, f"crash.new_group:{gid}"))
    elif regressed:
        kinds.append((EventType.CRASH_REGRESSED, f"crash.regressed:{gid}:{eid}"))
    for kind, key in kinds:
        for hook in webhooks.active_for(tx, kind, plugin):
            did = outbox.enqueue(tx, hook, crash_alert(kind, group, event, key=key, now=now),
                                 now=now, base_url=base)
            if did:
                ids.append(did)
    if gid is None:
        return ids
    for hook in webhooks.active_for(tx, EventType.CRASH_SPIKE, plugin):
        n = int(tx.scalar("SELECT COUNT(*) AS n FROM crash_events WHERE group_id = ? "
                          "AND received_at > ?", (int(gid), now - hook.spike_window)) or 0)
        last = tx.scalar("SELECT fired_at FROM alert_spikes WHERE webhook_id = ? AND group_id = ?",
                         (hook.id, str(gid)))
        if not spike_due(n, hook.spike_threshold, last, now, hook.spike_window):
            continue
        cur = tx.execute(
            "INSERT INTO alert_spikes (webhook_id, group_id, fired_at) VALUES (?, ?, ?) "
            "ON CONFLICT (webhook_id, group_id) DO UPDATE SET fired_at = excluded.fired_at "
            "WHERE alert_spikes.fired_at <= ?", (hook.id, str(gid), now, now - hook.spike_window))
        if cur.rowcount != 1:
            continue                    # another replica fired it
        alert = crash_alert(EventType.CRASH_SPIKE, group, event,
                            key=f"crash.spike:{gid}:{eid}:{hook.id}", now=now)
        alert.spike = SpikeInfo(hook.spike_window, n, hook.spike_threshold)
        did = outbox.enqueue(tx, hook, alert, now=now, base_url=base)
        if did:
            ids.append(did)
    return ids


def on_crash_regrouped(db: Any, created: list[tuple[Any, Any]], removed: list[int], *,
                       regressed: list[tuple[Any, Any]] = (), now: float | None = None
                       ) -> dict[str, Any]:
    """Alerts after stored crashes were re-symbolized and regrouped (a module arrived after
    its crashes). The rule, which keeps one alert per crash group that exists:

    - each group the regrouping *created* (``created``: (group, latest moved event) pairs,
      the event's frames now symbolized) gets ``crash.new_group``, like a group created by
      ingest; its events were already stored, so no ``crash.spike`` is computed for them;
    - each resolved group that received a crash posted after it was resolved (``regressed``:
      (group, that event) pairs; the service marked it ``regressed``) gets
      ``crash.regressed``, keyed by the event like the one ingest sends;
    - each group the regrouping *emptied and deleted* (``removed`` ids: usually the
      unsymbolized group the crashes first landed in) has its ``crash.new_group`` delivery
      cancelled when no receiver has taken it yet (pending, not in flight): its frames were
      unsymbolized and its links point to a group that no longer exists. One already
      delivered stays delivered; the new group's alert then follows it;
    - other events moved into a group that already existed raise no alert (that group was
      announced when it was created).

    Returns ``{"queued": [delivery ids], "cancelled": n}``; never raises."""
    now = time.time() if now is None else now
    queued: list[str] = []
    cancelled = 0
    try:
        with db.tx() as tx, db.savepoint(tx, "wasmprof_alerts"):
            for gid in removed:
                cur = tx.execute(
                    "UPDATE alert_deliveries SET status = 'cancelled', updated_at = ?, "
                    "next_attempt_at = ?, last_error = ? WHERE group_id = ? AND event = ? "
                    "AND status = 'pending' AND (lease_until IS NULL OR lease_until < ?)",
                    (now, now, "superseded: the crash group was regrouped once its module "
                     "arrived", str(gid), str(EventType.CRASH_NEW_GROUP), now))
                cancelled += max(cur.rowcount or 0, 0)
            base = public_url()
            for kind, pairs in ((EventType.CRASH_NEW_GROUP, created),
                                (EventType.CRASH_REGRESSED, regressed)):
                for group, event in pairs:
                    if muted(group):
                        continue
                    gid = _get(group, "id", _get(event, "group_id"))
                    plugin = _get(event, "plugin") or _get(group, "plugin")
                    key = (f"crash.new_group:{gid}" if kind is EventType.CRASH_NEW_GROUP
                           else f"crash.regressed:{gid}:{_get(event, 'id')}")
                    for hook in webhooks.active_for(tx, kind, plugin):
                        did = outbox.enqueue(tx, hook, crash_alert(kind, group, event, key=key,
                                                                   now=now),
                                             now=now, base_url=base)
                        if did:
                            queued.append(did)
    except Exception:  # noqa: BLE001 - alerts must never fail a regrouping
        log.exception("queueing regroup alerts failed")
        return {"queued": [], "cancelled": 0}
    if queued:
        _wake()
    return {"queued": queued, "cancelled": cancelled}


def on_profile_input(db: Any, info: dict[str, Any], *, now: float | None = None) -> bool:
    """Note a stored profile input (``info``: id, plugin, version, labels, start, end) for a
    later ``profile.regression`` check. Cheap; never raises."""
    from wasmprof.alerts.profile_checks import note_profile_input
    try:
        with db.tx() as tx, db.savepoint(tx, "wasmprof_alerts"):
            return note_profile_input(db, info, now=time.time() if now is None else now)
    except Exception:  # noqa: BLE001 - alerts must never fail an ingest
        log.exception("noting profile input %s for regression checks failed", info.get("id"))
        return False


def on_profile_stored(db: Any, *, plugin: str | None, profile_key: str,
                      current: dict[str, tuple[float, float]],
                      baseline_for: Callable[[str | None], tuple[dict[str, tuple[float, float]], str]],
                      current_desc: str = "", version: str | None = None,
                      now: float | None = None) -> list[str]:
    """Queue ``profile.regression`` deliveries.

    ``current``: function → (self %, total %) of the new selection (see
    :func:`wasmprof.alerts.events.function_shares`). ``baseline_for(baseline_spec)`` returns
    the baseline's shares and a description, for a webhook's baseline selection (None = the
    plugin's earlier profiles). ``profile_key`` identifies the stored profile (dedupe).
    """
    now = time.time() if now is None else now
    ids: list[str] = []
    try:
        with db.tx() as tx, db.savepoint(tx, "wasmprof_alerts"):
            hooks = webhooks.active_for(tx, EventType.PROFILE_REGRESSION, plugin)
            cache: dict[str | None, tuple[dict[str, tuple[float, float]], str]] = {}
            for hook in hooks:
                if hook.baseline not in cache:
                    cache[hook.baseline] = baseline_for(hook.baseline)
                base_shares, base_desc = cache[hook.baseline]
                if not base_shares:
                    continue
                regs: list[RegressionInfo] = profile_regressions(
                    base_shares, current, hook.regression_points, baseline_desc=base_desc,
                    current_desc=current_desc)
                if not regs:
                    continue
                alert = AlertEvent(type=EventType.PROFILE_REGRESSION,
                                   key=f"profile.regression:{profile_key}", occurred_at=now,
                                   plugin=plugin, module_version=version, regressions=regs)
                did = outbox.enqueue(tx, hook, alert, now=now, base_url=public_url())
                if did:
                    ids.append(did)
    except Exception:  # noqa: BLE001 - alerts must never fail an ingest
        log.exception("queueing profile regression alerts failed (plugin %s)", plugin)
        return []
    if ids:
        _wake()
    return ids


def on_health_alert(db: Any, alert: AlertEvent, *, now: float | None = None) -> list[str]:
    """Queue a ``plugin.memory_growth`` / ``plugin.crash_loop`` event (built by
    :mod:`wasmprof.health.checks`, keyed once per episode) for every webhook that wants it.
    Joins the caller's transaction when there is one; never raises."""
    now = time.time() if now is None else now
    ids: list[str] = []
    try:
        with db.tx() as tx, db.savepoint(tx, "wasmprof_alerts"):
            for hook in webhooks.active_for(tx, alert.type, alert.plugin):
                did = outbox.enqueue(tx, hook, alert, now=now, base_url=public_url())
                if did:
                    ids.append(did)
    except Exception:  # noqa: BLE001 - alerts must never fail the health checks
        log.exception("queueing %s alerts failed (plugin %s)", alert.type, alert.plugin)
        return []
    if ids:
        _wake()
    return ids


def queue_test(db: Any, webhook: webhooks.Webhook, *, now: float | None = None) -> str:
    """Queue a ``webhook.test`` delivery (one attempt, never rate-limited)."""
    now = time.time() if now is None else now
    alert = AlertEvent(type=EventType.TEST, key=f"webhook.test:{now!r}:{os.getpid()}",
                       occurred_at=now, plugin="wasmprof-test", trap_kind="unreachable",
                       title="Test delivery from wasmprof",
                       message="This is a test alert; no crash happened.",
                       frames=[AlertFrame("example_handler", "src/plugin.c", 42, "exact")])
    did = outbox.enqueue(db, webhook, alert, now=now, base_url=public_url())
    assert did is not None
    _wake()
    return did

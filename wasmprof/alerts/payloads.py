"""Request bodies of webhook deliveries: plain JSON or Slack-compatible (``text`` + blocks).

Names in alerts (functions, files, plugins, messages) come from uploaded modules and logs,
so they are attacker-controlled: :func:`clean` replaces control characters (no terminal
escapes reach a receiver's log) and bounds lengths; the Slack variant additionally escapes
``& < >`` (so a name cannot forge ``<!channel>`` mentions or links) and neutralises
backticks inside code blocks. JSON is produced by orjson, so it is always well-formed.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any
from urllib.parse import quote

from wasmprof.alerts.events import HEALTH_EVENTS, AlertEvent, EventType
from wasmprof.output import dumps

MAX_FRAMES = 8
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(text: Any, limit: int = 300) -> str | None:
    """``text`` as a single safe line: control/bidi characters shown as ``\\xNN``/``\\uNNNN``,
    newlines as spaces, at most ``limit`` characters (``…`` marks a cut)."""
    if text is None:
        return None
    s = str(text).replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    s = _CONTROL.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                else f"\\u{ord(m.group()):04x}"), s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat().replace("+00:00", "Z")


def links(event: AlertEvent, base_url: str) -> dict[str, str]:
    """Dashboard and API links for the event's subject."""
    base = base_url.rstrip("/")
    out = {"dashboard": f"{base}/"}
    if event.group_id is not None:
        gid = quote(str(event.group_id), safe="")
        out["dashboard"] = f"{base}/#/crashes/{gid}"
        out["api"] = f"{base}/api/v1/crash-groups/{gid}"
    elif event.type is EventType.PROFILE_REGRESSION:
        out["dashboard"] = f"{base}/#/profiles" + (
            f"?plugin={quote(event.plugin, safe='')}" if event.plugin else "")
    elif event.type in HEALTH_EVENTS:
        plugin = quote(event.plugin or "", safe="")
        out["dashboard"] = f"{base}/#/health?plugin={plugin}"
        out["api"] = f"{base}/api/v1/health/series?plugin={plugin}"
    return out


def event_json(event: AlertEvent, base_url: str) -> dict[str, Any]:
    """The JSON object describing one event (also the items of a digest)."""
    d: dict[str, Any] = {
        "event": str(event.type),
        "occurred_at": iso(event.occurred_at),
        "plugin": clean(event.plugin, 200),
        "module_version": clean(event.module_version, 200),
    }
    if event.health is not None:
        d["health"] = health_json(event)
    if event.type is not EventType.PROFILE_REGRESSION and event.type not in HEALTH_EVENTS:
        d.update({
            "group_id": event.group_id,
            "title": clean(event.title, 500),
            "trap_kind": clean(event.trap_kind, 100),
            "message": clean(event.message, 1000),
            "count": event.count,
            "first_seen": iso(event.first_seen),
            "last_seen": iso(event.last_seen),
            "top_frames": [
                {"function": clean(f.function, 500), "file": clean(f.file, 500),
                 "line": f.line, "location": clean(f.location, 520), "status": f.status,
                 "inlined": f.inlined}
                for f in event.frames[:MAX_FRAMES]],
        })
    if event.panic:
        p = event.panic
        d["panic"] = {"kind": clean(p.get("kind"), 20), "language": clean(p.get("language"), 20),
                      "message": clean(p.get("message"), 1000),
                      "location": clean(p.get("location"), 520),
                      "recovered": bool(p.get("recovered")), "partial": bool(p.get("partial"))}
    if event.spike is not None:
        d["spike"] = {"window_seconds": event.spike.window_seconds,
                      "count_in_window": event.spike.count_in_window,
                      "threshold": event.spike.threshold}
    if event.regressions:
        d["regressions"] = [
            {"function": clean(r.function, 500), "metric": r.metric,
             "baseline_share": r.baseline_share, "current_share": r.current_share,
             "delta_points": r.delta_points, "baseline": clean(r.baseline, 300),
             "current": clean(r.current, 300)}
            for r in event.regressions]
    d["links"] = links(event, base_url)
    return d


def health_json(event: AlertEvent) -> dict[str, Any]:
    """The measurements of a ``plugin.*`` event (times as ISO 8601, sizes in bytes)."""
    h = event.health
    assert h is not None
    d: dict[str, Any] = {"window_seconds": h.window_seconds, "window_start": iso(h.window_start),
                         "window_end": iso(h.window_end), "source": clean(h.source, 300),
                         "reason": clean(h.reason, 500)}
    if event.type is EventType.PLUGIN_MEMORY_GROWTH:
        d.update({"slope_bytes_per_second": h.slope_bytes_per_second,
                  "slope_bytes_per_hour": (None if h.slope_bytes_per_second is None
                                           else h.slope_bytes_per_second * 3600.0),
                  "growth_bytes": h.growth_bytes, "current_bytes": h.current_bytes,
                  "limit_bytes": h.limit_bytes, "seconds_to_limit": h.seconds_to_limit,
                  "projected_limit_at": (None if h.seconds_to_limit is None
                                         else iso(h.window_end + h.seconds_to_limit)),
                  "r2": h.r2, "points": h.points})
    else:
        d.update({"crashes": h.crashes, "rebuilds": h.rebuilds, "threshold": h.threshold})
    return d


def _mib(n: float | None) -> str:
    return "?" if n is None else f"{n / (1024 * 1024):.1f} MiB"


def _duration(sec: float | None) -> str:
    if sec is None:
        return "?"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if sec >= size:
            return f"{sec / size:.1f} {unit}"
    return f"{sec:.0f} s"


def _health_summary(event: AlertEvent, who: str) -> str:
    h = event.health
    if h is None:
        return f"{event.type} in {who}"
    if event.type is EventType.PLUGIN_MEMORY_GROWTH:
        slope = (h.slope_bytes_per_second or 0.0) * 3600.0
        return (f"Memory of {who} grows steadily: +{_mib(slope)}/h over the last "
                f"{_duration(h.window_seconds)}, now {_mib(h.current_bytes)}; "
                f"limit {_mib(h.limit_bytes)} in {_duration(h.seconds_to_limit)}")
    return (f"{who} is crash-looping: {h.crashes or 0:g} crashes, {h.rebuilds or 0:g} rebuilds "
            f"in {_duration(h.window_seconds)} (threshold {h.threshold})")


def summary_line(event: AlertEvent) -> str:
    """One plain-text line (unescaped, but cleaned) summarizing the event."""
    who = clean(event.plugin, 100) or "unknown plugin"
    if event.type in HEALTH_EVENTS:
        return _health_summary(event, who)
    if event.type is EventType.PROFILE_REGRESSION:
        top = event.regressions[0] if event.regressions else None
        if top is None:
            return f"Profile regression in {who}"
        return (f"Profile regression in {who}: {clean(top.function, 120)} {top.metric} share "
                f"{top.baseline_share:.1f}% → {top.current_share:.1f}% "
                f"(+{top.delta_points:.1f} points)")
    what = {EventType.CRASH_NEW_GROUP: "New crash", EventType.CRASH_REGRESSED: "Regressed crash",
            EventType.CRASH_SPIKE: "Crash spike", EventType.TEST: "Test alert"}.get(
        event.type, str(event.type))
    trap = clean(event.trap_kind, 60) or "crash"
    where = ""
    if event.frames:
        f = event.frames[0]
        where = f" in {clean(f.function, 120) or '?'}"
        if f.location:
            where += f" ({clean(f.location, 160)})"
    extra = ""
    if event.spike is not None:
        extra = (f": {event.spike.count_in_window} in {event.spike.window_seconds:g}s "
                 f"(threshold {event.spike.threshold})")
    return f"{what} in {who}: {trap}{where}{extra}"


def slack_escape(text: str | None) -> str:
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _panic_text(panic: dict[str, Any] | None) -> str | None:
    """``Go: runtime error: … at main.go:21`` for the Slack field."""
    if not panic:
        return None
    text = f"{panic.get('language') or panic.get('kind') or '?'}: {panic.get('message') or '?'}"
    return text + (f" at {panic['location']}" if panic.get("location") else "")


def _slack_code(text: str) -> str:
    return slack_escape(text).replace("`", "ˋ")


def _slack_event_blocks(event: AlertEvent, base_url: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn",
                                     "text": "*" + slack_escape(summary_line(event)) + "*"}}]
    fields = []
    for label, value in (("Plugin", event.plugin), ("Version", event.module_version),
                         ("Trap", event.trap_kind),
                         ("Count", None if event.count is None else str(event.count)),
                         ("First seen", iso(event.first_seen)),
                         ("Last seen", iso(event.last_seen)),
                         ("Panic", _panic_text(event.panic))):
        if value:
            fields.append({"type": "mrkdwn",
                           "text": f"*{label}*\n{slack_escape(clean(value, 200))}"})
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})
    if event.frames:
        lines = []
        for f in event.frames[:MAX_FRAMES]:
            loc = f" {f.location}" if f.location else ""
            lines.append(_slack_code((clean(f.function, 150) or "??") + (clean(loc, 200) or "")))
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": ("```" + "\n".join(lines) + "```")[:2900]}})
    if event.regressions:
        lines = [_slack_code(f"{clean(r.function, 150)}  {r.metric} {r.baseline_share:.1f}% → "
                             f"{r.current_share:.1f}% (+{r.delta_points:.1f})")
                 for r in event.regressions[:MAX_FRAMES]]
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": ("```" + "\n".join(lines) + "```")[:2900]}})
    link = links(event, base_url)["dashboard"]
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"<{slack_escape(link)}|Open in wasmprof>"}]})
    return blocks


def render(event: AlertEvent, fmt: str, *, delivery_id: str, base_url: str) -> bytes:
    """The body of a delivery of one event in format ``json`` or ``slack``."""
    if fmt == "slack":
        return dumps({"text": slack_escape(summary_line(event)),
                      "blocks": _slack_event_blocks(event, base_url)[:50]})
    body = event_json(event, base_url)
    return dumps({"delivery_id": delivery_id, **body})


def render_digest(events: list[AlertEvent], fmt: str, *, delivery_id: str, base_url: str,
                  window_start: float, window_end: float, max_items: int = 20) -> bytes:
    """One message standing for every event that arrived while the webhook was over its
    rate limit. ``total`` counts all of them; ``events`` lists the first ``max_items``."""
    by_type: dict[str, int] = {}
    for ev in events:
        by_type[str(ev.type)] = by_type.get(str(ev.type), 0) + 1
    plugins = sorted({clean(ev.plugin, 100) or "unknown" for ev in events})
    text = (f"wasmprof: {len(events)} alerts while rate-limited "
            + ", ".join(f"{n} {t}" for t, n in sorted(by_type.items()))
            + f" ({len(plugins)} plugin{'s' if len(plugins) != 1 else ''})")
    if fmt == "slack":
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*" + slack_escape(text) + "*"}}]
        lines = [_slack_code(summary_line(ev)) for ev in events[:max_items]]
        if len(events) > max_items:
            lines.append(f"… and {len(events) - max_items} more")
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": ("```" + "\n".join(lines) + "```")[:2900]}})
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{slack_escape(base_url.rstrip('/') + '/')}|Open wasmprof>"}]})
        return dumps({"text": slack_escape(text), "blocks": blocks})
    return dumps({
        "delivery_id": delivery_id,
        "event": str(EventType.DIGEST),
        "summary": text,
        "window_start": iso(window_start),
        "window_end": iso(window_end),
        "total": len(events),
        "by_event": by_type,
        "plugins": plugins[:100],
        "events": [event_json(ev, base_url) for ev in events[:max_items]],
        "omitted": max(len(events) - max_items, 0),
        "links": {"dashboard": base_url.rstrip("/") + "/"},
    })

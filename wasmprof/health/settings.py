"""Detection settings of plugin health (one row in ``health_settings``; defaults below).

Shared by the API (``GET|PUT /api/v1/health/settings``) and the checker, so what is
accepted can be read back. :func:`validate` names the bad field (``UsageError`` → 400).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson

from wasmprof.errors import UsageError

WASM32_MAX_MEMORY = 65536 * 65536          # 4 GiB: 65536 pages of 64 KiB


@dataclass(slots=True)
class HealthSettings:
    """``memory_*``: a plugin's memory grows *steadily* when, over the last
    ``memory_window`` seconds (since its last drop, a rebuild or restart), at least
    ``memory_min_points`` samples covering half the window fit a line with R² ≥
    ``memory_min_r2``, each quarter of that span averages more than the one before (one
    spike or one step is not growth), and the fitted growth is at least
    ``memory_min_growth_bytes`` and ``memory_min_growth_ratio`` of the start value.
    ``memory_limit_bytes`` is what the projected time to the limit is computed against.
    ``crash_*``: a plugin crash-loops when its crashes or its rebuilds within
    ``crash_window`` seconds reach ``crash_threshold``. Checks run every
    ``check_interval`` seconds; points older than ``retention_days`` are deleted."""

    memory_window: float = 3600.0
    memory_min_points: int = 6
    memory_min_r2: float = 0.8
    memory_min_growth_bytes: float = 1024.0 * 1024.0
    memory_min_growth_ratio: float = 0.05
    memory_limit_bytes: float = float(WASM32_MAX_MEMORY)
    crash_window: float = 600.0
    crash_threshold: int = 3
    check_interval: float = 30.0
    retention_days: float = 14.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_BOUNDS: dict[str, tuple[float, float]] = {
    "memory_window": (1.0, 30 * 86400.0),
    "memory_min_points": (3, 100000),
    "memory_min_r2": (0.0, 1.0),
    "memory_min_growth_bytes": (0.0, 2.0 ** 50),
    "memory_min_growth_ratio": (0.0, 100.0),
    "memory_limit_bytes": (1.0, 2.0 ** 50),
    "crash_window": (1.0, 30 * 86400.0),
    "crash_threshold": (1, 1_000_000),
    "check_interval": (0.05, 86400.0),
    "retention_days": (0.01, 3650.0),
}
_INTEGER = {"memory_min_points", "crash_threshold"}


def validate(changes: Any, base: HealthSettings | None = None) -> HealthSettings:
    """``base`` (defaults when None) with ``changes`` (a JSON object of some fields) applied;
    raises :class:`UsageError` naming the first bad field."""
    if not isinstance(changes, dict):
        raise UsageError("settings must be a JSON object", source="body",
                         expected="{" + ", ".join(f'"{f.name}": …' for f in fields(HealthSettings)) + "}")
    names = {f.name for f in fields(HealthSettings)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise UsageError("unknown health setting", source=unknown[0],
                         expected=", ".join(sorted(names)), found=unknown[0][:60])
    out = HealthSettings(**(base or HealthSettings()).to_dict())
    for key, value in changes.items():
        lo, hi = _BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{key} must be a number", source=key, found=repr(value)[:60])
        if key in _INTEGER and int(value) != value:
            raise UsageError(f"{key} must be an integer", source=key, found=repr(value))
        v = float(value)
        if not (lo <= v <= hi):
            raise UsageError(f"{key} out of range", source=key, expected=f"{lo:g} .. {hi:g}",
                             found=repr(value))
        setattr(out, key, int(v) if key in _INTEGER else v)
    return out


def load(db: Any) -> HealthSettings:
    with db.read() as tx:
        row = tx.one("SELECT settings FROM health_settings WHERE id = 1")
    if row is None:
        return HealthSettings()
    try:
        return validate(orjson.loads(row["settings"]))
    except (UsageError, orjson.JSONDecodeError):
        return HealthSettings()


def save(db: Any, changes: Any) -> HealthSettings:
    """Apply ``changes`` to the stored settings and store the result."""
    new = validate(changes, load(db))
    body = orjson.dumps(new.to_dict()).decode()
    with db.tx() as tx:
        tx.execute("INSERT INTO health_settings (id, settings, updated_at) VALUES (1, ?, ?) "
                   "ON CONFLICT (id) DO UPDATE SET settings = excluded.settings, "
                   "updated_at = excluded.updated_at", (body, time.time()))
    return new

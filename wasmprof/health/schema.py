"""Tables of the ``health`` migration component (listed in ``EXTENSION_MODULES``).

- ``health_targets``: Envoy admin ``/stats/prometheus`` endpoints to scrape (``origin`` =
  ``config`` for ``serve --scrape-envoy``, ``api`` for ones added through the API), with the
  outcome of the last scrape (shown on the overview) and a lease so that one replica scrapes
  a target at a time. Removing a target soft-deletes it (``deleted_at``); its series stay.
- ``health_series``: one row per (source, plugin, runtime, thread, metric); ``source`` is
  ``envoy:<target id>`` or ``log:<log source>``; ``plugin`` "" = the process / runtime as a
  whole, else the name the input used (Envoy's sanitized one for stats); ``plugin_raw`` is
  set when, at creation, that name was read as another known plugin;
  ``last_value``/``last_ts`` feed the reset-aware counter increase.
- ``health_points``: (series, ts) → value; ``delta`` is the increase since the previous point
  for counters (NULL for the first one and for gauges); ``reset`` = 1 when the counter went
  down (the process restarted) and ``delta`` is then the new value.
- ``health_alerts``: alert episodes (``plugin.memory_growth`` per plugin and source,
  ``plugin.crash_loop`` per plugin): ``active`` until the condition has been gone for a
  window; one delivery per episode (``event_key``).
- ``health_settings``: the detection settings (one JSON row, id 1).
"""

from __future__ import annotations

COMPONENT = "health"

MIGRATIONS: list[str] = [
    """
    CREATE TABLE health_targets (
        id {id},
        url TEXT NOT NULL,
        name TEXT,
        interval {float} NOT NULL,
        timeout {float},
        enabled INTEGER NOT NULL DEFAULT 1,
        origin TEXT NOT NULL DEFAULT 'api',
        created_at {float} NOT NULL,
        updated_at {float} NOT NULL,
        deleted_at {float},
        lease_until {float},
        lease_owner TEXT,
        next_scrape_at {float},
        last_scrape_at {float},
        last_ok_at {float},
        last_error TEXT,
        last_duration_ms {float},
        last_bytes {bigint},
        last_series INTEGER,
        last_plugins TEXT,
        unmapped TEXT,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        scrapes {bigint} NOT NULL DEFAULT 0,
        failures {bigint} NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX health_targets_url ON health_targets (url) WHERE deleted_at IS NULL;
    CREATE TABLE health_series (
        id {id},
        source TEXT NOT NULL,
        plugin TEXT NOT NULL,
        plugin_raw TEXT,
        runtime TEXT NOT NULL,
        thread TEXT NOT NULL,
        metric TEXT NOT NULL,
        kind TEXT NOT NULL,
        origin TEXT NOT NULL,
        note TEXT,
        first_ts {float},
        last_ts {float},
        last_value {float},
        created_at {float} NOT NULL
    );
    CREATE UNIQUE INDEX health_series_key ON health_series (source, plugin, runtime, thread, metric);
    CREATE INDEX health_series_plugin ON health_series (plugin, metric);
    CREATE TABLE health_points (
        series_id {bigint} NOT NULL,
        ts {float} NOT NULL,
        value {float} NOT NULL,
        delta {float},
        reset INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (series_id, ts)
    );
    CREATE INDEX health_points_ts ON health_points (ts);
    CREATE TABLE health_alerts (
        id {id},
        kind TEXT NOT NULL,
        plugin TEXT NOT NULL,
        source TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at {float} NOT NULL,
        last_seen_at {float} NOT NULL,
        cleared_at {float},
        event_key TEXT NOT NULL,
        info TEXT
    );
    CREATE UNIQUE INDEX health_alerts_key ON health_alerts (event_key);
    CREATE UNIQUE INDEX health_alerts_active ON health_alerts (kind, plugin, source)
        WHERE status = 'active';
    CREATE TABLE health_settings (
        id INTEGER PRIMARY KEY,
        settings TEXT NOT NULL,
        updated_at {float} NOT NULL
    );
    """,
]

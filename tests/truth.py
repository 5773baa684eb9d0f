"""Readers for the fixtures' ground truth (``expected/`` in tests/data or ../shared/fixtures)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def perf_truth(root: Path, run: str) -> dict:
    """``expected/perf/<run>.expected.json[.gz]`` under ``root``."""
    for suffix in (".expected.json.gz", ".expected.json"):
        p = root / "expected" / "perf" / (run + suffix)
        if p.exists():
            raw = p.read_bytes()
            return json.loads(gzip.decompress(raw) if suffix.endswith(".gz") else raw)
    raise FileNotFoundError(f"no ground truth for perf run {run} under {root}")


def perf_runs(root: Path) -> list[str]:
    """Names of the perf runs under ``root/perf`` (``<run>.perf-script.txt``)."""
    return sorted(p.name[: -len(".perf-script.txt")]
                  for p in (root / "perf").glob("*.perf-script.txt"))

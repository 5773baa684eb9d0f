"""Shared test fixtures.

- ``data_dir``: ``tests/data`` (a copy of part of ../shared/fixtures; works from a clone).
- ``shared_fixtures``: the full ``../shared/fixtures`` corpus; tests using it are skipped
  when it is absent (it is present in CI).
- Every test session gets a private ``WASMPROF_CACHE_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pg import db_url, pg_cluster, pg_url  # noqa: F401,E402  (PostgreSQL fixtures, tests/pg.py)
from oci_registry import oci_env_fixture

#: real OCI registries on loopback, one set per session (tests/oci_registry.py)
oci = pytest.fixture(scope="session")(oci_env_fixture)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SHARED = ROOT.parent / "shared" / "fixtures"
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="session", autouse=True)
def _private_cache_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("wasmprof-cache")
    old = os.environ.get("WASMPROF_CACHE_DIR")
    os.environ["WASMPROF_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("WASMPROF_CACHE_DIR", None)
    else:
        os.environ["WASMPROF_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    if not (SHARED / "MANIFEST.md").exists():
        pytest.skip("../shared/fixtures is not present")
    return SHARED


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def shared_fixtures_or_none() -> Path | None:
    """``../shared/fixtures`` when present (extra inputs for sweeps), else None."""
    return SHARED if (SHARED / "MANIFEST.md").exists() else None

"""A throwaway PostgreSQL cluster for the test session, and the pytest fixtures using it.

- ``pg_cluster`` (session): ``initdb`` into a temp dir and ``pg_ctl start`` on 127.0.0.1 at
  a free port (run as the ``postgres`` user via ``runuser`` when the tests run as root),
  trust auth on loopback only, stopped at the end. Debian's ``postgresql`` package provides
  the binaries (``/usr/lib/postgresql/<ver>/bin``; the test command installs it).
  Missing binaries skip PostgreSQL tests locally and FAIL them in CI (``CI=true``).
- ``pg_url`` (function): a fresh empty database in that cluster, as a ``postgresql://`` URL.
- ``db_url`` (function, parametrized ``sqlite`` / ``postgres``): the same tests on both.

Registered in ``tests/conftest.py`` by importing the fixtures.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin_dir() -> Path | None:
    env = os.environ.get("WASMPROF_PG_BIN")
    if env and (Path(env) / "initdb").exists():
        return Path(env)
    cands = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for c in reversed(cands):
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PgCluster:
    """One local cluster: ``start()``, ``create_database()``, ``url()``, ``stop()``."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sock = root / "sock"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        self._counter = itertools.count(1)

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)

    def start(self, *, durable: bool = False) -> None:
        """``durable=False`` (tests) turns fsync off for speed; benchmarks pass True."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if self.as_postgres:
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.root)], check=True)
            os.chmod(self.root, 0o755)
            for parent in self.root.parents:          # postgres must traverse to its dirs
                if str(parent) in ("/", "/tmp"):
                    break
                try:
                    os.chmod(parent, os.stat(parent).st_mode | 0o011)
                except OSError:
                    pass
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 "
                "-c max_connections=200 -c shared_buffers=64MB")
        if not durable:
            opts += " -c fsync=off -c full_page_writes=off"
        r = self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"),
                      "-w", "-t", "60", "start", check=False)
        if r.returncode != 0:
            log = (self.root / "pg.log").read_text(errors="replace") if (self.root / "pg.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{log[-2000:]}")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        import psycopg
        name = f"{prefix}_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False, timeout=60)


@pytest.fixture(scope="session")
def pg_cluster():
    bindir = pg_bin_dir()
    if bindir is None:
        msg = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    root = Path(tempfile.mkdtemp(prefix="wasmprof-pg-"))
    cluster = PgCluster(bindir, root)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_cluster) -> str:
    return pg_cluster.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wasmprof.db'}"
    return request.getfixturevalue("pg_url")


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value (returned) or time runs out."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        time.sleep(interval)

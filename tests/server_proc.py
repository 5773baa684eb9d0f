"""Run ``wasmprof serve`` as a real uvicorn subprocess on loopback for tests.

``ServerProcess(data_dir, db_url, extra_args=[...]).start()`` picks a free port, waits for
``/healthz`` and exposes ``url``/``client(token)``; ``kill9()`` simulates a crash,
``stop()`` a clean shutdown. The server's stderr (JSON logs) goes to ``<data>/server.log``
and is shown when startup fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pg import free_port

ROOT = Path(__file__).resolve().parent.parent


def wasmprof_cli(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasmprof", *args], cwd=ROOT, check=check,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


class ServerProcess:
    def __init__(self, data_dir: Path, db_url: str | None = None, *, extra_args: list[str] = (),
                 env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.db_url = db_url
        self.extra_args = list(extra_args)
        self.env = env or {}
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.data_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "wasmprof", "serve", "--data", str(self.data_dir),
               "--port", str(self.port), *self.extra_args]
        if self.db_url:
            cmd += ["--db", self.db_url]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env})
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill9()
        raise RuntimeError(f"server did not become healthy:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def client(self, token: str | None = None, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
        if getattr(self, "_log", None):
            self._log.close()

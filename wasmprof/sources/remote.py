"""The few API calls ``wasmprof module … --server URL`` makes (httpx; errors become
:class:`~wasmprof.errors.UsageError` with the server's error text)."""

from __future__ import annotations

import os
from typing import Any

import httpx

from wasmprof.errors import UsageError
from wasmprof.oci.client import USER_AGENT

ENV_TOKEN = "WASMPROF_TOKEN"


class ServerClient:
    def __init__(self, url: str, token: str | None, *, timeout: float = 120.0) -> None:
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise UsageError("bad server URL", source="--server", expected="http(s)://HOST:PORT",
                             found=url[:80])
        token = token or os.environ.get(ENV_TOKEN)
        headers = {"User-Agent": USER_AGENT, **({"Authorization": f"Bearer {token}"} if token else {})}
        self.url = url
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, trust_env=False)

    def __enter__(self) -> "ServerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 202),
             **kw: Any) -> Any:
        try:
            resp = self._http.request(method, "/api/v1" + path, **kw)
        except httpx.HTTPError as e:
            raise UsageError(f"cannot reach the server: {e}", source=self.url) from None
        if resp.status_code not in ok:
            try:
                body = resp.json()
                detail = body.get("detail") if isinstance(body.get("detail"), str) else str(body)
            except ValueError:
                detail = resp.text[:300]
            raise UsageError(f"server answered HTTP {resp.status_code}: {detail}",
                             source=f"{method} {self.url}/api/v1{path}")
        return resp.json() if resp.content else {}

    def upload_module(self, data: bytes, filename: str, plugin: str | None,
                      version: str | None) -> dict[str, Any]:
        params = {k: v for k, v in (("plugin", plugin), ("version", version),
                                    ("filename", filename)) if v}
        return self.call("POST", "/modules", params=params, content=data,
                         headers={"Content-Type": "application/octet-stream"})

    def add_origin(self, mid: int, origin: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", f"/modules/{mid}/origins", json=origin)

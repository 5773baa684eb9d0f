"""Serve the dashboard (``web/``) and the vendored speedscope viewer on the FastAPI app.

Contract: :func:`mount_web` adds ``GET /`` (the dashboard shell), ``/js/*``, ``/css/*``,
``/favicon.svg``, ``/speedscope/*`` and the ``/api/v1/web/*`` + ``/api/v1/sources`` routes
of :mod:`wasmprof.server.routes_web`, and nothing else, so API routes keep their paths
whatever the order of registration. Every response of these routes carries a strict
Content-Security-Policy (scripts only from this origin, no inline script, frames only from
this origin) as a second line of defence behind the dashboard's text-only DOM building:
names in modules and logs are attacker-controlled.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

#: Environment variable naming the dashboard directory explicitly.
ENV_WEB = "WASMPROF_WEB"
#: Where a wheel installs ``web/`` under a data prefix (pyproject's ``data-files``).
DATA_SUBDIR = Path("share") / "wasmprof" / "web"


def web_dir_candidates() -> list[Path]:
    """Where the dashboard may be, in lookup order: ``$WASMPROF_WEB``; the repository's
    ``web/`` beside the package (a clone or editable install); ``share/wasmprof/web`` under
    the installation's data prefixes (a wheel: the environment, then the user scheme)."""
    out = [Path(os.environ[ENV_WEB])] if os.environ.get(ENV_WEB) else []
    out.append(Path(__file__).resolve().parents[2] / "web")
    prefixes = [sysconfig.get_path("data"), sys.prefix, sys.base_prefix]
    try:
        prefixes.append(sysconfig.get_path("data", f"{os.name}_user"))
    except KeyError:
        pass
    for prefix in prefixes:
        if prefix and (p := Path(prefix) / DATA_SUBDIR) not in out:
            out.append(p)
    return out


def find_web_dir() -> Path | None:
    """The first of :func:`web_dir_candidates` holding ``index.html``; None when none does."""
    for c in web_dir_candidates():
        if (c / "index.html").is_file():
            return c
    return None


#: The dashboard served by default (:func:`find_web_dir`; the repository's ``web/`` path,
#: for messages, when no candidate has it).
WEB_DIR = find_web_dir() or Path(__file__).resolve().parents[2] / "web"

_DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self' blob:; frame-src 'self' blob:; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
# speedscope injects <style> elements, fetches #profileURL (an API path or blob: URL) and
# compiles a small WebAssembly demangler ('wasm-unsafe-eval' allows that, not JS eval).
_SPEEDSCOPE_CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self' blob:; font-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)


def _secure(response: Response, csp: str) -> Response:
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-cache"
    return response


class _SecureStatic(StaticFiles):
    """StaticFiles whose responses carry the given CSP and hardening headers."""

    def __init__(self, *, directory: Path, csp: str, html: bool = False) -> None:
        super().__init__(directory=directory, html=html, check_dir=False)
        self._csp = csp

    async def get_response(self, path: str, scope: Scope) -> Response:
        return _secure(await super().get_response(path, scope), self._csp)


def mount_web(app: FastAPI, web_dir: Path | None = None) -> None:
    """Add the dashboard and speedscope routes to ``app`` (see module docstring), and the
    dashboard's API routes (:mod:`wasmprof.server.routes_web`) when the app carries the
    service and its ``require(scope)`` dependency in ``app.state``."""
    root = Path(web_dir) if web_dir else (find_web_dir() or WEB_DIR)
    service = getattr(app.state, "service", None)
    require = getattr(app.state, "require", None)
    if service is not None and require is not None:
        from wasmprof.server.routes_web import build_router
        app.include_router(build_router(service, require))
    index = root / "index.html"

    async def dashboard() -> Response:
        if not index.is_file():
            looked = ", ".join(str(c) for c in web_dir_candidates())
            return _secure(Response("wasmprof: the dashboard (web/index.html) is missing from this "
                                    f"install; looked in: {looked}. Set {ENV_WEB}=DIR to point "
                                    "at it.\n", status_code=404, media_type="text/plain"),
                           _DASHBOARD_CSP)
        return _secure(FileResponse(index, media_type="text/html; charset=utf-8"), _DASHBOARD_CSP)

    async def favicon() -> Response:
        return _secure(FileResponse(root / "favicon.svg", media_type="image/svg+xml"), _DASHBOARD_CSP)

    app.add_api_route("/", dashboard, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/index.html", dashboard, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route("/favicon.svg", favicon, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount("/js", _SecureStatic(directory=root / "js", csp=_DASHBOARD_CSP), name="web-js")
    app.mount("/css", _SecureStatic(directory=root / "css", csp=_DASHBOARD_CSP), name="web-css")
    app.mount("/speedscope", _SecureStatic(directory=root / "vendor" / "speedscope",
                                           csp=_SPEEDSCOPE_CSP, html=True), name="speedscope")

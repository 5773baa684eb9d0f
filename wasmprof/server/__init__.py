"""The wasmprof service (FastAPI): ``create_app(config)``, see :mod:`wasmprof.server.app`."""

from __future__ import annotations

from typing import Any


def create_app(config: Any, service: Any = None) -> Any:
    from wasmprof.server.app import create_app as _create
    return _create(config, service)

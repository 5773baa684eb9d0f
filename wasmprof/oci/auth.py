"""Registry credentials and the ``WWW-Authenticate`` challenges registries answer 401 with.

- :class:`Credentials`: a username + password (or personal access token), from
  ``--username``/``--password-stdin``, a stored plugin source, or a Docker ``config.json``
  (:func:`docker_config_credentials`: ``auths.<host>.auth`` = base64 ``user:password``,
  ``username``/``password`` fields, ``identitytoken`` = an OAuth2 refresh token,
  ``registrytoken`` = a bearer token used as is). Credential helpers (``credsStore``,
  ``credHelpers``) are programs: wasmprof never runs them and says so.
- :func:`parse_challenges` reads RFC 7235 challenges (``Bearer realm="…",service="…",
  scope="…"``, ``Basic realm="…"``).
- :class:`TokenCache` keeps bearer tokens per (realm, service, scope) until they expire.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from wasmprof.oci.errors import RegistryError, json_object
from wasmprof.oci.reference import DOCKER_HUB


@dataclass(frozen=True, slots=True)
class Credentials:
    """``password`` doubles as a token for registries that take one as a password.
    ``repr`` never shows secrets."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None     # OAuth2 refresh token (Docker config identitytoken)
    registry_token: str | None = None     # a bearer token to send as is

    def __repr__(self) -> str:
        return (f"Credentials(username={self.username!r}, password={'***' if self.password else None}, "
                f"identity_token={'***' if self.identity_token else None}, "
                f"registry_token={'***' if self.registry_token else None})")

    @property
    def basic(self) -> tuple[str, str] | None:
        if self.username is not None and self.password is not None:
            return (self.username, self.password)
        return None

    def basic_header(self) -> str:
        """``Authorization: Basic …`` for the username and password."""
        user, password = self.basic or ("", "")
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    @property
    def empty(self) -> bool:
        return not (self.basic or self.identity_token or self.registry_token)


def default_docker_config() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (as docker and oras)."""
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _config_keys(registry: str) -> list[str]:
    keys = [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/",
            f"https://{registry}/v2/"]
    if registry == DOCKER_HUB:
        keys = ["https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io", *keys]
    return keys


def docker_config_credentials(registry: str, path: Path | None = None, *,
                              required: bool = False) -> Credentials | None:
    """The credentials a Docker ``config.json`` holds for ``registry`` (``host[:port]``), or
    None. A missing file is None unless ``required``; a damaged one is a RegistryError."""
    path = path or default_docker_config()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise RegistryError("Docker config file not found", kind="unauthorized",
                                source=str(path)) from None
        return None
    except OSError as e:
        raise RegistryError(f"cannot read Docker config: {e.strerror}", kind="unauthorized",
                            source=str(path)) from None
    if len(raw) > (4 << 20):
        raise RegistryError("Docker config file too large", kind="unauthorized",
                            source=str(path), expected="at most 4 MiB")
    cfg = json_object(raw, what="Docker config", kind="unauthorized", source=str(path))
    auths = cfg.get("auths") if isinstance(cfg.get("auths"), dict) else {}
    for key in _config_keys(registry):
        entry = auths.get(key)
        if isinstance(entry, dict):
            creds = _entry_credentials(entry, f"{path}: auths[{key!r}]")
            if creds is not None:
                return creds
    helpers = cfg.get("credHelpers") if isinstance(cfg.get("credHelpers"), dict) else {}
    helper = next((helpers[k] for k in _config_keys(registry) if k in helpers), None)
    helper = helper or cfg.get("credsStore")
    if helper:
        raise RegistryError(
            f"credentials for {registry} are kept by the credential helper "
            f"docker-credential-{helper}, a program; wasmprof never runs programs to get "
            "secrets", kind="unauthorized", source=str(path),
            expected="an auths entry with auth/username+password, or --username with "
                     "--password-stdin")
    return None


def _entry_credentials(entry: dict, where: str) -> Credentials | None:
    user, password = entry.get("username"), entry.get("password")
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            decoded = base64.b64decode(entry["auth"], validate=False).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError("auth is not base64 of user:password", kind="unauthorized",
                                source=where) from None
        if ":" not in decoded:
            raise RegistryError("auth is not base64 of user:password", kind="unauthorized",
                                source=where)
        user, password = decoded.split(":", 1)
    ident = entry.get("identitytoken") if isinstance(entry.get("identitytoken"), str) else None
    regtok = entry.get("registrytoken") if isinstance(entry.get("registrytoken"), str) else None
    if not (isinstance(user, str) and isinstance(password, str)):
        user = password = None
    creds = Credentials(username=user if password is not None else (user if ident else None),
                        password=password, identity_token=ident or None,
                        registry_token=regtok or None)
    return None if creds.empty else creds


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN}))\s*(,)?')
_SCHEME = re.compile(rf"\s*,?\s*({_TOKEN})(?=\s|$|,)")


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """``Bearer realm="https://a/token",service="reg",scope="repository:x:pull"`` →
    ``[("bearer", {"realm": …, "service": …, "scope": …})]``. Several challenges in one
    header are split; parameter names are lower-cased; unreadable parts are skipped."""
    out: list[tuple[str, dict[str, str]]] = []
    pos, n = 0, len(header or "")
    header = header or ""
    while pos < n:
        m = _SCHEME.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < n:
            p = _PARAM.match(header, pos)
            if not p:
                break
            # a parameter name followed by '=' — but "Basic, Bearer realm=" starts a new scheme
            value = p.group(2) if p.group(2) is not None else p.group(3)
            params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = p.end()
            if not p.group(4):
                break
        out.append((scheme, params))
    return out


class TokenCache:
    """Bearer tokens per (realm, service, scope), dropped a little before they expire."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            hit = self._tokens.get(key)
            if hit and hit[1] > time.monotonic():
                return hit[0]
            self._tokens.pop(key, None)
            return None

    def put(self, key: tuple[str, str, str], token: str, expires_in: float) -> None:
        with self._lock:
            if len(self._tokens) > 256:
                self._tokens.clear()
            self._tokens[key] = (token, time.monotonic() + max(expires_in - 10.0, 1.0))

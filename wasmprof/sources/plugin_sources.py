"""Plugin sources: which OCI reference a plugin's modules are pulled from.

The URL says which tag a plugin version is:

- ``oci://HOST/REPO`` — the version *is* the tag (a crash of version ``1.2.0`` pulls
  ``:1.2.0``); crashes without a version cannot be pulled (status ``waiting``);
- ``oci://HOST/REPO:v{version}`` — a template (``+`` in a version becomes ``_``, as tags
  cannot hold it);
- ``oci://HOST/REPO:TAG`` — one fixed tag: pulled once, linked as version ``TAG`` (crashes of
  other versions use it with the crash service's usual, explicit version-fallback note);
- ``oci://HOST/REPO@sha256:…`` — one pinned build, linked without a version.

Credentials (``{"username": …, "password": …}``) are stored like webhook secrets and never
returned: answers say ``password_set``. A source that moves to another registry host
forgets the stored credentials unless new ones are given (they are never sent to a host
they were not given for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wasmprof.errors import UsageError
from wasmprof.oci.auth import Credentials
from wasmprof.oci.errors import RegistryError
from wasmprof.oci.reference import Reference, check_tag, parse_reference
from wasmprof.store.db import Database, Tx, now

VERSION_PLACEHOLDER = "{version}"
#: Longest text before and after ``{version}`` in a tag template (the tag stays ≤ 128).
TEMPLATE_PREFIX, TEMPLATE_SUFFIX = 63, 64
MAX_URL = 1024
BODY_KEYS = {"url", "credentials", "plain_http"}


@dataclass(frozen=True, slots=True)
class Target:
    """What to pull for a version: ``version`` is the link version ('' = none);
    ``reference`` None means it cannot be pulled, ``reason`` says why."""

    version: str
    reference: Reference | None
    reason: str | None = None


@dataclass(slots=True)
class PluginSource:
    plugin: str
    url: str
    plain_http: bool = False
    username: str | None = None
    secret: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def sample(self) -> Reference:
        """The URL parsed with a placeholder version (host and repository are fixed)."""
        return parse_reference(self.url.replace(VERSION_PLACEHOLDER, "0"), source="url")

    @property
    def templated(self) -> bool:
        return VERSION_PLACEHOLDER in self.url

    @property
    def fixed(self) -> bool:
        """One build for the plugin (a fixed tag or a digest), not one per version."""
        ref = self.sample
        return not self.templated and bool(ref.tag or ref.digest)

    def target(self, version: str | None) -> Target:
        ref = self.sample
        if ref.digest and not self.templated:
            return Target("", ref)
        if ref.tag and not self.templated:
            return Target(ref.tag, ref)
        if not version:
            return Target("", None, "the crash or profile has no version and the source URL "
                                    "has no tag: post with version=V or put a tag (or "
                                    "{version}) in the source URL")
        tag = version.replace("+", "_")
        if self.templated:
            tag = self.url.rsplit(":", 1)[-1].replace(VERSION_PLACEHOLDER, tag)
        try:
            return Target(version, ref.with_tag(check_tag(tag, source=f"version {version!r}")))
        except RegistryError as e:
            return Target(version, None, f"version {version!r} does not make an OCI tag: {e}")

    def credentials(self) -> Credentials | None:
        if self.username is None and self.secret is None:
            return None
        return Credentials(username=self.username or "", password=self.secret or "")

    def to_dict(self, *, admin: bool) -> dict[str, Any]:
        """Never the secret; the username only for admins."""
        has = self.username is not None or self.secret is not None
        creds = ({"username": self.username, "password_set": self.secret is not None}
                 if admin and has else None)
        return {"plugin": self.plugin, "url": self.url, "plain_http": self.plain_http,
                "has_credentials": has, "credentials": creds, "fixed": self.fixed,
                "created_at": self.created_at, "updated_at": self.updated_at}


def _text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or any(
            ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"bad {what}", source=what,
                         expected=f"1 to {limit} printable characters",
                         found=repr(value)[:60] if not isinstance(value, str) else
                         f"{len(value)} characters")
    return value


def source_from_body(plugin: str, body: Any, existing: PluginSource | None) -> PluginSource:
    """Validate a ``PUT /plugins/{name}/source`` body into a source (UsageError → 400)."""
    if not isinstance(body, dict):
        raise UsageError("expected a JSON object", source="body",
                         expected='{"url": "oci://HOST/REPO[:TAG]", "credentials"?: '
                                  '{"username", "password"}, "plain_http"?: bool}')
    extra = sorted(set(body) - BODY_KEYS)
    if extra:
        raise UsageError("unknown field", source=f"body.{extra[0]}",
                         expected=", ".join(sorted(BODY_KEYS)))
    url = _text(body.get("url"), "url", MAX_URL)
    last = url.rsplit("/", 1)[-1]
    if url.count(VERSION_PLACEHOLDER) > 1 or (VERSION_PLACEHOLDER in url and (
            ":" not in last or VERSION_PLACEHOLDER not in last.rsplit(":", 1)[1])):
        raise UsageError("{version} may appear once, in the tag", source="url",
                         expected="oci://HOST/REPO:prefix{version}suffix", found=url[:80])
    if VERSION_PLACEHOLDER in url:
        prefix, suffix = last.rsplit(":", 1)[1].split(VERSION_PLACEHOLDER)
        if len(prefix) > TEMPLATE_PREFIX or len(suffix) > TEMPLATE_SUFFIX:
            raise UsageError("tag template too long", source="url",
                             expected=f"at most {TEMPLATE_PREFIX} characters before "
                                      f"{{version}} and {TEMPLATE_SUFFIX} after", found=url[:80])
    plain = body.get("plain_http", False)
    if not isinstance(plain, bool):
        raise UsageError("plain_http must be true or false", source="plain_http")
    src = PluginSource(plugin=plugin, url=url, plain_http=plain)
    ref = src.sample                       # validates the URL (RegistryError → 400)
    if src.templated and ref.digest:
        raise UsageError("a {version} template cannot be pinned by digest", source="url")
    creds = body.get("credentials", ...)
    if creds is ...:                       # omitted: keep what is stored, for the same host
        if existing is not None and existing.sample.registry == ref.registry:
            src.username, src.secret = existing.username, existing.secret
    elif creds is not None:
        if not isinstance(creds, dict) or set(creds) - {"username", "password"}:
            raise UsageError("credentials must be {\"username\": …, \"password\": …} or null",
                             source="credentials")
        src.username = _text(creds.get("username"), "credentials.username", 256)
        src.secret = _text(creds.get("password"), "credentials.password", 8192)
    return src


def _row(r: dict[str, Any]) -> PluginSource:
    return PluginSource(plugin=r["plugin"], url=r["url"], plain_http=bool(r["plain_http"]),
                        username=r["username"], secret=r["secret"], created_at=r["created_at"],
                        updated_at=r["updated_at"])


def get_source(db: Database, plugin: str) -> PluginSource | None:
    with db.read() as tx:
        r = tx.one("SELECT * FROM plugin_sources WHERE plugin = ?", (plugin,))
    return _row(r) if r else None


def list_sources(db: Database) -> list[PluginSource]:
    with db.read() as tx:
        return [_row(r) for r in tx.all("SELECT * FROM plugin_sources ORDER BY plugin")]


def put_source(tx: Tx, src: PluginSource) -> PluginSource:
    t = now()
    tx.execute("INSERT INTO plugins (name, runtime, updated_at) VALUES (?, NULL, ?) "
               "ON CONFLICT (name) DO NOTHING", (src.plugin, t))
    tx.execute("INSERT INTO plugin_sources (plugin, url, plain_http, username, secret, created_at, "
               "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plugin) DO UPDATE SET "
               "url = excluded.url, plain_http = excluded.plain_http, username = excluded.username, "
               "secret = excluded.secret, updated_at = excluded.updated_at",
               (src.plugin, src.url, int(src.plain_http), src.username, src.secret, t, t))
    r = tx.one("SELECT * FROM plugin_sources WHERE plugin = ?", (src.plugin,))
    assert r is not None
    return _row(r)


def delete_source(tx: Tx, plugin: str) -> bool:
    return tx.one("DELETE FROM plugin_sources WHERE plugin = ? RETURNING plugin",
                  (plugin,)) is not None

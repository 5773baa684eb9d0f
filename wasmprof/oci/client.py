"""A small client of the OCI distribution API (``/v2/<repo>/manifests|blobs/<ref>``) on httpx.

Contract:

- TLS is verified (httpx's defaults) unless ``plain_http`` is set for a local registry;
  HTTPS is never downgraded to HTTP by a redirect or a token realm.
- Authentication follows the registry: anonymous first; on 401 the ``WWW-Authenticate``
  challenge decides — ``Basic`` (credentials sent to the registry) or ``Bearer`` (a token
  fetched from the realm with the credentials, if any, for ``repository:<repo>:pull``;
  cached until it expires). Authorization is never sent to another host on a redirect.
- Everything read is capped before it is read (manifests: 4 MiB; blobs: the caller's
  ``max_bytes``, checked against the descriptor size first, then while streaming) and
  verified: a manifest's sha256 against the digest asked for and the registry's
  ``Docker-Content-Digest``; a blob against its descriptor's digest and size.
- Every failure is a :class:`~wasmprof.oci.errors.RegistryError` with a ``kind``.
- Nothing fetched is executed, unpacked to disk or trusted beyond its digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from wasmprof import __version__
from wasmprof.alerts.retry import parse_retry_after
from wasmprof.oci.auth import Credentials, TokenCache, parse_challenges
from wasmprof.oci.errors import RegistryError, json_object
from wasmprof.oci.reference import DIGEST_RE, Reference

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_MANIFEST_BYTES = 4 << 20
MAX_REDIRECTS = 5
USER_AGENT = f"wasmprof/{__version__}"


def _clean(text: Any, limit: int = 200) -> str:
    """Registry-provided text for a message: printable, bounded."""
    s = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return s[:limit] + ("…" if len(s) > limit else "")


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor (``mediaType``, ``digest``, ``size``, …) from a manifest."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, d: Any, where: str) -> "Descriptor":
        if not isinstance(d, dict):
            raise RegistryError("descriptor is not an object", kind="bad-manifest", source=where)
        mt, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
        if not isinstance(mt, str) or not mt or len(mt) > 255:
            raise RegistryError("descriptor without mediaType", kind="bad-manifest", source=where)
        if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
            raise RegistryError("descriptor with a bad digest", kind="bad-manifest", source=where,
                                expected="sha256:<64 hex>", found=_clean(digest, 80))
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise RegistryError("descriptor with a bad size", kind="bad-manifest", source=where,
                                expected="a non-negative integer", found=_clean(size, 40))
        ann = d.get("annotations") if isinstance(d.get("annotations"), dict) else {}
        plat = d.get("platform") if isinstance(d.get("platform"), dict) else None
        return cls(mt, digest, size, {str(k): str(v) for k, v in ann.items()}, plat)

    @property
    def title(self) -> str | None:
        return self.annotations.get("org.opencontainers.image.title")

    def to_dict(self) -> dict[str, Any]:
        return {"media_type": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class Manifest:
    """A fetched manifest or index: its bytes, verified digest and parsed body."""

    reference: Reference        # the reference it was fetched by, with ``digest`` set
    media_type: str
    digest: str
    raw: bytes
    body: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def where(self) -> str:
        return str(self.reference)

    def descriptors(self, key: str) -> list[Descriptor]:
        items = self.body.get(key)
        if items is None:
            return []
        if not isinstance(items, list):
            raise RegistryError(f"manifest field {key!r} is not a list", kind="bad-manifest",
                                source=self.where)
        return [Descriptor.from_json(d, f"{self.where}: {key}[{i}]") for i, d in enumerate(items)]

    @property
    def config(self) -> Descriptor | None:
        c = self.body.get("config")
        return Descriptor.from_json(c, f"{self.where}: config") if c is not None else None


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class RegistryClient:
    """One registry (``host[:port]``), one set of credentials. Use as a context manager."""

    def __init__(self, registry: str, *, credentials: Credentials | None = None,
                 plain_http: bool = False, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None,
                 tokens: TokenCache | None = None) -> None:
        self.registry = registry
        self.api_host = Reference(registry, "x").api_host
        self.credentials = credentials or Credentials()
        self.plain_http = plain_http
        self.scheme = "http" if plain_http else "https"
        self.base = f"{self.scheme}://{self.api_host}"
        self.timeout = timeout
        self.tokens = tokens or TokenCache()
        self._auth: dict[str, str] = {}         # repository -> Authorization header value
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                                  transport=transport, headers={"User-Agent": USER_AGENT})

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport ----------------------------------------------------------------------
    def _do(self, method: str, url: str, headers: dict[str, str], *, stream: bool,
            data: dict[str, str] | None = None) -> httpx.Response:
        return send(self._http, method, url, headers, stream=stream, data=data,
                    timeout=self.timeout, plain_http=self.plain_http)

    def _send(self, method: str, url: str, repository: str, *, accept: str | None = None,
              stream: bool = False) -> httpx.Response:
        """Request with the registry's auth flow and (manual, checked) redirects; a
        non-2xx final answer raises."""
        headers = {"Accept": accept} if accept else {}
        auth = self._auth.get(repository)
        if auth:
            headers["Authorization"] = auth
        resp = self._do(method, url, headers, stream=stream)
        if resp.status_code == 401:
            resp.close()
            header = self._authorize(resp, repository)
            headers["Authorization"] = header
            resp = self._do(method, url, headers, stream=stream)
            if resp.status_code == 401:
                resp.close()
                who = "the credentials given" if not self.credentials.empty else "anonymous access"
                raise RegistryError(f"registry refused {who} (HTTP 401)", kind="unauthorized",
                                    source=_where(url), status=401)
            self._auth[repository] = header
        origin = urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS):
            if resp.status_code not in (301, 302, 303, 307, 308):
                break
            location = resp.headers.get("location")
            resp.close()
            if not location:
                raise RegistryError("redirect without Location", kind="server-error",
                                    source=_where(url), status=resp.status_code)
            url = urljoin(url, location)
            target = urlsplit(url)
            if target.scheme not in ("http", "https") or (
                    target.scheme == "http" and not self.plain_http):
                raise RegistryError("registry redirected to a non-HTTPS URL", kind="tls",
                                    source=_where(url))
            hop = {k: v for k, v in headers.items()
                   if k != "Authorization" or target.netloc == origin}
            resp = self._do("GET" if method == "HEAD" else method, url, hop, stream=stream)
        if 200 <= resp.status_code < 300:
            return resp
        raise self._status_error(resp, url)

    def _status_error(self, resp: httpx.Response, url: str) -> RegistryError:
        status = resp.status_code
        detail = ""
        try:
            body = resp.read()[:65536] if not resp.is_closed else b""
            errs = json.loads(body).get("errors") if body else None
            if isinstance(errs, list) and errs and isinstance(errs[0], dict):
                detail = f": {_clean(errs[0].get('code'), 40)} {_clean(errs[0].get('message'), 160)}"
        except (ValueError, AttributeError, httpx.HTTPError):
            pass
        finally:
            resp.close()
        where = _where(url)
        if status == 401:
            return RegistryError(f"HTTP 401{detail}", kind="unauthorized", source=where, status=status)
        if status == 403:
            return RegistryError(f"access denied (HTTP 403){detail}", kind="denied", source=where,
                                 status=status)
        if status == 404:
            return RegistryError(f"not found (HTTP 404){detail}", kind="not-found", source=where,
                                 status=status)
        if status == 429:
            return RegistryError(f"rate limited (HTTP 429){detail}", kind="rate-limited",
                                 source=where, status=status,
                                 retry_after=parse_retry_after(resp.headers.get("retry-after")))
        return RegistryError(f"unexpected answer HTTP {status}{detail}", kind="server-error",
                             source=where, status=status,
                             retry_after=parse_retry_after(resp.headers.get("retry-after")))

    # -- auth ---------------------------------------------------------------------------
    def _authorize(self, resp: httpx.Response, repository: str) -> str:
        """The Authorization header answering a 401's challenge."""
        challenges = parse_challenges(", ".join(resp.headers.get_list("www-authenticate")))
        where = _where(str(resp.request.url))
        creds = self.credentials
        for scheme, params in challenges:
            if scheme == "bearer" and params.get("realm"):
                if creds.registry_token:
                    return f"Bearer {creds.registry_token}"
                return f"Bearer {self._token(params, repository)}"
        for scheme, _params in challenges:
            if scheme == "basic":
                if creds.basic is None:
                    raise RegistryError("registry wants a username and password (HTTP 401)",
                                        kind="unauthorized", source=where, status=401,
                                        expected="--username with --password-stdin, a Docker "
                                                 "config.json, or source credentials")
                return creds.basic_header()
        raise RegistryError("registry answered 401 without a challenge wasmprof understands",
                            kind="unauthorized", source=where, status=401,
                            found=_clean(resp.headers.get("www-authenticate", "none"), 120))

    def _token(self, params: dict[str, str], repository: str) -> str:
        realm = params["realm"]
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc or (
                parts.scheme == "http" and not self.plain_http):
            raise RegistryError("token realm is not an HTTPS URL", kind="unauthorized",
                                source=self.registry, found=_clean(realm, 120))
        service = params.get("service", "")
        scope = f"repository:{repository}:pull"
        key = (realm, service, scope)
        hit = self.tokens.get(key)
        if hit:
            return hit
        creds = self.credentials
        query = {"scope": scope, **({"service": service} if service else {})}
        if creds.identity_token:                   # OAuth2 refresh-token grant (docker login)
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "wasmprof", **query}
            resp = self._do("POST", realm, {}, stream=False, data=form)
        else:
            headers = {}
            if creds.basic:
                headers["Authorization"] = creds.basic_header()
            url = str(httpx.URL(realm, params=query))
            resp = self._do("GET", url, headers, stream=False)
        if resp.status_code in (401, 403):
            raise RegistryError(f"token service refused "
                                f"{'the credentials' if not creds.empty else 'anonymous access'} "
                                f"(HTTP {resp.status_code})", kind="unauthorized",
                                source=realm, status=resp.status_code)
        if resp.status_code != 200:
            raise self._status_error(resp, realm)
        try:
            body = json.loads(resp.content[:1 << 20])
            token = body.get("token") or body.get("access_token")
            expires = float(body.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token, expires = None, 0.0
        if not isinstance(token, str) or not token or len(token) > 65536:
            raise RegistryError("token service answered without a token", kind="unauthorized",
                                source=realm)
        self.tokens.put(key, token, expires)
        return token

    # -- API ----------------------------------------------------------------------------
    def manifest(self, ref: Reference, *, max_bytes: int = MAX_MANIFEST_BYTES) -> Manifest:
        """GET the manifest/index ``ref`` names; verified, parsed."""
        url = f"{self.base}/v2/{ref.repository}/manifests/{ref.manifest_ref}"
        resp = self._send("GET", url, ref.repository, accept=", ".join(MANIFEST_TYPES),
                          stream=True)
        try:
            raw = read_capped(resp, max_bytes, str(ref), what="manifest")
        finally:
            resp.close()
        algo = (ref.digest or "sha256:").split(":", 1)[0]
        computed = digest_of(raw, algo)
        if ref.digest and computed != ref.digest:
            raise RegistryError("manifest does not match the digest asked for",
                                kind="digest-mismatch", source=str(ref), expected=ref.digest,
                                found=computed)
        header = resp.headers.get("docker-content-digest")
        if header and header.startswith(f"{algo}:") and header != computed:
            raise RegistryError("manifest does not match the registry's Docker-Content-Digest",
                                kind="digest-mismatch", source=str(ref), expected=header,
                                found=computed)
        body = json_object(raw, what="manifest", kind="bad-manifest", source=str(ref))
        if body.get("schemaVersion") != 2:
            raise RegistryError("unsupported manifest schema (Docker schema 1 is deprecated)",
                                kind="bad-manifest", source=str(ref), expected="schemaVersion 2",
                                found=_clean(body.get("schemaVersion"), 20))
        media = body.get("mediaType") or resp.headers.get("content-type", "").split(";")[0].strip()
        if media not in MANIFEST_TYPES:
            media = OCI_INDEX if "manifests" in body else OCI_MANIFEST if "layers" in body else media
        if media not in MANIFEST_TYPES:
            raise RegistryError("not an image manifest or index", kind="bad-manifest",
                                source=str(ref), expected=", ".join(MANIFEST_TYPES),
                                found=_clean(media, 80))
        return Manifest(ref.with_digest(computed), media, computed, raw, body)

    def blob(self, repository: str, desc: Descriptor, *, max_bytes: int,
             progress: Callable[[int], None] | None = None) -> bytes:
        """GET a blob, refusing it when over ``max_bytes``; verified against ``desc``."""
        where = f"{self.registry}/{repository}@{desc.digest}"
        if desc.size > max_bytes:
            raise RegistryError("layer is over the size cap", kind="too-large", source=where,
                                expected=f"at most {max_bytes} bytes", found=f"{desc.size} bytes")
        url = f"{self.base}/v2/{repository}/blobs/{desc.digest}"
        resp = self._send("GET", url, repository, stream=True)
        try:
            data = read_capped(resp, min(max_bytes, desc.size), where, what="layer",
                              progress=progress, exact=desc.size)
        finally:
            resp.close()
        computed = digest_of(data, desc.digest.split(":", 1)[0])
        if computed != desc.digest:
            raise RegistryError("layer does not match its digest", kind="digest-mismatch",
                                source=where, expected=desc.digest, found=computed)
        return data


def _where(url: str) -> str:
    return url.split("?", 1)[0]


def send(http: httpx.Client, method: str, url: str, headers: dict[str, str], *, stream: bool,
         timeout: float, plain_http: bool, data: dict[str, str] | None = None) -> httpx.Response:
    """One HTTP exchange; transport failures (refused, DNS, timeout, TLS) become
    RegistryErrors (``unreachable`` / ``tls``)."""
    try:
        req = http.build_request(method, url, headers=headers, data=data)
        return http.send(req, stream=stream)
    except httpx.TimeoutException:
        raise RegistryError(f"no answer within {timeout:g} s", kind="unreachable",
                            source=_where(url)) from None
    except (httpx.HTTPError, ssl.SSLError, OSError) as e:
        text = str(e) or type(e).__name__
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ssl.SSLError) or "SSL" in text or "certificate" in text:
            hint = "" if plain_http else "; if it speaks plain HTTP (a local registry), use --plain-http"
            raise RegistryError(f"TLS failed: {_clean(text)}{hint}", kind="tls",
                                source=_where(url)) from None
        verb = "cannot connect" if isinstance(e, httpx.ConnectError) else "connection failed"
        raise RegistryError(f"{verb}: {_clean(text)}", kind="unreachable",
                            source=_where(url)) from None


def read_capped(resp: httpx.Response, cap: int, where: str, *, what: str,
                progress: Callable[[int], None] | None = None, exact: int | None = None) -> bytes:
    """The body of a streamed response, at most ``cap`` bytes (``exact``: the size the
    descriptor promised; more or fewer is ``digest-mismatch``)."""
    length = resp.headers.get("content-length")
    if length and length.isdigit() and int(length) > cap:
        kind = "digest-mismatch" if exact is not None and int(length) != exact else "too-large"
        raise RegistryError(f"{what} is larger than allowed", kind=kind, source=where,
                            expected=f"at most {cap} bytes", found=f"{length} bytes")
    buf = io.BytesIO()        # getvalue() hands its buffer over: no second copy
    size = 0
    try:
        for chunk in resp.iter_bytes(1 << 16):
            buf.write(chunk)
            size += len(chunk)
            if size > cap:
                kind = "digest-mismatch" if exact is not None and size > exact else "too-large"
                raise RegistryError(f"{what} is larger than allowed", kind=kind, source=where,
                                    expected=f"at most {cap} bytes",
                                    found=f"more than {cap} bytes")
            if progress is not None:
                progress(size)
    except httpx.HTTPError as e:
        raise RegistryError(f"{what} download failed: {_clean(e)}", kind="unreachable",
                            source=where) from None
    if exact is not None and size != exact:
        raise RegistryError(f"{what} is shorter than its descriptor says",
                            kind="digest-mismatch", source=where,
                            expected=f"{exact} bytes", found=f"{size} bytes")
    return buf.getvalue()

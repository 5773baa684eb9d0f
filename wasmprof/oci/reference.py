"""Image references as gateways write them: ``oci://HOST[:PORT]/REPO[:TAG][@sha256:DIGEST]``.

The grammar is the distribution spec's (repository components ``[a-z0-9]+([._-]|__|-+)…``,
tags ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``, digests ``sha256:<64 hex>`` or
``sha512:<128 hex>``). Like Docker, a first component without ``.`` or ``:`` that is not
``localhost`` is a Docker Hub repository (``oci://envoyproxy/x`` is
``docker.io/envoyproxy/x``; a single component gets ``library/``); Docker Hub's API host is
``registry-1.docker.io``. The ``oci://`` prefix is optional. A reference without tag or
digest means ``latest`` only where a caller says so (:meth:`Reference.or_latest`).

No length bound on the repository beyond the reference's own (:data:`MAX_REFERENCE`): the
255 characters many clients impose on host + name is a convention, not the spec's grammar,
and no pattern can say it; a registry that refuses a longer name answers ``NAME_INVALID``,
which the pull reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from wasmprof.oci.errors import RegistryError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
                      r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
MAX_REFERENCE = 1024

# -- the grammar as one pattern (ECMA and Python regex alike), for the OpenAPI of the routes
# that take a reference: every string it matches parses, and every reference written without
# surrounding spaces that parses matches it.
_P_COMPONENT = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
_P_COMPONENT_NODOT = r"[a-z0-9]+((_|__|-+)[a-z0-9]+)*"     # a Docker Hub first component
_P_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_P_PORT = r":[0-9]{1,5}"
#: A first component that names a registry: has a ``.`` or a port, or is a bracketed address.
_P_REGISTRY = (rf"({_P_LABEL}(\.{_P_LABEL})+({_P_PORT})?|{_P_LABEL}{_P_PORT}"
               rf"|\[[0-9A-Fa-f:.]+\]({_P_PORT})?)")
P_NAME = rf"(({_P_REGISTRY}|{_P_COMPONENT_NODOT})(/{_P_COMPONENT})+|{_P_COMPONENT})"
P_SCHEME = r"([oO][cC][iI]://)?"
P_TAG = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
P_DIGEST = r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})"
#: ``[oci://]NAME[:TAG][@DIGEST]``.
REFERENCE_PATTERN = rf"^{P_SCHEME}{P_NAME}(:{P_TAG})?(@{P_DIGEST})?$"
DIGEST_PATTERN = rf"^{P_DIGEST}$"


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. ``registry`` is ``host[:port]`` as written (``docker.io`` for
    Docker Hub); ``tag`` and ``digest`` may both be set (the digest wins for pulling)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Where the distribution API answers (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def manifest_ref(self) -> str:
        """What to put after ``/manifests/``: the digest, else the tag."""
        if self.digest:
            return self.digest
        if self.tag:
            return self.tag
        raise RegistryError("reference has neither tag nor digest", kind="bad-reference",
                            source=str(self), expected="REPO:TAG or REPO@sha256:…")

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def with_digest(self, digest: str) -> "Reference":
        return replace(self, digest=digest)

    def with_tag(self, tag: str) -> "Reference":
        check_tag(tag, source=self.name)
        return replace(self, tag=tag, digest=None)

    def or_latest(self) -> "Reference":
        return self if (self.tag or self.digest) else replace(self, tag="latest")

    def __str__(self) -> str:
        text = f"oci://{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def check_tag(tag: str, *, source: str = "tag") -> str:
    if not TAG_RE.fullmatch(tag or ""):
        raise RegistryError("not a valid OCI tag", kind="bad-reference", source=source,
                            expected="[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", found=repr(tag[:80]))
    return tag


def parse_reference(text: str, *, source: str = "reference") -> Reference:
    """Parse ``[oci://]HOST/REPO[:TAG][@DIGEST]``; :class:`RegistryError` (``bad-reference``)
    naming what is wrong otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise RegistryError("empty image reference", kind="bad-reference", source=source,
                            expected="oci://HOST/REPO:TAG or oci://HOST/REPO@sha256:DIGEST")
    raw = text.strip()
    if len(raw) > MAX_REFERENCE:
        raise RegistryError("image reference too long", kind="bad-reference", source=source,
                            expected=f"at most {MAX_REFERENCE} characters",
                            found=f"{len(raw)} characters")
    rest = raw
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme.lower() != "oci":
            raise RegistryError("not an OCI reference", kind="bad-reference", source=source,
                                expected="oci://HOST/REPO[:TAG][@sha256:DIGEST]",
                                found=repr(raw[:80]))
    digest = None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
        if not DIGEST_RE.fullmatch(digest):
            raise RegistryError("bad digest", kind="bad-reference", source=source,
                                expected="sha256:<64 lowercase hex> or sha512:<128 hex>",
                                found=repr(digest[:80]))
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        check_tag(tag, source=source)
    parts = rest.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                           or parts[0].startswith("[")):
        registry, repo_parts = parts[0], parts[1:]
    else:
        registry, repo_parts = DOCKER_HUB, parts
        if len(repo_parts) == 1:
            repo_parts = ["library", *repo_parts]
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if not _HOST_RE.fullmatch(registry):
        raise RegistryError("bad registry host", kind="bad-reference", source=source,
                            expected="HOST[:PORT]", found=repr(registry[:80]))
    repository = "/".join(repo_parts)
    if not REPOSITORY_RE.fullmatch(repository):
        raise RegistryError("bad repository name", kind="bad-reference", source=source,
                            expected="lowercase path components [a-z0-9] joined by . _ __ - "
                                     "and /", found=repr(repository[:80]))
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)

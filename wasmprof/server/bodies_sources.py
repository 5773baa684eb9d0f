"""Request bodies and documented answers of the module-source routes
(:mod:`wasmprof.server.routes_sources`): plugin sources, pulls, module origins.

The reference patterns are the grammar of :mod:`wasmprof.oci.reference` (one spelling,
there); :func:`wasmprof.sources.plugin_sources.source_from_body` still checks what it is
given (registry normalization, the ``{version}`` template's sample parse).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from wasmprof.oci.reference import (DIGEST_PATTERN, MAX_REFERENCE, P_DIGEST, P_NAME, P_SCHEME,
                                    P_TAG, REFERENCE_PATTERN)
from wasmprof.server import bodies
from wasmprof.server.bodies import Bool, Text
from wasmprof.server.contract import PRINTABLE, Body
from wasmprof.sources.plugin_sources import MAX_URL, TEMPLATE_PREFIX, TEMPLATE_SUFFIX
from wasmprof.sources import pulls as pull_states

#: A tag with ``{version}`` in it (the version's tag replaces it; ``+`` becomes ``_``).
P_TAG_TEMPLATE = (rf"([A-Za-z0-9_][A-Za-z0-9._-]{{0,{TEMPLATE_PREFIX - 1}}})?\{{version\}}"
                  rf"[A-Za-z0-9._-]{{0,{TEMPLATE_SUFFIX}}}")
#: A plugin source: a reference, or one whose tag is a ``{version}`` template (no digest then).
SOURCE_URL_PATTERN = (rf"^{P_SCHEME}{P_NAME}((:{P_TAG})?(@{P_DIGEST})?"
                      rf"|:{P_TAG_TEMPLATE})$")


class CredentialsBody(Body):
    """Registry credentials of a plugin source (stored; the password is never answered)."""

    username: Text = Field(min_length=1, max_length=256, pattern=PRINTABLE)
    password: Text = Field(min_length=1, max_length=8192, pattern=PRINTABLE)


class SourceBody(Body):
    """Where a plugin's modules are pulled from. ``credentials`` left out: the stored ones
    are kept while the registry host stays; ``null``: none."""

    url: Text = Field(max_length=MAX_URL, pattern=SOURCE_URL_PATTERN,
                      description="oci://HOST/REPO (the version is the tag), "
                                  "oci://HOST/REPO:v{version}, oci://HOST/REPO:TAG or "
                                  "oci://HOST/REPO@sha256:DIGEST")
    credentials: CredentialsBody | None = None
    plain_http: Bool = False


class PullBody(Body):
    """Which version to pull again (left out: every failed or waiting pull)."""

    version: Text | None = Field(None, max_length=200, pattern=PRINTABLE)


_DIGEST = {"pattern": DIGEST_PATTERN, "max_length": 135}


class OriginBody(Body):
    """The image a stored module was pulled from (what ``wasmprof module pull --server``
    sends after its upload)."""

    reference: Text = Field(max_length=MAX_REFERENCE, pattern=REFERENCE_PATTERN)
    digest: Text = Field(**_DIGEST, description="the module's digest")
    image_digest: Text | None = Field(None, **_DIGEST)
    layer_digest: Text | None = Field(None, **_DIGEST)
    variant: Literal["artifact", "compat"] | None = None
    filename: Text | None = Field(None, max_length=200, pattern=PRINTABLE)


def fields(body: Body) -> dict[str, Any]:
    """The members a client sent, as the sources service reads a body."""
    return body.model_dump(exclude_unset=True)


# -- answers --------------------------------------------------------------------------------

_obj = bodies._obj
SOURCE_SCHEMA = _obj(["plugin", "url", "plain_http", "has_credentials", "status", "pulls"],
                     plugin=bodies.STR, url=bodies.STR, plain_http={"type": "boolean"},
                     has_credentials={"type": "boolean"},
                     status=_obj(["state", "summary"],
                                 state={"type": "string",
                                        "enum": ["idle", *pull_states.STATES]},
                                 summary=bodies.STR,
                                 error_kind={"type": ["string", "null"]},
                                 version={"type": ["string", "null"]}),
                     pulls={"type": "array"})
ORIGINS_SCHEMA = _obj(["module", "origins"], module=bodies.INT,
                      origins={"type": "array", "items": _obj(["ref_url", "digest"])})
SOURCE_OPS = {"GetSource": "get_plugin_source", "DeleteSource": "delete_plugin_source",
              "PullSource": "pull_plugin_source"}
#: From a plugin source just set: the same plugin's source operations.
SOURCE_LINKS = bodies._links(SOURCE_OPS, "name", "$request.path.name")
#: From the plugin list: the first plugin's source operations.
PLUGIN_LIST_LINKS = bodies._links({**{f"{k}OfListed": v for k, v in SOURCE_OPS.items()},
                                   "SetSourceOfListed": "put_plugin_source"},
                                  "name", "$response.body#/plugins/0/name")

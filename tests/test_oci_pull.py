"""The OCI client against real registries (Debian's docker-registry on loopback): both image
variants, indexes, digests, size caps, basic and bearer auth, and each way it can fail.
Images are pushed with oras (artifact) or built here and pushed blob by blob (compat)."""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile

import pytest

from oci_registry import (OCI_LAYER_GZIP, TamperProxy, manifest_size, padded_module, push_artifact,
                          push_image, push_index, tar_layer)
from oci_server import module_cli as _cli
from wasmprof.oci.auth import Credentials, docker_config_credentials, parse_challenges
from wasmprof.oci.errors import RegistryError
from wasmprof.oci.image import scan_tar_layer
from wasmprof.oci.pull import pull
from wasmprof.oci.reference import parse_reference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wasm(data_dir) -> bytes:
    return (data_dir / "wasm" / "crash_trap.O2.wasm").read_bytes()


def _pull(reg, path: str, **kw):
    return pull(parse_reference(f"oci://{reg.host}/{path}"), plain_http=True, **kw)


def _fails(kind: str, fn, *a, **kw) -> RegistryError:
    with pytest.raises(RegistryError) as ei:
        fn(*a, **kw)
    assert ei.value.kind == kind, f"{ei.value.kind}: {ei.value}"
    return ei.value


# -- parsing ------------------------------------------------------------------------------------
def test_references():
    r = parse_reference("oci://registry.example.com:5000/ns/plugin:1.0.0")
    assert (r.registry, r.repository, r.tag, r.digest) == ("registry.example.com:5000", "ns/plugin",
                                                           "1.0.0", None)
    d = "sha256:" + "ab" * 32
    r = parse_reference(f"higress-registry.cn-hangzhou.cr.aliyuncs.com/plugins/key-auth:2.0@{d}")
    assert r.digest == d and r.tag == "2.0" and r.manifest_ref == d
    assert str(parse_reference("envoyproxy/wasm")) == "oci://docker.io/envoyproxy/wasm"
    hub = parse_reference("oci://nginx")
    assert hub.repository == "library/nginx" and hub.api_host == "registry-1.docker.io"
    assert parse_reference("localhost:5000/x").registry == "localhost:5000"
    assert parse_reference("[::1]:5000/a/b:t").registry == "[::1]:5000"
    for bad, what in (("https://reg.example.com/x:1", "not an OCI reference"),
                      ("oci://reg.example.com/UPPER:1", "repository"),
                      ("oci://reg.example.com/x:bad tag", "tag"),
                      ("oci://reg.example.com/x@sha256:abc", "digest"),
                      ("", "empty"), ("oci://reg.example.com/" + "a" * 2000, "too long")):
        e = _fails("bad-reference", parse_reference, bad)
        assert what in str(e)


def test_challenges():
    got = parse_challenges('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
                           'scope="repository:a/b:pull"')
    assert got == [("bearer", {"realm": "https://auth.example.com/token",
                               "service": "registry.example.com", "scope": "repository:a/b:pull"})]
    got = parse_challenges('Basic realm="x", Bearer realm="https://t/\\"q\\"", error="insufficient_scope"')
    assert [s for s, _ in got] == ["basic", "bearer"]
    assert got[1][1] == {"realm": 'https://t/"q"', "error": "insufficient_scope"}
    assert parse_challenges("") == [] and parse_challenges("Negotiate") == [("negotiate", {})]


def test_docker_config(tmp_path):
    cfg = tmp_path / "config.json"
    auth = base64.b64encode(b"alice:pa:ss").decode()
    cfg.write_text(json.dumps({"auths": {"https://reg.example.com": {"auth": auth},
                                         "other.example.com:5000": {"username": "bob", "password": "pw"},
                                         "tok.example.com": {"identitytoken": "refresh-me"}},
                               "credHelpers": {"ecr.example.com": "ecr-login"}}))
    c = docker_config_credentials("reg.example.com", cfg)
    assert (c.username, c.password) == ("alice", "pa:ss") and "pa:ss" not in repr(c)
    assert docker_config_credentials("other.example.com:5000", cfg).basic == ("bob", "pw")
    assert docker_config_credentials("tok.example.com", cfg).identity_token == "refresh-me"
    assert docker_config_credentials("none.example.com", cfg) is None
    e = _fails("unauthorized", docker_config_credentials, "ecr.example.com", cfg)
    assert "never runs programs" in str(e) and "docker-credential-ecr-login" in str(e)
    assert docker_config_credentials("x", tmp_path / "missing.json") is None
    cfg.write_text("{not json")
    _fails("unauthorized", docker_config_credentials, "reg.example.com", cfg)


# -- both variants, tags, digests, indexes -----------------------------------------------------
def test_artifact_by_tag_and_by_digest(oci, wasm):
    digest = push_artifact(oci.open, "t/artifact", "1.0", wasm)
    by_tag = _pull(oci.open, "t/artifact:1.0")
    assert by_tag.data == wasm and by_tag.resolved.variant == "artifact"
    assert by_tag.resolved.digest == digest and by_tag.filename == "plugin.wasm"
    assert by_tag.layer.media_type == "application/vnd.module.wasm.content.layer.v1+wasm"
    by_digest = _pull(oci.open, f"t/artifact@{digest}")
    assert by_digest.data == wasm and by_digest.resolved.digest == digest
    other = "sha256:" + "0" * 64
    e = _fails("not-found", _pull, oci.open, f"t/artifact@{other}")
    assert e.exit_code == 1 and "MANIFEST_UNKNOWN" in str(e)
    _fails("not-found", _pull, oci.open, "t/artifact:9.9")
    _fails("not-found", _pull, oci.open, "t/never-pushed:1.0")


@pytest.mark.parametrize("docker,compress", [(True, True), (False, True), (False, False)],
                         ids=["docker-gzip", "oci-gzip", "oci-plain-tar"])
def test_compat_image(oci, wasm, docker, compress):
    """FROM scratch + COPY main.wasm plugin.wasm: a tar layer holding plugin.wasm (and other
    layers that do not)."""
    repo = f"t/compat-{int(docker)}{int(compress)}"
    digest, _ = push_image(oci.open, repo, "1.0", [{"etc/motd": b"hello\n"}, {"plugin.wasm": wasm}],
                           docker=docker, compress=compress)
    got = _pull(oci.open, f"{repo}:1.0")
    assert got.data == wasm and got.resolved.variant == "compat" and got.filename == "plugin.wasm"
    assert got.resolved.digest == digest


def test_compat_image_with_one_other_wasm_file(oci, wasm):
    push_image(oci.open, "t/compat-main", "1.0", [{"app/main.wasm": wasm, "README": b"x"}])
    got = _pull(oci.open, "t/compat-main:1.0")
    assert got.data == wasm and got.filename == "app/main.wasm"
    assert any("only .wasm file" in n for n in got.notes)


def test_image_index_platforms(oci, wasm, data_dir):
    other = (data_dir / "wasm" / "fib.O2.strip-all.wasm").read_bytes()
    linux, n1 = push_image(oci.open, "t/index", "linux", [{"plugin.wasm": other}],
                           platform=("linux", "amd64"))
    wasi, n2 = push_image(oci.open, "t/index", "wasi", [{"plugin.wasm": wasm}])
    push_index(oci.open, "t/index", "multi", [(linux, n1, "linux", "amd64"), (wasi, n2, "wasi", "wasm")])
    got = _pull(oci.open, "t/index:multi")
    assert got.data == wasm and got.resolved.manifest.digest == wasi
    assert got.resolved.digest != wasi and "wasi/wasm" in got.resolved.notes[0]
    push_index(oci.open, "t/index", "only", [(linux, n1, "linux", "amd64")])
    got = _pull(oci.open, "t/index:only")
    assert got.data == other and "only platform" in got.resolved.notes[0]
    push_index(oci.open, "t/index", "two", [(linux, n1, "linux", "amd64"), (linux, n1, "linux", "arm64")])
    e = _fails("ambiguous-platform", _pull, oci.open, "t/index:two")
    assert "linux/amd64, linux/arm64" in str(e)


def test_image_without_wasm_layer(oci, data_dir):
    push_image(oci.open, "t/nowasm", "1.0", [{"etc/motd": b"hi\n", "bin/tool": b"\x7fELF"}])
    e = _fails("no-wasm-layer", _pull, oci.open, "t/nowasm:1.0")
    assert e.exit_code == 1 and "etc/motd" in str(e) and "plugin.wasm" in str(e)
    # an artifact whose layer is of another media type

    from oci_registry import _oras
    p = data_dir / "wasm" / "fib.O2.strip-all.wasm"
    resp = _oras(oci.open).push(target=f"{oci.open.host}/t/notwasm:1.0",
                                files=[f"{p}:application/vnd.example.thing"],
                                disable_path_validation=True, quiet=True)
    assert resp.status_code == 201
    e = _fails("no-wasm-layer", _pull, oci.open, "t/notwasm:1.0")
    assert "application/vnd.example.thing" in str(e)


# -- caps and corruption ----------------------------------------------------------------------
def test_size_caps(oci, wasm):
    push_artifact(oci.open, "t/big", "1.0", padded_module(wasm, 200_000))
    e = _fails("too-large", _pull, oci.open, "t/big:1.0", max_bytes=300_000)
    assert "over the size cap" in str(e) and "at most 300000 bytes" in str(e)
    assert len(_pull(oci.open, "t/big:1.0", max_bytes=400_000).data) > 300_000
    # a gzip bomb: 64 MiB of zeros in a 64 KiB layer stops at the inflate cap
    bomb = tar_layer({"filler": bytes(64 << 20), "plugin.wasm": wasm})
    assert len(bomb) < 200_000
    e = _fails("too-large", scan_tar_layer, bomb, max_bytes=1 << 20, where="bomb")
    assert "inflates" in str(e)
    e = _fails("too-large", scan_tar_layer, tar_layer({"plugin.wasm": bytes(3 << 20)}),
               max_bytes=1 << 20, where="big member")
    assert "plugin.wasm" in str(e)
    _fails("bad-module", scan_tar_layer, gzip.compress(b"not a tar at all" * 100), max_bytes=1 << 20,
           where="junk")


def test_digest_mismatch_in_transit(oci, wasm):
    digest = push_artifact(oci.open, "t/tamper", "1.0", wasm)
    push_image(oci.open, "t/tamper-compat", "1.0", [{"plugin.wasm": wasm}])
    blobs = TamperProxy(oci.open, corrupt_blobs=True)
    manifests = TamperProxy(oci.open, corrupt_manifests=True)
    try:
        for path in ("t/tamper:1.0", "t/tamper-compat:1.0"):
            e = _fails("digest-mismatch", _pull, blobs, path)
            assert "layer does not match its digest" in str(e)
        e = _fails("digest-mismatch", _pull, manifests, "t/tamper:1.0")
        assert "Docker-Content-Digest" in str(e)
        e = _fails("digest-mismatch", _pull, manifests, f"t/tamper@{digest}")
        assert "digest asked for" in str(e)
    finally:
        blobs.close()
        manifests.close()


# -- auth -------------------------------------------------------------------------------------
def test_basic_auth(oci, wasm, tmp_path):
    push_artifact(oci.open, "t/private", "1.0", wasm)
    e = _fails("unauthorized", _pull, oci.basic, "t/private:1.0")
    assert "username and password" in str(e)
    _fails("unauthorized", _pull, oci.basic, "t/private:1.0",
           credentials=Credentials(oci.basic_user, "wrong"))
    got = _pull(oci.basic, "t/private:1.0",
                credentials=Credentials(oci.basic_user, oci.basic_password))
    assert got.data == wasm
    cfg = tmp_path / "config.json"
    auth = base64.b64encode(f"{oci.basic_user}:{oci.basic_password}".encode()).decode()
    cfg.write_text(json.dumps({"auths": {oci.basic.host: {"auth": auth}}}))
    assert _pull(oci.basic, "t/private:1.0",
                 credentials=docker_config_credentials(oci.basic.host, cfg)).data == wasm


def test_bearer_token_flow(oci, wasm):
    """The registry answers 401 with a Bearer challenge; the token comes from its realm."""
    push_artifact(oci.open, "t/bearer", "1.0", wasm)
    before = oci.tokens.issued
    got = _pull(oci.token, "t/bearer:1.0", credentials=Credentials(oci.token_user, oci.token_password))
    assert got.data == wasm and oci.tokens.issued == before + 1
    e = _fails("unauthorized", _pull, oci.token, "t/bearer:1.0")
    assert "token service refused anonymous access" in str(e)
    _fails("unauthorized", _pull, oci.token, "t/bearer:1.0",
           credentials=Credentials(oci.token_user, "wrong"))


def test_unreachable_and_tls(oci, wasm):
    from pg import free_port
    port = free_port()
    e = _fails("unreachable", pull, parse_reference(f"oci://127.0.0.1:{port}/t/x:1"), plain_http=True,
               timeout=5)
    assert "cannot connect" in str(e)
    push_artifact(oci.open, "t/tls", "1.0", wasm)
    e = _fails("tls", pull, parse_reference(f"oci://{oci.open.host}/t/tls:1.0"), timeout=5)
    assert "--plain-http" in str(e)


# -- the CLI ----------------------------------------------------------------------------------
def test_cli_pull(oci, wasm, tmp_path):
    digest, _ = push_image(oci.open, "t/cli", "3.1", [{"plugin.wasm": wasm}])
    out = tmp_path / "m.wasm"
    r = _cli("pull", f"oci://{oci.open.host}/t/cli:3.1", "--plain-http", "-o", str(out), "--json",
             real=True)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert out.read_bytes() == wasm and d["stored"] is None and d["version"] == "3.1"
    assert d["pulled"]["digest"] == digest and d["pulled"]["variant"] == "compat"
    assert d["module"]["dwarf"] is True
    # into a local store, linked; then by digest as another version
    data = tmp_path / "state"
    r = _cli("pull", f"oci://{oci.open.host}/t/cli:3.1", "--plain-http", "--plugin", "cli-plugin",
             "--data", str(data))
    assert r.returncode == 0, r.stderr
    assert "linked to cli-plugin 3.1" in r.stdout and "(new)" in r.stdout
    r = _cli("pull", f"oci://{oci.open.host}/t/cli@{digest}", "--plain-http", "--plugin",
             "cli-plugin", "--version", "3.1-hotfix", "--data", str(data), "--json")
    d = json.loads(r.stdout)
    assert d["stored"]["created"] is False
    assert {(p["plugin"], p["version"]) for p in d["stored"]["plugins"]} == {
        ("cli-plugin", "3.1"), ("cli-plugin", "3.1-hotfix")}
    # credentials from stdin; exit codes 1 (not found) and 2 (refused)
    push_artifact(oci.open, "t/cli-private", "1.0", wasm)
    ref = f"oci://{oci.basic.host}/t/cli-private:1.0"
    r = _cli("pull", ref, "--plain-http", "-o", str(out), "--username", oci.basic_user,
             "--password-stdin", stdin=oci.basic_password + "\n", real=True)
    assert r.returncode == 0, r.stderr
    r = _cli("pull", ref, "--plain-http", "-o", str(out))
    assert r.returncode == 2 and "username and password" in r.stderr and "Traceback" not in r.stderr
    r = _cli("pull", f"oci://{oci.open.host}/t/cli:0.0", "--plain-http", "-o", str(out))
    assert r.returncode == 1 and "not found" in r.stderr
    r = _cli("pull", "oci://Bad/Ref", "-o", str(out))
    assert r.returncode == 2 and "bad repository name" in r.stderr
    r = _cli("pull", ref, "--username", "u", "-o", str(out))
    assert r.returncode == 2 and "--password-stdin" in r.stderr


def test_tar_reader_ignores_whiteouts_and_nests(wasm):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in (("./.wh.plugin.wasm", b""), ("./a/b/plugin.wasm", wasm)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("plugin.wasm")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    found = scan_tar_layer(buf.getvalue(), max_bytes=1 << 20, where="t")
    assert found.plugin == ("a/b/plugin.wasm", wasm)


def test_layer_media_types_are_sniffed(oci, wasm):
    """A layer labelled gzip that is a plain tar still works (media types are not trusted)."""
    push_image(oci.open, "t/mislabelled", "1.0", [{"plugin.wasm": wasm}], compress=False,
               layer_media=OCI_LAYER_GZIP)
    assert _pull(oci.open, "t/mislabelled:1.0").data == wasm
    assert manifest_size(oci.open, "t/mislabelled", "1.0") > 0

"""Real OCI registries on loopback for the module-source tests, and ways to fill them.

- :class:`Registry` runs Debian's ``docker-registry`` (the CNCF distribution registry,
  ``/usr/bin/docker-registry serve config.yml``) on a free port. Instances may share one
  storage directory: the open one is pushed to, the others serve the same content behind
  ``htpasswd`` basic auth (the bcrypt line made with the ``bcrypt`` package) or behind
  token auth (the bearer flow: 401 + ``WWW-Authenticate: Bearer realm=…``; the realm is
  :class:`TokenServer`, which signs ES256 JWTs with an x5c certificate the registry trusts).
- Pushing: :func:`push_artifact` uses ``oras`` (the Wasm OCI artifact variant);
  :func:`push_image` builds a Docker/OCI image (config + tar layers, gzip or plain) and
  pushes the blobs with oras' ``upload_blob`` and the manifest with a plain HTTP PUT (no
  docker engine exists here); :func:`push_index` a multi-platform index.
- :class:`TamperProxy` forwards to a registry and corrupts what it is told to (blob bytes,
  manifest bodies): how a wrong digest reaches a client.
- :class:`StaticDir` is a plain ``http.server`` directory (the HTTP symbol source).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from pg import free_port

REGISTRY_BIN = Path("/usr/bin/docker-registry")
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """One ``docker-registry`` process. ``auth`` is None, ``("htpasswd", user, password)``
    or ``("token", TokenServer)``."""

    def __init__(self, storage: Path, *, auth: tuple | None = None, port: int | None = None) -> None:
        self.storage = Path(storage)
        self.auth = auth
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="wasmprof-registry-"))

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _config(self) -> str:
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
                 "storage:", "  filesystem:", f"    rootdirectory: {self.storage}",
                 "  delete:", "    enabled: true", "http:", f"  addr: 127.0.0.1:{self.port}",
                 "  secret: wasmprof-tests"]
        if self.auth and self.auth[0] == "htpasswd":
            import bcrypt
            _, user, password = self.auth
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.dir / "htpasswd").write_text(f"{user}:{hashed}\n")
            lines += ["auth:", "  htpasswd:", "    realm: wasmprof-tests",
                      f"    path: {self.dir / 'htpasswd'}"]
        elif self.auth and self.auth[0] == "token":
            ts: TokenServer = self.auth[1]
            lines += ["auth:", "  token:", f"    realm: {ts.url}/token", f"    service: {ts.service}",
                      f"    issuer: {ts.issuer}", f"    rootcertbundle: {ts.cert_path}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> "Registry":
        if not REGISTRY_BIN.exists():
            raise RuntimeError("docker-registry is not installed (bash scripts/bootstrap.sh test installs it)")
        cfg = self.dir / "config.yml"
        cfg.write_text(self._config())
        self._log = open(self.dir / "registry.log", "ab")
        self.proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(cfg)], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return (self.dir / "registry.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- pushing ---------------------------------------------------------------------------------
def _oras(reg: Registry):
    import oras.provider
    return oras.provider.Registry(hostname=reg.host, insecure=True)


def _upload(reg: Registry, repo: str, data: bytes, media_type: str) -> dict:
    """Upload one blob with oras' lower-level API; returns its descriptor."""
    desc = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(data)
    try:
        client = _oras(reg)
        container = client.get_container(f"{reg.host}/{repo}:unused")
        resp = client.upload_blob(f.name, container, desc)
        assert resp.status_code in (201, 202), resp.text
    finally:
        os.unlink(f.name)
    return desc


def put_manifest(reg: Registry, repo: str, ref: str, body: bytes, media_type: str) -> str:
    r = httpx.put(f"{reg.url}/v2/{repo}/manifests/{ref}", content=body,
                  headers={"Content-Type": media_type}, timeout=30)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def push_artifact(reg: Registry, repo: str, tag: str, data: bytes, *,
                  title: str = "plugin.wasm") -> str:
    """The Wasm OCI artifact variant, pushed with oras; returns the manifest digest."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / title
        path.write_bytes(data)
        cfg = Path(d) / "config.json"
        cfg.write_text("{}")
        cwd = os.getcwd()
        os.chdir(d)                       # oras names the layer after the relative path
        try:
            resp = _oras(reg).push(target=f"{reg.host}/{repo}:{tag}",
                                   files=[f"{title}:{WASM_LAYER}"],
                                   manifest_config=f"config.json:{WASM_CONFIG}",
                                   disable_path_validation=True, quiet=True)
        finally:
            os.chdir(cwd)
    assert resp.status_code == 201, resp.text
    return resp.headers["Docker-Content-Digest"]


def tar_layer(files: dict[str, bytes], *, compress: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            info.mtime = 1_700_000_000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(body))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


def push_image(reg: Registry, repo: str, tag: str, layers: list[dict[str, bytes]], *,
               compress: bool = True, docker: bool = True, platform: tuple[str, str] = ("wasi", "wasm"),
               layer_media: str | None = None) -> tuple[str, int]:
    """A Docker (``docker=True``: v2 schema 2 media types) or OCI image made of tar layers
    (the compat variant: ``FROM scratch`` + ``COPY main.wasm plugin.wasm``); returns the
    manifest digest and size."""
    blobs = [tar_layer(files, compress=compress) for files in layers]
    diff_ids = [sha256_digest(gzip.decompress(b) if compress else b) for b in blobs]
    config = json.dumps({"architecture": platform[1], "os": platform[0],
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "config": {}, "created": "2026-01-01T00:00:00Z"}).encode()
    if layer_media is None:
        layer_media = (DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP) if compress else OCI_LAYER
    cfg_desc = _upload(reg, repo, config, DOCKER_CONFIG if docker else
                       "application/vnd.oci.image.config.v1+json")
    layer_descs = [_upload(reg, repo, b, layer_media) for b in blobs]
    media = DOCKER_MANIFEST if docker else OCI_MANIFEST
    body = json.dumps({"schemaVersion": 2, "mediaType": media, "config": cfg_desc,
                       "layers": layer_descs}, indent=3).encode()
    return put_manifest(reg, repo, tag, body, media), len(body)


def push_index(reg: Registry, repo: str, tag: str,
               entries: list[tuple[str, int, str, str | None]]) -> str:
    """An OCI image index: (manifest digest, size, os, arch or None for no platform)."""
    manifests = []
    for digest, size, os_name, arch in entries:
        d = {"mediaType": DOCKER_MANIFEST, "digest": digest, "size": size}
        if arch is not None:
            d["platform"] = {"os": os_name, "architecture": arch}
        manifests.append(d)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
    return put_manifest(reg, repo, tag, body, OCI_INDEX)


def manifest_size(reg: Registry, repo: str, ref: str) -> int:
    r = httpx.get(f"{reg.url}/v2/{repo}/manifests/{ref}", timeout=30,
                  headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}"})
    r.raise_for_status()
    return len(r.content)


def padded_module(wasm: bytes, extra: int, seed: int = 1) -> bytes:
    """``wasm`` with a custom section of ``extra`` pseudo-random bytes appended: still a
    valid module (same code and identity), just bigger (and never compressible)."""
    import random
    rnd = random.Random(seed)
    name = b"padding"
    payload = bytes([len(name)]) + name + rnd.randbytes(extra)
    size, leb = len(payload), bytearray()
    while True:
        b = size & 0x7F
        size >>= 7
        leb.append(b | (0x80 if size else 0))
        if not size:
            break
    return wasm + b"\x00" + bytes(leb) + payload


# -- bearer tokens -----------------------------------------------------------------------------
class TokenServer:
    """The registry's token realm: ``GET /token?service=&scope=`` with Basic auth → a JWT
    (ES256, x5c = a self-signed certificate given to the registry as rootcertbundle).
    Wrong or missing credentials → 401. ``issued`` counts tokens handed out."""

    service = "wasmprof-test-registry"
    issuer = "wasmprof-test-issuer"

    def __init__(self, user: str, password: str) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        self.user, self.password = user, password
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wasmprof test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.dir = Path(tempfile.mkdtemp(prefix="wasmprof-token-"))
        self.cert_path = self.dir / "cert.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.issued = 0
        self.refused = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                q = parse_qs(urlsplit(self.path).query)
                auth = self.headers.get("Authorization", "")
                ok = auth == "Basic " + base64.b64encode(
                    f"{server.user}:{server.password}".encode()).decode()
                if not ok:
                    server.refused += 1
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"details": "bad credentials"}')
                    return
                scope = (q.get("scope") or [""])[0]
                token = server.sign(scope, (q.get("service") or [""])[0])
                server.issued += 1
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sign(self, scope: str, service: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        access = []
        parts = scope.split(":")
        if len(parts) == 3 and parts[0] == "repository":
            access.append({"type": "repository", "name": parts[1],
                           "actions": [a for a in parts[2].split(",") if a == "pull"]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        claims = {"iss": self.issuer, "sub": self.user, "aud": service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- corruption in transit ---------------------------------------------------------------------
class TamperProxy:
    """Forwards GET/HEAD to ``upstream`` (a Registry); ``corrupt_blobs`` flips a byte in every
    blob body, ``corrupt_manifests`` appends a space to every manifest body (keeping the
    registry's Docker-Content-Digest header)."""

    def __init__(self, upstream: Registry, *, corrupt_blobs: bool = False,
                 corrupt_manifests: bool = False) -> None:
        self.upstream = upstream
        self.corrupt_blobs = corrupt_blobs
        self.corrupt_manifests = corrupt_manifests
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("accept", "authorization")}
                r = httpx.get(proxy.upstream.url + self.path, headers=headers, timeout=30,
                              follow_redirects=True)
                body = r.content
                if r.status_code == 200 and "/blobs/" in self.path and proxy.corrupt_blobs:
                    body = body[:-1] + bytes([body[-1] ^ 0xFF])
                if r.status_code == 200 and "/manifests/" in self.path and proxy.corrupt_manifests:
                    body = body + b" "
                self.send_response(r.status_code)
                for k in ("Content-Type", "Docker-Content-Digest", "WWW-Authenticate"):
                    if k in r.headers:
                        self.send_header(k, r.headers[k])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class StaticDir:
    """A plain ``http.server`` serving ``root`` (the HTTP symbol source); counts requests."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[str] = []
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port),
                                         partial(Handler, directory=str(self.root)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the session's registries (registered in conftest.py) ---------------------------------------
class OciEnv:
    """One storage directory served by three registries: ``open`` (anonymous, pushed to),
    ``basic`` (htpasswd: ``basic_user``/``basic_password``), ``token`` (bearer flow; the
    realm accepts ``token_user``/``token_password``)."""

    basic_user, basic_password = "ci-basic", "basic-Secret-1"
    token_user, token_password = "ci-token", "token-Secret-2"

    def __init__(self, root: Path) -> None:
        self.storage = root / "storage"
        self.storage.mkdir(parents=True)
        self.open = Registry(self.storage).start()
        self.basic = Registry(self.storage, auth=("htpasswd", self.basic_user,
                                                  self.basic_password)).start()
        self.tokens = TokenServer(self.token_user, self.token_password)
        self.token = Registry(self.storage, auth=("token", self.tokens)).start()

    def close(self) -> None:
        for r in (self.open, self.basic, self.token):
            r.close()
        self.tokens.close()


def oci_env_fixture(tmp_path_factory):
    env = OciEnv(tmp_path_factory.mktemp("oci"))
    yield env
    env.close()

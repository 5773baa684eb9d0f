"""``wasmprof module pull|source``: modules from OCI registries, plugin sources.

``pull`` resolves an image reference (tag → digest, image index → the ``wasi/wasm`` or only
platform), takes the module out of either image variant, verifies every digest, and stores
it content-addressed, linked to (plugin, version = the tag unless ``--version``), with the
image it came from — in the local store (``--data``/``--db``, as ``wasmprof serve``), on a
running server (``--server URL --token T``), and/or in a file (``-o``). With
``--symbol-source`` a stripped module's debug build is looked up by identity and stored too.

Exit codes: 0 pulled; 1 nothing found (no such tag/digest, no Wasm module in the image);
2 bad input, refused (401/403), unreachable registry, digest mismatch, over the size cap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wasmprof.config import add_store_arguments, store_config_from_args
from wasmprof.errors import UsageError
from wasmprof.output import Progress, write_json

EPILOG_PULL = """examples:
  wasmprof module pull oci://registry.example.com/plugins/key-auth:1.0.0 --plugin key-auth
  wasmprof module pull oci://localhost:5000/plugins/key-auth@sha256:0d4c… --plugin key-auth \\
      --version 1.0.0 --plain-http
  echo "$REGISTRY_PASSWORD" | wasmprof module pull oci://ghcr.io/acme/auth:2.1 --plugin auth \\
      --username acme --password-stdin --server https://wasmprof.example.com --token "$TOKEN"
  wasmprof module pull oci://localhost:5000/plugins/auth:2.1 --plain-http -o plugin.wasm
  wasmprof module pull oci://reg/plugins/auth:2.1 --plugin auth \\
      --symbol-source https://symbols.example.com/wasm   # + its debug build, by identity

Credentials: --username with --password-stdin, else the registry's entry in a Docker
config.json (--docker-config, default $DOCKER_CONFIG/config.json or ~/.docker/config.json;
credential helpers are programs and are never run), else anonymous. Registries that answer
401 with a Bearer challenge get a token from their realm. TLS is verified; --plain-http is
for local registries. Both image variants work: the Wasm OCI artifact
(application/vnd.module.wasm.content.layer.v1+wasm) and a Docker/OCI image whose tar layer
holds plugin.wasm (Higress/Istio "compat" images)."""

EPILOG_SOURCE = """examples:
  wasmprof module source set key-auth oci://registry.example.com/plugins/key-auth \\
      --server http://127.0.0.1:8080 --token "$ADMIN_TOKEN"      # version V pulls tag V
  wasmprof module source set key-auth 'oci://reg/plugins/key-auth:v{version}' --data ./state
  echo "$PW" | wasmprof module source set auth oci://ghcr.io/acme/auth:2.1 \\
      --username acme --password-stdin --server http://127.0.0.1:8080 --token "$ADMIN_TOKEN"
  wasmprof module source show --server http://127.0.0.1:8080 --token "$READ_TOKEN"
  wasmprof module source pull key-auth --version 1.0.0 --data ./state   # pull now, here
  wasmprof module source remove key-auth --data ./state

The server pulls in the background when a crash, sample batch or profile arrives for a
version without a module, and re-symbolizes what waited; failures are retried with backoff
and shown on the dashboard's overview."""


def _add_server_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("a running server instead of the local store")
    g.add_argument("--server", metavar="URL", default=None,
                   help="a running `wasmprof serve`, e.g. http://127.0.0.1:8080")
    g.add_argument("--token", default=None,
                   help="API token for --server (default $WASMPROF_TOKEN): ingest scope for "
                        "pull, admin for source set/remove/pull, read for source show")
    add_store_arguments(p)


def _add_credentials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--username", "-u", default=None, help="registry username")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the registry password or token from stdin")
    p.add_argument("--plain-http", action="store_true",
                   help="talk plain HTTP to the registry (a local one; TLS otherwise)")


def register(subparsers) -> None:
    p = subparsers.add_parser("module", help="pull plugin modules from OCI registries; plugin sources",
                              description="Modules from where the gateway gets them: OCI images "
                                          "(Higress/Istio WasmPlugin URLs) and symbol sources.",
                              epilog=EPILOG_PULL + "\n\n" + EPILOG_SOURCE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="module_command", metavar="ACTION", required=True)

    pl = sub.add_parser("pull", help="pull a module from an OCI image and store it",
                        description=__doc__.split("\n\n")[1], epilog=EPILOG_PULL,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("reference", metavar="oci://HOST/REPO:TAG|@sha256:DIGEST")
    pl.add_argument("--plugin", default=None, help="link the module to this plugin")
    pl.add_argument("--version", default=None,
                    help="plugin version to link it as (default: the tag)")
    _add_credentials(pl)
    pl.add_argument("--docker-config", metavar="PATH", default=None,
                    help="Docker config.json with registry credentials")
    pl.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    pl.add_argument("--max-mb", type=float, default=256.0,
                    help="refuse layers over this size (MiB; default 256, the upload cap)")
    pl.add_argument("--symbol-source", metavar="URL", action="append", default=[],
                    help="look the debug build of a stripped module up here (repeatable): "
                         "http(s)://BASE (BASE/<key>/debug.wasm) or oci://HOST/REPO (tag = key)")
    pl.add_argument("--symbol-source-plain-http", action="store_true",
                    help="plain HTTP for oci:// symbol sources")
    pl.add_argument("-o", "--output", metavar="FILE", default=None,
                    help="also write the module here (alone: write it only, store nothing)")
    pl.add_argument("--json", action="store_true", help="print JSON")
    _add_server_args(pl)
    pl.set_defaults(func=run_pull)

    src = sub.add_parser("source", help="set, show, remove plugin sources; pull now",
                         epilog=EPILOG_SOURCE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ssub = src.add_subparsers(dest="source_command", metavar="ACTION", required=True)
    st = ssub.add_parser("set", help="set where a plugin's modules are pulled from",
                         epilog=EPILOG_SOURCE, formatter_class=argparse.RawDescriptionHelpFormatter)
    st.add_argument("plugin")
    st.add_argument("url", metavar="oci://HOST/REPO[:TAG|:prefix{version}|@sha256:DIGEST]")
    _add_credentials(st)
    st.add_argument("--no-credentials", action="store_true", help="forget stored credentials")
    sh = ssub.add_parser("show", help="plugin sources and their pull status")
    sh.add_argument("plugin", nargs="?", default=None)
    rm = ssub.add_parser("remove", help="remove a plugin's source")
    rm.add_argument("plugin")
    pn = ssub.add_parser("pull", help="pull now (fresh attempts for failed pulls)")
    pn.add_argument("plugin")
    pn.add_argument("--version", default=None)
    for q in (st, sh, rm, pn):
        q.add_argument("--json", action="store_true", help="print JSON")
        _add_server_args(q)
    src.set_defaults(func=run_source)


# -- shared ------------------------------------------------------------------------------
def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        if args.username is None:
            raise UsageError("--password-stdin needs --username", source="--password-stdin")
        text = sys.stdin.readline(8193)
        return text.rstrip("\r\n")
    if args.username is not None:
        raise UsageError("--username needs --password-stdin (passwords are never taken on the "
                         "command line)", source="--username")
    return None


def _credentials(args: argparse.Namespace, registry: str):
    from wasmprof.oci.auth import Credentials, docker_config_credentials
    password = _password(args)
    if args.username is not None:
        return Credentials(username=args.username, password=password)
    path = Path(args.docker_config) if args.docker_config else None
    return docker_config_credentials(registry, path, required=path is not None)


def _open_local(args: argparse.Namespace):
    from wasmprof.config import ServerConfig
    from wasmprof.server.service import Service
    return Service(ServerConfig.from_env(store_config_from_args(args), background=False))


def _print(text: str) -> None:
    print("".join(ch if ch.isprintable() or ch == "\n" else "?" for ch in text))


# -- pull ---------------------------------------------------------------------------------
class _Destination:
    """Where pulled modules go: the local store, or a server's API."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.svc = self.remote = None
        if args.server:
            from wasmprof.sources.remote import ServerClient
            self.remote = ServerClient(args.server, args.token)
            self.where = self.remote.url
        elif args.output and not (args.data or args.db):
            self.where = None
        else:
            self.svc = _open_local(args)
            self.where = str(self.svc.config.store.data_dir)

    def store(self, data: bytes, filename: str, plugin: str | None, version: str | None,
              origin: Any) -> dict[str, Any] | None:
        from dataclasses import asdict

        from wasmprof.sources import origins
        if self.remote is not None:
            desc = self.remote.upload_module(data, filename, plugin, version)
            body = {k: v for k, v in asdict(origin).items() if k not in ("role", "ref_url")}
            self.remote.add_origin(desc["id"], {**body, "reference": origin.ref_url})
            return desc
        if self.svc is not None:
            desc, created = self.svc.upload_module(data, filename, plugin=plugin, version=version,
                                                   background=False)
            origins.record(self.svc.db, desc["id"], origin)
            return {**desc, "created": created}
        return None

    def close(self) -> None:
        if self.svc is not None:
            self.svc.close()


def run_pull(args: argparse.Namespace) -> int:
    from wasmprof.binary.loader import load_module
    from wasmprof.oci.reference import parse_reference
    from wasmprof.oci.pull import pull
    from wasmprof.sources.origins import Origin
    from wasmprof.sources.service import module_filename

    ref = parse_reference(args.reference, source="reference").or_latest()
    if not (0 < args.max_mb <= 4096) or not (0 < args.timeout <= 3600):
        raise UsageError("--max-mb must be in (0, 4096] and --timeout in (0, 3600]",
                         source="--max-mb/--timeout")
    creds = _credentials(args, ref.registry)
    symbol_sources = _symbol_sources(args)
    max_bytes = int(args.max_mb * (1 << 20))
    progress = Progress(f"pulling {ref}")
    try:
        got = pull(ref, credentials=creds, plain_http=args.plain_http, max_bytes=max_bytes,
                   timeout=args.timeout, progress=progress.update)
    finally:
        progress.close()
    module = load_module(f"{ref} {got.filename}", got.data)
    version = args.version or ref.tag
    filename = module_filename(ref.repository, ref.tag or got.resolved.digest)
    result: dict[str, Any] = {"pulled": got.to_dict(), "module": _module_info(module),
                              "plugin": args.plugin, "version": version, "stored": None,
                              "output": None, "debug": None}
    dest = _Destination(args)
    try:
        origin = Origin(ref_url=str(ref), digest=got.resolved.digest,
                        image_digest=got.resolved.manifest.digest, layer_digest=got.layer.digest,
                        variant=got.resolved.variant, filename=filename)
        result["stored"] = _stored(dest.store(got.data, filename, args.plugin, version, origin),
                                   dest.where)
        if args.output:
            Path(args.output).write_bytes(got.data)
            result["output"] = args.output
        if symbol_sources:
            result["debug"] = _pull_debug(args, module, symbol_sources, dest, filename, max_bytes)
    finally:
        dest.close()
    if args.json:
        write_json(result)
    else:
        _print_pull(result)
    return 0


def _symbol_sources(args: argparse.Namespace) -> list:
    from wasmprof.sources.symbols import parse_symbol_source
    return [parse_symbol_source(u, plain_http=args.symbol_source_plain_http)
            for u in args.symbol_source]


def _pull_debug(args: argparse.Namespace, module: Any, sources: list, dest: _Destination,
                filename: str, max_bytes: int) -> dict[str, Any]:
    from wasmprof.oci.client import digest_of
    from wasmprof.sources.origins import Origin
    from wasmprof.sources.symbols import SymbolLookup, wants_debug
    if not wants_debug(module):
        return {"skipped": "the module has DWARF"}
    lookup = SymbolLookup(sources, max_bytes=max_bytes, timeout=args.timeout,
                          credentials=lambda host: _credentials_quiet(args, host))
    found, attempts = lookup.find(module)
    out: dict[str, Any] = {"attempts": [a.to_dict() for a in attempts], "found": None}
    if found is None:
        return out
    name = filename.rsplit(".", 1)[0] + ".debug.wasm"
    out["found"] = found.location
    out["module"] = _module_info(found.module)
    out["stored"] = _stored(dest.store(found.data, name, None, None, Origin(
        ref_url=found.location, digest=digest_of(found.data), variant=found.source.kind,
        filename=name, role="debug")), dest.where)
    if args.output:
        path = Path(args.output)
        debug_path = path.with_name(path.name.rsplit(".", 1)[0] + ".debug.wasm")
        debug_path.write_bytes(found.data)
        out["output"] = str(debug_path)
    return out


def _credentials_quiet(args: argparse.Namespace, host: str):
    from wasmprof.oci.auth import docker_config_credentials
    path = Path(args.docker_config) if args.docker_config else None
    return docker_config_credentials(host, path)


def _module_info(m: Any) -> dict[str, Any]:
    return {"kind": str(m.kind), "identity": m.identity, "sha256": m.sha256,
            "size": None, "dwarf": m.has_dwarf, "names": m.has_name_section,
            "build_id": m.build_id, "functions": len(m.functions)}


def _stored(desc: dict[str, Any] | None, where: str | None) -> dict[str, Any] | None:
    if desc is None:
        return None
    return {"id": desc["id"], "created": desc.get("created"), "where": where,
            "plugins": desc.get("plugins", []), "index": desc.get("symbols", {}).get("index")}


def _print_pull(r: dict[str, Any]) -> None:
    p, m = r["pulled"], r["module"]
    variant = ("Wasm OCI artifact" if p["variant"] == "artifact"
               else f"Docker/OCI image, {p['filename']} from its tar layer")
    lines = [f"pulled {p['reference']}",
             f"  digest   {p['digest']}" + (f" (image {p['image_digest']})"
                                            if p["image_digest"] != p["digest"] else ""),
             f"  variant  {variant} ({p['layer']['media_type']}, {p['layer']['digest']})",
             f"  module   {p['size']:,} bytes, sha256 {p['sha256']}",
             f"           identity {m['identity']}; DWARF {'yes' if m['dwarf'] else 'no'}, "
             f"names {'yes' if m['names'] else 'no'}, {m['functions']} functions"]
    lines += [f"  note     {n}" for n in p["notes"]]
    s = r["stored"]
    if s is not None:
        link = (f"linked to {r['plugin']}" + (f" {r['version']}" if r["version"] else "")
                if r["plugin"] else "not linked to a plugin (give --plugin)")
        lines.append(f"  stored   module {s['id']}{' (new)' if s['created'] else ''} in "
                     f"{s['where']}, {link}")
    if r["output"]:
        lines.append(f"  written  {r['output']}")
    d = r["debug"]
    if d is not None:
        if d.get("skipped"):
            lines.append(f"  debug    not looked up: {d['skipped']}")
        elif d["found"]:
            extra = f", module {d['stored']['id']}" if d.get("stored") else ""
            lines.append(f"  debug    {d['found']}{extra}")
        else:
            lines.append("  debug    not found: " + "; ".join(
                f"{a['location']}: {a['outcome']}" + (f" ({a['detail']})" if a["detail"] else "")
                for a in d["attempts"]))
    _print("\n".join(lines))


# -- source -------------------------------------------------------------------------------
def run_source(args: argparse.Namespace) -> int:
    if args.server:
        return _source_remote(args)
    svc = _open_local(args)
    try:
        return _source_local(args, svc)
    finally:
        svc.close()


def _source_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"url": args.url, "plain_http": args.plain_http}
    password = _password(args)
    if args.username is not None:
        body["credentials"] = {"username": args.username, "password": password}
    elif args.no_credentials:
        body["credentials"] = None
    return body


def _source_local(args: argparse.Namespace, svc: Any) -> int:
    src = svc.sources
    cmd = args.source_command
    if cmd == "set":
        out = src.set_source(args.plugin, _source_body(args))
    elif cmd == "show":
        out = (src.get(args.plugin, admin=True) if args.plugin else src.overview())
        if out is None:
            raise UsageError("the plugin has no source", source=args.plugin)
    elif cmd == "remove":
        if not src.remove_source(args.plugin):
            _print(f"{args.plugin}: no source")
            return 1
        out = {"removed": args.plugin}
    else:
        if src.get(args.plugin, admin=False) is None:
            raise UsageError("the plugin has no source", source=args.plugin)
        queued = src.retry(args.plugin, args.version)
        done = src.run_due(plugin=args.plugin)
        out = {**(src.get(args.plugin, admin=True) or {}), "queued": queued, "attempted": done}
    return _show_source(args, out)


def _source_remote(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from wasmprof.sources.remote import ServerClient
    with ServerClient(args.server, args.token) as c:
        cmd = args.source_command
        path = f"/plugins/{quote(args.plugin, safe='')}/source" if args.plugin else None
        if cmd == "set":
            out = c.call("PUT", path, json=_source_body(args))
        elif cmd == "show":
            out = c.call("GET", path) if path else c.call("GET", "/plugin-sources")
        elif cmd == "remove":
            out = c.call("DELETE", path)
        else:
            body = {"version": args.version} if args.version else {}
            out = c.call("POST", f"{path}/pull", json=body)
    return _show_source(args, out)


def _show_source(args: argparse.Namespace, out: dict[str, Any]) -> int:
    if args.json:
        write_json(out)
        return 0
    items = out.get("sources") if "sources" in out else ([out] if "url" in out else [])
    if not items:
        _print(json.dumps(out) if out else "no plugin sources")
        return 0 if out else 1
    for s in items:
        creds = s.get("credentials") or {}
        who = (f", user {creds['username']}" if creds.get("username") else
               ", with credentials" if s.get("has_credentials") else "")
        _print(f"{s['plugin']}: {s['url']}{' (plain HTTP)' if s.get('plain_http') else ''}{who}")
        _print(f"  status   {s['status']['state']}: {s['status']['summary']}")
        for p in s.get("pulls", [])[:10]:
            _print(f"  {p['version'] or '(no version)':12s} {p['state']:9s} {p['summary']}")
    return 0

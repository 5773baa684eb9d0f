"""Symbol sources by identity: what is accepted (same identity, carries DWARF), what is not
(another build, a stripped file), negative caching, and the CLI pulling a stripped image
with its debug build."""

from __future__ import annotations

import json

import pytest

from oci_registry import StaticDir, push_artifact, push_image
from oci_server import module_cli as _cli
from wasmprof.binary.loader import load_module
from wasmprof.errors import UsageError
from wasmprof.sources.symbols import MemoryCache, SymbolLookup, lookup_keys, parse_symbol_source

pytestmark = pytest.mark.slow


@pytest.fixture()
def http_dir(tmp_path):
    d = StaticDir(tmp_path / "sym")
    d.root.mkdir()
    yield d
    d.close()


@pytest.fixture(scope="module")
def pair(data_dir):
    stripped = (data_dir / "wasm" / "crash_oob.O2.strip-all.wasm").read_bytes()
    debug = (data_dir / "wasm" / "crash_oob.O2.wasm").read_bytes()
    return load_module("prod.wasm", stripped), stripped, debug


def _put(d: StaticDir, key: str, data: bytes) -> None:
    (d.root / key).mkdir(exist_ok=True)
    (d.root / key / "debug.wasm").write_bytes(data)


def test_parse_sources():
    s = parse_symbol_source("https://symbols.example.com/wasm/")
    assert s.kind == "http" and s.location("ab") == "https://symbols.example.com/wasm/ab/debug.wasm"
    o = parse_symbol_source("oci://reg.example.com/debug-builds", plain_http=True)
    assert o.kind == "oci" and o.location("ab12") == "oci://reg.example.com/debug-builds:ab12"
    for bad in ("ftp://x/y", "oci://reg.example.com/x:1", "https://x/y?q=1", ""):
        with pytest.raises(UsageError):
            parse_symbol_source(bad)


def test_keys(pair, data_dir):
    mod, _, _ = pair
    assert lookup_keys(mod) == [mod.identity.split(":", 1)[1]] and len(lookup_keys(mod)[0]) == 64


def test_found_and_checked(pair, http_dir, data_dir):
    mod, _, debug = pair
    key = lookup_keys(mod)[0]
    src = parse_symbol_source(http_dir.url)
    lookup = SymbolLookup([src])
    found, attempts = lookup.find(mod)
    assert found is None and [a.outcome for a in attempts] == ["missing"]
    # another build under the key: never used
    _put(http_dir, key, (data_dir / "wasm" / "fib.O2.wasm").read_bytes())
    lookup = SymbolLookup([src], negative_ttl=0)
    found, attempts = lookup.find(mod)
    assert found is None and attempts[0].outcome == "mismatch" and "identity" in attempts[0].detail
    # the stripped build itself under the key: no DWARF to gain
    _put(http_dir, key, (data_dir / "wasm" / "crash_oob.O2.strip-all.wasm").read_bytes())
    found, attempts = SymbolLookup([src]).find(mod)
    assert found is None and "no DWARF" in attempts[0].detail
    _put(http_dir, key, b"garbage")
    found, attempts = SymbolLookup([src]).find(mod)
    assert found is None and "not a module" in attempts[0].detail
    _put(http_dir, key, debug)
    found, attempts = SymbolLookup([src]).find(mod)
    assert found is not None and found.data == debug and found.module.has_dwarf
    assert attempts[-1].outcome == "found"


def test_negative_cache(pair, http_dir):
    mod, _, _ = pair
    cache = MemoryCache()
    src = parse_symbol_source(http_dir.url)
    SymbolLookup([src], cache=cache).find(mod)
    asked = len(http_dir.requests)
    assert asked == 1
    found, attempts = SymbolLookup([src], cache=cache).find(mod)
    assert len(http_dir.requests) == asked and attempts[0].outcome == "cached-missing"
    short = MemoryCache()                       # entries that expire at once are asked again
    SymbolLookup([src], cache=short, negative_ttl=0).find(mod)
    _, attempts = SymbolLookup([src], cache=short, negative_ttl=0).find(mod)
    assert len(http_dir.requests) == asked + 2 and attempts[0].outcome == "missing"


def test_unreachable_source_is_an_error_entry(pair):
    from pg import free_port
    mod, _, _ = pair
    cache = MemoryCache()
    src = parse_symbol_source(f"http://127.0.0.1:{free_port()}/sym")
    _, attempts = SymbolLookup([src], cache=cache, timeout=3).find(mod)
    assert attempts[0].outcome == "error" and "cannot connect" in attempts[0].detail
    _, attempts = SymbolLookup([src], cache=cache).find(mod)
    assert attempts[0].outcome == "cached-error"


def test_oci_symbol_source(pair, oci):
    mod, _, debug = pair
    key = lookup_keys(mod)[0]
    src = parse_symbol_source(f"oci://{oci.open.host}/sym/oob", plain_http=True)
    found, attempts = SymbolLookup([src]).find(mod)
    assert found is None and attempts[0].outcome == "missing"
    push_image(oci.open, "sym/oob", key, [{"plugin.wasm": debug}])       # either variant works
    found, _ = SymbolLookup([src]).find(mod)
    assert found is not None and found.data == debug and found.location.endswith(f":{key}")


def test_cli_pull_with_debug_build(pair, oci, http_dir, tmp_path):
    mod, stripped, debug = pair
    _put(http_dir, lookup_keys(mod)[0], debug)
    push_artifact(oci.open, "sym/prod", "4.0", stripped)
    out = tmp_path / "plugin.wasm"
    r = _cli("pull", f"oci://{oci.open.host}/sym/prod:4.0", "--plain-http", "-o", str(out),
             "--symbol-source", http_dir.url, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert out.read_bytes() == stripped and (tmp_path / "plugin.debug.wasm").read_bytes() == debug
    assert d["debug"]["found"].endswith("/debug.wasm") and d["debug"]["module"]["dwarf"]
    # into a store: the debug build becomes the stripped module's companion
    state = tmp_path / "state"
    r = _cli("pull", f"oci://{oci.open.host}/sym/prod:4.0", "--plain-http", "--plugin", "prod",
             "--symbol-source", http_dir.url, "--data", str(state))
    assert r.returncode == 0, r.stderr
    assert "debug    " + http_dir.url in r.stdout
    from wasmprof.config import resolve_store
    from wasmprof.server.registry import ModuleRegistry
    from wasmprof.store.state import open_store
    store = open_store(resolve_store(state))
    try:
        reg = ModuleRegistry(store)
        row = reg.get_row_by_sha(mod.sha256)
        assert row["companion_id"] == reg.get_row_by_sha(load_module("d", debug).sha256)["id"]
        assert reg.get_row(row["id"])["index_state"] == "ready"
    finally:
        store.close()

"""Each way a pull can fail, against a real ``wasmprof serve`` and real registries: registry
down (then up), 401 (then credentials), wrong digest, oversized layer, an image without a
Wasm layer. Every case: a clear status on the plugin, every crash kept, ingest unaffected;
the cases that can heal do, and the crashes that waited are then symbolized."""

from __future__ import annotations

import pytest

from oci_registry import (Registry, TamperProxy, padded_module, push_artifact, push_image)
from oci_server import (call, events, groups, post_log, set_source, source, start_server,
                        wait_pull, wait_symbolized)
from pg import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory, oci):
    server = start_server(tmp_path_factory.mktemp("oci-fail"), None, ["--max-module-mb", "1"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wasm(data_dir) -> bytes:
    return (data_dir / "wasm" / "crash_trap.O2.wasm").read_bytes()


@pytest.fixture(scope="module")
def crash_log(data_dir):
    return data_dir / "dumps" / "crash_trap.O2.trap.classic.log"


def _ingest_unaffected(srv, crash_log, plugin: str, version: str, n: int = 3) -> None:
    """Post ``n`` more logs while the pull is failing: each answered at once, all stored."""
    for _ in range(n):
        assert post_log(srv, crash_log, plugin, version, again=True)["crashes"] == 1
    assert len(events(srv, plugin)) == n + 1
    gs = groups(srv, plugin)
    assert sum(g["count"] for g in gs) == n + 1
    assert gs[0]["top_frames"][0]["status"] == "unsymbolized"      # what the log printed


def _failing(srv, plugin: str, kind: str) -> dict:
    s = wait_pull(srv, plugin, ("retrying", "failed"), kind=kind)
    st = s["status"]
    assert st["error_kind"] == kind and s["pulls"][0]["error"]
    over = call(srv, "read", "GET", "/plugin-sources").json()
    mine = next(x for x in over["sources"] if x["plugin"] == plugin)
    assert mine["status"]["state"] in ("retrying", "failed") and mine["status"]["summary"]
    return s


def test_registry_down_then_up(srv, oci, wasm, crash_log):
    port = free_port()
    plugin = "down-then-up"
    set_source(srv, plugin, f"oci://127.0.0.1:{port}/fail/down")
    post_log(srv, crash_log, plugin, "1.0")
    s = _failing(srv, plugin, "unreachable")
    assert "cannot connect" in s["status"]["summary"]
    _ingest_unaffected(srv, crash_log, plugin, "1.0")
    first = source(srv, plugin)["pulls"][0]
    # backoff: more attempts, each later than the last
    later = wait_pull(srv, plugin, ("retrying",), kind="unreachable")
    import time
    deadline = time.monotonic() + 20
    while later["pulls"][0]["attempts"] <= first["attempts"] and time.monotonic() < deadline:
        time.sleep(0.2)
        later = source(srv, plugin)
    assert later["pulls"][0]["attempts"] > first["attempts"]
    assert later["pulls"][0]["next_attempt_at"] > first["next_attempt_at"]
    # the registry comes up on that port, serving the pushed image: the next retry works
    push_image(oci.open, "fail/down", "1.0", [{"plugin.wasm": wasm}])
    up = Registry(oci.storage, port=port).start()
    try:
        g = wait_symbolized(srv, plugin)
        assert g["count"] == 4 and g["top_frames"][0]["function"] == "fail_invariant"
        assert source(srv, plugin)["status"]["state"] == "ready"
    finally:
        up.close()


def test_401_then_credentials(srv, oci, wasm, crash_log):
    plugin = "needs-login"
    push_artifact(oci.open, "fail/private", "1.0", wasm)
    set_source(srv, plugin, f"oci://{oci.basic.host}/fail/private:1.0")
    post_log(srv, crash_log, plugin, "1.0")
    s = _failing(srv, plugin, "unauthorized")
    assert "username and password" in s["status"]["summary"]
    _ingest_unaffected(srv, crash_log, plugin, "1.0", n=1)
    set_source(srv, plugin, f"oci://{oci.basic.host}/fail/private:1.0",
               credentials={"username": oci.basic_user, "password": "wrong-one"})
    s = _failing(srv, plugin, "unauthorized")
    assert "refused the credentials" in s["status"]["summary"]
    set_source(srv, plugin, f"oci://{oci.basic.host}/fail/private:1.0",
               credentials={"username": oci.basic_user, "password": oci.basic_password})
    g = wait_symbolized(srv, plugin)
    assert g["count"] == 2


def test_bearer_registry_through_the_server(srv, oci, wasm, crash_log):
    plugin = "behind-token"
    push_artifact(oci.open, "fail/bearer", "1.0", wasm)
    set_source(srv, plugin, f"oci://{oci.token.host}/fail/bearer:1.0")
    post_log(srv, crash_log, plugin, "1.0")
    assert "token service refused" in _failing(srv, plugin, "unauthorized")["status"]["summary"]
    set_source(srv, plugin, f"oci://{oci.token.host}/fail/bearer:1.0",
               credentials={"username": oci.token_user, "password": oci.token_password})
    wait_symbolized(srv, plugin)


def test_wrong_digest(srv, oci, wasm, crash_log):
    plugin = "tampered"
    # bytes of their own: a digest pulled before would be reused without a download
    push_artifact(oci.open, "fail/tamper", "1.0", padded_module(wasm, 64, seed=16))
    proxy = TamperProxy(oci.open, corrupt_blobs=True)
    try:
        set_source(srv, plugin, f"oci://{proxy.host}/fail/tamper:1.0")
        post_log(srv, crash_log, plugin, "1.0")
        s = _failing(srv, plugin, "digest-mismatch")
        assert "does not match its digest" in s["status"]["summary"]
        _ingest_unaffected(srv, crash_log, plugin, "1.0", n=1)
        assert call(srv, "read", "GET", "/modules", params={"plugin": plugin}).json()["modules"] == []
    finally:
        proxy.close()


@pytest.mark.parametrize("case", ["oversized", "no-wasm", "not-a-module"])
def test_image_that_cannot_give_a_module(srv, oci, wasm, crash_log, case):
    """Over the size cap (the server's --max-module-mb 1), an image without a Wasm layer, a
    plugin.wasm that is no module: a clear status, every crash kept."""
    kind, layers, said = {
        "oversized": ("too-large", None, ("size cap", "1048576")),
        "no-wasm": ("no-wasm-layer", [{"etc/motd": b"hello\n"}], ("plugin.wasm", "etc/motd")),
        "not-a-module": ("bad-module", [{"plugin.wasm": b"\0asm\x01\0\0\0\x0a\xff\xff"}],
                         ("cannot be read",)),
    }[case]
    plugin, repo = f"cannot-{case}", f"fail/{case}"
    if layers is None:
        push_artifact(oci.open, repo, "1.0", padded_module(wasm, 1_200_000))
    else:
        push_image(oci.open, repo, "1.0", layers)
    set_source(srv, plugin, f"oci://{oci.open.host}/{repo}:1.0")
    post_log(srv, crash_log, plugin, "1.0")
    summary = _failing(srv, plugin, kind)["status"]["summary"]
    assert all(x in summary for x in said), summary
    _ingest_unaffected(srv, crash_log, plugin, "1.0", n=1)


def test_profile_and_version_rules(srv, oci, wasm, data_dir, crash_log):
    """A profile (not only a crash) starts a pull; a templated source turns the version
    into the tag; data without a version cannot say which tag (status ``waiting``)."""
    plugin = "by-profile"
    push_artifact(oci.open, "fail/templ", "v2.5_build.7", wasm)
    set_source(srv, plugin, f"oci://{oci.open.host}/fail/templ:v{{version}}")
    r = call(srv, "ingest", "POST", "/profiles", params={"plugin": plugin, "version": "2.5+build.7"},
             content=crash_log.read_bytes())
    assert r.status_code == 200, r.text
    s = wait_pull(srv, plugin, ("ready",))
    pull = s["pulls"][0]
    assert pull["reference"].endswith("fail/templ:v2.5_build.7") and pull["trigger"].startswith("profile")
    prof = call(srv, "read", "GET", "/profiles", params={"plugin": plugin, "format": "json"})
    assert prof.status_code == 200 and "route_request" in prof.text
    other = "by-profile-nover"
    set_source(srv, other, f"oci://{oci.open.host}/fail/templ")
    post_log(srv, crash_log, other)
    s = wait_pull(srv, other, ("waiting",))
    assert "no version" in s["status"]["summary"]
    r = call(srv, "admin", "POST", f"/plugins/{other}/source/pull", json={"version": "x"})
    assert r.status_code == 202


def test_pulled_digest_is_reused(srv, oci, wasm, crash_log):
    """Tag → digest first; a digest pulled before is linked again without a download."""
    module = padded_module(wasm, 64, seed=23)
    d1 = push_artifact(oci.open, "fail/reuse-a", "1.0", module)
    d2 = push_artifact(oci.open, "fail/reuse-b", "7.0", module)
    assert d1 == d2
    set_source(srv, "reuse-a", f"oci://{oci.open.host}/fail/reuse-a:1.0")
    first = wait_pull(srv, "reuse-a", ("ready",))["pulls"][0]
    assert not any("reused" in n for n in first["notes"])
    set_source(srv, "reuse-b", f"oci://{oci.open.host}/fail/reuse-b:7.0")
    second = wait_pull(srv, "reuse-b", ("ready",))["pulls"][0]
    assert second["module_id"] == first["module_id"] and second["digest"] == d1
    assert any("reused, nothing downloaded" in n for n in second["notes"])
    mods = call(srv, "read", "GET", "/modules", params={"plugin": "reuse-b"}).json()["modules"]
    assert [m["versions"] for m in mods] == [["7.0"]]

"""The dashboard's group page shows the plugin's panic (language, message, location, its
own traceback frames as runtime text) and the breadcrumbs, in Debian chromium; names from
the log are shown as text, never run."""

from __future__ import annotations

import httpx

from browser import browser, open_page, settle, start_server  # noqa: F401  (fixture)
from test_logs_envelopes import rec
from wasmprof.ingest.logline import LineFormat


def test_group_page_shows_panic_breadcrumbs_and_go_frames(browser, tmp_path):
    hostile = "<img src=x onerror=window.__pwned=1>"
    lines = rec(LineFormat.ENVOY, f"wasm log ns.go-auth r v: checking {hostile}", thread="28", ms=1,
                level="info", location="ctx.cc:1")
    go = ["panic: ", f"runtime error: index out of range [5] with length 3 {hostile}", "", "",
          "goroutine ", "1", " [", "running", "]:", "main.handle", "(...)", "\t",
          "/src/plugin/main.go", ":", "42", "", "main.main", "(", ")", "\t",
          "/src/plugin/main.go", ":", "77", " +", "0x1d", ""]
    for k, tok in enumerate(go):
        lines += rec(LineFormat.ENVOY, f"wasm log ns.go-auth r v: {tok}", thread="28", ms=10 + k,
                     location="ctx.cc:1")
    lines += rec(LineFormat.ENVOY, "Function: proxy_on_request_headers failed: Uncaught "
                 "RuntimeError: unreachable\nProxy-Wasm plugin in-VM backtrace:\n"
                 "  0:  0x1a2b - runtime.gopanic\n  1:  0x2e4f - main.handle", thread="28", ms=60)
    server = start_server(tmp_path / "web", anonymous="read,ingest,admin")
    try:
        with httpx.Client(base_url=server.url + "/api/v1", timeout=120) as c:
            r = c.post("/logs", content="\n".join(lines) + "\n").json()
        gid = r["groups"][0]["id"]
        page, watch = open_page(browser, server, f"/#/crashes/{gid}")
        page.wait_for_selector("#panic", timeout=30_000)
        settle(page, watch)
        assert page.inner_text("#panic-language") == "(Go)"
        assert page.inner_text("#panic-message") == (
            f"runtime error: index out of range [5] with length 3 {hostile}")
        assert page.inner_text("#panic-location") == "at /src/plugin/main.go:42"
        frames = page.inner_text("#panic-frames")
        assert "main.handle at /src/plugin/main.go:42" in frames
        assert "main.main at /src/plugin/main.go:77" in frames and "runtime-text" in frames
        assert f"checking {hostile}" in page.inner_text("#breadcrumbs")
        assert "Go panic:" in page.inner_text("#group-panic")
        assert page.evaluate("window.__pwned") is None
        assert page.query_selector("#event-panel img") is None and watch.problems() == []
        page.context.close()
    finally:
        server.stop()

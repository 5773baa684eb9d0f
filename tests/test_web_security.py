"""Attacker-controlled names never execute in the dashboard, and tokens are honoured.

A Wasm module is built here with a crafted name section (function names holding
``<script>``, ``"onload=``, ``</svg>``, ``<img onerror>``), uploaded under a plugin name
and file name with markup, and a WAMR dump that prints those names plus a log line with
markup is posted; a folded profile with the same names and a label with markup, and a
source file with markup on a frame's line, complete the data. Every page is then opened
in chromium: no script may run (``window.__pwned`` stays unset in the page and in every
frame, no dialog opens, no element carries an event-handler attribute) and the names
appear literally.
"""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from browser import browser, create_token, open_page, settle, start_server, wait_for  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVIL_NAMES = [
    'handle_<script>window.__pwned="script"</script>',
    '"onload="window.__pwned=\'attr\'" x="',
    '</svg><svg onload="window.__pwned=\'svg\'">&amp x',   # no ';': folded separator
    "<img src=x onerror=\"window.__pwned='img'\">",
]
EVIL_PLUGIN = "evil<b onmouseover=\"window.__pwned='plugin'\">plugin"
EVIL_FILE = "<svg onload=window.__pwned='file'>.wasm"
EVIL_LOG_LINE = "[wasm] wasm log evil: </pre><script>window.__pwned='log'</script><pre>"
EVIL_LABEL = "<i onclick=\"window.__pwned='label'\">prod</i>"
EVIL_SOURCE_LINE = "</td><script>window.__pwned='source'</script><td>"


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return _leb(len(b)) + b


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + _leb(len(payload)) + payload


def build_evil_module(names: list[str]) -> tuple[bytes, list[int]]:
    """A valid module: function i calls i+1, the last one traps (unreachable); exported
    ``_start`` is function 0; the name section holds ``names``. Returns the bytes and, per
    function, the file offset just after its call/unreachable instruction: what WAMR's
    classic interpreter prints in a dump."""
    n = len(names)
    bodies, instr = [], []
    for i in range(n):
        code = (b"\x10" + _leb(i + 1)) if i < n - 1 else b"\x00"
        bodies.append((b"\x00" + code + b"\x0b", len(code)))
    head = b"\0asm\x01\0\0\0" + _section(1, b"\x01\x60\x00\x00") \
        + _section(3, _leb(n) + b"\x00" * n) + _section(7, b"\x01" + _str("_start") + b"\x00\x00")
    code_payload = bytearray(_leb(n))
    code_start = len(head) + 1 + len(_leb(0))          # placeholder, fixed below
    entries = []
    for body, code_len in bodies:
        entries.append((_leb(len(body)), body, code_len))
    payload_len = len(code_payload) + sum(len(s) + len(b) for s, b, _ in entries)
    code_start = len(head) + 1 + len(_leb(payload_len))
    pos = code_start + len(code_payload)
    for size, body, code_len in entries:
        body_start = pos + len(size)
        instr.append(body_start + 1 + code_len)         # after locals count + instruction
        code_payload += size + body
        pos += len(size) + len(body)
    names_sub = _leb(n) + b"".join(_leb(i) + _str(s) for i, s in enumerate(names))
    name_payload = _str("name") + b"\x00" + _leb(len(_str("evil_module"))) + _str("evil_module") \
        + b"\x01" + _leb(len(names_sub)) + names_sub
    data = head + _section(10, bytes(code_payload)) + _section(0, name_payload)
    return data, instr


def evil_log(names: list[str], offsets: list[int]) -> str:
    frames = [f"#{k:02d}: 0x{offsets[i]:04x} - {names[i]}"
              for k, i in enumerate(reversed(range(len(names))))]
    return "\n".join(["evil: starting", EVIL_LOG_LINE, "", *frames, "", "Exception: unreachable", ""])


@pytest.fixture(scope="module")
def evil(tmp_path_factory, data_dir):
    server = start_server(tmp_path_factory.mktemp("web-evil"), anonymous="read,ingest,admin")
    api = server.url + "/api/v1"
    try:
        with httpx.Client(timeout=120) as c:
            wasm, offsets = build_evil_module(EVIL_NAMES)
            r = c.post(f"{api}/modules", params={"plugin": EVIL_PLUGIN, "version": EVIL_NAMES[3]},
                       files={"file": (EVIL_FILE, wasm)})
            assert r.status_code == 201, r.text
            r = c.post(f"{api}/logs", params={"plugin": EVIL_PLUGIN, "version": EVIL_NAMES[3]},
                       content=evil_log(EVIL_NAMES, offsets).encode())
            assert r.status_code == 200 and r.json()["crashes"] == 1, r.text
            folded = f"{';'.join(EVIL_NAMES)} 30\n{';'.join(EVIL_NAMES[:2])} 10\n"
            for build in ("a", "b"):
                r = c.post(f"{api}/profiles", params={"plugin": EVIL_PLUGIN, "format": "folded",
                                                      "labels": f"env:{EVIL_LABEL},build:{build}"},
                           content=(folded if build == "a" else folded.replace(" 30", " 5")).encode())
                assert r.status_code == 200, r.text
            # a real crash whose innermost line shows a source with markup on that line
            w = data_dir / "wasm" / "inline_chain.O2.wasm"
            c.post(f"{api}/modules", params={"plugin": "inline_chain"},
                   files={"file": (w.name, w.read_bytes())}).raise_for_status()
            c.post(f"{api}/logs", params={"plugin": "inline_chain"},
                   content=(data_dir / "dumps" / "inline_chain.O2.trap4.classic.log").read_bytes()
                   ).raise_for_status()
            lines = (data_dir / "src" / "inline_chain.c").read_text().splitlines()
            lines[53] = EVIL_SOURCE_LINE               # line 54: the innermost frame's line
            c.post(f"{api}/sources", data={"path": "/fixtures/src/inline_chain.c"},
                   files={"file": ("inline_chain.c", "\n".join(lines).encode())}).raise_for_status()
        yield server
    finally:
        server.stop()


def _no_execution(page, watch) -> None:
    for frame in page.frames:
        assert frame.evaluate("window.__pwned") is None, frame.url
        # any event-handler attribute, except the flame graph SVG's own onload="init(evt)"
        assert frame.evaluate("""[...document.querySelectorAll('*')].filter((e) =>
            [...e.attributes].some((a) => a.name.startsWith('on') && a.value !== 'init(evt)')).length""") == 0, frame.url
    assert watch.dialogs == []
    assert watch.problems() == []


def _group_ids(server) -> dict[str, int]:
    return {g["plugin"]: g["id"] for g in httpx.get(server.url + "/api/v1/crash-groups").json()["groups"]}


def test_crafted_module_builds_and_symbolizes(evil):
    """The crafted module is real: the server symbolized the dump to its names."""
    gid = _group_ids(evil)[EVIL_PLUGIN]
    event = httpx.get(f"{evil.url}/api/v1/crash-groups/{gid}").json()["sample_events"][0]
    full = httpx.get(f"{evil.url}/api/v1/crash-events/{event['id']}").json()
    assert [f["function"] for f in full["frames"]] == list(reversed(EVIL_NAMES))
    assert any(EVIL_NAMES[3] in line for line in full["raw"])


def test_no_page_executes_attacker_names(evil, browser, artifacts_dir):
    ids = _group_ids(evil)
    q = urllib.parse.quote
    sel = f"plugin={q(EVIL_PLUGIN)}&labels={q('env:' + EVIL_LABEL + ',build:a')}"
    compare = (f"/#/compare?before.plugin={q(EVIL_PLUGIN)}&before.labels={q('build:a')}"
               f"&after.plugin={q(EVIL_PLUGIN)}&after.labels={q('build:b')}")
    pages = [
        ("overview", "/#/", "section.plugin", [EVIL_PLUGIN, EVIL_FILE, EVIL_NAMES[3]]),
        ("crash-groups", "/#/crashes", "table.groups tr[data-group-id]", [EVIL_PLUGIN, EVIL_NAMES[3]]),
        ("crash-group", f"/#/crashes/{ids[EVIL_PLUGIN]}", "ol.backtrace",
         EVIL_NAMES + [line for line in evil_log(EVIL_NAMES, build_evil_module(EVIL_NAMES)[1])
                       .splitlines() if line.startswith("#")]),
        ("profiles", f"/#/profiles?{sel}", "#svg-frame", []),
        ("compare", compare, "#diff-table", EVIL_NAMES),
    ]
    for name, path, ready, literal in pages:
        page, watch = open_page(browser, evil, path)
        try:
            page.wait_for_selector(ready, timeout=30_000)
            settle(page, watch)
            text = page.locator("body").inner_text()
            for s in literal:
                assert s in text, f"{name}: {s!r} not shown literally"
            if name in ("profiles", "compare"):
                fid = "#svg-frame" if name == "profiles" else "#diff-frame"
                svg = page.frame_locator(fid)
                svg.locator("g.f").first.wait_for(timeout=30_000)
                titles = "\n".join(svg.locator("g.f > title").all_text_contents())
                for s in EVIL_NAMES:
                    assert s in titles, f"{name}: SVG lost {s!r}"
            if name == "profiles":
                page.frame_locator("#speedscope-frame").locator("canvas").first.wait_for(timeout=30_000)
                page.wait_for_timeout(300)
            _no_execution(page, watch)
            page.screenshot(path=str(artifacts_dir / f"web-security-{name}.png"), full_page=True)
        finally:
            page.context.close()


def test_source_context_with_markup_is_text(evil, browser):
    gid = _group_ids(evil)["inline_chain"]
    page, watch = open_page(browser, evil, f"/#/crashes/{gid}")
    try:
        page.wait_for_selector("ol.backtrace")
        settle(page, watch)
        page.locator("details.source > summary").first.click()
        hit = page.locator(".source-table tr.hit .code")
        hit.wait_for()
        assert hit.inner_text() == EVIL_SOURCE_LINE
        _no_execution(page, watch)
    finally:
        page.context.close()


@pytest.fixture(scope="module")
def locked(tmp_path_factory, data_dir):
    """A server without anonymous access, with one crash and one profile."""
    server = start_server(tmp_path_factory.mktemp("web-locked"), anonymous="")
    try:
        tokens = {scope: create_token(server, f"web-{scope}", scope) for scope in ("read", "ingest")}
        h = {"Authorization": "Bearer " + tokens["ingest"]}
        api = server.url + "/api/v1"
        with httpx.Client(timeout=120, headers=h) as c:
            w = data_dir / "wasm" / "crash_trap.O2.wasm"
            c.post(f"{api}/modules", params={"plugin": "crash_trap"},
                   files={"file": (w.name, w.read_bytes())}).raise_for_status()
            c.post(f"{api}/logs", params={"plugin": "crash_trap"},
                   content=(data_dir / "dumps" / "crash_trap.O2.trap.classic.log").read_bytes()
                   ).raise_for_status()
            c.post(f"{api}/profiles", params={"plugin": "crash_trap", "format": "folded"},
                   content=b"main;route_request;select_upstream 7\nmain;route_request 3\n").raise_for_status()
        yield server, tokens
    finally:
        server.stop()


def test_read_endpoints_require_a_token(locked):
    server, tokens = locked
    for path in ("/api/v1/crash-groups", "/api/v1/modules", "/api/v1/profiles",
                 "/api/v1/web/crash-timeline", "/api/v1/web/sources?file=a.c",
                 "/api/v1/web/source?file=a.c&line=1"):
        assert httpx.get(server.url + path).status_code == 401, path
        r = httpx.get(server.url + path, headers={"Authorization": "Bearer " + tokens["read"]})
        assert r.status_code in (200, 404), (path, r.status_code)
    r = httpx.post(server.url + "/api/v1/sources", files={"file": ("a.c", b"int x;")},
                   headers={"Authorization": "Bearer " + tokens["read"]})
    assert r.status_code == 403


def test_dashboard_asks_for_a_token_and_uses_it(locked, browser, artifacts_dir):
    server, tokens = locked
    page, watch = open_page(browser, server, "/#/crashes")
    try:
        page.get_by_text("This server requires a token").wait_for()
        page.screenshot(path=str(artifacts_dir / "web-token-required.png"))
        page.get_by_role("button", name="Enter token").click()
        page.fill("dialog input[name=token]", "wpt_not_a_real_token")
        page.get_by_role("button", name="Save").click()
        page.get_by_text("invalid or revoked token").wait_for()
        page.get_by_role("button", name="Enter token").click()
        page.fill("dialog input[name=token]", tokens["read"])
        page.get_by_role("button", name="Save").click()
        page.wait_for_selector("table.groups tr[data-group-id]")
        assert "crash_trap" in page.locator("table.groups").inner_text()
        before = len(watch.console_errors)             # the two 401s above are expected
        page.goto(server.url + "/#/profiles?plugin=crash_trap")
        page.frame_locator("#speedscope-frame").locator("canvas").first.wait_for(timeout=30_000)
        img = page.locator("img#svg-frame")            # fetched with the token, shown as image
        img.wait_for()
        wait_for(lambda: page.evaluate("document.querySelector('img#svg-frame').naturalWidth") > 0,
                 what="the SVG image")
        settle(page, watch)
        assert watch.console_errors[before:] == [] and watch.page_errors == []
        assert watch.dialogs == [] and watch.external_requests == []
    finally:
        page.context.close()

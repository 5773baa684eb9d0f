"""The API keeps its OpenAPI contract under generated input: schemathesis (PyPI) runs every
operation of ``/openapi.json`` (read from the server, so a new route is covered the day it is
added) against a real ``wasmprof serve`` on loopback, with an admin token, all checks and
every phase (examples, coverage, fuzzing, stateful through the OpenAPI links). The test
fails on any server error, schema violation or undocumented status.

Bounded: ``SCHEMATHESIS_EXAMPLES`` cases per operation (default 20), a fixed seed
(``SCHEMATHESIS_SEED`` to explore others) and a wall timeout. The server is seeded with one
module, one crash log and one webhook so that the stateful phase reaches real objects
through the links (modules, crash groups, events, webhooks, deliveries); it runs with
``--no-webhook-delivery``, so generated webhook URLs are stored but never contacted.

Checks tuned per operation (``CONFIG`` below), each for a reason no schema can express:
``positive_data_acceptance`` also accepts 400 where the body is a file whose *content* is
parsed (a module, a log, a profile, a sample batch, a source map: "binary" cannot say which
bytes are a Wasm module) or where a rule ties parameters together (a time range, a step
against the data's span). The hooks (``schemathesis_hooks.py``) add a check that such a
400 never names a parameter the request sent (outside the listed cross-field rules), and
point generated scrape-target and plugin-source URLs at a closed loopback port, so the
server's background scrapes and pulls reach nothing outside.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from schemathesis_hooks import CONTENT_PARSED, CROSS_FIELD
from server_proc import ServerProcess, wasmprof_cli

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "20"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20260515"))
WALL = 900

# Operations where a 400 can answer a schema-valid request: their body is file content
# parsed by wasmprof, or a rule ties values together (tables and reasons in
# schemathesis_hooks.py, whose check makes sure such a 400 never names a parameter the
# request sent, except the listed cross-field ones).
ACCEPT_400 = [*CONTENT_PARSED, *CROSS_FIELD]
HOOKS = Path(__file__).resolve().parent / "schemathesis_hooks.py"

# Form fields and query arrays are text on the wire: a "boolean" `true` sent for the string
# field `path`, or `false` for an element of the string array `file`, arrives as the string
# "true"/"false", which is valid. The coverage phase knows this; the fuzzing and stateful
# phases report such values as accepted negative data, so only those two phases skip
# negative_data_rejection, only on these operations.
TEXT_ON_THE_WIRE = ["/api/v1/sources", "/api/v1/web/sources"]

# Every check is on (the top-level `enabled`); the per-operation settings below narrow it.
# (`--checks all` on the command line would override them.)
CONFIG = "checks.enabled = true\n" + "\n".join([*(
    textwrap.dedent(f"""
    [[operations]]
    include-path = "{path}"
    checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
    """) for path in ACCEPT_400), *(
    textwrap.dedent(f"""
    [[operations]]
    include-path = "{path}"
    phases.fuzzing.checks.negative_data_rejection.enabled = false
    phases.stateful.checks.negative_data_rejection.enabled = false
    """) for path in TEXT_ON_THE_WIRE)])


@pytest.fixture(scope="module")
def api(tmp_path_factory, data_dir):
    data = tmp_path_factory.mktemp("schemathesis")
    out = wasmprof_cli("token", "create", "schemathesis", "--scopes", "admin", "--json",
                       "--data", str(data))
    token = json.loads(out.stdout)["token"]
    server = ServerProcess(data, extra_args=["--rate-limit", "0", "--quiet",
                                             "--no-webhook-delivery"]).start()
    with server.client(token) as c:
        wasm = data_dir / "wasm" / "crash_trap.O2.wasm"
        r = c.post("/api/v1/modules", params={"plugin": "crash-trap", "version": "1.0"},
                   files={"file": (wasm.name, wasm.read_bytes())})
        assert r.status_code == 201, r.text
        log = (data_dir / "dumps" / "crash_trap.O2.trap.classic.log").read_bytes()
        r = c.post("/api/v1/logs", params={"plugin": "crash-trap", "version": "1.0"},
                   content=log)
        assert r.status_code == 200 and r.json()["crashes"] >= 1, r.text
        r = c.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                             "events": ["crash.new_group"]})
        assert r.status_code == 201, r.text
        r = c.post(f"/api/v1/webhooks/{r.json()['id']}/test")
        assert r.status_code == 202, r.text
    server.token = token
    yield server
    server.stop()


def test_openapi_contract_holds_under_schemathesis(api, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(config), "run",
           f"{api.url}/openapi.json",
           "--phases", "examples,coverage,fuzzing,stateful",
           "-H", f"Authorization: Bearer {api.token}",
           "--max-examples", str(EXAMPLES), "--seed", str(SEED), "--workers", "1",
           "--request-timeout", "30", "--generation-database", "none",
           "--report", "junit", "--report-dir", str(report)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WALL, cwd=tmp_path,
                          env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false",
                               "SCHEMATHESIS_HOOKS": HOOKS.stem,
                               "PYTHONPATH": os.pathsep.join(
                                   [str(HOOKS.parent), os.environ.get("PYTHONPATH", "")])})
    out = proc.stdout + proc.stderr
    (tmp_path / "schemathesis.out").write_text(out)
    assert proc.returncode == 0, out[-20000:]
    links = re.search(r"API Links:\s+(\d+) covered", out)      # the stateful phase used links
    assert links and int(links.group(1)) > 0, out[-4000:]
    log = api.log_tail(1 << 22)
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-4000:]

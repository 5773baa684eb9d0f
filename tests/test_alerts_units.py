"""Alerts building blocks: signing, payload escaping, retry policy, detection rules."""

from __future__ import annotations

import email.utils
import random
import re
from pathlib import Path

import orjson
import pytest

from wasmprof.alerts import payloads, signing
from wasmprof.alerts.events import (AlertEvent, AlertFrame, EventType, function_shares,
                                    parse_event_list, profile_regressions, spike_due)
from wasmprof.alerts.retry import Outcome, RetryPolicy, classify_status, parse_retry_after
from wasmprof.alerts.webhooks import WebhookSpec, spec_from_dict, validate, validate_url
from wasmprof.errors import UsageError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"


def documented_verifier():
    """The receiver snippet from docs/webhooks.md, executed as a user would paste it."""
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next(b for b in blocks if "def verify_wasmprof" in b)
    ns: dict = {"__name__": "receiver_snippet"}
    exec(compile(code, str(DOCS), "exec"), ns)  # noqa: S102 - our own documentation
    return ns["verify_wasmprof"]


def test_signature_matches_documented_verifier_and_rejects_tampering():
    verify = documented_verifier()
    body = b'{"event":"crash.new_group","plugin":"p"}'
    headers = signing.signed_headers("s3cret-value", body, delivery_id="dlv_1",
                                     event="crash.new_group")
    assert headers["X-Wasmprof-Signature"].startswith("sha256=")
    assert verify("s3cret-value", body, headers)
    assert signing.verify("s3cret-value", body, headers["X-Wasmprof-Timestamp"],
                          headers["X-Wasmprof-Signature"])
    assert not verify("other-secret", body, headers)
    assert not verify("s3cret-value", body + b" ", headers)
    old = signing.signed_headers("s3cret-value", body, delivery_id="d", event="e",
                                 timestamp=1_000_000)
    assert not verify("s3cret-value", body, old)          # replay outside tolerance
    assert not signing.verify("s3cret-value", body, "12x", "sha256=00")


def test_signature_is_hmac_over_timestamp_dot_body():
    import hashlib
    import hmac
    sig = signing.signature("k" * 10, 1700000000, b"{}")
    want = hmac.new(b"k" * 10, b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sig == "sha256=" + want


@pytest.mark.parametrize("status,outcome", [
    (200, Outcome.DELIVERED), (204, Outcome.DELIVERED), (408, Outcome.RETRY),
    (429, Outcome.RETRY), (500, Outcome.RETRY), (503, Outcome.RETRY), (302, Outcome.FAILED),
    (400, Outcome.FAILED), (401, Outcome.FAILED), (404, Outcome.FAILED), (410, Outcome.FAILED)])
def test_classify_status(status, outcome):
    assert classify_status(status) is outcome


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("7") == 7.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0, abs=1.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


def test_backoff_grows_exponentially_with_bounded_jitter_and_cap():
    p = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=0.25)
    rng = random.Random(7)
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (40, 8.0)]:
        for _ in range(20):
            d = p.backoff(attempt, rng)
            assert 0.75 * full <= d <= full
    # Retry-After wins over backoff, but is capped
    p2 = RetryPolicy(base_delay=0.01, max_retry_after=60)
    assert p2.next_delay(1, 5.0) == 5.0
    assert p2.next_delay(1, 10_000.0) == 60.0


def test_policy_from_env_validates():
    p = RetryPolicy.from_env({"WASMPROF_WEBHOOK_BASE_DELAY": "0.05",
                              "WASMPROF_WEBHOOK_MAX_ATTEMPTS": "3"})
    assert p.base_delay == 0.05 and p.max_attempts == 3
    with pytest.raises(UsageError, match="WASMPROF_WEBHOOK_TIMEOUT"):
        RetryPolicy.from_env({"WASMPROF_WEBHOOK_TIMEOUT": "fast"})
    with pytest.raises(UsageError):
        RetryPolicy.from_env({"WASMPROF_WEBHOOK_MAX_ATTEMPTS": "0"})


def test_event_list_parsing():
    assert parse_event_list("crash.new_group, crash.regressed") == [
        EventType.CRASH_NEW_GROUP, EventType.CRASH_REGRESSED]
    assert EventType.CRASH_SPIKE in parse_event_list("crash.*")
    with pytest.raises(ValueError, match="crash.nope"):
        parse_event_list("crash.nope")
    with pytest.raises(ValueError):
        parse_event_list("alerts.digest")
    with pytest.raises(ValueError):
        parse_event_list(" , ")


def test_webhook_validation_names_the_field():
    good = validate(WebhookSpec("https://h.example/x", [EventType.CRASH_NEW_GROUP]))
    assert good.rate_limit == 20
    for url in ["ftp://h/x", "http://", "/relative", "http://h/\x1b[2J", "http://h x/",
                "http://h:0/"]:
        with pytest.raises(UsageError):
            validate_url(url)
    with pytest.raises(UsageError) as e:
        validate(WebhookSpec("http://h/", [EventType.CRASH_SPIKE], format="xml"))
    assert e.value.source == "format"
    with pytest.raises(UsageError) as e:
        validate(WebhookSpec("http://h/", [EventType.CRASH_SPIKE], rate_limit=0))
    assert e.value.source == "rate_limit"
    with pytest.raises(UsageError) as e:
        spec_from_dict({"url": "http://h/", "events": ["crash.new_group"], "evil": 1})
    assert "evil" in str(e.value)
    with pytest.raises(UsageError):
        spec_from_dict({"url": "http://h/", "events": "crash.bogus"})


HOSTILE = "x<!channel> <https://evil|click>\x1b[31m`​``\u202e"


def _hostile_event() -> AlertEvent:
    return AlertEvent(EventType.CRASH_NEW_GROUP, "k", 1_700_000_000.0, plugin=HOSTILE,
                      module_version="1\n2", trap_kind="unreachable", group_id="7",
                      frames=[AlertFrame(HOSTILE, "a<b>.c", 3, "exact")], count=1,
                      first_seen=1_700_000_000.0, last_seen=1_700_000_000.0)


def test_slack_payload_escapes_attacker_controlled_names():
    body = orjson.loads(payloads.render(_hostile_event(), "slack", delivery_id="d",
                                        base_url="http://w"))
    texts = [body["text"]]

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "text" and isinstance(v, str):
                    texts.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(body["blocks"])
    joined = "\n".join(texts)
    assert "<!channel>" not in joined and "<https://evil" not in joined
    assert "&lt;!channel&gt;" in joined
    assert "\x1b" not in joined and "\u202e" not in joined
    # the only real link is ours
    assert re.findall(r"<([^>|]+)\|", joined) == ["http://w/#/crashes/7"]
    code = [t for t in texts if t.startswith("```")]
    assert code and all(t.count("```") == 2 for t in code)


def test_json_payload_keeps_fields_and_cleans_control_chars():
    body = orjson.loads(payloads.render(_hostile_event(), "json", delivery_id="dlv_x",
                                        base_url="http://w/"))
    assert body["delivery_id"] == "dlv_x" and body["event"] == "crash.new_group"
    assert body["first_seen"] == "2023-11-14T22:13:20Z"
    assert body["module_version"] == "1 2"
    assert "\x1b" not in body["plugin"] and "\\x1b" in body["plugin"]
    assert body["top_frames"][0]["location"] == "a<b>.c:3"
    assert body["links"] == {"dashboard": "http://w/#/crashes/7",
                             "api": "http://w/api/v1/crash-groups/7"}


def test_digest_counts_every_event():
    evs = [AlertEvent(EventType.CRASH_NEW_GROUP, f"k{i}", 1.0, plugin=f"p{i % 3}",
                      group_id=str(i)) for i in range(45)]
    body = orjson.loads(payloads.render_digest(evs, "json", delivery_id="d", base_url="http://w",
                                               window_start=0, window_end=60))
    assert body["total"] == 45 and body["by_event"] == {"crash.new_group": 45}
    assert len(body["events"]) == 20 and body["omitted"] == 25
    slack = orjson.loads(payloads.render_digest(evs, "slack", delivery_id="d",
                                                base_url="http://w", window_start=0,
                                                window_end=60))
    assert "45 alerts" in slack["text"]


def test_spike_rule_fires_once_per_window():
    assert not spike_due(4, 5, None, 100.0, 60.0)
    assert spike_due(5, 5, None, 100.0, 60.0)
    assert not spike_due(9, 5, 90.0, 100.0, 60.0)
    assert spike_due(9, 5, 30.0, 100.0, 60.0)


def test_profile_regression_on_self_and_total_share():
    baseline = function_shares([(("sha256_block", "hmac", "main"), 30),
                                (("parse", "main"), 60), (("main",), 10)])
    current = function_shares([(("sha256_block", "hmac", "main"), 55),
                               (("parse", "main"), 35), (("main",), 10)])
    assert baseline["main"] == (10.0, 100.0)
    regs = profile_regressions(baseline, current, 5.0, baseline_desc="v1", current_desc="v2")
    names = {(r.function, r.metric) for r in regs}
    assert ("sha256_block", "self") in names
    assert all(r.function != "parse" for r in regs)          # it shrank
    top = regs[0]
    assert top.delta_points == pytest.approx(25.0) and top.baseline_share == pytest.approx(30.0)
    assert profile_regressions(baseline, current, 30.0) == []
    # recursion counts once per stack for the total share
    rec = function_shares([(("f", "f", "f"), 1), (("g",), 1)])
    assert rec["f"] == (50.0, 50.0)

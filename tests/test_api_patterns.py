"""The OpenAPI patterns say what the parsers behind them accept.

A route's schema is its validator (ARCHITECTURE.md, "HTTP routes"), so each pattern written
for a parser must not allow what the parser refuses (schemathesis would send it and get a
400) and, where the pattern is meant to be the whole grammar, must allow what the parser
takes. Both directions are checked with bounded hypothesis runs: strings generated from the
pattern go through the parser; strings over the grammar's alphabet that the parser takes
must match the pattern.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasmprof.errors import WasmprofError

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def matching(pattern: str, max_size: int | None = None):
    s = st.from_regex(pattern, fullmatch=True)
    return s.filter(lambda v: len(v) <= max_size) if max_size else s


# -- times ------------------------------------------------------------------------------------

@SETTINGS
@given(matching(__import__("wasmprof.server.contract", fromlist=["x"]).TIME_PATTERN))
def test_every_time_the_pattern_allows_parses_in_range(value):
    from wasmprof.server.profile_query import parse_time
    from wasmprof.server.routes_health import parse_when
    t = parse_time(value, "from")
    assert t is not None and 0 <= t < 1e11
    assert parse_when(value, "from") == t


@pytest.mark.parametrize("value,ok", [
    ("1715000000", True), ("1715000000.25", True), ("2026-05-15", True),
    ("2026-05-15T10:20", True), ("2026-05-15 10:20:30.5Z", True),
    ("2024-02-29T00:00+05:30", True), ("2026-02-29", False), ("2026-13-01", False),
    ("yesterday", False), ("nan", False), ("-5", False), ("1e9", False), ("2100-02-29", False)])
def test_time_pattern_examples(value, ok):
    from wasmprof.server.contract import TIME_PATTERN
    assert bool(re.match(TIME_PATTERN, value)) is ok


# -- labels -----------------------------------------------------------------------------------

@SETTINGS
@given(matching(__import__("wasmprof.server.contract", fromlist=["x"]).LABELS_PATTERN))
def test_every_label_list_the_pattern_allows_is_stored_as_is(value):
    from wasmprof.server.profile_query import parse_labels
    from wasmprof.server.routes_api import _text_param
    labels = parse_labels(value)
    assert len(labels) <= 64
    for k, v in labels.items():
        _text_param(k, "label name")
        _text_param(v, "label")
        assert ":" not in v or "=" not in k


# -- comma lists ------------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_metric_lists_the_pattern_allows_name_metrics(data):
    from wasmprof.model import HealthMetric
    from wasmprof.server.contract import comma_list_pattern
    from wasmprof.server.routes_health import _metrics
    value = data.draw(matching(comma_list_pattern(m.value for m in HealthMetric), 2000))
    got = _metrics(value) or []
    assert all(m in HealthMetric._value2member_map_ for m in got)


# -- URLs -------------------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_every_scrape_url_the_pattern_allows_is_a_target_url(data):
    from wasmprof.health.targets import validate_url
    from wasmprof.server.bodies_health import SCRAPE_URL_PATTERN
    assert validate_url(data.draw(matching(SCRAPE_URL_PATTERN, 2048)))


@pytest.mark.parametrize("url", ["http://ops:s3cret@10.0.0.5:15000/stats/prometheus?x=1",
                                 "http://[::1]:15000/stats/prometheus", "http://gw_1:15090/s",
                                 "https://gw.example.com/stats/prometheus"])
def test_scrape_urls_users_write_match(url):
    from wasmprof.server.bodies_health import SCRAPE_URL_PATTERN
    assert re.match(SCRAPE_URL_PATTERN, url)


# -- OCI references ---------------------------------------------------------------------------

_REF_ALPHABET = st.sampled_from(list("ab0Z.-_/:@[]1") + ["sha256:" + "a" * 64, "oci://",
                                                          "localhost", "__", "{version}"])


def _parses(text: str) -> bool:
    from wasmprof.oci.reference import parse_reference
    try:
        parse_reference(text)
    except WasmprofError:
        return False
    return True


@SETTINGS
@given(st.data())
def test_every_reference_the_pattern_allows_parses(data):
    from wasmprof.oci.reference import REFERENCE_PATTERN, parse_reference
    ref = parse_reference(data.draw(matching(REFERENCE_PATTERN, 1024)))
    assert ref.repository and ref.registry


def test_a_long_repository_parses_as_the_pattern_says():
    """The pattern has no length bound on the repository (none can be said in one), so the
    parser has none either: a 300-character name is the registry's to refuse."""
    from wasmprof.oci.reference import REFERENCE_PATTERN, parse_reference
    from wasmprof.server.bodies_sources import SourceBody
    repo = "/".join(["a" * 59] * 5)
    assert len(repo) == 299
    for ref in (f"oci://r.example.com:5000/{repo}:v1", f"{repo}@sha256:{'a' * 64}", "x" * 300):
        assert re.match(REFERENCE_PATTERN, ref), ref
        assert SourceBody(url=ref).url == ref
        assert parse_reference(ref).repository.endswith(repo if "/" in ref else "x" * 300)


@SETTINGS
@given(st.lists(_REF_ALPHABET, min_size=1, max_size=12).map("".join))
def test_every_reference_that_parses_matches_the_pattern(text):
    from wasmprof.oci.reference import REFERENCE_PATTERN
    if text == text.strip() and _parses(text):
        assert re.match(REFERENCE_PATTERN, text), text
    elif re.match(REFERENCE_PATTERN, text):
        assert _parses(text), text


@SETTINGS
@given(st.data())
def test_every_source_url_the_pattern_allows_is_a_plugin_source(data):
    from wasmprof.server.bodies_sources import SOURCE_URL_PATTERN
    from wasmprof.sources.plugin_sources import source_from_body
    url = data.draw(matching(SOURCE_URL_PATTERN, 1024))
    src = source_from_body("p", {"url": url}, None)
    assert src.url == url


@SETTINGS
@given(st.lists(_REF_ALPHABET, min_size=1, max_size=12).map("".join))
def test_every_source_url_that_is_taken_matches_the_pattern(text):
    from wasmprof.server.bodies_sources import SOURCE_URL_PATTERN
    from wasmprof.sources.plugin_sources import source_from_body
    try:
        source_from_body("p", {"url": text}, None)
        taken = text == text.strip()
    except WasmprofError:
        taken = False
    assert bool(re.match(SOURCE_URL_PATTERN, text)) == taken, text


@pytest.mark.parametrize("url,ok", [
    ("oci://ghcr.io/acme/bot-detect:{version}", True), ("oci://r.example.com/p:v{version}-aot", True),
    ("oci://r.example.com/p{version}:1", False), ("oci://r.example.com/p:{version}@sha256:" + "a" * 64, False),
    ("oci://r.example.com/p:" + "x" * 64 + "{version}", False),
    ("envoyproxy/ratelimit:1.0", True), ("oci://localhost:5000/a/b@sha256:" + "0" * 64, True)])
def test_source_url_examples(url, ok):
    from wasmprof.server.bodies_sources import SOURCE_URL_PATTERN
    from wasmprof.sources.plugin_sources import source_from_body
    assert bool(re.match(SOURCE_URL_PATTERN, url)) is ok
    if ok:
        source_from_body("p", {"url": url}, None)
    else:
        with pytest.raises(WasmprofError):
            source_from_body("p", {"url": url}, None)


# -- Pyroscope application names --------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_every_pyroscope_name_the_pattern_allows_parses(data):
    from wasmprof.server.routes_profiles import PYROSCOPE_NAME_PATTERN, parse_pyroscope_name
    app, labels = parse_pyroscope_name(data.draw(matching(PYROSCOPE_NAME_PATTERN, 1000)))
    assert app and len(app) <= 200 and all(len(k) <= 200 for k in labels)


@pytest.mark.parametrize("name,ok", [
    ("bot-detect", True), ("bot-detect.cpu{env=prod,region=eu}", True), ("app{}", True),
    ("app{ , k = v=w }", True), ("  {a=b}", False), ("app{a}", False), ("{a=b}", False),
    ("app{a=b}{c=d}", False), ("x" * 201, False)])
def test_pyroscope_name_examples(name, ok):
    from wasmprof.server.routes_profiles import PYROSCOPE_NAME_PATTERN, parse_pyroscope_name
    assert bool(re.match(PYROSCOPE_NAME_PATTERN, name)) is ok
    if ok:
        parse_pyroscope_name(name)

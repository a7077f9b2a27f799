"""The query API under hostile and generated input, on the real ClickHouse engine.

* schemathesis drives every operation of the OpenAPI document: no request may answer 5xx;
* injection attempts (quotes, comments, UNION, SETTINGS clauses, statement separators) through every
  parameter answer 4xx, or 200 with nothing found (the payload was searched for as data), and change
  nothing: the same tables with the same row counts, and the engine still writable afterwards;
* ClickHouse's own limits stop slow and huge queries (422), operator-added sources work end to end and
  persist, and the web UI's static hook serves files without shadowing /api.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from apps.bench.query import logs_sql, red_sql, traces_sql
from maple import clickhouse, schema
from maple.settings import Settings
from query.app import create_app
from query.auth import Auth
from query.context import Context
from query.health import HealthMonitor
from query.reader import Reader
from query.sources import Sources
from query.store import Store
from tests.helpers.access import bearer, query_key

NS = 1_000_000_000


@dataclasses.dataclass
class Api:
    app: FastAPI
    client: TestClient
    settings: Settings
    database: str
    admin: Any  # a clickhouse-connect client with write access, for setting up and checking state
    anchor_ns: int
    store_url: str


def _settings(base: Settings, database: str, kafka: str, **api: Any) -> Settings:
    return dataclasses.replace(base, clickhouse=dataclasses.replace(base.clickhouse, database=database),
                               kafka=dataclasses.replace(base.kafka, bootstrap=kafka),
                               api=dataclasses.replace(base.api, **api))


def _app(settings: Settings, store_url: str) -> tuple[FastAPI, Context, dict[str, str]]:
    """The app, its context, and the headers of an admin key of the default team (the tenant of the rows)."""
    reader = Reader(settings)
    store = Store(store_url)
    store.migrate()
    context = Context(settings, reader, Sources(reader, store), store, HealthMonitor(settings, reader),
                      auth=Auth(settings, store))
    return create_app(settings, context=context), context, bearer(query_key(store))


def _close(context: Context) -> None:
    if context.health is not None:
        context.health.stop()
    context.reader.close()
    if context.store is not None:
        context.store.close()


@pytest.fixture(scope="module")
def api(clickhouse_settings: Settings, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    database = f"qsafe_{uuid.uuid4().hex[:10]}"
    admin = clickhouse.connect(clickhouse_settings, in_process=False)
    schema.apply(admin, schema.Target(database, 0), say=lambda _: None)
    anchor = time.time_ns() // NS * NS
    admin.command(logs_sql(database, 5000, anchor - 3600 * NS, 3600))
    admin.command(traces_sql(database, 800, anchor - 3600 * NS, 3600))
    for statement in red_sql(database):
        admin.command(statement)
    store_url = f"sqlite:///{tmp_path_factory.mktemp('meta') / 'meta.db'}"
    settings = _settings(clickhouse_settings, database, kafka_bootstrap)
    app, context, headers = _app(settings, store_url)
    try:
        with TestClient(app, headers=headers) as client:
            yield Api(app, client, settings, database, admin, anchor, store_url)
    finally:
        _close(context)
        admin.command(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


def _state(api: Api) -> list[tuple[str, int]]:
    tables = api.admin.query("SELECT name FROM system.tables WHERE database = {d:String} AND engine NOT LIKE "
                             "'%View%' ORDER BY name", parameters={"d": api.database}).result_rows
    return [(name, api.admin.query(f"SELECT count() FROM `{api.database}`.`{name}`").result_rows[0][0])
            for (name,) in tables]


# -- schemathesis ----------------------------------------------------------------------------------


def test_no_generated_request_answers_5xx(api: Api, tmp_path: Path) -> None:
    """Every operation of the OpenAPI document, with requests generated from it (schemathesis + hypothesis),
    as an admin of the team (its own metadata store: generated requests revoke keys and remove users).

    Driven operation by operation here rather than with schemathesis' pytest fixture integration, which
    reaches into pytest internals that pytest 9 no longer has."""
    app, context, headers = _app(api.settings, f"sqlite:///{tmp_path / 'meta.db'}")
    generated = schemathesis.openapi.from_asgi("/api/openapi.json", app).exclude(path="/api/v1/logs/tail")
    failures: list[str] = []
    operations = 0
    for result in generated.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            if response.status_code >= 500 or (response.status_code >= 400 and "error" not in response.json()):
                failures.append(f"{case.method} {case.formatted_path} query={case.query} body={case.body!r}: "
                                f"{response.status_code} {response.text[:300]}")

        run()
    _close(context)
    assert operations >= 30
    assert not failures, "\n".join(failures[:20])


def test_integers_out_of_range_answer_4xx_naming_the_field(api: Api) -> None:
    """Integers bound for SQLite (ids) or ClickHouse (limits, widths, cursors) are checked by the request models:
    a value past what the store takes answers 4xx naming the field, never 500, and the OpenAPI document says
    the bounds, so that generated requests know them (schemathesis found the first of these as a 500)."""
    huge = 2**63
    rule = {"condition": {"group_by_service": False, "kind": "search"}, "name": "x", "description": "x",
            "enabled": False, "for_s": 100, "interval_s": 1, "webhooks": [9223372036854775808]}
    cursor = base64.urlsafe_b64encode(json.dumps({"v": 1, "k": "logs", "t": huge, "h": 1}).encode()).decode()
    cases: list[tuple[str, str, dict[str, Any], dict[str, Any] | None, str]] = [
        ("PUT", "/api/v1/alerts/1", {}, rule, "webhooks"),
        ("POST", "/api/v1/alerts", {}, rule, "webhooks"),
        ("POST", "/api/v1/alerts/preview", {}, rule, "webhooks"),
        ("POST", "/api/v1/alerts", {}, {**rule, "webhooks": [], "interval_s": huge}, "interval_s"),
        ("POST", "/api/v1/alerts", {}, {**rule, "webhooks": [], "for_s": -huge}, "for_s"),
        ("POST", "/api/v1/silences", {}, {"rule_id": huge, "ends_at": "1h"}, "rule_id"),
        ("POST", "/api/v1/silences", {}, {"rule_id": 0, "ends_at": "1h"}, "rule_id"),
        ("GET", "/api/v1/alerts/1/history", {"limit": huge}, None, "limit"),
        ("GET", "/api/v1/logs/search", {"limit": huge}, None, "limit"),
        ("GET", "/api/v1/logs/search", {"limit": -huge}, None, "limit"),
        ("GET", "/api/v1/logs/top", {"field": "service", "limit": huge}, None, "limit"),
        ("GET", "/api/v1/logs/aggregate", {"interval": huge}, None, "interval"),
        ("GET", "/api/v1/logs/search", {"cursor": cursor.rstrip("=")}, None, "cursor"),
        ("GET", "/api/v1/traces/search", {"limit": huge}, None, "limit"),
        ("GET", "/api/v1/traces/search", {"cursor": base64.urlsafe_b64encode(json.dumps(
            {"v": 1, "k": "traces", "t": huge, "id": "ab"}).encode()).decode()}, None, "cursor"),
        ("GET", "/api/v1/metrics/series", {"metric": "traces.span.metrics.calls", "limit": huge}, None, "limit"),
        ("GET", "/api/v1/metrics/query", {"metric": "traces.span.metrics.calls", "step": huge}, None, "step"),
    ]
    client = TestClient(api.app, headers=dict(api.client.headers), raise_server_exceptions=False)
    wrong = []
    for method, path, params, body, field in cases:
        response = client.request(method, path, params=params, json=body)
        error = response.json().get("error", {})
        if not (400 <= response.status_code < 500 and (error.get("field") or "").split(".")[0] == field
                and field in error.get("message", "")):
            wrong.append(f"{method} {path} {params} {body}: {response.status_code} {response.text[:200]}")
    assert not wrong, "\n".join(wrong)
    # JSON's 1e400 is infinity, which the stored spec would keep as null: a rule nothing could read back.
    infinite = api.client.post("/api/v1/alerts", content=json.dumps({**rule, "webhooks": []}).replace(
        '"kind": "search"', '"kind": "search", "threshold": 1e400'), headers={"content-type": "application/json"})
    assert infinite.status_code == 400 and infinite.json()["error"]["field"] == "condition.search.threshold", \
        infinite.text
    # The bounds themselves are values ClickHouse takes.
    widest = api.client.get("/api/v1/logs/aggregate", params={"interval": 2**31 - 1, "from": "now-1h"})
    assert widest.status_code == 200 and widest.json()["interval_s"] == 2**31 - 1, widest.text
    last = base64.urlsafe_b64encode(json.dumps({"v": 1, "k": "logs", "t": huge - 1, "h": 1}).encode()).decode()
    assert api.client.get("/api/v1/logs/search", params={"cursor": last}).status_code == 200
    schemas = api.client.get("/api/openapi.json").json()["components"]["schemas"]
    assert schemas["RuleSpec"]["properties"]["webhooks"]["items"]["maximum"] < 2**63
    rule_id = schemas["SilenceSpec"]["properties"]["rule_id"]["anyOf"][0]
    assert rule_id["minimum"] == 1 and rule_id["maximum"] < 2**63
    parameters = {p["name"]: p["schema"] for p in api.client.get("/api/openapi.json").json()["paths"][
        "/api/v1/logs/aggregate"]["get"]["parameters"]}
    assert parameters["interval"]["anyOf"][0]["maximum"] < 2**32
    search = {p["name"]: p["schema"] for p in api.client.get("/api/openapi.json").json()["paths"][
        "/api/v1/logs/search"]["get"]["parameters"]}
    assert search["limit"]["anyOf"][0]["minimum"] == 1 and search["limit"]["anyOf"][0]["maximum"] <= 100_000


# -- injection -------------------------------------------------------------------------------------

PAYLOADS = [
    "'", "\"", "`", "\\", "' OR '1'='1", "\" OR \"\"=\"", "1; DROP TABLE otel_logs", "x'; DROP DATABASE default; --",
    "' UNION SELECT name, name FROM system.tables --", "x' UNION ALL SELECT * FROM system.users --",
    "*/ SELECT 1 /*", "-- comment", "1 SETTINGS readonly = 0", "' SETTINGS max_execution_time = 0 --",
    ")) OR 1=1 --", "{q0:String}", "{start:Int64}", "`otel_logs`", "%' --", "a\x00b", "\u2019 OR 1=1",
    "'); INSERT INTO otel_logs (Body) VALUES ('pwned'); --", "$(rm -rf /)", "${jndi:ldap://x}",
]
# Each endpoint, the parameter under test, and the other parameters it needs. The key that holds results
# must come back empty when the answer is 200: the payload was looked for as data, not run as SQL.
TARGETS: list[tuple[str, str, dict[str, str], str | None]] = [
    ("/api/v1/logs/search", "q", {}, "rows"),
    ("/api/v1/logs/search", "service", {}, "rows"),
    ("/api/v1/logs/search", "severity", {}, "rows"),
    ("/api/v1/logs/search", "source", {}, None),
    ("/api/v1/logs/search", "cursor", {}, None),
    ("/api/v1/logs/search", "from", {}, None),
    ("/api/v1/logs/search", "to", {}, None),
    ("/api/v1/logs/search", "limit", {}, None),
    ("/api/v1/logs/aggregate", "group_by", {}, None),
    ("/api/v1/logs/aggregate", "q", {}, "buckets"),
    ("/api/v1/logs/aggregate", "interval", {}, None),
    ("/api/v1/logs/top", "field", {}, None),
    ("/api/v1/logs/fields", "source", {}, None),
    ("/api/v1/traces/search", "q", {}, "traces"),
    ("/api/v1/traces/search", "service", {}, "traces"),
    ("/api/v1/traces/search", "span_name", {}, "traces"),
    ("/api/v1/traces/search", "status", {}, None),
    ("/api/v1/traces/search", "min_duration_ms", {}, None),
    ("/api/v1/traces/search", "cursor", {}, None),
    ("/api/v1/traces/services", "span_kind", {}, None),
    ("/api/v1/traces/dependencies", "source", {}, None),
    ("/api/v1/metrics/names", "prefix", {}, "metrics"),
    ("/api/v1/metrics/labels", "metric", {}, None),
    ("/api/v1/metrics/series", "metric", {}, None),
    ("/api/v1/metrics/query", "query", {}, None),
    ("/api/v1/metrics/query", "metric", {}, None),
    ("/api/v1/metrics/query", "filter", {"metric": "traces.span.metrics.calls"}, "series"),
    ("/api/v1/metrics/query", "by", {"metric": "traces.span.metrics.calls", "agg": "sum"}, "label"),
    ("/api/v1/metrics/query", "step", {"metric": "traces.span.metrics.calls"}, None),
]


def test_injection_through_every_parameter_answers_4xx_or_nothing_and_changes_nothing(api: Api) -> None:
    before = _state(api)
    answered: dict[int, int] = {}
    for path, name, extra, results in TARGETS:
        for payload in PAYLOADS:
            response = api.client.get(path, params={**extra, name: payload})
            answered[response.status_code] = answered.get(response.status_code, 0) + 1
            assert response.status_code < 500, (path, name, payload, response.text[:300])
            if response.status_code == 200 and results == "label":
                # grouping by a label no series has is PromQL: one group, the label's value empty
                series = response.json()["series"]
                assert [s["labels"] for s in series] == [{payload: ""}], (payload, response.text[:300])
            elif response.status_code == 200:
                assert results is not None, (path, name, payload, "accepted a value it should refuse")
                assert response.json()[results] == [], (path, name, payload, response.text[:300])
            else:
                assert 400 <= response.status_code < 500 and "error" in response.json()
    for raw in PAYLOADS:  # path parameters
        payload = urllib.parse.quote(raw, safe="")
        for path in (f"/api/v1/traces/{payload}", f"/api/v1/sources/{payload}"):
            response = api.client.get(path)
            assert 400 <= response.status_code < 500, (path, response.status_code)
        response = api.client.delete(f"/api/v1/sources/{payload}")
        assert 400 <= response.status_code < 500
    statements = [
        "DROP TABLE otel_logs", "SELECT 1; DROP TABLE otel_logs", "SELECT 1 -- x\n; TRUNCATE TABLE otel_logs",
        "INSERT INTO otel_logs (Body) VALUES ('x')", "ALTER TABLE otel_logs DELETE WHERE 1",
        "SELECT * FROM otel_logs SETTINGS readonly = 0", "SET readonly = 0",
        "SELECT * FROM otel_logs FORMAT Native", "SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')",
        "SELECT * FROM file('/etc/passwd', LineAsString)", "CREATE TABLE x (a Int) ENGINE = Memory",
        "SELECT 1 INTO OUTFILE '/tmp/x'", "OPTIMIZE TABLE otel_logs FINAL", "SYSTEM STOP MERGES",
        "KILL QUERY WHERE 1", "GRANT ALL ON *.* TO default", "/* SELECT */ DROP TABLE otel_logs",
        "EXPLAIN SELECT 1; DROP TABLE otel_logs", "WITH 1 AS x DELETE FROM otel_logs WHERE 1",
        "SELECT * FROM remote('127.0.0.1', system.one)", "SELECT 'a' ; SELECT 'b'",
    ]
    for statement in statements:
        response = api.client.post("/api/v1/sql", json={"sql": statement})
        assert 400 <= response.status_code < 500, (statement, response.status_code, response.text[:300])
    assert _state(api) == before
    assert answered.get(400, 0) > 0 and answered.get(200, 0) > 0
    # The read-only requests left no read-only session behind: the engine still takes writes.
    scratch = f"`{api.database}`.scratch"
    api.admin.command(f"CREATE TABLE {scratch} (a Int32) ENGINE = MergeTree ORDER BY a")
    for _ in range(8):  # every connection of the host's pool
        api.admin.command(f"INSERT INTO {scratch} VALUES (1)")
    assert api.admin.query(f"SELECT count() FROM {scratch}").result_rows == [(8,)]
    api.admin.command(f"DROP TABLE {scratch}")


# -- limits ----------------------------------------------------------------------------------------


def test_clickhouse_limits_stop_slow_and_huge_queries(api: Api, tmp_path: Path) -> None:
    settings = _settings(api.settings, api.database, api.settings.kafka.bootstrap, max_execution_time_s=1,
                         sql_max_rows=5, sql_max_rows_to_read=1_000_000)
    app, context, headers = _app(settings, f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        client = TestClient(app, headers=headers)
        began = time.monotonic()
        # Seconds of CPU over 8e9 joined rows, reading 6,000 rows and holding almost no memory, so only
        # max_execution_time can stop it (an array-heavy query hit the memory limit first on some runs).
        busy = "SELECT count() FROM numbers(2000) AS a, numbers(2000) AS b, numbers(2000) AS c"
        slow = client.post("/api/v1/sql", json={"sql": busy})
        assert slow.status_code == 422 and slow.json()["error"]["code"] == "limit_exceeded", slow.text
        assert "timeout" in slow.json()["error"]["message"].lower()
        assert time.monotonic() - began < 10
        huge = client.post("/api/v1/sql", json={"sql": "SELECT count() FROM numbers(100000000)"})
        assert huge.status_code == 422 and "max_rows_to_read" in huge.json()["error"]["message"], huge.text
        cut = client.post("/api/v1/sql", json={"sql": "SELECT number FROM numbers(100)"}).json()
        assert cut["rows"] == [[0], [1], [2], [3], [4]] and cut["truncated"] is True
        whole = client.post("/api/v1/sql", json={"sql": "SELECT number FROM numbers(3)"}).json()
        assert whole["rows"] == [[0], [1], [2]] and whole["truncated"] is False
    finally:
        _close(context)


def test_bad_requests_name_the_problem(api: Api) -> None:
    cases = [
        ("/api/v1/logs/search", {"q": "level:(error"}, "syntax_error", "q"),
        ("/api/v1/logs/search", {"q": "nosuchfield:x"}, "unknown_field", "q"),
        ("/api/v1/logs/search", {"from": "now", "to": "now-1h"}, "invalid_parameter", "from"),
        ("/api/v1/logs/search", {"from": "now-400d"}, "invalid_parameter", "from"),
        ("/api/v1/logs/search", {"limit": "1000000"}, "invalid_parameter", "limit"),
        ("/api/v1/logs/search", {"limit": "0"}, "invalid_parameter", "limit"),
        ("/api/v1/logs/search", {"limit": "ten"}, "invalid_parameter", "limit"),
        ("/api/v1/logs/search", {"cursor": "nope"}, "invalid_parameter", "cursor"),
        ("/api/v1/logs/search", {"source": "traces"}, "invalid_parameter", "source"),
        ("/api/v1/logs/aggregate", {"interval": "1", "from": "now-1d"}, "invalid_parameter", "interval"),
        ("/api/v1/traces/search", {"status": "broken"}, "invalid_parameter", "status"),
        ("/api/v1/traces/search", {"min_duration_ms": "5", "max_duration_ms": "1"}, "invalid_parameter",
         "min_duration_ms"),
        ("/api/v1/traces/services", {"span_kind": "sideways"}, "invalid_parameter", "span_kind"),
        ("/api/v1/traces/xyz", {}, "invalid_parameter", "trace_id"),
        ("/api/v1/metrics/query", {"query": "rate(x[5m]) * 2"}, "not_supported", "query"),
        ("/api/v1/metrics/query", {"query": "sum("}, "syntax_error", "query"),
        ("/api/v1/metrics/query", {}, "invalid_parameter", "query"),
        ("/api/v1/metrics/query", {"metric": "traces.span.metrics.calls", "step": "1", "from": "now-1d"},
         "invalid_parameter", "step"),
        ("/api/v1/metrics/query", {"metric": "traces.span.metrics.duration"}, "invalid_query", "query"),
    ]
    for path, params, code, field in cases:
        response = api.client.get(path, params=params)
        body = response.json()
        assert response.status_code == 400, (path, params, response.text)
        assert (body["error"]["code"], body["error"].get("field")) == (code, field), (path, params, body)
    syntax = api.client.get("/api/v1/logs/search", params={"q": "service:x AND"}).json()["error"]
    assert syntax["position"] == 13 and "a term" in syntax["expected"]
    missing = api.client.get("/api/v1/metrics/labels", params={"metric": "no.such.metric"})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "metric"
    unknown = api.client.get("/api/v1/nothing/here")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


# -- sources ---------------------------------------------------------------------------------------


def test_a_teams_source_over_another_table(api: Api) -> None:
    table = f"`{api.database}`.app_logs"
    api.admin.command(f"CREATE TABLE {table} (ts DateTime64(3), msg String, svc LowCardinality(String), "
                      "lvl String, attrs Map(String, String), Tenant LowCardinality(String) DEFAULT 'default') "
                      "ENGINE = MergeTree ORDER BY (Tenant, svc, ts)")
    api.admin.command(f"INSERT INTO {table} (ts, msg, svc, lvl, attrs) SELECT now64(3) - number, concat('job ', "
                      "toString(number), if(number % 3 = 0, ' failed: disk full', ' done')), 'batch', "
                      "if(number % 3 = 0, 'error', 'info'), map('job.id', toString(number)) FROM numbers(30)")
    # Another team's rows in the same table: never part of this team's answers.
    api.admin.command(f"INSERT INTO {table} SELECT now64(3), 'job failed: disk full', 'batch', 'error', map(), 'other' "
                      "FROM numbers(5)")
    spec = {"name": "applogs", "kind": "logs", "database": api.database, "table": "app_logs", "timestamp": "ts",
            "body": "msg", "service": "svc", "severity_text": "lvl", "attributes": "attrs"}
    created = api.client.post("/api/v1/sources", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["coarse_timestamp"] is None and created.json()["builtin"] is False
    names = [s["spec"]["name"] for s in api.client.get("/api/v1/sources").json()["sources"]]
    assert names[:2] == ["logs", "traces"] and "applogs" in names
    found = api.client.get("/api/v1/logs/search", params={"source": "applogs", "q": "level:error \"disk full\"",
                                                          "limit": 100}).json()
    assert len(found["rows"]) == 10 and {r["service"] for r in found["rows"]} == {"batch"}
    assert api.client.get("/api/v1/logs/search", params={"source": "applogs", "q": "job.id:7"}).json()["rows"][0][
        "body"] == "job 7 done"
    top = api.client.get("/api/v1/logs/top", params={"source": "applogs", "field": "level"}).json()
    assert [(v["value"], v["count"]) for v in top["values"]] == [("info", 20), ("error", 10)]
    assert api.client.post("/api/v1/sources", json=spec).status_code == 409
    bad = api.client.post("/api/v1/sources", json={**spec, "name": "broken", "body": "nosuchcolumn"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "body"
    injected = api.client.post("/api/v1/sources", json={**spec, "name": "evil", "body": "msg; DROP TABLE x"})
    assert injected.status_code == 400 and injected.json()["error"]["field"] == "body"
    absent = api.client.post("/api/v1/sources", json={**spec, "name": "absent", "table": "nope"})
    assert absent.status_code == 404
    assert api.client.post("/api/v1/sources", json={**spec, "name": "logs"}).status_code == 409
    assert Store(api.store_url).list_sources(1)[0]["name"] == "applogs"  # persisted in the metadata store
    assert api.client.delete("/api/v1/sources/logs").status_code == 409
    assert api.client.delete("/api/v1/sources/applogs").status_code == 204
    assert api.client.get("/api/v1/logs/search", params={"source": "applogs"}).status_code == 404


def test_the_web_ui_is_served_beside_the_api(api: Api, tmp_path: Path) -> None:
    ui = tmp_path / "dist"
    (ui / "assets").mkdir(parents=True)
    (ui / "index.html").write_text("<!doctype html><title>Maple</title>")
    (ui / "assets" / "app.js").write_text("console.log('maple')")
    settings = dataclasses.replace(api.settings, api=dataclasses.replace(api.settings.api, ui_dir=str(ui)))
    app, context, _ = _app(settings, f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        client = TestClient(app)
        assert "Maple" in client.get("/").text
        assert "Maple" in client.get("/traces/abc").text  # the UI's own routes
        assert client.get("/assets/app.js").text == "console.log('maple')"
        missing = client.get("/api/v1/not-an-endpoint")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert client.get("/api/openapi.json").json()["info"]["title"] == "Maple query API"
        assert client.get("/readyz").json()["ready"] is True
    finally:
        _close(context)


def test_the_service_map_weights_sampled_spans(api: Api) -> None:
    """A span the tail sampler kept with probability 1/10 stands for 10 calls (SampleRate)."""
    table = f"`{api.database}`.otel_traces"
    now = "now64(9) - INTERVAL 1 MINUTE"
    api.admin.command(f"INSERT INTO {table} (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, "
                      f"Duration, StatusCode, SampleRate) VALUES ({now}, 'ab', 'p1', '', 'GET /', 'Server', "
                      f"'weighted-a', 1000000, 'Unset', 10), ({now}, 'ab', 'c1', 'p1', 'rpc', 'Server', 'weighted-b', "
                      f"500000, 'Error', 10)")
    edges = {(e["caller"], e["callee"]): e for e in api.client.get("/api/v1/traces/dependencies",
                                                                    params={"from": "now-10m"}).json()["edges"]}
    assert (edges[("weighted-a", "weighted-b")]["calls"], edges[("weighted-a", "weighted-b")]["errors"]) == (10, 10)

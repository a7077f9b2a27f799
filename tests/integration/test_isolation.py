"""Every endpoint keeps each team to its own rows, on the real ClickHouse engine (docs/teams.md).

Two teams' logs, spans and metrics share Maple's tables; each team reads through the API with its own key.
Every read endpoint is asked for everything, and for the other team's services, trace ids, metric names
and attribute keys: the answer holds only the caller's rows (or is a 4xx). The SQL endpoint is attacked
with subqueries, joins, CTEs, UNIONs, scalar subqueries, table functions, system tables, SETTINGS clauses,
dictionaries and tricks with identifiers: each answers 4xx (never 5xx) or the caller's rows only.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from maple import clickhouse, schema
from maple.settings import Settings
from query.app import create_app
from query.auth import Auth
from query.context import Context
from query.reader import Reader
from query.sources import Sources
from query.store import Store
from tests.helpers.access import bearer, query_key, user

A_TRACE, B_TRACE, SHARED = "a" * 32, "b" * 32, "5" * 32
B_MARKERS = ("bravo", "svc-b", "team-b", B_TRACE)


@dataclasses.dataclass
class Teams:
    a: TestClient
    b: TestClient
    database: str
    admin: Any
    store: Store


def _insert(admin: Any, db: str) -> None:
    now = "now64(9) - INTERVAL 1 MINUTE"
    for team, letter, trace in (("team-a", "alpha", A_TRACE), ("team-b", "bravo", B_TRACE)):
        svc = f"svc-{letter[0]}"
        admin.command(f"INSERT INTO `{db}`.otel_logs (Timestamp, TraceId, ServiceName, SeverityText, SeverityNumber, "
                      f"Body, LogAttributes, ResourceAttributes, Tenant) VALUES "
                      f"({now}, '{trace}', '{svc}', 'ERROR', 17, '{letter} secret timeout', "
                      f"map('{letter}.only', '1'), map('service.name', '{svc}'), '{team}'), "
                      f"({now}, '', '{svc}', 'INFO', 9, '{letter} fine', map(), map(), '{team}')")
        for trace_id, parent_service in ((trace, svc), (SHARED, f"{svc}-shared")):
            admin.command(f"INSERT INTO `{db}`.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, "
                          f"SpanKind, ServiceName, Duration, StatusCode, SpanAttributes, Tenant) VALUES "
                          f"({now}, '{trace_id}', '{letter[0]}1', '', '{letter} root', 'Server', '{parent_service}', "
                          f"1000000, 'Error', map('{letter}.only', 'x'), '{team}'), "
                          f"({now}, '{trace_id}', '{letter[0]}2', '{letter[0]}1', '{letter} child', 'Client', "
                          f"'{svc}-db', 500000, 'Unset', map(), '{team}')")
        admin.command(f"INSERT INTO `{db}`.otel_metrics_sum (ServiceName, MetricName, Attributes, TimeUnix, Value, "
                      f"AggregationTemporality, IsMonotonic, Tenant) VALUES "
                      f"('{svc}', 'traces.span.metrics.calls', map('span.kind', 'SPAN_KIND_SERVER', 'service.name', "
                      f"'{svc}'), {now}, 7, 1, true, '{team}'), "
                      f"('{svc}', '{letter}.metric', map('{letter}.label', 'v'), {now}, 1, 1, true, '{team}')")


@pytest.fixture(scope="module")
def teams(clickhouse_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Teams]:
    database = f"iso_{uuid.uuid4().hex[:10]}"
    admin = clickhouse.connect(clickhouse_settings, in_process=False)
    schema.apply(admin, schema.Target(database, 0), say=lambda _: None)
    _insert(admin, database)
    settings = dataclasses.replace(clickhouse_settings,
                                   clickhouse=dataclasses.replace(clickhouse_settings.clickhouse, database=database))
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('iso') / 'meta.db'}")
    store.migrate()
    key_a, key_b = query_key(store, "team-a"), query_key(store, "team-b")
    reader = Reader(settings)
    app = create_app(settings, context=Context(settings, reader, Sources(reader, store), store,
                                               auth=Auth(settings, store)))
    try:
        with TestClient(app, headers=bearer(key_a)) as a, TestClient(app, headers=bearer(key_b)) as b:
            yield Teams(a, b, database, admin, store)
    finally:
        reader.close()
        store.close()
        admin.command(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()


def _clean(response: Any, *markers: str) -> str:
    assert response.status_code < 500, response.text
    text = response.text
    for marker in markers or B_MARKERS:
        assert marker not in text, (response.request.url, marker, text[:500])
    return text


def test_every_read_endpoint_answers_only_the_callers_rows(teams: Teams) -> None:
    a = teams.a
    window = {"from": "now-1h"}
    rows = a.get("/api/v1/logs/search", params=window).json()["rows"]
    assert sorted(r["body"] for r in rows) == ["alpha fine", "alpha secret timeout"]
    assert a.get("/api/v1/logs/search", params={**window, "service": "svc-b"}).json()["rows"] == []
    assert a.get("/api/v1/logs/search", params={**window, "q": "bravo"}).json()["rows"] == []
    assert a.get("/api/v1/logs/search", params={**window, "q": "Tenant:team-b"}).json()["rows"] == []
    _clean(a.get("/api/v1/logs/aggregate", params={**window, "group_by": "service"}))
    top = a.get("/api/v1/logs/top", params={**window, "field": "service"}).json()
    assert [v["value"] for v in top["values"]] == ["svc-a"] and top["total"] == 2
    fields = _clean(a.get("/api/v1/logs/fields"))
    assert "alpha.only" in fields
    traces = a.get("/api/v1/traces/search", params=window).json()["traces"]
    assert {t["trace_id"] for t in traces} == {A_TRACE, SHARED}
    shared = a.get(f"/api/v1/traces/{SHARED}").json()
    assert {s["service"] for s in shared["spans"]} == {"svc-a-shared", "svc-a-db"} and shared["span_count"] == 2
    other = a.get(f"/api/v1/traces/{B_TRACE}")
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    services = a.get("/api/v1/traces/services", params=window).json()["services"]
    assert [s["service"] for s in services] == ["svc-a"] and services[0]["calls"] == 7
    edges = a.get("/api/v1/traces/dependencies", params=window).json()["edges"]
    assert {(e["caller"], e["callee"]) for e in edges} == {("svc-a", "svc-a-db"), ("svc-a-shared", "svc-a-db")}
    names = [m["name"] for m in a.get("/api/v1/metrics/names", params=window).json()["metrics"]]
    assert names == ["alpha.metric", "traces.span.metrics.calls"]
    assert a.get("/api/v1/metrics/labels", params={**window, "metric": "bravo.metric"}).status_code == 404
    assert a.get("/api/v1/metrics/series", params={**window, "metric": "bravo.metric"}).status_code == 404
    _clean(a.get("/api/v1/metrics/series", params={**window, "metric": "traces.span.metrics.calls"}))
    query = a.get("/api/v1/metrics/query", params={**window, "query": "sum by (service_name) "
                                                                     "(increase(traces_span_metrics_calls[1h]))"})
    assert query.status_code == 200, query.text
    _clean(query)
    assert a.get("/api/v1/metrics/query", params={**window, "query": "bravo_metric"}).status_code == 404
    _clean(a.get("/api/v1/sources"))
    assert a.get("/api/v1/health").status_code == 503  # no monitor here; it reports the pipeline, no team's rows
    with a.stream("GET", "/api/v1/logs/tail", params={"backfill": 10}) as tail:
        for line in tail.iter_lines():
            if line.startswith("data:"):
                assert "alpha" in line and "bravo" not in line
                break
    # And the other way round.
    rows_b = teams.b.get("/api/v1/logs/search", params=window).json()["rows"]
    assert sorted(r["body"] for r in rows_b) == ["bravo fine", "bravo secret timeout"]
    assert teams.b.get(f"/api/v1/traces/{A_TRACE}").status_code == 404


def _sql(client: TestClient, statement: str) -> Any:
    return client.post("/api/v1/sql", json={"sql": statement})


def test_the_sql_endpoint_reads_only_the_callers_rows(teams: Teams) -> None:
    a, db = teams.a, teams.database
    readable = {
        "SELECT Body FROM otel_logs ORDER BY Body": [["alpha fine"], ["alpha secret timeout"]],
        f"SELECT Body FROM `{db}`.`otel_logs` ORDER BY Body": [["alpha fine"], ["alpha secret timeout"]],
        "SELECT count() FROM otel_logs WHERE Tenant = 'team-b'": [[0]],
        "SELECT count() FROM otel_logs WHERE Tenant != 'team-a' OR 1": [[2]],
        "SELECT (SELECT groupArray(Body) FROM otel_logs WHERE Body LIKE '%secret%')": [[["alpha secret timeout"]]],
        "SELECT count() FROM otel_logs WHERE Body IN (SELECT 'bravo fine')": [[0]],
        "SELECT count() FROM otel_logs AS x JOIN otel_logs AS y ON x.Tenant = y.Tenant": [[4]],
        "SELECT count() FROM otel_logs AS x JOIN otel_traces AS y ON x.TraceId = y.TraceId": [[2]],
        "WITH t AS (SELECT * FROM otel_traces) SELECT uniqExact(ServiceName) FROM t": [[3]],
        "SELECT count() FROM (SELECT Body FROM otel_logs UNION ALL SELECT SpanName FROM otel_traces)": [[6]],
        "SELECT Tenant, count() FROM otel_traces_trace_id_ts GROUP BY Tenant": [["team-a", 2]],
        "SELECT sum(Value) FROM otel_metrics_sum": [[8.0]],
        "SELECT count() FROM numbers(3)": [[3]],
        "SELECT 1": [[1]],
        "WITH query_log AS (SELECT 1 AS x) SELECT x FROM query_log": [[1]],
    }
    for statement, expected in readable.items():
        response = _sql(a, statement)
        assert response.status_code == 200, (statement, response.text)
        assert response.json()["rows"] == expected, (statement, response.json()["rows"])
        _clean(response)
    explained = _sql(a, "EXPLAIN SELECT (SELECT groupArray(Body) FROM otel_logs)")
    assert explained.status_code == 200 and "alpha" in explained.text
    _clean(explained)
    refused = [
        f"SELECT * FROM merge('{db}', '^otel_logs$')", "SELECT * FROM merge(currentDatabase(), 'otel')",
        "SELECT * FROM view(SELECT * FROM otel_logs)", "SELECT * FROM remote('127.0.0.1', system.one)",
        f"SELECT * FROM remote('127.0.0.1', {db}.otel_logs)", f"SELECT * FROM cluster('default', {db}.otel_logs)",
        "SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')", "SELECT * FROM file('/etc/passwd', LineAsString)",
        "SELECT * FROM input('a String')", "SELECT * FROM s3('http://127.0.0.1:1/x', CSV)",
        "SELECT * FROM system.query_log", "SELECT query FROM system.processes", "SELECT * FROM system.parts",
        "SELECT * FROM `system`.`query_log`", "SELECT * FROM system.tables",
        "SELECT (SELECT any(query) FROM system.query_log)",
        "SELECT CAST('1', (SELECT any(query) FROM system.query_log))",
        "SELECT 1 WHERE 'x' IN system.query_log", "SELECT 1 WHERE 'x' IN otel_logs",
        "SELECT * FROM otel_logs WHERE Body IN (SELECT query FROM system.query_log)",
        "SELECT * FROM otel_logs UNION ALL SELECT * FROM system.processes",
        "WITH x AS (SELECT * FROM system.query_log) SELECT * FROM x",
        "SELECT * FROM otel_logs SETTINGS additional_table_filters = {}",
        "SELECT dictGet('d', 'a', toUInt64(1))", "SELECT joinGet('j', 'v', 1)",
        "DESCRIBE (SELECT * FROM system.query_log)", "EXPLAIN SELECT * FROM system.query_log",
        "SHOW PROCESSLIST", "SHOW USERS", "SHOW COLUMNS FROM otel_logs WHERE (SELECT count() FROM system.query_log) > 0",
        "SELECT 1 FROM `a\nTableExpression`", "SELECT Body AS `x\n y` FROM otel_logs",
        "WITH maple_schema_versions AS (SELECT 1) SELECT * FROM maple_schema_versions",
        "SELECT * FROM maple_schema_versions", f"SELECT * FROM {db}.otel_traces_trace_id_ts_mv",
        "SELECT * FROM default.nothing",
    ]
    for statement in refused:
        response = _sql(a, statement)
        assert 400 <= response.status_code < 500, (statement, response.status_code, response.text[:300])
        assert "error" in response.json()
        _clean(response)
    for statement in ("SHOW TABLES", "DESCRIBE otel_logs", "SHOW CREATE TABLE otel_logs"):
        response = _sql(a, statement)
        assert response.status_code == 200, (statement, response.text)


def test_another_teams_ids_are_not_found_and_another_teams_sources_not_visible(teams: Teams) -> None:
    table = f"`{teams.database}`.team_logs"
    teams.admin.command(f"CREATE TABLE {table} (ts DateTime64(3), msg String, svc String, Tenant LowCardinality(String)) "
                        "ENGINE = MergeTree ORDER BY (Tenant, ts)")
    teams.admin.command(f"INSERT INTO {table} VALUES (now64(3), 'alpha row', 'svc-a', 'team-a'), "
                        "(now64(3), 'bravo row', 'svc-b', 'team-b')")
    spec = {"name": "mine", "kind": "logs", "database": teams.database, "table": "team_logs", "timestamp": "ts",
            "body": "msg", "service": "svc"}
    created = teams.b.post("/api/v1/sources", json=spec)
    assert created.status_code == 201, created.text
    assert teams.a.get("/api/v1/sources/mine").status_code == 404
    assert teams.a.get("/api/v1/logs/search", params={"source": "mine"}).status_code == 404
    assert teams.a.delete("/api/v1/sources/mine").status_code == 404
    rows = teams.b.get("/api/v1/logs/search", params={"source": "mine", "from": "now-1h"}).json()["rows"]
    assert [r["body"] for r in rows] == ["bravo row"]  # a source's table is filtered too
    # The table is team-b's source, not team-a's: team-a cannot name it in SQL either; team-b reads its rows only.
    assert _sql(teams.a, "SELECT msg FROM team_logs").status_code == 403
    assert _sql(teams.b, "SELECT msg FROM team_logs").json()["rows"] == [["bravo row"]]
    # A table without a Tenant column cannot become a team's source (its rows could not be kept apart).
    teams.admin.command(f"CREATE TABLE `{teams.database}`.shared_logs (ts DateTime64(3), msg String) ENGINE = "
                        "MergeTree ORDER BY ts")
    shared = teams.b.post("/api/v1/sources", json={**spec, "name": "shared", "table": "shared_logs"})
    assert shared.status_code == 403 and shared.json()["error"]["field"] == "table"
    # A source's expressions are checked like the SQL endpoint's statements.
    evil = teams.b.post("/api/v1/sources", json={**spec, "name": "evil",
                                                 "body": "(SELECT any(query) FROM system.query_log)"})
    assert evil.status_code == 400 and evil.json()["error"]["field"] == "body"
    # Another team's key and user, by id: not found (never touched).
    key_b = next(k for k in teams.b.get("/api/v1/keys").json()["keys"])
    assert teams.a.delete(f"/api/v1/keys/{key_b['id']}").status_code == 404
    user(teams.store, "bob@b.example", "team-b", "viewer")
    bob = next(u for u in teams.b.get("/api/v1/users").json()["users"] if u["email"] == "bob@b.example")
    assert teams.a.put(f"/api/v1/users/{bob['id']}/role", json={"role": "admin"}).status_code == 404
    assert teams.a.delete(f"/api/v1/users/{bob['id']}").status_code == 404
    assert teams.b.get("/api/v1/keys").json()["keys"][0]["revoked_at"] is None
    assert [k["team"] for k in json.loads(teams.a.get("/api/v1/keys").text)["keys"]] == ["team-a"]

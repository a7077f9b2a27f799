"""Teams end to end: two teams send through the ingest with their own keys, each reads exactly its own rows
through every endpoint, and an alert on one team's error logs fires once to a webhook receiver on loopback,
resolves when the errors stop, and never fires for the other team's errors.

Every stage is a real `maple` process on the session's Kafka and ClickHouse: the ingest reads the ingest keys
the teams created from the metadata store (and a static `ingest.api_keys` key still works), the worker and
the sink carry the tenant to every row, `maple api` answers the queries and runs the alert evaluator.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from maple.net import free_port
from maple.settings import Settings
from query import teams
from query.alerts.notify import signature
from query.store import Store
from tests.helpers.access import bearer, ingest_key, query_key
from tests.helpers.ingest import IngestProcess, post, status
from tests.helpers.pipeline import Pipeline, start_pipeline
from tests.helpers.stages import Stage
from tests.helpers.webhooks import Receiver, receiver

STATIC_KEY = "static-secret-of-team-c"
WINDOW_S = 30


@dataclass
class Team:
    name: str
    service: str
    ingest: str   # its ingest key
    query: str    # its admin query key
    trace_ids: list[str]

    def headers(self) -> dict[str, str]:
        return bearer(self.query)


@dataclass
class Deployment:
    pipeline: Pipeline
    api: Stage
    url: str
    store: Store
    a: Team
    b: Team
    hook: Receiver
    revoked: str

    def get(self, team: Team, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers=team.headers(), timeout=60)


def _logs(service: str, errors: int, infos: int) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.add(key="service.name", value={"string_value": service})
    scope = resource.scope_logs.add()
    now = time.time_ns()
    for i in range(errors + infos):
        error = i < errors
        record = scope.log_records.add(time_unix_nano=now + i, severity_number=17 if error else 9,
                                       severity_text="ERROR" if error else "INFO")
        record.body.string_value = f"{service} {'payment failed' if error else 'ok'} {i}"
        record.attributes.add(key=f"{service}.only", value={"string_value": "1"})
    return request.SerializeToString()


def _traces(service: str, count: int) -> tuple[bytes, list[str]]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name", value={"string_value": service})
    scope = resource.scope_spans.add()
    now = time.time_ns()
    ids = []
    for _ in range(count):
        trace_id = uuid.uuid4().bytes
        ids.append(trace_id.hex())
        root = scope.spans.add(trace_id=trace_id, span_id=uuid.uuid4().bytes[:8], name="GET /", kind=2,
                               start_time_unix_nano=now, end_time_unix_nano=now + 5_000_000)
        scope.spans.add(trace_id=trace_id, span_id=uuid.uuid4().bytes[:8], parent_span_id=root.span_id,
                        name="SELECT", kind=3, start_time_unix_nano=now + 1000, end_time_unix_nano=now + 2_000_000)
    return request.SerializeToString(), ids


def _metric(service: str, value: float) -> bytes:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name", value={"string_value": service})
    metric = resource.scope_metrics.add().metrics.add(name=f"{service}.queue", unit="1")
    metric.gauge.data_points.add(time_unix_nano=time.time_ns(), as_double=value)
    return request.SerializeToString()


def _send(ingest: IngestProcess, path: str, body: bytes, key: str) -> None:
    code, _, answer = post(f"{ingest.http}{path}", body, {"content-type": "application/x-protobuf",
                                                          "authorization": f"Bearer {key}"})
    assert code == 200, (path, code, answer[:300])


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, clickhouse_settings: Settings, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Deployment]:
    tmp: Path = tmp_path_factory.mktemp("teams-e2e")
    metadata = f"sqlite:///{tmp / 'metadata.db'}"
    store = Store(metadata)
    store.migrate()
    a = Team("team-a", "shop-a", ingest_key(store, "team-a"), query_key(store, "team-a"), [])
    b = Team("team-b", "shop-b", ingest_key(store, "team-b"), query_key(store, "team-b"), [])
    revoked_key, key_id = ingest_key(store, "team-b"), teams.list_keys(store, "team-b")[-1]["id"]
    teams.revoke_key(store, key_id, "test")
    tag = uuid.uuid4().hex[:8]
    sampling = tmp / "sampling.yaml"
    sampling.write_text(yaml.safe_dump({"tail_sampling": {"decision_wait": "1s", "policies": [
        {"name": "all", "type": "always_sample"}]}}))
    pipeline = start_pipeline(kafka_bootstrap, clickhouse_settings, tag, {
        "MAPLE_API_METADATA_URL": metadata, "MAPLE_INGEST_KEYS_REFRESH_S": "0.5",
        "MAPLE_INGEST_API_KEYS": f"{STATIC_KEY}=team-c", "MAPLE_TRACES_SAMPLING_CONFIG": str(sampling),
        "MAPLE_TRACES_TICK_INTERVAL_S": "0.5"}, from_end=True)  # the test counts whole tables
    port = free_port()
    api = Stage(["api"], {**pipeline.env, "MAPLE_API_PORT": str(port), "MAPLE_API_ALERT_TICK_S": "1",
                          "MAPLE_API_WEBHOOK_PRIVATE_TARGETS": "true", "MAPLE_API_HEALTH_INTERVAL_S": "2",
                          "MAPLE_API_INGEST_METRICS_URLS": f"{pipeline.ingest.http}/metrics"}).start()
    url = f"http://127.0.0.1:{port}"
    with receiver() as hook:
        try:
            deadline = time.monotonic() + 90
            while status(f"{url}/readyz") != 200:
                assert api.alive, "maple api exited:\n" + api.output()
                assert time.monotonic() < deadline, "maple api never became ready:\n" + api.output()
                time.sleep(0.3)
            yield Deployment(pipeline, api, url, store, a, b, hook, revoked_key)
        finally:
            api.stop()
            pipeline.stop()
            store.close()


def test_two_teams_each_see_their_own_rows_and_one_alert_fires_once_and_resolves(deployment: Deployment) -> None:
    d, a, b = deployment, deployment.a, deployment.b
    ingest = d.pipeline.ingest
    # A pipeline rule on refused ingest requests, evaluated once before any is refused.
    refusals = httpx.post(f"{d.url}/api/v1/alerts", headers=a.headers(), timeout=30, json={
        "name": "refusals", "interval_s": 1,
        "condition": {"kind": "pipeline", "measure": "ingest_refusals", "window_s": 300, "op": ">", "threshold": 0}})
    assert refusals.status_code == 201, refusals.text
    deadline = time.monotonic() + 60
    while d.get(a, f"/api/v1/alerts/{refusals.json()['id']}").json()["last_eval_at"] is None:
        assert time.monotonic() < deadline, "the pipeline rule was never evaluated:\n" + d.api.output()
        time.sleep(0.5)
    # Keys: none, a revoked one, a query key and a made-up one are all refused by the ingest.
    for key in ("", d.revoked, a.query, "mpl_ingest_made-up"):
        code, _, _ = post(f"{ingest.http}/v1/logs", _logs("nobody", 1, 0),
                          {"content-type": "application/x-protobuf", **({"authorization": f"Bearer {key}"} if key else {})})
        assert code == 401, key[:14]
    deadline = time.monotonic() + 60
    while True:
        rule = d.get(a, f"/api/v1/alerts/{refusals.json()['id']}").json()
        if rule["state"] == "firing":
            break
        assert time.monotonic() < deadline, f"refused requests never fired the pipeline rule: {rule}"
        time.sleep(0.5)
    assert rule["groups"] == [{"group": "", "state": "firing", "since": rule["groups"][0]["since"], "value": 4.0}]
    # The lag of each consumer group, as a pipeline rule sees it.
    lag = httpx.post(f"{d.url}/api/v1/alerts/preview", headers=a.headers(), timeout=30, json={
        "name": "lag", "condition": {"kind": "pipeline", "measure": "lag_seconds", "op": ">", "threshold": 60}})
    assert lag.status_code == 200 and not lag.json()["error"], lag.text
    assert {f"group={d.pipeline.env['MAPLE_WORKER_GROUP']}", f"group={d.pipeline.env['MAPLE_SINK_GROUP']}"} <= \
        set(lag.json()["values"]) and lag.json()["holding"] == []
    # An ingest key does not read the API.
    refused = httpx.get(f"{d.url}/api/v1/logs/search", headers=bearer(a.ingest), timeout=30)
    assert refused.status_code == 401 and "ingest key" in refused.json()["error"]["message"]

    # Team A watches its error logs, per service, over the last WINDOW_S seconds.
    hook = httpx.post(f"{d.url}/api/v1/webhooks", headers=a.headers(), timeout=30,
                      json={"name": "receiver", "url": d.hook.url, "kind": "json"})
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    rule = httpx.post(f"{d.url}/api/v1/alerts", headers=a.headers(), timeout=30, json={
        "name": "errors", "condition": {"kind": "search", "q": "level:error", "window_s": WINDOW_S,
                                        "group_by_service": True, "op": ">", "threshold": 0},
        "interval_s": 1, "webhooks": [hook.json()["webhook"]["id"]]})
    assert rule.status_code == 201, rule.text

    # Team B's errors first: team A's rule must not see them.
    _send(ingest, "/v1/logs", _logs(b.service, errors=7, infos=10), b.ingest)
    body, b.trace_ids = _traces(b.service, 2)
    _send(ingest, "/v1/traces", body, b.ingest)
    _send(ingest, "/v1/metrics", _metric(b.service, 2.0), b.ingest)
    _send(ingest, "/v1/logs", _logs("shop-c", errors=0, infos=4), STATIC_KEY)
    d.pipeline.wait_for("SELECT Tenant, count() FROM otel_logs GROUP BY Tenant ORDER BY Tenant",
                        [("team-b", 17), ("team-c", 4)])
    time.sleep(3)  # a few evaluations with team B's errors in the window
    assert d.hook.requests == []

    # Team A's data, errors included.
    _send(ingest, "/v1/logs", _logs(a.service, errors=5, infos=20), a.ingest)
    body, a.trace_ids = _traces(a.service, 3)
    _send(ingest, "/v1/traces", body, a.ingest)
    _send(ingest, "/v1/metrics", _metric(a.service, 1.0), a.ingest)
    d.pipeline.wait_for("SELECT Tenant, count() FROM otel_logs GROUP BY Tenant ORDER BY Tenant",
                        [("team-a", 25), ("team-b", 17), ("team-c", 4)])
    d.pipeline.wait_for("SELECT Tenant, uniqExact(TraceId), count() FROM otel_traces GROUP BY Tenant ORDER BY Tenant",
                        [("team-a", 3, 6), ("team-b", 2, 4)])
    d.pipeline.wait_for("SELECT Tenant, count() FROM otel_metrics_sum WHERE MetricName = 'traces.span.metrics.calls' "
                        "GROUP BY Tenant ORDER BY Tenant", [("team-a", 2), ("team-b", 2)])

    # The alert fires once, for team A's service, signed.
    fired = d.hook.wait(1, timeout=60)[0]
    assert fired.signed_by(secret)
    assert (fired.json["state"], fired.json["team"], fired.json["group"], fired.json["value"]) == (
        "firing", "team-a", f"service={a.service}", 5.0)

    for team, other in ((a, b), (b, a)):
        _each_endpoint_answers_only(d, team, other)

    # The errors stop: once they leave the window, the alert resolves, once.
    resolved = d.hook.wait(2, timeout=WINDOW_S + 60)[1]
    assert resolved.json["state"] == "resolved" and resolved.json["group"] == f"service={a.service}"
    assert resolved.headers["x-maple-signature"] == signature(secret, resolved.headers["x-maple-timestamp"],
                                                              resolved.body)
    time.sleep(3)
    assert len(d.hook.requests) == 2, [r.json for r in d.hook.requests]
    history = httpx.get(f"{d.url}/api/v1/alerts/{rule.json()['id']}/history", headers=a.headers(), timeout=30).json()
    assert [(e["to_state"], e["group"]) for e in history["events"]] == [
        ("resolved", f"service={a.service}"), ("firing", f"service={a.service}")]
    assert all(dv["status"] == "delivered" and len(dv["attempts"]) == 1
               for e in history["events"] for dv in e["deliveries"])
    # Team B sees none of team A's rules, and cannot read them by id.
    assert httpx.get(f"{d.url}/api/v1/alerts", headers=b.headers(), timeout=30).json()["rules"] == []
    assert httpx.get(f"{d.url}/api/v1/alerts/{rule.json()['id']}", headers=b.headers(), timeout=30).status_code == 404


def _each_endpoint_answers_only(d: Deployment, team: Team, other: Team) -> None:
    def ok(path: str, **params: Any) -> dict[str, Any]:
        response = d.get(team, path, **params)
        assert response.status_code == 200, (path, response.text)
        assert other.service not in response.text and other.name not in response.text, (path, response.text[:400])
        return response.json()

    window = {"from": "now-15m"}
    logs = ok("/api/v1/logs/search", **window, limit=1000)["rows"]
    assert {r["service"] for r in logs} == {team.service} and len(logs) == (25 if team.name == "team-a" else 17)
    assert ok("/api/v1/logs/aggregate", **window, group_by="service")["total"] == len(logs)
    assert [v["value"] for v in ok("/api/v1/logs/top", field="service", **window)["values"]] == [team.service]
    assert f"{team.service}.only" in {f["name"] for f in ok("/api/v1/logs/fields")["fields"]}
    found = {t["trace_id"] for t in ok("/api/v1/traces/search", **window)["traces"]}
    assert found == set(team.trace_ids)
    assert ok(f"/api/v1/traces/{team.trace_ids[0]}")["span_count"] == 2
    assert d.get(team, f"/api/v1/traces/{other.trace_ids[0]}").status_code == 404
    assert [s["service"] for s in ok("/api/v1/traces/services", **window)["services"]] == [team.service]
    ok("/api/v1/traces/dependencies", **window)
    names = {m["name"] for m in ok("/api/v1/metrics/names", **window)["metrics"]}
    assert f"{team.service}.queue" in names and f"{other.service}.queue" not in names
    assert d.get(team, "/api/v1/metrics/series", metric=f"{other.service}.queue", **window).status_code == 404
    ok("/api/v1/metrics/query", query="sum by (service_name) (increase(traces_span_metrics_calls[15m]))", **window)
    sql = httpx.post(f"{d.url}/api/v1/sql", headers=team.headers(), timeout=30,
                     json={"sql": "SELECT Tenant, count() FROM otel_logs GROUP BY Tenant"})
    assert sql.status_code == 200 and sql.json()["rows"] == [[team.name, len(logs)]], sql.text
    ok("/api/v1/sources")
    ok("/api/v1/saved-searches")

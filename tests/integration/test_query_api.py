"""The query API end to end: OpenTelemetry SDK -> ingest -> Kafka -> workers -> sink -> ClickHouse, read back
through a real `maple api` process with exact counts.

Real broker, real ClickHouse engine, every stage (and the API) a real `maple` process. Sampling keeps every
trace (probabilistic 100%), so what was sent is what the API must find.
"""

from __future__ import annotations

import json
import threading
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
from query.store import Store
from tests.helpers.access import bearer, query_key
from tests.helpers.ingest import status
from tests.helpers.pipeline import Pipeline, start_pipeline
from tests.helpers.stages import Stage


@dataclass
class Stack:
    pipeline: Pipeline
    api: Stage
    url: str
    tag: str
    headers: dict[str, str]  # a query key of the default team: data sent without a key lands there

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = httpx.get(f"{self.url}{path}", params=params, headers=self.headers, timeout=60)
        assert response.status_code == 200, (path, params, response.status_code, response.text)
        return response.json()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, clickhouse_settings: Settings, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("query-api")
    tag = uuid.uuid4().hex[:8]
    sampling = tmp / "sampling.yaml"
    sampling.write_text(yaml.safe_dump({"tail_sampling": {"decision_wait": "2s", "policies": [
        {"name": "all", "type": "probabilistic", "probabilistic": {"sampling_percentage": 100}}]}}))
    pipeline = start_pipeline(kafka_bootstrap, clickhouse_settings, tag, {
        "MAPLE_TRACES_SAMPLING_CONFIG": str(sampling), "MAPLE_TRACES_TICK_INTERVAL_S": "0.5"})
    port = free_port()
    store = Store(f"sqlite:///{tmp / 'meta.db'}")
    store.migrate()
    headers = bearer(query_key(store, "default", "viewer"))
    store.close()
    api = Stage(["api"], {**pipeline.env, "MAPLE_API_PORT": str(port), "MAPLE_API_METADATA_URL": f"sqlite:///{tmp / 'meta.db'}",
                          "MAPLE_API_HEALTH_INTERVAL_S": "2"}).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while status(f"{url}/readyz") != 200:
        assert api.alive, "maple api exited:\n" + api.output()
        assert time.monotonic() < deadline, "maple api never became ready:\n" + api.output()
        time.sleep(0.2)
    try:
        yield Stack(pipeline, api, url, tag, headers)
    finally:
        api.stop()
        pipeline.stop()


# -- logs --------------------------------------------------------------------------------------------


def _logger(stack: Stack, service: str) -> tuple[Any, Any]:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.name": service, "k8s.pod.name": f"{service}-0"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
        endpoint=f"{stack.pipeline.ingest.http}/v1/logs")))
    return provider, provider.get_logger("shop.orders", "1.0")


def _count(stack: Stack, sql: str, expected: int) -> None:
    stack.pipeline.wait_for(sql, [(expected,)], timeout=120)


def test_logs_search_aggregate_top_paging_and_tail(stack: Stack) -> None:
    from opentelemetry._logs import SeverityNumber

    service = f"shop-{uuid.uuid4().hex[:8]}"
    provider, logger = _logger(stack, service)
    for i in range(10):
        logger.emit(body=f"payment {i} failed: connection refused by bank", severity_number=SeverityNumber.ERROR,
                    severity_text="ERROR", attributes={"order.id": str(i), "region": "eu"})
    for i in range(20):
        logger.emit(body=f"order {i} placed", severity_number=SeverityNumber.INFO, severity_text="INFO",
                    attributes={"order.id": str(100 + i), "region": "eu" if i < 10 else "us"})
    _count(stack, f"SELECT count() FROM otel_logs WHERE ServiceName = '{service}'", 30)
    week = {"from": "now-7d"}

    errors = stack.get("/api/v1/logs/search", q="level:error", service=service, **week)
    assert len(errors["rows"]) == 10 and errors["next_cursor"] is None
    assert {r["severity_text"] for r in errors["rows"]} == {"ERROR"}
    assert [r["timestamp_ns"] for r in errors["rows"]] == sorted((r["timestamp_ns"] for r in errors["rows"]),
                                                                 reverse=True)
    assert {r["attributes"]["order.id"] for r in errors["rows"]} == {str(i) for i in range(10)}
    assert errors["rows"][0]["resource_attributes"]["k8s.pod.name"] == f"{service}-0"
    for query, expected in (('"connection refused"', 10), ("refused", 10), ("region:eu", 20), ("region:us", 10),
                            ("-level:error", 20), ("level:(error OR info)", 30), ("order.id:[100 TO 104]", 5),
                            ("k8s.pod.name:shop-*", 30), ("placed AND NOT region:us", 10), ("_exists_:region", 30),
                            ("conn*", 10), ("nothing-like-this", 0)):
        found = stack.get("/api/v1/logs/search", q=query, service=service, limit=100, **week)
        assert len(found["rows"]) == expected, query

    # Cursor paging, newest first; rows that arrive meanwhile are newer than the cursor and stay out of it.
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        params = {"service": service, "limit": 7, **week}
        if cursor:
            params["cursor"] = cursor
        page = stack.get("/api/v1/logs/search", **params)
        pages.append(page["rows"])
        cursor = page["next_cursor"]
        if len(pages) == 1:
            for i in range(5):
                logger.emit(body=f"late {i}", severity_number=SeverityNumber.WARN, severity_text="WARN")
            _count(stack, f"SELECT count() FROM otel_logs WHERE ServiceName = '{service}'", 35)
        if not cursor:
            break
    rows = [r for page in pages for r in page]
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]
    assert len({(r["timestamp_ns"], r["body"]) for r in rows}) == 30
    assert not any(r["body"].startswith("late") for r in rows)
    assert len(stack.get("/api/v1/logs/search", service=service, limit=100, **week)["rows"]) == 35

    histogram = stack.get("/api/v1/logs/aggregate", service=service, group_by="level", **week)
    by_level: dict[str, int] = {}
    for bucket in histogram["buckets"]:
        by_level[bucket["group"]] = by_level.get(bucket["group"], 0) + bucket["count"]
    assert by_level == {"ERROR": 10, "INFO": 20, "WARN": 5} and histogram["total"] == 35
    top = stack.get("/api/v1/logs/top", field="region", service=service, **week)
    assert [(v["value"], v["count"]) for v in top["values"]] == [("eu", 20), ("us", 10)] and top["total"] == 35
    fields = {f["name"] for f in stack.get("/api/v1/logs/fields")["fields"]}
    assert {"level", "service", "region", "order.id", "SeverityNumber", "k8s.pod.name"} <= fields

    # Live tail: only rows stored after it started, with the same filters. The pipeline does not keep the order
    # of records (each export request goes to a random partition), so the rows may arrive in any order: the
    # listener stops at a last row sent once every other row is stored, and the poll that finds it sends
    # whatever it has not sent yet, so nothing depends on arrival order or on how fast the tail polls.
    def stored(count: int) -> None:
        _count(stack, f"SELECT count() FROM otel_logs WHERE ServiceName = '{service}'", count)

    logger.emit(body="tail line from before", severity_number=SeverityNumber.INFO, severity_text="INFO")
    stored(36)
    received: list[dict[str, Any]] = []
    live = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{stack.url}/api/v1/logs/tail", headers=stack.headers,
                          params={"service": service, "q": '"tail line"', "backfill": 0}, timeout=90) as response:
            event = None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "live":
                    live.set()
                elif line.startswith("data:") and event == "log":
                    received.append(json.loads(line.split(":", 1)[1]))
                    if received[-1]["body"] == "tail line last":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert live.wait(60), "the tail never went live"
    for i in range(3):
        logger.emit(body=f"tail line {i}", severity_number=SeverityNumber.INFO, severity_text="INFO")
    logger.emit(body="not for the tail", severity_number=SeverityNumber.INFO, severity_text="INFO")
    stored(40)
    logger.emit(body="tail line last", severity_number=SeverityNumber.INFO, severity_text="INFO")
    listener.join(90)
    assert not listener.is_alive(), f"the tail never sent the last line; it sent {[r['body'] for r in received]}"
    assert sorted(r["body"] for r in received) == ["tail line 0", "tail line 1", "tail line 2", "tail line last"]
    provider.shutdown()


# -- traces ------------------------------------------------------------------------------------------


def test_traces_search_get_services_and_the_service_map(stack: Stack) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    suffix = uuid.uuid4().hex[:6]
    front, checkout, payment = f"front-{suffix}", f"checkout-{suffix}", f"payment-{suffix}"
    providers = {}
    for name in (front, checkout, payment):
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=f"{stack.pipeline.ingest.http}/v1/traces")))
        providers[name] = provider
    tracers = {name: p.get_tracer("shop") for name, p in providers.items()}
    ids = []
    base = time.time_ns() - 60_000_000_000
    for n in range(12):
        start = base + n * 1_000_000_000
        root = tracers[front].start_span("GET /checkout", kind=SpanKind.SERVER, start_time=start)
        ctx = trace.set_span_in_context(root)
        middle = tracers[checkout].start_span("PlaceOrder", context=ctx, kind=SpanKind.SERVER,
                                              start_time=start + 1_000_000,
                                              links=[Link(root.get_span_context(), {"why": "test"})])
        leaf = tracers[payment].start_span("Charge", context=trace.set_span_in_context(middle), kind=SpanKind.SERVER,
                                           start_time=start + 2_000_000)
        leaf.add_event("charge.attempt", {"attempt": "1"}, timestamp=start + 3_000_000)
        if n < 3:
            leaf.set_status(Status(StatusCode.ERROR, "card declined"))
        slow = n in (3, 4)
        leaf.end(end_time=start + 2_000_000 + (300 if slow else 30) * 1_000_000)
        middle.end(end_time=start + 600_000_000)
        root.end(end_time=start + 700_000_000)
        ids.append(format(root.get_span_context().trace_id, "032x"))
    for provider in providers.values():
        assert provider.force_flush(30_000)
        provider.shutdown()
    _count(stack, f"SELECT count() FROM otel_traces WHERE ServiceName IN ('{front}', '{checkout}', '{payment}')", 36)
    _count(stack, "SELECT toUInt64(sum(Value)) FROM otel_metrics_sum WHERE MetricName = 'traces.span.metrics.calls' "
                  f"AND ServiceName IN ('{front}', '{checkout}', '{payment}')", 36)
    window = {"from": "now-1h"}

    found = stack.get("/api/v1/traces/search", service=front, limit=50, **window)
    assert sorted(t["trace_id"] for t in found["traces"]) == sorted(ids)
    assert [t["start_ns"] for t in found["traces"]] == sorted((t["start_ns"] for t in found["traces"]), reverse=True)
    for summary in found["traces"]:
        assert summary["span_count"] == 3 and summary["services"] == sorted([front, checkout, payment])
        assert (summary["root_service"], summary["root_name"], summary["duration_ms"]) == (front, "GET /checkout", 700.0)
    assert sum(t["error_count"] for t in found["traces"]) == 3
    errors = stack.get("/api/v1/traces/search", service=payment, status="error", **window)
    assert sorted(t["trace_id"] for t in errors["traces"]) == sorted(ids[:3])
    slow = stack.get("/api/v1/traces/search", service=payment, min_duration_ms=200, **window)
    assert sorted(t["trace_id"] for t in slow["traces"]) == sorted(ids[3:5])
    assert len(stack.get("/api/v1/traces/search", q=f"service:{payment} duration:>=200", **window)["traces"]) == 2
    assert len(stack.get("/api/v1/traces/search", q=f"name:Charge status:error service:{payment}",
                         **window)["traces"]) == 3
    first, second = (stack.get("/api/v1/traces/search", service=front, limit=5, **window),
                     None)
    second = stack.get("/api/v1/traces/search", service=front, limit=5, cursor=first["next_cursor"], **window)
    third = stack.get("/api/v1/traces/search", service=front, limit=5, cursor=second["next_cursor"], **window)
    paged = [t["trace_id"] for page in (first, second, third) for t in page["traces"]]
    assert sorted(paged) == sorted(ids) and third["next_cursor"] is None

    one = stack.get(f"/api/v1/traces/{ids[0]}")
    assert [(s["service"], s["name"], s["depth"]) for s in one["spans"]] == [
        (front, "GET /checkout", 0), (checkout, "PlaceOrder", 1), (payment, "Charge", 2)]
    leaf_span = one["spans"][2]
    assert leaf_span["status_code"] == "Error" and leaf_span["status_message"] == "card declined"
    assert [(e["name"], e["attributes"]) for e in leaf_span["events"]] == [("charge.attempt", {"attempt": "1"})]
    assert one["spans"][1]["links"][0]["span_id"] == one["spans"][0]["span_id"]
    assert (one["span_count"], one["error_count"], one["duration_ms"]) == (3, 1, 700.0)
    missing = httpx.get(f"{stack.url}/api/v1/traces/{'0' * 32}", headers=stack.headers, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    services = {s["service"]: s for s in stack.get("/api/v1/traces/services", **window)["services"]}
    assert (services[front]["calls"], services[front]["errors"]) == (12, 0)
    assert (services[payment]["calls"], services[payment]["errors"], services[payment]["error_rate"]) == (12, 3, 0.25)
    # 10 payments of 30 ms (bucket 10-50) and 2 of 300 ms (bucket 200-400), interpolated as Prometheus does
    assert services[payment]["p50_ms"] == pytest.approx(34.0)
    assert services[payment]["p95_ms"] == pytest.approx(340.0)

    edges = {(e["caller"], e["callee"]): e for e in stack.get("/api/v1/traces/dependencies", **window)["edges"]}
    assert (edges[(front, checkout)]["calls"], edges[(front, checkout)]["errors"]) == (12, 0)
    assert (edges[(checkout, payment)]["calls"], edges[(checkout, payment)]["errors"]) == (12, 3)
    assert 30 <= edges[(checkout, payment)]["p50_ms"] <= 300
    assert not any(caller == callee for caller, callee in edges)

    # RED through PromQL: increase() of the calls, and histogram_quantile() of the durations
    calls = stack.get("/api/v1/metrics/query", query=f'sum(increase({{"traces.span.metrics.calls", '
                                                     f'"service.name"="{payment}"}}[1h]))', step=3600, **window)
    assert calls["series"][0]["points"][-1][1] == 12.0
    by_status = stack.get("/api/v1/metrics/query", metric="traces_span_metrics_calls", fn="increase", agg="sum",
                          by="status.code", filter=f"service_name={payment}", range=3600, step=3600, **window)
    assert {s["labels"]["status.code"]: s["points"][-1][1] for s in by_status["series"]} == {
        "STATUS_CODE_ERROR": 3.0, "STATUS_CODE_UNSET": 9.0}
    quantile = stack.get("/api/v1/metrics/query", query=f'histogram_quantile(0.5, sum by (le) (rate('
                                                        f'{{"traces.span.metrics.duration_bucket", '
                                                        f'"service.name"="{payment}"}}[1h])))', step=3600, **window)
    assert quantile["series"][0]["points"][-1][1] == pytest.approx(34.0)
    names = {(m["name"], m["type"]) for m in stack.get("/api/v1/metrics/names", prefix="traces.span", **window)["metrics"]}
    assert names == {("traces.span.metrics.calls", "sum"), ("traces.span.metrics.duration", "histogram")}
    labels = stack.get("/api/v1/metrics/labels", metric="traces.span.metrics.calls", **window)["labels"]
    assert {"service.name", "span.name", "span.kind", "status.code"} <= set(labels)


# -- metrics, SQL, health ----------------------------------------------------------------------------


def test_sdk_counter_through_promql_sql_and_health(stack: Stack, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    service = f"meter-{uuid.uuid4().hex[:8]}"
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{stack.pipeline.ingest.http}/v1/metrics"),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
    counter = provider.get_meter("shop").create_counter("orders_total")
    counter.add(5, {"region": "eu"})
    counter.add(1, {"region": "us"})
    assert provider.force_flush(30_000)
    _count(stack, f"SELECT count() FROM otel_metrics_sum WHERE ServiceName = '{service}'", 2)
    time.sleep(1.1)  # the second export is a later sample of the same cumulative series
    counter.add(2, {"region": "eu"})
    assert provider.force_flush(30_000)
    provider.shutdown()  # exports once more: three samples of each cumulative series
    _count(stack, f"SELECT count() FROM otel_metrics_sum WHERE ServiceName = '{service}'", 6)
    window = {"from": "now-10m", "step": 600}

    latest = stack.get("/api/v1/metrics/query", query=f'orders_total{{service_name="{service}"}}', **window)
    assert {s["labels"]["region"]: s["points"][-1][1] for s in latest["series"]} == {"eu": 7.0, "us": 1.0}
    assert latest["series"][0]["labels"]["__name__"] == "orders_total"
    increase = stack.get("/api/v1/metrics/query", query=f'sum by (region) (increase(orders_total{{service_name='
                                                        f'"{service}"}}[10m]))', **window)
    # cumulative samples 5 then 7: the increase seen is 2 (no extrapolation, the first sample has no predecessor)
    assert {s["labels"]["region"]: s["points"][-1][1] for s in increase["series"]} == {"eu": 2.0, "us": 0.0}
    series = stack.get("/api/v1/metrics/series", metric="orders_total", from_="now-10m")
    assert {"region": "eu", "service.name": service} in series["series"]

    sql = httpx.post(f"{stack.url}/api/v1/sql", headers=stack.headers, json={"sql": "SELECT MetricName, max(Value) FROM otel_metrics_sum "
                                                             f"WHERE ServiceName = '{service}' GROUP BY 1"}, timeout=30)
    assert sql.status_code == 200 and sql.json()["rows"] == [["orders_total", 7.0]]

    deadline = time.monotonic() + 60
    while True:
        health = stack.get("/api/v1/health")
        groups = {g["group"]: g for g in health["lag"]}
        if health["status"] == "ok" and f"sink-{stack.tag}" in groups:
            break
        assert time.monotonic() < deadline, health
        time.sleep(1)
    assert health["kafka"]["ok"] and health["clickhouse"]["ok"]
    assert groups[f"worker-{stack.tag}"]["partitions"] > 0 and groups[f"sink-{stack.tag}"]["partitions"] > 0
    assert health["dead_letters"]["count"] is not None

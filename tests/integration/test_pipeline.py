"""Logs and metrics end to end: OTel SDK -> ingest -> Kafka -> Faust worker -> sink -> ClickHouse.

Real broker, real ClickHouse engine, every stage a real `maple` process.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Producer

from maple import kafka
from maple.settings import Settings
from maple.topics import (
    DEAD_LETTER,
    HEADER_ERROR,
    HEADER_RECEIVED_NS,
    HEADER_ROWS,
    HEADER_SOURCE,
    HEADER_SOURCE_RANGE,
    HEADER_STAGE,
    HEADER_TABLE,
    LOGS,
    RAW_LOGS,
    SourcePosition,
)
from tests.helpers.ingest import end_offsets, post, read_since
from tests.helpers.pipeline import Pipeline, start_pipeline


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, clickhouse_settings: Settings) -> Iterator[Pipeline]:
    pipeline = start_pipeline(kafka_bootstrap, clickhouse_settings, uuid.uuid4().hex[:8])
    yield pipeline
    pipeline.stop()


def _service() -> str:
    return f"svc-{uuid.uuid4().hex[:10]}"


# -- logs -----------------------------------------------------------------------------------------


def test_sdk_logs_land_as_exact_rows(pipeline: Pipeline) -> None:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    service = _service()
    provider = LoggerProvider(resource=Resource.create({"service.name": service, "k8s.pod.name": "pod-7"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(
        endpoint=f"{pipeline.ingest.http}/v1/logs")))
    logger = provider.get_logger("shop.checkout", "3.2.1")
    levels = [(SeverityNumber.TRACE, "TRACE"), (SeverityNumber.DEBUG, "DEBUG"), (SeverityNumber.INFO, "INFO"),
              (SeverityNumber.WARN, "WARN"), (SeverityNumber.ERROR, "ERROR"), (SeverityNumber.FATAL, "FATAL")]
    for number, text in levels:
        logger.emit(body=f"explicit {text.lower()} record", severity_number=number, severity_text=text,
                    attributes={"case": f"explicit-{text}"})
    logger.emit(body='{"level": "warning", "msg": "disk 91% full", "disk": {"mount": "/data", "free_gb": 3}}',
                attributes={"case": "json", "msg": "explicit wins"})
    logger.emit(body="Payment ERROR: card declined", attributes={"case": "keyword"}, event_name="payment.declined")
    logger.emit(body="cache warmed in 12 ms", attributes={"case": "none"})
    assert provider.force_flush(10_000)
    provider.shutdown()

    pipeline.wait_for(f"SELECT count() FROM otel_logs WHERE ServiceName = '{service}'", [(9,)])
    client = pipeline.client()
    rows = {r[0]: r[1:] for r in client.query(
        "SELECT LogAttributes['case'], SeverityText, SeverityNumber, Body, LogAttributes, ScopeName, ScopeVersion, "
        "ResourceAttributes['k8s.pod.name'], `__otel_materialized_k8s.pod.name`, EventName "
        f"FROM otel_logs WHERE ServiceName = '{service}'").result_rows}
    client.close()
    for number, text in levels:
        assert rows[f"explicit-{text}"][:3] == (text, int(number.value), f"explicit {text.lower()} record")
    json_row = rows["json"]
    assert json_row[:2] == ("WARN", 13)
    assert json_row[3] == {"case": "json", "msg": "explicit wins", "level": "warning", "disk.mount": "/data",
                           "disk.free_gb": "3"}
    assert rows["keyword"][:2] == ("ERROR", 17)
    assert rows["none"][:2] == ("", 0)
    assert all(r[4:8] == ("shop.checkout", "3.2.1", "pod-7", "pod-7") for r in rows.values())
    assert {case: r[8] for case, r in rows.items() if r[8]} == {"keyword": "payment.declined"}


# -- metrics --------------------------------------------------------------------------------------


def test_sdk_metrics_of_all_five_types_land(pipeline: Pipeline) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import Observation
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    service = _service()
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{pipeline.ingest.http}/v1/metrics"),
                                           export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader],
                             views=[View(instrument_name="payload_bytes",
                                         aggregation=ExponentialBucketHistogramAggregation())])
    meter = provider.get_meter("shop.metrics")
    meter.create_counter("orders_total", unit="1").add(5, {"region": "eu"})
    meter.create_up_down_counter("queue_size").add(-3)
    latency = meter.create_histogram("latency_ms", unit="ms")
    for value in (3.0, 42.0, 120.0):
        latency.record(value, {"route": "/pay"})
    meter.create_histogram("payload_bytes").record(1500)
    meter.create_observable_gauge("cpu_temp", callbacks=[lambda _o: [Observation(61.5, {"core": "0"})]])
    provider.shutdown()  # one collection and export (force_flush first would export the same points twice)

    # The Python SDK has no summary instrument; a Collector forwarding Prometheus summaries sends these.
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value={"string_value": service})
    now_ns = time.time_ns()  # data older than the tables' TTL (30 days) would be dropped on arrival
    point = rm.scope_metrics.add().metrics.add(name="gc_pause_seconds").summary.data_points.add(
        count=10, sum=1.25, time_unix_nano=now_ns)
    point.quantile_values.add(quantile=0.5, value=0.1)
    point.quantile_values.add(quantile=0.99, value=0.4)
    assert post(f"{pipeline.ingest.http}/v1/metrics", request.SerializeToString(),
                {"Content-Type": "application/x-protobuf"})[0] == 200

    where = f"WHERE ServiceName = '{service}'"
    pipeline.wait_for(f"SELECT MetricName, Value, IsMonotonic, AggregationTemporality, Attributes FROM "
                      f"otel_metrics_sum {where} ORDER BY MetricName",
                      [("orders_total", 5.0, True, 2, {"region": "eu"}), ("queue_size", -3.0, False, 2, {})])
    pipeline.wait_for(f"SELECT MetricName, MetricUnit, Count, Sum, Min, Max, arraySum(BucketCounts), "
                      f"length(ExplicitBounds) > 0 FROM otel_metrics_histogram {where}",
                      [("latency_ms", "ms", 3, 165.0, 3.0, 120.0, 3, True)])
    pipeline.wait_for(f"SELECT MetricName, Count, Sum, arraySum(PositiveBucketCounts) FROM "
                      f"otel_metrics_exponential_histogram {where}", [("payload_bytes", 1, 1500.0, 1)])
    pipeline.wait_for(f"SELECT MetricName, Value, Attributes FROM otel_metrics_gauge {where}",
                      [("cpu_temp", 61.5, {"core": "0"})])
    pipeline.wait_for(f"SELECT MetricName, Count, Sum, ValueAtQuantiles.Quantile, ValueAtQuantiles.Value, "
                      f"toUnixTimestamp64Nano(TimeUnix) FROM otel_metrics_summary {where}",
                      [("gc_pause_seconds", 10, 1.25, [0.5, 0.99], [0.1, 0.4], now_ns)])


# -- dead letters ---------------------------------------------------------------------------------


def test_an_uninsertable_row_goes_to_the_dead_letter_topic_and_the_rest_lands(pipeline: Pipeline) -> None:
    service = _service()
    n = 25
    now = time.time_ns() // 1_000_000_000
    columns = {"Timestamp": [f"{now}.{i:09d}" for i in range(n)], "ServiceName": [service] * n,
               "Body": [f"row {i}" for i in range(n)], "SeverityNumber": [9] * n}
    columns["Timestamp"][7] = "99999999999999.0"  # past DateTime64(9)'s range: ClickHouse refuses this row
    start = end_offsets(pipeline.bootstrap, DEAD_LETTER.name)
    producer = Producer(kafka.producer_config(pipeline.bootstrap))
    producer.produce(LOGS.name, value=orjson.dumps(columns), partition=0, headers=[
        (HEADER_TABLE, b"otel_logs"), (HEADER_ROWS, str(n).encode()),
        (HEADER_SOURCE, SourcePosition("test.source", 0, time.time_ns()).header()),
        (HEADER_RECEIVED_NS, str(time.time_ns()).encode())])
    assert producer.flush(30) == 0

    pipeline.wait_for(f"SELECT count(), countIf(Body = 'row 7') FROM otel_logs WHERE ServiceName = '{service}'",
                      [(n - 1, 0)])
    [letter] = read_since(pipeline.bootstrap, DEAD_LETTER.name, start)
    headers = dict(letter.headers())
    assert headers[HEADER_STAGE] == b"sink" and headers[HEADER_TABLE] == b"otel_logs"
    assert b"DateTime" in headers[HEADER_ERROR]
    assert headers[HEADER_SOURCE_RANGE].startswith(f"{LOGS.name}/0/".encode())
    assert orjson.loads(letter.value())["Body"] == ["row 7"]
    assert pipeline.sink.alive and pipeline.worker.alive


def test_an_undecodable_raw_record_is_dead_lettered_by_the_worker(pipeline: Pipeline) -> None:
    start = end_offsets(pipeline.bootstrap, DEAD_LETTER.name)
    producer = Producer(kafka.producer_config(pipeline.bootstrap))
    producer.produce(RAW_LOGS.name, value=b"\xff\xfe this is not protobuf")
    assert producer.flush(30) == 0
    deadline = time.monotonic() + 60
    letters: list = []
    while time.monotonic() < deadline and not letters:
        if end_offsets(pipeline.bootstrap, DEAD_LETTER.name) != start:
            letters = [m for m in read_since(pipeline.bootstrap, DEAD_LETTER.name, start)
                       if dict(m.headers()).get(HEADER_STAGE) == b"worker"]
        time.sleep(0.5)
    assert letters, pipeline.worker.output()
    assert letters[0].value() == b"\xff\xfe this is not protobuf"
    assert b"DecodeError" in dict(letters[0].headers())[HEADER_ERROR]
    assert pipeline.worker.alive


def test_malformed_row_batches_are_dead_lettered_and_the_sink_goes_on(pipeline: Pipeline) -> None:
    service = _service()
    start = end_offsets(pipeline.bootstrap, DEAD_LETTER.name)
    producer = Producer(kafka.producer_config(pipeline.bootstrap))
    producer.produce(LOGS.name, value=b"no headers at all", partition=1)
    producer.produce(LOGS.name, value=b"{}", partition=1, headers=[(HEADER_TABLE, b"otel_logs"),
                                                                   (HEADER_ROWS, b"many")])
    now = time.time_ns() // 1_000_000_000
    good = {"Timestamp": [f"{now}.000000001"], "ServiceName": [service], "Body": ["after the bad ones"]}
    producer.produce(LOGS.name, value=orjson.dumps(good), partition=1, headers=[
        (HEADER_TABLE, b"otel_logs"), (HEADER_ROWS, b"1")])
    assert producer.flush(30) == 0
    pipeline.wait_for(f"SELECT Body FROM otel_logs WHERE ServiceName = '{service}'", [("after the bad ones",)])
    letters = [m for m in read_since(pipeline.bootstrap, DEAD_LETTER.name, start)
               if dict(m.headers()).get(HEADER_STAGE) == b"sink"]
    assert sorted(m.value() for m in letters) == [b"no headers at all", b"{}"]
    assert pipeline.sink.alive

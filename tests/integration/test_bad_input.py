"""Bad input end to end (issue 12): real ingest, worker, sink and ClickHouse.

One bad record never takes its request down, values are stored as sent (NaN, +Inf, -Inf), and a record
that cannot be stored is dead-lettered alone, with the reason: never silently lost.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from maple.settings import Settings
from maple.topics import DEAD_LETTER, HEADER_ERROR, HEADER_SOURCE, HEADER_STAGE, RAW_LOGS
from processors.logs import BODY_ERROR
from tests.helpers.ingest import end_offsets, post, read_since
from tests.helpers.pipeline import Pipeline, start_pipeline

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, clickhouse_settings: Settings) -> Iterator[Pipeline]:
    pipeline = start_pipeline(kafka_bootstrap, clickhouse_settings, uuid.uuid4().hex[:8])
    yield pipeline
    pipeline.stop()


def _service() -> str:
    return f"bad-{uuid.uuid4().hex[:10]}"


def _logs(service: str, *records: tuple[str, int]) -> bytes:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name", value={"string_value": service})
    sl = rl.scope_logs.add()
    for body, stamp in records:
        sl.log_records.add(time_unix_nano=stamp).body.string_value = body
    return request.SerializeToString()


def _worker_letters(pipeline: Pipeline, start: dict[int, int], count: int, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    letters: list = []
    while time.monotonic() < deadline:
        if end_offsets(pipeline.bootstrap, DEAD_LETTER.name) != start:
            letters = [m for m in read_since(pipeline.bootstrap, DEAD_LETTER.name, start)
                       if dict(m.headers()).get(HEADER_STAGE) == b"worker"]
            if len(letters) >= count:
                return letters
        time.sleep(0.5)
    raise AssertionError(f"{len(letters)} worker dead letters, expected {count}\n{pipeline.worker.output()}")


def test_nan_and_infinities_are_stored_as_sent(pipeline: Pipeline) -> None:
    service = _service()
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value={"string_value": service})
    sm = rm.scope_metrics.add()
    now = time.time_ns()
    gauge = sm.metrics.add(name="g").gauge
    for i, value in enumerate((math.nan, math.inf, -math.inf, 2.5)):
        point = gauge.data_points.add(time_unix_nano=now, as_double=value)
        point.attributes.add(key="i", value={"int_value": i})
    histogram = sm.metrics.add(name="h").histogram
    histogram.aggregation_temporality = 2
    for i, total in enumerate((math.nan, math.inf, -math.inf)):
        point = histogram.data_points.add(time_unix_nano=now, count=1, sum=total, bucket_counts=[1],
                                          min=total, max=total)
        point.attributes.add(key="i", value={"int_value": i})
    assert post(f"{pipeline.ingest.http}/v1/metrics", request.SerializeToString(), PROTOBUF)[0] == 200

    where = f"WHERE ServiceName = '{service}'"
    pipeline.wait_for(f"SELECT Attributes['i'], isNaN(Value), Value FROM otel_metrics_gauge {where} "
                      "ORDER BY Attributes['i']",
                      [("0", 1, pytest.approx(math.nan, nan_ok=True)), ("1", 0, math.inf), ("2", 0, -math.inf),
                       ("3", 0, 2.5)])
    pipeline.wait_for(f"SELECT Attributes['i'], toString(Sum), toString(Min), toString(Max) FROM otel_metrics_histogram "
                      f"{where} ORDER BY Attributes['i']",
                      [("0", "nan", "nan", "nan"), ("1", "inf", "inf", "inf"), ("2", "-inf", "-inf", "-inf")])


def test_a_json_body_nested_too_deep_does_not_take_its_request_down(pipeline: Pipeline) -> None:
    service = _service()
    deep = '{"a":' * 600 + "1" + "}" * 600
    now = time.time_ns()
    body = _logs(service, ('{"level": "error", "msg": "disk full"}', now), (deep, now + 1), ("plain", now + 2))
    assert post(f"{pipeline.ingest.http}/v1/logs", body, PROTOBUF)[0] == 200
    pipeline.wait_for(f"SELECT Body = '{deep}', LogAttributes['msg'], SeverityText, mapContains(LogAttributes, "
                      f"'{BODY_ERROR}') FROM otel_logs WHERE ServiceName = '{service}' ORDER BY Timestamp",
                      [(0, "disk full", "ERROR", 0), (1, "", "", 1), (0, "", "", 0)])


def test_a_record_stamped_past_2106_is_dead_lettered_alone_and_its_neighbours_land(pipeline: Pipeline) -> None:
    service = _service()
    start = end_offsets(pipeline.bootstrap, DEAD_LETTER.name)
    now = time.time_ns()
    body = _logs(service, ("before", now), ("the clock says 2262", 2**63 - 1), ("after", now + 1))
    assert post(f"{pipeline.ingest.http}/v1/logs", body, PROTOBUF)[0] == 200
    pipeline.wait_for(f"SELECT Body FROM otel_logs WHERE ServiceName = '{service}' ORDER BY Timestamp",
                      [("before",), ("after",)])
    [letter] = _worker_letters(pipeline, start, 1)
    headers = dict(letter.headers())
    assert b"TimeOutOfRange" in headers[HEADER_ERROR] and b"time_unix_nano" in headers[HEADER_ERROR]
    assert headers[HEADER_SOURCE].startswith(RAW_LOGS.name.encode())
    single = ExportLogsServiceRequest.FromString(letter.value())
    assert [r.body.string_value for r in single.resource_logs[0].scope_logs[0].log_records] == ["the clock says 2262"]
    assert pipeline.worker.alive


def test_a_record_too_large_for_a_row_is_dead_lettered_alone_and_its_companion_lands(pipeline: Pipeline) -> None:
    service = _service()
    start = end_offsets(pipeline.bootstrap, DEAD_LETTER.name)
    now = time.time_ns()
    # 16 MB of text: over the largest row a processed topic carries in either row format (the compiled core's
    # Native block hands it to the Python path, whose JSONColumns row is over MAX_ROW_BYTES).
    body = _logs(service, ("companion", now), ("x" * 16_000_000, now + 1))
    assert post(f"{pipeline.ingest.http}/v1/logs", body, PROTOBUF)[0] == 200
    pipeline.wait_for(f"SELECT Body FROM otel_logs WHERE ServiceName = '{service}'", [("companion",)])
    [letter] = _worker_letters(pipeline, start, 1)
    assert b"RowTooLarge" in dict(letter.headers())[HEADER_ERROR]
    assert len(ExportLogsServiceRequest.FromString(letter.value()).resource_logs[0].scope_logs[0].log_records) == 1


def test_a_span_with_a_2000_byte_trace_id_is_refused_alone(pipeline: Pipeline) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    service = _service()
    start = end_offsets(pipeline.bootstrap, DEAD_LETTER.name)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value={"string_value": service})
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for i, trace_id in enumerate((uuid.uuid4().bytes, b"t" * 2000, uuid.uuid4().bytes)):
        ss.spans.add(trace_id=trace_id, span_id=i.to_bytes(8, "big"), name=f"op{i}", start_time_unix_nano=now,
                     end_time_unix_nano=now + 1000)
    assert post(f"{pipeline.ingest.http}/v1/traces", request.SerializeToString(), PROTOBUF)[0] == 200
    pipeline.wait_for("SELECT sum(Value) FROM otel_metrics_sum WHERE MetricName = 'traces.span.metrics.calls' "
                      f"AND ServiceName = '{service}'", [(2.0,)])  # RED counts the two spans that became rows
    [letter] = _worker_letters(pipeline, start, 1)
    assert b"trace_id is 2000 bytes; OTLP requires 16" in dict(letter.headers())[HEADER_ERROR]

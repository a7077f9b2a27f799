"""The OTLP ingest against the real broker: official SDK exporters, OTLP/JSON, gzip and every error path."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.request
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource

from apps import maple_command
from maple.topics import HEADER_ENCODING, HEADER_RECEIVED_NS, HEADER_TENANT, RAW_LOGS, RAW_METRICS, RAW_TRACES
from tests.helpers.ingest import IngestProcess, end_offsets, post, read_since, status

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def ingest(kafka_bootstrap: str) -> Iterator[IngestProcess]:
    process = IngestProcess(kafka_bootstrap, {}).start()
    yield process
    process.stop()


def _resource() -> Resource:
    return Resource.create({"service.name": f"svc-{uuid.uuid4().hex[:8]}", "deployment.environment": "test"})


def _trace_request(spans: int, name: str = "op") -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        span = scope.spans.add(trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8], name=f"{name}-{i}",
                               start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_001_000_000_000)
        span.attributes.add(key="i", value={"int_value": i})
    return request


# -- the official SDK exporters --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_traces_arrive_in_kafka_field_by_field(ingest: IngestProcess, protocol: str) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Status, StatusCode

    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{ingest.http}/v1/traces")
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        exporter = GrpcSpanExporter(endpoint=ingest.grpc, insecure=True)
    start = end_offsets(ingest.bootstrap, RAW_TRACES.name)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("maple.tests", "1.0")
    with tracer.start_as_current_span("checkout", attributes={"http.method": "POST", "cart.items": 3}) as parent:
        parent.add_event("payment", {"amount": 12.5})
        with tracer.start_as_current_span("charge-card") as child:
            child.set_status(Status(StatusCode.ERROR, "declined"))
    spans = memory.get_finished_spans()
    assert exporter.export(spans).name == "SUCCESS"
    provider.shutdown()

    records = read_since(ingest.bootstrap, RAW_TRACES.name, start)
    assert len(records) == 1
    got = trace_service_pb2.ExportTraceServiceRequest.FromString(records[0].value())
    assert got == encode_spans(spans)  # every field, as the SDK encoded it
    names = [s.name for s in got.resource_spans[0].scope_spans[0].spans]
    assert sorted(names) == ["charge-card", "checkout"]
    assert {s.trace_id for s in got.resource_spans[0].scope_spans[0].spans} == {
        spans[0].context.trace_id.to_bytes(16, "big")}
    headers = dict(records[0].headers())
    assert headers[HEADER_TENANT] == b"default" and headers[HEADER_ENCODING] == b"protobuf"
    assert int(headers[HEADER_RECEIVED_NS]) > 1_700_000_000_000_000_000


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_logs_arrive_in_kafka_field_by_field(ingest: IngestProcess, protocol: str) -> None:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        exporter = OTLPLogExporter(endpoint=f"{ingest.http}/v1/logs")
    else:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter

        exporter = GrpcLogExporter(endpoint=ingest.grpc, insecure=True)
    start = end_offsets(ingest.bootstrap, RAW_LOGS.name)
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=_resource())
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("maple.tests")
    logger.emit(body='{"level":"warn","msg":"disk almost full","disk":{"free_pct":4}}',
                severity_number=SeverityNumber.UNSPECIFIED, attributes={"host": "db-1"})
    logger.emit(body="plain text ERROR line", severity_number=SeverityNumber.ERROR, severity_text="ERROR")
    logs = memory.get_finished_logs()
    assert len(logs) == 2
    assert exporter.export(logs).name == "SUCCESS"
    provider.shutdown()

    records = read_since(ingest.bootstrap, RAW_LOGS.name, start)
    assert len(records) == 1
    got = logs_service_pb2.ExportLogsServiceRequest.FromString(records[0].value())
    assert got == encode_logs(logs)
    bodies = [r.body.string_value for r in got.resource_logs[0].scope_logs[0].log_records]
    assert bodies[1] == "plain text ERROR line"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_metrics_of_every_kind_arrive_in_kafka(ingest: IngestProcess, protocol: str) -> None:
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=f"{ingest.http}/v1/metrics")
    else:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

        exporter = GrpcMetricExporter(endpoint=ingest.grpc, insecure=True)
    start = end_offsets(ingest.bootstrap, RAW_METRICS.name)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=_resource(), metric_readers=[reader])
    meter = provider.get_meter("maple.tests")
    meter.create_counter("orders").add(5, {"region": "eu"})
    meter.create_histogram("latency_ms").record(42.0, {"route": "/pay"})
    meter.create_observable_gauge("queue_depth", callbacks=[lambda _options: [Observation(7, {"q": "a"})]])
    meter.create_up_down_counter("in_flight").add(-2)
    assert provider.force_flush(10_000)
    provider.shutdown()

    records = read_since(ingest.bootstrap, RAW_METRICS.name, start)
    got = metrics_service_pb2.ExportMetricsServiceRequest()
    for record in records:
        got.MergeFromString(record.value())
    metrics = {m.name: m for rm in got.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert metrics["orders"].sum.is_monotonic and metrics["orders"].sum.data_points[0].as_int == 5
    assert metrics["orders"].sum.data_points[0].attributes[0].value.string_value == "eu"
    assert metrics["in_flight"].sum.data_points[0].as_int == -2 and not metrics["in_flight"].sum.is_monotonic
    assert metrics["latency_ms"].histogram.data_points[0].sum == 42.0
    assert metrics["latency_ms"].histogram.data_points[0].count == 1
    assert metrics["queue_depth"].gauge.data_points[0].as_int == 7


# -- OTLP/JSON and gzip ----------------------------------------------------------------------------

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
PARENT_ID = "eee19b7ec3c1b173"


def test_json_traces_with_hex_ids_and_unknown_fields(ingest: IngestProcess) -> None:
    doc = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}],
                     "futureResourceField": {"x": 1}},
        "scopeSpans": [{"scope": {"name": "lib"}, "spans": [{
            "traceId": TRACE_ID, "spanId": SPAN_ID, "parentSpanId": PARENT_ID, "name": "GET /",
            "kind": 2, "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": 1700000000500000000,
            "status": {"code": 2, "message": "boom"}, "someNewField": [1, 2, 3],
            "links": [{"traceId": TRACE_ID, "spanId": PARENT_ID}],
            "attributes": [{"key": "http.status_code", "value": {"intValue": "500"}}],
        }]}],
    }]}
    start = end_offsets(ingest.bootstrap, RAW_TRACES.name)
    code, headers, body = post(f"{ingest.http}/v1/traces", json.dumps(doc).encode(), JSON)
    assert code == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {}
    [record] = read_since(ingest.bootstrap, RAW_TRACES.name, start)
    assert dict(record.headers())[HEADER_ENCODING] == b"json"
    span = trace_service_pb2.ExportTraceServiceRequest.FromString(record.value()).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID)
    assert span.span_id == bytes.fromhex(SPAN_ID) and span.parent_span_id == bytes.fromhex(PARENT_ID)
    assert span.links[0].trace_id == bytes.fromhex(TRACE_ID) and span.links[0].span_id == bytes.fromhex(PARENT_ID)
    assert span.kind == 2 and span.status.code == 2 and span.end_time_unix_nano == 1700000000500000000
    assert span.attributes[0].value.int_value == 500


def test_json_logs_and_metric_exemplars_with_hex_ids(ingest: IngestProcess) -> None:
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1700000000000000000", "body": {"stringValue": "hi"}, "traceId": TRACE_ID, "spanId": SPAN_ID,
         "severityNumber": 9}]}]}]}
    start = end_offsets(ingest.bootstrap, RAW_LOGS.name)
    assert post(f"{ingest.http}/v1/logs", json.dumps(logs).encode(), JSON)[0] == 200
    [record] = read_since(ingest.bootstrap, RAW_LOGS.name, start)
    log = logs_service_pb2.ExportLogsServiceRequest.FromString(record.value()).resource_logs[0].scope_logs[0].log_records[0]
    assert log.trace_id == bytes.fromhex(TRACE_ID) and log.span_id == bytes.fromhex(SPAN_ID)

    metrics = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "m", "histogram": {
        "aggregationTemporality": 1, "dataPoints": [{"count": "1", "sum": 3.5, "bucketCounts": ["1"],
                                                     "exemplars": [{"asDouble": 3.5, "traceId": TRACE_ID,
                                                                    "spanId": SPAN_ID}]}]}}]}]}]}
    start = end_offsets(ingest.bootstrap, RAW_METRICS.name)
    assert post(f"{ingest.http}/v1/metrics", json.dumps(metrics).encode(), JSON)[0] == 200
    [record] = read_since(ingest.bootstrap, RAW_METRICS.name, start)
    metric = metrics_service_pb2.ExportMetricsServiceRequest.FromString(record.value()).resource_metrics[0] \
        .scope_metrics[0].metrics[0]
    exemplar = metric.histogram.data_points[0].exemplars[0]
    assert exemplar.trace_id == bytes.fromhex(TRACE_ID) and exemplar.span_id == bytes.fromhex(SPAN_ID)


def test_gzip_protobuf_is_stored_decompressed(ingest: IngestProcess) -> None:
    request = _trace_request(50, "gz")
    start = end_offsets(ingest.bootstrap, RAW_TRACES.name)
    code, headers, body = post(f"{ingest.http}/v1/traces", gzip.compress(request.SerializeToString()),
                               {**PROTOBUF, "Content-Encoding": "gzip"})
    assert code == 200 and headers["Content-Type"] == "application/x-protobuf"
    assert trace_service_pb2.ExportTraceServiceResponse.FromString(body) == trace_service_pb2.ExportTraceServiceResponse()
    [record] = read_since(ingest.bootstrap, RAW_TRACES.name, start)
    assert record.value() == request.SerializeToString()


def test_empty_request_is_accepted_and_writes_nothing(ingest: IngestProcess) -> None:
    start = end_offsets(ingest.bootstrap, RAW_TRACES.name)
    assert post(f"{ingest.http}/v1/traces", b"", PROTOBUF)[0] == 200
    assert end_offsets(ingest.bootstrap, RAW_TRACES.name) == start


# -- errors ----------------------------------------------------------------------------------------


def _status(body: bytes, json_body: bool = False) -> status_pb2.Status:
    if json_body:
        return json_format.Parse(body, status_pb2.Status())
    return status_pb2.Status.FromString(body)


def test_undecodable_bodies_get_400_with_a_status_in_the_request_content_type(ingest: IngestProcess) -> None:
    code, headers, body = post(f"{ingest.http}/v1/traces", b"\xff\xff\xff not protobuf", PROTOBUF)
    assert code == 400 and headers["Content-Type"] == "application/x-protobuf"
    status_message = _status(body)
    assert status_message.code == code_pb2.INVALID_ARGUMENT and "ExportTraceServiceRequest" in status_message.message

    code, headers, body = post(f"{ingest.http}/v1/logs", b"{not json", JSON)
    assert code == 400 and headers["Content-Type"].startswith("application/json")
    assert "not valid JSON" in _status(body, json_body=True).message

    bad_id = {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz-not-hex", "name": "x"}]}]}]}
    code, _, body = post(f"{ingest.http}/v1/traces", json.dumps(bad_id).encode(), JSON)
    assert code == 400 and "resourceSpans[0].scopeSpans[0].spans[0].traceId is not a hex string" in \
        _status(body, json_body=True).message

    for key, hexed, size in (("traceId", "ab" * 1000, 16), ("spanId", "abcd", 8), ("parentSpanId", "ab" * 9, 8)):
        wrong_length = {"resourceSpans": [{"scopeSpans": [{"spans": [
            {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x", key: hexed}]}]}]}
        code, _, body = post(f"{ingest.http}/v1/traces", json.dumps(wrong_length).encode(), JSON)
        assert code == 400 and f"spans[0].{key} is {len(hexed) // 2} bytes" in _status(body, json_body=True).message
        assert f"OTLP requires {size}" in _status(body, json_body=True).message

    wrong_type = {"resourceSpans": {"not": "a list"}}
    code, _, body = post(f"{ingest.http}/v1/traces", json.dumps(wrong_type).encode(), JSON)
    assert code == 400 and "must be an array" in _status(body, json_body=True).message

    code, _, _ = post(f"{ingest.http}/v1/traces", b"not gzip at all", {**PROTOBUF, "Content-Encoding": "gzip"})
    assert code == 400


def test_unsupported_media_types_and_encodings_get_415(ingest: IngestProcess) -> None:
    code, _, body = post(f"{ingest.http}/v1/traces", b"x", {"Content-Type": "text/plain"})
    assert code == 415 and "unsupported Content-Type 'text/plain'" in _status(body).message
    code, _, body = post(f"{ingest.http}/v1/traces", b"x", {**PROTOBUF, "Content-Encoding": "br"})
    assert code == 415 and "unsupported Content-Encoding 'br'" in _status(body).message


def test_unknown_paths_and_methods(ingest: IngestProcess) -> None:
    assert post(f"{ingest.http}/v1/profiles", b"", PROTOBUF)[0] == 404
    assert status(f"{ingest.http}/v1/traces") == 405
    assert status(f"{ingest.http}/healthz") == 200 and status(f"{ingest.http}/readyz") == 200


def test_grpc_invalid_argument_for_undecodable_bytes(ingest: IngestProcess) -> None:
    with grpc.insecure_channel(ingest.grpc) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(b"\xff\xff\xff not protobuf", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_metrics_count_requests_items_and_rejections(ingest: IngestProcess) -> None:
    assert post(f"{ingest.http}/v1/traces", b"\xff\xff", PROTOBUF)[0] == 400
    assert post(f"{ingest.http}/v1/traces", _trace_request(3).SerializeToString(), PROTOBUF)[0] == 200
    with urllib.request.urlopen(f"{ingest.http}/metrics") as response:
        text = response.read().decode()
    for name in ('maple_ingest_requests_total{outcome="ok",protocol="http",signal="traces"}',
                 'maple_ingest_requests_total{outcome="rejected",protocol="http",signal="traces"}',
                 'maple_ingest_items_total{outcome="accepted",signal="traces"}',
                 'maple_ingest_rejections_total{reason="invalid"}', "maple_ingest_inflight_bytes 0.0",
                 "maple_ingest_produce_seconds_bucket", "maple_ingest_kafka_ready 1.0"):
        assert name in text, name


# -- limits, auth and splitting (each with its own ingest settings) ---------------------------------


def test_size_limit_413_before_and_after_decompression(kafka_bootstrap: str) -> None:
    small = IngestProcess(kafka_bootstrap, {"MAPLE_INGEST_MAX_REQUEST_BYTES": str(256 * 1024)}).start()
    try:
        big = _trace_request(5000).SerializeToString()
        assert len(big) > 256 * 1024
        code, _, body = post(f"{small.http}/v1/traces", big, PROTOBUF)
        assert code == 413 and "exceeds 262144 bytes" in _status(body).message
        bomb = gzip.compress(b"\0" * (256 << 20))  # 256 MiB of zeros in ~250 KiB
        code, _, body = post(f"{small.http}/v1/traces", bomb, {**PROTOBUF, "Content-Encoding": "gzip"})
        assert code == 413 and "after decompression" in _status(body).message
        # Still serving afterwards.
        assert post(f"{small.http}/v1/traces", _trace_request(5).SerializeToString(), PROTOBUF)[0] == 200
        with grpc.insecure_channel(small.grpc) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            with pytest.raises(grpc.RpcError) as info:
                export(big, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        small.stop()


def test_inflight_budget_gives_429_with_retry_after_and_grpc_retry_info(kafka_bootstrap: str) -> None:
    tight = IngestProcess(kafka_bootstrap, {"MAPLE_INGEST_MAX_INFLIGHT_BYTES": "4096",
                                            "MAPLE_INGEST_RETRY_AFTER_S": "7"}).start()
    try:
        body = _trace_request(100).SerializeToString()
        assert len(body) > 4096
        code, headers, reply = post(f"{tight.http}/v1/traces", body, PROTOBUF)
        assert code == 429 and headers["Retry-After"] == "7"
        assert _status(reply).code == code_pb2.RESOURCE_EXHAUSTED
        with grpc.insecure_channel(tight.grpc) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            with pytest.raises(grpc.RpcError) as info:
                export(body, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dict(info.value.trailing_metadata())["grpc-status-details-bin"]
        retry = error_details_pb2.RetryInfo()
        status_pb2.Status.FromString(details).details[0].Unpack(retry)
        assert retry.retry_delay.seconds == 7
        assert post(f"{tight.http}/v1/traces", _trace_request(1).SerializeToString(), PROTOBUF)[0] == 200
    finally:
        tight.stop()


def test_api_keys_map_to_tenants(kafka_bootstrap: str) -> None:
    keyed = IngestProcess(kafka_bootstrap, {"MAPLE_INGEST_API_KEYS": "k-alpha=team-a,k-beta=team-b"}).start()
    try:
        body = _trace_request(1).SerializeToString()
        assert post(f"{keyed.http}/v1/traces", body, PROTOBUF)[0] == 401
        code, _, reply = post(f"{keyed.http}/v1/traces", body, {**PROTOBUF, "Authorization": "Bearer wrong"})
        assert code == 401 and _status(reply).code == code_pb2.UNAUTHENTICATED
        assert post(f"{keyed.http}/v1/traces", body, {**PROTOBUF, "Authorization": "Basic k-alpha"})[0] == 401
        start = end_offsets(kafka_bootstrap, RAW_TRACES.name)
        assert post(f"{keyed.http}/v1/traces", body, {**PROTOBUF, "Authorization": "Bearer k-beta"})[0] == 200
        [record] = read_since(kafka_bootstrap, RAW_TRACES.name, start)
        assert dict(record.headers())[HEADER_TENANT] == b"team-b"
        with grpc.insecure_channel(keyed.grpc) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            with pytest.raises(grpc.RpcError) as info:
                export(body, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            export(body, timeout=10, metadata=(("authorization", "Bearer k-alpha"),))
    finally:
        keyed.stop()


def test_requests_over_the_record_limit_are_split_at_resource_and_scope_boundaries(kafka_bootstrap: str) -> None:
    limit = 64 * 1024
    splitting = IngestProcess(kafka_bootstrap, {"MAPLE_INGEST_MAX_RECORD_BYTES": str(limit)}).start()
    try:
        request = trace_service_pb2.ExportTraceServiceRequest()
        for r in range(3):
            resource = request.resource_spans.add()
            resource.resource.attributes.add(key="service.name", value={"string_value": f"svc-{r}"})
            for s in range(2):
                scope = resource.scope_spans.add()
                scope.scope.name = f"scope-{s}"
                scope.spans.extend(_trace_request(800, f"r{r}s{s}").resource_spans[0].scope_spans[0].spans)
        body = request.SerializeToString()
        assert len(body) > 4 * limit
        start = end_offsets(kafka_bootstrap, RAW_TRACES.name)
        code, _, reply = post(f"{splitting.http}/v1/traces", body, PROTOBUF)
        assert code == 200
        assert not trace_service_pb2.ExportTraceServiceResponse.FromString(reply).HasField("partial_success")
        records = read_since(kafka_bootstrap, RAW_TRACES.name, start)
        assert len(records) > 4 and all(len(r.value()) <= limit for r in records)
        seen: dict[str, tuple[str, str]] = {}
        for record in records:
            part = trace_service_pb2.ExportTraceServiceRequest.FromString(record.value())
            for rs in part.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        assert span.name not in seen, "a span was written twice"
                        seen[span.name] = (rs.resource.attributes[0].value.string_value, ss.scope.name)
        assert len(seen) == 3 * 2 * 800
        assert all(seen[f"r{r}s{s}-{i}"] == (f"svc-{r}", f"scope-{s}")
                   for r in range(3) for s in range(2) for i in range(800))
    finally:
        splitting.stop()


def test_json_encoded_ids_for_base64_would_be_wrong() -> None:
    """Guards the reason for the hex rewrite: protobuf's JSON mapping would read hex ids as base64."""
    request = json_format.ParseDict({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": TRACE_ID}]}]}]},
                                    trace_service_pb2.ExportTraceServiceRequest())
    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id == base64.b64decode(TRACE_ID)
    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id != bytes.fromhex(TRACE_ID)


def test_an_item_too_big_for_any_record_is_reported_in_partial_success(kafka_bootstrap: str) -> None:
    limit = 16 * 1024
    splitting = IngestProcess(kafka_bootstrap, {"MAPLE_INGEST_MAX_RECORD_BYTES": str(limit)}).start()
    try:
        request = _trace_request(400, "fits")
        giant = request.resource_spans[0].scope_spans[0].spans.add(name="giant", trace_id=uuid.uuid4().bytes)
        giant.attributes.add(key="blob", value={"string_value": "x" * (2 * limit)})
        start = end_offsets(kafka_bootstrap, RAW_TRACES.name)
        code, _, reply = post(f"{splitting.http}/v1/traces", request.SerializeToString(), PROTOBUF)
        assert code == 200
        partial = trace_service_pb2.ExportTraceServiceResponse.FromString(reply).partial_success
        assert partial.rejected_spans == 1 and "exceeds the Kafka record limit" in partial.error_message
        stored = [span.name for record in read_since(kafka_bootstrap, RAW_TRACES.name, start)
                  for rs in trace_service_pb2.ExportTraceServiceRequest.FromString(record.value()).resource_spans
                  for ss in rs.scope_spans for span in ss.spans]
        assert sorted(stored) == sorted(f"fits-{i}" for i in range(400))
    finally:
        splitting.stop()


def test_bench_ingest_reports_every_figure(ingest: IngestProcess) -> None:
    """The benchmark command works (its figures are for the README, not asserted here)."""
    import subprocess

    from tests.helpers.environment import clean_environ

    assert ingest.proc is not None
    result = subprocess.run(maple_command("bench", "ingest", "--url", ingest.http, "--pid",
                             str(ingest.proc.pid), "--duration", "1", "--warmup", "0.5", "--spans", "64",
                             "--concurrency", "2", "--json"), capture_output=True, text=True, env=clean_environ(),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] > 0 and report["errors"] == {}
    assert report["spans_per_s"] > 0 and report["latency_p99_ms"] >= report["latency_p50_ms"] > 0
    assert report["ingest_cpu_s_per_million_spans"] > 0

"""Traces end to end: OTel SDK -> ingest -> Kafka -> repartition + RED -> tail sampling -> sink -> ClickHouse.

Real broker, real ClickHouse engine, every stage a real `maple` process. The expected sample is computed
independently of the pipeline: error and slow traces by construction, the probabilistic share with the
Collector's FNV-1a hash over the trace ids the test generated.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from maple.settings import Settings
from processors.sampling import fnv1a64
from tests.helpers.ingest import post
from tests.helpers.pipeline import Pipeline, start_pipeline
from tests.helpers.stages import Stage


def _sampled_by_share(trace_id: str, percent: float) -> bool:
    return fnv1a64(b"default-hash-seed" + bytes.fromhex(trace_id)) <= int(percent / 100 * (2 ** 64 - 1))


def _sampling_file(tmp_path: Path, percent: float) -> Path:
    path = tmp_path / "sampling.yaml"
    path.write_text(yaml.safe_dump({"tail_sampling": {
        "decision_wait": "3s", "late_span_window": "3s", "num_traces": 100000, "policies": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "slow", "type": "latency", "latency": {"threshold_ms": 500}},
            {"name": "share", "type": "probabilistic", "probabilistic": {"sampling_percentage": percent}}]}}))
    return path


def _start(kafka_bootstrap: str, clickhouse_settings: Settings, tmp_path: Path, percent: float
           ) -> tuple[Pipeline, dict[str, str]]:
    pipeline = start_pipeline(kafka_bootstrap, clickhouse_settings, uuid.uuid4().hex[:8], {
        "MAPLE_TRACES_SAMPLING_CONFIG": str(_sampling_file(tmp_path, percent)), "MAPLE_TRACES_TICK_INTERVAL_S": "0.5"})
    return pipeline, pipeline.env


def _rows(pipeline: Pipeline, sql: str) -> list[tuple]:
    client = pipeline.client()
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


def test_sdk_traces_land_sampled_and_complete_and_red_counts_every_span(
        kafka_bootstrap: str, clickhouse_settings: Settings, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode, format_trace_id

    pipeline, _ = _start(kafka_bootstrap, clickhouse_settings, tmp_path, percent=25)
    service = f"svc-{uuid.uuid4().hex[:10]}"
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{pipeline.ingest.http}/v1/traces"),
                                                       max_export_batch_size=256))
        tracer = provider.get_tracer("shop.checkout", "1.4.0")
        kinds: dict[str, str] = {}
        for n in range(200):
            kind = "error" if n % 10 == 0 else "slow" if n % 10 == 1 else "normal"
            start = time.time_ns()
            with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER, start_time=start,
                                              end_on_exit=False) as root:
                kinds[format_trace_id(root.get_span_context().trace_id)] = kind
                for child in range(3):
                    span = tracer.start_span(f"step-{child}", kind=SpanKind.CLIENT, start_time=start + 1000,
                                             links=[Link(root.get_span_context(), {"why": "test"})] if child == 2 else None)
                    span.add_event("cache.miss", {"key": f"k{child}"})
                    if kind == "error" and child == 1:
                        span.set_status(Status(StatusCode.ERROR, "card declined"))
                    span.end(end_time=start + 2_000_000)
                root.end(end_time=start + (800_000_000 if kind == "slow" else 5_000_000))
        assert provider.force_flush(30_000)
        provider.shutdown()

        expected = {t for t, k in kinds.items() if k != "normal" or _sampled_by_share(t, 25)}
        normal = [t for t, k in kinds.items() if k == "normal"]
        shared = [t for t in normal if t in expected]
        assert 15 < len(shared) < 65  # 25% of 160 is 40 (sd 5.5): the hash behaves like a fair coin
        pipeline.wait_for(f"SELECT count() FROM otel_traces WHERE ServiceName = '{service}'",
                          [(4 * len(expected),)], timeout=120)
        landed = dict(_rows(pipeline, f"SELECT TraceId, count() FROM otel_traces WHERE ServiceName = '{service}' "
                                      "GROUP BY TraceId"))
        assert set(landed) == expected  # every error and slow trace, and exactly the hash-picked share
        assert set(landed.values()) == {4}  # complete: every span of every sampled trace
        [(spans, distinct)] = _rows(pipeline, "SELECT count(), uniqExact(SpanId) FROM otel_traces "
                                              f"WHERE ServiceName = '{service}'")
        assert spans == distinct
        # Each kept span carries its trace's weight: errors and slow traces 1, the 25% share 4, so the
        # re-weighted count of normal traces estimates the 160 that were sent.
        weights = dict(_rows(pipeline, f"SELECT TraceId, any(SampleRate) FROM otel_traces WHERE ServiceName = "
                                       f"'{service}' GROUP BY TraceId HAVING min(SampleRate) = max(SampleRate)"))
        assert weights == {t: (4.0 if kinds[t] == "normal" else 1.0) for t in expected}
        assert 4.0 * len(shared) == sum(weights[t] for t in shared)

        error_trace = next(t for t, k in kinds.items() if k == "error")
        rows = _rows(pipeline, "SELECT SpanName, SpanKind, StatusCode, StatusMessage, ScopeName, ScopeVersion, "
                               "Events.Name, Events.Attributes, length(Links.TraceId), ParentSpanId = '', Duration "
                               f"FROM otel_traces WHERE TraceId = '{error_trace}' ORDER BY SpanName")
        assert [r[0] for r in rows] == ["checkout", "step-0", "step-1", "step-2"]
        assert rows[0][1:3] == ("Server", "Unset") and rows[0][9] == 1 and rows[0][10] == 5_000_000
        assert rows[2][1:4] == ("Client", "Error", "card declined")
        assert rows[1][4:8] == ("shop.checkout", "1.4.0", ["cache.miss"], [{"key": "k0"}])
        assert rows[3][8] == 1 and rows[1][8] == 0
        slow_trace = next(t for t, k in kinds.items() if k == "slow")
        assert _rows(pipeline, f"SELECT max(Duration) FROM otel_traces WHERE TraceId = '{slow_trace}'") == [
            (800_000_000,)]

        # The trace-id lookup table knows every sampled trace, with its time range.
        pipeline.wait_for(f"SELECT count() FROM otel_traces_trace_id_ts WHERE TraceId IN "
                          f"({', '.join(repr(t) for t in expected)}) AND Start <= End", [(len(expected),)])

        # RED: every span counted once, sampled or not.
        pipeline.wait_for("SELECT sum(Value) FROM otel_metrics_sum WHERE MetricName = 'traces.span.metrics.calls' "
                          f"AND ServiceName = '{service}'", [(800.0,)])
        pipeline.wait_for("SELECT sum(Count), length(any(ExplicitBounds)) FROM otel_metrics_histogram WHERE "
                          f"MetricName = 'traces.span.metrics.duration' AND ServiceName = '{service}'", [(800, 16)])
        by_status = dict(_rows(pipeline, "SELECT Attributes['status.code'], sum(Value) FROM otel_metrics_sum WHERE "
                                         f"MetricName = 'traces.span.metrics.calls' AND ServiceName = '{service}' "
                                         "GROUP BY 1"))
        assert by_status == {"STATUS_CODE_ERROR": 20.0, "STATUS_CODE_UNSET": 780.0}
    finally:
        pipeline.stop()


SPANS_PER_TRACE = 5
TRACES_PER_REQUEST = 8


def _trace_ids(service: str, seq: int) -> list[bytes]:
    return [uuid.uuid5(uuid.NAMESPACE_URL, f"{service}/{seq}/{n}").bytes for n in range(TRACES_PER_REQUEST)]


def _request(service: str, seq: int, now: int) -> bytes:
    """Request `seq` carries the first 3 spans of its own traces and the last 2 of the previous request's:
    every trace spans two Kafka messages, as traces from several services do. Its spans start at `now`, so
    a trace lasts from its first request's `now` to its second's, plus 1 ms."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value={"string_value": service})
    scope = resource_spans.scope_spans.add()
    for trace_seq, spans in ((seq, range(3)), (seq - 1, range(3, SPANS_PER_TRACE))):
        if trace_seq < 0:
            continue
        for n, trace_id in enumerate(_trace_ids(service, trace_seq)):
            for index in spans:
                span = scope.spans.add(trace_id=trace_id, span_id=os.urandom(8), name=f"op-{index}",
                                       start_time_unix_nano=now, end_time_unix_nano=now + 1_000_000)
                if n == 0 and index == 4:  # one error trace per request, found out only by its last span
                    span.status.code = 2
    return request.SerializeToString()


def test_kill_9_and_rebalances_mid_stream_keep_sampled_traces_complete_and_red_exact(
        kafka_bootstrap: str, clickhouse_settings: Settings, tmp_path: Path) -> None:
    pipeline, env = _start(kafka_bootstrap, clickhouse_settings, tmp_path, percent=30)
    service = f"chaos-{uuid.uuid4().hex[:8]}"
    requests = 120
    stages: list[Stage] = [pipeline.ingest, pipeline.worker, pipeline.sink]
    sent = [0]
    built: list[int] = []  # each request's span start time

    def send() -> None:
        for seq in range(requests + 1):  # the extra request completes the last traces
            built.append(time.time_ns())
            body = _request(service, seq, built[-1]) if seq < requests else _tail(service, seq, built[-1])
            while post(f"{pipeline.ingest.http}/v1/traces", body, {"Content-Type": "application/x-protobuf"})[0] != 200:
                time.sleep(0.5)
            sent[0] += 1
            time.sleep(0.08)

    sender = threading.Thread(target=send, daemon=True)
    try:
        sender.start()
        worker = pipeline.worker
        for step in range(4):  # kill -9s 2.5 s apart while requests keep coming, and a second worker joins
            time.sleep(2.5)
            if step == 2:  # a rebalance: half the partitions move to the newcomer, with their samplers
                stages.append(Stage(["worker"], env).start())
                continue
            worker.kill()
            worker = Stage(["worker"], env).start()
            stages.append(worker)
        sender.join(300)
        assert sent[0] == requests + 1
        trace_ids = {tid.hex() for seq in range(requests) for tid in _trace_ids(service, seq)}
        errors = {_trace_ids(service, seq)[0].hex() for seq in range(requests)}
        # The latency policy (500 ms) also keeps a trace whose two requests were built that far apart: on
        # a loaded machine the sender's pauses do that, and the sampler is right to keep those.
        slow = {tid.hex() for seq in range(requests) for tid in _trace_ids(service, seq)
                if built[seq + 1] + 1_000_000 - built[seq] >= 500_000_000}
        expected = {t for t in trace_ids if t in errors or t in slow or _sampled_by_share(t, 30)}
        pipeline.sink = stages[2]
        pipeline.worker = worker
        try:
            pipeline.wait_for(f"SELECT count() FROM otel_traces WHERE ServiceName = '{service}'",
                              [(SPANS_PER_TRACE * len(expected),)], timeout=180)
        except AssertionError:
            landed = dict(_rows(pipeline, f"SELECT TraceId, count() FROM otel_traces WHERE ServiceName = '{service}' "
                                          "GROUP BY TraceId"))
            wrong = {t: (landed.get(t, 0), "error" if t in errors else "slow" if t in slow else "share" if t in expected else "unsampled")
                     for t in expected | set(landed) if landed.get(t, 0) != (SPANS_PER_TRACE if t in expected else 0)}
            logs = "\n".join(f"--- {' '.join(s.command)}\n{s.output(80)}" for s in stages[1:])
            raise AssertionError(f"traces with wrong span counts: {wrong}\n{logs}") from None
        pipeline.wait_for("SELECT sum(Value) FROM otel_metrics_sum WHERE MetricName = 'traces.span.metrics.calls' "
                          f"AND ServiceName = '{service}'", [(float(SPANS_PER_TRACE * len(trace_ids)),)], timeout=120)
        time.sleep(4)  # copies a restarted worker emits late would show up now
        landed = dict(_rows(pipeline, f"SELECT TraceId, count() FROM otel_traces WHERE ServiceName = '{service}' "
                                      "GROUP BY TraceId"))
        assert set(landed) == expected and set(landed.values()) == {SPANS_PER_TRACE}
        [(spans, distinct)] = _rows(pipeline, "SELECT count(), uniqExact(SpanId) FROM otel_traces "
                                              f"WHERE ServiceName = '{service}'")
        assert spans == distinct == SPANS_PER_TRACE * len(expected)
        [(calls,)] = _rows(pipeline, "SELECT sum(Value) FROM otel_metrics_sum WHERE "
                                     f"MetricName = 'traces.span.metrics.calls' AND ServiceName = '{service}'")
        assert calls == SPANS_PER_TRACE * len(trace_ids)
    finally:
        for stage in stages:
            if stage.alive:
                stage.stop()


def _tail(service: str, seq: int, now: int) -> bytes:
    """The last spans of the final request's traces, without new traces."""
    full = ExportTraceServiceRequest.FromString(_request(service, seq, now))
    scope = full.resource_spans[0].scope_spans[0]
    keep = [s for s in scope.spans if s.name in ("op-3", "op-4")]
    del scope.spans[:]
    scope.spans.extend(keep)
    return full.SerializeToString()

"""One bad item never takes its request down, and no value is changed on its way to a row (issue 12).

The rules on plain values, as a compiled core must mirror them: JSON bodies that cannot be flattened stay
text with the reason in `maple.body_error`; NaN and infinities keep their value in JSONColumns; a time
past 2106-02-07 refuses its item; a request with a bad item is processed item by item and the bad ones
come back as one-item OTLP requests with the reason.
"""

from __future__ import annotations

import math

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from maple.jsoncolumns import MAX_ROW_BYTES, RowTooLarge, dumps, encode
from processors import logs, metrics, traces
from processors.requests import single_items
from processors.values import MAX_TIME_NS, TimeOutOfRange, datetime64
from topologies.batches import RawRecord, log_batches, metric_batches, trace_batches

NOW = 1_700_000_000_000_000_000
FAR = 2**63 - 1  # 2262-04-11: fits DateTime64(9), but not the DateTime the tables partition and expire by


def _logs(*bodies: str, times: tuple[int, ...] = ()) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    sl = rl.scope_logs.add()
    sl.scope.name = "scope"
    for i, body in enumerate(bodies):
        record = sl.log_records.add(time_unix_nano=times[i] if i < len(times) else NOW + i)
        record.body.string_value = body
    return request


def _raw(request: object, topic: str = "otlp.logs.raw") -> RawRecord:
    return RawRecord(request.SerializeToString(), topic, 1, 5, {}, 0)  # type: ignore[attr-defined]


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


# -- JSON bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [300, 1024])
def test_a_json_body_nested_too_deep_stays_text_with_the_reason_and_its_request_goes_on(levels: int) -> None:
    body = _deep(levels)
    cols = logs.to_columns(_logs('{"level": "warn", "msg": "fine"}', body), received_ns=1)
    assert cols["Body"][1] == body
    assert set(cols["LogAttributes"][1]) == {logs.BODY_ERROR}
    assert "Recursion" in cols["LogAttributes"][1][logs.BODY_ERROR]
    assert cols["LogAttributes"][0] == {"level": "warn", "msg": "fine"}  # its neighbour is flattened as always


def test_json_deeper_than_the_parser_goes_and_broken_json_objects_say_why() -> None:
    cols = logs.to_columns(_logs(_deep(5000), '{"a": 1,}', "{user} logged in", "{x} and {y}"), received_ns=1)
    attrs = cols["LogAttributes"]
    assert "depth" in attrs[0][logs.BODY_ERROR] and "not valid JSON" in attrs[1][logs.BODY_ERROR]
    assert attrs[2] == {} and logs.BODY_ERROR in attrs[3]  # plain text that ends with "}" looks like JSON


def test_flattening_is_all_or_nothing() -> None:
    attrs = {"kept": "1"}
    merged, why = logs.flattened({"ok": "yes", "deep": orjson.loads(_deep(300))}, attrs, depth=2)
    assert merged is attrs and merged == {"kept": "1"} and why


# -- numbers and times ---------------------------------------------------------------------------------


def test_nan_and_infinities_keep_their_value_in_jsoncolumns() -> None:
    block = dumps({"Value": [1.5, math.nan, math.inf, -math.inf], "Bounds": [[], [1.0, math.inf]],
                   "Body": ["null", "x"], "N": [1, 2]})
    assert orjson.loads(block) == {"Value": [1.5, "nan", "inf", "-inf"], "Bounds": [[], [1.0, "inf"]],
                                   "Body": ["null", "x"], "N": [1, 2]}
    assert dumps({"Value": [1.0, 2.0]}) == orjson.dumps({"Value": [1.0, 2.0]})


def test_times_past_2106_are_refused_naming_the_field() -> None:
    assert datetime64(MAX_TIME_NS) == "4294967295.999999999"
    with pytest.raises(TimeOutOfRange, match="time_unix_nano 9223372036854775807 is past 2106"):
        datetime64(FAR, "time_unix_nano")


def test_a_single_row_may_exceed_the_batch_limit_up_to_the_row_limit() -> None:
    one = {"Body": ["y" * 5000]}
    assert [rows for rows, _ in encode(one, limit=1000)] == [1]
    with pytest.raises(RowTooLarge):
        encode(one, limit=1000, row_limit=1000)


# -- item by item --------------------------------------------------------------------------------------


def _metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    sm = rm.scope_metrics.add()
    gauge = sm.metrics.add(name="temp", unit="C").gauge
    for value in (1.0, math.nan, math.inf, -math.inf):
        gauge.data_points.add(time_unix_nano=NOW, as_double=value)
    histogram = sm.metrics.add(name="lat").histogram
    histogram.aggregation_temporality = 2
    histogram.data_points.add(time_unix_nano=NOW, count=1, sum=math.nan, bucket_counts=[1],
                              explicit_bounds=[])
    sm.metrics.add(name="nothing")  # no data: no rows
    return request


def _traces(*starts: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value="svc"))
    ss = rs.scope_spans.add()
    for i, start in enumerate(starts):
        ss.spans.add(trace_id=bytes([i + 1]) * 16, span_id=bytes([i + 1]) * 8, name=f"op{i}", kind=2,
                     start_time_unix_nano=start, end_time_unix_nano=start + 1000)
    return request


def test_single_items_convert_to_exactly_the_rows_of_the_whole_request() -> None:
    whole_logs = _logs("a", '{"x": 1}', "c")
    parts = [logs.to_columns(item, 1) for item in single_items(whole_logs)]
    assert len(parts) == 3
    assert {k: [v for p in parts for v in p[k]] for k in logs.COLUMNS} == logs.to_columns(whole_logs, 1)

    whole_metrics = _metrics()
    items = list(single_items(whole_metrics))
    assert len(items) == 5  # four gauge points and one histogram point; the metric without data is left out
    tables = [metrics.to_tables(item) for item in items]
    merged = metrics.to_tables(whole_metrics)
    for table, columns in merged.items():
        got = [t[table] for t in tables if table in t]
        assert dumps({k: [v for c in got for v in c[k]] for k in columns}) == dumps(columns), table  # NaN != NaN

    whole_traces = _traces(NOW, NOW + 1)
    assert [traces.to_columns(i)["SpanName"] for i in single_items(whole_traces)] == [["op0"], ["op1"]]


def test_a_log_record_stamped_past_2106_is_refused_alone_and_its_neighbours_land() -> None:
    request = _logs("before", "bad clock", "after", times=(NOW, FAR, NOW + 2))
    output = log_batches(_raw(request), 6, logs.LogOptions())
    [record] = output.records
    assert orjson.loads(record.value)["Body"] == ["before", "after"]
    [refused] = output.refused
    assert "TimeOutOfRange" in refused.reason and "time_unix_nano 9223372036854775807" in refused.reason
    letter = ExportLogsServiceRequest.FromString(refused.value)
    assert [r.body.string_value for r in letter.resource_logs[0].scope_logs[0].log_records] == ["bad clock"]
    assert letter.resource_logs[0].resource.attributes[0].value.string_value == "svc"  # its resource came along


def test_a_record_too_large_for_kafka_is_refused_alone_and_its_companion_lands() -> None:
    request = _logs("small", "y" * (MAX_ROW_BYTES + 10))
    output = log_batches(_raw(request), 6, logs.LogOptions())
    assert [orjson.loads(r.value)["Body"] for r in output.records] == [["small"]]
    [refused] = output.refused
    assert "RowTooLarge" in refused.reason
    assert len(ExportLogsServiceRequest.FromString(refused.value).resource_logs[0].scope_logs[0].log_records) == 1


def test_a_span_past_2106_is_refused_and_red_counts_the_spans_that_became_rows() -> None:
    output = trace_batches(_raw(_traces(NOW, FAR, NOW), "otlp.traces.raw"), span_partitions=2, metric_partitions=1)
    spans = [n for r in output.records if r.topic == "otel.spans" for n in orjson.loads(r.value)["SpanName"]]
    assert sorted(spans) == ["op0", "op2"]
    calls = [orjson.loads(r.value) for r in output.records if dict(r.headers)["maple.table"] == b"otel_metrics_sum"]
    assert sum(v for c in calls for v in c["Value"]) == 2
    assert len(output.refused) == 1 and "start_time_unix_nano" in output.refused[0].reason


def test_metric_values_that_are_nan_or_infinite_travel_as_such() -> None:
    output = metric_batches(_raw(_metrics(), "otlp.metrics.raw"), 3)
    assert output.refused == []
    by_table = {dict(r.headers)["maple.table"]: orjson.loads(r.value) for r in output.records}
    assert by_table[b"otel_metrics_gauge"]["Value"] == [1.0, "nan", "inf", "-inf"]
    assert by_table[b"otel_metrics_histogram"]["Sum"] == ["nan"]


def test_the_same_record_always_takes_the_same_path() -> None:
    raw = _raw(_logs("a", "b", times=(FAR, NOW)))
    first, second = log_batches(raw, 6, logs.LogOptions()), log_batches(raw, 6, logs.LogOptions())
    assert [(r.value, r.headers) for r in first.records] == [(r.value, r.headers) for r in second.records]
    assert first.refused == second.refused


# -- ids -------------------------------------------------------------------------------------------------


def test_ids_of_a_length_otlp_does_not_allow_refuse_their_item_naming_the_field() -> None:
    request = _traces(NOW, NOW, NOW)
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b"x" * 2000
    spans[2].links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 3)
    output = trace_batches(_raw(request, "otlp.traces.raw"), span_partitions=1, metric_partitions=1)
    assert [n for r in output.records if r.topic == "otel.spans" for n in orjson.loads(r.value)["SpanName"]] == ["op0"]
    assert ["trace_id is 2000 bytes; OTLP requires 16" in r.reason for r in output.refused] == [True, False]
    assert "links.span_id is 3 bytes; OTLP requires 8" in output.refused[1].reason

    empty = _traces(NOW)
    empty.resource_spans[0].scope_spans[0].spans[0].trace_id = b""
    assert "trace_id is 0 bytes; OTLP requires 16" in trace_batches(_raw(empty, "otlp.traces.raw"), 1, 1).refused[0].reason


def test_a_log_may_have_no_ids_but_not_ids_of_the_wrong_length() -> None:
    request = _logs("no ids", "short span id", "full ids")
    records = request.resource_logs[0].scope_logs[0].log_records
    records[1].span_id = b"abc"
    records[2].trace_id, records[2].span_id = b"\x01" * 16, b"\x02" * 8
    output = log_batches(_raw(request), 6, logs.LogOptions())
    [record] = output.records
    assert orjson.loads(record.value)["SpanId"] == ["", "02" * 8]
    assert len(output.refused) == 1 and "span_id is 3 bytes; OTLP requires 8 or none" in output.refused[0].reason

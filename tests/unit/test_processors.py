"""Processors on plain data: log rows, JSON bodies, severity inference, metric rows of every type."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from processors import logs, metrics, severity
from processors.values import attributes, datetime64, to_text


def _logs(*records: dict) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add(schema_url="https://opentelemetry.io/schemas/1.21.0")
    resource_logs.resource.attributes.add(key="service.name", value=AnyValue(string_value="checkout"))
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name, scope_logs.scope.version = "app.logger", "2.1"
    for fields in records:
        body = fields.pop("body", None)
        attrs = fields.pop("attributes", {})
        record = scope_logs.log_records.add(**fields)
        if isinstance(body, str):
            record.body.string_value = body
        elif body is not None:
            record.body.CopyFrom(body)
        for key, value in attrs.items():
            record.attributes.add(key=key, value=AnyValue(string_value=value))
    return request


def test_one_row_per_record_with_every_field() -> None:
    cols = logs.to_columns(_logs({"time_unix_nano": 1_700_000_000_123_456_789, "body": "hello",
                                  "trace_id": bytes.fromhex("5b8efff798038103d269b633813fc60c"),
                                  "span_id": bytes.fromhex("eee19b7ec3c1b174"), "flags": 0x101,
                                  "severity_number": 9, "severity_text": "Information",
                                  "event_name": "browser.page_view",
                                  "attributes": {"http.method": "GET"}}), received_ns=1)
    row = {name: values[0] for name, values in cols.items()}
    assert row == {
        "Timestamp": "1700000000.123456789", "TraceId": "5b8efff798038103d269b633813fc60c",
        "SpanId": "eee19b7ec3c1b174", "TraceFlags": 1, "SeverityText": "Information", "SeverityNumber": 9,
        "ServiceName": "checkout", "Body": "hello", "ResourceSchemaUrl": "https://opentelemetry.io/schemas/1.21.0",
        "ResourceAttributes": {"service.name": "checkout"}, "ScopeSchemaUrl": "", "ScopeName": "app.logger",
        "ScopeVersion": "2.1", "ScopeAttributes": {}, "LogAttributes": {"http.method": "GET"},
        "EventName": "browser.page_view"}


def test_timestamp_falls_back_to_observed_then_receive_time() -> None:
    cols = logs.to_columns(_logs({"observed_time_unix_nano": 5, "body": "a"}, {"body": "b"}), received_ns=7)
    assert cols["Timestamp"] == ["0000000000.000000005", "0000000000.000000007"]


def test_json_body_becomes_dotted_attributes_without_overwriting_and_body_is_kept() -> None:
    body = '{"msg": "paid", "user": {"id": 42, "geo": {"city": "Oslo", "deep": {"deeper": {"x": 1}}}}, ' \
           '"ok": true, "tags": ["a", "b"], "none": null, "http.method": "FROM-BODY"}'
    cols = logs.to_columns(_logs({"body": body, "attributes": {"http.method": "POST"}}), received_ns=1,
                           options=logs.LogOptions(json_max_depth=3))
    assert cols["Body"] == [body]
    assert cols["LogAttributes"][0] == {
        "http.method": "POST",  # the explicit attribute wins
        "msg": "paid", "user.id": "42", "user.geo.city": "Oslo",
        "user.geo.deep": '{"deeper":{"x":1}}',  # past the depth limit: kept as JSON text
        "ok": "true", "tags": '["a","b"]', "none": ""}


def test_structured_kvlist_body_is_flattened_too() -> None:
    body = AnyValue()
    body.kvlist_value.values.add(key="event", value=AnyValue(string_value="login"))
    body.kvlist_value.values.add(key="level", value=AnyValue(string_value="warning"))
    cols = logs.to_columns(_logs({"body": body}), received_ns=1)
    assert cols["LogAttributes"][0] == {"event": "login", "level": "warning"}
    assert (cols["SeverityText"][0], cols["SeverityNumber"][0]) == ("WARN", 13)
    assert cols["Body"][0] == '{"event":"login","level":"warning"}'


@pytest.mark.parametrize(("body", "expected"), [
    ('{"level": "error", "msg": "this text says debug"}', ("ERROR", 17)),  # the JSON field comes first
    ('{"severity": "CRITICAL"}', ("FATAL", 21)),
    ('{"level": 40, "msg": "pino"}', ("WARN", 13)),
    ('{"log": {"level": "debug"}}', ("DEBUG", 5)),
    ("FATAL: disk on fire", ("FATAL", 21)),
    ("user alice logged in (info)", ("INFO", 9)),
    ("Warning: low memory", ("WARN", 13)),
    ("retrying after error, trace id abc", ("ERROR", 17)),  # the most severe keyword wins
    ("TRACE enter handler", ("TRACE", 1)),
    ("errors=0 warnings=0 information", ("", 0)),  # whole words only
    ("nothing to see", ("", 0)),
])
def test_severity_is_inferred_when_unset(body: str, expected: tuple[str, int]) -> None:
    cols = logs.to_columns(_logs({"body": body}), received_ns=1)
    assert (cols["SeverityText"][0], cols["SeverityNumber"][0]) == expected


def test_explicit_severity_is_kept_and_missing_text_filled_from_the_number() -> None:
    cols = logs.to_columns(_logs({"body": "error words", "severity_number": 10},
                                 {"body": "x", "severity_number": 23, "severity_text": "EMERG"}), received_ns=1)
    assert cols["SeverityText"] == ["INFO", "EMERG"] and cols["SeverityNumber"] == [10, 23]


def test_a_senders_severity_wins_over_the_body_unless_the_body_level_is_preferred() -> None:
    # Python logging through the OTel bridge: INFO by the sender, "error" by the JSON body it logged.
    records = ({"body": '{"level": "error", "msg": "payment declined"}', "severity_number": 9, "severity_text": "INFO"},
               {"body": "an error in free text", "severity_number": 9, "severity_text": "INFO"},
               {"body": '{"msg": "no level field"}', "severity_number": 13, "severity_text": "WARN"},
               {"body": '{"level": "debug"}'})
    kept = logs.to_columns(_logs(*(dict(r) for r in records)), received_ns=1)
    assert list(zip(kept["SeverityText"], kept["SeverityNumber"])) == [
        ("INFO", 9), ("INFO", 9), ("WARN", 13), ("DEBUG", 5)]
    preferred = logs.to_columns(_logs(*(dict(r) for r in records)), received_ns=1,
                                options=logs.LogOptions(prefer_body_level=True))
    # Only a level *field* overrides the sender; keywords in free text never do.
    assert list(zip(preferred["SeverityText"], preferred["SeverityNumber"])) == [
        ("ERROR", 17), ("INFO", 9), ("WARN", 13), ("DEBUG", 5)]


def test_out_of_range_severity_number_is_treated_as_unset() -> None:
    cols = logs.to_columns(_logs({"body": "an error", "severity_number": 300}), received_ns=1)
    assert cols["SeverityNumber"] == [17]


def test_attribute_values_of_every_type() -> None:
    array = AnyValue()
    array.array_value.values.add(int_value=1)
    array.array_value.values.add(string_value="two")
    kv = AnyValue()
    kv.kvlist_value.values.add(key="k", value=AnyValue(double_value=1.5))
    pairs = [KeyValue(key="s", value=AnyValue(string_value="x")), KeyValue(key="i", value=AnyValue(int_value=-3)),
             KeyValue(key="d", value=AnyValue(double_value=0.25)), KeyValue(key="b", value=AnyValue(bool_value=True)),
             KeyValue(key="bytes", value=AnyValue(bytes_value=b"\x00\x01")), KeyValue(key="a", value=array),
             KeyValue(key="m", value=kv), KeyValue(key="empty", value=AnyValue())]
    assert attributes(pairs) == {"s": "x", "i": "-3", "d": "0.25", "b": "true", "bytes": "AAE=", "a": '[1,"two"]',
                                 "m": '{"k":1.5}', "empty": ""}
    assert to_text(AnyValue(double_value=1e21)) == "1e+21"
    assert datetime64(1) == "0000000000.000000001"


def test_severity_helpers() -> None:
    assert severity.from_number(1) == "TRACE" and severity.from_number(24) == "FATAL" and severity.from_number(0) == ""
    assert severity.from_level(True) is None and severity.from_level("nope") is None


def _metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value=AnyValue(string_value="billing"))
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.dropped_attributes_count = "meter", 2
    gauge = sm.metrics.add(name="temp", unit="C", description="temperature")
    point = gauge.gauge.data_points.add(as_double=21.5, time_unix_nano=2_000, start_time_unix_nano=1_000)
    point.attributes.add(key="room", value=AnyValue(string_value="a"))
    exemplar = point.exemplars.add(as_int=22, time_unix_nano=1_500, trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    exemplar.filtered_attributes.add(key="user", value=AnyValue(string_value="u1"))
    total = sm.metrics.add(name="requests")
    total.sum.aggregation_temporality, total.sum.is_monotonic = 2, True
    total.sum.data_points.add(as_int=7, time_unix_nano=2_000)
    total.sum.data_points.add(as_int=9, time_unix_nano=3_000)
    hist = sm.metrics.add(name="latency")
    hist.histogram.aggregation_temporality = 1
    hist.histogram.data_points.add(count=3, sum=12.0, bucket_counts=[1, 2, 0], explicit_bounds=[5, 10], min=1, max=8)
    exp = sm.metrics.add(name="size")
    ep = exp.exponential_histogram.data_points.add(count=4, sum=10, scale=2, zero_count=1, min=0.5, max=5)
    ep.positive.offset, ep.negative.offset = 3, -1
    ep.positive.bucket_counts.extend([1, 2])
    ep.negative.bucket_counts.extend([1])
    summary = sm.metrics.add(name="gc")
    sp = summary.summary.data_points.add(count=10, sum=100)
    sp.quantile_values.add(quantile=0.5, value=8)
    sp.quantile_values.add(quantile=0.99, value=30)
    sm.metrics.add(name="empty-gauge").gauge.SetInParent()
    return request


def test_one_row_per_data_point_in_its_type_table() -> None:
    tables = metrics.to_tables(_metrics())
    assert sorted(tables) == sorted([metrics.GAUGE, metrics.SUM, metrics.HISTOGRAM, metrics.EXP_HISTOGRAM,
                                     metrics.SUMMARY])
    for table, cols in tables.items():
        assert tuple(cols) == metrics.COLUMNS[table]
        assert len({len(v) for v in cols.values()}) == 1, f"{table} columns differ in length"
    gauge = tables[metrics.GAUGE]
    assert gauge["Value"] == [21.5] and gauge["MetricUnit"] == ["C"] and gauge["ServiceName"] == ["billing"]
    assert gauge["Attributes"] == [{"room": "a"}] and gauge["ScopeDroppedAttrCount"] == [2]
    assert gauge["StartTimeUnix"] == ["0000000000.000001000"] and gauge["TimeUnix"] == ["0000000000.000002000"]
    assert gauge["Exemplars.Value"] == [[22.0]] and gauge["Exemplars.TraceId"] == [["01" * 16]]
    assert gauge["Exemplars.SpanId"] == [["02" * 8]] and gauge["Exemplars.FilteredAttributes"] == [[{"user": "u1"}]]
    sums = tables[metrics.SUM]
    assert sums["Value"] == [7.0, 9.0] and sums["IsMonotonic"] == [True, True] and sums["AggregationTemporality"] == [2, 2]
    hist = tables[metrics.HISTOGRAM]
    assert (hist["Count"], hist["BucketCounts"], hist["ExplicitBounds"], hist["Min"], hist["Max"]) == \
        ([3], [[1, 2, 0]], [[5.0, 10.0]], [1.0], [8.0])
    exp = tables[metrics.EXP_HISTOGRAM]
    assert (exp["Scale"], exp["ZeroCount"], exp["PositiveOffset"], exp["PositiveBucketCounts"], exp["NegativeOffset"],
            exp["NegativeBucketCounts"]) == ([2], [1], [3], [[1, 2]], [-1], [[1]])
    summary = tables[metrics.SUMMARY]
    assert summary["ValueAtQuantiles.Quantile"] == [[0.5, 0.99]] and summary["ValueAtQuantiles.Value"] == [[8.0, 30.0]]


def test_row_batches_are_cut_under_the_size_limit_and_numbered_in_order() -> None:
    import orjson

    from maple.jsoncolumns import RowTooLarge, encode
    from topologies.batches import RawRecord, log_batches

    cols = logs.to_columns(_logs(*[{"body": "x" * 1000} for _ in range(100)]), received_ns=1)
    blocks = encode(cols, limit=20_000)
    assert len(blocks) > 5 and all(len(b) <= 20_000 for _, b in blocks)
    assert sum(rows for rows, _ in blocks) == 100
    assert [v for _, b in blocks for v in orjson.loads(b)["Body"]] == cols["Body"]
    alone = logs.to_columns(_logs({"body": "y" * 5000}), received_ns=1)
    assert [rows for rows, _ in encode(alone, limit=1000)] == [1]  # one row over the batch limit goes alone
    with pytest.raises(RowTooLarge):
        encode(alone, limit=1000, row_limit=1000)
    raw = RawRecord(_logs(*[{"body": "z" * 200_000} for _ in range(40)]).SerializeToString(), "otlp.logs.raw", 2, 9,
                    {}, 0)
    records = log_batches(raw, 6, logs.LogOptions()).records
    assert len(records) >= 2 and all(len(r.value) <= 4 * 1024 * 1024 for r in records)
    parts = [dict(r.headers)["maple.source"] for r in records]
    assert parts == [f"otlp.logs.raw/2/9/{i}".encode() for i in range(len(records))]
    assert {r.partition for r in records} == {2}


@pytest.mark.parametrize("text", ["İNFO: cache warm", "ınfo: cache warm"])
def test_a_keyword_that_matches_only_case_insensitively_does_not_fail_its_request(text: str) -> None:
    # "İNFO".lower() is "i̇nfo" (with a combining dot), no keyword: the match must still name its keyword
    cols = logs.to_columns(_logs({"body": text}, {"body": "fine"}), received_ns=1)
    assert cols["SeverityText"] == ["INFO", ""] and cols["SeverityNumber"] == [9, 0]

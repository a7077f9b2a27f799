"""Random and hostile OTLP requests, and the comparison of the Python processors with the compiled core.

The Python processors define the behaviour; the compiled core (maple_native) must give the same rows for
the same request, or fail where they fail. `python_outputs` / `native_outputs` run one raw record through
each path (topologies/batches.py) and return comparable values: per output batch its topic, partition,
table and columns, with DateTime64 values as integer nanoseconds, maps as (key, value) lists (order
matters: ClickHouse keeps it) and floats by their repr (NaN equal to NaN, -0.0 apart from 0.0).
"""

from __future__ import annotations

import json
import random
import string
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from maple import blocks
from maple.topics import HEADER_FORMAT, HEADER_TABLE
from processors import logs
from topologies.batches import RawRecord, log_batches, metric_batches, trace_batches

WORDS = ["error", "ERROR", "Warn", "warning", "info", "debug", "trace", "fatal", "err", "critical", "x", "",
         "level", "severity", "msg", "a.b", "service.name", "k8s.pod.name", "_", "İNFO", "ınfo", "warn_x",
         "über", "日本", "\u00a0error\u00a0", "\x1cwarn", " notice ", "PANIC", "😀", "a\"b", "back\\slash",
         "\n", "\x00", "\x7f", "\u2028", "tab\there"]
FLOATS = [0.0, -0.0, 1.0, 0.1, 1e16, 1e15, 123456789012345678.0, 1e-5, 1e-7, 2.5e-5, 1e300, 5e-324, 1e22,
          float("nan"), float("inf"), float("-inf"), 12345.678, 9.999999999999999e22, 1.5e-6, 100.0]
INTS = [0, 1, -1, 9, 24, 25, 30, 60, 2**31, -2**31, 2**63 - 1, -2**63, 10**18, 12345678901234567]
LEVEL_KEYS = ["level", "severity", "log.level", "loglevel", "lvl", "severity_text", "severityText", "levelname"]


def word(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(WORDS)
    return "".join(rng.choice(string.printable + "éß中\u0301") for _ in range(rng.randint(0, 12)))


def json_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 0 and roll < 0.25:
        return {word(rng): json_value(rng, depth - 1) for _ in range(rng.randint(0, 4))}
    if depth > 0 and roll < 0.35:
        return [json_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return rng.choice([word(rng), rng.choice(INTS), rng.choice([f for f in FLOATS if f == f and abs(f) != float("inf")]),
                       True, False, None, 2**64 - 1, 2**64, -2**63 - 1, 10**30])


def json_text(rng: random.Random) -> str:
    """JSON object text, sometimes with duplicate keys, escapes, spacing, or broken."""
    obj = {word(rng): json_value(rng, rng.randint(0, 6)) for _ in range(rng.randint(0, 6))}
    if rng.random() < 0.4:
        obj[rng.choice(LEVEL_KEYS)] = rng.choice([*WORDS, *INTS, 3.0, True])
    text = json.dumps(obj, ensure_ascii=rng.random() < 0.3, separators=rng.choice([(",", ":"), (", ", ": ")]))
    roll = rng.random()
    if roll < 0.1 and len(text) > 2:  # a duplicate key
        text = text[:-1] + (',' if len(text) > 2 else '') + f'"{rng.choice(list(obj) or ["k"])}":{rng.randint(0, 9)}}}'
    elif roll < 0.2:
        text = rng.choice([" ", "\n\t", "\x0b", "\u00a0"]) + text
    elif roll < 0.3:
        text = text[: rng.randint(0, len(text))]
    elif roll < 0.35:
        text = text.replace('"', '"\\u00e9', 1)
    elif roll < 0.4:
        text = '{"a":' * rng.choice([3, 250, 260, 1023, 1024, 1025]) + "1" + "}" * 1100
    elif roll < 0.45:
        text = '{"deep":' + "[" * rng.choice([250, 253, 254, 255, 300]) + "]" * 300 + "}"
    elif roll < 0.5:
        text = '{"n": ' + rng.choice(["1e400", "-0", "-0.0", "1E5", "0.1e1", "01", "1.", "123456789012345678901",
                                      "18446744073709551616", "-9223372036854775809", "1e-400", "\"\\ud800\""]) + "}"
    return text


def any_value(rng: random.Random, target: AnyValue, depth: int) -> None:
    roll = rng.random()
    if depth > 0 and roll < 0.1:
        for _ in range(rng.randint(0, 3)):
            any_value(rng, target.array_value.values.add(), depth - 1)
        if not target.HasField("array_value"):
            target.array_value.SetInParent()
    elif depth > 0 and roll < 0.2:
        for _ in range(rng.randint(0, 3)):
            kv = target.kvlist_value.values.add(key=word(rng))
            any_value(rng, kv.value, depth - 1)
        if not target.HasField("kvlist_value"):
            target.kvlist_value.SetInParent()
    elif roll < 0.5:
        target.string_value = word(rng) if rng.random() < 0.8 else json_text(rng)
    elif roll < 0.6:
        target.int_value = rng.choice(INTS)
    elif roll < 0.7:
        target.double_value = rng.choice(FLOATS)
    elif roll < 0.78:
        target.bool_value = rng.random() < 0.5
    elif roll < 0.85:
        target.bytes_value = rng.randbytes(rng.randint(0, 7))
    elif roll < 0.9:
        target.string_value_strindex = rng.randint(0, 5)
    # else: unset


def attributes(rng: random.Random, target: Any, n: int | None = None) -> None:
    keys = [word(rng) for _ in range(rng.randint(0, 3))] or ["k"]
    for _ in range(rng.randint(0, 6) if n is None else n):
        kv = target.add(key=rng.choice(keys))  # repeated keys on purpose: dict semantics
        any_value(rng, kv.value, rng.randint(0, 3))


def ids(rng: random.Random, size: int) -> bytes:
    return rng.choice([b"", bytes(size), rng.randbytes(size), rng.randbytes(rng.randint(1, 20)), bytes(8)])


def timestamp(rng: random.Random) -> int:
    return rng.choice([0, 1, 1_700_000_000_123_456_789, rng.randint(0, 2**63 - 1), 999_999_999, 2**63 - 1, 2**63,
                       2**64 - 1] if rng.random() < 0.05 else [0, 1, 1_700_000_000_123_456_789, rng.randint(0, 2**63 - 1)])


def logs_request(rng: random.Random) -> bytes:
    request = ExportLogsServiceRequest()
    for _ in range(rng.randint(1, 3)):
        rl = request.resource_logs.add(schema_url=word(rng))
        attributes(rng, rl.resource.attributes)
        if rng.random() < 0.7:
            rl.resource.attributes.add(key="service.name", value={"string_value": word(rng)})
        for _ in range(rng.randint(0, 3)):
            sl = rl.scope_logs.add(schema_url=word(rng))
            sl.scope.name, sl.scope.version = word(rng), word(rng)
            attributes(rng, sl.scope.attributes)
            for _ in range(rng.randint(0, 6)):
                record = sl.log_records.add(time_unix_nano=timestamp(rng), observed_time_unix_nano=timestamp(rng),
                                            trace_id=ids(rng, 16), span_id=ids(rng, 8),
                                            flags=rng.choice([0, 1, 0x1FF, 2**32 - 1]),
                                            severity_number=rng.choice([0, 0, 0, 5, 9, 17, 24, 25, -3]),
                                            severity_text=rng.choice(["", "", "INFO", "warn", word(rng)]))
                roll = rng.random()
                if roll < 0.5:
                    record.body.string_value = json_text(rng) if rng.random() < 0.6 else " ".join(
                        word(rng) for _ in range(rng.randint(0, 5)))
                else:
                    any_value(rng, record.body, 4)
                attributes(rng, record.attributes)
    data = request.SerializeToString()
    return _twist(rng, data)


def trace_request(rng: random.Random) -> bytes:
    request = ExportTraceServiceRequest()
    trace_ids = [rng.randbytes(16) for _ in range(4)] + [bytes(16), b""]
    for _ in range(rng.randint(1, 3)):
        rs = request.resource_spans.add()
        attributes(rng, rs.resource.attributes)
        if rng.random() < 0.8:
            rs.resource.attributes.add(key="service.name", value={"string_value": rng.choice(["api", "db", word(rng)])})
        for _ in range(rng.randint(0, 3)):
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = word(rng), word(rng)
            for _ in range(rng.randint(0, 8)):
                start = timestamp(rng)
                span = ss.spans.add(trace_id=rng.choice(trace_ids), span_id=ids(rng, 8), parent_span_id=ids(rng, 8),
                                    trace_state=word(rng), name=rng.choice(["GET /", "SELECT", word(rng)]),
                                    kind=rng.choice([0, 1, 2, 3, 4, 5, 6, -1]), start_time_unix_nano=start,
                                    end_time_unix_nano=min(2**64 - 1, rng.choice([
                                        0, start, start + rng.randint(0, 5 * 10**9),
                                        start + rng.choice([2_000_000, 4_000_000, 10**9])])))
                attributes(rng, span.attributes)
                if rng.random() < 0.5:
                    span.status.code = rng.choice([0, 1, 2, 7])
                    span.status.message = word(rng)
                for _ in range(rng.choice([0, 0, 1, 3])):
                    event = span.events.add(time_unix_nano=timestamp(rng), name=word(rng))
                    attributes(rng, event.attributes)
                for _ in range(rng.choice([0, 0, 1, 2])):
                    link = span.links.add(trace_id=ids(rng, 16), span_id=ids(rng, 8), trace_state=word(rng))
                    attributes(rng, link.attributes)
    return _twist(rng, request.SerializeToString())


def metrics_request(rng: random.Random) -> bytes:
    request = ExportMetricsServiceRequest()
    for _ in range(rng.randint(1, 2)):
        rm = request.resource_metrics.add(schema_url=word(rng))
        attributes(rng, rm.resource.attributes)
        for _ in range(rng.randint(0, 2)):
            sm = rm.scope_metrics.add(schema_url=word(rng))
            sm.scope.name, sm.scope.dropped_attributes_count = word(rng), rng.choice([0, 3])
            attributes(rng, sm.scope.attributes)
            for _ in range(rng.randint(0, 6)):
                metric = sm.metrics.add(name=word(rng), description=word(rng), unit=word(rng))
                kind = rng.choice(["gauge", "sum", "histogram", "exponential_histogram", "summary", None])
                if kind is None:
                    continue
                data = getattr(metric, kind)
                data.SetInParent()
                if kind in ("sum", "histogram", "exponential_histogram"):
                    data.aggregation_temporality = rng.choice([0, 1, 2, 9])
                if kind == "sum":
                    data.is_monotonic = rng.random() < 0.5
                for _ in range(rng.randint(0, 4)):
                    point = data.data_points.add(time_unix_nano=timestamp(rng), start_time_unix_nano=timestamp(rng))
                    attributes(rng, point.attributes)
                    if kind != "summary":
                        point.flags = rng.choice([0, 1, 2**32 - 1])
                    if kind in ("gauge", "sum"):
                        if rng.random() < 0.5:
                            point.as_int = rng.choice(INTS)
                        elif rng.random() < 0.8:
                            point.as_double = rng.choice(FLOATS)
                    elif kind == "histogram":
                        point.count, point.sum = rng.randint(0, 2**64 - 1), rng.choice(FLOATS)
                        point.bucket_counts.extend(rng.randint(0, 9) for _ in range(rng.randint(0, 4)))
                        point.explicit_bounds.extend(rng.choice(FLOATS) for _ in range(rng.randint(0, 3)))
                        if rng.random() < 0.5:
                            point.min, point.max = rng.choice(FLOATS), rng.choice(FLOATS)
                    elif kind == "exponential_histogram":
                        point.count, point.scale, point.zero_count = rng.randint(0, 99), rng.randint(-5, 5), 3
                        point.positive.offset = rng.randint(-2**31, 2**31 - 1)
                        point.positive.bucket_counts.extend(rng.randint(0, 2**64 - 1) for _ in range(rng.randint(0, 3)))
                        point.negative.offset = rng.randint(-9, 9)
                    else:
                        point.count, point.sum = rng.randint(0, 9), rng.choice(FLOATS)
                        for _ in range(rng.randint(0, 3)):
                            point.quantile_values.add(quantile=rng.random(), value=rng.choice(FLOATS))
                    if kind != "summary":
                        for _ in range(rng.choice([0, 0, 1, 2])):
                            exemplar = point.exemplars.add(time_unix_nano=timestamp(rng), span_id=ids(rng, 8),
                                                           trace_id=ids(rng, 16))
                            if rng.random() < 0.5:
                                exemplar.as_int = rng.choice(INTS)
                            else:
                                exemplar.as_double = rng.choice(FLOATS)
                            attributes(rng, exemplar.filtered_attributes)
    return _twist(rng, request.SerializeToString())


def _twist(rng: random.Random, data: bytes) -> bytes:
    """Sometimes repeat the message (protobuf merges: repeated fields add up) or append an unknown field."""
    roll = rng.random()
    if roll < 0.05:
        return data + data
    if roll < 0.1:
        return data + bytes([0xF8, 0x07, 0x01])  # field 127, varint 1: unknown, skipped
    return data


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Byte-level damage: flips, truncation, insertion, deletion."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if not buf:
            buf.append(rng.randrange(256))
        elif roll < 0.4:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif roll < 0.6:
            del buf[rng.randrange(len(buf)):]
        elif roll < 0.8:
            buf.insert(rng.randrange(len(buf)), rng.randrange(256))
        else:
            del buf[rng.randrange(len(buf))]
    return bytes(buf)


# -- the comparison -------------------------------------------------------------------------------------

TIME_COLUMNS = {"Timestamp", "StartTimeUnix", "TimeUnix"}
TIME_ARRAYS = {"Events.Timestamp", "Exemplars.TimeUnix"}


def _ns(value: Any) -> int:
    if isinstance(value, int):
        return value
    seconds, _, nanos = value.partition(".")
    return int(seconds) * 1_000_000_000 + int(nanos or 0)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return [(k, _plain(v)) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, int):
        return value
    return value


def normalize(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    out = {}
    for name, values in columns.items():
        if name == "StartNs":
            continue
        if name in TIME_COLUMNS:
            values = [_ns(v) for v in values]
        elif name in TIME_ARRAYS:
            values = [[_ns(v) for v in vs] for vs in values]
        elif name in ("Value", "Sum", "Min", "Max"):
            values = [float(v) for v in values]
        elif name in ("ExplicitBounds", "Exemplars.Value", "ValueAtQuantiles.Quantile", "ValueAtQuantiles.Value"):
            values = [[float(x) for x in vs] for vs in values]
        out[name] = _plain(values)
    return out


RECEIVED_NS = 1_700_000_000_000_000_001
RAW_PARTITION, PARTITIONS = 2, 6
Rows = dict[tuple[str, int, str], dict[str, list[Any]]]


def native_records(kind: str, raw: RawRecord, core: Any, options: logs.LogOptions | None = None) -> Any:
    """What the worker's glue (topologies/batches.py) makes of `raw`: an Output (records, refused items), with
    the compiled core `core` or, with None, the Python processors."""
    if kind == "logs":
        return log_batches(raw, PARTITIONS, options or logs.LogOptions(), core)
    if kind == "metrics":
        return metric_batches(raw, PARTITIONS, core)
    return trace_batches(raw, PARTITIONS, PARTITIONS, None, core)


def _rows(kind: str, value: bytes, core: Any, options: logs.LogOptions | None) -> Rows | str:
    raw = RawRecord(value, f"otlp.{kind}.raw", RAW_PARTITION, 7, {"maple.received": str(RECEIVED_NS).encode()},
                    1_700_000_000_000)
    try:
        output = native_records(kind, raw, core, options)
    except Exception as exc:  # the whole record is dead-lettered: only whether it fails must agree
        return f"error: {type(exc).__name__}"
    out: Rows = {}
    for record in output.records:
        headers = dict(record.headers)
        fmt = blocks.format_of(headers.get(HEADER_FORMAT))
        target = out.setdefault((record.topic, record.partition or 0, headers[HEADER_TABLE].decode()), {})
        for name, values in normalize(blocks.decode(record.value, fmt)).items():
            target.setdefault(name, []).extend(values)
    if output.refused:
        out[("refused", 0, "")] = {"items": [(item.value, item.reason) for item in output.refused]}
    return out


def python_rows(kind: str, value: bytes, options: logs.LogOptions | None = None) -> Rows | str:
    """The Python processors' rows (the oracle) per (topic, partition, table), refused items apart; or "error"."""
    return _rows(kind, value, None, options)


def native_rows(kind: str, value: bytes, core: Any, options: logs.LogOptions | None = None) -> Rows | str:
    """The compiled core's rows the same way (a record it leaves to the Python path is that path's)."""
    return _rows(kind, value, core, options)


def first_difference(python: Rows | str, native: Rows | str) -> str:
    """"" when both paths agree (both fail, or both give the same rows); else where they first differ."""
    if isinstance(python, str) and isinstance(native, str):
        return "" if python == native else f"python {python}; native {native}"
    if isinstance(python, str) or isinstance(native, str):
        return f"python: {python if isinstance(python, str) else 'rows'}; native: {native if isinstance(native, str) else 'rows'}"
    if set(python) != set(native):
        return f"outputs differ: python {sorted(python)} native {sorted(native)}"
    for key in python:
        a, b = python[key], native[key]
        if list(a) != list(b):
            return f"{key}: columns python {list(a)} native {list(b)}"
        for name in a:
            if a[name] != b[name]:
                i = next((i for i, (x, y) in enumerate(zip(a[name], b[name])) if x != y), min(len(a[name]), len(b[name])))
                return (f"{key} column {name} row {i}: python {a[name][i] if i < len(a[name]) else '-'!r} "
                        f"native {b[name][i] if i < len(b[name]) else '-'!r}")
    return ""

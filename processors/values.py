"""OTLP values as ClickHouse column values: attributes become Map(String, String), ids become hex, times
become DateTime64(9) text. Maps and arrays are stored as JSON strings, as the Collector's exporter does."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import orjson
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def to_python(value: AnyValue) -> Any:
    """An AnyValue as plain Python (for JSON encoding of maps and arrays)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [to_python(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: to_python(kv.value) for kv in value.kvlist_value.values}
    return None


def to_text(value: AnyValue) -> str:
    """An AnyValue as the string stored in a Map(String, String) or a String column."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return repr(value.double_value)
    if kind is None:
        return ""
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return orjson.dumps(to_python(value)).decode()


def attributes(pairs: Iterable[KeyValue]) -> dict[str, str]:
    out = {}
    for kv in pairs:
        value = kv.value
        # Most attribute values are strings: skip the general conversion for them (a hot path).
        out[kv.key] = value.string_value if value.WhichOneof("value") == "string_value" else to_text(value)
    return out


# The last instant Maple's tables hold: they keep time in DateTime64(9) columns but partition and expire
# rows by DateTime (seconds in 32 bits). Past 2106-02-07 06:28:15 UTC, toDateTime() wraps around to 1970,
# the row lands in a part that is already expired, and the part is dropped at the next merge. An item
# carrying a later time is refused (dead-lettered with the reason, docs/reliability.md), never stored.
MAX_TIME_NS = (2**32 - 1) * 1_000_000_000 + 999_999_999


class InvalidId(ValueError):
    """A trace or span id of a length OTLP does not allow; the message names the field."""


TRACE_ID_BYTES, SPAN_ID_BYTES = 16, 8


def hex_id(raw: bytes, size: int, field: str, optional: bool = True) -> str:
    """An id as lowercase hex, checked against OTLP's length: `size` bytes, or empty when `optional`
    (a log's ids, a parent span id, an exemplar's ids). Raises InvalidId naming `field`."""
    if len(raw) != size and (raw or not optional):
        raise InvalidId(f"{field} is {len(raw)} bytes; OTLP requires {size}" + (" or none" if optional else ""))
    return raw.hex()


class TimeOutOfRange(ValueError):
    """A timestamp past MAX_TIME_NS; the message names the field and the value."""


def datetime64(unix_nano: int, field: str = "time") -> str:
    """Unix nanoseconds as DateTime64(9) input text: seconds.nanoseconds, exact to the nanosecond.

    The seconds are zero-padded to ten digits: ClickHouse reads shorter numbers as dates ("1.5" would
    become a day in May), so a zero start time must be "0000000000.000000000". Raises TimeOutOfRange
    (naming `field`) past 2106-02-07 06:28:15 UTC."""
    if unix_nano > MAX_TIME_NS:
        raise TimeOutOfRange(f"{field} {unix_nano} is past 2106-02-07T06:28:15Z, the last instant ClickHouse's "
                             "DateTime holds (Maple's tables partition and expire rows by it)")
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    return f"{seconds:010d}.{nanos:09d}"

"""OTLP requests: decode (protobuf or JSON), count items, and split oversized requests for Kafka.

Protobuf bodies are parsed once, to validate and count them; the original bytes then go to Kafka
unchanged unless the request has to be split. JSON bodies are converted to protobuf here, following the
OTLP/JSON rules that protobuf's own JSON mapping gets wrong: trace and span ids are hex strings (not
base64), and unknown fields are ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from maple.topics import RAW_LOGS, RAW_METRICS, RAW_TRACES, Topic


class InvalidRequest(ValueError):
    """The body is not a valid OTLP request of the expected kind; the message says what is wrong."""


def _count_spans(request: Any) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def _count_log_records(request: Any) -> int:
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def _count_data_points(request: Any) -> int:
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


@dataclass(frozen=True)
class Signal:
    """Everything that differs between traces, logs and metrics, so the rest of ingest is shared."""

    name: str
    request: type[Message]
    response: type[Message]
    topic: Topic
    resource_field: str   # ExportXServiceRequest.<resource_field>: repeated ResourceX
    scope_field: str      # ResourceX.<scope_field>: repeated ScopeX
    item_field: str       # ScopeX.<item_field>: repeated spans / log records / metrics
    rejected_field: str   # ExportXPartialSuccess.<rejected_field>
    grpc_service: str
    count: Callable[[Any], int]

    def response_message(self, rejected: int = 0, message: str = "") -> Message:
        """The Export response; partial_success is set only when something was rejected."""
        response = self.response()
        if rejected or message:
            partial = response.partial_success  # type: ignore[attr-defined]
            setattr(partial, self.rejected_field, rejected)
            partial.error_message = message
        return response


TRACES = Signal("traces", trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse,
                RAW_TRACES, "resource_spans", "scope_spans", "spans", "rejected_spans",
                "opentelemetry.proto.collector.trace.v1.TraceService", _count_spans)
LOGS = Signal("logs", logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse,
              RAW_LOGS, "resource_logs", "scope_logs", "log_records", "rejected_log_records",
              "opentelemetry.proto.collector.logs.v1.LogsService", _count_log_records)
METRICS = Signal("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                 metrics_service_pb2.ExportMetricsServiceResponse, RAW_METRICS, "resource_metrics", "scope_metrics",
                 "metrics", "rejected_data_points", "opentelemetry.proto.collector.metrics.v1.MetricsService",
                 _count_data_points)
SIGNALS = {s.name: s for s in (TRACES, LOGS, METRICS)}


# ---------------------------------------------------------------------------------------------------
# Decoding


def parse_protobuf(signal: Signal, body: bytes) -> Message:
    request = signal.request()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise InvalidRequest(f"body is not a valid {signal.request.DESCRIPTOR.name} protobuf: {exc}") from exc
    return request


# id key -> the bytes OTLP requires (16 for a trace id, 8 for a span id).
_ID_KEYS = {"traceId": 16, "spanId": 8, "parentSpanId": 8, "trace_id": 16, "span_id": 8, "parent_span_id": 8}


def _hex_ids_to_base64(node: dict[str, Any], where: str) -> None:
    """Hex ids to base64, refusing ids of a length OTLP does not allow. Empty ids pass here (a log's and a
    parent's may be empty); the worker refuses a span without its own ids, item by item. Protobuf requests
    are not walked id by id at the ingest: that costs several times their parse (docs/reliability.md)."""
    for key, size in _ID_KEYS.items():
        value = node.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"{where}.{key} must be a hex string, got {type(value).__name__}")
        try:
            raw = binascii.unhexlify(value)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequest(f"{where}.{key} is not a hex string: {value[:64]!r}") from exc
        if len(raw) != size:
            raise InvalidRequest(f"{where}.{key} is {len(raw)} bytes ({len(value)} hex digits); OTLP requires {size}")
        node[key] = base64.b64encode(raw).decode()


def _list(node: dict[str, Any], *names: str) -> list[Any]:
    """The first of `names` present in `node` (camelCase or snake_case), as a list of objects."""
    for name in names:
        value = node.get(name)
        if value is not None:
            if not isinstance(value, list):
                raise InvalidRequest(f"{name} must be an array, got {type(value).__name__}")
            return value
    return []


def _objects(items: list[Any], where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}[{i}] must be an object, got {type(item).__name__}")
        yield i, item


def _fix_ids(signal: Signal, doc: dict[str, Any]) -> None:
    """Rewrite every hex trace/span id in an OTLP/JSON document to the base64 that json_format expects."""
    camel = {"resource_spans": "resourceSpans", "resource_logs": "resourceLogs", "resource_metrics": "resourceMetrics",
             "scope_spans": "scopeSpans", "scope_logs": "scopeLogs", "scope_metrics": "scopeMetrics",
             "spans": "spans", "log_records": "logRecords", "metrics": "metrics"}
    r_field, s_field, i_field = signal.resource_field, signal.scope_field, signal.item_field
    for ri, resource in _objects(_list(doc, camel[r_field], r_field), camel[r_field]):
        for si, scope in _objects(_list(resource, camel[s_field], s_field), f"{camel[r_field]}[{ri}].{camel[s_field]}"):
            where = f"{camel[r_field]}[{ri}].{camel[s_field]}[{si}].{camel[i_field]}"
            for ii, item in _objects(_list(scope, camel[i_field], i_field), where):
                here = f"{where}[{ii}]"
                if signal is METRICS:
                    for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram",
                                 "summary"):
                        data = item.get(kind)
                        if isinstance(data, dict):
                            for pi, point in _objects(_list(data, "dataPoints", "data_points"), f"{here}.{kind}"):
                                for ei, exemplar in _objects(_list(point, "exemplars"), f"{here}.dataPoints[{pi}]"):
                                    _hex_ids_to_base64(exemplar, f"{here}.dataPoints[{pi}].exemplars[{ei}]")
                    continue
                _hex_ids_to_base64(item, here)
                for li, link in _objects(_list(item, "links"), f"{here}.links"):
                    _hex_ids_to_base64(link, f"{here}.links[{li}]")


def parse_json(signal: Signal, body: bytes) -> Message:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidRequest(f"an OTLP/JSON request must be an object, got {type(doc).__name__}")
    _fix_ids(signal, doc)
    request = signal.request()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise InvalidRequest(f"body is not a valid OTLP/JSON {signal.name} request: {exc}") from exc
    return request


# ---------------------------------------------------------------------------------------------------
# Splitting


def _varint_len(n: int) -> int:
    length = 1
    while n >= 0x80:
        n >>= 7
        length += 1
    return length


def _field_size(message: Message) -> int:
    """Bytes a message takes as one element of a repeated field: tag, length prefix, body."""
    size = message.ByteSize()
    return 1 + _varint_len(size) + size


def split(signal: Signal, request: Message, max_bytes: int) -> tuple[list[bytes], int]:
    """Cut `request` into serialized requests of at most `max_bytes`, at resource, then scope, then item
    boundaries. Returns the parts and the number of items that could not fit even alone (rejected)."""
    parts: list[bytes] = []
    rejected = 0
    current = signal.request()
    current_size = 0

    def flush() -> None:
        nonlocal current, current_size
        if current_size:
            parts.append(current.SerializeToString())
        current, current_size = signal.request(), 0

    def add(resource: Message) -> None:
        nonlocal current_size
        size = _field_size(resource)
        if current_size + size > max_bytes:
            flush()
        getattr(current, signal.resource_field).append(resource)
        current_size += size

    for resource in getattr(request, signal.resource_field):
        if _field_size(resource) <= max_bytes:
            add(resource)
            continue
        # Too big as a whole: carry its scopes over in groups, each under a copy of the resource header.
        shell = type(resource)()
        shell.CopyFrom(resource)
        shell.ClearField(signal.scope_field)
        for scope in getattr(resource, signal.scope_field):
            for piece in _split_scope(signal, shell, scope, max_bytes):
                if isinstance(piece, int):
                    rejected += piece
                else:
                    add(piece)
    flush()
    return parts, rejected


def _weight(signal: Signal, item: Message) -> int:
    """How many OTLP items (spans, log records, data points) one element of the item field holds."""
    if signal is METRICS:
        kind = item.WhichOneof("data")
        return len(getattr(item, kind).data_points) if kind else 0
    return 1


def _split_scope(signal: Signal, shell: Message, scope: Message, max_bytes: int) -> Iterator[Message | int]:
    """Resources (copies of `shell`) holding `scope` or slices of its items, each fitting `max_bytes`.
    Yields the item count instead for an element that does not fit even alone."""
    whole = type(shell)()
    whole.CopyFrom(shell)
    getattr(whole, signal.scope_field).append(scope)
    if _field_size(whole) <= max_bytes:
        yield whole
        return
    scope_shell = type(scope)()
    scope_shell.CopyFrom(scope)
    scope_shell.ClearField(signal.item_field)
    base = _field_size(shell) + _field_size(scope_shell) + 16  # headroom for the grown length prefixes

    def piece(items: list[Message]) -> Message:
        resource = type(shell)()
        resource.CopyFrom(shell)
        sc = getattr(resource, signal.scope_field).add()
        sc.CopyFrom(scope_shell)
        getattr(sc, signal.item_field).extend(items)
        return resource

    batch: list[Message] = []
    size = base
    for item in getattr(scope, signal.item_field):
        item_size = _field_size(item)
        if base + item_size > max_bytes:
            yield _weight(signal, item)
            continue
        if size + item_size > max_bytes:
            yield piece(batch)
            batch, size = [], base
        batch.append(item)
        size += item_size
    if batch:
        yield piece(batch)

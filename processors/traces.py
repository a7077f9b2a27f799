"""Traces: one OTLP export request in, the columns of `otel_traces` out (one row per span).

Besides the table's columns, a span batch carries `StartNs` (the span's start in Unix nanoseconds as an
integer): the tail sampler computes trace latency from it without parsing DateTime64 text back. ClickHouse
ignores the extra key on insert, and the sampler leaves it out of the rows it emits anyway.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from processors.values import SPAN_ID_BYTES, TRACE_ID_BYTES, attributes, datetime64, hex_id

TABLE = "otel_traces"
START_NS = "StartNs"
# Set by the tail sampler on the spans it keeps (their trace's weight); the table's default, 1, otherwise.
SAMPLE_RATE = "SampleRate"
COLUMNS = ("Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
           "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode",
           "StatusMessage", "Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId", "Links.SpanId",
           "Links.TraceState", "Links.Attributes")

# The columns' types in the Native span batches of the compiled core (otel_traces' types, LowCardinality
# and the Nested columns' element types written plainly; ClickHouse converts them on insert).
NATIVE_TYPES = {"Timestamp": "DateTime64(9)", "TraceId": "String", "SpanId": "String", "ParentSpanId": "String",
                "TraceState": "String", "SpanName": "String", "SpanKind": "String", "ServiceName": "String",
                "ResourceAttributes": "Map(String, String)", "ScopeName": "String", "ScopeVersion": "String",
                "SpanAttributes": "Map(String, String)", "Duration": "UInt64", "StatusCode": "String",
                "StatusMessage": "String", "Events.Timestamp": "Array(DateTime64(9))", "Events.Name": "Array(String)",
                "Events.Attributes": "Array(Map(String, String))", "Links.TraceId": "Array(String)",
                "Links.SpanId": "Array(String)", "Links.TraceState": "Array(String)",
                "Links.Attributes": "Array(Map(String, String))"}

# The exporter stores the enum names in their short form.
SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
ZERO_TRACE_ID, ZERO_SPAN_ID = "0" * 32, "0" * 16
NONE: tuple = ()  # an empty Events.* / Links.* value; JSON encodes it as []


def span_kind(value: int) -> str:
    return SPAN_KINDS[value] if 0 <= value < len(SPAN_KINDS) else SPAN_KINDS[0]


def status_code(value: int) -> str:
    return STATUS_CODES[value] if 0 <= value < len(STATUS_CODES) else STATUS_CODES[0]


def to_columns(request: ExportTraceServiceRequest) -> dict[str, list[Any]]:
    """The spans of `request` as columns (plus StartNs). A span's trace and span ids must be 16 and 8 bytes
    (all-zero ids are stored as "", as the exporter does); any other length raises InvalidId naming the
    field, and the worker refuses that span alone."""
    cols: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, START_NS)}
    (timestamp, trace_id, span_id, parent_id, trace_state, span_name, kind_col, span_attrs, duration, status_col,
     status_message, event_times, event_names, event_attrs, link_trace_ids, link_span_ids, link_states, link_attrs,
     start_col) = (cols[name].append for name in (
        "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "SpanAttributes",
        "Duration", "StatusCode", "StatusMessage", "Events.Timestamp", "Events.Name", "Events.Attributes",
        "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes", START_NS))
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service_name = resource.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            spans = scope_spans.spans
            for span in spans:
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                timestamp(datetime64(start, "start_time_unix_nano"))
                start_col(start)
                duration(end - start if end > start else 0)
                tid = hex_id(span.trace_id, TRACE_ID_BYTES, "trace_id", optional=False)
                sid = hex_id(span.span_id, SPAN_ID_BYTES, "span_id", optional=False)
                trace_id("" if tid == ZERO_TRACE_ID else tid)  # all-zero ids are "no id", as the exporter stores them
                span_id("" if sid == ZERO_SPAN_ID else sid)
                pid = hex_id(span.parent_span_id, SPAN_ID_BYTES, "parent_span_id")
                parent_id("" if pid == ZERO_SPAN_ID else pid)
                trace_state(span.trace_state)
                span_name(span.name)
                kind_col(span_kind(span.kind))
                span_attrs(attributes(span.attributes))
                status = span.status
                status_col(status_code(status.code))
                status_message(status.message)
                events = span.events
                if events:
                    event_times([datetime64(e.time_unix_nano, "events.time_unix_nano") for e in events])
                    event_names([e.name for e in events])
                    event_attrs([attributes(e.attributes) for e in events])
                else:  # one shared empty value (never mutated) instead of three new lists per span
                    event_times(NONE)
                    event_names(NONE)
                    event_attrs(NONE)
                links = span.links
                if links:
                    link_trace_ids([_hex_id(link.trace_id, TRACE_ID_BYTES, "links.trace_id") for link in links])
                    link_span_ids([_hex_id(link.span_id, SPAN_ID_BYTES, "links.span_id") for link in links])
                    link_states([link.trace_state for link in links])
                    link_attrs([attributes(link.attributes) for link in links])
                else:
                    link_trace_ids(NONE)
                    link_span_ids(NONE)
                    link_states(NONE)
                    link_attrs(NONE)
            # Constant within a scope: filled once per scope, not per span.
            n = len(spans)
            cols["ServiceName"] += [service_name] * n
            cols["ResourceAttributes"] += [resource] * n
            cols["ScopeName"] += [scope.name] * n
            cols["ScopeVersion"] += [scope.version] * n
    return cols


def _hex_id(raw: bytes, size: int, field: str) -> str:
    """Lowercase hex of an id of `size` bytes, or "" for an all-zero id (as the exporter stores them)."""
    return hex_id(raw, size, field, optional=False) if any(raw) or len(raw) != size else ""


def take(cols: dict[str, list[Any]], rows: list[int], names: tuple[str, ...] = COLUMNS) -> dict[str, list[Any]]:
    """The given rows of `cols` (in that order), for the columns `names` (itemgetter: a C loop per column)."""
    if len(rows) == 1:
        row = rows[0]
        return {name: [cols[name][row]] for name in names}
    pick = itemgetter(*rows)
    return {name: list(pick(cols[name])) for name in names}

"""Logs: one OTLP export request in, the columns of `otel_logs` out (one row per log record).

JSON object bodies (and structured kvlist bodies) are flattened into LogAttributes with dotted keys, up
to a depth limit; they never overwrite an attribute the record already has, and the body is kept as
it came. A record's ``event_name`` (OTLP >= 1.5, the Events API) goes into EventName, as the Collector's
exporter stores it.

Severity (the rule; processors/severity.py has the vocabulary):

1. A record whose sender set a SeverityNumber (1-24) keeps it; a missing SeverityText is filled from it.
2. A record without one gets one inferred: the level field of its JSON body, else the most severe level
   keyword in the body text, else none (0, '').
3. With `prefer_body_level` (setting worker.severity_from_body), a level *field* of the JSON body wins
   over the sender's severity: `log.info('{"level": "error", ...}')` through an SDK's logging bridge is
   INFO by the sender and ERROR by its body. Keywords in free text never override a sender's severity.

One record's body never fails its request: a body that looks like a JSON object (`{...}`) but cannot be
parsed or flattened (invalid JSON, nested deeper than the JSON library goes) is kept as text, nothing of
it is flattened, and the attribute `maple.body_error` says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from processors import severity
from processors.values import SPAN_ID_BYTES, TRACE_ID_BYTES, attributes, datetime64, hex_id, to_python, to_text

TABLE = "otel_logs"
BODY_ERROR = "maple.body_error"  # LogAttributes key: why a JSON-looking body was not flattened
COLUMNS = ("Timestamp", "TraceId", "SpanId", "TraceFlags", "SeverityText", "SeverityNumber", "ServiceName", "Body",
           "ResourceSchemaUrl", "ResourceAttributes", "ScopeSchemaUrl", "ScopeName", "ScopeVersion",
           "ScopeAttributes", "LogAttributes", "EventName")


@dataclass(frozen=True)
class LogOptions:
    json_max_depth: int = 4          # nesting levels flattened into dotted keys; deeper values stay JSON text
    json_max_body_bytes: int = 65536  # larger bodies are not parsed
    prefer_body_level: bool = False   # a JSON body's level field overrides the sender's severity (rule 3)


def flatten(obj: dict[str, Any], out: dict[str, str], depth: int, prefix: str = "") -> None:
    """Add `obj`'s leaves to `out` as dotted keys, keeping any key `out` already has."""
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth > 1 and value:
            flatten(value, out, depth - 1, name + ".")
            continue
        if name in out:
            continue
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif value is None:
            out[name] = ""
        elif isinstance(value, (int, float)):
            out[name] = str(value)
        else:
            out[name] = orjson.dumps(value).decode()


def _json_object(text: str, limit: int) -> tuple[dict[str, Any] | None, str]:
    """The body parsed as a JSON object, or None and why not ("" when it does not look like one at all)."""
    if not text or (text[0] != "{" and not text.lstrip().startswith("{")) or len(text) > limit:
        return None, ""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # Text that merely starts with "{" is not a JSON body gone wrong; one that also ends with "}" is.
        return None, (f"body is not valid JSON: {exc}" if text.rstrip().endswith("}") else "")
    return (parsed, "") if isinstance(parsed, dict) else (None, "")


def flattened(parsed: dict[str, Any], attrs: dict[str, str], depth: int) -> tuple[dict[str, str], str]:
    """`attrs` plus `parsed` flattened, or `attrs` unchanged and why when `parsed` cannot be flattened
    (all or nothing: a record never gets half of its body's keys)."""
    merged = dict(attrs)
    try:
        flatten(parsed, merged, depth)
    except (TypeError, ValueError, RecursionError) as exc:  # orjson: "Recursion limit reached" past 254 levels
        return attrs, f"body JSON not flattened: {exc}"
    return merged, ""


def to_columns(request: ExportLogsServiceRequest, received_ns: int, options: LogOptions = LogOptions()
               ) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    timestamp, trace_id, span_id, flags, sev_text, sev_num, body_col, log_attrs, event_name = (
        cols[name].append for name in ("Timestamp", "TraceId", "SpanId", "TraceFlags", "SeverityText",
                                       "SeverityNumber", "Body", "LogAttributes", "EventName"))
    max_depth, max_json, prefer_body = options.json_max_depth, options.json_max_body_bytes, options.prefer_body_level
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        service_name = resource.get("service.name", "")
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            records = scope_logs.log_records
            for record in records:
                body = record.body
                kind = body.WhichOneof("value")
                text = body.string_value if kind == "string_value" else to_text(body)
                attrs = attributes(record.attributes)
                parsed, why = None, ""
                if kind == "string_value":
                    parsed, why = _json_object(text, max_json)
                elif kind == "kvlist_value":
                    parsed = to_python(body)
                if parsed:
                    attrs, why = flattened(parsed, attrs, max_depth)
                    if why:
                        parsed = None
                if why:
                    attrs.setdefault(BODY_ERROR, why[:1024])
                number: int = record.severity_number
                level = record.severity_text
                if prefer_body and parsed and (from_body := severity.from_fields(parsed)):
                    level, number = from_body
                elif not 1 <= number <= 24:
                    inferred = (severity.from_fields(parsed) if parsed else None) or severity.from_text(text)
                    level, number = inferred if inferred else (level, 0)
                elif not level:
                    level = severity.from_number(number)
                timestamp(datetime64(record.time_unix_nano or record.observed_time_unix_nano or received_ns,
                                     "time_unix_nano"))
                trace_id(hex_id(record.trace_id, TRACE_ID_BYTES, "trace_id"))
                span_id(hex_id(record.span_id, SPAN_ID_BYTES, "span_id"))
                flags(record.flags & 0xFF)
                sev_text(level)
                sev_num(number)
                body_col(text)
                log_attrs(attrs)
                event_name(record.event_name)  # OTLP 1.5's event name; the exporter's EventName column
            # Columns that are constant within a scope are filled once per scope, not per record.
            n = len(records)
            cols["ServiceName"] += [service_name] * n
            cols["ResourceSchemaUrl"] += [resource_logs.schema_url] * n
            cols["ResourceAttributes"] += [resource] * n
            cols["ScopeSchemaUrl"] += [scope_logs.schema_url] * n
            cols["ScopeName"] += [scope.name] * n
            cols["ScopeVersion"] += [scope.version] * n
            cols["ScopeAttributes"] += [attributes(scope.attributes)] * n
    return cols

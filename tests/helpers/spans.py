"""Span columns and traces for sampling tests, given as dicts of only the fields a test cares about."""

from __future__ import annotations

from typing import Any

from processors.sampling import Policy, Trace, build_policies, decode_config

NOW = 1_700_000_000_000_000_000

_DEFAULTS: dict[str, Any] = {
    "Timestamp": "0", "SpanId": "", "ParentSpanId": "", "TraceState": "", "SpanName": "op", "SpanKind": "Server",
    "ServiceName": "svc", "ResourceAttributes": {}, "ScopeName": "", "ScopeVersion": "", "SpanAttributes": {},
    "Duration": 1_000_000, "StatusCode": "Unset", "StatusMessage": "", "Events.Timestamp": [], "Events.Name": [],
    "Events.Attributes": [], "Links.TraceId": [], "Links.SpanId": [], "Links.TraceState": [],
    "Links.Attributes": [], "StartNs": NOW}


def span_columns(spans: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """otel_traces columns (plus StartNs) for `spans`."""
    return {name: [span.get(name, default) for span in spans] for name, default in {"TraceId": "", **_DEFAULTS}.items()}


def make_trace(spans: list[dict[str, Any]], trace_id: str = "ab" * 16) -> Trace:
    cols = span_columns([{"TraceId": trace_id, **s} for s in spans])
    return Trace(trace_id, [(cols, i) for i in range(len(spans))])


def policies(*specs: dict[str, Any], rate_share: float = 1.0) -> tuple[Policy, ...]:
    """Policies built from Collector-style YAML policy mappings."""
    return build_policies(decode_config({"policies": list(specs)}), rate_share)

#!/usr/bin/env python3
"""Send a little OTLP/HTTP (JSON) test data to a Maple ingest: traces, logs and metrics.

Standard library only, so it runs on the Docker host without Maple installed:

    python3 deploy/scripts/send-test-data.py                        # http://localhost:4318
    python3 deploy/scripts/send-test-data.py --endpoint http://ingest.example:4318 --api-key KEY

Each run sends `--traces` traces of three spans (every fifth with an error span, which the default tail
sampling keeps; of the others it keeps 10%), as many log records and one sum and one gauge per trace.
Traces appear in otel_traces about 10 s after their first span (the sampler's decision wait).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

SERVICE = "maple-test-data"


def _attr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _resource(service: str) -> dict[str, Any]:
    return {"attributes": [_attr("service.name", service), _attr("deployment.environment", "test")]}


def traces_payload(count: int, now_ns: int) -> dict[str, Any]:
    """`count` traces of a server span with two children; trace and span ids in hex, as OTLP/JSON wants."""
    spans = []
    for i in range(count):
        trace_id = os.urandom(16).hex()
        root, db, cache = (os.urandom(8).hex() for _ in range(3))
        start = now_ns - 50_000_000
        failed = i % 5 == 0
        spans.append({"traceId": trace_id, "spanId": root, "name": "GET /checkout", "kind": 2,
                      "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + 42_000_000),
                      "attributes": [_attr("http.route", "/checkout")],
                      "status": {"code": 2, "message": "payment declined"} if failed else {"code": 1}})
        spans.append({"traceId": trace_id, "spanId": db, "parentSpanId": root, "name": "SELECT orders", "kind": 3,
                      "startTimeUnixNano": str(start + 2_000_000), "endTimeUnixNano": str(start + 30_000_000),
                      "attributes": [_attr("db.system", "postgresql")], "status": {}})
        spans.append({"traceId": trace_id, "spanId": cache, "parentSpanId": root, "name": "GET cart", "kind": 3,
                      "startTimeUnixNano": str(start + 31_000_000), "endTimeUnixNano": str(start + 33_000_000),
                      "status": {}})
    return {"resourceSpans": [{"resource": _resource(SERVICE),
                               "scopeSpans": [{"scope": {"name": "send-test-data"}, "spans": spans}]}]}


def logs_payload(count: int, now_ns: int) -> dict[str, Any]:
    """Plain and JSON bodies; the worker parses the JSON ones into LogAttributes and infers severity."""
    records = []
    for i in range(count):
        if i % 3 == 0:
            body = json.dumps({"level": "error", "msg": "payment declined", "order": i})
        else:
            body = f"INFO checkout completed order={i}"
        records.append({"timeUnixNano": str(now_ns - i * 1_000_000), "body": {"stringValue": body},
                        "attributes": [_attr("test.run", str(now_ns))]})
    return {"resourceLogs": [{"resource": _resource(SERVICE),
                              "scopeLogs": [{"scope": {"name": "send-test-data"}, "logRecords": records}]}]}


def metrics_payload(count: int, now_ns: int) -> dict[str, Any]:
    """A monotonic cumulative sum and a gauge, `count` points each."""
    start = now_ns - 60_000_000_000
    sums = [{"startTimeUnixNano": str(start), "timeUnixNano": str(now_ns), "asInt": str(10 * (i + 1)),
             "attributes": [_attr("http.route", f"/route/{i % 3}")]} for i in range(count)]
    gauges = [{"timeUnixNano": str(now_ns), "asDouble": 0.5 + i / 100,
               "attributes": [_attr("queue", f"q{i % 2}")]} for i in range(count)]
    metrics = [
        {"name": "test.requests", "unit": "1", "description": "requests handled",
         "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": sums}},
        {"name": "test.queue.fill", "unit": "1", "description": "queue fill ratio",
         "gauge": {"dataPoints": gauges}},
    ]
    return {"resourceMetrics": [{"resource": _resource(SERVICE),
                                 "scopeMetrics": [{"scope": {"name": "send-test-data"}, "metrics": metrics}]}]}


PAYLOADS = {"traces": traces_payload, "logs": logs_payload, "metrics": metrics_payload}


def send(endpoint: str, signal: str, payload: dict[str, Any], api_key: str | None, timeout: float) -> str:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/v1/{signal}", data=json.dumps(payload).encode(),
                                     headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read().decode() or "{}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="http://localhost:4318", help="the ingest's OTLP/HTTP base URL")
    parser.add_argument("--traces", type=int, default=20, help="traces (and log records, metric points) per run")
    parser.add_argument("--api-key", help="when the ingest has MAPLE_INGEST_API_KEYS set")
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    now_ns = time.time_ns()
    failed = False
    for signal, build in PAYLOADS.items():
        try:
            answer = send(args.endpoint, signal, build(args.traces, now_ns), args.api_key, args.timeout)
            print(f"{signal:8} sent: {answer}")
        except (urllib.error.URLError, OSError) as exc:
            detail = exc.read().decode(errors="replace") if isinstance(exc, urllib.error.HTTPError) else ""
            print(f"{signal:8} FAILED: {exc} {detail}".rstrip(), file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

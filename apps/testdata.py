#!/usr/bin/env python3
"""Test data for a Maple ingest: a few traces, logs and metrics over OTLP/HTTP (JSON).

`maple send-test-data` runs this against the configured ingest (and with --wait, watches the rows arrive).
It uses the Python standard library only, so it also runs as a script where Maple is not installed, e.g.
on the host of the docker-compose stack:

    python3 apps/testdata.py                                   # http://localhost:4318
    python3 apps/testdata.py --endpoint http://ingest.example:4318 --api-key KEY

Each run sends `--traces` traces of three spans (every fifth with an error span, which the default tail
sampling keeps; of the others it keeps 10%), as many log records (a third with JSON bodies, whose level
becomes the severity) and one sum and one gauge point per trace. Every record carries the resource
attribute `maple.test_run` with the run's id, so a run's rows can be told apart. Logs and metrics are
queryable within seconds; traces after the sampler's decision_wait (10 s by default).
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
RUN_ATTRIBUTE = "maple.test_run"


def _attr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def _resource(service: str, run: str) -> dict[str, Any]:
    return {"attributes": [_attr("service.name", service), _attr("deployment.environment", "test"),
                           _attr(RUN_ATTRIBUTE, run)]}


def traces_payload(count: int, now_ns: int, run: str = "") -> dict[str, Any]:
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
    return {"resourceSpans": [{"resource": _resource(SERVICE, run),
                               "scopeSpans": [{"scope": {"name": "send-test-data"}, "spans": spans}]}]}


def logs_payload(count: int, now_ns: int, run: str = "") -> dict[str, Any]:
    """Plain and JSON bodies; the worker parses the JSON ones into LogAttributes and infers severity."""
    records = []
    for i in range(count):
        if i % 3 == 0:
            body = json.dumps({"level": "error", "msg": "payment declined", "order": i})
        else:
            body = f"INFO checkout completed order={i}"
        records.append({"timeUnixNano": str(now_ns - i * 1_000_000), "body": {"stringValue": body},
                        "attributes": [_attr("test.run", str(now_ns))]})
    return {"resourceLogs": [{"resource": _resource(SERVICE, run),
                              "scopeLogs": [{"scope": {"name": "send-test-data"}, "logRecords": records}]}]}


def metrics_payload(count: int, now_ns: int, run: str = "") -> dict[str, Any]:
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
    return {"resourceMetrics": [{"resource": _resource(SERVICE, run),
                                 "scopeMetrics": [{"scope": {"name": "send-test-data"}, "metrics": metrics}]}]}


PAYLOADS = {"traces": traces_payload, "logs": logs_payload, "metrics": metrics_payload}


def send(endpoint: str, signal: str, payload: dict[str, Any], api_key: str | None, timeout: float) -> str:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/v1/{signal}", data=json.dumps(payload).encode(),
                                     headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return str(response.read().decode() or "{}")


def send_all(endpoint: str, count: int, run: str, api_key: str | None = None, timeout: float = 15.0,
             out: Any = sys.stdout, err: Any = sys.stderr) -> bool:
    """Send one request per signal; prints the ingest's answer to each. True when all were accepted."""
    now_ns = time.time_ns()
    ok = True
    for signal, build in PAYLOADS.items():
        try:
            answer = send(endpoint, signal, build(count, now_ns, run), api_key, timeout)
            print(f"{signal:8} sent: {answer}", file=out, flush=True)
        except (urllib.error.URLError, OSError) as exc:
            detail = exc.read().decode(errors="replace") if isinstance(exc, urllib.error.HTTPError) else ""
            print(f"{signal:8} FAILED: {exc} {detail}".rstrip(), file=err, flush=True)
            ok = False
    return ok


def wait_for_rows(settings: Any, run: str, count: int, timeout: float, say: Any) -> bool:
    """Watch this run's rows arrive in ClickHouse (for `maple send-test-data --wait`; needs Maple installed).

    Logs: every record; metrics: every point; traces: at least the error traces, which the default
    policies always keep (the rest are sampled at 10%). True when all arrived within `timeout`."""
    from maple import clickhouse  # Maple's own client: this module stays importable without Maple

    expected = {"logs": count, "metrics": 2 * count, "traces": len(range(0, count, 5))}
    queries = {
        "logs": "SELECT count() FROM otel_logs WHERE ResourceAttributes[{key:String}] = {run:String}",
        "metrics": "SELECT (SELECT count() FROM otel_metrics_sum WHERE ResourceAttributes[{key:String}] = {run:String})"
                   " + (SELECT count() FROM otel_metrics_gauge WHERE ResourceAttributes[{key:String}] = {run:String})",
        "traces": "SELECT uniqExact(TraceId) FROM otel_traces WHERE ResourceAttributes[{key:String}] = {run:String}",
    }
    what = {"logs": "log records in otel_logs", "metrics": "metric points in otel_metrics_sum and _gauge",
            "traces": "sampled traces in otel_traces (the error ones at least)"}
    started = time.monotonic()
    pending = dict(expected)
    client = clickhouse.connect(settings, database=settings.clickhouse.database, in_process=False)
    try:
        while pending and time.monotonic() - started < timeout:
            for signal in list(pending):
                found = int(client.query(queries[signal], parameters={"key": RUN_ATTRIBUTE, "run": run}
                                         ).result_rows[0][0])
                if found >= pending[signal]:
                    say(f"{signal:8} {found} {what[signal]} after {time.monotonic() - started:.1f}s")
                    del pending[signal]
            if pending:
                time.sleep(0.5)
    finally:
        client.close()
    for signal in pending:
        say(f"{signal:8} not all there after {timeout:.0f}s: expected {expected[signal]} {what[signal]}"
            + ("; traces wait decision_wait in the sampler (traces.sampling_config)" if signal == "traces" else ""))
    return not pending


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--endpoint", default="http://localhost:4318", help="the ingest's OTLP/HTTP base URL")
    parser.add_argument("--traces", type=int, default=20, help="traces (and log records, metric points) per run")
    parser.add_argument("--api-key", help="when the ingest has MAPLE_INGEST_API_KEYS set")
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    return 0 if send_all(args.endpoint, args.traces, str(time.time_ns()), args.api_key, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())

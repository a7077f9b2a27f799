"""`maple bench ingest`: drive OTLP/HTTP protobuf requests at an ingest and measure it.

Reports requests/s, spans/s, MB/s, latency percentiles and the ingest's CPU seconds per million spans
(from /proc, so the ingest must run on this machine). Without --url it starts its own `maple ingest`
against the configured Kafka and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from apps import maple_command
from maple.net import free_port, http_ok


def make_request(spans: int, seed: int) -> bytes:
    """A realistic trace export: one service, a scope, `spans` server/client spans with HTTP attributes."""
    rng = random.Random(seed)
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    for key, value in (("service.name", f"bench-svc-{seed % 8}"), ("service.version", "1.4.2"),
                       ("deployment.environment", "bench"), ("k8s.pod.name", f"bench-{seed % 8}-7f9c")):
        resource.resource.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
    scope = resource.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.flask"
    trace_id = rng.randbytes(16)
    start = time.time_ns()
    for i in range(spans):
        if i % 8 == 0:
            trace_id = rng.randbytes(16)
        span = scope.spans.add(trace_id=trace_id, span_id=rng.randbytes(8), name=f"GET /api/v1/items/{i % 20}",
                               kind=2 if i % 8 == 0 else 3, start_time_unix_nano=start + i * 1000,
                               end_time_unix_nano=start + i * 1000 + rng.randint(100_000, 90_000_000))
        if i % 8:
            span.parent_span_id = rng.randbytes(8)
        for key, value in (("http.method", "GET"), ("http.route", f"/api/v1/items/{i % 20}"),
                           ("net.peer.name", "items.internal")):
            span.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
        span.attributes.add(key="http.status_code", value=common_pb2.AnyValue(int_value=500 if i % 97 == 0 else 200))
        span.status.code = Status.STATUS_CODE_ERROR if i % 97 == 0 else Status.STATUS_CODE_UNSET
    return request.SerializeToString()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass
class Result:
    requests: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    bytes_sent: int = 0
    all_ok: int = 0  # successful requests including the warm-up, for CPU per span


async def _drive(url: str, bodies: list[bytes], concurrency: int, duration: float,
                 warmup: float) -> tuple[Result, float]:
    result = Result()
    headers = {"Content-Type": "application/x-protobuf"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + duration

    async def worker(n: int) -> None:
        i = n
        async with aiohttp.ClientSession(connector=connector, connector_owner=False) as session:
            while time.perf_counter() < stop_at:
                body = bodies[i % len(bodies)]
                i += concurrency
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    code = response.status
                result.all_ok += code == 200
                if t0 < measure_from:
                    continue
                result.requests += 1
                result.latencies.append(time.perf_counter() - t0)
                result.bytes_sent += len(body)
                if code != 200:
                    result.errors[code] = result.errors.get(code, 0) + 1

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    await connector.close()
    return result, duration


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(*, url: str | None, pid: int | None, spans: int, concurrency: int, duration: float,
        warmup: float, say: Any = print) -> dict[str, Any]:
    own = None
    if url is None:
        port, grpc_port = free_port(), free_port()
        env = dict(os.environ, MAPLE_INGEST_HTTP_PORT=str(port), MAPLE_INGEST_GRPC_PORT=str(grpc_port))
        own = subprocess.Popen(maple_command("ingest"), env=env)
        url = f"http://127.0.0.1:{port}"
        pid = own.pid
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/readyz"):
            if own.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark's own `maple ingest` did not become ready")
            time.sleep(0.2)
    try:
        bodies = [make_request(spans, seed) for seed in range(32)]
        say(f"driving {url}/v1/traces: {spans} spans/request ({statistics.mean(map(len, bodies)) / 1024:.0f} KiB), "
            f"concurrency {concurrency}, {warmup:.0f}s warm-up + {duration:.0f}s measured")
        cpu_before = _cpu_seconds(pid) if pid else None
        result, measured = asyncio.run(_drive(f"{url}/v1/traces", bodies, concurrency, duration, warmup))
        cpu_after = _cpu_seconds(pid) if pid else None
    finally:
        if own is not None:
            own.terminate()
            own.wait(60)
    ok = result.requests - sum(result.errors.values())
    report: dict[str, Any] = {
        "spans_per_request": spans, "concurrency": concurrency, "seconds": measured,
        "requests": result.requests, "errors": result.errors,
        "requests_per_s": result.requests / measured,
        "spans_per_s": ok * spans / measured,
        "mb_per_s": result.bytes_sent / measured / 1e6,
        "latency_p50_ms": _percentile(result.latencies, 0.50) * 1000 if result.latencies else None,
        "latency_p99_ms": _percentile(result.latencies, 0.99) * 1000 if result.latencies else None,
    }
    if cpu_before is not None and cpu_after is not None and result.all_ok:
        # The ingest's CPU over the whole run (warm-up included) per span accepted over the whole run.
        report["ingest_cpu_s_per_million_spans"] = (cpu_after - cpu_before) / (result.all_ok * spans) * 1e6
        report["ingest_cpu_cores"] = (cpu_after - cpu_before) / (duration + warmup)
    return report

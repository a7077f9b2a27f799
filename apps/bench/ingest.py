"""`maple bench ingest`: drive OTLP/HTTP protobuf requests at an ingest and measure it.

Reports requests/s, spans/s, MB/s, latency percentiles and the ingest's CPU seconds per million spans
(from /proc, so the ingest must run on this machine). Without --url it starts its own `maple ingest`
against the configured Kafka and stops it afterwards. With --tls it starts its own ingest plaintext, with TLS
and with mutual TLS in turn (throwaway certificates) and reports each one's CPU per span against plaintext's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from apps import maple_command
from apps.bench.stats import percentile
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
                 warmup: float, context: ssl.SSLContext | None = None) -> tuple[Result, float]:
    result = Result()
    headers = {"Content-Type": "application/x-protobuf"}
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context if context is not None else True)
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


@contextlib.contextmanager
def _own_ingest(env: dict[str, str], context: ssl.SSLContext | None) -> Iterator[tuple[str, int]]:
    """A `maple ingest` of the benchmark's own (the configured Kafka, free ports): (base URL, pid)."""
    port, grpc_port = free_port(), free_port()
    env = dict(os.environ, **env, MAPLE_INGEST_HTTP_PORT=str(port), MAPLE_INGEST_GRPC_PORT=str(grpc_port))
    own = subprocess.Popen(maple_command("ingest"), env=env)
    url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/readyz", context=context):
            if own.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark's own `maple ingest` did not become ready")
            time.sleep(0.2)
        yield url, own.pid
    finally:
        own.terminate()
        own.wait(60)


def _measure(url: str, pid: int | None, bodies: list[bytes], spans: int, concurrency: int, duration: float,
             warmup: float, context: ssl.SSLContext | None) -> dict[str, Any]:
    cpu_before = _cpu_seconds(pid) if pid else None
    result, measured = asyncio.run(_drive(f"{url}/v1/traces", bodies, concurrency, duration, warmup, context))
    cpu_after = _cpu_seconds(pid) if pid else None
    ok = result.requests - sum(result.errors.values())
    report: dict[str, Any] = {
        "spans_per_request": spans, "concurrency": concurrency, "seconds": measured,
        "requests": result.requests, "errors": result.errors,
        "requests_per_s": result.requests / measured,
        "spans_per_s": ok * spans / measured,
        "mb_per_s": result.bytes_sent / measured / 1e6,
        "latency_p50_ms": percentile(result.latencies, 0.50) * 1000 if result.latencies else None,
        "latency_p99_ms": percentile(result.latencies, 0.99) * 1000 if result.latencies else None,
    }
    if cpu_before is not None and cpu_after is not None and result.all_ok:
        # The ingest's CPU over the whole run (warm-up included) per span accepted over the whole run.
        report["ingest_cpu_s_per_million_spans"] = (cpu_after - cpu_before) / (result.all_ok * spans) * 1e6
        report["ingest_cpu_cores"] = (cpu_after - cpu_before) / (duration + warmup)
    return report


def run(*, url: str | None, pid: int | None, spans: int, concurrency: int, duration: float,
        warmup: float, say: Any = print) -> dict[str, Any]:
    bodies = [make_request(spans, seed) for seed in range(32)]
    say(f"{spans} spans/request ({statistics.mean(map(len, bodies)) / 1024:.0f} KiB), concurrency {concurrency}, "
        f"{warmup:.0f}s warm-up + {duration:.0f}s measured")
    if url is not None:
        return _measure(url, pid, bodies, spans, concurrency, duration, warmup, None)
    with _own_ingest({}, None) as (own_url, own_pid):
        say(f"driving {own_url}/v1/traces")
        return _measure(own_url, own_pid, bodies, spans, concurrency, duration, warmup, None)


TLS_MODES = ("plaintext", "tls", "mtls")


def make_test_certificates(directory: Path) -> Path:
    """A throwaway CA, server and client certificate (apps/resources/test-certs.sh, the recipe the docs give)."""
    script = resources.files("apps").joinpath("resources/test-certs.sh")
    with resources.as_file(script) as path:
        result = subprocess.run(["bash", str(path), str(directory)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"making test certificates failed (needs openssl): {result.stderr.strip()}")
    return directory


def run_tls(*, spans: int, concurrency: int, duration: float, warmup: float, rounds: int,
            say: Any = print) -> dict[str, Any]:
    """The same load against ingests started plaintext, with TLS and with mutual TLS, `rounds` times in turn
    (plaintext, tls, mtls, plaintext, ...); per mode the median round, and its CPU per span over plaintext's.

    Clients keep their connections (as the SDK exporters do), so this is the cost of encrypting the stream,
    not of handshakes."""
    bodies = [make_request(spans, seed) for seed in range(32)]
    say(f"{spans} spans/request ({statistics.mean(map(len, bodies)) / 1024:.0f} KiB), concurrency {concurrency}, "
        f"{warmup:.0f}s warm-up + {duration:.0f}s measured per mode, {rounds} round(s) of {', '.join(TLS_MODES)}")
    with tempfile.TemporaryDirectory(prefix="maple-bench-tls-") as tmp:
        certs = make_test_certificates(Path(tmp))
        server = {"MAPLE_INGEST_TLS_CERT_FILE": str(certs / "server.pem"),
                  "MAPLE_INGEST_TLS_KEY_FILE": str(certs / "server-key.pem")}
        client = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        mutual = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        mutual.load_cert_chain(str(certs / "client.pem"), str(certs / "client-key.pem"))
        setups: dict[str, tuple[dict[str, str], ssl.SSLContext | None]] = {
            "plaintext": ({}, None), "tls": (server, client),
            "mtls": ({**server, "MAPLE_INGEST_TLS_CLIENT_CA_FILE": str(certs / "ca.pem")}, mutual)}
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in TLS_MODES}
        for round_no in range(rounds):
            for mode in TLS_MODES:
                env, context = setups[mode]
                with _own_ingest(env, context) as (url, pid):
                    report = _measure(url, pid, bodies, spans, concurrency, duration, warmup, context)
                runs[mode].append(report)
                say(f"round {round_no + 1} {mode:<9} {report.get('ingest_cpu_s_per_million_spans', 0):.2f} CPU s "
                    f"per million spans, {report['spans_per_s']:.0f} spans/s")
    medians = {mode: sorted(reports, key=lambda r: r.get("ingest_cpu_s_per_million_spans", 0))[len(reports) // 2]
               for mode, reports in runs.items()}
    base = medians["plaintext"].get("ingest_cpu_s_per_million_spans")
    return {"modes": medians, "rounds": rounds,
            "cpu_ratio": {mode: (r.get("ingest_cpu_s_per_million_spans") or 0) / base if base else None
                          for mode, r in medians.items()}}

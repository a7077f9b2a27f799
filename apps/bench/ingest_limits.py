"""`maple bench ingest-limits`: what worst-case requests cost an ingest, and whether others are still served.

Sends `--concurrency` copies of one expensive request at once and meanwhile:

* probes /healthz every 20 ms on a fresh connection (latency: max, p99; a probe that gets no answer
  within 5 s counts as 5 s);
* samples the resident memory of the ingest and every process under it (its parse processes) every
  50 ms, and reports the peak over the baseline before the requests.

Shapes, the costliest per byte that OTLP allows (docs/reliability.md):

* json-tiny: OTLP/JSON logs of one-character records (~20x its size to decode, ~0.5 s of CPU per MB);
* json-spans: OTLP/JSON traces as SDKs send them (hex ids, attributes);
* protobuf-empty: protobuf logs of empty records, 2 bytes each (~68x its size to decode);
* protobuf-spans: protobuf traces of 512-span batches (what `maple bench ingest` sends).

`--concurrency 0` sends nothing and probes an idle ingest for 20 s: the baseline of a loaded machine.

Without --url it starts its own `maple ingest` with the current settings (Kafka must be running:
`maple kafka start`); with --url and --pid it measures that one (e.g. an older build, for comparison).
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import statistics
import subprocess
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from apps import maple_command
from maple.net import free_port, http_ok
from maple.settings import Settings

SHAPES = ("json-tiny", "json-spans", "protobuf-empty", "protobuf-spans")
IDLE_SECONDS = 20.0


def _field(tag: int, payload: bytes) -> bytes:
    length, varint = len(payload), bytearray()
    while True:
        low, length = length & 0x7F, length >> 7
        varint.append(low | (0x80 if length else 0))
        if not length:
            return bytes([tag]) + bytes(varint) + payload


def make_body(shape: str, size_bytes: int) -> tuple[str, str, bytes]:
    """(signal, content type, body) of about `size_bytes`."""
    if shape == "json-tiny":
        record = b'{"body":{"stringValue":"x"}},'
        n = max(1, size_bytes // len(record))
        return "logs", "application/json", (b'{"resourceLogs":[{"scopeLogs":[{"logRecords":['
                                            + record * (n - 1) + record[:-1] + b"]}]}]}")
    if shape == "json-spans":
        span = (b'{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":'
                b'"eee19b7ec3c1b175","name":"GET /api/v1/items/{id}","kind":2,"startTimeUnixNano":'
                b'"1700000000000000000","endTimeUnixNano":"1700000000120000000","attributes":[{"key":'
                b'"http.method","value":{"stringValue":"GET"}},{"key":"http.status_code","value":{"intValue":'
                b'"200"}}],"status":{}},')
        n = max(1, size_bytes // len(span))
        return "traces", "application/json", (b'{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name",'
                                              b'"value":{"stringValue":"bench"}}]},"scopeSpans":[{"spans":['
                                              + span * (n - 1) + span[:-1] + b"]}]}]}")
    if shape == "protobuf-empty":
        return "logs", "application/x-protobuf", _field(0x0A, _field(0x12, b"\x12\x00" * max(1, size_bytes // 2)))
    if shape == "protobuf-spans":
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        from apps.bench.ingest import make_request

        one = make_request(512, 1)
        request = trace_service_pb2.ExportTraceServiceRequest()
        for _ in range(max(1, size_bytes // len(one))):
            request.MergeFromString(one)
        return "traces", "application/x-protobuf", request.SerializeToString()
    raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _probe(url: str, stop: Any, out: Any, every_s: float = 0.02) -> None:
    """/healthz every `every_s` on a fresh connection until `stop` is set; sends the latencies (seconds).

    Runs in a process of its own: in the bench's process its timings would include waiting for the GIL
    behind the senders and the memory sampler."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            latencies.append(time.perf_counter() - started)
        except OSError:
            latencies.append(5.0)
        stop.wait(max(0.0, every_s - (time.perf_counter() - started)))
    out.send(latencies)


class _Memory(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self.halt.wait(0.05)


def _post(url: str, path: str, content_type: str, body: bytes) -> tuple[int, float]:
    parts = urlsplit(url)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=600)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started
    finally:
        conn.close()


def ceiling_bytes(settings: Settings, baseline: int) -> int:
    """The documented bound on the ingest's memory (docs/ingest.md): its baseline; the in-flight budget twice
    (the requests' bytes, and librdkafka's copy of them until Kafka acknowledged); the parse processes at
    their cap (plus about 40 MB each that RLIMIT_DATA does not count: code and shared libraries); and one
    inline decode at its worst (68x parse_inline_bytes)."""
    cfg = settings.ingest
    return (baseline + 2 * cfg.max_inflight_bytes + cfg.parse_processes * (cfg.parse_memory_bytes + 40_000_000)
            + 68 * cfg.parse_inline_bytes)


def run(*, shape: str, size_bytes: int, concurrency: int, settings: Settings, url: str | None = None,
        pid: int | None = None, say: Any = print) -> dict[str, Any]:
    own = None
    if url is None:
        port = free_port()
        env = dict(os.environ, MAPLE_INGEST_HTTP_PORT=str(port), MAPLE_INGEST_GRPC_PORT=str(free_port()))
        own = subprocess.Popen(maple_command("ingest"), env=env)
        url, pid = f"http://127.0.0.1:{port}", own.pid
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/readyz"):
            if own.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark's own `maple ingest` did not become ready")
            time.sleep(0.2)
    if pid is None:
        raise ValueError("--pid is needed with --url (the ingest's memory is read from /proc)")
    try:
        signal, content_type, body = make_body(shape, size_bytes)
        say(f"{concurrency} x {shape} of {len(body) / 1e6:.1f} MB at {url}/v1/{signal}")
        time.sleep(1.0)
        baseline = tree_rss_bytes(pid)
        context = multiprocessing.get_context("spawn")
        stop, (receive, send_back) = context.Event(), context.Pipe(duplex=False)
        probe = context.Process(target=_probe, args=(url, stop, send_back), daemon=True)
        memory = _Memory(pid)
        probe.start()
        memory.start()
        time.sleep(0.5)
        results: list[tuple[int, float]] = []
        lock = threading.Lock()

        def send() -> None:
            outcome = _post(url, f"/v1/{signal}", content_type, body)
            with lock:
                results.append(outcome)

        started = time.perf_counter()
        senders = [threading.Thread(target=send) for _ in range(concurrency)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        if not concurrency:
            time.sleep(IDLE_SECONDS)  # the baseline: /healthz of an idle ingest on this machine, as loaded as it is
        elapsed = time.perf_counter() - started
        time.sleep(1.0)
        stop.set()
        memory.halt.set()
        latencies = sorted(receive.recv())
        probe.join(10)
        memory.join(10)
    finally:
        if own is not None:
            own.terminate()
            own.wait(60)
    return {
        "shape": shape, "request_mb": len(body) / 1e6, "concurrency": concurrency, "signal": signal,
        "statuses": sorted(code for code, _ in results), "request_seconds": sorted(round(s, 2) for _, s in results),
        "all_requests_s": elapsed,
        "healthz_probes": len(latencies), "healthz_max_ms": latencies[-1] * 1000 if latencies else None,
        "healthz_p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000 if latencies else None,
        "healthz_median_ms": statistics.median(latencies) * 1000 if latencies else None,
        "rss_baseline_mb": baseline / 1e6, "rss_peak_mb": memory.peak / 1e6,
        "rss_peak_over_baseline_mb": (memory.peak - baseline) / 1e6,
        "rss_ceiling_mb": ceiling_bytes(settings, baseline) / 1e6 if own is not None else None,
    }

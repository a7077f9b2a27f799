"""`maple bench e2e`: throughput of the workers and sinks, and freshness from ingest to queryable.

Two phases, each with its own consumer groups and database so nothing mixes with real data:

1. throughput: `--records` log records (or metric data points) are produced straight into the raw topic,
   then a worker and a sink are started; records/s is measured over the window in which rows appear in
   ClickHouse (process start-up excluded, reported separately);
2. freshness: requests go through a real `maple ingest` at a fixed rate (`--rate`, default half the
   measured throughput) for `--duration` seconds; the sink's `maple_sink_freshness_seconds` histogram
   (ingest receipt to ClickHouse acknowledgement, per request) gives p50 and p99 by interpolation.

Kafka comes from the settings (start it with `maple kafka start`); ClickHouse too, and in embedded mode
the bench starts a host on the data dir if none runs.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from maple import clickhouse
from maple import kafka as kafka_clients
from maple.net import free_port, http_ok
from maple.settings import Settings
from maple.topics import HEADER_RECEIVED_NS, LOGS, METRICS, RAW_LOGS, RAW_METRICS

METRIC_TABLES = ("otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram",
                 "otel_metrics_exponential_histogram", "otel_metrics_summary")


def log_request(service: str, per_request: int, seed: int) -> bytes:
    """Realistic log traffic: a third JSON bodies, the rest text with and without severity."""
    rng = random.Random(seed)
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    for key, value in (("service.name", service), ("k8s.pod.name", f"{service}-{seed % 7}"),
                       ("k8s.namespace.name", "shop"), ("host.name", f"node-{seed % 3}")):
        rl.resource.attributes.add(key=key, value={"string_value": value})
    sl = rl.scope_logs.add()
    sl.scope.name = "app.logging"
    now = time.time_ns()
    for i in range(per_request):
        record = sl.log_records.add(time_unix_nano=now + i, trace_id=rng.randbytes(16), span_id=rng.randbytes(8))
        kind = i % 3
        if kind == 0:
            record.body.string_value = (f'{{"level":"{rng.choice(["info", "warn", "error"])}","msg":"order placed",'
                                        f'"order":{{"id":{rng.randint(1, 10**9)},"items":{rng.randint(1, 9)}}},'
                                        f'"user":"u{rng.randint(1, 5000)}"}}')
        elif kind == 1:
            record.body.string_value = f"GET /api/items/{rng.randint(1, 999)} 200 in {rng.randint(1, 900)} ms"
            record.severity_number, record.severity_text = 9, "INFO"
        else:
            record.body.string_value = f"cache miss for key item:{rng.randint(1, 99999)}, falling back"
        record.attributes.add(key="http.route", value={"string_value": "/api/items/{id}"})
        record.attributes.add(key="thread", value={"int_value": rng.randint(1, 64)})
    return request.SerializeToString()


def metric_request(service: str, per_request: int, seed: int) -> bytes:
    """Data points of every type, mostly gauges and sums as real traffic has."""
    rng = random.Random(seed)
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.add(key="service.name", value={"string_value": service})
    sm = rm.scope_metrics.add()
    now = time.time_ns()
    made = 0
    while made < per_request:
        for kind in ("gauge", "sum", "sum", "gauge", "histogram", "exponential_histogram", "summary"):
            metric = sm.metrics.add(name=f"bench.{kind}.{made % 20}")
            data = getattr(metric, kind)
            points = min(10, per_request - made)
            for _ in range(points):
                point = data.data_points.add(time_unix_nano=now, start_time_unix_nano=now - 10**10)
                point.attributes.add(key="route", value={"string_value": f"/r/{rng.randint(1, 30)}"})
                if kind in ("gauge", "sum"):
                    point.as_double = rng.random() * 100
                elif kind == "histogram":
                    point.count, point.sum = 4, 40.0
                    point.bucket_counts.extend([1, 2, 1])
                    point.explicit_bounds.extend([5.0, 50.0])
                elif kind == "exponential_histogram":
                    point.count, point.sum, point.scale = 3, 9.0, 2
                    point.positive.bucket_counts.extend([1, 2])
                else:
                    point.count, point.sum = 5, 12.0
                    point.quantile_values.add(quantile=0.5, value=2.0)
            if kind == "sum":
                data.aggregation_temporality, data.is_monotonic = 2, True
            made += points
            if made >= per_request:
                break
    return request.SerializeToString()


class Stages:
    """The bench's own processes, stopped when it finishes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *command: str, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "maple", *command], env={**self.env, **(extra or {})},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []

    def ensure_clickhouse(self, settings: Settings, say: Callable[[str], None]) -> None:
        """In embedded mode, start a ClickHouse host on the data dir unless one already serves it."""
        if not settings.embedded_clickhouse or clickhouse.running_host(settings) is not None:
            return
        say("starting an embedded ClickHouse host for the benchmark")
        self.start("clickhouse", "serve")
        deadline = time.monotonic() + 60
        while clickhouse.running_host(settings) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the embedded ClickHouse host did not start")
            time.sleep(0.2)


def _count(client: Any, signal: str, service: str) -> int:
    tables = ("otel_logs",) if signal == "logs" else METRIC_TABLES
    union = " UNION ALL ".join(f"SELECT count() AS c FROM {t} WHERE ServiceName = '{service}'" for t in tables)
    return int(client.query(f"SELECT sum(c) FROM ({union})").result_rows[0][0])


def _histogram(url: str, name: str) -> dict[float, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    buckets = {}
    for match in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.MULTILINE):
        buckets[float("inf") if match.group(1) == "+Inf" else float(match.group(1))] = float(match.group(2))
    return buckets


def _quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """Prometheus-style histogram_quantile over the buckets' increase."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / max(count - previous_count, 1e-9)
        previous_bound, previous_count = bound, count
    return bounds[-2] if len(bounds) > 1 else None


def run(settings: Settings, *, signal: str, records: int, per_request: int, rate: float | None, duration: float,
        workers: int, sinks: int, say: Callable[[str], None]) -> dict[str, Any]:
    import os

    tag = uuid.uuid4().hex[:8]
    service = f"bench-{tag}"
    database = f"bench_{tag}"
    bootstrap = kafka_clients.bootstrap_servers(settings)
    kafka_clients.probe(bootstrap, timeout=10)
    metrics_port = free_port()
    env = {**os.environ, "MAPLE_KAFKA_BOOTSTRAP": bootstrap, "MAPLE_CLICKHOUSE_DATABASE": database,
           "MAPLE_WORKER_GROUP": f"bench-worker-{tag}", "MAPLE_SINK_GROUP": f"bench-sink-{tag}",
           "MAPLE_WORKER_METRICS_PORT": "0", "MAPLE_SINK_METRICS_PORT": "0", "MAPLE_WORKER_SIGNALS": signal}
    stages = Stages(env)
    make = log_request if signal == "logs" else metric_request
    raw_topic = RAW_LOGS if signal == "logs" else RAW_METRICS
    try:
        stages.ensure_clickhouse(settings, say)
        subprocess.run([sys.executable, "-m", "maple", "schema", "apply"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        client = clickhouse.connect(settings, database=database, in_process=False)

        # The bench's groups start at the topics' ends: earlier traffic is not part of the measurement.
        kafka_clients.ensure_topics(kafka_clients.admin_client(bootstrap), settings.kafka.partitions,
                                    settings.kafka.replication_factor, [raw_topic, LOGS, METRICS])
        kafka_clients.start_group_at_end(bootstrap, env["MAPLE_WORKER_GROUP"], [raw_topic.name])
        kafka_clients.start_group_at_end(bootstrap, env["MAPLE_SINK_GROUP"], [LOGS.name, METRICS.name])

        # Phase 1: throughput of worker + sink over a backlog.
        bodies = [make(service, per_request, seed) for seed in range(40)]
        requests = max(1, records // per_request)
        total = requests * per_request
        say(f"phase 1: producing {total:,} {signal} records ({requests} requests of {per_request}) into "
            f"{raw_topic.name}")
        producer = Producer(kafka_clients.producer_config(bootstrap))
        for i in range(requests):
            producer.produce(raw_topic.name, value=bodies[i % len(bodies)], key=uuid.uuid4().bytes,
                             headers=[(HEADER_RECEIVED_NS, str(time.time_ns()).encode())])
            producer.poll(0)
        producer.flush(120)
        say(f"phase 1: starting {workers} worker(s) and {sinks} sink(s)")
        launched = time.monotonic()
        for _ in range(workers):
            stages.start("worker")
        for _ in range(sinks):
            stages.start("sink")
        first_seen = None
        seen = 0
        deadline = time.monotonic() + max(600.0, total / 2000)
        while seen < total and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = _count(client, signal, service)
            if seen and first_seen is None:
                first_seen = time.monotonic()
                first_rows = seen
            say(f"  {seen:,}/{total:,} rows queryable")
        done = time.monotonic()
        if seen < total:
            raise RuntimeError(f"only {seen} of {total} rows arrived")
        assert first_seen is not None
        steady = (total - first_rows) / max(done - first_seen, 1e-6)
        report: dict[str, Any] = {
            "signal": signal, "records": total, "per_request": per_request, "workers": workers, "sinks": sinks,
            "records_per_s": steady, "records_per_s_incl_startup": total / (done - launched),
            "startup_s": first_seen - launched,
        }

        # Phase 2: freshness at a fixed rate through the ingest.
        stages.stop()
        target = rate or steady / 2
        http_port = free_port()
        sink_env = {"MAPLE_SINK_METRICS_PORT": str(metrics_port)}
        ingest = {"MAPLE_INGEST_HTTP_PORT": str(http_port), "MAPLE_INGEST_GRPC_PORT": str(free_port())}
        stages.ensure_clickhouse(settings, say)
        stages.start("ingest", extra=ingest)
        for _ in range(workers):
            stages.start("worker")
        for i in range(sinks):
            stages.start("sink", extra=sink_env if i == 0 else None)
        url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 60
        while not (http_ok(f"{url}/readyz") and http_ok(f"http://127.0.0.1:{metrics_port}/metrics")):
            if time.monotonic() > deadline:
                raise RuntimeError("ingest or sink did not come up for phase 2")
            time.sleep(0.5)
        time.sleep(8)  # let the groups settle before measuring
        say(f"phase 2: sending {target:,.0f} {signal} records/s through the ingest for {duration:.0f}s")
        before = _histogram(f"http://127.0.0.1:{metrics_port}/metrics", "maple_sink_freshness_seconds")
        sent = _send_at_rate(f"{url}/v1/{signal}", bodies, per_request, target, duration)
        expected = seen + sent * per_request
        deadline = time.monotonic() + 120
        while _count(client, signal, service) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        after = _histogram(f"http://127.0.0.1:{metrics_port}/metrics", "maple_sink_freshness_seconds")
        client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")  # no background merges left behind
        client.close()
        report.update({"freshness_rate_per_s": target, "freshness_requests": sent,
                       "freshness_p50_s": _quantile(before, after, 0.5),
                       "freshness_p99_s": _quantile(before, after, 0.99),
                       "freshness_note": "ingest receipt to ClickHouse acknowledgement, per request, from the "
                                         "first sink's histogram (one of the sinks when --sinks > 1)"})
        return report
    finally:
        stages.stop()


def _send_at_rate(url: str, bodies: list[bytes], per_request: int, rate: float, duration: float) -> int:
    """Send requests from 4 threads, paced to `rate` records/s in total; returns requests acknowledged."""
    interval = per_request / rate * 4
    sent = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker(n: int) -> None:
        next_at = time.monotonic() + interval * n / 4
        i = n
        while next_at < stop_at:
            time.sleep(max(0.0, next_at - time.monotonic()))
            request = urllib.request.Request(url, data=bodies[i % len(bodies)], method="POST",
                                             headers={"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status == 200:
                        with lock:
                            sent[0] += 1
            except OSError:
                pass
            i += 4
            next_at += interval

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent[0]

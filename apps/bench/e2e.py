"""`maple bench e2e`: throughput of the workers and sinks, and freshness from ingest to queryable.

Two phases, each with its own consumer groups and database so nothing mixes with real data:

1. throughput: `--records` log records (metric data points, spans) are produced straight into the raw
   topic, then a worker and a sink are started; records/s is measured over the window in which rows appear
   in ClickHouse (process start-up excluded, reported separately);
2. freshness: requests go through a real `maple ingest` at a fixed rate (`--rate`, default half the
   measured throughput) for `--duration` seconds; the sink's `maple_sink_freshness_seconds` histogram
   (ingest receipt to ClickHouse acknowledgement, per request) gives p50 and p99 by interpolation.

Traces go through repartitioning, RED, tail sampling (the default policies: errors, traces of 1 s or
more, 10% of the rest; decision_wait 2 s unless --decision-wait) and the sink. A span counts as through
once its RED point is in ClickHouse and every sampled trace is; freshness is measured from the sampling
decision, since waiting for the decision is by design.

With `--after-root S` (traces), the sampler also decides S after a trace's root span arrived
(`decision_wait_after_root_received`), decision_wait defaults to Maple's 10 s instead of 2 s, and phase 2
adds a probe: alongside the background load it sends error traces of its own (one request each, a
service of their own) and polls ClickHouse every 100 ms for each trace id, giving root span received
(ingest acknowledged) -> queryable in otel_traces. Half the probe traces have their root; the other
half's top span has a remote parent that never arrives, so they wait decision_wait as every trace does
with the option off: both figures come from the same sampler, load and run.

Kafka comes from the settings (start it with `maple kafka start`); ClickHouse too, and in embedded mode
the bench starts a host on the data dir if none runs.
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Producer
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from apps import maple_command
from apps.bench.stats import quantile
from maple import clickhouse
from maple import kafka as kafka_clients
from maple.net import free_port, http_ok
from maple.settings import Settings
from maple.topics import HEADER_RECEIVED_NS, LOGS, METRICS, RAW_LOGS, RAW_METRICS, RAW_TRACES, SPANS, SPANS_SAMPLED
from processors.sampling import DEFAULT_CONFIG, Trace
from processors.sampling.probabilistic import Probabilistic, ProbabilisticConfig

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
            record.severity_number, record.severity_text = SeverityNumber.SEVERITY_NUMBER_INFO, "INFO"
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


BACKLOG_RATE = 50_000  # records/s the phase 1 backlog is stamped as having arrived at
SPANS_PER_TRACE = 8
SPAN_NAMES = ("SELECT orders", "GET cache", "POST /payments", "publish order.placed", "render", "auth.verify",
              "SELECT items")


def trace_request(service: str, per_request: int, seed: int) -> tuple[bytes, list[tuple[str, bool, float]]]:
    """Traces of 8 spans (a server root and its children) with fresh ids; 2% errors, 1% slower than 1 s.
    Returns the body and, per trace, (trace id, has an error, latency in ms)."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in (("service.name", service), ("k8s.pod.name", f"{service}-{seed % 7}"),
                       ("deployment.environment", "bench")):
        rs.resource.attributes.add(key=key, value={"string_value": value})
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "bench.tracer", "1.0"
    now = time.time_ns()
    meta = []
    for _ in range(max(1, per_request // SPANS_PER_TRACE)):
        trace_id, root_id = rng.randbytes(16), rng.randbytes(8)
        error = rng.random() < 0.02
        latency_ms = rng.uniform(1000, 3000) if rng.random() < 0.01 else rng.uniform(2, 400)
        root = ss.spans.add(trace_id=trace_id, span_id=root_id, name="GET /api/orders/{id}", kind=2,
                            start_time_unix_nano=now, end_time_unix_nano=now + int(latency_ms * 1e6))
        root.attributes.add(key="http.route", value={"string_value": "/api/orders/{id}"})
        root.attributes.add(key="http.response.status_code", value={"int_value": 500 if error else 200})
        if error:
            root.status.code, root.status.message = Status.STATUS_CODE_ERROR, "upstream failed"
        for n in range(SPANS_PER_TRACE - 1):
            start = now + int(rng.uniform(0, latency_ms / 2) * 1e6)
            child = ss.spans.add(trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=root_id,
                                 name=SPAN_NAMES[n % len(SPAN_NAMES)], kind=3, start_time_unix_nano=start,
                                 end_time_unix_nano=start + int(rng.uniform(0.1, latency_ms / 2) * 1e6))
            child.attributes.add(key="db.system", value={"string_value": "postgresql"})
            if n == 0:
                child.events.add(time_unix_nano=start, name="query.plan").attributes.add(
                    key="rows", value={"int_value": rng.randint(1, 500)})
        meta.append((trace_id.hex(), error, latency_ms))
    return request.SerializeToString(), meta


def expected_sampled_spans(meta: list[tuple[str, bool, float]]) -> int:
    """Spans the default policies keep: errors, 1 s or slower, and the probabilistic share (its own hash)."""
    share = Probabilistic("probabilistic", ProbabilisticConfig(10))
    kept = sum(1 for trace_id, error, latency in meta
               if error or latency >= 1000 or share.evaluate(Trace(trace_id), 0) == 1)
    return kept * SPANS_PER_TRACE


def error_trace_request(service: str, seed: int, *, root: bool) -> tuple[bytes, str]:
    """One error trace of 8 spans in one request; returns the body and the trace id (hex).
    `root=False`: the top span has a remote parent that is never sent, so the sampler has no root to
    bring the decision forward and waits decision_wait, as it does for every trace with the option off."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value={"string_value": service})
    ss = rs.scope_spans.add()
    ss.scope.name = "bench.probe"
    now = time.time_ns()
    trace_id, top_id = rng.randbytes(16), rng.randbytes(8)
    for n in range(SPANS_PER_TRACE - 1):  # children first, the top span last, as an SDK exports them
        start = now + n * 1_000_000
        ss.spans.add(trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=top_id,
                     name=SPAN_NAMES[n % len(SPAN_NAMES)], kind=3, start_time_unix_nano=start,
                     end_time_unix_nano=start + 500_000)
    top = ss.spans.add(trace_id=trace_id, span_id=top_id, parent_span_id=b"" if root else rng.randbytes(8),
                       name="GET /api/orders/{id}", kind=2, start_time_unix_nano=now,
                       end_time_unix_nano=now + SPANS_PER_TRACE * 1_000_000)
    top.status.code, top.status.message = Status.STATUS_CODE_ERROR, "upstream failed"
    return request.SerializeToString(), trace_id.hex()


def latency_summary(latencies: Sequence[float], sent: int) -> dict[str, Any]:
    """p50/p99/max of the traces that became queryable, and how many of those sent did."""
    return {"sent": sent, "queryable": len(latencies), "p50_s": quantile(latencies, 0.5),
            "p99_s": quantile(latencies, 0.99), "max_s": max(latencies) if latencies else None}


ROOT_PROBE_PER_S = 6.0  # probe traces sent per second, alternating with and without their root
ROOT_PROBE_POLL_S = 0.1


class RootProbe:
    """Error traces sent through the ingest while phase 2's load runs, each timed from the ingest's
    acknowledgement of its request to the first poll of ClickHouse that finds it.

    The start time of the poll that found a trace is taken, so it is counted at most one poll interval (and
    the previous poll's own time) late; polls are bound-parameter queries on the probe service's rows."""

    def __init__(self, url: str, client: Any, service: str, say: Callable[[str], None]) -> None:
        self.url, self.client, self.service, self.say = url, client, service, say
        self.sent: dict[str, tuple[bool, float]] = {}  # trace id -> (has its root, acknowledged at)
        self.seen: dict[str, float] = {}  # trace id -> queryable at (start of the poll that found it)
        self.lock = threading.Lock()
        self.sending = threading.Event()
        self.polling = threading.Event()
        self.errors = self.poll_errors = 0
        self.threads: list[threading.Thread] = []

    def start(self, send_for_s: float) -> None:
        self.sending.set()
        self.polling.set()
        self.threads = [threading.Thread(target=self._send, args=(send_for_s,), daemon=True),
                        threading.Thread(target=self._poll, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _send(self, send_for_s: float) -> None:
        interval = 1 / ROOT_PROBE_PER_S
        next_at = time.monotonic()
        stop_at = next_at + send_for_s
        n = 0
        while self.sending.is_set() and next_at < stop_at:
            time.sleep(max(0.0, next_at - time.monotonic()))
            root = n % 2 == 0
            body, trace_id = error_trace_request(self.service, 1_000_000 + n, root=root)
            request = urllib.request.Request(f"{self.url}/v1/traces", data=body, method="POST",
                                             headers={"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status == 200:
                        with self.lock:
                            self.sent[trace_id] = (root, time.monotonic())
            except OSError:
                self.errors += 1
            n += 1
            next_at += interval
        self.sending.clear()

    def _poll(self) -> None:
        while self.polling.is_set():
            started = time.monotonic()
            with self.lock:
                waiting = [t for t in self.sent if t not in self.seen]
            if waiting:
                try:
                    rows = self.client.query("SELECT DISTINCT TraceId FROM otel_traces WHERE ServiceName = {s:String} "
                                             "AND TraceId IN {ids:Array(String)}",
                                             parameters={"s": self.service, "ids": waiting}).result_rows
                except Exception as exc:  # a failed poll only delays what the next one finds; counted
                    rows = []
                    self.poll_errors += 1
                    if self.poll_errors == 1:
                        self.say(f"  probe poll failed (counted, polling on): {exc}")
                with self.lock:
                    for (trace_id,) in rows:
                        self.seen.setdefault(trace_id, started)
            time.sleep(max(0.0, ROOT_PROBE_POLL_S - (time.monotonic() - started)))

    def outstanding(self) -> int:
        with self.lock:
            return sum(1 for t in self.sent if t not in self.seen)

    def finish(self, timeout_s: float) -> dict[str, Any]:
        """Wait for sending to end and every sent trace to be found (or `timeout_s`), then summarise."""
        self.threads[0].join()
        deadline = time.monotonic() + timeout_s
        said = time.monotonic()
        while self.outstanding() and time.monotonic() < deadline:
            time.sleep(0.5)
            if time.monotonic() - said >= 5:
                said = time.monotonic()
                self.say(f"  {self.outstanding()} probe traces not queryable yet")
        self.polling.clear()
        self.threads[1].join()
        with self.lock:
            sent, seen = dict(self.sent), dict(self.seen)
        out: dict[str, Any] = {}
        for label, has_root in (("with_root", True), ("without_root", False)):
            ids = [t for t, (root, _) in sent.items() if root == has_root]
            out[label] = latency_summary([seen[t] - sent[t][1] for t in ids if t in seen], len(ids))
        out["send_errors"], out["poll_errors"] = self.errors, self.poll_errors
        return out


class Stages:
    """The bench's own processes, stopped when it finishes."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *command: str, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(maple_command(*command), env={**self.env, **(extra or {})},
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
    if signal == "traces":  # spans counted by RED (all of them, before sampling)
        return int(client.query("SELECT sum(Value) FROM otel_metrics_sum WHERE MetricName = "
                                f"'traces.span.metrics.calls' AND ServiceName = '{service}'").result_rows[0][0] or 0)
    tables = ("otel_logs",) if signal == "logs" else METRIC_TABLES
    union = " UNION ALL ".join(f"SELECT count() AS c FROM {t} WHERE ServiceName = '{service}'" for t in tables)
    return int(client.query(f"SELECT sum(c) FROM ({union})").result_rows[0][0])


def _sampled(client: Any, service: str) -> int:
    return int(client.query(f"SELECT count() FROM otel_traces WHERE ServiceName = '{service}'").result_rows[0][0])


def _histogram(url: str, name: str, topic: str) -> dict[float, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    buckets = {}
    for match in re.finditer(rf'^{name}_bucket{{le="([^"]+)",topic="{re.escape(topic)}"}} (\S+)$', text, re.MULTILINE):
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
            share = (rank - previous_count) / max(count - previous_count, 1e-9)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, count
    return bounds[-2] if len(bounds) > 1 else None


def run(settings: Settings, *, signal: str, records: int, per_request: int, rate: float | None, duration: float,
        workers: int, sinks: int, say: Callable[[str], None], decision_wait_s: float = 2.0,
        after_root_s: float | None = None) -> dict[str, Any]:
    import os
    import tempfile

    import yaml

    probe_s = duration - decision_wait_s - 2
    if after_root_s is not None and (signal != "traces" or probe_s < 10):
        raise ValueError("--after-root needs --signal traces and a --duration of at least decision_wait + 12 s "
                         f"(here {decision_wait_s + 12:g} s)")
    tag = uuid.uuid4().hex[:8]
    service = f"bench-{tag}"
    database = f"bench_{tag}"
    bootstrap = kafka_clients.bootstrap_servers(settings)
    kafka_clients.probe(bootstrap, timeout=10, replication_factor=settings.kafka.replication_factor)
    metrics_port = free_port()
    env = {**os.environ, "MAPLE_KAFKA_BOOTSTRAP": bootstrap, "MAPLE_CLICKHOUSE_DATABASE": database,
           "MAPLE_WORKER_GROUP": f"bench-worker-{tag}", "MAPLE_SINK_GROUP": f"bench-sink-{tag}",
           "MAPLE_WORKER_METRICS_PORT": "0", "MAPLE_SINK_METRICS_PORT": "0", "MAPLE_WORKER_SIGNALS": signal}
    raw_topic = {"logs": RAW_LOGS, "metrics": RAW_METRICS, "traces": RAW_TRACES}[signal]
    worker_topics = [raw_topic] + ([SPANS] if signal == "traces" else [])
    sink_topics = [LOGS, METRICS, SPANS_SAMPLED]  # every topic a sink reads, or it starts on old backlogs
    freshness_topic = {"logs": LOGS, "metrics": METRICS, "traces": SPANS_SAMPLED}[signal].name
    meta: list[tuple[str, bool, float]] = []
    if signal == "traces":
        config = {**DEFAULT_CONFIG, "decision_wait": f"{decision_wait_s}s"}
        if after_root_s is not None:
            config["decision_wait_after_root_received"] = f"{after_root_s}s"
        config_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, kept on disk for the worker
            "w", suffix=".yaml", prefix="maple-bench-sampling-", delete=False)
        with config_file:
            yaml.safe_dump({"tail_sampling": config}, config_file)
        env["MAPLE_TRACES_SAMPLING_CONFIG"] = config_file.name

    def bodies_for(count: int, first_seed: int) -> list[bytes]:
        if signal != "traces":  # repeated bodies are fine for logs and metrics
            make = log_request if signal == "logs" else metric_request
            return [make(service, per_request, seed) for seed in range(40)]
        out = []  # traces need fresh trace ids in every request
        for seed in range(first_seed, first_seed + count):
            body, trace_meta = trace_request(service, per_request, seed)
            out.append(body)
            meta.extend(trace_meta)
        return out

    stages = Stages(env)
    try:
        stages.ensure_clickhouse(settings, say)
        subprocess.run(maple_command("schema", "apply"), env=env, check=True,
                       stdout=subprocess.DEVNULL)
        client = clickhouse.connect(settings, database=database, in_process=False)

        # The bench's groups start at the topics' ends: earlier traffic is not part of the measurement.
        kafka_clients.create_topics(settings)
        kafka_clients.start_group_at_end(bootstrap, env["MAPLE_WORKER_GROUP"], [t.name for t in worker_topics])
        kafka_clients.start_group_at_end(bootstrap, env["MAPLE_SINK_GROUP"], [t.name for t in sink_topics])

        # Phase 1: throughput of worker + sink over a backlog.
        requests = max(1, records // per_request)
        say(f"phase 1: preparing {requests} requests")
        bodies = bodies_for(requests, 0)
        per_body = per_request if signal != "traces" else max(1, per_request // SPANS_PER_TRACE) * SPANS_PER_TRACE
        total = requests * per_body
        say(f"phase 1: producing {total:,} {signal} records ({requests} requests of {per_body}) into "
            f"{raw_topic.name}")
        producer = Producer(kafka_clients.producer_config(bootstrap))
        # The backlog looks as if it had arrived over time at BACKLOG_RATE records/s, ending now: stream time
        # (the sampler's clock) then moves through it as it would through a real backlog.
        spacing_ns = int(per_body / BACKLOG_RATE * 1e9)
        first_ns = time.time_ns() - requests * spacing_ns
        for i in range(requests):
            received = first_ns + i * spacing_ns
            producer.produce(raw_topic.name, value=bodies[i % len(bodies)], key=uuid.uuid4().bytes,
                             timestamp=received // 1_000_000, headers=[(HEADER_RECEIVED_NS, str(received).encode())])
            producer.poll(0)
        producer.flush(120)
        expected_sampled = expected_sampled_spans(meta) if signal == "traces" else 0
        say(f"phase 1: starting {workers} worker(s) and {sinks} sink(s)")
        launched = time.monotonic()
        for _ in range(workers):
            stages.start("worker")
        for _ in range(sinks):
            stages.start("sink")
        first_seen = None
        seen = sampled = 0
        deadline = time.monotonic() + max(600.0, total / 2000)
        while (seen < total or sampled < expected_sampled) and time.monotonic() < deadline:
            time.sleep(0.5)
            seen = _count(client, signal, service)
            sampled = _sampled(client, service) if signal == "traces" else 0
            if seen and first_seen is None:
                first_seen = time.monotonic()
                first_rows = seen
            say(f"  {seen:,}/{total:,} {'spans counted' if signal == 'traces' else 'rows queryable'}"
                + (f", {sampled:,}/{expected_sampled:,} sampled spans queryable" if signal == "traces" else ""))
        done = time.monotonic()
        if seen < total or sampled < expected_sampled:
            raise RuntimeError(f"only {seen} of {total} records (and {sampled} of {expected_sampled} sampled spans) "
                               "arrived")
        assert first_seen is not None
        steady = (total - first_rows) / max(done - first_seen, 1e-6)
        report: dict[str, Any] = {
            "signal": signal, "records": total, "per_request": per_body, "workers": workers, "sinks": sinks,
            "records_per_s": steady, "records_per_s_incl_startup": total / (done - launched),
            "startup_s": first_seen - launched,
        }
        if signal == "traces":
            report.update({"sampled_spans": sampled, "expected_sampled_spans": expected_sampled,
                           "decision_wait_s": decision_wait_s, "after_root_s": after_root_s})

        # Phase 2: freshness at a fixed rate through the ingest.
        stages.stop()
        target = rate or steady / 2
        http_port = free_port()
        sink_env = {"MAPLE_SINK_METRICS_PORT": str(metrics_port)}
        ingest = {"MAPLE_INGEST_HTTP_PORT": str(http_port), "MAPLE_INGEST_GRPC_PORT": str(free_port())}
        if signal == "traces":
            say("phase 2: preparing requests")
            bodies = bodies_for(int(target * duration / per_body) + 8, requests)
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
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        before = _histogram(metrics_url, "maple_sink_freshness_seconds", freshness_topic)
        probe = None
        if after_root_s is not None:
            # Probe traces stop decision_wait (and a margin) before the load does, so that every one of them is
            # decided while the background traffic still moves the stream clock, as it does in real use.
            probe = RootProbe(url, clickhouse.connect(settings, database=database, in_process=False),
                              f"{service}-probe", say)
            say(f"phase 2: probing with {ROOT_PROBE_PER_S:g} error traces/s for {probe_s:.0f}s (half with their root, "
                f"decision_wait_after_root_received {after_root_s}s, decision_wait {decision_wait_s}s)")
            probe.start(probe_s)
        sent = _send_at_rate(f"{url}/v1/{signal}", bodies, per_body, target, duration)
        if probe is not None:
            say(f"phase 2: waiting for {probe.outstanding()} probe traces to become queryable")
            report["root_probe"] = probe.finish(timeout_s=decision_wait_s + 60)
            probe.client.close()
        expected = seen + sent * per_body
        deadline = time.monotonic() + 120
        while _count(client, signal, service) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2 + (decision_wait_s + 2 if signal == "traces" else 0))
        after = _histogram(metrics_url, "maple_sink_freshness_seconds", freshness_topic)
        client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")  # no background merges left behind
        client.close()
        report.update({"freshness_rate_per_s": target, "freshness_requests": sent,
                       "freshness_p50_s": _quantile(before, after, 0.5),
                       "freshness_p99_s": _quantile(before, after, 0.99),
                       "freshness_note": ("sampling decision" if signal == "traces" else "ingest receipt")
                       + " to ClickHouse acknowledgement, per row batch, from the first sink's histogram "
                         "(one of the sinks when --sinks > 1)"})
        return report
    finally:
        stages.stop()


def _send_at_rate(url: str, bodies: list[bytes], per_request: int, rate: float, duration: float) -> int:
    """Send requests from 4 threads, paced to `rate` records/s in total; returns requests acknowledged.
    Each body is sent once per round through the list (traces bring as many as the run needs)."""
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

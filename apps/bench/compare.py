"""`maple bench compare`: Maple and the OpenTelemetry Collector side by side, on the same load, the same Kafka.

Each pipeline runs in its own processes, one after the other, `--runs` times in alternating order:

* **maple-python** and **maple-native**: `maple ingest` -> otlp.*.raw -> `maple worker` (with
  worker.core python, then native: the before and after of the compiled core) -> otel.* -> `maple sink`
  -> ClickHouse;
* **collector**: an OpenTelemetry Collector as the ingest (otlp receiver -> kafka exporter) and another
  as the worker (kafka receiver -> tail_sampling, spanmetrics, transform for logs -> debug exporter, or
  with `--collector-exporter` its ClickHouse exporter into the same ClickHouse, through the embedded
  host's clickhouse-go protocol when embedded).

The load is telemetrygen's (the Collector project's generator), sent over OTLP/gRPC: `--spans` in traces
of 8 and `--logs` with a JSON body, in batches of `--batch`, both at once. Tail sampling is the same on
both sides: errors, traces of 1 s or more, 10 % of the rest, decided `--decision-wait` after the first span.

What it reports per pipeline and stage: CPU seconds per million records (each process's own user+system
time over the run, less what it burns idle, from /proc), Kafka's and ClickHouse's CPU separately (when
they run on this machine), peak RSS, and for Maple the sink's freshness (ingest receipt to queryable)
p50/p99 per topic. A pipeline is done when its consumer groups have committed everything on their input
topics, then `decision_wait` and a settle time more.

The Collector and telemetrygen come from `apps/peers.py`, which builds them from the Go module proxy
into the cache once. Kafka comes from the settings (`maple kafka start`); ClickHouse too (in embedded
mode the bench starts a host on the data dir if none runs).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from apps import maple_command
from apps.bench.e2e import Stages, _histogram, _quantile
from maple import clickhouse
from maple import kafka as kafka_clients
from maple.net import free_port, http_ok
from maple.settings import Settings
from maple.topics import LOGS, METRICS, RAW_LOGS, RAW_TRACES, SPANS, SPANS_SAMPLED
from processors.sampling import DEFAULT_CONFIG

JSON_BODY = ('{"level":"info","msg":"order placed","order":{"id":4711,"items":3,"total":{"value":42.5,'
             '"currency":"EUR"}},"user":"u-1234","http":{"method":"POST","status":201}}')
SETTLE_S = 3.0
CHILD_SPANS = 7  # traces of 8 spans


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Watched:
    """A process whose CPU the run charges to a stage."""

    stage: str
    pid: int
    start_cpu: float = 0.0
    idle_per_s: float = 0.0


@dataclass
class RunResult:
    pipeline: str
    records: int
    seconds: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    freshness: dict[str, dict[str, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def per_million(self) -> dict[str, float]:
        return {stage: round(cpu / self.records * 1e6, 2) for stage, cpu in self.cpu_s.items()}


def _measure_idle(watched: list[Watched], seconds: float = 10.0) -> None:
    first = {w.pid: cpu_seconds(w.pid) for w in watched}
    time.sleep(seconds)
    for w in watched:
        w.idle_per_s = max(0.0, (cpu_seconds(w.pid) - first[w.pid]) / seconds)
        w.start_cpu = cpu_seconds(w.pid)


def _charge(watched: list[Watched], elapsed: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for w in watched:
        used = cpu_seconds(w.pid) - w.start_cpu - w.idle_per_s * elapsed
        out[w.stage] = out.get(w.stage, 0.0) + max(0.0, used)
    return out


def _lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages not yet committed by `group` on `topics` (a partition never committed counts from 0)."""
    consumer = Consumer(kafka_clients.consumer_config(bootstrap, group))
    try:
        wanted = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            wanted += [TopicPartition(topic, p) for p in meta.partitions]
        total = 0
        for tp in consumer.committed(wanted, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            total += max(0, high - max(tp.offset, low))
        return total
    finally:
        consumer.close()


def _wait_drained(bootstrap: str, groups: dict[str, list[str]], timeout: float, say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        lags = {group: _lag(bootstrap, group, topics) for group, topics in groups.items()}
        if not any(lags.values()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"not drained within {timeout:.0f}s: {lags}")
        say("  waiting for " + ", ".join(f"{g} ({n:,} behind)" for g, n in lags.items() if n))
        time.sleep(1.0)


GENERATORS = 8  # telemetrygen workers per signal: one worker's rate limiter tops out near 2,000 records/s


_COUNTER = "maple-compare-count"  # the group of the clients that count records (they never commit)


def _ends(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer(kafka_clients.consumer_config(bootstrap, _COUNTER))
    try:
        out = {}
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return out
    finally:
        consumer.close()


def _received(bootstrap: str, start: dict[tuple[str, int], int], end: dict[tuple[str, int], int]) -> tuple[int, int]:
    """(spans, logs) in the OTLP requests written to the raw topics between two sets of end offsets: what
    the pipeline was given (telemetrygen's SDK drops records when the receiver falls behind)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    consumer = Consumer(kafka_clients.consumer_config(bootstrap, _COUNTER))
    spans = logs = 0
    try:
        wanted = {key: (start.get(key, 0), stop) for key, stop in end.items() if stop > start.get(key, 0)}
        consumer.assign([TopicPartition(t, p, a) for (t, p), (a, _) in wanted.items()])
        remaining = sum(b - a for a, b in wanted.values())
        deadline = time.monotonic() + 120
        while remaining > 0 and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=1.0):
                if message.error():
                    continue
                key = (str(message.topic()), int(message.partition() or 0))
                if key not in wanted or int(message.offset() or 0) >= wanted[key][1]:
                    continue
                remaining -= 1
                value = message.value() or b""
                if "spans" in key[0] or "traces" in key[0]:
                    request = ExportTraceServiceRequest.FromString(value)
                    spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
                else:
                    logs_request = ExportLogsServiceRequest.FromString(value)
                    logs += sum(len(sl.log_records) for rl in logs_request.resource_logs for sl in rl.scope_logs)
        return spans, logs
    finally:
        consumer.close()


def _telemetrygen(binary: Path, endpoint: str, service: str, spans: int, logs: int, batch: int,
                  rate: float) -> list[subprocess.Popen[bytes]]:
    """telemetrygen for traces (`spans` in traces of 8) and logs at once, each at `rate` records/s in total,
    spread over GENERATORS workers (its counts and rates are per worker; every span waits for the limiter)."""
    common = ["--otlp-endpoint", endpoint, "--otlp-insecure", "--service", service, "--batch-size", str(batch),
              "--workers", str(GENERATORS), "--rate", str(rate / GENERATORS)]
    traces = spans // (CHILD_SPANS + 1) // GENERATORS
    procs = []
    if traces:
        procs.append(subprocess.Popen([str(binary), "traces", "--traces", str(traces), "--child-spans",
                                       str(CHILD_SPANS), *common], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    if logs:
        procs.append(subprocess.Popen([str(binary), "logs", "--logs", str(logs // GENERATORS), "--body", JSON_BODY,
                                       *common], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    return procs


def _sent(spans: int, logs: int) -> int:
    """Records the generators send for `spans` and `logs` (whole traces, an equal share per worker)."""
    return spans // (CHILD_SPANS + 1) // GENERATORS * GENERATORS * (CHILD_SPANS + 1) + logs // GENERATORS * GENERATORS


def _finish(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"telemetrygen failed (exit {proc.returncode}): {err.decode()[-2000:]}")


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port}") from None
            time.sleep(0.3)


def _services(settings: Settings) -> list[Watched]:
    """The shared services on this machine: the local Kafka broker(s) and the embedded ClickHouse host."""
    out = []
    if settings.local_kafka:
        from apps import localkafka

        out += [Watched("kafka", int(row["pid"])) for row in localkafka.status(settings) if row["pid"]]  # type: ignore[call-overload]
    host = clickhouse.running_host(settings)
    if host is not None:
        out.append(Watched("clickhouse", int(host["pid"])))
    return out


# -- Maple ------------------------------------------------------------------------------------------------


def run_maple(settings: Settings, core: str, *, spans: int, logs: int, batch: int, rate: float,
              decision_wait_s: float, telemetrygen: Path, say: Callable[[str], None], workers: int = 1) -> RunResult:
    tag = uuid.uuid4().hex[:8]
    bootstrap = kafka_clients.bootstrap_servers(settings)
    database = f"bench_{tag}"
    grpc_port, http_port, sink_port = free_port(), free_port(), free_port()
    config = Path(tempfile.mkdtemp(prefix="maple-compare-")) / "sampling.json"
    config.write_text(json.dumps({"tail_sampling": {**DEFAULT_CONFIG, "decision_wait": f"{decision_wait_s}s"}}))
    env = {**os.environ, "MAPLE_KAFKA_BOOTSTRAP": bootstrap, "MAPLE_CLICKHOUSE_DATABASE": database,
           "MAPLE_WORKER_GROUP": f"cmp-worker-{tag}", "MAPLE_SINK_GROUP": f"cmp-sink-{tag}",
           "MAPLE_WORKER_METRICS_PORT": "0", "MAPLE_SINK_METRICS_PORT": str(sink_port),
           "MAPLE_WORKER_SIGNALS": "logs,traces", "MAPLE_WORKER_CORE": core,
           "MAPLE_TRACES_SAMPLING_CONFIG": str(config), "MAPLE_INGEST_GRPC_PORT": str(grpc_port),
           "MAPLE_INGEST_HTTP_PORT": str(http_port)}
    worker_topics = [RAW_LOGS.name, RAW_TRACES.name]
    sink_topics = [LOGS.name, METRICS.name, SPANS_SAMPLED.name]
    kafka_clients.ensure_topics(kafka_clients.admin_client(bootstrap), settings.kafka.partitions,
                                settings.kafka.replication_factor)
    kafka_clients.start_group_at_end(bootstrap, env["MAPLE_WORKER_GROUP"], [*worker_topics, SPANS.name])
    kafka_clients.start_group_at_end(bootstrap, env["MAPLE_SINK_GROUP"], sink_topics)
    stages = Stages(env)
    try:
        stages.ensure_clickhouse(settings, say)
        subprocess.run(maple_command("schema", "apply"), env=env, check=True, stdout=subprocess.DEVNULL)
        ingest, sink = stages.start("ingest"), stages.start("sink")
        worker_procs = [stages.start("worker") for _ in range(workers)]
        worker = worker_procs[0]
        deadline = time.monotonic() + 120
        ready = (f"http://127.0.0.1:{http_port}/readyz", f"http://127.0.0.1:{sink_port}/metrics")
        while not all(http_ok(url) for url in ready):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"maple ({core}) did not come up")
            time.sleep(0.5)
        time.sleep(8 + 4 * (workers - 1))  # the groups settle (a rebalance per extra worker)
        watched = [Watched("ingest", ingest.pid), *(Watched("worker", w.pid) for w in worker_procs),
                   Watched("sink", sink.pid), *_services(settings)]
        _measure_idle(watched)
        metrics_url = f"http://127.0.0.1:{sink_port}/metrics"
        before = {t: _histogram(metrics_url, "maple_sink_freshness_seconds", t) for t in sink_topics}
        say(f"maple-{core}: sending {spans:,} spans and {logs:,} logs")
        raw_start = _ends(bootstrap, worker_topics)
        started = time.monotonic()
        _finish(_telemetrygen(telemetrygen, f"127.0.0.1:{grpc_port}", f"bench-{tag}", spans, logs, batch, rate),
                timeout=600)
        _wait_drained(bootstrap, {env["MAPLE_WORKER_GROUP"]: worker_topics}, 600, say)
        time.sleep(decision_wait_s + 1)  # the sampler decides the last traces, then the sink must drain
        _wait_drained(bootstrap, {env["MAPLE_SINK_GROUP"]: sink_topics}, 600, say)
        time.sleep(SETTLE_S)
        elapsed = time.monotonic() - started
        spans_sent, logs_sent = _received(bootstrap, raw_start, _ends(bootstrap, worker_topics))
        sent = spans_sent + logs_sent
        result = RunResult(f"maple-{core}" + (f"-{workers}w" if workers > 1 else ""), sent, elapsed,
                           _charge(watched, elapsed),
                           {w.stage: round(peak_rss_mb(w.pid), 1) for w in watched[:2 + workers]})
        after = {t: _histogram(metrics_url, "maple_sink_freshness_seconds", t) for t in sink_topics}
        for topic in sink_topics:
            result.freshness[topic] = {q: (round(v, 3) if (v := _quantile(before[topic], after[topic], p)) is not None
                                           else None) for q, p in (("p50", 0.5), ("p99", 0.99))}
        client = clickhouse.connect(settings, database=database, in_process=False)
        try:
            where = f"ServiceName = 'bench-{tag}'"
            rows = client.query(f"SELECT (SELECT count() FROM otel_logs WHERE {where}), (SELECT sum(Value) FROM "
                                f"otel_metrics_sum WHERE MetricName = 'traces.span.metrics.calls' AND {where}), "
                                f"(SELECT count() FROM otel_traces WHERE {where})").result_rows[0]
            logs_in, spans_in, sampled = int(rows[0]), int(rows[1] or 0), int(rows[2])
            result.notes.append(f"in ClickHouse: {logs_in:,} logs, {spans_in:,} spans counted by RED, "
                                f"{sampled:,} sampled spans")
            if logs_in != logs_sent or spans_in != spans_sent:
                raise RuntimeError(f"maple-{core}: {logs_in:,} logs and {spans_in:,} spans arrived of "
                                   f"{logs_sent:,} and {spans_sent:,} received: the run is not complete")
            client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")
        finally:
            client.close()
        return result
    finally:
        stages.stop()


# -- the Collector ----------------------------------------------------------------------------------------


def collector_configs(tag: str, bootstrap: str, grpc_port: int, decision_wait_s: float,
                      exporter: dict[str, Any] | None) -> tuple[str, str]:
    """The ingest Collector's and the worker Collector's configuration (YAML as JSON, which YAML reads)."""
    brokers = bootstrap.split(",")
    topics = {"traces": f"compare.{tag}.spans", "logs": f"compare.{tag}.logs"}
    quiet = {"telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}}}
    ingest = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}",
                                                      "max_recv_msg_size_mib": 64}}}},
        "exporters": {"kafka": {"brokers": brokers, "traces": {"topic": topics["traces"], "encoding": "otlp_proto"},
                                "logs": {"topic": topics["logs"], "encoding": "otlp_proto"},
                                "producer": {"compression": "zstd", "required_acks": -1,
                                             "max_message_bytes": 16 * 1024 * 1024},
                                "partition_traces_by_id": True}},
        "service": {**quiet, "pipelines": {s: {"receivers": ["otlp"], "exporters": ["kafka"]} for s in topics}},
    }
    sink: dict[str, Any] = exporter or {"debug": {"verbosity": "basic"}}
    sink_name = next(iter(sink))
    level_rules = [("FATAL", "fatal"), ("ERROR", "error"), ("WARN", "warn(ing)?"), ("INFO", "info"),
                   ("DEBUG", "debug"), ("TRACE", "trace")]
    severity = [f'set(log.severity_number, SEVERITY_NUMBER_{name}) where log.severity_number == '
                f'SEVERITY_NUMBER_UNSPECIFIED and IsMatch(log.body, "(?i)\\\\b{pattern}\\\\b")'
                for name, pattern in level_rules]
    worker = {
        "receivers": {"kafka": {"brokers": brokers, "group_id": f"compare-collector-{tag}",
                                "initial_offset": "earliest",
                                "traces": {"topics": [topics["traces"]], "encoding": "otlp_proto"},
                                "logs": {"topics": [topics["logs"]], "encoding": "otlp_proto"},
                                "message_marking": {"after": True}}},
        "connectors": {"spanmetrics": {"metrics_flush_interval": "1s"}},
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_mib": 1024},
            "batch": {},
            "tail_sampling": {"decision_wait": f"{decision_wait_s}s", "num_traces": 100000, "policies": [
                {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
                {"name": "slow", "type": "latency", "latency": {"threshold_ms": 1000}},
                {"name": "share", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}}]},
            "transform": {"error_mode": "ignore", "log_statements": [{"context": "log", "statements": [
                'merge_maps(log.attributes, ParseJSON(log.body), "insert") where IsMatch(log.body, "^\\\\s*\\\\{")',
                "flatten(log.attributes, depth=4)", *severity]}]},
        },
        "exporters": sink,
        "service": {**quiet, "pipelines": {
            "traces/red": {"receivers": ["kafka"], "exporters": ["spanmetrics"]},
            "traces/sampled": {"receivers": ["kafka"], "processors": ["memory_limiter", "tail_sampling", "batch"],
                               "exporters": [sink_name]},
            "metrics/red": {"receivers": ["spanmetrics"], "processors": ["batch"], "exporters": [sink_name]},
            "logs": {"receivers": ["kafka"], "processors": ["memory_limiter", "transform", "batch"],
                     "exporters": [sink_name]},
        }},
    }
    return json.dumps(ingest), json.dumps(worker)


def run_collector(settings: Settings, otelcol: Path, *, spans: int, logs: int, batch: int, rate: float,
                  decision_wait_s: float, telemetrygen: Path, exporter: bool, say: Callable[[str], None]
                  ) -> RunResult:
    tag = uuid.uuid4().hex[:8]
    bootstrap = kafka_clients.bootstrap_servers(settings)
    grpc_port = free_port()
    export_config = None
    database = f"bench_collector_{tag}"
    services = Stages(dict(os.environ))  # an embedded ClickHouse host for the exporter, when none runs
    if exporter:
        services.ensure_clickhouse(settings, say)
        if settings.clickhouse.url:
            server = clickhouse.endpoints(settings)[0]
            url, user, password = f"http://{server.host}:{server.port}", server.username, server.password
        else:
            host = clickhouse.running_host(settings)
            assert host is not None
            url, user = f"http://{host['host']}:{host['port']}", settings.clickhouse.embedded_user
            password = settings.clickhouse.embedded_password
        export_config = {"clickhouse": {"endpoint": url, "username": user, "password": password,
                                        "database": database, "create_schema": True, "timeout": "30s"}}
    ingest_config, worker_config = collector_configs(tag, bootstrap, grpc_port, decision_wait_s, export_config)
    work = Path(tempfile.mkdtemp(prefix="maple-compare-collector-"))
    (work / "ingest.yaml").write_text(ingest_config)
    (work / "worker.yaml").write_text(worker_config)
    topics = [f"compare.{tag}.spans", f"compare.{tag}.logs"]
    from confluent_kafka.admin import NewTopic

    admin = kafka_clients.admin_client(bootstrap)
    for future in admin.create_topics([NewTopic(t, settings.kafka.partitions, settings.kafka.replication_factor,
                                                config={"max.message.bytes": str(16 * 1024 * 1024)})
                                       for t in topics]).values():
        future.result(30)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        logs_out = (work / "collector.log").open("wb")
        ingest = subprocess.Popen([str(otelcol), f"--config={work / 'ingest.yaml'}"], stdout=logs_out,
                                  stderr=subprocess.STDOUT)
        worker = subprocess.Popen([str(otelcol), f"--config={work / 'worker.yaml'}"], stdout=subprocess.DEVNULL,
                                  stderr=logs_out)
        procs = [ingest, worker]
        _wait_port(grpc_port, ingest, "the Collector's OTLP receiver")
        time.sleep(8)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker Collector stopped: {(work / 'collector.log').read_text()[-3000:]}")
        watched = [Watched("ingest", ingest.pid), Watched("worker", worker.pid), *_services(settings)]
        _measure_idle(watched)
        say(f"collector: sending {spans:,} spans and {logs:,} logs")
        started = time.monotonic()
        _finish(_telemetrygen(telemetrygen, f"127.0.0.1:{grpc_port}", f"bench-{tag}", spans, logs, batch, rate),
                timeout=600)
        _wait_drained(bootstrap, {f"compare-collector-{tag}": topics}, 600, say)
        time.sleep(decision_wait_s + 1 + SETTLE_S)  # tail sampling decides on its timer, spanmetrics flushes
        elapsed = time.monotonic() - started
        cpu = _charge(watched, elapsed)
        spans_sent, logs_sent = _received(bootstrap, {}, _ends(bootstrap, topics))
        result = RunResult("collector", spans_sent + logs_sent, elapsed, cpu,
                           {w.stage: round(peak_rss_mb(w.pid), 1) for w in watched[:2]})
        result.notes.append(f"received {spans_sent:,} spans and {logs_sent:,} logs")
        if exporter:
            client = clickhouse.connect(settings, database=database, in_process=False)
            try:
                rows = client.query("SELECT (SELECT count() FROM otel_logs), (SELECT count() FROM otel_traces)"
                                    ).result_rows[0]
                result.notes.append(f"the exporter wrote {rows[0]:,} logs and {rows[1]:,} sampled spans")
            finally:
                client.close()
        result.notes.append("worker = kafka receiver + tail_sampling + spanmetrics + transform + "
                            + ("clickhouse exporter" if exporter else "debug exporter (--collector-exporter measures "
                               "its ClickHouse exporter too)"))
        return result
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        admin.delete_topics(topics)
        if exporter:
            try:
                client = clickhouse.connect(settings, in_process=False)
                client.command(f"DROP DATABASE IF EXISTS `{database}` SYNC")
                client.close()
            except Exception:  # cleaning up: the numbers are already taken
                pass
        services.stop()


# -- the whole comparison ----------------------------------------------------------------------------------


def peers() -> tuple[Path, Path]:
    """The Collector and telemetrygen, built from the Go module proxy into the cache (apps/peers.py)."""
    try:
        from apps import peers as builder
    except ImportError as exc:
        raise RuntimeError("apps/peers.py (the Collector and telemetrygen builder) is not in this checkout") from exc
    return builder.ensure("otelcol"), builder.ensure("telemetrygen")


def run(settings: Settings, *, spans: int, logs: int, batch: int, rate: float, decision_wait_s: float, runs: int,
        pipelines: tuple[str, ...], collector_exporter: bool, say: Callable[[str], None], workers: int = 1
        ) -> dict[str, Any]:
    kafka_clients.probe(kafka_clients.bootstrap_servers(settings), timeout=10)
    otelcol, telemetrygen = peers()
    results: list[RunResult] = []
    for n in range(runs):
        order = pipelines if n % 2 == 0 else tuple(reversed(pipelines))
        for pipeline in order:
            say(f"run {n + 1}/{runs}: {pipeline}")
            kw = dict(spans=spans, logs=logs, batch=batch, rate=rate, decision_wait_s=decision_wait_s,
                      telemetrygen=telemetrygen, say=say)
            if pipeline == "collector":
                results.append(run_collector(settings, otelcol, exporter=collector_exporter, **kw))  # type: ignore[arg-type]
            else:
                results.append(run_maple(settings, pipeline.removeprefix("maple-"), workers=workers,
                                         **kw))  # type: ignore[arg-type]
    return summarize(results, spans=spans, logs=logs, batch=batch, decision_wait_s=decision_wait_s)


def summarize(results: list[RunResult], **load: Any) -> dict[str, Any]:
    by_pipeline: dict[str, list[RunResult]] = {}
    for r in results:
        by_pipeline.setdefault(r.pipeline, []).append(r)
    table: dict[str, dict[str, Any]] = {}
    for pipeline, rs in by_pipeline.items():
        stages = sorted({s for r in rs for s in r.cpu_s})
        table[pipeline] = {
            "cpu_s_per_million": {s: [r.per_million().get(s) for r in rs] for s in stages},
            "median_cpu_s_per_million": {s: round(statistics.median(r.per_million().get(s, 0.0) for r in rs), 2)
                                         for s in stages},
            "peak_rss_mb": {s: [r.peak_rss_mb.get(s) for r in rs]
                            for s in sorted({k for r in rs for k in r.peak_rss_mb})},
            "freshness_s": [r.freshness for r in rs],
            "seconds": [round(r.seconds, 1) for r in rs],
            "notes": sorted({n for r in rs for n in r.notes}),
        }
    ratios: dict[str, dict[str, float]] = {}
    collector = table.get("collector", {}).get("median_cpu_s_per_million", {})
    for pipeline, row in table.items():
        if pipeline == "collector" or not collector:
            continue
        mine = row["median_cpu_s_per_million"]
        ratios[pipeline] = {s: round(mine[s] / collector[s], 2) for s in ("ingest", "worker") if collector.get(s)}
        both = collector.get("worker")
        if both:
            ratios[pipeline]["worker+sink vs worker"] = round((mine.get("worker", 0) + mine.get("sink", 0)) / both, 2)
    per_core = {p: round(1e6 / row["median_cpu_s_per_million"]["worker"])
                for p, row in table.items() if row["median_cpu_s_per_million"].get("worker")}
    return {"load": load, "pipelines": table, "ratios_to_collector": ratios,
            "worker_records_per_cpu_second": per_core,
            "machine": f"{os.cpu_count()} cores, shared; CPU is each process's own (user+system) less its idle rate"}


def render(report: dict[str, Any]) -> str:
    lines = []
    load = report["load"]
    lines.append(f"load: {load['spans']:,} spans (traces of 8) + {load['logs']:,} logs (JSON body), batches of "
                 f"{load['batch']}, decision_wait {load['decision_wait_s']} s; {report['machine']}")
    stages = sorted({s for row in report["pipelines"].values() for s in row["median_cpu_s_per_million"]})
    lines.append("CPU seconds per million records (each run; median):")
    lines.append(f"  {'pipeline':14s} " + " ".join(f"{s:>22s}" for s in stages))
    for pipeline, row in report["pipelines"].items():
        cells = []
        for s in stages:
            runs = row["cpu_s_per_million"].get(s)
            text = "-"
            if runs:
                text = " / ".join(f"{v:.2f}" for v in runs if v is not None)
                text += f" ({row['median_cpu_s_per_million'][s]})"
            cells.append(f"{text:>22s}")
        lines.append(f"  {pipeline:14s} " + " ".join(cells))
    lines.append("peak RSS MB: " + "; ".join(f"{p} {row['peak_rss_mb']}" for p, row in report["pipelines"].items()))
    for pipeline, row in report["pipelines"].items():
        if any(row["freshness_s"]):
            lines.append(f"freshness {pipeline}: {row['freshness_s']}")
        for note in row["notes"]:
            lines.append(f"note {pipeline}: {note}")
    lines.append(f"ratios to the Collector (median): {report['ratios_to_collector']}")
    lines.append(f"worker records per CPU second (records/s per core): {report.get('worker_records_per_cpu_second')}")
    return "\n".join(lines)


"""`maple worker`: the Faust app whose agents turn raw OTLP topics into row-batch topics.

Agents: logs and metrics (raw -> rows), traces (raw -> spans re-keyed by TraceId on otel.spans, plus RED
points on otel.metrics) and the tail sampler (otel.spans -> otel.spans.sampled, topologies/sampler.py).
One Faust event is one raw record, i.e. one OTLP export request (a batch of log records, data points or
spans): Faust's per-event cost is paid per batch, never per row. Each raw agent:

1. reads its raw topic with manual acks (`stream.noack()`),
2. hands the record to the pure processors (topologies/batches.py -> processors/),
3. produces the row batches with Maple's idempotent producer, to the output partition matching the
   source partition, with `enable.gapless.guarantee` so a failed batch can never be followed by a
   delivered later one,
4. acks the event only once Kafka acknowledged its batches. Acks stay in source order; up to
   `worker.inflight_batches` records are processed ahead of the acknowledgements.

Faust commits acked offsets. A crash or rebalance re-processes the records after the last commit; the
sink drops the batches it already has (docs/exactly-once.md). If the producer fails for good the process
exits: it must never ack past a batch that was not written.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, Histogram

from maple import kafka as kafka_clients
from maple import metrics as prom
from maple.consumer import Cluster
from maple.deadletter import worker_letter
from maple.exits import stop_for_safety
from maple.lag import LagGauges, measure
from maple.native import BUILD_HINT
from maple.native import core as native_core
from maple.producer import AsyncProducer, Record
from maple.ready import clear, mark_ready
from maple.settings import Settings, SettingsError
from maple.topics import (
    HEADER_FORMAT,
    HEADER_ROWS,
    HEADER_TENANT,
    LOGS,
    METRICS,
    RAW_LOGS,
    RAW_METRICS,
    RAW_TRACES,
    SPANS,
    SPANS_SAMPLED,
    SourcePosition,
    Topic,
)
from processors.logs import LogOptions
from topologies import sampler
from topologies.acks import InOrderAcks
from topologies.batches import Output, RawRecord, log_batches, metric_batches, trace_batches

log = logging.getLogger(__name__)

Transform = Callable[[RawRecord], Output]


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter("maple_worker_records", "Raw records processed", ["signal"], registry=r)
        self.rows = Counter("maple_worker_rows", "Rows produced to processed topics", ["signal"], registry=r)
        self.dead_letters = Counter("maple_worker_dead_letters", "Dead letters written: raw records that could not "
                                    "be decoded, and single items (log records, spans, data points) that could "
                                    "not be made rows",
                                    ["signal"], registry=r)
        self.process_seconds = Histogram("maple_worker_process_seconds", "Processing time per raw record",
                                         ["signal"], buckets=prom.LATENCY_BUCKETS, registry=r)


def _fatal(reason: str) -> None:
    stop_for_safety(f"the worker acks no further records: {reason}")


def choose_core(choice: str) -> Any:
    """The compiled core to transform with (worker.core), or None for the Python processors."""
    if choice == "python":
        return None
    if native_core is None:
        if choice == "native":
            raise SettingsError(f"worker.core (MAPLE_WORKER_CORE) is 'native' but the compiled core maple_native "
                                f"is not installed: {BUILD_HINT}")
        log.warning("the compiled core (maple_native) is not installed: transforming with the Python processors, "
                    "several times slower per record (%s)", BUILD_HINT)
        return None
    return native_core


def build_app(settings: Settings) -> faust.App:
    bootstrap = kafka_clients.bootstrap_servers(settings)
    cfg = settings.worker
    faust_dir = settings.data_path / "faust" / cfg.group
    faust_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = faust.App(
        cfg.group,
        broker=[f"kafka://{server}" for server in bootstrap.split(",")],
        broker_credentials=kafka_clients.faust_credentials(settings),
        value_serializer="raw", key_serializer="raw",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        consumer_max_fetch_size=8 * 1024 * 1024,
        web_enabled=False, store="memory://",
        # Faust makes a data dir even with in-memory tables: under Maple's, not `<group>-data` in the cwd.
        datadir=str(faust_dir),
        stream_buffer_maxsize=4096,
        broker_session_timeout=cfg.session_timeout_s,
        broker_heartbeat_interval=max(1.0, cfg.session_timeout_s / 4),
        # The sampler holds events until no trace straddles them; a rebalance must not wait for those acks
        # (the next owner redoes them, and every consumer downstream drops the copies).
        stream_wait_empty=False,
    )
    metrics = WorkerMetrics()
    # One admin/probe pair for the process's lifetime (lag gauges, the sampler's progress checks): a client
    # made per measurement and dropped with a request in flight aborts the process when the broker returns.
    cluster = Cluster(bootstrap, timeout=10)
    producer = AsyncProducer(bootstrap, timeout_s=300.0, on_fatal=lambda err: _fatal(f"producer: {err.str()}"),
                             **{"enable.gapless.guarantee": True, "linger.ms": 10})
    kafka_clients.create_topics(settings)
    partitions = {t.name: len(cluster.partitions(t.name)) for t in (RAW_TRACES, LOGS, METRICS, SPANS, SPANS_SAMPLED)}
    red_options = sampler.red_options(settings)
    sampling = sampler.sampling_config(settings, partitions[SPANS.name]) if "traces" in cfg.signals else None

    # Served now rather than from a Faust task, which would log its line after the worker said it is ready.
    prom.serve(metrics.registry, cfg.metrics_port, "worker")

    if cfg.metrics_port:
        lag_gauges = LagGauges(metrics.registry)
        raw_topic = {"logs": RAW_LOGS, "metrics": RAW_METRICS, "traces": RAW_TRACES}
        stage_topics = [raw_topic[s].name for s in cfg.signals] + ([SPANS.name] if "traces" in cfg.signals else [])

        @app.timer(interval=cfg.lag_interval_s)
        async def export_lag() -> None:
            """The group's own lag on the topics it reads, off the event loop (never per event)."""
            try:
                rows = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: measure(cluster, cfg.group, stage_topics))
                lag_gauges.publish(rows)
            except Exception as exc:  # metrics must never stop the data path
                log.warning("consumer lag not measured: %s", exc)

    options = LogOptions(json_max_depth=cfg.json_max_depth, json_max_body_bytes=cfg.json_max_body_bytes,
                         prefer_body_level=cfg.severity_from_body)
    core = choose_core(cfg.core)
    log.info("transforming with %s", "the compiled core (Native row batches)" if core is not None
             else "the Python processors (JSONColumns row batches)")
    transforms: dict[str, tuple[Topic, Transform]] = {
        "logs": (RAW_LOGS, lambda raw: log_batches(raw, partitions[LOGS.name], options, core)),
        "metrics": (RAW_METRICS, lambda raw: metric_batches(raw, partitions[METRICS.name], core)),
        "traces": (RAW_TRACES, lambda raw: trace_batches(raw, partitions[SPANS.name], partitions[METRICS.name],
                                                         red_options, core)),
    }
    for signal in cfg.signals:
        source, transform = transforms[signal]
        _add_agent(app, signal, source, transform, producer, metrics, cfg.inflight_batches)
    if sampling is not None:
        def bad_span_batch(message: Any, error: Exception) -> Record:
            metrics.dead_letters.labels("spans").inc()
            log.warning("%s[%d]@%d is not a span batch, dead-lettered: %s", message.topic, message.partition,
                        message.offset, error)
            headers = {k: bytes(v) for k, v in (message.headers or []) if v is not None}
            return worker_letter(message.value or b"", SourcePosition(message.topic, message.partition,
                                                                       message.offset), error, cfg.group,
                                 headers.get(HEADER_TENANT), headers.get(HEADER_FORMAT))

        sampler.add_sampler_agent(app, settings, sampling, producer, cluster, metrics.registry,
                                  partitions[RAW_TRACES.name],
                                  partitions[SPANS.name], partitions[SPANS_SAMPLED.name], bad_span_batch, _fatal,
                                  core)
    return app


def _add_agent(app: faust.App, signal: str, source: Topic, transform: Transform, producer: AsyncProducer,
               metrics: WorkerMetrics, window: int) -> None:
    topic = app.topic(source.name, value_serializer="raw", key_serializer="raw")
    records_counter, rows_counter = metrics.records.labels(signal), metrics.rows.labels(signal)
    dead_counter, seconds = metrics.dead_letters.labels(signal), metrics.process_seconds.labels(signal)

    async def agent(stream: faust.StreamT) -> None:
        acks = InOrderAcks(signal, window, _fatal)
        producer.start(asyncio.get_running_loop())
        acks.start()
        try:
            async for event in stream.noack().events():  # type: ignore[attr-defined]  # Stream has it
                message = event.message
                raw = RawRecord(event.value or b"", message.topic, message.partition, message.offset,
                                {k: bytes(v) for k, v in (message.headers or []) if v is not None},
                                int((message.timestamp or 0) * 1000))
                with seconds.time():
                    position = SourcePosition(raw.topic, raw.partition, raw.offset)
                    tenant = raw.headers.get(HEADER_TENANT)  # dead letters keep it for a redrive
                    try:
                        output = transform(raw)
                        records = output.records
                        if output.refused:  # single items: the rest of the request went on
                            log.warning("%s record %s/%d@%d: %d item(s) could not be made rows, dead-lettered: %s",
                                        signal, raw.topic, raw.partition, raw.offset, len(output.refused),
                                        output.refused[0].reason)
                            dead_counter.inc(len(output.refused))
                            records = records + [worker_letter(item.value, position, item.reason, app.conf.id, tenant)
                                                 for item in output.refused]
                    except Exception as exc:  # not an OTLP request: keep it, with the reason, and go on
                        log.warning("%s record %s/%d@%d is not decodable, dead-lettered: %s", signal,
                                    raw.topic, raw.partition, raw.offset, exc)
                        dead_counter.inc()
                        records = [worker_letter(raw.value, position, exc, app.conf.id, tenant)]
                records_counter.inc()
                rows_counter.inc(sum(int(dict(r.headers).get(HEADER_ROWS) or 0) for r in records))
                await acks.put(producer.produce_all(records), partial(stream.ack, event),
                               f"{message.tp.topic}[{message.tp.partition}]@{message.offset}")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Faust would restart the agent and carry on after this record, writing later batches before
            # this one: a restart from the last commit is the only safe way on.
            _fatal(f"{signal} agent failed: {type(exc).__name__}: {exc}")
        finally:
            acks.stop()

    app.agent(topic, name=f"maple.{signal}")(agent)


# The sampler keeps seconds of spans alive (hundreds of thousands of objects). With CPython's default
# thresholds every young collection soon walks them all: decoding a span batch measured 31 us/span instead
# of 2.3 us with 780k live objects. Collections stay, much less often; little here forms reference cycles.
GC_THRESHOLDS = (100_000, 50, 100)


class Worker(faust.Worker):
    """Faust's worker, logging through Maple's handler in Maple's format (maple/log.py) instead of its own,
    printing nothing itself, and touching `ready_file` once the first rebalance and recovery are done, i.e.
    when its agents consume (how `maple up` knows the worker is ready)."""

    def __init__(self, app: faust.App, ready_file: Path | None = None) -> None:
        super().__init__(app, quiet=True, redirect_stdouts=False, override_logging=False)
        self.spinner = None  # it writes terminal control characters to stdout even when that is no terminal
        self.ready_file = ready_file

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        if self.ready_file is not None and not self._shutdown_immediately:
            log.info("worker %s ready: agents %s", self.app.conf.id, ", ".join(sorted(self.app.agents)))
            mark_ready(self.ready_file)


def run(settings: Settings, ready_file: Path | None = None) -> None:
    app = build_app(settings)
    gc.freeze()  # start-up objects (Faust, protobuf, the app) are never garbage: keep them out of every scan
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        Worker(app, ready_file).execute_from_commandline()
    finally:
        if ready_file is not None:
            clear(ready_file)

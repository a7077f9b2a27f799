"""`maple sink`: consume the processed topics and write them to ClickHouse, exactly once.

For each input partition the loop gathers row batches (sinks/batch.py) until the rows, bytes or age limit,
then:

1. commits the batch's *intent*: the offset stays at the batch's first message, the metadata names the
   batch's last offset and the watermarks it started from;
2. inserts each table's blocks with a token derived from that offset range (sinks/writer.py), retrying
   until ClickHouse acknowledges; rows ClickHouse rejects for good go to the dead-letter topic;
3. commits the offset after the batch, with the new watermarks.

A kill at any point leaves either no intent (the batch is re-read and re-gathered: it was never inserted)
or an intent (the same range is rebuilt and re-inserted under the same tokens: ClickHouse drops what
landed). A rebalance moves that state with the partition, because it lives in the group's commits.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from maple import blocks, clickhouse, ready, tenants
from maple import kafka as kafka_clients
from maple import metrics as prom
from maple.consumer import Commit, CommitRefused, commit_one, headers_of, member_commits
from maple.deadletter import sink_letter
from maple.lag import SinkLag
from maple.schema import TENANT_COLUMN
from maple.settings import Settings, SinkSettings
from maple.topics import (
    DEFAULT_TENANT,
    HEADER_DECIDED_NS,
    HEADER_FORMAT,
    HEADER_RECEIVED_NS,
    HEADER_ROWS,
    HEADER_SOURCE,
    HEADER_TABLE,
    HEADER_TENANT,
    LOGS,
    METRICS,
    SPANS_SAMPLED,
    SourcePosition,
    Topic,
)
from sinks import shards
from sinks.batch import Limits, PartitionBatch, RowBatch, decode_epoch, decode_state
from sinks.writer import Rejected

log = logging.getLogger(__name__)

SINK_TOPICS: tuple[Topic, ...] = (LOGS, METRICS, SPANS_SAMPLED)
DEAD_LETTER_MAX_BYTES = 4 * 1024 * 1024  # well under the topic's 16 MiB record limit
# Fine enough for p50/p99 by interpolation (`maple bench e2e` reads them).
FRESHNESS_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5,
                     4.0, 4.5, 5.0, 6.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class SinkMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rows = Counter("maple_sink_rows", "Rows inserted into ClickHouse", ["table"], registry=r)
        self.batches = Counter("maple_sink_batches", "Partition batches committed", ["topic"], registry=r)
        self.insert_seconds = Histogram("maple_sink_insert_seconds", "ClickHouse insert latency per table batch",
                                        ["table"], buckets=prom.LATENCY_BUCKETS, registry=r)
        self.retries = Counter("maple_sink_retries", "Insert attempts that failed and were retried",
                               ["reason", "table"], registry=r)
        self.dead_letter_rows = Counter("maple_sink_dead_letter_rows", "Rows ClickHouse rejected for good",
                                        ["table"], registry=r)
        self.duplicates = Counter("maple_sink_duplicate_batches", "Row batches dropped as copies a worker "
                                  "emitted again", ["topic"], registry=r)
        self.freshness = Histogram("maple_sink_freshness_seconds", "Ingest receipt (for sampled spans: the "
                                   "sampling decision) to ClickHouse acknowledgement (queryable), per row batch",
                                   ["topic"], buckets=FRESHNESS_BUCKETS, registry=r)
        self.buffered_rows = Gauge("maple_sink_buffered_rows", "Rows gathered and not yet inserted", registry=r)


def _row_batch(message: Any) -> RowBatch:
    """The message as a row batch; raises ValueError (with the reason) when it does not follow the contract."""
    headers = headers_of(message)
    table = headers.get(HEADER_TABLE, b"").decode(errors="replace")
    if not table or not message.value():
        raise ValueError(f"no {HEADER_TABLE} header or no value")
    try:
        source = headers.get(HEADER_SOURCE)
        received = headers.get(HEADER_DECIDED_NS) or headers.get(HEADER_RECEIVED_NS)
        rows = int(headers.get(HEADER_ROWS, b"0"))
        fmt = blocks.format_of(headers.get(HEADER_FORMAT))
        tenant = tenants.check(headers.get(HEADER_TENANT, DEFAULT_TENANT.encode()).decode())
        # The tenant column comes from the batch's header (the ingest key's tenant), never from the rows.
        value = tenants.stamp(message.value(), tenant, rows, TENANT_COLUMN, fmt)
        return RowBatch(offset=message.offset(), table=table, rows=rows, value=value,
                        source=SourcePosition.parse(source) if source else None,
                        received_ns=int(received) if received else None, fmt=fmt)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed row batch headers: {exc}") from exc


def batch_limits(cfg: SinkSettings, topics: list[str]) -> dict[str, Limits]:
    """When a partition's buffered rows are inserted, per topic. Sampled spans are decided traces a user may be
    waiting for (an error) and are few: they wait sink.sampled_flush_interval_s, the bulk topics flush_interval_s."""
    return {topic: Limits(cfg.batch_rows, cfg.batch_bytes, cfg.sampled_flush_interval_s if topic == SPANS_SAMPLED.name
                          else cfg.flush_interval_s) for topic in topics}


class Sink:
    def __init__(self, settings: Settings, topics: tuple[Topic, ...] = SINK_TOPICS,
                 ready_file: Path | None = None) -> None:
        self.settings = settings
        self.ready_file = ready_file  # created once the group gave this sink its partitions (maple/ready.py)
        cfg = settings.sink
        self.group = cfg.group
        self.topics = [t.name for t in topics]
        self.limits = batch_limits(cfg, self.topics)
        self.metrics = SinkMetrics()
        self.lag = SinkLag(self.metrics.registry, self.group)
        self.stopping = threading.Event()
        bootstrap = kafka_clients.bootstrap_servers(settings)
        self.consumer = Consumer(kafka_clients.consumer_config(bootstrap, self.group, **{
            # Inserts retry until ClickHouse answers; stay in the group meanwhile (30 min).
            "max.poll.interval.ms": 30 * 60 * 1000,
            "session.timeout.ms": int(cfg.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(cfg.session_timeout_s * 1000 / 4),
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }))
        self.dead_letters = Producer(kafka_clients.producer_config(bootstrap))
        # One server (or the embedded engine): one Inserter. Several shards: split by sharding key, one
        # insert per shard (sinks/shards.py, docs/cluster.md).
        self.inserter = shards.writer(settings, backoff_max_s=cfg.retry_backoff_max_s,
                                      on_retry=lambda reason, table: self.metrics.retries.labels(reason, table).inc(),
                                      sleep=self._sleep)
        self.batches: dict[tuple[str, int], PartitionBatch] = {}
        # Partitions re-read from their commit while messages fetched before the seek are still in hand.
        self._stale: set[tuple[str, int]] = set()
        self._dead_letter_errors: list[str] = []
        self._dead_letters_pending = 0

    def _sleep(self, seconds: float) -> None:
        # Waiting out ClickHouse: a stop request does not abandon the batch (it is not committed; the next
        # owner redoes it), so stopping here is safe and prompt.
        if self.stopping.wait(seconds):
            raise SystemExit(0)

    # -- partition ownership -------------------------------------------------------------------------

    @staticmethod
    def _batch_at(key: tuple[str, int], commit: Commit | None) -> PartitionBatch:
        """The batch that starts at the partition's commit, with the state committed beside it."""
        metadata = commit.metadata if commit is not None else ""
        wm, end = decode_state(metadata)
        start = commit.offset if commit is not None else -1
        if end is not None:
            log.info("%s[%d]: resuming an interrupted batch %d-%d", key[0], key[1], start, end)
        return PartitionBatch(key[0], key[1], start, wm, end, epoch=decode_epoch(metadata))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for key, commit in member_commits(consumer, [(tp.topic, tp.partition) for tp in partitions]).items():
            self.batches[key] = self._batch_at(key, commit)
        log.info("assigned %s", _ranges(partitions) or "nothing")
        if self.ready_file is not None and not ready.is_ready(self.ready_file, os.getpid()):
            ready.mark_ready(self.ready_file)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.batches.pop((tp.topic, tp.partition), None)  # uncommitted: the next owner re-reads it

    # -- the loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        prom.serve(self.metrics.registry, self.settings.sink.metrics_port, "sink")
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        log.info("sink %s consuming %s into ClickHouse %s", self.group, ", ".join(self.topics),
                 clickhouse.describe_engine(self.settings))
        try:
            while not self.stopping.is_set():
                self._stale.clear()  # a seek purged the partition's prefetched messages: new ones are current
                for message in self.consumer.consume(num_messages=2000, timeout=0.2):
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer: %s", error)
                        continue
                    self._take(message)
                now = time.monotonic()
                for key, batch in list(self.batches.items()):
                    if batch.ready(now, self.limits[key[0]]):
                        self._flush(key)
                self.metrics.buffered_rows.set(sum(b.rows for b in self.batches.values()))
                self.lag.update(self.consumer, self.batches)  # every few seconds, not per message
                self.dead_letters.poll(0)  # delivery reports and librdkafka's log lines of the idle DLQ producer
        except SystemExit:
            pass
        finally:
            if self.ready_file is not None:
                ready.clear(self.ready_file)
            self.consumer.close()
            self.dead_letters.flush(10)

    def _take(self, message: Any) -> None:
        key = (message.topic(), message.partition())
        batch = self.batches.get(key)
        if batch is None or key in self._stale:
            # Revoked in between (the next owner has it), or fetched before a seek back to the commit.
            return
        if batch.start < 0:
            batch.start = message.offset()
        if not batch.belongs(message.offset()):
            self._flush(key)
            batch = self.batches.get(key)
            if batch is None or key in self._stale:
                return
        now = time.monotonic()
        try:
            row_batch = _row_batch(message)
        except ValueError as exc:
            log.warning("%s[%d]@%d is not a row batch (%s); dead-lettered", key[0], key[1], message.offset(), exc)
            batch.skip(message.offset(), now)
            self._dead_letter(Rejected("", message.value() or b"", "", str(exc), None), batch)
            return
        if not batch.add(row_batch, now):
            self.metrics.duplicates.labels(key[0]).inc()

    def _commit(self, batch: PartitionBatch, offset: int, metadata: str) -> None:
        commit_one(self.consumer, batch.topic, batch.partition, offset, metadata)

    def _flush(self, key: tuple[str, int]) -> None:
        batch = self.batches[key]
        topic, partition = key
        try:
            inserts = batch.inserts()
            if inserts:
                self._commit(batch, batch.start, batch.intent())
                for (table, fmt), data in sorted(inserts.items()):
                    started = time.perf_counter()
                    rejected = self.inserter.insert(table, data, batch.token(self.group, table, fmt), fmt)
                    self.metrics.insert_seconds.labels(table).observe(time.perf_counter() - started)
                    for item in rejected:
                        self._dead_letter(item, batch)
                    self.metrics.rows.labels(table).inc(sum(b.rows for b in batch.taken
                                                            if b.table == table and b.fmt == fmt))
            self._settle_dead_letters()
            self._commit(batch, batch.end + 1, batch.done())
        except CommitRefused as exc:
            log.warning("%s[%d]: commit refused (%s); re-reading from the last commit", topic, partition, exc)
            self._reset(key)
            return
        now_ns = time.time_ns()
        freshness = self.metrics.freshness.labels(topic)
        for row_batch in batch.taken:
            if row_batch.received_ns:
                freshness.observe(max(0.0, (now_ns - row_batch.received_ns) / 1e9))
        self.metrics.batches.labels(topic).inc()
        self.batches[key] = batch.following()

    def _reset(self, key: tuple[str, int]) -> None:
        """Forget the partition's batch and read it again from its committed state, if it is still ours.

        Messages of that partition already fetched are stale from here on (see `_take`)."""
        self.batches.pop(key, None)
        self._stale.add(key)
        for attempt in range(10):
            if TopicPartition(*key) not in self.consumer.assignment():
                log.info("%s[%d] is no longer assigned here", *key)  # the rebalance callbacks take it from here
                return
            try:
                commit = member_commits(self.consumer, [key])[key]
                self.consumer.seek(TopicPartition(key[0], key[1], commit.offset if commit is not None else 0))
                self.batches[key] = self._batch_at(key, commit)
                return
            except KafkaException as exc:
                log.warning("%s[%d]: reading its commit failed (%s), retry %d", key[0], key[1], exc, attempt + 1)
                self._sleep(min(2 ** attempt, 30))
        # Still assigned but unreadable: restart rather than sit on the partition.
        raise RuntimeError(f"{key[0]}[{key[1]}]: could not read its committed offset")

    def _dead_letter(self, item: Rejected, batch: PartitionBatch) -> None:
        start = batch.start if batch.start >= 0 else batch.last_offset
        source_range = f"{batch.topic}/{batch.partition}/{start}-{batch.last_offset}"

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            self._dead_letters_pending -= 1
            if err is not None:
                self._dead_letter_errors.append(err.str())

        for piece in blocks.cap(item.block, DEAD_LETTER_MAX_BYTES, item.fmt):
            letter = sink_letter(piece, item.table, item.error, item.code, item.token, source_range, item.fmt)
            self._dead_letters_pending += 1
            self.dead_letters.produce(letter.topic, value=letter.value, headers=letter.headers, on_delivery=delivered)
        self.metrics.dead_letter_rows.labels(item.table or "unknown").inc(max(item.rows, 1))

    def _settle_dead_letters(self) -> None:
        """Dead letters must be in Kafka before the offsets that produced them are committed."""
        if not self._dead_letters_pending and not self._dead_letter_errors:
            return
        self.dead_letters.flush(60)
        if self._dead_letters_pending or self._dead_letter_errors:
            errors, self._dead_letter_errors = self._dead_letter_errors, []
            raise RuntimeError(f"dead letters not acknowledged by Kafka: {errors or 'timed out'}")


def _ranges(partitions: list[TopicPartition]) -> str:
    """`otel.logs[0-5], otel.metrics[0-2,4]`: one entry per topic, not per partition."""
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    out = []
    for topic, numbers in sorted(by_topic.items()):
        numbers.sort()
        runs: list[list[int]] = []
        for n in numbers:
            if runs and n == runs[-1][1] + 1:
                runs[-1][1] = n
            else:
                runs.append([n, n])
        out.append(f"{topic}[{','.join(str(a) if a == b else f'{a}-{b}' for a, b in runs)}]")
    return ", ".join(out)


def run(settings: Settings, ready_file: Path | None = None) -> None:
    sink = Sink(settings, ready_file=ready_file)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sink.stopping.set())
    sink.run()

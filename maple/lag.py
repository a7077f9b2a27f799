"""Consumer lag: how far each group's committed offsets are behind the end of each partition.

Shared by `maple lag` (ops view), the worker (a periodic Faust timer measures its own group through one
long-lived consumer, `GroupLag`) and the sink (which reads its own consumer's cached high watermarks and
the state it already keeps, so exporting lag costs nothing per message). Two numbers per group/topic/partition:

* offsets: end offset - committed offset (a partition without a commit counts from its earliest offset,
  because Maple's consumers start there);
* seconds: now - timestamp of the record at the committed offset, i.e. the age of the oldest record the
  group still has to process (0 without lag). For `maple lag` and the worker this is the Kafka record
  timestamp; the sink uses the ingest receive time of the oldest row batch it holds.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Gauge

from maple import kafka as kafka_clients
from maple.kafka import admin_client


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None   # None: the group never committed this partition
    start: int              # earliest retained offset
    end: int                # the high watermark (next offset to be written)
    lag: int                # messages behind
    lag_seconds: float | None  # age of the record at the committed offset; None when it could not be read

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LagError(RuntimeError):
    """A group or topic could not be measured; the message names it."""


def committed_offsets(bootstrap: str, group: str, timeout: float = 30.0) -> dict[tuple[str, int], tuple[int, str]]:
    """Every partition `group` has committed: (topic, partition) -> (offset, metadata).

    Through the Admin API, for one-shot commands: a long-running process uses GroupLag instead."""
    admin = admin_client(bootstrap, log_level=4)  # errors come back through the future
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                               request_timeout=timeout)[group]
    kafka_clients.settle([future], timeout + 5)  # `admin` stays referenced until its request is over
    try:
        result = future.result(0)
    except KafkaException as exc:
        raise LagError(f"group {group}: cannot read its committed offsets: {exc.args[0].str()}") from exc
    except TimeoutError as exc:
        raise LagError(f"group {group}: cannot read its committed offsets: no answer in {timeout:.0f}s") from exc
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "")
            for tp in result.topic_partitions or [] if tp.offset >= 0}


def probe_consumer(bootstrap: str) -> Consumer:
    """A consumer that never joins or commits to any group: for watermarks, offsets_for_times and peeks."""
    return Consumer({**kafka_clients.client_logging(), "bootstrap.servers": bootstrap,
                     "group.id": f"maple-ops-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "isolation.level": "read_committed",
                     "enable.partition.eof": False})


def topic_partitions(consumer: Consumer, topic: str, timeout: float = 30.0) -> list[int]:
    """The partition ids of `topic`; LagError naming the topic if it does not exist."""
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise LagError(f"topic {topic} does not exist")
    return sorted(metadata.partitions)


def record_timestamps(consumer: Consumer, positions: Iterable[TopicPartition],
                      timeout: float = 10.0) -> dict[tuple[str, int], float]:
    """The Kafka timestamp (seconds) of the first readable record at or after each position."""
    wanted = [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in positions]
    if not wanted:
        return {}
    out: dict[tuple[str, int], float] = {}
    consumer.assign(wanted)
    try:
        deadline = time.monotonic() + timeout
        while len(out) < len(wanted) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=len(wanted) * 4, timeout=0.5):
                if message.error():
                    continue
                key = (message.topic(), message.partition())
                if key not in out:
                    _kind, stamp = message.timestamp()
                    if stamp > 0:
                        out[key] = stamp / 1000.0
                    consumer.pause([TopicPartition(*key)])
    finally:
        consumer.unassign()
    return out


def measure(bootstrap: str, group: str, topics: Iterable[str] | None = None, *, timestamps: bool = True,
            timeout: float = 30.0) -> list[PartitionLag]:
    """Lag of `group` on `topics` (default: every topic it has committed offsets for), for one-shot use
    (`maple lag`): it builds its clients and closes them. A long-running process measures with GroupLag."""
    committed = committed_offsets(bootstrap, group, timeout)
    names = sorted(set(topics) if topics is not None else {topic for topic, _ in committed})
    consumer = probe_consumer(bootstrap)
    try:
        return _lag_rows(consumer, group, names, committed, timestamps, timeout)
    finally:
        consumer.close()


def _lag_rows(consumer: Consumer, group: str, names: Iterable[str],
              committed: Mapping[tuple[str, int], tuple[int, str]], timestamps: bool, timeout: float
              ) -> list[PartitionLag]:
    rows: list[PartitionLag] = []
    peek: list[TopicPartition] = []
    for topic in names:
        for partition in topic_partitions(consumer, topic, timeout):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            offset = committed.get((topic, partition), (None, ""))[0]
            position = max(offset if offset is not None else low, low)
            lag = max(0, high - position)
            rows.append(PartitionLag(group, topic, partition, offset, low, high, lag, 0.0 if not lag else None))
            if lag and timestamps:
                peek.append(TopicPartition(topic, partition, position))
    stamps = record_timestamps(consumer, peek) if peek else {}
    now = time.time()
    return [row if row.lag_seconds is not None or (row.topic, row.partition) not in stamps else
            PartitionLag(**{**row.as_dict(), "lag_seconds": max(0.0, now - stamps[(row.topic, row.partition)])})
            for row in rows]


class GroupLag:
    """One group's lag on known topics, measured again and again through ONE long-lived consumer.

    For long-running processes (the worker's lag timer). Two rules keep librdkafka from taking the process
    down when brokers go away and come back:

    * no Admin API: its coordinator requests (ListConsumerGroupOffsets, DescribeConsumerGroups) abort the
      whole process with `rd_kafka_enq_once_del_source_return: Assertion 'eonce->refcnt > 0'` when their
      connection drops (librdkafka issue 4605, fix proposed in PR 5397). Committed offsets come from the
      consumer group protocol instead (`Consumer.committed`, OffsetFetch), watermarks from ListOffsets;
      the consumer never subscribes, so it never joins or disturbs the group;
    * one client for the process's life, never dropped or closed while a call runs: a measurement that is
      still waiting on a dead broker makes the next one skip (None) instead of queueing behind it.
    """

    def __init__(self, bootstrap: str, group: str, topics: Iterable[str]) -> None:
        self.group = group
        self.topics = sorted(set(topics))
        self._consumer = Consumer(kafka_clients.consumer_config(bootstrap, group, **{
            "enable.partition.eof": False, **kafka_clients.client_logging("lag")}))
        self._busy = threading.Lock()
        self._closed = False
        self._partitions: dict[str, list[int]] = {}

    def measure(self, *, timestamps: bool = True, timeout: float = 10.0) -> list[PartitionLag] | None:
        """The lag rows, or None when the previous measurement is still running (or after close)."""
        if not self._busy.acquire(blocking=False):
            return None
        try:
            if self._closed:
                return None
            self._consumer.poll(0)  # hands librdkafka's queued log lines over (never subscribed: no messages)
            wanted = []
            for topic in self.topics:
                if topic not in self._partitions:
                    self._partitions[topic] = topic_partitions(self._consumer, topic, timeout)
                wanted += [TopicPartition(topic, p) for p in self._partitions[topic]]
            try:
                answered = self._consumer.committed(wanted, timeout=timeout)
            except KafkaException as exc:
                raise LagError(f"group {self.group}: cannot read its committed offsets: {exc.args[0].str()}") from exc
            committed = {(tp.topic, tp.partition): (tp.offset, tp.metadata or "") for tp in answered
                         if tp.offset >= 0 and tp.error is None}
            return _lag_rows(self._consumer, self.group, self.topics, committed, timestamps, timeout)
        except (KafkaException, LagError):
            self._partitions.clear()  # a topic may have been recreated: read its partitions again next time
            raise
        finally:
            self._busy.release()

    def close(self) -> None:
        """Close the consumer once no measurement runs (waits for one in progress)."""
        with self._busy:
            if not self._closed:
                self._closed = True
                self._consumer.close()


class LagGauges:
    """maple_consumer_lag{group,topic,partition} and maple_consumer_lag_seconds in a process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Gauge("maple_consumer_lag", "Messages between the group's committed offset and the "
                              "partition's end", ["group", "topic", "partition"], registry=registry)
        self.seconds = Gauge("maple_consumer_lag_seconds", "Age of the oldest record the group has not "
                             "committed yet (0 without lag)", ["group", "topic", "partition"], registry=registry)
        self._labels: set[tuple[str, str, str]] = set()

    def publish(self, rows: Iterable[PartitionLag]) -> None:
        """Set the gauges to `rows`; partitions no longer in `rows` (revoked) are removed."""
        seen: set[tuple[str, str, str]] = set()
        for row in rows:
            labels = (row.group, row.topic, str(row.partition))
            seen.add(labels)
            self.messages.labels(*labels).set(row.lag)
            if row.lag_seconds is not None:
                self.seconds.labels(*labels).set(row.lag_seconds)
        for labels in self._labels - seen:
            for gauge in (self.messages, self.seconds):
                try:
                    gauge.remove(*labels)
                except KeyError:
                    pass
        self._labels = seen


class SinkLag:
    """The sink's own lag, refreshed at most every `interval_s` from state the sink already has.

    Offsets: the consumer's cached high watermark (updated by fetch responses, no request) minus the
    partition batch's start, which is the committed offset. Seconds: the ingest receive time of the first
    row batch gathered since that commit (the oldest uncommitted data); 0 when there is no lag."""

    def __init__(self, registry: CollectorRegistry, group: str, interval_s: float = 5.0) -> None:
        self.gauges = LagGauges(registry)
        self.group = group
        self.interval_s = interval_s
        self._next = 0.0

    def update(self, consumer: Consumer, batches: Mapping[tuple[str, int], Any]) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        rows: list[PartitionLag] = []
        wall = time.time_ns()
        for (topic, partition), batch in list(batches.items()):
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue  # nothing fetched yet: no cached watermark
            start = batch.start if batch.start >= 0 else max(low, 0)
            lag = max(0, high - start)
            seconds: float | None = 0.0
            if lag:
                first = next((b for b in batch.taken if b.received_ns), None)
                seconds = max(0.0, (wall - first.received_ns) / 1e9) if first is not None else None
            rows.append(PartitionLag(self.group, topic, partition, start, max(low, 0), high, lag, seconds))
        self.gauges.publish(rows)

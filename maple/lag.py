"""Consumer lag: how far each group's committed offsets are behind the end of each partition.

Shared by `maple lag` (ops view), the worker (a periodic Faust timer measures its own group through the
admin API) and the sink (which reads its own consumer's cached high watermarks and the state it already
keeps, so exporting lag costs nothing per message). Two numbers per group/topic/partition:

* offsets: end offset - committed offset (a partition without a commit counts from its earliest offset,
  because Maple's consumers start there);
* seconds: now - timestamp of the record at the committed offset, i.e. the age of the oldest record the
  group still has to process (0 without lag). For `maple lag` and the worker this is the Kafka record
  timestamp; the sink uses the ingest receive time of the oldest row batch it holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Gauge

from maple.consumer import Cluster


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


def measure(cluster: Cluster, group: str, topics: Iterable[str] | None = None, *, timestamps: bool = True
            ) -> list[PartitionLag]:
    """Lag of `group` on `topics` (default: every topic it has committed offsets for; a daemon names its
    topics, so that only the consumer path reads commits: see maple/consumer.py)."""
    committed = cluster.committed(group, topics)
    names = sorted(set(topics) if topics is not None else {topic for topic, _ in committed})
    rows: list[PartitionLag] = []
    peek: list[tuple[str, int, int]] = []
    for topic in names:
        for partition in cluster.partitions(topic):
            low, high = cluster.watermarks(topic, partition)
            commit = committed.get((topic, partition))
            offset = commit.offset if commit is not None else None
            position = max(offset if offset is not None else low, low)
            lag = max(0, high - position)
            rows.append(PartitionLag(group, topic, partition, offset, low, high, lag, 0.0 if not lag else None))
            if lag and timestamps:
                peek.append((topic, partition, position))
    stamps = cluster.first_timestamps(peek) if peek else {}
    now = time.time()
    return [row if row.lag_seconds is not None or (row.topic, row.partition) not in stamps else
            PartitionLag(**{**row.as_dict(), "lag_seconds": max(0.0, now - stamps[(row.topic, row.partition)])})
            for row in rows]


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

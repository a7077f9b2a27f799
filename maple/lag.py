"""Consumer lag: how far each group's committed offsets are behind the end of each partition.

Shared by `maple lag` (ops view), the worker (a periodic Faust timer measures its own group through the
admin API) and the sink (which reads its own consumer's cached high watermarks and the state it already
keeps, so exporting lag costs nothing per message). Two numbers per group/topic/partition:

* offsets: end offset - committed offset (a partition without a commit counts from its earliest offset,
  because Maple's consumers start there);
* seconds: now - timestamp of the record at the committed offset, i.e. the age of the oldest record the
  group still has to process (0 without lag). For `maple lag` and the worker this is the Kafka record
  timestamp; the sink uses the ingest receive time of the oldest row batch it holds.

On otel.spans (`TICK_TOPICS`) the group's commit is not how far the sampler got. The sampler commits
behind the traces it still holds (decision_wait) and the late-span window, so that a restart rebuilds them:
tens of seconds behind by design. And every second it writes a tick record per partition to move its
clock, so a few ticks always wait after the commit and an idle pipeline would never show 0. So there:

* progress is the read position the newest tick reports (its `maple.read` header), when it is ahead of
  the commit;
* lag counts from the oldest record after that which is not a tick; only ticks waiting is 0 messages
  and 0 s (the ticks are reported apart).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Gauge

from maple.kafka import admin_client
from maple.topics import HEADER_GROUP, HEADER_READ, HEADER_TICK, TICK_TOPICS


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None   # None: the group never committed this partition
    start: int              # earliest retained offset
    end: int                # the high watermark (next offset to be written)
    lag: int                # messages behind (from the oldest record that is not a tick)
    lag_seconds: float | None  # age of that record; None when it could not be read
    ticks: int = 0          # tick records waiting before it (or up to the end), not counted in `lag`
    read: int | None = None  # on tick topics: the read position the newest tick reported, if ahead of `committed`

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LagError(RuntimeError):
    """A group or topic could not be measured; the message names it."""


def committed_offsets(bootstrap: str, group: str, timeout: float = 30.0) -> dict[tuple[str, int], tuple[int, str]]:
    """Every partition `group` has committed: (topic, partition) -> (offset, metadata)."""
    admin = admin_client(bootstrap, log_level=4)  # errors come back through the future
    future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                               request_timeout=timeout)[group]
    try:
        result = future.result(timeout + 5)
    except KafkaException as exc:
        raise LagError(f"group {group}: cannot read its committed offsets: {exc.args[0].str()}") from exc
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata or "")
            for tp in result.topic_partitions or [] if tp.offset >= 0}


def probe_consumer(bootstrap: str) -> Consumer:
    """A consumer that never joins or commits to any group: for watermarks, offsets_for_times and peeks."""
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"maple-ops-{uuid.uuid4().hex[:8]}",
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
        _release(consumer)
    return out


def _release(consumer: Consumer) -> None:
    """Unassign after a scan, resuming what it paused: a partition assigned again later starts unpaused."""
    assigned = consumer.assignment()
    if assigned:
        consumer.resume(assigned)
    consumer.unassign()


def _is_tick(message: Any) -> bool:
    return any(key == HEADER_TICK for key, _ in message.headers() or ())


TICK_LOOKBACK = 16  # records read back from the end for the newest tick (about one per second per partition)


def tick_read_positions(consumer: Consumer, group: str, ends: Mapping[tuple[str, int], tuple[int, int]],
                        timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """For each (topic, partition) -> (low, high) of a tick topic: the read position (`maple.read`) of the
    newest tick of `group`'s sampler among its last `TICK_LOOKBACK` records (other groups, such as a
    benchmark's, may tick on the same topic). Partitions without one there are absent."""
    wanted = {key: (max(low, high - TICK_LOOKBACK), high) for key, (low, high) in ends.items() if high > low}
    if not wanted:
        return {}
    found: dict[tuple[str, int], int] = {}
    done: set[tuple[str, int]] = set()
    consumer.assign([TopicPartition(topic, partition, start) for (topic, partition), (start, _) in wanted.items()])
    try:
        deadline = time.monotonic() + timeout
        while len(done) < len(wanted) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if message.error() or topic is None or partition is None or offset is None:
                    continue
                key = (topic, partition)
                headers = dict(message.headers() or ())
                read = headers.get(HEADER_READ)
                if (HEADER_TICK in headers and headers.get(HEADER_GROUP) == group.encode() and isinstance(read, bytes)
                        and read.isdigit()):
                    found[key] = int(read)
                if offset >= wanted[key][1] - 1:
                    done.add(key)
                    consumer.pause([TopicPartition(topic, partition)])
            for key, (_start, end) in wanted.items():
                position = consumer.position([TopicPartition(*key)])[0].offset
                if key not in done and position is not None and position >= end:
                    done.add(key)
    finally:
        _release(consumer)
    return found


def first_data_records(consumer: Consumer, ranges: Mapping[tuple[str, int], tuple[int, int]],
                       timeout: float = 10.0) -> dict[tuple[str, int], tuple[int, float] | None]:
    """For each (topic, partition) -> [start, end): the offset and timestamp (seconds) of its first record
    that is not a tick (on `TICK_TOPICS`; elsewhere simply the first record), or None when only ticks lie
    in the range. Partitions not read within `timeout` are absent."""
    if not ranges:
        return {}
    out: dict[tuple[str, int], tuple[int, float] | None] = {}
    consumer.assign([TopicPartition(topic, partition, start) for (topic, partition), (start, _) in ranges.items()])
    try:
        deadline = time.monotonic() + timeout
        while len(out) < len(ranges) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if message.error() or topic is None or partition is None or offset is None:
                    continue
                key = (topic, partition)
                if key in out:
                    continue
                if topic in TICK_TOPICS and _is_tick(message):
                    if offset >= ranges[key][1] - 1:
                        out[key] = None  # ticks up to the end
                        consumer.pause([TopicPartition(topic, partition)])
                    continue
                _kind, stamp = message.timestamp()
                out[key] = (offset, stamp / 1000.0 if stamp > 0 else 0.0)
                consumer.pause([TopicPartition(topic, partition)])
            # Ticks that end before the high watermark (a gap in the offsets) also end the range.
            for key, (_start, end) in ranges.items():
                if key not in out and key[0] in TICK_TOPICS:
                    position = consumer.position([TopicPartition(*key)])[0].offset
                    if position is not None and position >= end:
                        out[key] = None
    finally:
        _release(consumer)
    return out


def measure(bootstrap: str, group: str, topics: Iterable[str] | None = None, *, timestamps: bool = True,
            timeout: float = 30.0) -> list[PartitionLag]:
    """Lag of `group` on `topics` (default: every topic it has committed offsets for).

    On topics with ticks the records after the commit are read until the first one that is not a tick
    (even without `timestamps`): the message count depends on it."""
    committed = committed_offsets(bootstrap, group, timeout)
    names = sorted(set(topics) if topics is not None else {topic for topic, _ in committed})
    consumer = probe_consumer(bootstrap)
    try:
        rows: list[PartitionLag] = []
        ends: dict[tuple[str, int], tuple[int, int]] = {}
        for topic in names:
            for partition in topic_partitions(consumer, topic, timeout):
                ends[(topic, partition)] = consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                                          timeout=timeout)
        reads = tick_read_positions(consumer, group, {k: v for k, v in ends.items() if k[0] in TICK_TOPICS})
        ranges: dict[tuple[str, int], tuple[int, int]] = {}
        for (topic, partition), (low, high) in ends.items():
            offset = committed.get((topic, partition), (None, ""))[0]
            position = max(offset if offset is not None else low, low)
            read = reads.get((topic, partition))
            read = read if read is not None and read > position else None
            position = min(high, read) if read is not None else position
            lag = max(0, high - position)
            rows.append(PartitionLag(group, topic, partition, offset, low, high, lag, 0.0 if not lag else None,
                                     read=read))
            if lag and (timestamps or topic in TICK_TOPICS):
                ranges[(topic, partition)] = (position, high)
        firsts = first_data_records(consumer, ranges) if ranges else {}
    finally:
        consumer.close()
    now = time.time()
    out = []
    for row in rows:
        key = (row.topic, row.partition)
        if key not in firsts:
            out.append(row)
            continue
        first = firsts[key]
        if first is None:  # only ticks wait: nothing to process
            out.append(replace(row, lag=0, lag_seconds=0.0, ticks=row.lag))
            continue
        offset, stamp = first
        skipped = offset - ranges[key][0]
        seconds = max(0.0, now - stamp) if stamp and timestamps else None
        out.append(replace(row, lag=row.lag - skipped, lag_seconds=seconds, ticks=skipped))
    return out


@dataclass(frozen=True)
class GroupLag:
    """One group's lag in a line: what `maple lag` shows first."""

    group: str
    topics: tuple[str, ...]
    messages: int
    seconds: float | None   # age of the oldest record the group has not processed; None: not known
    ticks: int
    status: str             # "OK", "behind" (oldest older than the limit) or "unknown"


def summarize(group: str, rows: Iterable[PartitionLag], behind_after_s: float) -> GroupLag:
    """Add up a group's partitions. "behind" once its oldest unprocessed record is older than `behind_after_s`;
    a small lag that is younger (records in flight) is "OK"."""
    mine = [r for r in rows if r.group == group]
    waiting = [r for r in mine if r.lag]
    known = [r.lag_seconds for r in waiting if r.lag_seconds is not None]
    oldest = max(known) if known else None
    if not waiting:
        status, oldest = "OK", 0.0
    elif oldest is not None and oldest > behind_after_s:
        status = "behind"
    elif len(known) < len(waiting):
        status = "unknown"
    else:
        status = "OK"
    return GroupLag(group, tuple(sorted({r.topic for r in mine})), sum(r.lag for r in waiting), oldest,
                    sum(r.ticks for r in mine), status)


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

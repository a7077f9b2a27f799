"""Consumer lag: how far each group's committed offsets are behind the end of each partition.

Shared by `maple lag` (ops view), the worker (a periodic Faust timer measures its own group through the
consumer toolkit, maple/consumer.py) and the sink (which reads its own consumer's cached high watermarks
and the state it already keeps, so exporting lag costs nothing per message). Two numbers per
group/topic/partition:

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
from collections.abc import Generator, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Gauge

from maple.consumer import Cluster, KafkaOpError, headers_of
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


TICK_LOOKBACK = 16  # records read back from the end for the newest tick (about one per second per partition)
SCAN_IDLE_S = 10.0  # a range that yields nothing for this long is given up (its lag age stays unknown)


def tick_read_positions(cluster: Cluster, group: str, ends: Mapping[tuple[str, int], tuple[int, int]]
                        ) -> dict[tuple[str, int], int]:
    """For each (topic, partition) -> (low, high) of a tick topic: the read position (`maple.read`) of the
    newest tick of `group`'s sampler among its last `TICK_LOOKBACK` records (other groups, such as a
    benchmark's, may tick on the same topic). Partitions without one there are absent."""
    found: dict[tuple[str, int], int] = {}
    ranges = [(t, p, max(low, high - TICK_LOOKBACK), high) for (t, p), (low, high) in ends.items() if high > low]
    try:
        for message in cluster.read(ranges, idle_s=SCAN_IDLE_S):
            headers = headers_of(message)
            read = headers.get(HEADER_READ, b"")
            if HEADER_TICK in headers and headers.get(HEADER_GROUP) == group.encode() and read.isdigit():
                found[(message.topic() or "", message.partition() or 0)] = int(read)
    except KafkaOpError:
        pass  # what was found stands; the rest count from their commits
    return found


def first_data_records(cluster: Cluster, ranges: Mapping[tuple[str, int], tuple[int, int]]
                       ) -> dict[tuple[str, int], tuple[int, float] | None]:
    """For each (topic, partition) -> [start, end) of a tick topic: the offset and timestamp (seconds) of its
    first record that is not a tick, or None when only ticks lie in the range. Partitions not read in time
    are absent. Reads stop once every range is decided."""
    out: dict[tuple[str, int], tuple[int, float] | None] = {}
    messages = cluster.read([(t, p, start, end) for (t, p), (start, end) in ranges.items()], idle_s=SCAN_IDLE_S)
    try:
        for message in messages:  # a generator: closed below
            key = (message.topic() or "", message.partition() or 0)
            offset = message.offset()
            if key in out or offset is None:
                continue
            if HEADER_TICK in headers_of(message):
                if offset >= ranges[key][1] - 1:
                    out[key] = None  # ticks up to the end
            else:
                _kind, stamp = message.timestamp()
                out[key] = (offset, stamp / 1000.0 if stamp > 0 else 0.0)
            if len(out) == len(ranges):
                break
    except KafkaOpError:
        pass
    finally:
        if isinstance(messages, Generator):
            messages.close()  # the probe is released now, not whenever the generator is collected
    return out


def measure(cluster: Cluster, group: str, topics: Iterable[str] | None = None, *, timestamps: bool = True
            ) -> list[PartitionLag]:
    """Lag of `group` on `topics` (default: every topic it has committed offsets for; a daemon names its
    topics, so that only the consumer path reads commits: see maple/consumer.py).

    On topics with ticks the records after the group's position are read until the first one that is not
    a tick (even without `timestamps`): the message count depends on it."""
    committed = cluster.committed(group, topics)
    names = sorted(set(topics) if topics is not None else {topic for topic, _ in committed})
    ends = {(topic, partition): cluster.watermarks(topic, partition)
            for topic in names for partition in cluster.partitions(topic)}
    reads = tick_read_positions(cluster, group, {k: v for k, v in ends.items() if k[0] in TICK_TOPICS})
    rows: list[PartitionLag] = []
    ticked: dict[tuple[str, int], tuple[int, int]] = {}
    peek: list[tuple[str, int, int]] = []
    for (topic, partition), (low, high) in ends.items():
        commit = committed.get((topic, partition))
        offset = commit.offset if commit is not None else None
        position = max(offset if offset is not None else low, low)
        read = reads.get((topic, partition))
        read = read if read is not None and read > position else None
        position = min(high, read) if read is not None else position
        lag = max(0, high - position)
        rows.append(PartitionLag(group, topic, partition, offset, low, high, lag, 0.0 if not lag else None, read=read))
        if lag and topic in TICK_TOPICS:
            ticked[(topic, partition)] = (position, high)
        elif lag and timestamps:
            peek.append((topic, partition, position))
    firsts = first_data_records(cluster, ticked) if ticked else {}
    stamps = cluster.first_timestamps(peek) if peek else {}
    now = time.time()
    out = []
    for row in rows:
        key = (row.topic, row.partition)
        if key in stamps:
            out.append(replace(row, lag_seconds=max(0.0, now - stamps[key])))
        elif key not in firsts:
            out.append(row)
        elif (first := firsts[key]) is None:  # only ticks wait: nothing to process
            out.append(replace(row, lag=0, lag_seconds=0.0, ticks=row.lag))
        else:
            offset, stamp = first
            skipped = offset - ticked[key][0]
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

"""The consumer toolkit: what Maple's stages and operations need from Kafka besides consuming in a group.

One `Cluster` per process (or per command) holds long-lived clients for a bootstrap list: a probe
Consumer that never joins or commits to any group (partitions, watermarks, offsets for times, reading
offset ranges), one non-joining Consumer per group whose commits are read (OffsetFetch), and an
AdminClient for what only the Admin API answers (group membership, "every topic this group committed").
Every request is waited for before a call returns and the clients live until `close()`.

Long-running processes read commits only through the consumer path (`committed(group, topics)`): librdkafka
aborts the process (`rd_kafka_enq_once_del_source_return` assertion, librdkafka issue 4605) when an Admin
API coordinator request loses its connection, which a broker restart does.

Users: the sink (its own commits and the commit order of its exactly-once protocol), the sampler
(whether the traces agents have committed their raw partitions to the end), `maple lag` and the lag
gauges, `maple replay` and `maple dlq`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, Message
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient

from maple.kafka import client_logging

TopicPartitionKey = tuple[str, int]


class KafkaOpError(RuntimeError):
    """A group, topic or partition could not be read or moved; the message names it and says why."""


class CommitRefused(KafkaOpError):
    """Kafka refused an offset commit: the group moved on (a rebalance, an expired membership, a member that
    started meanwhile)."""


@dataclass(frozen=True)
class Commit:
    """A group's committed position on one partition, with the metadata committed beside it."""

    offset: int
    metadata: str = ""


@dataclass(frozen=True)
class GroupState:
    group: str
    state: str
    members: tuple[str, ...]  # "client_id@host (n partitions)"

    @property
    def running(self) -> bool:
        return bool(self.members) or self.state not in ("EMPTY", "DEAD", "UNKNOWN")


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return str(error.str()) if error is not None and hasattr(error, "str") else str(exc)


def headers_of(message: Message) -> dict[str, bytes]:
    """A record's headers as a dict (the last value of a repeated key wins; null values are left out)."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {key: value if isinstance(value, bytes) else value.encode() for key, value in pairs if value is not None}


class Cluster:
    """Long-lived admin and probe clients for one Kafka cluster. Thread-safe; close it when done."""

    def __init__(self, bootstrap: str, timeout: float = 30.0) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        # Errors come back through the futures and exceptions below; librdkafka's own lines go through
        # Maple's logging, rate-limited.
        self._admin = AdminClient({"bootstrap.servers": bootstrap, **client_logging("admin")})
        self._probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"maple-probe-{uuid.uuid4().hex[:8]}",
                                "enable.auto.commit": False, "isolation.level": "read_committed",
                                "enable.partition.eof": False, **client_logging("probe")})
        self._probe_lock = threading.Lock()  # assign/consume on the probe are one reader at a time
        self._groups: dict[str, Consumer] = {}
        self._groups_lock = threading.Lock()

    def close(self) -> None:
        self._probe.close()
        for consumer in self._groups.values():
            consumer.close()
        # The AdminClient has no close(); it is freed with this object, after every future resolved.

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- groups ----------------------------------------------------------------------------------------

    def committed(self, group: str, topics: Iterable[str] | None = None) -> dict[TopicPartitionKey, Commit]:
        """What `group` has committed: (topic, partition) -> Commit (offset and metadata), on `topics` (read
        with OffsetFetch through a consumer of the group that never joins it: safe across broker restarts),
        or on every topic it ever committed (`topics` None: the Admin API; for commands, not daemons)."""
        if topics is not None:
            return self._committed_on(group, list(topics))
        future = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                         request_timeout=self.timeout)[group]
        try:
            result = future.result(self.timeout + 5)
        except KafkaException as exc:
            raise KafkaOpError(f"group {group}: cannot read its committed offsets: {_reason(exc)}") from exc
        return {(tp.topic, tp.partition): Commit(tp.offset, tp.metadata or "")
                for tp in result.topic_partitions or [] if tp.offset >= 0}

    def _committed_on(self, group: str, topics: list[str]) -> dict[TopicPartitionKey, Commit]:
        wanted = [TP(topic, partition) for topic in topics for partition in self.partitions(topic)]
        self._serve_logs()
        with self._groups_lock:
            consumer = self._groups.get(group)
            if consumer is None:
                consumer = self._groups[group] = Consumer({
                    "bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False,
                    **client_logging("offsets")})
            consumer.poll(0)  # never subscribed: no messages, only its queued log lines (see _serve_logs)
            try:
                asked = consumer.committed(wanted, timeout=self.timeout) if wanted else []
            except KafkaException as exc:
                raise KafkaOpError(f"group {group}: cannot read its committed offsets: {_reason(exc)}") from exc
        return {(tp.topic, tp.partition): Commit(tp.offset, tp.metadata or "") for tp in asked if tp.offset >= 0}

    def _serve_logs(self) -> None:
        """librdkafka hands its log lines to Maple's logging only inside a poll (confluent-kafka's `logger`
        queues them): clients that are never polled would pile them up in memory during an outage. Daemons
        read commits periodically, which polls here."""
        self._admin.poll(0)
        with self._probe_lock:
            self._probe.poll(0)  # unassigned between reads: no messages

    def describe_group(self, group: str) -> GroupState:
        future = self._admin.describe_consumer_groups([group], request_timeout=self.timeout)[group]
        try:
            description = future.result(self.timeout + 5)
        except KafkaException as exc:
            raise KafkaOpError(f"group {group}: cannot describe it: {_reason(exc)}") from exc
        members = tuple(
            f"{m.client_id}@{m.host} ({len(m.assignment.topic_partitions) if m.assignment else 0} partitions)"
            for m in description.members or [])
        state = (description.state.name if isinstance(description.state, ConsumerGroupState)
                 else str(description.state))
        return GroupState(group, state, members)

    def commit(self, group: str, offsets: Iterable[tuple[str, int, int, str]]) -> None:
        """Commit (topic, partition, offset, metadata) for a group that has no running member (operations
        move a stopped group; a live group's members would overwrite the move with their next commit)."""
        wanted = [TP(topic, partition, offset, metadata=metadata) for topic, partition, offset, metadata in offsets]
        if not wanted:
            return
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False,
                             **client_logging("commit")})
        try:
            results = consumer.commit(offsets=wanted, asynchronous=False) or []
        except KafkaException as exc:
            raise CommitRefused(f"group {group}: the offset commit was refused ({_reason(exc)}); did a member "
                                "start meanwhile?") from exc
        finally:
            consumer.close()
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error.str()}" for tp in results if tp.error is not None]
        if failed:
            raise CommitRefused(f"group {group}: commits refused for {', '.join(failed)}")

    # -- topics and partitions ----------------------------------------------------------------------

    def topics(self) -> set[str]:
        with self._probe_lock:
            return set(self._probe.list_topics(timeout=self.timeout).topics)

    def partitions(self, topic: str) -> list[int]:
        """The partition ids of `topic`; KafkaOpError naming the topic if it does not exist."""
        with self._probe_lock:
            metadata = self._probe.list_topics(topic, timeout=self.timeout).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise KafkaOpError(f"topic {topic} does not exist")
        return sorted(metadata.partitions)

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(earliest retained offset, end offset) of one partition."""
        try:
            with self._probe_lock:
                low, high = self._probe.get_watermark_offsets(TP(topic, partition), timeout=self.timeout)
        except KafkaException as exc:
            raise KafkaOpError(f"{topic}[{partition}]: cannot read its offsets: {_reason(exc)}") from exc
        return max(low, 0), max(high, 0)

    def offsets_for_time(self, partitions: Iterable[TopicPartitionKey], ms: int) -> dict[TopicPartitionKey, int]:
        """The first offset at or after Unix time `ms` per partition; the end offset where every record is older."""
        with self._probe_lock:
            asked = self._probe.offsets_for_times([TP(t, p, ms) for t, p in partitions], timeout=self.timeout)
        out: dict[TopicPartitionKey, int] = {}
        for tp in asked:
            if tp.error is not None:
                raise KafkaOpError(f"{tp.topic}[{tp.partition}]: offsets_for_times failed: {tp.error.str()}")
            out[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else self.watermarks(tp.topic, tp.partition)[1]
        return out

    def read(self, ranges: Iterable[tuple[str, int, int, int]], *, idle_s: float = 60.0,
             batch: int = 2000) -> Iterator[Message]:
        """The records of each (topic, partition, start, stop) range, [start, stop), in offset order per
        partition (partitions interleaved). Raises KafkaOpError naming the partitions when no record came for
        `idle_s` before the expected offsets (records deleted by retention, or a transaction still open)."""
        todo = {(t, p): stop for t, p, start, stop in ranges if stop > start}
        starts = [TP(t, p, start) for t, p, start, stop in ranges if stop > start]
        if not starts:
            return
        with self._probe_lock:
            self._probe.assign(starts)
            try:
                idle_since = time.monotonic()
                while todo:
                    messages = self._probe.consume(num_messages=batch, timeout=0.5)
                    if not messages:
                        if time.monotonic() - idle_since > idle_s:
                            stalled = ", ".join(f"{t}[{p}]" for t, p in sorted(todo))
                            raise KafkaOpError(f"reading {stalled} stalled: no records for {idle_s:.0f} s before "
                                               "the expected offsets")
                        continue
                    idle_since = time.monotonic()
                    for message in messages:
                        if message.error():
                            continue
                        key = (message.topic() or "", message.partition() or 0)
                        stop = todo.get(key)
                        offset = message.offset()
                        if stop is None or offset is None:
                            continue
                        if offset >= stop - 1:
                            del todo[key]
                            self._probe.pause([TP(*key)])
                        if offset < stop:
                            yield message
            finally:
                _release(self._probe)

    def first_timestamps(self, positions: Iterable[tuple[str, int, int]],
                         timeout: float = 10.0) -> dict[TopicPartitionKey, float]:
        """The Kafka timestamp (seconds) of the first readable record at or after each (topic, partition,
        offset); positions with nothing readable within `timeout` are left out."""
        wanted = [TP(t, p, o) for t, p, o in positions]
        out: dict[TopicPartitionKey, float] = {}
        if not wanted:
            return out
        with self._probe_lock:
            self._probe.assign(wanted)
            try:
                deadline = time.monotonic() + timeout
                while len(out) < len(wanted) and time.monotonic() < deadline:
                    for message in self._probe.consume(num_messages=len(wanted) * 4, timeout=0.5):
                        if message.error():
                            continue
                        key: Any = (message.topic(), message.partition())
                        if key not in out:
                            _kind, stamp = message.timestamp()
                            if stamp > 0:
                                out[key] = stamp / 1000.0
                            self._probe.pause([TP(*key)])
            finally:
                _release(self._probe)
        return out


def _release(probe: Consumer) -> None:
    """Unassign after a scan, resuming what it paused: librdkafka keeps a partition's pause across unassign,
    so the next scan of that partition on this long-lived probe would read nothing (and time out)."""
    assigned = probe.assignment()
    if assigned:
        probe.resume(assigned)
    probe.unassign()


# -- a group member's own commits (the sink) -----------------------------------------------------------


def member_commits(consumer: Consumer, partitions: Iterable[TopicPartitionKey],
                   timeout: float = 30.0) -> dict[TopicPartitionKey, Commit | None]:
    """What the consumer's group committed on `partitions` (None where it never committed)."""
    asked = consumer.committed([TP(t, p) for t, p in partitions], timeout=timeout)
    return {(tp.topic, tp.partition): Commit(tp.offset, tp.metadata or "") if tp.offset >= 0 else None
            for tp in asked}


def commit_one(consumer: Consumer, topic: str, partition: int, offset: int, metadata: str) -> None:
    """Commit one partition synchronously, as a member of the consumer's group; CommitRefused when Kafka
    refuses it (the group moved on). The sink's exactly-once protocol is a sequence of these."""
    try:
        consumer.commit(offsets=[TP(topic, partition, offset, metadata=metadata)], asynchronous=False)
    except KafkaException as exc:
        raise CommitRefused(f"{topic}[{partition}]: commit of offset {offset} refused: {_reason(exc)}") from exc

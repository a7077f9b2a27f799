"""`maple lag` on otel.spans: the sampler's ticks and the traces it holds are not lag; unread spans are.

The records are produced by hand, as the sampler and the traces worker would write them, so each case is
exact: the group's commit held back, ticks reporting the sampler's read position, another group's ticks
on the same topic, and a span batch the sampler has not read yet.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from apps import maple_command
from maple import kafka
from maple.consumer import Cluster
from maple.lag import measure
from maple.topics import HEADER_GROUP, HEADER_READ, HEADER_TICK, SPANS, Topic
from processors import traces
from tests.helpers.environment import clean_environ


class SpanPartition:
    """Writes span batches and ticks onto one otel.spans partition and returns their offsets."""

    def __init__(self, bootstrap: str, partition: int) -> None:
        self.producer = Producer(kafka.producer_config(bootstrap, **{"linger.ms": 0}))
        self.partition = partition

    def _send(self, value: bytes, headers: list[tuple[str, bytes]], timestamp_ms: int | None = None) -> int:
        offsets: list[int] = []
        self.producer.produce(SPANS.name, value=value, headers=headers, partition=self.partition,
                              timestamp=timestamp_ms or 0,
                              on_delivery=lambda err, msg: offsets.append(-1 if err else msg.offset()))
        self.producer.flush(30)
        assert offsets and offsets[0] >= 0, "not delivered"
        return offsets[0]

    def spans(self, age_s: float) -> int:
        # A well-formed span batch without rows: samplers of other tests' groups read it and move on.
        empty = orjson.dumps({name: [] for name in (*traces.COLUMNS, traces.START_NS)})
        return self._send(empty, [], int((time.time() - age_s) * 1000))

    def tick(self, group: str, read: int) -> int:
        return self._send(b"{}", [(HEADER_TICK, b"1"), (HEADER_GROUP, group.encode()),
                                  (HEADER_READ, str(read).encode())])


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def test_ticks_and_the_samplers_hold_are_not_lag_but_unread_spans_are(kafka_bootstrap: str) -> None:
    group, other = f"lag-ticks-{uuid.uuid4().hex[:8]}", f"lag-other-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(kafka.admin_client(kafka_bootstrap), 6, 1, [SPANS])
    probe = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    deadline = time.monotonic() + 60
    while not (partitions := sorted(probe.list_topics(SPANS.name, timeout=30).topics[SPANS.name].partitions)):
        assert time.monotonic() < deadline, f"{SPANS.name} has no partitions"  # a topic just created
        time.sleep(0.2)
    probe.close()
    kafka.start_group_at_end(kafka_bootstrap, group, [SPANS.name])  # nothing behind on any partition
    spans = SpanPartition(kafka_bootstrap, partitions[0])

    # The sampler read a span batch and holds its trace: the commit stays before it, its ticks say it read on.
    held = spans.spans(age_s=100)
    spans.tick(group, read=held + 1)
    other_tick = spans.tick(other, read=held + 10_000)  # another group's sampler: its progress is not ours
    read = other_tick + 1
    spans.tick(group, read=read)
    _commit(kafka_bootstrap, group, [TopicPartition(SPANS.name, partitions[0], held)])
    with Cluster(kafka_bootstrap) as cluster:
        [row] = [r for r in measure(cluster, group, [SPANS.name]) if r.partition == partitions[0]]
    assert (row.committed, row.read, row.lag, row.lag_seconds) == (held, read, 0, 0.0), row

    # Only ticks after a commit, none reporting this group's progress: nothing to do, 0 (the old view counted
    # them as lag forever on an idle pipeline).
    plain = f"lag-plain-{uuid.uuid4().hex[:8]}"
    _commit(kafka_bootstrap, plain, [TopicPartition(SPANS.name, partitions[0], held + 1)])
    with Cluster(kafka_bootstrap) as cluster:
        [row] = [r for r in measure(cluster, plain, [SPANS.name]) if r.partition == partitions[0]]
    assert row.read is None and row.lag == 0 and row.lag_seconds == 0.0, row
    assert row.ticks == row.end - (held + 1) >= 3, row

    # A span batch the sampler has not read: lag, from that batch on, as old as that batch.
    unread = spans.spans(age_s=50)
    spans.tick(group, read=unread)
    with Cluster(kafka_bootstrap) as cluster:  # one long-lived probe, as the worker's lag gauges use it
        rows = measure(cluster, group, [SPANS.name])
        again = [r for r in measure(cluster, group, [SPANS.name]) if r.partition == partitions[0]]
        assert again[0].lag_seconds is not None  # the same probe scans the partition again and reads it
    [row] = [r for r in rows if r.partition == partitions[0]]
    assert row.read == unread and row.lag == row.end - unread and 50 <= row.lag_seconds < 120, row
    assert all(r.lag == 0 for r in rows if r.partition != partitions[0]), rows  # others' ticks are no lag

    result = subprocess.run(maple_command("lag", "--group", group), capture_output=True, text=True, timeout=120,
                            env=clean_environ(MAPLE_KAFKA_BOOTSTRAP=kafka_bootstrap))
    assert result.returncode == 0, result.stderr
    name, lag, oldest, status, topics = result.stdout.splitlines()[1].split()
    # Samplers of other groups may have ticked meanwhile: ticks after the unread batch count with it.
    assert (name, status, topics) == (group, "behind", SPANS.name) and int(lag) >= row.lag, result.stdout
    assert 50 <= float(oldest.rstrip("s")) < 120


def test_a_long_lived_probe_reads_a_partition_again_after_a_scan_paused_it(kafka_bootstrap: str) -> None:
    # librdkafka keeps a partition paused across unassign: the worker's lag gauges (every 15 s on one Cluster)
    # and `maple lag` (two scans of otel.spans) would read nothing the second time without the resume.
    topic = f"test.rescan.{uuid.uuid4().hex[:8]}"
    kafka.ensure_topics(kafka.admin_client(kafka_bootstrap), 1, 1, [Topic(topic, "test", "test", "rescan")])
    producer = Producer(kafka.producer_config(kafka_bootstrap))
    for _ in range(3):
        producer.produce(topic, value=b"x", partition=0)
    assert producer.flush(30) == 0
    with Cluster(kafka_bootstrap) as cluster:
        for _ in range(3):
            assert set(cluster.first_timestamps([(topic, 0, 0)], timeout=10)) == {(topic, 0)}
            assert [m.offset() for m in cluster.read([(topic, 0, 1, 3)], idle_s=10)] == [1, 2]

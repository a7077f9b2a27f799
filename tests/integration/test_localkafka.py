"""Maple's own Kafka: a stopped broker restarts with its data; three nodes survive losing one."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from apps import localkafka
from maple import kafka
from maple.topics import Topic
from tests.helpers.environment import local_kafka_settings


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer(kafka.producer_config(bootstrap, **{"message.timeout.ms": 30000}))
    errors: list[str] = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, _m: err and errors.append(str(err)))
    assert producer.flush(60) == 0 and errors == []


def _read_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(kafka.consumer_config(bootstrap, f"read-{time.time_ns()}"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    return got


def test_stop_is_idempotent_and_a_restarted_broker_keeps_its_data(tmp_path: Path) -> None:
    settings = local_kafka_settings(tmp_path)
    bootstrap = localkafka.start(settings)
    try:
        topic = "restart.check"
        kafka.ensure_topics(kafka.admin_client(bootstrap), 1, 1, [Topic(topic, "t", "t", "")])
        values = [f"kept-{i}".encode() for i in range(5)]
        _produce(bootstrap, topic, values)
        assert localkafka.stop(settings) == 1
        assert localkafka.stop(settings) == 0  # idempotent
        assert [row["pid"] for row in localkafka.status(settings)] == [None]
        assert (tmp_path / "kafka" / "node-1" / "broker.log").stat().st_size > 0

        assert localkafka.start(settings) == bootstrap
        assert _read_all(bootstrap, topic, 5) == values
    finally:
        localkafka.stop(settings)


def test_three_node_cluster_replicates_and_survives_losing_a_broker(tmp_path: Path) -> None:
    settings = local_kafka_settings(tmp_path, brokers=3)
    bootstrap = localkafka.start(settings)
    try:
        admin = kafka.admin_client(bootstrap)
        assert len(admin.list_topics(timeout=10).brokers) == 3
        topic = "replicated.check"
        kafka.ensure_topics(admin, 1, 3, [Topic(topic, "t", "t", "")])
        deadline = time.monotonic() + 30
        while not (partitions := admin.list_topics(topic, timeout=10).topics[topic].partitions):
            assert time.monotonic() < deadline, "topic metadata never showed the partition"
            time.sleep(0.2)
        partition = partitions[0]
        assert len(partition.replicas) == 3
        _produce(bootstrap, topic, [b"before"])

        # Lose one broker that is not the partition leader's controller-quorum majority: 2 of 3 remain.
        victim = next(row for row in localkafka.status(settings) if row["node"] != partition.leader)
        os.kill(int(victim["pid"]), signal.SIGKILL)
        _produce(bootstrap, topic, [b"after"])  # acks=all with min.insync.replicas=2 still succeeds
        assert _read_all(bootstrap, topic, 2) == [b"before", b"after"]
    finally:
        localkafka.stop(settings)

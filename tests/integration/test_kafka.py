"""Against the real broker: group commits, resume after a consumer restart, replay from an explicit offset."""

from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from maple import kafka
from maple.topics import Topic


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer(kafka.producer_config(bootstrap))
    failures: list[str] = []
    for value in values:
        producer.produce(topic, value=value, key=b"k", on_delivery=lambda err, _msg: err and failures.append(str(err)))
    assert producer.flush(30) == 0
    assert failures == []


def _read(consumer: Consumer, count: int, timeout_polls: int = 100) -> list[bytes]:
    got: list[bytes] = []
    polls = 0
    while len(got) < count and polls < timeout_polls:
        msg = consumer.poll(0.5)
        polls += 1
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg.value())
    return got


def _topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    created = kafka.ensure_topics(kafka.admin_client(bootstrap), partitions, 1, [Topic(name, "test", "test", "")])
    assert created == [name]


def test_group_commit_then_resume_after_restart(kafka_bootstrap: str, topic_name: str) -> None:
    _topic(kafka_bootstrap, topic_name)
    values = [f"record-{i}".encode() for i in range(20)]
    _produce(kafka_bootstrap, topic_name, values)
    group = f"{topic_name}.group"

    first = Consumer(kafka.consumer_config(kafka_bootstrap, group))
    first.subscribe([topic_name])
    batch = _read(first, 12)
    assert batch == values[:12]
    # "Process" only the first 8, commit exactly those: offsets point at the next record to read.
    first.commit(offsets=[TopicPartition(topic_name, 0, 8)], asynchronous=False)
    first.close()

    second = Consumer(kafka.consumer_config(kafka_bootstrap, group))
    second.subscribe([topic_name])
    assert _read(second, 12) == values[8:]  # resumes at the commit: nothing lost, nothing committed re-read
    committed = second.committed([TopicPartition(topic_name, 0)], timeout=10)
    assert committed[0].offset == 8
    second.close()


def test_replay_from_an_explicit_offset(kafka_bootstrap: str, topic_name: str) -> None:
    _topic(kafka_bootstrap, topic_name)
    values = [f"v{i}".encode() for i in range(10)]
    _produce(kafka_bootstrap, topic_name, values)
    replay = Consumer(kafka.consumer_config(kafka_bootstrap, f"{topic_name}.replay"))
    replay.assign([TopicPartition(topic_name, 0, 6)])
    assert _read(replay, 4) == values[6:]
    replay.close()


def test_ensure_topics_is_idempotent_and_uses_the_partition_count(kafka_bootstrap: str, topic_name: str) -> None:
    admin = kafka.admin_client(kafka_bootstrap)
    topic = Topic(topic_name, "test", "test", "")
    assert kafka.ensure_topics(admin, 3, 1, [topic]) == [topic_name]
    assert kafka.ensure_topics(admin, 3, 1, [topic]) == []
    assert len(admin.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 3


def test_probe_reports_an_unreachable_cluster() -> None:
    import pytest

    with pytest.raises(RuntimeError, match="127.0.0.1:1 is not reachable"):
        kafka.probe("127.0.0.1:1", timeout=2)

"""Kafka client factories: the producer, consumer and admin settings every stage shares."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from maple.log import kafka_client_logger
from maple.settings import Settings
from maple.topics import ALL_TOPICS, Topic

HEALTH_TOPIC = "maple.health"


def client_logging(kind: str) -> dict[str, Any]:
    """confluent-kafka settings that send librdkafka's log lines through Maple's logging (one format,
    Maple's level, rate-limited) instead of raw lines on stderr."""
    return {"logger": kafka_client_logger(kind)}


def bootstrap_servers(settings: Settings) -> str:
    """The configured cluster, or the local broker(s) Maple runs itself."""
    if settings.kafka.bootstrap:
        return settings.kafka.bootstrap
    return ",".join(f"127.0.0.1:{settings.kafka.port + i}" for i in range(settings.kafka.brokers))


def producer_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """Durable by default: idempotent, acks from all in-sync replicas, compressed batches. librdkafka's lines
    go through Maple's logging (polled by whoever polls the producer for its delivery reports)."""
    config: dict[str, Any] = {
        **client_logging("producer"),
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "zstd",
        "linger.ms": 5,
        "message.max.bytes": 16 * 1024 * 1024,
    }
    config.update(overrides)
    return config


def consumer_config(bootstrap: str, group: str, **overrides: Any) -> dict[str, Any]:
    """Offsets are committed explicitly after the downstream write, never automatically. librdkafka's lines
    go through Maple's logging, handed over by consume()/poll()."""
    config: dict[str, Any] = {
        **client_logging("consumer"),
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
    }
    config.update(overrides)
    return config


def admin_client(bootstrap: str, **overrides: Any) -> AdminClient:
    """An Admin API client for short-lived use (start-up, commands). A long-running process reads group
    commits through the consumer path instead (maple/consumer.py: librdkafka aborts the process when an Admin
    API coordinator request loses its connection). Wait for every future it returns (`settle`) before
    letting it go."""
    # librdkafka's own lines (e.g. "Purging N unserved events" when a short-lived client is destroyed) go
    # through Maple's logging, never raw onto stderr (maple/log.py); callers may name their own kind.
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, **client_logging("admin"), **overrides}
    return AdminClient(config)


def settle(futures: Iterable[concurrent.futures.Future[Any]], timeout: float) -> None:
    """Wait until every future is done (or `timeout` passed): the client that issued them must not be
    dropped while requests are in flight. Admin requests carry a request_timeout, so they always finish."""
    concurrent.futures.wait(list(futures), timeout=timeout)


def ensure_topics(admin: AdminClient, partitions: int, replication_factor: int,
                  topics: Iterable[Topic] = ALL_TOPICS, timeout: float = 30.0) -> list[str]:
    """Create any missing Maple topic; returns the names it created. Existing topics are left alone."""
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(t.name, num_partitions=partitions, replication_factor=replication_factor,
                       config={"max.message.bytes": str(16 * 1024 * 1024)})
              for t in topics if t.name not in existing]
    if not wanted:
        return []
    created = []
    futures = admin.create_topics(wanted, operation_timeout=timeout, request_timeout=timeout)
    settle(futures.values(), timeout + 5)  # every request over before one failure is raised and `admin` dropped
    for name, future in futures.items():
        try:
            future.result(0)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def create_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create every Maple topic that is missing, with the configured partitions and replication factor;
    returns the names created. Each process that reads or writes them calls this at start-up (idempotent),
    so no start order between the stages matters."""
    admin = admin_client(bootstrap_servers(settings), **client_logging("admin"))
    return ensure_topics(admin, settings.kafka.partitions, settings.kafka.replication_factor, ALL_TOPICS, timeout)


def start_group_at_end(bootstrap: str, group: str, topics: Iterable[str], timeout: float = 30.0) -> None:
    """Commit the current end offsets of `topics` for `group`, so that it reads only what comes next.

    For a group that has no running members (a fresh one, or one that is stopped)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         **client_logging("commit")})
    try:
        offsets = []
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
            for partition in partitions:
                _low, high = _end_offset(consumer, TopicPartition(topic, partition), timeout)
                offsets.append(TopicPartition(topic, partition, high))
        if offsets:
            consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def _end_offset(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """Watermark offsets, waiting out a just-created topic whose partition leaders are still being elected."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=max(0.1, deadline - time.monotonic()))
        except KafkaException as exc:
            retriable = exc.args[0].code() in (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                                               KafkaError.UNKNOWN_TOPIC_OR_PART)
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def probe(bootstrap: str, timeout: float = 10.0, replication_factor: int | None = None) -> None:
    """Prove the cluster works end to end: produce one record with acks=all, then consume it back.

    The probe topic (maple.health) is created on first use with `replication_factor` (Maple's
    kafka.replication_factor), or the cluster's own default.replication.factor when None; never with the
    number of brokers that happen to answer (a broker down at that moment would weaken it for good).
    Raises RuntimeError with the reason when it does not work within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    marker = uuid.uuid4().hex.encode()
    errors: list[str] = []
    quiet = {"log_level": 0}  # failures surface through the exception below, not librdkafka's stderr
    admin = admin_client(bootstrap, **quiet)
    try:
        if HEALTH_TOPIC not in admin.list_topics(timeout=max(0.1, deadline - time.monotonic())).topics:
            ensure_topics(admin, 1, replication_factor or -1, [Topic(HEALTH_TOPIC, "maple", "maple", "probe")],
                          timeout=max(0.1, deadline - time.monotonic()))
    except KafkaException as exc:
        raise RuntimeError(f"Kafka at {bootstrap} is not reachable: {exc.args[0].str()}") from exc
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 0, "message.timeout.ms": int(timeout * 1000),
                                                      **quiet}))
    delivered: list[TopicPartition] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append(TopicPartition(msg.topic(), msg.partition(), msg.offset()))

    producer.produce(HEALTH_TOPIC, value=marker, on_delivery=on_delivery)
    producer.flush(max(0.1, deadline - time.monotonic()))
    if not delivered:
        raise RuntimeError(f"Kafka at {bootstrap} did not acknowledge a probe record: "
                           f"{'; '.join(errors) or 'timed out'}")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"maple-probe-{marker.decode()}",
                         "enable.auto.commit": False, **client_logging("probe"), **quiet})
    try:
        consumer.assign(delivered)
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                errors.append(str(msg.error()))
                continue
            if msg.value() == marker:
                return
        raise RuntimeError(f"Kafka at {bootstrap} acknowledged a probe record but it could not be read "
                           f"back: {'; '.join(errors) or 'timed out'}")
    finally:
        consumer.close()

"""One broker of three goes away (issue 12): the ingest stays ready, and Maple never creates a topic with fewer
replicas than configured because a broker happened to be down."""

from __future__ import annotations

import time
from pathlib import Path

from apps import localkafka
from maple import kafka
from tests.helpers.environment import local_kafka_settings
from tests.helpers.ingest import IngestProcess, status


def _wait_gone(admin, topic: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{topic} was not deleted"
        time.sleep(0.5)


def test_losing_one_broker_of_three_neither_unreadies_the_ingest_nor_weakens_a_new_topic(tmp_path: Path) -> None:
    settings = local_kafka_settings(tmp_path, brokers=3)
    bootstrap = localkafka.start(settings)
    ingest = None
    try:
        admin = kafka.admin_client(bootstrap)
        replicas = admin.list_topics(kafka.HEALTH_TOPIC, timeout=10).topics[kafka.HEALTH_TOPIC].partitions[0].replicas
        assert len(replicas) == 3

        ingest = IngestProcess(bootstrap, {}).start()
        assert localkafka.kill(settings, [3]) == [3]
        answers = []
        deadline = time.monotonic() + 20  # several metadata checks, some of them to the dead broker
        while time.monotonic() < deadline:
            answers.append(status(f"{ingest.http}/readyz"))
            time.sleep(0.1)
        assert set(answers) == {200}, f"{answers.count(503)} of {len(answers)} /readyz answers were 503"

        # A probe topic created now must not get 2 replicas because only 2 brokers answer.
        kafka.settle(admin.delete_topics([kafka.HEALTH_TOPIC], operation_timeout=30).values(), 40)
        _wait_gone(admin, kafka.HEALTH_TOPIC)
        # Either the controller still counts the dead broker and places a replica on it, or the creation is
        # refused; the metadata lists two live brokers, and the topic must not get two replicas from that.
        try:
            kafka.probe(bootstrap, timeout=15)
        except RuntimeError as exc:
            assert "not reachable" in str(exc) or "did not acknowledge" in str(exc)
        topic = admin.list_topics(kafka.HEALTH_TOPIC, timeout=10).topics.get(kafka.HEALTH_TOPIC)
        if topic is not None and topic.partitions:
            assert len(topic.partitions[0].replicas) == 3
        localkafka.start(settings)  # node 3 back: the probe works, with the cluster's default of 3 replicas
        created = admin.list_topics(kafka.HEALTH_TOPIC, timeout=10).topics[kafka.HEALTH_TOPIC].partitions[0]
        assert len(created.replicas) == 3
    finally:
        if ingest is not None:
            ingest.stop()
        localkafka.stop(settings)

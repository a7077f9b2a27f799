"""The testcontainers path of the fixtures, exercised only where a Docker daemon answers."""

from __future__ import annotations

import pytest

from maple import kafka


@pytest.mark.docker
def test_testcontainers_kafka_broker_passes_the_probe(docker: bool) -> None:
    if not docker:
        pytest.skip("no Docker daemon reachable; the fixtures use Maple's local broker and embedded chDB instead")
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer("apache/kafka:4.1.2").with_kraft() as container:
        kafka.probe(container.get_bootstrap_server(), timeout=60)

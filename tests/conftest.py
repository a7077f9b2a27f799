"""Fixtures giving every integration test a real Kafka and a real ClickHouse engine.

Kafka: MAPLE_KAFKA_BOOTSTRAP if set; else a testcontainers broker if a Docker daemon answers; else
Maple's own local KRaft broker (jars from Maven Central), started once per session.
ClickHouse: MAPLE_CLICKHOUSE_URL if set; else a testcontainers server if Docker answers; else the
embedded chDB engine behind Maple's ClickHouse HTTP host, run in this process for the session.
Unit tests (tests/unit) ask for none of these, so `make test-fast` starts nothing.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import pytest

from apps import chhost, localkafka
from maple import clickhouse
from maple.net import free_port
from maple.settings import Settings, load_settings
from tests.helpers.environment import docker_available, local_kafka_settings


@pytest.fixture(scope="session")
def docker() -> bool:
    return docker_available()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory, docker: bool) -> Iterator[str]:
    if os.environ.get("MAPLE_KAFKA_BOOTSTRAP"):
        yield os.environ["MAPLE_KAFKA_BOOTSTRAP"]
        return
    if docker:
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.2").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    settings = local_kafka_settings(tmp_path_factory.mktemp("kafka"))
    bootstrap = localkafka.start(settings)
    try:
        yield bootstrap
    finally:
        localkafka.stop(settings)


@pytest.fixture(scope="session")
def clickhouse_settings(tmp_path_factory: pytest.TempPathFactory, docker: bool) -> Iterator[Settings]:
    """Settings that reach a real ClickHouse engine; embedded mode serves it from this process."""
    if os.environ.get("MAPLE_CLICKHOUSE_URL"):
        yield load_settings(environ={"MAPLE_CLICKHOUSE_URL": os.environ["MAPLE_CLICKHOUSE_URL"]})
        return
    if docker:
        from testcontainers.community.clickhouse import ClickHouseContainer

        with ClickHouseContainer("clickhouse/clickhouse-server:25.8") as container:
            url = (f"http://{container.username}:{container.password}@{container.get_container_host_ip()}:"
                   f"{container.get_exposed_port(8123)}/default")
            yield load_settings(environ={"MAPLE_CLICKHOUSE_URL": url})
        return
    settings = load_settings(environ={"MAPLE_DATA_DIR": str(tmp_path_factory.mktemp("clickhouse")),
                                      "MAPLE_CLICKHOUSE_EMBEDDED_PORT": str(free_port())})
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=chhost.serve, args=(settings,), kwargs={"ready": ready, "stop": stop},
                              name="embedded-clickhouse", daemon=True)
    thread.start()
    assert ready.wait(60), "the embedded ClickHouse host did not start"
    try:
        yield settings
    finally:
        stop.set()
        thread.join(30)


@pytest.fixture
def ch(clickhouse_settings: Settings) -> Iterator[object]:
    """A clickhouse-connect client on a fresh database, dropped afterwards."""
    client = clickhouse.connect(clickhouse_settings, in_process=False)
    database = f"test_{uuid.uuid4().hex[:12]}"
    clickhouse.ensure_database(client, database)
    client.database = database
    try:
        yield client
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
        client.close()


@pytest.fixture
def topic_name() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The UI tests' screenshots and performance figures, so CI's log says where they are."""
    from tests.helpers import browser

    if browser.REPORT:
        terminalreporter.section("web UI")
        for line in browser.REPORT:
            terminalreporter.write_line(line)

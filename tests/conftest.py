"""Fixtures giving every test a real Kafka and a real ClickHouse engine.

Kafka: MAPLE_KAFKA_BOOTSTRAP if set; else a testcontainers broker if a Docker daemon answers; else
Maple's own local KRaft broker (jars from Maven Central), started once per session.
ClickHouse: MAPLE_CLICKHOUSE_URL if set; else a testcontainers server if Docker answers; else the
embedded chDB engine behind Maple's ClickHouse HTTP host, run in this process for the session.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from maple import chhost, clickhouse, localkafka
from maple.net import free_port
from maple.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent


def docker_available() -> bool:
    """True only when a Docker daemon actually answers (a docker CLI alone is not enough)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return True
    except Exception:
        return False


def clean_environ(**values: str) -> dict[str, str]:
    """The process environment without MAPLE_* variables, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPLE_")}
    env.update(values)
    return env


def local_kafka_settings(data_dir: Path, brokers: int = 1) -> Settings:
    port = free_port()
    controller = free_port()
    # Multi-node clusters take consecutive ports; find a run that is free.
    while brokers > 1 and not all(_port_free(p) for p in [*range(port, port + brokers),
                                                           *range(controller, controller + brokers)]):
        port, controller = free_port(), free_port()
    return load_settings(environ={"MAPLE_DATA_DIR": str(data_dir), "MAPLE_KAFKA_PORT": str(port),
                                 "MAPLE_KAFKA_CONTROLLER_PORT": str(controller),
                                 "MAPLE_KAFKA_BROKERS": str(brokers), "MAPLE_KAFKA_HEAP": "384m"})


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


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

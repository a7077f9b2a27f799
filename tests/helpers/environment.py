"""The test environment: is Docker there, a clean process environment, settings for a local Kafka.

Used by the fixtures in tests/conftest.py and by integration tests that run their own broker.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from maple.net import free_port
from maple.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent.parent


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

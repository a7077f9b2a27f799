"""Static checks of the deploy files: they parse, and agree with Maple's settings, commands and versions."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from maple import localkafka
from maple.cli import build_parser
from maple.settings import load_settings
from tests.conftest import REPO


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_maple_services_use_real_settings_and_commands() -> None:
    compose = _compose()
    maple_services = {name: svc for name, svc in compose["services"].items() if svc.get("image") == "maple:dev"}
    assert {"schema", "ingest", "worker", "sink"} <= set(maple_services)
    parser = build_parser()
    for name, service in maple_services.items():
        settings = load_settings(environ=service["environment"])  # raises on any unknown or invalid MAPLE_*
        assert settings.kafka.bootstrap == "kafka:9092"
        assert settings.clickhouse.url == ("http://maple:maple@clickhouse:8123/otel",)
        parser.parse_args(service["command"])  # exits on an unknown command


def test_compose_kafka_matches_the_pinned_broker_version_and_clickhouse_database() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{localkafka.KAFKA_VERSION}"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["clickhouse"]["environment"]["CLICKHOUSE_DB"] == load_settings(environ={}).clickhouse.database


def test_dockerfile_copies_every_package_the_project_ships() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    for package in packages:
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.MULTILINE), package


def test_docker_compose_config_validates_where_the_plugin_exists() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here")
    result = subprocess.run([docker, "compose", "-f", str(REPO / "docker-compose.yml"), "config", "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

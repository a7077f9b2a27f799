"""`maple up`'s port pre-flight: the table of (setting, port), and what a taken or doubled port reports."""

from __future__ import annotations

import socket

from apps.ports import PortClaim, check, claims
from maple.settings import load_settings


def test_the_table_has_a_row_for_every_port_up_will_listen_on() -> None:
    settings = load_settings(environ={"MAPLE_KAFKA_BROKERS": "2"})
    rows = {(row.setting, row.port) for row in claims(settings)}
    assert rows == {("kafka.port", 9092), ("kafka.port", 9093), ("kafka.controller_port", 9192),
                    ("kafka.controller_port", 9193), ("clickhouse.embedded_port", 8123), ("ingest.grpc_port", 4317),
                    ("ingest.http_port", 4318), ("api.port", 8080), ("worker.metrics_port", 9465),
                    ("sink.metrics_port", 9464)}
    # Parts Maple does not run itself claim nothing; a metrics port of 0 is off.
    remote = load_settings(environ={"MAPLE_KAFKA_BOOTSTRAP": "k:9092", "MAPLE_CLICKHOUSE_URL": "http://ch:8123",
                                    "MAPLE_WORKER_METRICS_PORT": "0"})
    assert {row.setting for row in claims(remote)} == {"ingest.grpc_port", "ingest.http_port", "api.port",
                                                      "sink.metrics_port"}


def test_a_taken_port_is_named_with_its_setting_and_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        findings = check([PortClaim("ingest.http_port", port, "127.0.0.1", "OTLP/HTTP")])
        assert findings.errors == [f"port {port} is already in use: 127.0.0.1:{port} (OTLP/HTTP; setting "
                                   f"ingest.http_port, MAPLE_INGEST_HTTP_PORT); stop what listens there, or choose "
                                   f"another port with MAPLE_INGEST_HTTP_PORT=<port>"]
        # A taken metrics port only warns: the sink runs without /metrics.
        alone = check([PortClaim("sink.metrics_port", port, "0.0.0.0", "sink /metrics", required=False)])
        assert alone.errors == [] and "sink /metrics will not be served" in alone.warnings[0]
        # A port `maple up` reuses (a local Kafka that already runs) is not a conflict.
        assert check([PortClaim("kafka.port", port, "127.0.0.1", "Kafka node 1")], ours=[port]).errors == []


def test_a_port_given_to_two_settings_is_refused() -> None:
    settings = load_settings(environ={"MAPLE_INGEST_HTTP_PORT": "8123"})
    findings = check(claims(settings), ours=[row.port for row in claims(settings)])
    assert findings.errors == ["port 8123 is configured twice: clickhouse.embedded_port "
                               "(MAPLE_CLICKHOUSE_EMBEDDED_PORT) and ingest.http_port (MAPLE_INGEST_HTTP_PORT); give one "
                               "of them another port"]

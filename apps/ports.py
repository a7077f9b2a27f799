"""`maple up`'s port pre-flight: every port it will listen on, checked before anything starts.

One row per (setting, port): a child that listens on a port adds its row in `claims`, and a taken port
stops `maple up` before Kafka or ClickHouse start, naming the port, the setting and its variable. Rows that
are not `required` (a stage's Prometheus port: the stage runs without it) only warn.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from maple.settings import Settings, env_var


@dataclass(frozen=True)
class PortClaim:
    setting: str          # the settings key, e.g. "ingest.http_port"
    port: int
    host: str             # the address the child will listen on
    what: str             # who listens there, for the message
    required: bool = True

    def describe(self) -> str:
        return f"{self.host}:{self.port} ({self.what}; setting {self.setting}, {env_var(self.setting)})"


def claims(settings: Settings) -> list[PortClaim]:
    """The table: every port `maple up` will listen on with these settings."""
    rows: list[PortClaim] = []
    kafka = settings.kafka
    if settings.local_kafka:
        for i in range(kafka.brokers):
            node = f"Kafka node {i + 1}" + (f", port + {i}" if i else "")
            rows.append(PortClaim("kafka.port", kafka.port + i, "127.0.0.1", node))
            rows.append(PortClaim("kafka.controller_port", kafka.controller_port + i, "127.0.0.1",
                                  f"{node} (KRaft controller)"))
    if settings.embedded_clickhouse:
        ch = settings.clickhouse
        rows.append(PortClaim("clickhouse.embedded_port", ch.embedded_port, ch.embedded_host,
                              "embedded ClickHouse HTTP"))
    ingest = settings.ingest
    rows.append(PortClaim("ingest.grpc_port", ingest.grpc_port, ingest.host, "OTLP/gRPC"))
    rows.append(PortClaim("ingest.http_port", ingest.http_port, ingest.host, "OTLP/HTTP"))
    rows.append(PortClaim("api.port", settings.api.port, settings.api.host, "query API and web UI"))
    # Prometheus servers listen on every address (prometheus_client's default); 0 turns them off.
    for key, port, what in (("worker.metrics_port", settings.worker.metrics_port, "worker /metrics"),
                            ("sink.metrics_port", settings.sink.metrics_port, "sink /metrics")):
        if port:
            rows.append(PortClaim(key, port, "0.0.0.0", what, required=False))
    return rows


def listen_error(host: str, port: int) -> OSError | None:
    """Why a server could not listen on host:port right now (None: it could).

    Binds with SO_REUSEADDR as the servers do, so a port left in TIME_WAIT by a stopped process counts as free
    and only a live listener (or an address this machine does not have) counts as taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return exc
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc
    return None


@dataclass(frozen=True)
class Findings:
    errors: list[str]
    warnings: list[str]


def check(rows: Iterable[PortClaim], ours: Iterable[int] = ()) -> Findings:
    """Duplicates within the table, and ports something else already listens on.

    `ours`: ports held by parts `maple up` reuses rather than starts (a local Kafka already running)."""
    skip = set(ours)
    errors: list[str] = []
    warnings: list[str] = []
    seen: dict[int, PortClaim] = {}
    for row in rows:
        earlier = seen.get(row.port)
        if earlier is not None:
            errors.append(f"port {row.port} is configured twice: {earlier.setting} ({env_var(earlier.setting)}) "
                          f"and {row.setting} ({env_var(row.setting)}); give one of them another port")
            continue
        seen[row.port] = row
        if row.port in skip:
            continue
        error = listen_error(row.host, row.port)
        if error is None:
            continue
        if error.errno == errno.EADDRINUSE:
            problem = f"port {row.port} is already in use: {row.describe()}"
            fix = f"stop what listens there, or choose another port with {env_var(row.setting)}=<port>"
        else:
            problem = f"cannot listen on {row.describe()}: {error.strerror or error}"
            fix = f"check {row.setting} and the address it listens on"
        if row.required:
            errors.append(f"{problem}; {fix}")
        else:
            warnings.append(f"{problem}; {row.what} will not be served ({fix})")
    return Findings(errors, warnings)

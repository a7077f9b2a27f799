"""Helpers for ingest tests: run `maple ingest` as a process, and read what it wrote to Kafka."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from maple import kafka
from maple.net import free_port
from tests.helpers.stages import Stage


class IngestProcess(Stage):
    """`maple ingest` on free ports, started and waited for until /readyz answers.

    With TLS on the ingest (MAPLE_INGEST_TLS_* in `env`), `ssl_context` is the client context /readyz is
    asked with (it must trust the server, and hold a client certificate for mutual TLS)."""

    def __init__(self, bootstrap: str, env: dict[str, str], ssl_context: ssl.SSLContext | None = None) -> None:
        self.bootstrap = bootstrap
        self.ssl_context = ssl_context
        self.http_port, self.grpc_port = free_port(), free_port()
        super().__init__(["ingest"], {"MAPLE_KAFKA_BOOTSTRAP": bootstrap, "MAPLE_INGEST_HTTP_PORT": str(self.http_port),
                                      "MAPLE_INGEST_GRPC_PORT": str(self.grpc_port), **env})

    @property
    def http(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> IngestProcess:
        super().start()
        deadline = time.monotonic() + 60
        while status(f"{self.http}/readyz", self.ssl_context) != 200:
            if not self.alive:
                raise AssertionError("maple ingest exited:\n" + self.output())
            assert time.monotonic() < deadline, "maple ingest never became ready:\n" + self.output()
            time.sleep(0.2)
        return self


def status(url: str, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer(kafka.consumer_config(bootstrap, "offsets-probe"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        # A topic the ingest has just created may still be electing its partition leaders: wait them out.
        return {p: kafka._end_offset(consumer, TopicPartition(topic, p), 10)[1] for p in partitions}
    finally:
        consumer.close()


def read_since(bootstrap: str, topic: str, start: dict[int, int], timeout: float = 30) -> list[Any]:
    """Every record written to `topic` after the `start` offsets (taken with end_offsets)."""
    end = end_offsets(bootstrap, topic)
    wanted = {p: e for p, e in end.items() if e > start.get(p, 0)}
    consumer = Consumer(kafka.consumer_config(bootstrap, "reader"))
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in wanted])
    records: list[Any] = []
    remaining = sum(wanted[p] - start.get(p, 0) for p in wanted)
    deadline = time.monotonic() + timeout
    while remaining > 0 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        records.append(msg)
        remaining -= 1
    consumer.close()
    assert remaining == 0, f"{remaining} records could not be read back"
    return records


def numbered_log_request(service: str, seq: int, records: int) -> bytes:
    """An OTLP logs request whose records carry `seq`-`i` in attribute "seq": counting distinct values in
    ClickHouse then shows any record lost or stored twice."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name", value={"string_value": service})
    scope_logs = resource_logs.scope_logs.add()
    now = time.time_ns()
    for i in range(records):
        record = scope_logs.log_records.add(time_unix_nano=now + i, severity_number=9)
        record.body.string_value = f"request {seq} line {i}"
        record.attributes.add(key="seq", value={"string_value": f"{seq}-{i}"})
    return request.SerializeToString()

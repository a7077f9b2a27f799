"""Kafka goes away mid-run: clients get 503/UNAVAILABLE, and every request they were told succeeded is in
Kafka exactly once after it comes back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from apps import localkafka
from maple import kafka
from maple.topics import RAW_TRACES
from tests.helpers.environment import local_kafka_settings
from tests.helpers.ingest import IngestProcess, post, status


def _request(seq: int) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name=f"req-{seq}", trace_id=seq.to_bytes(16, "big"),
                                                             span_id=b"\x01" * 8)
    return request.SerializeToString()


class Sender(threading.Thread):
    """Sends numbered requests back to back and remembers each answer."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: dict[int, int] = {}
        self.retry_after: set[str] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        seq = 0
        while not self.halt.is_set():
            code, headers, _ = post(self.url, _request(seq), {"Content-Type": "application/x-protobuf"})
            self.answers[seq] = code
            if code == 503:
                self.retry_after.add(headers.get("Retry-After", ""))
            seq += 1
            time.sleep(0.01)

    def count(self, code: int) -> int:
        return sum(1 for c in list(self.answers.values()) if c == code)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_kafka_outage_gives_503_and_loses_or_duplicates_no_acknowledged_request(tmp_path: Path) -> None:
    settings = local_kafka_settings(tmp_path)
    bootstrap = localkafka.start(settings)
    ingest = IngestProcess(bootstrap, {"MAPLE_INGEST_KAFKA_TIMEOUT_S": "3"}).start()
    sender = Sender(f"{ingest.http}/v1/traces")
    try:
        sender.start()
        _wait(lambda: sender.count(200) >= 50, 60, "successes before the outage")
        localkafka.stop(settings)
        _wait(lambda: sender.count(503) >= 20, 60, "503s while Kafka is down")
        assert status(f"{ingest.http}/readyz") == 503
        ok_during = sender.count(200)
        localkafka.start(settings)
        _wait(lambda: sender.count(200) >= ok_during + 50, 90, "successes after Kafka came back")
        assert status(f"{ingest.http}/readyz") == 200
    finally:
        sender.halt.set()
        sender.join(60)
        ingest.stop()
    assert sender.retry_after == {"5"}
    assert set(sender.answers.values()) <= {200, 503}, sender.answers

    consumer = Consumer(kafka.consumer_config(bootstrap, "outage-check"))
    partitions = consumer.list_topics(RAW_TRACES.name, timeout=10).topics[RAW_TRACES.name].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(RAW_TRACES.name, p), timeout=10)[1] for p in partitions}
    consumer.assign([TopicPartition(RAW_TRACES.name, p, 0) for p in partitions])
    stored: list[str] = []
    remaining = sum(ends.values())
    deadline = time.monotonic() + 60
    while remaining and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        remaining -= 1
        part = trace_service_pb2.ExportTraceServiceRequest.FromString(msg.value())
        stored.append(part.resource_spans[0].scope_spans[0].spans[0].name)
    consumer.close()
    localkafka.stop(settings)

    acknowledged = {f"req-{seq}" for seq, code in sender.answers.items() if code == 200}
    counts = {name: stored.count(name) for name in acknowledged}
    assert all(n == 1 for n in counts.values()), {k: v for k, v in counts.items() if v != 1}
    assert len(acknowledged) >= 100

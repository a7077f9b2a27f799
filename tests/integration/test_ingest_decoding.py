"""One client cannot stall or inflate the ingest (issue 12): big requests are decoded in parse processes
under a memory cap, while everyone else is served.

No timing is asserted here; `maple bench ingest-limits` measures /healthz latency and memory.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.helpers.ingest import IngestProcess, post, status

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def _small_traces(seq: int) -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.add(name=f"small-{seq}", trace_id=seq.to_bytes(16, "big"),
                                                             span_id=b"\x01" * 8)
    return request.SerializeToString()


def _tiny_json_logs(records: int) -> bytes:
    """OTLP/JSON of many tiny log records: the costliest JSON to decode per byte."""
    record = b'{"body":{"stringValue":"x"}},'
    return b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + record * (records - 1) + record[:-1] + b']}]}]}'


def _empty_protobuf_logs(records: int) -> bytes:
    """Protobuf of empty log records, 2 bytes each: the costliest protobuf to decode per byte (~68x)."""
    def field(tag: int, payload: bytes) -> bytes:
        length, varint = len(payload), bytearray()
        while True:
            low, length = length & 0x7F, length >> 7
            varint.append(low | (0x80 if length else 0))
            if not length:
                return bytes([tag]) + bytes(varint) + payload
    return field(0x0A, field(0x12, b"\x12\x00" * records))  # resource_logs -> scope_logs -> log_records


@pytest.fixture(scope="module")
def ingest(kafka_bootstrap: str) -> Iterator[IngestProcess]:
    process = IngestProcess(kafka_bootstrap, {"MAPLE_INGEST_PARSE_PROCESSES": "1",
                                              "MAPLE_INGEST_PARSE_MEMORY_BYTES": str(96 * 1024 * 1024)}).start()
    yield process
    process.stop()


def test_other_clients_are_served_while_a_big_json_request_is_decoded(ingest: IngestProcess) -> None:
    big = _tiny_json_logs(100_000)  # 2.9 MB, seconds of decoding, well under the cap
    answers: dict[str, int] = {}

    def send_big() -> None:
        answers["big"] = post(f"{ingest.http}/v1/logs", big, JSON)[0]

    sender = threading.Thread(target=send_big)
    sender.start()
    served_meanwhile = 0
    seq = 0
    deadline = time.monotonic() + 300
    while "big" not in answers and time.monotonic() < deadline:
        code = post(f"{ingest.http}/v1/traces", _small_traces(seq), PROTOBUF)[0]
        healthy = status(f"{ingest.http}/healthz")
        if "big" not in answers:  # answered while the big request was still being decoded
            served_meanwhile += code == 200 and healthy == 200
        seq += 1
    sender.join(60)
    assert answers.get("big") == 200
    # With the parse on the event loop, nothing else was answered until the big request's decode ended.
    assert served_meanwhile >= 10, served_meanwhile


def test_a_request_too_costly_to_decode_gets_413_and_the_ingest_goes_on(ingest: IngestProcess) -> None:
    # 1.5 M empty records in 3 MB of protobuf need about 200 MB to decode: over the 96 MiB cap.
    code, _, body = post(f"{ingest.http}/v1/logs", _empty_protobuf_logs(1_500_000), PROTOBUF)
    assert code == 413
    # upb either fails the allocation (MemoryError: "... parse memory cap ...") or its process dies of it
    # ("the parse process died ... past its memory cap ..."); both answers name the cap and its setting.
    assert "memory cap of 96 MiB (ingest.parse_memory_bytes)" in status_pb2.Status.FromString(body).message
    # OTLP/JSON past the cap may kill its parse process instead: the request gets 413, the process is replaced.
    code, _, body = post(f"{ingest.http}/v1/logs", _tiny_json_logs(2_000_000), JSON)
    assert code == 413 and "ingest.parse_memory_bytes" in json.loads(body)["message"]
    assert post(f"{ingest.http}/v1/logs", _tiny_json_logs(1_000), JSON)[0] == 200
    assert post(f"{ingest.http}/v1/logs", _empty_protobuf_logs(200_000), PROTOBUF)[0] == 200
    assert ingest.alive


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def test_a_parse_process_killed_while_idle_is_replaced_before_the_next_request(ingest: IngestProcess) -> None:
    assert ingest.proc is not None
    children = _children(ingest.proc.pid)
    assert children, "the ingest runs no parse process"
    for pid in children:  # as the OOM killer would
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    assert post(f"{ingest.http}/v1/logs", _tiny_json_logs(10), JSON)[0] == 200
    assert ingest.alive

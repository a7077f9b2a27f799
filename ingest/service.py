"""The receiver core both protocols share: authenticate, bound memory, decode, split, produce, count.

HTTP and gRPC differ only in how they carry bytes and report errors; each maps the exceptions below
to its own status codes (see ingest/http.py and ingest/grpc.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from ingest.decoding import Decoder, TooCostly
from ingest.metrics import IngestMetrics
from ingest.otlp import InvalidRequest, Signal
from maple.producer import AsyncProducer, Headers, KafkaBacklogFull, KafkaUnavailable, Record
from maple.topics import HEADER_ENCODING, HEADER_RECEIVED_NS, HEADER_TENANT

__all__ = [
    "IngestService",
    "InvalidRequest",
    "KafkaBacklogFull",
    "KafkaUnavailable",
    "Outcome",
    "Overloaded",
    "TooCostly",
    "Unauthenticated",
]


class Unauthenticated(PermissionError):
    """A key is required and the request had none, or an unknown one."""


class Overloaded(RuntimeError):
    """The in-flight byte budget is spent; the client should retry after a delay."""


@dataclass(frozen=True)
class Outcome:
    accepted: int
    rejected: int
    message: str = ""


class InflightBudget:
    """Bytes held by requests that Kafka has not acknowledged yet (memory-limiter semantics)."""

    def __init__(self, limit: int, metrics: IngestMetrics) -> None:
        self.limit = limit
        self.used = 0
        self._gauge = metrics.inflight

    def acquire(self, size: int) -> None:
        if size and self.used + size > self.limit:
            raise Overloaded(f"in-flight budget of {self.limit} bytes is spent")
        self.used += size
        self._gauge.set(self.used)

    def release(self, size: int) -> None:
        self.used -= size
        self._gauge.set(self.used)


class IngestService:
    def __init__(self, writer: AsyncProducer, metrics: IngestMetrics, decoder: Decoder, *, max_request_bytes: int,
                 max_inflight_bytes: int, api_keys: dict[str, str], api_key_header: str) -> None:
        self.writer = writer
        self.metrics = metrics
        self.decoder = decoder
        self.max_request_bytes = max_request_bytes
        self.max_value_bytes = decoder.max_value_bytes
        self.budget = InflightBudget(max_inflight_bytes, metrics)
        self.api_keys = api_keys
        self.api_key_header = api_key_header.lower()

    def tenant(self, credential: str | None) -> str:
        """The tenant for the API key header's value; 'default' when no keys are configured."""
        if not self.api_keys:
            return "default"
        if credential and self.api_key_header == "authorization":
            scheme, _, credential = credential.partition(" ")
            if scheme.lower() != "bearer":
                credential = ""
        tenant = self.api_keys.get((credential or "").strip())
        if tenant is None:
            raise Unauthenticated(f"a valid API key is required in the {self.api_key_header} header")
        return tenant

    async def export(self, signal: Signal, body: bytes, encoding: str, tenant: str, protocol: str) -> Outcome:
        """Validate and count one request, and return once Kafka holds every part of it."""
        received_ns = time.time_ns()
        self.metrics.bytes.labels(signal.name, protocol).inc(len(body))
        decoded = await self.decoder.decode(signal, body, encoding)  # off the event loop unless small protobuf
        items, rejected = decoded.items, decoded.rejected
        if items == 0:
            return Outcome(0, 0)
        values = [body] if decoded.values is None else decoded.values  # None: the client's bytes, untouched
        held = 0 if decoded.values is None else sum(map(len, values))
        self.budget.acquire(held)  # converted or split values are held too, until Kafka acknowledged them
        try:
            return await self._write(signal, values, items, rejected, encoding, tenant, received_ns)
        finally:
            self.budget.release(held)

    async def _write(self, signal: Signal, values: list[bytes], items: int, rejected: int, encoding: str,
                     tenant: str, received_ns: int) -> Outcome:
        message = ""
        if rejected:
            message = (f"{rejected} {signal.name} item(s) could not be stored: each alone exceeds the Kafka "
                       f"record limit of {self.max_value_bytes} bytes")
            self.metrics.rejections.labels("oversize_item").inc()
            self.metrics.items.labels(signal.name, "rejected").inc(rejected)
        if values:
            headers: Headers = [(HEADER_TENANT, tenant.encode()), (HEADER_ENCODING, encoding.encode()),
                       (HEADER_RECEIVED_NS, str(received_ns).encode())]
            # A random key spreads records evenly over partitions (a request has no natural key).
            waited = await self.writer.write([Record(signal.topic.name, value, headers, key=uuid.uuid4().bytes)
                                              for value in values])
            self.metrics.produce_seconds.labels(signal.name).observe(waited)
            self.metrics.records.labels(signal.name).inc(len(values))
        self.metrics.items.labels(signal.name, "accepted").inc(items - rejected)
        return Outcome(items - rejected, rejected, message)


@dataclass(frozen=True)
class Refusal:
    """How a refused request is reported: the metrics reason, the HTTP status and the gRPC code."""

    reason: str
    http_status: int
    grpc_code: int  # google.rpc.Code
    retry: bool     # the client should retry (429/503, RESOURCE_EXHAUSTED with RetryInfo, UNAVAILABLE)
    message: str


def refusal_for(exc: BaseException) -> Refusal | None:
    """Map a receiver exception to its OTLP-specified answer; None for an unexpected exception."""
    from google.rpc import code_pb2

    from maple.compression import CorruptPayload, PayloadTooLarge, UnsupportedEncoding

    table: list[tuple[type[BaseException], str, int, int, bool]] = [
        (InvalidRequest, "invalid", 400, code_pb2.INVALID_ARGUMENT, False),
        (CorruptPayload, "invalid", 400, code_pb2.INVALID_ARGUMENT, False),
        (PayloadTooLarge, "too_large", 413, code_pb2.RESOURCE_EXHAUSTED, False),
        (TooCostly, "too_costly", 413, code_pb2.RESOURCE_EXHAUSTED, False),
        (UnsupportedEncoding, "unsupported_encoding", 415, code_pb2.INVALID_ARGUMENT, False),
        (Unauthenticated, "unauthenticated", 401, code_pb2.UNAUTHENTICATED, False),
        (Overloaded, "overloaded", 429, code_pb2.RESOURCE_EXHAUSTED, True),
        (KafkaBacklogFull, "overloaded", 429, code_pb2.RESOURCE_EXHAUSTED, True),
        (KafkaUnavailable, "kafka_unavailable", 503, code_pb2.UNAVAILABLE, True),
    ]
    for kind, reason, http_status, grpc_code, retry in table:
        if isinstance(exc, kind):
            return Refusal(reason, http_status, grpc_code, retry, str(exc))
    return None

"""An asyncio facade over the idempotent Kafka producer: produce records, await Kafka's acknowledgement.

The ingest (raw requests) and the workers (row batches) both write through it. The producer (acks=all,
idempotent) runs its own threads; a poll thread turns delivery reports into resolved futures on the
event loop. Readiness follows the cluster: librdkafka's all-brokers-down error clears it at once, a
metadata check every second sets it again, and clears it only after several checks failed in a row (one
broker of three going away fails a check or two, not the cluster), so callers can fail fast while Kafka
is away.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import ConfigResource, ResourceType

from maple import kafka as kafka_clients

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024  # Kafka's default max.message.bytes
RECORD_OVERHEAD_BYTES = 4096  # headers, key and batch framing beside the value


# Metadata checks that must fail in a row before the producer calls Kafka unavailable. librdkafka's
# all-brokers-down error still clears readiness at once.
UNREADY_AFTER_FAILURES = 3


class Readiness:
    """Consecutive-failure rule for the periodic metadata check: one success makes ready, `failures` in a
    row make unready. Pure (no clock, no I/O) so the rule is tested on plain values."""

    def __init__(self, failures: int = UNREADY_AFTER_FAILURES) -> None:
        self.failures = failures
        self.failed = 0

    def observe(self, ok: bool) -> bool | None:
        """The readiness this check implies: True, False, or None (no change yet)."""
        if ok:
            self.failed = 0
            return True
        self.failed += 1
        return False if self.failed >= self.failures else None


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge; the client should retry later."""


class KafkaBacklogFull(RuntimeError):
    """The producer's local queue is full; the client should retry later."""


# confluent-kafka's header list type
Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True)
class Record:
    topic: str
    value: bytes
    headers: Headers
    key: bytes | None = None
    partition: int | None = None  # None: the partitioner picks from the key
    timestamp_ms: int | None = None  # None: the time of producing


class AsyncProducer:
    def __init__(self, bootstrap: str, timeout_s: float, on_ready_change: Any = None,
                 on_fatal: Any = None, **overrides: Any) -> None:
        self.bootstrap = bootstrap
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._on_ready_change = on_ready_change
        self._on_fatal = on_fatal
        self._fatal: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.producer = Producer(kafka_clients.producer_config(bootstrap, **{
            "message.timeout.ms": int(timeout_s * 1000),
            "message.max.bytes": 64 * 1024 * 1024,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "error_cb": self._on_error,
            "log_level": 3,
            **overrides,
        }))
        self._threads = [threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True),
                         threading.Thread(target=self._health_loop, name="kafka-health", daemon=True)]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver acknowledgements to `loop` from now on; idempotent."""
        if self._loop is not None:
            return
        self._loop = loop
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 15.0) -> int:
        """Wait for outstanding acknowledgements, then stop; returns records still unacknowledged."""
        remaining = self.producer.flush(timeout)
        self._closing.set()
        for thread in self._threads:
            thread.join(5)
        return remaining

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _set_ready(self, ready: bool, reason: str = "") -> None:
        if ready and self._fatal is not None:
            return  # a producer in a fatal state never serves again
        if ready == self._ready.is_set():
            return
        if ready:
            self._ready.set()
            log.info("Kafka at %s is reachable", self.bootstrap)
        else:
            self._ready.clear()
            log.warning("Kafka at %s is unavailable: %s", self.bootstrap, reason)
        if self._on_ready_change is not None:
            self._on_ready_change(ready)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            self._set_ready(False, err.str())
        if err.fatal() and self._on_fatal is not None:
            self._on_fatal(err)

    def _poll_loop(self) -> None:
        while not self._closing.is_set():
            self.producer.poll(0.05)

    def _health_loop(self) -> None:
        readiness = Readiness()
        while not self._closing.is_set():
            try:
                metadata = self.producer.list_topics(timeout=2)
                ok, reason = bool(metadata.brokers), "no brokers in metadata"
            except KafkaException as exc:
                ok, reason = False, exc.args[0].str()
            verdict = readiness.observe(ok)
            if verdict is not None:
                self._set_ready(verdict, f"{reason} ({readiness.failed} checks failed in a row)")
            self._closing.wait(1.0)

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- topics ------------------------------------------------------------------------------------

    def max_value_bytes(self, topics: Sequence[str], timeout: float = 10.0) -> int:
        """The largest record value every topic accepts: the smallest max.message.bytes, less overhead."""
        admin = kafka_clients.admin_client(self.bootstrap)
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
        deadline = time.monotonic() + timeout
        while True:  # a just-created topic is briefly unknown to the broker answering
            try:
                futures = admin.describe_configs(resources, request_timeout=timeout)
                kafka_clients.settle(futures.values(), timeout + 5)  # never drop `admin` with requests in flight
                limits = [int(f.result(0)["max.message.bytes"].value) for f in futures.values()]
                return min(limits) - RECORD_OVERHEAD_BYTES
            except (KafkaException, KeyError, ValueError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    log.warning("could not read max.message.bytes of %s (%s); assuming Kafka's default %d",
                                ", ".join(topics), exc, DEFAULT_MAX_MESSAGE_BYTES)
                    return DEFAULT_MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES
                time.sleep(0.3)

    # -- producing ---------------------------------------------------------------------------------

    def produce_all(self, records: Sequence[Record]) -> asyncio.Future[float]:
        """Queue `records` in order; the future resolves (seconds waited) once Kafka acknowledged all.

        It fails with KafkaUnavailable if any was not acknowledged. Raises KafkaBacklogFull at once if the
        local queue is full. Call from the event loop thread.
        """
        assert self._loop is not None
        loop = self._loop
        started = time.perf_counter()
        done: asyncio.Future[float] = loop.create_future()
        if not records:
            done.set_result(0.0)
            return done
        remaining = [len(records)]

        def settle(err: KafkaError | None) -> None:
            if done.done():
                return
            if err is not None:
                done.set_exception(KafkaUnavailable(f"Kafka did not acknowledge: {err.str()}"))
                return
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set_result(time.perf_counter() - started)

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            loop.call_soon_threadsafe(settle, err)

        for record in records:
            kwargs: dict[str, Any] = {"value": record.value, "headers": record.headers, "on_delivery": on_delivery}
            if record.key is not None:
                kwargs["key"] = record.key
            if record.partition is not None:
                kwargs["partition"] = record.partition
            if record.timestamp_ms is not None:
                kwargs["timestamp"] = record.timestamp_ms
            try:
                self.producer.produce(record.topic, **kwargs)
            except BufferError as exc:
                # Records already queued still get delivery reports; they find `done` settled.
                if not done.done():
                    done.set_exception(KafkaBacklogFull("the Kafka producer queue is full"))
                raise KafkaBacklogFull("the Kafka producer queue is full") from exc
        return done

    async def write(self, records: Sequence[Record]) -> float:
        """Produce `records` and return once Kafka acknowledged all of them (seconds waited)."""
        if not self._ready.is_set():
            raise KafkaUnavailable(f"Kafka at {self.bootstrap} is unavailable")
        return await self.produce_all(records)


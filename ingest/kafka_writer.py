"""Produce accepted requests to Kafka and wait for the acknowledgement, from asyncio.

The idempotent producer (acks=all) runs its own threads; a poll thread turns delivery reports into
resolved futures on the event loop. Readiness follows the cluster: librdkafka's all-brokers-down error
clears it, and a metadata check every second sets it again, so requests fail fast with 503 while Kafka
is away instead of queueing until they time out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import ConfigResource, ResourceType

from maple import kafka as kafka_clients

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024  # Kafka's default max.message.bytes
RECORD_OVERHEAD_BYTES = 4096  # headers, key and batch framing beside the value


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge; the client should retry later."""


class KafkaBacklogFull(RuntimeError):
    """The producer's local queue is full; the client should retry later."""


class KafkaWriter:
    def __init__(self, bootstrap: str, timeout_s: float, on_ready_change: Any = None) -> None:
        self.bootstrap = bootstrap
        self._ready = threading.Event()
        self._closing = threading.Event()
        self._on_ready_change = on_ready_change
        self._loop: asyncio.AbstractEventLoop | None = None
        self.producer = Producer(kafka_clients.producer_config(bootstrap, **{
            "message.timeout.ms": int(timeout_s * 1000),
            "message.max.bytes": 64 * 1024 * 1024,
            "queue.buffering.max.kbytes": 1024 * 1024,
            "error_cb": self._on_error,
            "log_level": 3,
        }))
        self._threads = [threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True),
                         threading.Thread(target=self._health_loop, name="kafka-health", daemon=True)]

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
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
        if err.code() == KafkaError._ALL_BROKERS_DOWN or err.fatal():
            self._set_ready(False, err.str())

    def _poll_loop(self) -> None:
        while not self._closing.is_set():
            self.producer.poll(0.05)

    def _health_loop(self) -> None:
        while not self._closing.is_set():
            try:
                metadata = self.producer.list_topics(timeout=2)
                self._set_ready(bool(metadata.brokers), "no brokers in metadata")
            except KafkaException as exc:
                self._set_ready(False, exc.args[0].str())
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
                limits = [int(f.result(timeout)["max.message.bytes"].value) for f in futures.values()]
                return min(limits) - RECORD_OVERHEAD_BYTES
            except (KafkaException, KeyError, ValueError) as exc:
                if time.monotonic() > deadline:
                    log.warning("could not read max.message.bytes of %s (%s); assuming Kafka's default %d",
                                ", ".join(topics), exc, DEFAULT_MAX_MESSAGE_BYTES)
                    return DEFAULT_MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES
                time.sleep(0.3)

    # -- producing ---------------------------------------------------------------------------------

    async def write(self, topic: str, values: Sequence[bytes], headers: list[tuple[str, bytes]]) -> float:
        """Produce `values` and return once Kafka acknowledged all of them (seconds waited).

        Raises KafkaUnavailable if any was not acknowledged, KafkaBacklogFull if the local queue is full.
        """
        if not self._ready.is_set():
            raise KafkaUnavailable(f"Kafka at {self.bootstrap} is unavailable")
        assert self._loop is not None
        loop = self._loop
        started = time.perf_counter()
        futures = []
        for value in values:
            future: asyncio.Future[None] = loop.create_future()

            def on_delivery(err: KafkaError | None, _msg: Any, future: asyncio.Future[None] = future) -> None:
                loop.call_soon_threadsafe(_settle, future, err)

            try:
                # A random key spreads records evenly over partitions (a request has no natural key).
                self.producer.produce(topic, value=value, key=uuid.uuid4().bytes, headers=headers,
                                      on_delivery=on_delivery)
            except BufferError as exc:
                for f in futures:
                    f.cancel()  # delivery reports for records already queued will find them cancelled
                raise KafkaBacklogFull("the Kafka producer queue is full") from exc
            futures.append(future)
        results = await asyncio.gather(*futures, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise KafkaUnavailable(str(errors[0]))
        return time.perf_counter() - started


def _settle(future: asyncio.Future[None], err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaUnavailable(f"Kafka did not acknowledge: {err.str()}"))

"""The pipeline's health as the API reports it: Kafka and ClickHouse reachable, consumer lag per group
(messages and seconds, via `maple.lag.measure`), the dead letters waiting in maple.dlq, and the ingest rate
(growth of the raw topics' end offsets between two measurements: one record is one OTLP export request).

Kafka calls are blocking and can take seconds when a broker is down, so they never run on the event loop
or per request: one background thread measures every `api.health_interval_s` with one long-lived
`maple.consumer.Cluster` (confluent-kafka handles are never dropped with requests in flight, which has
crashed librdkafka) and requests read its last snapshot. The thread starts on the first request.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import KafkaException

from maple import kafka
from maple.consumer import Cluster, KafkaOpError
from maple.lag import measure
from maple.settings import Settings
from maple.topics import DEAD_LETTER, LOGS, METRICS, RAW_LOGS, RAW_METRICS, RAW_TRACES, SPANS, SPANS_SAMPLED
from query.errors import ApiError
from query.models import ComponentHealth, DeadLetters, GroupLag, HealthResponse, IngestRate
from query.reader import Reader

log = logging.getLogger(__name__)
KAFKA_TIMEOUT_S = 5.0
RAW_TOPICS = {"traces": RAW_TRACES.name, "logs": RAW_LOGS.name, "metrics": RAW_METRICS.name}


class HealthMonitor:
    def __init__(self, settings: Settings, reader: Reader) -> None:
        self.settings = settings
        self.reader = reader
        self.bootstrap = kafka.bootstrap_servers(settings)
        raw = {"logs": RAW_LOGS, "metrics": RAW_METRICS, "traces": RAW_TRACES}
        worker_topics = [raw[s].name for s in settings.worker.signals if s in raw]
        worker_topics += [SPANS.name] if "traces" in settings.worker.signals else []
        # Named topics: commits are read through OffsetFetch, as daemons should (maple/consumer.py)
        self.groups = ((settings.worker.group, worker_topics),
                       (settings.sink.group, [LOGS.name, METRICS.name, SPANS_SAMPLED.name]))
        self._snapshot: HealthResponse | None = None
        self._measured_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._cluster: Cluster | None = None
        self._raw_ends: tuple[float, dict[str, int]] | None = None   # (monotonic time, end offsets per signal)

    # -- lifecycle --------------------------------------------------------------------------------------

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="maple-api-health", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop measuring; waits for a measurement in flight, then closes the clients it used."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the health monitor did not stop within %.0fs; leaving its Kafka clients open", timeout)
                return
        if self._cluster is not None:
            self._cluster.close()  # no request in flight: the thread that used it has finished
            self._cluster = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                snapshot = self.measure()
            except Exception as exc:  # a bug here must not end health reporting
                log.exception("health measurement failed")
                snapshot = self._failed(f"measurement failed: {type(exc).__name__}: {exc}")
            with self._lock:
                self._snapshot, self._measured_at = snapshot, time.monotonic()
            self._wake.wait(self.settings.api.health_interval_s)
            self._wake.clear()

    # -- answers -----------------------------------------------------------------------------------------

    def snapshot(self, wait_s: float = 10.0) -> HealthResponse:
        """The last measurement; waits up to `wait_s` for the first one."""
        self.ensure_started()
        deadline = time.monotonic() + wait_s
        while True:
            with self._lock:
                snapshot, at = self._snapshot, self._measured_at
            if snapshot is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if snapshot is None:
            return HealthResponse(status="starting", checked_at=None, age_s=None,
                                  kafka=ComponentHealth(ok=False, detail="not measured yet"),
                                  clickhouse=ComponentHealth(ok=False, detail="not measured yet"), lag=[],
                                  dead_letters=DeadLetters(count=None, topic=DEAD_LETTER.name))
        return snapshot.model_copy(update={"age_s": round(time.monotonic() - at, 3)})

    def _failed(self, detail: str) -> HealthResponse:
        return HealthResponse(status="down", checked_at=_now(), age_s=0.0,
                              kafka=ComponentHealth(ok=False, detail=detail),
                              clickhouse=ComponentHealth(ok=False, detail=detail), lag=[],
                              dead_letters=DeadLetters(count=None, topic=DEAD_LETTER.name))

    # -- measuring (the monitor's thread only) -----------------------------------------------------------

    def measure(self) -> HealthResponse:
        clickhouse = self._clickhouse()
        if self._cluster is None:
            self._cluster = Cluster(self.bootstrap, timeout=KAFKA_TIMEOUT_S)
        cluster = self._cluster
        try:
            topics = cluster.topics()
            kafka_health = ComponentHealth(ok=True, detail=f"{self.bootstrap} ({len(topics)} topics)")
        except (KafkaException, KafkaOpError) as exc:
            reason = exc.args[0].str() if isinstance(exc, KafkaException) and exc.args else str(exc)
            kafka_health = ComponentHealth(ok=False, detail=f"{self.bootstrap}: {reason}")
        lags: list[GroupLag] = []
        dead = DeadLetters(count=None, topic=DEAD_LETTER.name)
        ingest = IngestRate(requests_per_s=None, by_signal={}, window_s=None)
        if kafka_health.ok:
            lags = [self._lag(cluster, group, group_topics, topics) for group, group_topics in self.groups]
            dead = DeadLetters(count=self._dead_letters(cluster, topics), topic=DEAD_LETTER.name)
            ingest = self._ingest(cluster, topics)
        else:
            self._raw_ends = None
        status: Literal["ok", "degraded", "down"]
        if kafka_health.ok and clickhouse.ok:
            status = "degraded" if any(lag.error for lag in lags) else "ok"
        elif kafka_health.ok or clickhouse.ok:
            status = "degraded"
        else:
            status = "down"
        return HealthResponse(status=status, checked_at=_now(), age_s=0.0, kafka=kafka_health, clickhouse=clickhouse,
                              lag=lags, dead_letters=dead, ingest=ingest)

    def _ingest(self, cluster: Cluster, existing: set[str]) -> IngestRate:
        """Records written to the raw topics per second since the previous measurement."""
        unknown = IngestRate(requests_per_s=None, by_signal={}, window_s=None)
        try:
            ends = {signal: sum(cluster.watermarks(topic, p)[1] for p in cluster.partitions(topic))
                    if topic in existing else 0 for signal, topic in RAW_TOPICS.items()}
        except (KafkaOpError, KafkaException):
            self._raw_ends = None
            return unknown
        now = time.monotonic()
        previous, self._raw_ends = self._raw_ends, (now, ends)
        if previous is None or now <= previous[0]:
            return unknown
        window = now - previous[0]
        # a topic recreated with fewer records reads as a drop: count it as no traffic, not negative traffic
        by_signal = {signal: round(max(0, ends[signal] - previous[1].get(signal, 0)) / window, 3) for signal in ends}
        return IngestRate(requests_per_s=round(sum(by_signal.values()), 3), by_signal=by_signal,
                          window_s=round(window, 3))

    def _clickhouse(self) -> ComponentHealth:
        try:
            version = self.reader.ping()
        except ApiError as exc:
            return ComponentHealth(ok=False, detail=exc.message)
        return ComponentHealth(ok=True, detail=f"ClickHouse {version}, database {self.reader.database}")

    def _lag(self, cluster: Cluster, group: str, group_topics: list[str], existing: set[str]) -> GroupLag:
        try:
            rows = measure(cluster, group, [t for t in group_topics if t in existing])
        except (KafkaOpError, KafkaException) as exc:
            return GroupLag(group=group, messages=0, seconds=None, partitions=0, error=str(exc))
        known = [row.lag_seconds for row in rows if row.lag_seconds is not None]
        return GroupLag(group=group, messages=sum(row.lag for row in rows), seconds=max(known) if known else None,
                        partitions=len(rows))

    @staticmethod
    def _dead_letters(cluster: Cluster, existing: set[str]) -> int | None:
        if DEAD_LETTER.name not in existing:
            return 0  # no dead-letter topic yet: nothing was ever dead-lettered
        try:
            return sum(high - low for low, high in (cluster.watermarks(DEAD_LETTER.name, p)
                                                     for p in cluster.partitions(DEAD_LETTER.name)))
        except (KafkaOpError, KafkaException):
            return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

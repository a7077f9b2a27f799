"""Exactly once under failure: kill -9 of sinks and workers mid-stream, rebalances, a ClickHouse outage.

A sender pushes numbered log records through the real ingest while stages are killed and restarted;
afterwards ClickHouse must hold every record exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from maple import clickhouse
from maple.net import free_port
from maple.settings import Settings, load_settings
from tests.helpers.ingest import IngestProcess, numbered_log_request, post
from tests.helpers.pipeline import apply_schema, pipeline_env
from tests.helpers.stages import Stage

PER_REQUEST = 50


def _request(service: str, seq: int) -> bytes:
    return numbered_log_request(service, seq, PER_REQUEST)


class Sender(threading.Thread):
    """Sends `requests` numbered requests at about `rate` per second; retries any that fail."""

    def __init__(self, url: str, service: str, requests: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.service, self.requests, self.rate = url, service, requests, rate
        self.sent = 0
        self.failures = 0

    def run(self) -> None:
        for seq in range(self.requests):
            body = _request(self.service, seq)
            while post(self.url, body, {"Content-Type": "application/x-protobuf"})[0] != 200:
                self.failures += 1
                time.sleep(0.5)
            self.sent += 1
            time.sleep(1 / self.rate)


def _counts(settings: Settings, database: str, service: str) -> tuple[int, int]:
    client = clickhouse.connect(settings, database=database, in_process=False)
    try:
        [(rows, distinct)] = client.query("SELECT count(), uniqExact(LogAttributes['seq']) FROM otel_logs "
                                          f"WHERE ServiceName = '{service}'").result_rows
        return int(rows), int(distinct)
    finally:
        client.close()


def _settle(settings: Settings, database: str, service: str, expected: int, stages: list[Stage],
            timeout: float = 240) -> None:
    """Wait until ClickHouse has `expected` rows, then give late copies time to show up; assert exactness."""
    deadline = time.monotonic() + timeout
    counts = (0, 0)
    while time.monotonic() < deadline:
        counts = _counts(settings, database, service)
        if counts[0] >= expected:
            break
        time.sleep(1)
    time.sleep(5)
    counts = _counts(settings, database, service)
    logs = "\n\n".join(f"{' '.join(s.command)}:\n{s.output(30)}" for s in stages)
    assert counts == (expected, expected), f"rows, distinct = {counts}, expected {expected}\n{logs}"


def test_kill_9_of_sinks_and_workers_mid_stream_loses_and_duplicates_nothing(
        kafka_bootstrap: str, clickhouse_settings: Settings) -> None:
    tag = uuid.uuid4().hex[:8]
    env, database = pipeline_env(kafka_bootstrap, clickhouse_settings, tag)
    apply_schema(env)
    service = f"chaos-{tag}"
    ingest = IngestProcess(kafka_bootstrap, env).start()
    workers = [Stage(["worker"], env).start()]
    sinks = [Stage(["sink"], env).start()]
    sender = Sender(f"{ingest.http}/v1/logs", service, requests=300, rate=15)
    all_stages: list[Stage] = [ingest, *workers, *sinks]
    try:
        sender.start()
        plan = [  # (seconds into the run, action)
            (3, "kill sink"), (5, "kill worker"), (7, "second sink"), (9, "kill sink"), (10, "second worker"),
            (12, "kill worker"), (14, "kill sink"), (16, "kill worker"),
        ]
        started = time.monotonic()
        for at, action in plan:
            time.sleep(max(0.0, started + at - time.monotonic()))
            if action == "kill sink":
                sinks[0].kill()
                sinks[0] = Stage(["sink"], env).start()
                all_stages.append(sinks[0])
            elif action == "kill worker":
                workers[0].kill()
                workers[0] = Stage(["worker"], env).start()
                all_stages.append(workers[0])
            elif action == "second sink":
                sinks.append(Stage(["sink"], env).start())
                all_stages.append(sinks[-1])
            elif action == "second worker":
                workers.append(Stage(["worker"], env).start())
                all_stages.append(workers[-1])
        sender.join(300)
        assert sender.sent == 300
        _settle(clickhouse_settings, database, service, 300 * PER_REQUEST, all_stages)
    finally:
        for stage in all_stages:
            if stage.alive:
                stage.stop()


def test_clickhouse_away_for_a_while_loses_and_duplicates_nothing(kafka_bootstrap: str, clickhouse_settings: Settings,
                                                                    tmp_path: Path) -> None:
    if not clickhouse_settings.embedded_clickhouse:
        pytest.skip("stopping ClickHouse needs the embedded engine (a server given by URL is not ours to stop)")
    tag = uuid.uuid4().hex[:8]
    host_env = {"MAPLE_DATA_DIR": str(tmp_path), "MAPLE_CLICKHOUSE_EMBEDDED_PORT": str(free_port())}
    own = load_settings(environ=host_env)
    host = Stage(["clickhouse", "serve"], host_env).start()
    env, database = pipeline_env(kafka_bootstrap, own, tag)
    stages: list[Stage] = [host]
    try:
        deadline = time.monotonic() + 60
        while clickhouse.running_host(own) is None:
            assert time.monotonic() < deadline and host.alive, host.output()
            time.sleep(0.2)
        apply_schema(env)
        service = f"outage-{tag}"
        ingest = IngestProcess(kafka_bootstrap, env).start()
        worker, sink = Stage(["worker"], env).start(), Stage(["sink"], env).start()
        stages += [ingest, worker, sink]
        sender = Sender(f"{ingest.http}/v1/logs", service, requests=150, rate=15)
        sender.start()
        time.sleep(4)
        host.kill()  # ClickHouse is gone: the sink retries, commits nothing, loses nothing
        time.sleep(6)
        host = Stage(["clickhouse", "serve"], host_env).start()
        stages.append(host)
        sender.join(300)
        _settle(own, database, service, 150 * PER_REQUEST, stages)
        assert sink.alive, sink.output()
        assert "retry" in sink.output(200)
    finally:
        for stage in stages:
            if stage.alive:
                stage.stop()

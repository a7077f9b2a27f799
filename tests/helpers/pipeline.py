"""A pipeline of real `maple` processes (ingest, worker, sink) on the test session's Kafka and ClickHouse."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from apps import maple_command
from maple import clickhouse, kafka
from maple.settings import Settings, load_settings
from maple.topics import ALL_TOPICS
from tests.helpers.environment import clean_environ
from tests.helpers.ingest import IngestProcess
from tests.helpers.stages import Stage, clickhouse_env


@dataclass
class Pipeline:
    bootstrap: str
    env: dict[str, str]
    database: str
    ingest: IngestProcess
    worker: Stage
    sink: Stage
    settings: Settings

    def client(self):
        return clickhouse.connect(self.settings, database=self.database, in_process=False)

    def stop(self) -> None:
        for stage in (self.ingest, self.worker, self.sink):
            stage.stop()

    def wait_for(self, sql: str, expected: object, timeout: float = 90) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        got = None
        try:
            while time.monotonic() < deadline:
                got = client.query(sql).result_rows
                if got == expected:
                    return
                time.sleep(0.5)
        finally:
            client.close()
        raise AssertionError(f"{sql}\nexpected {expected}, got {got}\nworker:\n{self.worker.output()}\n"
                             f"sink:\n{self.sink.output()}")


def pipeline_env(bootstrap: str, settings: Settings, tag: str) -> tuple[dict[str, str], str]:
    database = f"pipe_{tag}"
    env = {"MAPLE_KAFKA_BOOTSTRAP": bootstrap, "MAPLE_CLICKHOUSE_DATABASE": database,
           "MAPLE_WORKER_GROUP": f"worker-{tag}", "MAPLE_SINK_GROUP": f"sink-{tag}",
           "MAPLE_WORKER_METRICS_PORT": "0", "MAPLE_SINK_METRICS_PORT": "0", "MAPLE_SINK_FLUSH_INTERVAL_S": "0.3",
           **clickhouse_env(settings)}
    return env, database


def start_groups_at_end(bootstrap: str, env: dict[str, str]) -> None:
    """Start the pipeline's worker and sink groups at the topics' current ends, so records other tests left
    in the shared broker do not land in this pipeline's database (for tests that count whole tables)."""
    kafka.create_topics(load_settings(environ={"MAPLE_KAFKA_BOOTSTRAP": bootstrap}))
    # The worker group also runs the sampler agent (otel.spans).
    worker = [t.name for t in ALL_TOPICS if t.consumer.endswith("worker") or t.consumer == "sampler"]
    sink = [t.name for t in ALL_TOPICS if t.consumer == "sink"]
    kafka.start_group_at_end(bootstrap, env["MAPLE_WORKER_GROUP"], worker)
    kafka.start_group_at_end(bootstrap, env["MAPLE_SINK_GROUP"], sink)


def apply_schema(env: dict[str, str]) -> None:
    result = subprocess.run(maple_command("schema", "apply"), env=clean_environ(**env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def start_pipeline(bootstrap: str, settings: Settings, tag: str, extra_env: dict[str, str] | None = None, *,
                   from_end: bool = False) -> Pipeline:
    """Ingest, worker and sink of their own (groups and database named by `tag`) on the schema just applied.
    `from_end`: the groups start at the topics' ends, for tests that count whole tables."""
    env, database = pipeline_env(bootstrap, settings, tag)
    env.update(extra_env or {})
    apply_schema(env)
    if from_end:
        start_groups_at_end(bootstrap, env)
    ingest = IngestProcess(bootstrap, env).start()
    worker, sink = Stage(["worker"], env).start(), Stage(["sink"], env).start()
    return Pipeline(bootstrap, env, database, ingest, worker, sink, settings)

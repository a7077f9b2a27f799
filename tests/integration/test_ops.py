"""Replay, lag and dead-letter redrive on the real broker and the real ClickHouse engine.

One pipeline (a worker and a sink process, their own groups and database) lands a known set of log
records; the tests then stop stages, run `maple replay` / `maple dlq` as a user would, restart stages
and check ClickHouse holds exactly the rows it should. Order matters within the module (it is one story).
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from apps import maple_command
from maple import clickhouse, kafka
from maple.consumer import Cluster
from maple.lag import PartitionLag, measure
from maple.net import free_port
from maple.settings import Settings
from maple.topics import DEAD_LETTER, HEADER_ROWS, HEADER_SOURCE, HEADER_TABLE, LOGS, RAW_LOGS, SourcePosition
from tests.helpers.environment import clean_environ
from tests.helpers.ingest import numbered_log_request
from tests.helpers.pipeline import apply_schema, pipeline_env
from tests.helpers.stages import Stage

REQUESTS, PER_REQUEST = 24, 25
ROWS = REQUESTS * PER_REQUEST


def _measure(bootstrap: str, group: str, topics: list[str], timestamps: bool = True) -> list[PartitionLag]:
    with Cluster(bootstrap) as cluster:
        return measure(cluster, group, topics, timestamps=timestamps)


def maple(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(maple_command(*args), env=clean_environ(**env), capture_output=True,
                          text=True, timeout=timeout)


@dataclass
class Landed:
    bootstrap: str
    env: dict[str, str]
    database: str
    settings: Settings
    service: str
    since: str           # Unix ms just before the records were produced: a --from-time for them
    worker: Stage
    sink: Stage

    def query(self, sql: str, database: str | None = None) -> list[tuple]:
        client = clickhouse.connect(self.settings, database=database or self.database, in_process=False)
        try:
            return client.query(sql).result_rows
        finally:
            client.close()

    def counts(self, database: str | None = None, table: str = "otel_logs") -> tuple[int, int]:
        [(rows, distinct)] = self.query(f"SELECT count(), uniqExact(LogAttributes['seq']) FROM {table} "
                                        f"WHERE ServiceName = '{self.service}'", database)
        return int(rows), int(distinct)

    def wait_counts(self, expected: tuple[int, int], database: str | None = None, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.counts(database)
            if got == expected:
                return
            time.sleep(0.5)
        raise AssertionError(f"expected {expected}, got {got}\nworker:\n{self.worker.output()}\nsink:\n"
                             f"{self.sink.output()}")

    def wait_caught_up(self, group: str, topics: list[str], timeout: float = 120) -> None:
        """Until `group` has committed everything in `topics` (the sink commits only after inserting)."""
        deadline = time.monotonic() + timeout
        rows = []
        while time.monotonic() < deadline:
            rows = _measure(self.bootstrap, group, topics, timestamps=False)
            if rows and all(r.lag == 0 for r in rows):
                return
            time.sleep(0.5)
        raise AssertionError(f"{group} still behind: {rows}\nworker:\n{self.worker.output()}\nsink:\n"
                             f"{self.sink.output()}")

    def restart(self, *stages: str) -> None:
        for name in stages:
            setattr(self, name, Stage([name], self.env).start())


def _request(service: str, seq: int) -> bytes:
    return numbered_log_request(service, seq, PER_REQUEST)


@pytest.fixture(scope="module")
def landed(kafka_bootstrap: str, clickhouse_settings: Settings) -> Iterator[Landed]:
    tag = uuid.uuid4().hex[:8]
    env, database = pipeline_env(kafka_bootstrap, clickhouse_settings, tag)
    env.update(MAPLE_SINK_METRICS_PORT=str(free_port()), MAPLE_WORKER_METRICS_PORT=str(free_port()))
    apply_schema(env)
    worker, sink = Stage(["worker"], env).start(), Stage(["sink"], env).start()
    service = f"ops-{tag}"
    since = str(int(time.time() * 1000) - 1000)
    producer = Producer(kafka.producer_config(kafka_bootstrap))
    kafka.ensure_topics(kafka.admin_client(kafka_bootstrap), 6, 1)
    for seq in range(REQUESTS):
        producer.produce(RAW_LOGS.name, value=_request(service, seq), partition=seq % 3)
    assert producer.flush(30) == 0
    state = Landed(kafka_bootstrap, env, database, clickhouse_settings, service, since, worker, sink)
    state.wait_counts((ROWS, ROWS))
    yield state
    for stage in (state.worker, state.sink):
        stage.stop()


# -- refusals ---------------------------------------------------------------------------------------


def test_replay_is_refused_while_the_groups_members_run(landed: Landed) -> None:
    assert landed.sink.alive and landed.worker.alive
    sink_group, worker_group = landed.env["MAPLE_SINK_GROUP"], landed.env["MAPLE_WORKER_GROUP"]
    result = maple(landed.env, "replay", "sink", "--from-earliest")
    assert result.returncode == 1
    assert f"group {sink_group} is stable with 1 running member(s)" in result.stderr, result.stderr
    result = maple(landed.env, "replay", "worker", "--from-time", landed.since, "--reinsert")
    assert result.returncode == 1 and f"group {worker_group} is stable" in result.stderr, result.stderr
    # Nothing moved: the sink is still caught up.
    landed.wait_caught_up(sink_group, [LOGS.name], timeout=30)


def test_workers_and_sinks_export_their_consumer_lag(landed: Landed) -> None:
    for stage, group, topic in (("sink", landed.env["MAPLE_SINK_GROUP"], LOGS.name),
                                ("worker", landed.env["MAPLE_WORKER_GROUP"], RAW_LOGS.name)):
        url = f"http://127.0.0.1:{landed.env[f'MAPLE_{stage.upper()}_METRICS_PORT']}/metrics"
        wanted = [f'maple_consumer_lag{{group="{group}",partition="0",topic="{topic}"}} 0.0',
                  f'maple_consumer_lag_seconds{{group="{group}",partition="0",topic="{topic}"}} 0.0']
        deadline = time.monotonic() + 60  # the sink refreshes every 5 s, the worker's timer every 15 s
        text = ""
        while time.monotonic() < deadline and not all(w in text for w in wanted):
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            time.sleep(1)
        assert all(w in text for w in wanted), f"{stage}:\n" + "\n".join(
            line for line in text.splitlines() if "consumer_lag" in line)


# -- sink replays ------------------------------------------------------------------------------------


def test_replay_over_rows_already_there_changes_no_count(landed: Landed) -> None:
    group = landed.env["MAPLE_SINK_GROUP"]
    landed.wait_caught_up(group, [LOGS.name])
    assert landed.sink.stop() == 0
    before = {(r.topic, r.partition): r.committed for r in _measure(landed.bootstrap, group, [LOGS.name])}

    dry = maple(landed.env, "replay", "sink", "--topic", LOGS.name, "--from-time", landed.since, "--dry-run",
                "--json")
    assert dry.returncode == 0, dry.stderr
    plan = orjson.loads(dry.stdout)
    moved = {(m["topic"], m["partition"]): m for m in plan["moves"] if m["messages"]}
    assert plan["mode"] == "keep" and plan["dry_run"] and moved
    assert sum(m["rows"] for m in plan["moves"]) >= ROWS  # our batches, maybe others' since then too
    for key, move in moved.items():
        assert move["committed"] == before[key] and move["new_offset"] == before[key] - move["messages"]
    after_dry = {(r.topic, r.partition): r.committed for r in _measure(landed.bootstrap, group, [LOGS.name])}
    assert after_dry == before  # a dry run changes nothing

    # Start one message into each range: the sink then gathers batches with boundaries (and so tokens) it
    # never used, and only the kept watermarks stand between the re-read batches and duplicate rows.
    offsets = {key: move["new_offset"] + 1 for key, move in moved.items() if move["messages"] >= 2}
    assert offsets
    result = maple(landed.env, "replay", "sink", *[f"--offset={t}:{p}={o}" for (t, p), o in offsets.items()])
    assert result.returncode == 0, result.stderr
    rewound = {(r.topic, r.partition): r.committed for r in _measure(landed.bootstrap, group, [LOGS.name])}
    assert {key: rewound[key] for key in offsets} == offsets
    assert all(rewound[key] == before[key] for key in before if key not in offsets)  # only named partitions move

    landed.restart("sink")
    landed.wait_caught_up(group, [LOGS.name])  # everything re-read and committed again
    assert landed.counts() == (ROWS, ROWS)


def test_reinsert_is_refused_while_rows_are_there_then_truncate_and_replay_by_time_brings_them_back(
        landed: Landed) -> None:
    group = landed.env["MAPLE_SINK_GROUP"]
    landed.wait_caught_up(group, [LOGS.name])
    assert landed.sink.stop() == 0
    refused = maple(landed.env, "replay", "sink", "--topic", LOGS.name, "--from-time", landed.since, "--reinsert")
    assert refused.returncode == 1
    assert "--reinsert refused" in refused.stderr and f"{landed.database}.otel_logs" in refused.stderr

    landed.query("TRUNCATE TABLE otel_logs")
    assert landed.counts() == (0, 0)
    result = maple(landed.env, "replay", "sink", "--topic", LOGS.name, "--from-time", landed.since, "--reinsert")
    assert result.returncode == 0, result.stderr
    assert "--reinsert" in result.stdout

    landed.restart("sink")
    landed.wait_caught_up(group, [LOGS.name])
    assert landed.counts() == (ROWS, ROWS)


def test_replay_into_another_database_leaves_the_live_one_alone_and_resumes_when_run_again(landed: Landed) -> None:
    target = f"{landed.database}_rebuilt"
    args = ["replay", "sink", "--topic", LOGS.name, "--from-time", landed.since, "--into-database", target]
    first = maple(landed.env, *args)
    assert first.returncode == 0, first.stderr
    assert f"into {target} with group" in first.stdout
    assert landed.counts(target) == (ROWS, ROWS)
    again = maple(landed.env, *args)
    assert again.returncode == 0, again.stderr
    assert "(resumed)" in again.stdout
    assert landed.counts(target) == (ROWS, ROWS) and landed.counts() == (ROWS, ROWS)
    landed.query(f"DROP DATABASE `{target}`")


# -- worker replay -----------------------------------------------------------------------------------


def test_worker_replay_with_reinsert_after_a_truncate_brings_the_rows_back_exactly(landed: Landed) -> None:
    sink_group, worker_group = landed.env["MAPLE_SINK_GROUP"], landed.env["MAPLE_WORKER_GROUP"]
    landed.wait_caught_up(worker_group, [RAW_LOGS.name])
    assert landed.worker.stop() == 0
    landed.wait_caught_up(sink_group, [LOGS.name])
    assert landed.sink.stop() == 0
    plain = maple(landed.env, "replay", "worker", "--topic", RAW_LOGS.name, "--from-time", landed.since)
    assert plain.returncode == 1 and "changes nothing" in plain.stderr

    landed.query("TRUNCATE TABLE otel_logs")
    result = maple(landed.env, "replay", "worker", "--topic", RAW_LOGS.name, "--from-time", landed.since,
                   "--reinsert")
    assert result.returncode == 0, result.stderr
    assert f"sink group {sink_group}: watermarks lowered" in result.stdout

    landed.restart("worker", "sink")
    landed.wait_caught_up(worker_group, [RAW_LOGS.name])
    landed.wait_caught_up(sink_group, [LOGS.name])
    assert landed.counts() == (ROWS, ROWS)


# -- dead letters ------------------------------------------------------------------------------------


def test_a_dead_letter_is_redriven_after_the_fix_exactly_once(landed: Landed) -> None:
    # The processed topics are shared by every sink group of the session: the batch goes to a table all of
    # them have. Only this database has the extra column `n`, typed so that two of the four rows fail.
    if not landed.sink.alive:
        landed.restart("sink")
    landed.query("ALTER TABLE otel_logs ADD COLUMN n UInt32 DEFAULT 0")
    now = time.time_ns() // 1_000_000_000
    columns = {"Timestamp": [f"{now}.{i:09d}" for i in range(4)], "ServiceName": [landed.service] * 4,
               "Body": ["probe"] * 4, "n": [1, 2, "three", "four"]}
    producer = Producer(kafka.producer_config(landed.bootstrap))
    producer.produce(LOGS.name, value=orjson.dumps(columns), partition=0, headers=[
        (HEADER_TABLE, b"otel_logs"), (HEADER_ROWS, b"4"), (HEADER_SOURCE, SourcePosition("test.dlq", 0, now).header())])
    assert producer.flush(30) == 0

    def mine() -> list[dict]:
        listing = maple(landed.env, "dlq", "list", "--table", "otel_logs", "--json")
        assert listing.returncode == 0, listing.stderr
        return [x for x in orjson.loads(listing.stdout) if x["code"] == 27]  # cannot parse "three" as UInt32

    def probe_rows() -> list[tuple]:
        return sorted(landed.query(f"SELECT toString(n) FROM otel_logs WHERE ServiceName = '{landed.service}' "
                                   "AND Body = 'probe'"))

    deadline = time.monotonic() + 90
    letters: list[dict] = []
    while time.monotonic() < deadline and len(letters) < 2:
        letters = mine()
        time.sleep(1)
    assert len(letters) == 2, landed.sink.output()
    assert {(x["stage"], x["rows"], x["redriven"]) for x in letters} == {("sink", 1, False)}
    assert probe_rows() == [("1",), ("2",)]

    shown = maple(landed.env, "dlq", "show", letters[0]["id"])
    assert shown.returncode == 0, shown.stderr
    assert "maple.error_code: 27" in shown.stdout and f"maple.token: {landed.env['MAPLE_SINK_GROUP']}/" in shown.stdout
    assert '"n":"three"' in shown.stdout or '"n":"four"' in shown.stdout

    landed.query("ALTER TABLE otel_logs MODIFY COLUMN n String DEFAULT ''")  # the fix
    first = maple(landed.env, "dlq", "redrive", "--json")
    assert first.returncode == 0, first.stderr
    assert orjson.loads(first.stdout)["rows_inserted"] >= 2
    assert probe_rows() == [("1",), ("2",), ("four",), ("three",)]
    assert [x["redriven"] for x in mine()] == [True, True]

    second = maple(landed.env, "dlq", "redrive", "--json")
    assert second.returncode == 0, second.stderr
    assert probe_rows() == [("1",), ("2",), ("four",), ("three",)]
    # Even with its tracking lost (the redrive group rewound), a redrive inserts under the same tokens.
    group = f"{landed.env['MAPLE_SINK_GROUP']}.dlq-redrive"
    first_of: dict[int, int] = {}
    for x in letters:
        first_of[x["partition"]] = min(x["offset"], first_of.get(x["partition"], x["offset"]))
    consumer = Consumer({"bootstrap.servers": landed.bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(DEAD_LETTER.name, p, o) for p, o in first_of.items()], asynchronous=False)
    consumer.close()
    third = maple(landed.env, "dlq", "redrive", "--json")
    assert third.returncode == 0, third.stderr
    assert orjson.loads(third.stdout)["letters"] >= 2
    assert probe_rows() == [("1",), ("2",), ("four",), ("three",)]


# -- lag ---------------------------------------------------------------------------------------------


def test_lag_reports_exact_offsets_and_the_age_of_the_oldest_record(kafka_bootstrap: str) -> None:
    topic, group = f"test.lag.{uuid.uuid4().hex[:8]}", f"lag-{uuid.uuid4().hex[:8]}"
    admin = kafka.admin_client(kafka_bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    hour_ago = int(time.time() * 1000) - 3_600_000
    producer = Producer(kafka.producer_config(kafka_bootstrap))
    for i in range(5):
        producer.produce(topic, value=b"x", partition=0, timestamp=hour_ago + i)
    for _ in range(3):
        producer.produce(topic, value=b"y", partition=1)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 3)], asynchronous=False)
    consumer.close()

    env = {"MAPLE_KAFKA_BOOTSTRAP": kafka_bootstrap}
    result = maple(env, "lag", "--group", group, "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["partition"]: r for r in orjson.loads(result.stdout)}
    assert [(rows[p]["committed"], rows[p]["end"], rows[p]["lag"]) for p in (0, 1)] == [(2, 5, 3), (3, 3, 0)]
    assert rows[0]["lag_seconds"] >= 3590 and rows[1]["lag_seconds"] == 0
    table = maple(env, "lag", "--group", group)
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()[:2]
    assert header.split() == ["group", "lag", "oldest", "status", "topics"]
    assert line.split()[:2] == [group, "3"] and line.split()[3:] == ["behind", topic]  # an hour old: behind
    assert float(line.split()[2].rstrip("s")) >= 3590
    assert f"{topic}" not in table.stdout.splitlines()[2:] and len(table.stdout.splitlines()) == 2  # summary only
    verbose = maple(env, "lag", "--group", group, "--verbose")
    partitions = [row.split() for row in verbose.stdout.splitlines() if row.startswith(group) and topic in row.split()[1:2]]
    assert [(r[2], r[3], r[5], r[6]) for r in partitions] == [("0", "2", "5", "3"), ("1", "3", "3", "0")]
    unknown = maple(env, "lag", "--group", f"nobody-{uuid.uuid4().hex[:6]}")
    assert unknown.returncode == 1 and "has no committed offsets and no members" in unknown.stderr

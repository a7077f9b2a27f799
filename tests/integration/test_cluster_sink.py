"""The sink writing into two shards: two embedded ClickHouse hosts (separate processes and data dirs).

What a real cluster adds (Replicated tables, Keeper, Distributed reads) cannot run here; the routing,
the per-shard tokens and the retries run for real. The shards hold the single-node schema, applied per
URL by `maple schema apply`, exactly what several URLs without a cluster name mean.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import orjson
import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from confluent_kafka import Producer

from apps import maple_command
from maple import clickhouse, schema
from maple import kafka as kafka_clients
from maple.clickhouse import Endpoint
from maple.net import free_port
from maple.settings import Settings, load_settings
from maple.topics import DEAD_LETTER, HEADER_ROWS, HEADER_SOURCE, HEADER_TABLE, Topic
from sinks import shards
from sinks.shards import ShardedInserter, Topology
from tests.helpers.environment import clean_environ


def _wait_ping(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "an embedded ClickHouse host exited at start"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("an embedded ClickHouse host did not answer /ping")


@pytest.fixture(scope="module")
def two_shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Two `maple clickhouse serve` processes; settings naming both as shards, schema applied to each."""
    procs, urls = [], []
    database = f"shard_{uuid.uuid4().hex[:8]}"
    try:
        for _ in range(2):
            port = free_port()
            env = clean_environ(MAPLE_DATA_DIR=str(tmp_path_factory.mktemp("shard")),
                                MAPLE_CLICKHOUSE_EMBEDDED_PORT=str(port))
            procs.append(subprocess.Popen(maple_command("clickhouse", "serve", "--threads", "2"),
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            urls.append(f"http://127.0.0.1:{port}/{database}")
        for url, proc in zip(urls, procs):
            _wait_ping(int(url.rsplit(":", 1)[1].split("/")[0]), proc)
        env = clean_environ(MAPLE_CLICKHOUSE_URL=",".join(urls))
        applied = subprocess.run(maple_command("schema", "apply"), env=env, capture_output=True,
                                 text=True, timeout=180)
        assert applied.returncode == 0, applied.stderr
        newest = max(m.version for m in schema.MIGRATIONS)
        assert applied.stdout.count(f"at version {newest} ({len(schema.MIGRATIONS)} migration(s) applied now)") == 2, \
            applied.stdout
        yield load_settings(environ={"MAPLE_CLICKHOUSE_URL": ",".join(urls), "MAPLE_SINK_METRICS_PORT": "0",
                                     "MAPLE_SINK_FLUSH_INTERVAL_S": "0.2"})
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _clients(settings: Settings) -> list:
    return [clickhouse.connect_endpoint(e, settings, database=settings.clickhouse.database)
            for e in clickhouse.endpoints(settings)]


def _writer(settings: Settings) -> ShardedInserter:
    writer = shards.writer(settings, backoff_max_s=0.05, on_retry=lambda *_: None, sleep=lambda _s: None)
    assert isinstance(writer, ShardedInserter)
    return writer


NOW = int(time.time())  # tables keep 30 days: older rows would be dropped by TTL


def _spans(n_traces: int, spans_per_trace: int, tag: str) -> list[bytes]:
    """Span rows in blocks of 100, the spans of a trace spread over several blocks (as the sampler emits)."""
    rows = [(f"{tag}{t:028x}", f"{tag}-{t}-{s}", f"{NOW}.{t * 1000 + s:09d}")
            for s in range(spans_per_trace) for t in range(n_traces)]
    return [orjson.dumps({"TraceId": [r[0] for r in chunk], "SpanId": [r[1] for r in chunk],
                          "Timestamp": [r[2] for r in chunk], "ServiceName": ["svc"] * len(chunk),
                          "SpanName": ["op"] * len(chunk), "Duration": [1000] * len(chunk)})
            for chunk in (rows[i:i + 100] for i in range(0, len(rows), 100))]


def _per_shard(settings: Settings, sql: str) -> list[list[tuple]]:
    out = []
    for client in _clients(settings):
        try:
            out.append(client.query(sql).result_rows)
        finally:
            client.close()
    return out


def _placement_is_the_sharding_key(settings: Settings, table: str, where: str) -> None:
    """Every row sits on the shard the table's Distributed sharding key names (checked by each shard)."""
    key = schema.TABLES[table].sharding_key
    for i, client in enumerate(_clients(settings)):
        try:
            rows = client.query(f"SELECT count() FROM {table} WHERE {where} AND ({key}) % 2 != {i}").result_rows
        finally:
            client.close()
        assert rows == [(0,)], (table, i)


def test_traces_split_by_trace_id_and_a_retry_lands_once(two_shards: Settings) -> None:
    writer = _writer(two_shards)
    blocks = _spans(200, 5, "a")
    for _ in range(3):  # the first attempt, then two redos of the same batch after imagined crashes
        assert writer.insert("otel_traces", blocks, "g/otel.spans.sampled/0/0-9/otel_traces") == []
    counts = _per_shard(two_shards, "SELECT count(), uniqExact(SpanId), uniqExact(TraceId) FROM otel_traces "
                                    "WHERE startsWith(SpanId, 'a-')")
    assert sum(c[0][0] for c in counts) == 1000 and all(c[0][0] == c[0][1] for c in counts)
    assert all(c[0][0] > 250 for c in counts), counts  # both shards take a fair share
    assert sum(c[0][2] for c in counts) == 200  # each trace on exactly one shard
    _placement_is_the_sharding_key(two_shards, "otel_traces", "startsWith(SpanId, 'a-')")
    lookup = _per_shard(two_shards, "SELECT count() FROM otel_traces_trace_id_ts FINAL WHERE startsWith(TraceId, 'a')")
    assert sum(r[0][0] for r in lookup) == 200  # the view fills each shard's lookup from its own spans


def test_a_shard_that_fails_mid_batch_is_redone_without_duplicates(two_shards: Settings) -> None:
    writer = _writer(two_shards)
    blocks = _spans(100, 4, "b")
    token = "g/otel.spans.sampled/1/10-19/otel_traces"
    real = writer.inserters[1]._insert_once
    calls = {"n": 0}

    def crash_once(*args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("the sink dies after shard 0 acknowledged")
        return real(*args)

    writer.inserters[1]._insert_once = crash_once
    with pytest.raises(KeyboardInterrupt):
        writer.insert("otel_traces", blocks, token)
    landed = _per_shard(two_shards, "SELECT count() FROM otel_traces WHERE startsWith(SpanId, 'b-')")
    assert landed[0][0][0] > 0 and landed[1][0][0] == 0
    # A transient error on the redo is waited out, then everything is there once.
    flaky = iter([OperationalError("connection reset")])

    def transient(*args):
        error = next(flaky, None)
        if error is not None:
            raise error
        return real(*args)

    redo = _writer(two_shards)
    redo.inserters[1]._insert_once = transient
    assert redo.insert("otel_traces", blocks, token) == []
    counts = _per_shard(two_shards, "SELECT count(), uniqExact(SpanId) FROM otel_traces WHERE startsWith(SpanId, 'b-')")
    assert counts[0][0][0] == landed[0][0][0] and sum(c[0][0] for c in counts) == 400
    assert all(c[0][0] == c[0][1] for c in counts)


def test_logs_and_metrics_follow_their_sharding_keys(two_shards: Settings) -> None:
    writer = _writer(two_shards)
    n = 600
    logs = [orjson.dumps({"Timestamp": [f"{NOW}.{i:09d}" for i in range(k, k + 200)],
                          "TraceId": [f"c{i % 50:031x}" if i % 3 == 0 else "" for i in range(k, k + 200)],
                          "ServiceName": [f"svc-{i % 4}" for i in range(k, k + 200)],
                          "Body": [f"c-{i}" for i in range(k, k + 200)]}) for k in range(0, n, 200)]
    for _ in range(2):
        assert writer.insert("otel_logs", logs, "g/otel.logs/0/0-2/otel_logs") == []
    counts = _per_shard(two_shards, "SELECT count(), uniqExact(Body) FROM otel_logs WHERE startsWith(Body, 'c-')")
    assert sum(c[0][0] for c in counts) == n and all(c[0][0] == c[0][1] > 0 for c in counts)
    _placement_is_the_sharding_key(two_shards, "otel_logs", "startsWith(Body, 'c-')")
    # A trace's logs sit on the shard of its spans: the same key for traced rows.
    for i, client in enumerate(_clients(two_shards)):
        try:
            assert client.query(f"SELECT count() FROM otel_logs WHERE startsWith(Body, 'c-') AND TraceId != '' "
                                f"AND cityHash64(TraceId) % 2 != {i}").result_rows == [(0,)]
        finally:
            client.close()

    points = [orjson.dumps({"ServiceName": [f"svc-{i % 3}" for i in range(k, k + 100)],
                            "MetricName": ["d-requests"] * 100,
                            "Attributes": [{"route": f"/r{i % 7}", "code": str(200 + i % 2)} for i in range(k, k + 100)],
                            "TimeUnix": [f"{NOW}.{i:09d}" for i in range(k, k + 100)],
                            "Value": [float(i) for i in range(k, k + 100)]}) for k in range(0, 500, 100)]
    for _ in range(2):
        assert writer.insert("otel_metrics_gauge", points, "g/otel.metrics/0/0-4/otel_metrics_gauge") == []
    counts = _per_shard(two_shards, "SELECT count(), uniqExact(ServiceName, Attributes) FROM otel_metrics_gauge "
                                    "WHERE MetricName = 'd-requests'")
    assert sum(c[0][0] for c in counts) == 500
    assert sum(c[0][1] for c in counts) == 42  # 3 services x 7 routes x 2 codes, each series on one shard
    _placement_is_the_sharding_key(two_shards, "otel_metrics_gauge", "MetricName = 'd-requests'")


def test_a_row_clickhouse_cannot_route_is_dead_lettered_under_the_logical_table(two_shards: Settings) -> None:
    writer = _writer(two_shards)
    good = orjson.dumps({"Timestamp": [f"{NOW - 1}.{i:09d}" for i in range(20)], "ServiceName": ["s"] * 20,
                         "Body": [f"e-{i}" for i in range(20)]})
    bad = orjson.dumps({"Timestamp": [f"{NOW - 2}.000000001", "not a time"], "ServiceName": ["s", "s"],
                        "Body": ["e-ok", "e-bad"]})
    rejected = writer.insert("otel_logs", [good, bad], "g/otel.logs/3/0-1/otel_logs")
    assert [(r.table, r.rows) for r in rejected] == [("otel_logs", 1)]
    assert orjson.loads(rejected[0].block)["Body"] == ["e-bad"]
    counts = _per_shard(two_shards, "SELECT count() FROM otel_logs WHERE startsWith(Body, 'e-')")
    assert sum(c[0][0] for c in counts) == 21


def test_cluster_topology_comes_from_system_clusters() -> None:
    settings = load_settings(environ={"MAPLE_CLICKHOUSE_URL": "https://w:s@ch-0.example:8443/otel",
                                      "MAPLE_CLICKHOUSE_CLUSTER": "maple"})
    asked = []

    def query(sql: str):  # stands in for a remote cluster's system.clusters (unreachable here)
        asked.append(sql)
        return [(1, 1, "ch-s1-r1"), (1, 2, "ch-s1-r2"), (2, 1, "ch-s2-r1"), (2, 2, "ch-s2-r2")]

    topo = shards.topology(settings, query)
    assert "system.clusters" in asked[0]
    assert [[e.host for e in replicas] for replicas in topo.shards] == [["ch-s1-r1", "ch-s1-r2"],
                                                                         ["ch-s2-r1", "ch-s2-r2"]]
    first = topo.shards[1][0]
    assert (first.port, first.secure, first.username, first.password, first.database) == (8443, True, "w", "s", "otel")
    assert topo.table("otel_logs") == "otel_logs_local"
    with pytest.raises(clickhouse.ClickHouseUnavailable, match="clickhouse.cluster"):
        shards.topology(settings, lambda _sql: [])
    # Several URLs are the shards themselves, in order; a cluster name only changes the table names.
    listed = load_settings(environ={"MAPLE_CLICKHOUSE_URL": "http://a:8123/otel,http://b:8123/otel",
                                    "MAPLE_CLICKHOUSE_CLUSTER": "maple"})
    topo = shards.topology(listed, lambda _sql: pytest.fail("no lookup needed"))
    assert [r[0].host for r in topo.shards] == ["a", "b"] and topo.local_suffix == "_local"


def test_replicas_are_tried_in_turn() -> None:
    replicas = (Endpoint("r1", 8123, "u", "", "otel", False), Endpoint("r2", 8123, "u", "", "otel", False))
    tried = []
    writer = ShardedInserter(Topology((replicas,), "_local"), load_settings(environ={}), "otel", backoff_max_s=0.01,
                             connect=lambda e: tried.append(e.host))
    connect = writer.inserters[0]._connect
    for _ in range(3):
        connect()
    assert tried == ["r1", "r2", "r1"]


def test_the_sink_routes_batches_from_kafka_into_both_shards(two_shards: Settings, kafka_bootstrap: str) -> None:
    from sinks.runner import Sink

    topic = Topic(f"test.cluster.{uuid.uuid4().hex[:8]}", "test", "sink", "row batches")
    admin = kafka_clients.admin_client(kafka_bootstrap)
    kafka_clients.ensure_topics(admin, 2, 1, [topic, DEAD_LETTER])
    producer = Producer(kafka_clients.producer_config(kafka_bootstrap))
    blocks = _spans(300, 2, "f")
    for offset, block in enumerate(blocks):
        headers = [(HEADER_TABLE, b"otel_traces"), (HEADER_ROWS, str(count := len(orjson.loads(block)["SpanId"])).encode()),
                   (HEADER_SOURCE, f"otel.spans/0/{offset}/0".encode())]
        assert count
        producer.produce(topic.name, value=block, headers=headers, partition=offset % 2)
    producer.flush(30)
    environ = {"MAPLE_KAFKA_BOOTSTRAP": kafka_bootstrap, "MAPLE_CLICKHOUSE_URL": ",".join(two_shards.clickhouse.url),
               "MAPLE_SINK_GROUP": f"sink-{uuid.uuid4().hex[:8]}", "MAPLE_SINK_METRICS_PORT": "0",
               "MAPLE_SINK_FLUSH_INTERVAL_S": "0.2"}
    sink = Sink(load_settings(environ=environ), topics=(topic,))
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 90
        total = 0
        while time.monotonic() < deadline:
            counts = _per_shard(two_shards, "SELECT count() FROM otel_traces WHERE startsWith(SpanId, 'f-')")
            total = sum(c[0][0] for c in counts)
            if total >= 600:
                break
            time.sleep(0.5)
        assert total == 600 and all(c[0][0] > 0 for c in counts), counts
    finally:
        sink.stopping.set()
        thread.join(60)
    uniq = _per_shard(two_shards, "SELECT uniqExact(TraceId) FROM otel_traces WHERE startsWith(SpanId, 'f-')")
    assert sum(r[0][0] for r in uniq) == 300
    _placement_is_the_sharding_key(two_shards, "otel_traces", "startsWith(SpanId, 'f-')")

"""A ClickHouse round trip through the same client code that serves a server, on the real engine."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from datetime import datetime, timedelta

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from maple import clickhouse

DDL = """
CREATE TABLE logs_roundtrip (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    Body String CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8,
    INDEX idx_attr_keys mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, Timestamp)
TTL toDateTime(Timestamp) + INTERVAL 30 DAY
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000
"""


def _columns(now: datetime) -> list[list[object]]:
    return [
        [now, now + timedelta(microseconds=1), now + timedelta(seconds=1)],
        ["checkout", "checkout", "cart"],
        [9, 17, 13],
        ["order placed", "payment failed", "cart updated"],
        [{"http.method": "POST"}, {"error.type": "timeout", "http.method": "POST"}, {}],
    ]


NAMES = ["Timestamp", "ServiceName", "SeverityNumber", "Body", "LogAttributes"]


def test_ddl_insert_query_round_trip(ch) -> None:
    ch.command(DDL)
    ddl = ch.command("SHOW CREATE TABLE logs_roundtrip")
    for feature in ("LowCardinality(String)", "Map(LowCardinality(String), String)", "CODEC(Delta(8), ZSTD(1))",
                    "TTL toDateTime(Timestamp) + toIntervalDay(30)", "TYPE tokenbf_v1(32768, 3, 0)",
                    "ttl_only_drop_parts = 1"):
        assert feature in ddl, feature

    now = datetime(2026, 11, 23, 12, 30, 45, 123456)
    summary = ch.insert("logs_roundtrip", _columns(now), column_names=NAMES, column_oriented=True)
    assert summary.written_rows == 3

    rows = ch.query("SELECT Timestamp, ServiceName, SeverityNumber, Body, LogAttributes FROM logs_roundtrip "
                    "ORDER BY Timestamp").result_rows
    assert rows == [tuple(col[i] for col in _columns(now)) for i in range(3)]
    assert ch.query("SELECT count() FROM logs_roundtrip WHERE hasToken(Body, 'failed')").result_rows == [(1,)]
    assert ch.query("SELECT LogAttributes['error.type'] FROM logs_roundtrip WHERE SeverityNumber = 17"
                    ).result_rows == [("timeout",)]
    indexes = {row[0] for row in ch.query("SELECT name FROM system.data_skipping_indices WHERE table = "
                                          "'logs_roundtrip' AND database = currentDatabase()").result_rows}
    assert indexes == {"idx_body", "idx_attr_keys"}


def test_deduplication_token_makes_a_repeated_insert_a_no_op(ch) -> None:
    ch.command(DDL)
    now = datetime(2026, 11, 23, 8, 0, 0)
    for _ in range(3):
        ch.insert("logs_roundtrip", _columns(now), column_names=NAMES, column_oriented=True,
                  settings={"insert_deduplication_token": "otel.logs-0-100-199"})
    ch.insert("logs_roundtrip", _columns(now), column_names=NAMES, column_oriented=True,
              settings={"insert_deduplication_token": "otel.logs-0-200-299"})
    assert ch.query("SELECT count() FROM logs_roundtrip").result_rows == [(6,)]


def test_engine_errors_reach_the_client_with_their_code_and_the_engine_keeps_serving(ch) -> None:
    with pytest.raises(DatabaseError) as info:
        ch.query("SELECT * FROM no_such_table")
    assert "code: 60" in str(info.value).lower()
    with pytest.raises(DatabaseError, match="SYNTAX_ERROR|Syntax error"):
        ch.command("SELEKT 1")
    assert ch.query("SELECT 1 + 1").result_rows == [(2,)]


def test_bind_parameters_and_query_settings(ch) -> None:
    rows = ch.query("SELECT {name:String} AS n, getSetting('max_threads') AS t",
                    parameters={"name": "maple"}, settings={"max_threads": 3}).result_rows
    assert rows == [("maple", 3)]


def test_embedded_host_http_interface(clickhouse_settings) -> None:
    host = clickhouse.running_host(clickhouse_settings)
    if host is None:
        pytest.skip("not in embedded mode")
    url = host["url"]
    with urllib.request.urlopen(f"{url}/ping") as response:
        assert response.read() == b"Ok.\n"
    # A gzip body, as curl --compressed or any HTTP client may send it.
    request = urllib.request.Request(f"{url}/", data=gzip.compress(b"SELECT 40 + 2"),
                                     headers={"Content-Encoding": "gzip"})
    with urllib.request.urlopen(request) as response:
        assert response.read() == b"42\n"
    request = urllib.request.Request(f"{url}/", data=b"SELECT 1", headers={"Content-Encoding": "br"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 415 and b"unsupported Content-Encoding" in info.value.read()
    with urllib.request.urlopen(f"{url}/metrics") as response:
        assert b"maple_clickhouse_host_requests_total" in response.read()




def test_large_bound_parameters_and_read_only_requests(ch) -> None:
    """clickhouse-connect sends large bound parameters as multipart form fields, and readonly as a setting:
    the embedded host reads the former like ClickHouse does and never lets the latter stick to a
    connection that later requests (the sinks' inserts) reuse."""
    ids = [f"{i:032x}" for i in range(5000)] + ["it's \"quoted\"\n"]
    assert ch.query("SELECT has({ids:Array(String)}, {x:String}), length({ids:Array(String)})",
                    parameters={"ids": ids, "x": "it's \"quoted\"\n"}).result_rows == [(1, 5001)]
    ch.command("CREATE TABLE ro_check (a Int32) ENGINE = MergeTree ORDER BY a")
    for _ in range(8):
        with pytest.raises(DatabaseError, match="readonly"):
            ch.command("INSERT INTO ro_check VALUES (1)", settings={"readonly": 2})
        assert ch.query("SELECT getSetting('readonly')", settings={"readonly": 2}).result_rows == [(2,)]
    for _ in range(8):  # every pooled connection of the host still writes
        ch.command("INSERT INTO ro_check VALUES (1)")
    assert ch.query("SELECT count(), getSetting('readonly') FROM ro_check").result_rows == [(8, 0)]

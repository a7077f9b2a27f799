"""The schema for one node and for a cluster, from one definition per table.

Every generated statement goes through the real ClickHouse parser (`formatQuery` in the embedded engine).
A Replicated cluster with Keeper cannot run here, so its DDL is checked for what docs/cluster.md promises:
engines, Keeper paths, local/Distributed naming and sharding keys, and merge-tree settings that exist.
"""

from __future__ import annotations

import re
import time

import pytest

from maple import schema
from maple.schema import Target

SINGLE = Target("otel", 30)
CLUSTER = Target("otel", 30, "maple")


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.mark.parametrize("target", [SINGLE, CLUSTER, Target("otel", 0, "maple")], ids=["single", "cluster", "no-ttl"])
def test_every_statement_passes_the_clickhouse_parser(ch, target: Target) -> None:
    statements = schema.all_statements(target)
    for statement in statements:
        formatted = ch.query(f"SELECT formatQuery({_literal(statement)})").result_rows[0][0]
        assert formatted.split()[0] == statement.split()[0], statement
    # The check is real: a broken statement is refused by the same parser.
    with pytest.raises(Exception, match="SYNTAX_ERROR|Syntax error"):
        ch.query(f"SELECT formatQuery({_literal(statements[2].replace('ORDER BY', 'ORDER'))})")


def test_settings_named_in_the_ddl_exist_in_this_clickhouse(ch) -> None:
    known = {row[0] for row in ch.query("SELECT name FROM system.merge_tree_settings").result_rows}
    for text in (schema.TABLE_SETTINGS, schema.REPLICATED_TABLE_SETTINGS):
        for name in re.findall(r"(\w+) =", text):
            assert name in known, name


def test_single_node_ddl_applies_and_sharding_columns_match_the_tables(ch) -> None:
    said: list[str] = []
    ran = schema.apply(ch, Target(ch.database, 30), say=said.append)
    assert [m.version for m in ran] == [m.version for m in schema.MIGRATIONS] and len(said) == len(ran)
    assert schema.apply(ch, ch.database, 30, say=said.append) == []  # the old call form still works
    for name, table in schema.TABLES.items():
        types = dict(ch.query(f"SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                              f"AND table = '{name}'").result_rows)
        for column, type_ in table.shard_by:
            assert types[column] == type_, (name, column)
        # The sharding key evaluates on the table's own columns.
        ch.query(f"SELECT {table.sharding_key} FROM {name} LIMIT 0")


def test_a_row_stamped_past_2106_is_not_dropped_as_expired(ch) -> None:
    """toDateTime() of a time past 2106-02-07 wraps around to 1970-1990; with the exporter's TTL the row's part
    expired at once and the row vanished on insert. Maple's workers refuse such times; the tables must not
    lose the rows another writer puts in."""
    schema.apply(ch, Target(ch.database, 30), say=lambda _line: None)
    for table, column in (("otel_logs", "Timestamp"), ("otel_traces", "Timestamp"), ("otel_metrics_gauge", "TimeUnix")):
        ch.command(f"INSERT INTO {table} ({column}, ServiceName) FORMAT JSONColumns "
                   f'{{"{column}": ["9223372036.854775807", "{int(time.time())}.000000000"], '
                   f'"ServiceName": ["far", "now"]}}')
        ch.command(f"OPTIMIZE TABLE {table} FINAL")
        rows = ch.query(f"SELECT ServiceName FROM {table} ORDER BY ServiceName").result_rows
        assert rows == [("far",), ("now",)], table


def _key_and_columns(ch, table: str) -> tuple[str, dict[str, str]]:
    key = ch.query("SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
                   parameters={"t": table}).result_rows[0][0]
    columns = dict(ch.query("SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                            "AND table = {t:String}", parameters={"t": table}).result_rows)
    return key, columns


def test_a_fresh_install_gets_the_exporters_current_generation(ch) -> None:
    schema.apply(ch, Target(ch.database, 30), say=lambda _m: None)
    key, columns = _key_and_columns(ch, "otel_logs")
    assert key == "toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp"
    assert "TimestampTime" not in columns and columns["EventName"] == "String"
    assert sum(name.startswith("__otel_materialized_") for name in columns) == 8
    indexes = dict(ch.query("SELECT name, type FROM system.data_skipping_indices WHERE database = currentDatabase() "
                            "AND table = 'otel_logs'").result_rows)
    assert indexes["idx_lower_body"] == indexes["idx_trace_id"] == "text"  # the embedded engine is 26.9
    assert _key_and_columns(ch, "otel_traces")[1]["SampleRate"] == "Float64"
    assert not ch.query("SHOW TABLES LIKE '%maple_upgrade%'").result_rows


def test_an_install_with_rows_keeps_its_sort_key_and_its_rows(ch) -> None:
    first_two = tuple(m for m in schema.MIGRATIONS if m.version < 3)
    schema.apply(ch, Target(ch.database, 30), migrations=first_two, say=lambda _m: None)
    ch.command("INSERT INTO otel_logs (Timestamp, ServiceName, Body) VALUES (now64(9), 'svc', 'kept')")
    ch.command("INSERT INTO otel_traces (Timestamp, TraceId, ServiceName) VALUES (now64(9), 'ab', 'svc')")
    said: list[str] = []
    ran = schema.apply(ch, Target(ch.database, 30), say=said.append)
    assert [m.version for m in ran] == [m.version for m in schema.MIGRATIONS if m.version >= 3]
    assert any("otel_logs holds rows" in line for line in said)
    key, columns = _key_and_columns(ch, "otel_logs")
    assert key == "ServiceName, TimestampTime, Timestamp"
    assert columns["EventName"] == "String" and "`__otel_materialized_k8s.pod.name`" not in columns
    assert sum(name.startswith("__otel_materialized_") for name in columns) == 8
    assert ch.query("SELECT Body, EventName FROM otel_logs").result_rows == [("kept", "")]
    assert ch.query("SELECT TraceId, SampleRate FROM otel_traces").result_rows == [("ab", 1.0)]
    # The trace-id lookup view still fills from the altered traces table.
    ch.command("INSERT INTO otel_traces (Timestamp, TraceId, ServiceName, SampleRate) VALUES (now64(9), 'cd', 's', 10)")
    assert ch.query("SELECT count() FROM otel_traces_trace_id_ts WHERE TraceId = 'cd'").result_rows == [(1,)]

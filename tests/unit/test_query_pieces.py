"""The query service's pure pieces: time ranges, cursors, the SQL guard, histogram quantiles, trace order,
and the rule that ClickHouse is reached only through query/reader.py."""

from __future__ import annotations

import ast

import pytest

from maple.settings import load_settings
from query import cursor
from query.errors import ApiError
from query.reader import Limits
from query.sqlguard import check
from query.timerange import NS, format_ns, parse_time, resolve
from query.traces import _ordered, histogram_quantile
from tests.helpers.environment import REPO

NOW = 1_750_000_000 * NS


@pytest.mark.parametrize(("text", "ns"), [
    ("now", NOW), ("now-15m", NOW - 900 * NS), ("now-2h", NOW - 7200 * NS), ("now-7d", NOW - 7 * 86400 * NS),
    ("now+1w", NOW + 7 * 86400 * NS), ("1750000000", NOW), ("1750000000000", NOW),
    ("1750000000000000", NOW), ("1750000000000000000", NOW), ("2025-06-15T15:06:40Z", NOW),
    ("2025-06-15T17:06:40+02:00", NOW), ("2025-06-15T15:06:40.5Z", NOW + NS // 2),
])
def test_times(text: str, ns: int) -> None:
    assert parse_time(text, "from", NOW) == ns


@pytest.mark.parametrize("text", ["yesterday", "now-", "now-5x", "now-m", "2025-06-15T15:06:40", "", "now-99999999999d"])
def test_bad_times_name_the_parameter(text: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_time(text, "from", NOW)
    assert info.value.status == 400 and info.value.field == "from"


def test_ranges_default_and_bounded() -> None:
    assert resolve(None, None, 3600, 86400, NOW) == resolve("now-1h", "now", 3600, 86400, NOW)
    with pytest.raises(ApiError, match="after to"):
        resolve("now", "now-1h", 3600, 86400, NOW)
    with pytest.raises(ApiError, match="api.max_range_s"):
        resolve("now-2d", None, 3600, 86400, NOW)
    with pytest.raises(ApiError, match="1970 to 2262"):
        resolve("-5", None, 3600, 86400, NOW)
    assert format_ns(NOW + 5) == "2025-06-15T15:06:40.000000005Z"


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    text = cursor.encode("logs", t=NOW, h=2**63)
    assert cursor.decode(text, "logs", {"t": int, "h": int}) == {"t": NOW, "h": 2**63}
    for bad in ("x", "e30", cursor.encode("traces", t=1, id="a"), cursor.encode("logs", t="1", h=1),
                cursor.encode("logs", t=-1, h=1), "'; DROP TABLE x; --", "a" * 2000):
        with pytest.raises(ApiError) as info:
            cursor.decode(bad, "logs", {"t": int, "h": int})
        assert info.value.field == "cursor" and info.value.status == 400


@pytest.mark.parametrize(("sql", "accepted"), [
    ("SELECT 1", "SELECT 1"),
    ("select 1;", "select 1"),
    ("  WITH a AS (SELECT 1) SELECT * FROM a  ;  ", "WITH a AS (SELECT 1) SELECT * FROM a"),
    ("SHOW TABLES", "SHOW TABLES"),
    ("DESCRIBE TABLE otel_logs", "DESCRIBE TABLE otel_logs"),
    ("EXPLAIN indexes = 1 SELECT 1", "EXPLAIN indexes = 1 SELECT 1"),
    ("SELECT 'a; DROP TABLE x' -- SETTINGS", "SELECT 'a; DROP TABLE x'"),
    ("SELECT `SETTINGS` FROM t", "SELECT `SETTINGS` FROM t"),
    ("SELECT 'it''s', \"FORMAT\"", "SELECT 'it''s', \"FORMAT\""),
    ("SELECT 1 UNION ALL SELECT 2", "SELECT 1 UNION ALL SELECT 2"),
])
def test_sql_guard_accepts_single_reads(sql: str, accepted: str) -> None:
    assert check(sql) == accepted


@pytest.mark.parametrize(("sql", "words"), [
    ("", "empty"), (";", "empty"), ("-- only a comment", "empty"),
    ("DROP TABLE otel_logs", "not 'DROP'"), ("INSERT INTO t VALUES (1)", "not 'INSERT'"),
    ("ALTER TABLE t DELETE WHERE 1", "not 'ALTER'"), ("SET readonly = 0", "not 'SET'"),
    ("OPTIMIZE TABLE t", "not 'OPTIMIZE'"), ("/* SELECT */ DROP TABLE t", "not 'DROP'"),
    ("SELECT 1; DROP TABLE t", "one statement"), ("SELECT 1;SELECT 2", "one statement"),
    ("SELECT 1 SETTINGS max_execution_time = 9999", "SETTINGS"),
    ("SELECT 1 /* x */ settings readonly=0", "SETTINGS"),
    ("SELECT 1 FORMAT TSV", "FORMAT"), ("SELECT 1 INTO OUTFILE '/tmp/x'", "OUTFILE"),
    ("SELECT * FROM url('http://example.com/x', CSV)", "url()"), ("SELECT * FROM file('/etc/passwd')", "file()"),
    ("SELECT file('/etc/passwd')", "file()"), ("SELECT * FROM remote('h', db.t)", "remote()"),
    ("SELECT * FROM s3('s3://b/k')", "s3()"), ("SELECT * FROM mysql('h', 'd', 't', 'u', 'p')", "mysql()"),
    ("SELECT * FROM executable('x', TSV, 'a String')", "executable()"), ("SELECT 'unterminated", "unterminated"),
    ("SELECT 1 /* open", "unterminated"),
])
def test_sql_guard_refuses(sql: str, words: str) -> None:
    with pytest.raises(ApiError) as info:
        check(sql)
    assert info.value.status == 400 and info.value.field == "sql" and words in info.value.message


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    bounds = [10.0, 20.0, 40.0]
    assert histogram_quantile(0.5, bounds, [0, 10, 0, 0]) == 15.0
    assert histogram_quantile(0.25, bounds, [10, 10, 0, 0]) == 5.0   # the first bucket starts at 0
    assert histogram_quantile(0.99, bounds, [0, 0, 0, 5]) == 40.0    # +Inf answers the highest bound
    assert histogram_quantile(0.75, bounds, [0, 10, 10, 0]) == 30.0
    assert histogram_quantile(0.5, bounds, [0, 0, 0, 0]) is None
    assert histogram_quantile(0.5, [], [3]) is None


def test_spans_come_depth_first_with_children_by_start() -> None:
    def span(sid: str, parent: str, t: int) -> dict[str, object]:
        return {"span_id": sid, "parent": parent, "t": t, "trace_id": "t", "name": sid, "kind": "", "service": "s",
                "d": 1, "status": "Unset", "status_message": "", "attrs": {}, "res": {}, "scope": "",
                "scope_version": ""}

    rows = sorted([span("root", "", 0), span("b", "root", 2), span("a", "root", 1), span("a1", "a", 3),
                   span("orphan", "missing", 4), span("x", "y", 5), span("y", "x", 6)], key=lambda r: r["t"])
    ordered = [(s.span_id, s.depth) for s in _ordered(rows)]
    assert ordered[:5] == [("root", 0), ("a", 1), ("a1", 2), ("b", 1), ("orphan", 0)]
    assert sorted(ordered[5:]) == [("x", 0), ("y", 0)]  # a cycle: each span shown once


def test_limits_are_clickhouse_settings_and_read_only() -> None:
    settings = Limits(30, 1000, 10**6, 10**9, max_rows_to_read=5).settings()
    assert settings["readonly"] == 2 and settings["max_execution_time"] == 30
    assert settings["max_result_rows"] == 1000 and settings["result_overflow_mode"] == "throw"
    assert settings["max_rows_to_read"] == 5 and settings["read_overflow_mode"] == "throw"
    assert load_settings(environ={}).api.port == 8080


def test_only_the_reader_reaches_clickhouse() -> None:
    """Issue 16 restricts every read to the caller's team in query/reader.py: nothing may go around it."""
    wrong = []
    for path in sorted((REPO / "query").rglob("*.py")):
        if path.name == "reader.py" and path.parent.name == "query":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name.startswith(("clickhouse_connect", "chdb", "maple.clickhouse")):
                    wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, wrong


def test_the_time_range_is_also_stated_on_the_tables_time_key() -> None:
    """ClickHouse does not derive a range on toStartOfFiveMinutes(Timestamp) from one on Timestamp, so the
    logs source states it on the key too (and on TimestampTime for the older layout)."""
    from query.sources import Source, builtin_logs

    columns = {"Timestamp": "DateTime64(9)", "Body": "String"}
    current = builtin_logs("otel", columns, {}, "toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp")
    assert Source(current, True, columns).time_filter("{s}", "{e}") == (
        "Timestamp >= {s} AND Timestamp <= {e} AND toStartOfFiveMinutes(Timestamp) >= toStartOfFiveMinutes({s}) "
        "AND toStartOfFiveMinutes(Timestamp) <= toStartOfFiveMinutes({e})")
    older = builtin_logs("otel", {**columns, "TimestampTime": "DateTime"},
                         {"__hdx_materialized_k8s.pod.name": "ResourceAttributes['k8s.pod.name']",
                          "__otel_materialized_deployment.environment.name":
                              "ResourceAttributes['deployment.environment.name']"},
                         "ServiceName, TimestampTime, Timestamp")
    assert Source(older, True, columns).time_filter("{s}", "{e}").endswith(
        "TimestampTime >= toDateTime({s}) AND TimestampTime <= toDateTime({e})")
    assert older.materialized == {"k8s.pod.name": "__hdx_materialized_k8s.pod.name",
                                  "deployment.environment.name": "__otel_materialized_deployment.environment.name"}
    plain = builtin_logs("otel", columns, {}, "ServiceName, Timestamp")
    assert Source(plain, True, columns).time_filter("{s}", "{e}") == "Timestamp >= {s} AND Timestamp <= {e}"

"""The sink writer's pure parts: cutting JSONColumns blocks, counting rows, classifying ClickHouse errors."""

from __future__ import annotations

import orjson

from maple.jsoncolumns import cap_block, count_rows, split_block
from sinks.writer import DATA, TRANSIENT, UNKNOWN, classify


def _block(rows: list[tuple[str, str, object]]) -> bytes:
    return orjson.dumps({"Timestamp": [r[0] for r in rows], "Body": [r[1] for r in rows], "N": [r[2] for r in rows]})


def test_dead_letters_are_cut_to_a_size_cap() -> None:
    rows = [(f"1700000000.{i:09d}", "x" * 100, 1) for i in range(64)]
    data = _block(rows[:32]) + b"\n" + _block(rows[32:])
    pieces = cap_block(data, 1500)
    assert all(len(p) <= 1500 for p in pieces) and sum(count_rows(p) for p in pieces) == 64
    assert cap_block(data, len(data)) == [data]

def test_helpers_and_classification_by_the_typed_error_code() -> None:
    assert split_block(_block([("1", "a", 1)])) is None
    left, right = split_block(_block([("1", "a", 1), ("2", "b", 2), ("3", "c", 3)]))
    assert orjson.loads(left)["Body"] == ["a"] and orjson.loads(right)["Body"] == ["b", "c"]
    assert count_rows(left + b"\n" + right) == 3
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    from maple.clickhouse import ClickHouseUnavailable

    assert classify(OperationalError("connection refused")) == (TRANSIENT, None)
    assert classify(ClickHouseUnavailable("no embedded host")) == (TRANSIENT, None)
    assert classify(DatabaseError("too many parts", code=252)) == (TRANSIENT, 252)
    assert classify(DatabaseError("Cannot parse input", code=27)) == (DATA, 27)
    assert classify(DatabaseError("Not implemented", code=48)) == (UNKNOWN, 48)

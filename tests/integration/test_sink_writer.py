"""The sink's inserts on the real ClickHouse engine: idempotent tokens and dead-lettering of bad rows only."""

from __future__ import annotations

import orjson
import pytest

from sinks.writer import DATA_CODES, Inserter

DDL = """CREATE TABLE t (Timestamp DateTime64(9), Body String, N UInt8) ENGINE = MergeTree ORDER BY Timestamp
SETTINGS non_replicated_deduplication_window = 1000"""


def _block(rows: list[tuple[str, str, object]]) -> bytes:
    return orjson.dumps({"Timestamp": [r[0] for r in rows], "Body": [r[1] for r in rows], "N": [r[2] for r in rows]})


@pytest.fixture
def inserter(ch) -> Inserter:
    ch.command(DDL)
    return Inserter(lambda: ch, ch.database, backoff_max_s=0.01, sleep=lambda _s: None)


def test_the_same_token_inserts_once(ch, inserter: Inserter) -> None:
    block = _block([("1700000000.000000001", "a", 1), ("1700000000.000000002", "b", 2)])
    for _ in range(3):
        assert inserter.insert("t", [block, block], "g/otel.logs/0/0-1/t") == []
    assert ch.query("SELECT count() FROM t").result_rows == [(4,)]


def test_a_bad_row_is_dead_lettered_and_the_rest_lands(ch, inserter: Inserter) -> None:
    good = [(f"1700000000.{i:09d}", f"row-{i}", i) for i in range(1, 40)]
    bad = ("99999999999999.0", "the year 5138", 1)  # beyond DateTime64(9)'s range
    blocks = [_block(good[:20]), _block(good[20:30] + [bad] + good[30:])]
    rejected = inserter.insert("t", blocks, "g/otel.logs/0/0-1/t")
    assert len(rejected) == 1 and rejected[0].rows == 1
    assert orjson.loads(rejected[0].block)["Body"] == ["the year 5138"]
    assert rejected[0].code in DATA_CODES and rejected[0].token.startswith("g/otel.logs/0/0-1/t/")
    assert ch.query("SELECT count(), uniqExact(Body) FROM t").result_rows == [(39, 39)]
    # A crash after this and a redo of the same batch: every sub-insert is deduplicated.
    assert len(inserter.insert("t", blocks, "g/otel.logs/0/0-1/t")) == 1
    assert ch.query("SELECT count() FROM t").result_rows == [(39,)]


def test_an_error_on_every_row_costs_a_bounded_number_of_inserts(ch, inserter: Inserter) -> None:
    attempts = []
    original = inserter._insert_once
    inserter._insert_once = lambda *a: (attempts.append(a), original(*a))[1]  # count real attempts
    # Every row carries text where the table wants a number (as after a schema change gone wrong).
    blocks = [_block([(f"1700000000.{i:09d}", "x", "not a number") for i in range(50)]) for _ in range(8)]
    rejected = inserter.insert("t", blocks, "tok")
    assert sum(r.rows for r in rejected) == 400
    assert len(attempts) <= 70


def test_unknown_errors_are_retried_not_dead_lettered(ch, inserter: Inserter) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    failures = iter([DatabaseError("Query was cancelled", code=394), DatabaseError("No ZooKeeper", code=225)])
    original = inserter._insert_once

    def flaky(*args):
        error = next(failures, None)
        if error is not None:
            raise error
        return original(*args)

    inserter._insert_once = flaky
    assert inserter.insert("t", [_block([("1700000000.000000001", "a", 1)])], "tok-unknown") == []
    assert ch.query("SELECT count() FROM t").result_rows == [(1,)]


def test_many_bad_rows_among_good_ones_are_isolated_one_by_one(ch, inserter: Inserter) -> None:
    """Every bad row is found, however many, while they are the minority: no good row is dead-lettered
    with them (a fixed cap of 64 inserts used to dead-letter whole blocks here)."""
    rows = [(f"1700000000.{i:09d}", f"row-{i}", i % 200) for i in range(240)]
    for i in range(0, 240, 8):
        rows[i] = ("99999999999999.0", f"bad-{i}", 1)  # beyond DateTime64(9)'s range
    blocks = [_block(rows[j:j + 40]) for j in range(0, 240, 40)]
    rejected = inserter.insert("t", blocks, "tok-many")
    assert sorted(orjson.loads(r.block)["Body"][0] for r in rejected) == sorted(f"bad-{i}" for i in range(0, 240, 8))
    assert all(r.rows == 1 for r in rejected)
    assert ch.query("SELECT count(), countIf(Body LIKE 'bad-%') FROM t").result_rows == [(210, 0)]
    assert len(inserter.insert("t", blocks, "tok-many")) == 30  # a redo finds the same rows; nothing lands twice
    assert ch.query("SELECT count() FROM t").result_rows == [(210,)]


def test_stamped_blocks_of_both_formats_land_with_their_tenant_and_dedup_as_before(ch, inserter: Inserter) -> None:
    """The sink's tenant column on JSONColumns and on Native blocks (ClickHouse's own Native output, so the
    stamp works on the bytes the real format has); a bad row of a stamped block still bisects alone."""
    import time

    from maple import schema, tenants

    schema.apply(ch, schema.Target(ch.database, 30), say=lambda _m: None)
    now = int(time.time())  # recent rows: older ones would expire at once (the tables' TTL)
    json_block = orjson.dumps({"Timestamp": [f"{now}.000000001", f"{now}.000000002"], "ServiceName": ["a", "a"],
                               "Body": ["j1", "j2"]})
    native = ch.raw_query(f"SELECT toDateTime64({now} + number, 9) AS Timestamp, 'n' AS ServiceName, "
                          "concat('n', toString(number)) AS Body FROM numbers(300) FORMAT Native")
    blocks = [tenants.stamp(json_block, "team-a", 2, schema.TENANT_COLUMN),
              tenants.stamp(orjson.dumps({"Timestamp": [f"{now}.3"], "ServiceName": ["b"], "Body": ["j3"]}),
                            "team-b", 1, schema.TENANT_COLUMN)]
    for _ in range(2):
        assert inserter.insert("otel_logs", blocks, "g/otel.logs/0/0-1/otel_logs") == []
        assert inserter.insert("otel_logs", [tenants.stamp(native, "team-c", 300, schema.TENANT_COLUMN, "Native")],
                               "g/otel.logs/0/2-2/otel_logs", "Native") == []
    assert ch.query("SELECT Tenant, count() FROM otel_logs GROUP BY Tenant ORDER BY Tenant").result_rows == [
        ("team-a", 2), ("team-b", 1), ("team-c", 300)]
    bad = tenants.stamp(orjson.dumps({"Timestamp": [f"{now}.4", "99999999999999.0"], "ServiceName": ["d", "d"],
                                      "Body": ["good", "bad"]}), "team-d", 2, schema.TENANT_COLUMN)
    rejected = inserter.insert("otel_logs", [bad], "g/otel.logs/0/3-3/otel_logs")
    assert [orjson.loads(r.block)["Tenant"] for r in rejected] == [["team-d"]]
    assert ch.query("SELECT Body FROM otel_logs WHERE Tenant = 'team-d'").result_rows == [("good",)]

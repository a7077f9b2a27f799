"""The sink's batching and state rules on plain values: watermarks, intents, tokens."""

from __future__ import annotations

import dataclasses

from maple.topics import FORMAT_JSON, FORMAT_NATIVE, SourcePosition
from sinks.batch import Limits, PartitionBatch, RowBatch, decode_epoch, decode_state, encode_state

LIMITS = Limits(rows=10, size=1 << 20, interval_s=1.0)


def _rb(offset: int, source_offset: int | None, part: int = 0, rows: int = 2, table: str = "otel_logs") -> RowBatch:
    source = SourcePosition("otlp.logs.raw", 3, source_offset, part) if source_offset is not None else None
    return RowBatch(offset, table, rows, f'{{"n":[{offset}]}}'.encode(), source, None)


def test_copies_a_restarted_worker_emits_again_are_dropped() -> None:
    batch = PartitionBatch("otel.logs", 3, start=0, committed_wm={})
    taken = [batch.add(_rb(offset, src), now=0.0) for offset, src in enumerate([10, 11, 12, 11, 12, 13])]
    assert taken == [True, True, True, False, False, True]
    assert batch.duplicates == 2 and batch.rows == 8
    assert batch.wm == {"otlp.logs.raw/3": (13, 0)}


def test_parts_of_one_source_record_are_ordered_by_part() -> None:
    batch = PartitionBatch("otel.metrics", 0, start=0, committed_wm={"otlp.logs.raw/3": (5, 0)})
    assert [batch.add(_rb(i, 5, part), 0.0) for i, part in enumerate([0, 1, 2, 1])] == [False, True, True, False]


def test_batches_without_a_source_are_always_taken() -> None:
    batch = PartitionBatch("otel.logs", 0, start=0, committed_wm={})
    assert batch.add(_rb(0, None), 0.0) and batch.add(_rb(1, None), 0.0)


def test_ready_on_rows_or_age() -> None:
    batch = PartitionBatch("otel.logs", 0, start=0, committed_wm={})
    assert not batch.ready(0.0, LIMITS)
    batch.add(_rb(0, 1, rows=4), now=100.0)
    assert not batch.ready(100.5, LIMITS) and batch.ready(101.0, LIMITS)
    batch.add(_rb(1, 2, rows=6), now=100.1)
    assert batch.ready(100.2, LIMITS)


def test_intent_and_done_state_round_trip_and_the_token_depends_only_on_the_range() -> None:
    batch = PartitionBatch("otel.logs", 2, start=40, committed_wm={"otlp.logs.raw/3": (9, 0)})
    batch.add(_rb(40, 10), 0.0)
    batch.add(_rb(41, 11, table="otel_logs"), 0.0)
    assert decode_state(batch.intent()) == ({"otlp.logs.raw/3": (9, 0)}, 41)
    assert decode_state(batch.done()) == ({"otlp.logs.raw/3": (11, 0)}, None)
    token = batch.token("maple-sink", "otel_logs")
    assert token == "maple-sink/otel.logs/2/40-41/otel_logs"

    # After a crash, the range is rebuilt from the intent: same start, same end, same token, same rows.
    wm, end = decode_state(batch.intent())
    rebuilt = PartitionBatch("otel.logs", 2, start=40, committed_wm=wm, pending_end=end)
    rebuilt.add(_rb(40, 10), 0.0)
    assert not rebuilt.ready(0.0, LIMITS)
    rebuilt.add(_rb(41, 11), 0.0)
    assert rebuilt.ready(0.0, LIMITS) and not rebuilt.belongs(42)
    assert rebuilt.token("maple-sink", "otel_logs") == token and rebuilt.inserts() == batch.inserts()
    nxt = rebuilt.following()
    assert (nxt.start, nxt.committed_wm, nxt.pending_end) == (42, {"otlp.logs.raw/3": (11, 0)}, None)


def test_tables_keep_offset_order_per_table() -> None:
    batch = PartitionBatch("otel.metrics", 0, start=0, committed_wm={})
    for i, table in enumerate(["otel_metrics_sum", "otel_metrics_gauge", "otel_metrics_sum"]):
        batch.add(_rb(i, i, table=table), 0.0)
    assert batch.inserts() == {("otel_metrics_sum", FORMAT_JSON): [b'{"n":[0]}', b'{"n":[2]}'],
                               ("otel_metrics_gauge", FORMAT_JSON): [b'{"n":[1]}']}


def test_each_format_of_a_table_is_its_own_insert_with_its_own_token() -> None:
    batch = PartitionBatch("otel.logs", 0, start=0, committed_wm={})
    batch.add(_rb(0, 0), 0.0)
    batch.add(dataclasses.replace(_rb(1, 1), value=b"native", fmt=FORMAT_NATIVE), 0.0)
    batch.add(_rb(2, 2), 0.0)
    assert batch.inserts() == {("otel_logs", FORMAT_JSON): [b'{"n":[0]}', b'{"n":[2]}'],
                               ("otel_logs", FORMAT_NATIVE): [b"native"]}
    assert batch.token("g", "otel_logs") == "g/otel.logs/0/0-2/otel_logs"  # unchanged for JSONColumns
    assert batch.token("g", "otel_logs", FORMAT_NATIVE) == "g/otel.logs/0/0-2/otel_logs/Native"


def test_garbage_metadata_is_no_state() -> None:
    assert decode_state(None) == ({}, None)
    assert decode_state("not json") == ({}, None)
    assert decode_state('{"wm": {"t/1": "x"}}') == ({}, None)
    assert decode_state(encode_state({"t/1": (3, 1)}, 9)) == ({"t/1": (3, 1)}, 9)


def test_a_batch_without_a_source_is_its_own_source_so_a_rewind_that_keeps_watermarks_drops_it() -> None:
    batch = PartitionBatch("otel.logs", 1, start=0, committed_wm={})
    assert batch.add(_rb(0, None), 0.0) and batch.add(_rb(1, None), 0.0)
    assert batch.wm == {"otel.logs/1": (1, 0)}
    rewound = PartitionBatch("otel.logs", 1, start=0, committed_wm=decode_state(batch.done())[0])
    assert [rewound.add(_rb(i, None), 0.0) for i in range(3)] == [False, False, True]


def test_the_replay_epoch_is_in_the_token_and_carried_through_intent_done_and_following() -> None:
    batch = PartitionBatch("otel.logs", 2, start=40, committed_wm={}, epoch=3)
    batch.add(_rb(40, 10), 0.0)
    assert batch.token("g", "otel_logs") == "g/otel.logs/2/40-40/otel_logs/r3"
    assert decode_epoch(batch.intent()) == 3 and decode_epoch(batch.done()) == 3
    assert batch.following().epoch == 3
    assert decode_epoch(None) == 0 and decode_epoch("junk") == 0 and decode_epoch(encode_state({})) == 0

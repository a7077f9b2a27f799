"""The tail sampler's state machine, RED and repartitioning as pure functions, and the restart property
that makes sampling exactly-once (a restart at any committed offset, with the sink dropping copies by
position, yields exactly the rows of an uninterrupted run). The policies have their own tests in
tests/unit/sampling/."""

from __future__ import annotations

import os
import random
import time
from collections import Counter as Multiset

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from maple.topics import SourcePosition
from processors import red
from processors.sampling import ConfigError, decode_config
from processors.tail_sampler import Emission, PartitionSampler, SpanBatch
from tests.helpers.spans import NOW, span_columns
from tests.helpers.spans import span_columns as _cols
from topologies.batches import RawRecord, span_partition, trace_batches

# -- RED ------------------------------------------------------------------------------------------

def test_red_counts_every_span_once_per_series_with_connector_buckets() -> None:
    spans = _cols([
        {"ServiceName": "api", "SpanName": "GET /", "Duration": 2_000_000},          # exactly on the 2 ms bound
        {"ServiceName": "api", "SpanName": "GET /", "Duration": 2_000_001},          # just above it
        {"ServiceName": "api", "SpanName": "GET /", "Duration": 20_000_000_000},     # above the last bound
        {"ServiceName": "api", "SpanName": "GET /", "StatusCode": "Error", "Duration": 5_000_000},
        {"ServiceName": "db", "SpanName": "query", "SpanKind": "Client", "Duration": 1,
         "SpanAttributes": {"db.system": "postgres"}},
    ])
    options = red.RedOptions(dimensions=(red.Dimension.parse("db.system=none"),))
    tables = red.to_tables(spans, NOW, options)
    sums, histograms = tables["otel_metrics_sum"], tables["otel_metrics_histogram"]
    assert sum(sums["Value"]) == 5 and sum(histograms["Count"]) == 5
    assert set(sums["MetricName"]) == {red.CALLS} and set(histograms["MetricName"]) == {red.DURATION}
    assert set(sums["AggregationTemporality"]) == {red.DELTA}
    series = {(a["service.name"], a["span.name"], a["span.kind"], a["status.code"], a["db.system"]): (v, c)
              for a, v, c in zip(sums["Attributes"], sums["Value"], histograms["BucketCounts"])}
    ok = series[("api", "GET /", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET", "none")]
    assert ok[0] == 3 and ok[1][0] == 1 and ok[1][1] == 1 and ok[1][-1] == 1 and len(ok[1]) == 17
    assert series[("api", "GET /", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR", "none")][0] == 1
    assert series[("db", "query", "SPAN_KIND_CLIENT", "STATUS_CODE_UNSET", "postgres")][0] == 1
    with pytest.raises(ValueError):
        red.Dimension.parse("=x")


# -- repartitioning -------------------------------------------------------------------------------

def _request(traces_: int, spans: int, service: str = "svc") -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name", value={"string_value": service})
    scope = resource_spans.scope_spans.add()
    now = time.time_ns()
    for _ in range(traces_):
        trace_id = os.urandom(16)
        for n in range(spans):
            span = scope.spans.add(trace_id=trace_id, span_id=os.urandom(8), name=f"op{n}", kind=2,
                                   start_time_unix_nano=now, end_time_unix_nano=now + 1000 * (n + 1))
            span.events.add(time_unix_nano=now, name="e").attributes.add(key="k", value={"int_value": 3})
    return request.SerializeToString()


def test_spans_of_a_trace_share_a_partition_and_red_sees_all_of_them() -> None:
    raw = RawRecord(_request(40, 5), "otlp.traces.raw", 3, 77, {}, 0)
    records = trace_batches(raw, span_partitions=4, metric_partitions=2).records
    spans = [r for r in records if r.topic == "otel.spans"]
    metrics = [r for r in records if r.topic == "otel.metrics"]
    seen: dict[str, int] = {}
    total = 0
    for record in spans:
        cols = orjson.loads(record.value)
        total += len(cols["TraceId"])
        for trace_id in cols["TraceId"]:
            assert span_partition(trace_id, 4) == record.partition
            assert seen.setdefault(trace_id, record.partition) == record.partition
        assert cols["Events.Attributes"][0] == [{"k": "3"}]
        assert all(p == "" or len(p) == 16 for p in cols["ParentSpanId"])
    assert total == 200 and len(seen) == 40
    assert {r.partition for r in metrics} == {1}  # raw partition 3 % 2
    parts = [int(dict(r.headers)["maple.source"].decode().rsplit("/", 1)[1]) for r in records]
    assert parts == list(range(len(records)))  # one numbering across every output of the record
    calls = orjson.loads(next(r.value for r in metrics if dict(r.headers)["maple.table"] == b"otel_metrics_sum"))
    assert sum(calls["Value"]) == 200


# -- the sampler's state machine and its restart property ------------------------------------------

CONFIG = {"decision_wait": "2s", "late_span_window": "3s", "policies": [
    {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
    {"name": "share", "type": "probabilistic", "probabilistic": {"sampling_percentage": 30}}]}


def _stream(seed: int, messages: int = 120, tenants: tuple[str, ...] = ("default",)) -> list[SpanBatch]:
    """Span batches over stream time: traces spread over several messages, late spans, copies and ticks.

    With several `tenants`, each batch is one tenant's, and more spans of a trace may come in another
    tenant's batch: the same trace id under two tenants, which are two traces."""
    rng = random.Random(seed)
    out: list[SpanBatch] = []
    open_traces: list[tuple[str, int]] = []
    clock = 1_000_000
    raw_offset = 0
    for offset in range(messages):
        clock += rng.randint(50, 400)
        if rng.random() < 0.08:
            # A tick, written a moment before it is read: its progress may lag what the data showed since.
            out.append(SpanBatch(offset, clock, progress={0: clock - rng.randint(0, 600)}))
            continue
        if out and rng.random() < 0.06:
            earlier = [b for b in out[-40:] if b.columns is not None]
            previous = rng.choice(earlier) if earlier else None
            if previous is not None:  # an upstream worker restarted: a copy of an earlier batch
                out.append(SpanBatch(offset, clock, previous.columns, previous.source_key, previous.source_position, 0,
                                     tenant=previous.tenant))
                continue
        spans = []
        for _ in range(rng.randint(1, 4)):
            trace_id = rng.randbytes(16).hex()
            open_traces.append((trace_id, clock))
            # A trace's root (no parent) comes first, or later with the other spans, as real traces do.
            spans.append({"TraceId": trace_id, "SpanId": rng.randbytes(8).hex(),
                          "ParentSpanId": "" if rng.random() < 0.5 else rng.randbytes(8).hex(),
                          "StatusCode": "Error" if rng.random() < 0.1 else "Unset"})
        for trace_id, started in rng.sample(open_traces, min(len(open_traces), rng.randint(0, 4))):
            if clock - started < 5000:  # more spans of a recent trace; some arrive after its decision
                spans.append({"TraceId": trace_id, "SpanId": rng.randbytes(8).hex(), "StatusCode": "Unset",
                              "ParentSpanId": "" if rng.random() < 0.2 else rng.randbytes(8).hex()})
        raw_offset += 1
        tenant = rng.choice(tenants) if len(tenants) > 1 else tenants[0]
        out.append(SpanBatch(offset, clock, _cols(spans), "otlp.traces.raw/0", (raw_offset, 0), 0, tenant=tenant))
    out.append(SpanBatch(messages, clock + 60_000, progress={0: clock + 60_000}))  # decides and forgets everything
    return out


Written = tuple[tuple[int, int], list[tuple[str, str]]]  # a sampled batch's position, its (tenant, span id)s


def _run(batches: list[SpanBatch], config: dict | None = None) -> tuple[list[tuple[list[Written], int | None]],
                                                                        PartitionSampler]:
    """The batches written at each message, as the worker writes them (positions numbered per group across
    tenants), with the safe offset after each message; and the sampler at the end."""
    from topologies.sampler import _sampled_records

    sampler = PartitionSampler(decode_config(config or CONFIG))
    out = []
    for batch in batches:
        emissions: list[Emission] = sampler.step(batch)
        safe = sampler.safe_offset()
        written: list[Written] = []
        for record in _sampled_records(emissions, 0, batch.offset, 1):
            headers = dict(record.headers)
            position = SourcePosition.parse(headers["maple.source"])
            tenant = headers["maple.tenant"].decode()
            written.append(((position.offset, position.part),
                            [(tenant, span) for span in orjson.loads(record.value)["SpanId"]]))
        out.append((written, safe))
    return out, sampler


def _sink(emissions: list[Written]) -> Multiset:
    """What the sink keeps: batches in order, dropping any at or below the position watermark."""
    kept: Multiset = Multiset()
    watermark = (-1, -1)
    for position, spans in emissions:
        if position <= watermark:
            continue
        watermark = position
        kept.update(spans)
    return kept


# Deciding early once the root arrived (the Collector's decision_wait_after_root_received) must keep it.
EARLY = {**CONFIG, "decision_wait_after_root_received": "500ms"}


# Several tenants: traces keyed by (tenant, trace id), a group's batches numbered on across tenants.
TEAMS = ("team-a", "team-b", "team-c")


@pytest.mark.parametrize(("seed", "config", "tenants"), [
    (1, CONFIG, ("default",)), (2, CONFIG, ("default",)), (3, CONFIG, ("default",)),
    (4, EARLY, ("default",)), (5, EARLY, ("default",)), (6, EARLY, ("default",)),
    (7, CONFIG, TEAMS), (8, CONFIG, TEAMS), (9, EARLY, TEAMS), (10, EARLY, TEAMS)])
def test_a_restart_at_any_committed_offset_emits_exactly_the_uninterrupted_rows(seed: int, config: dict,
                                                                                tenants: tuple[str, ...]) -> None:
    batches = _stream(seed, tenants=tenants)
    full, sampler = _run(batches, config)
    assert sampler.pending_traces == 0  # the last tick decided every trace: none was lost track of
    expected = _sink([e for step, _ in full for e in step])
    assert sum(expected.values()) > 0 and all(count == 1 for count in expected.values())
    if len(tenants) > 1:  # the stream holds what the tenant keys are for, or the seed checks nothing new
        assert {tenant for tenant, _ in expected} == set(tenants)
        traces = {(b.tenant, t) for b in batches if b.columns is not None for t in b.columns["TraceId"]}
        assert len({t for _, t in traces}) < len(traces)  # a trace id under two tenants
    checked = 0
    for crash in range(0, len(batches), 3):
        # The worker committed the safe offset of some earlier step j (acks lag), and Kafka holds every
        # row emitted up to the crash (the worst case for copies). The successor starts at that commit.
        for j in range(max(0, crash - 6), crash + 1):
            committed = full[j][1]
            if committed is None:
                continue
            before = [e for step, _ in full[:crash + 1] for e in step]
            resumed, _ = _run([b for b in batches if b.offset >= committed], config)
            after = [e for step, _ in resumed for e in step]
            assert _sink(before + after) == expected, f"crash after {crash}, committed {committed}"
            checked += 1
    assert checked > 50


def test_late_spans_follow_the_cached_decision_and_the_bound_forces_traces_out() -> None:
    config = decode_config({"decision_wait": "1s", "late_span_window": "10s", "num_traces": 2, "policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}]})
    sampler = PartitionSampler(config)
    kept, dropped = "11" * 16, "22" * 16
    sampler.step(SpanBatch(0, 1000, progress={0: 1000}))
    sampler.step(SpanBatch(1, 1000, _cols([{"TraceId": kept, "SpanId": "a", "StatusCode": "Error"},
                                           {"TraceId": dropped, "SpanId": "b"}]), raw_partition=0))
    assert sampler.safe_offset() == 0 and sampler.pending_traces == 2
    emitted = sampler.step(SpanBatch(2, 2000, progress={0: 2000}))  # decision_wait passed
    assert [e.columns["SpanId"] for e in emitted] == [["a"]]
    late = sampler.step(SpanBatch(3, 2500, _cols([{"TraceId": kept, "SpanId": "c"}, {"TraceId": dropped, "SpanId": "d"}]),
                                  raw_partition=0))
    assert [(e.first_offset, e.columns["SpanId"]) for e in late] == [(1, ["c"])]
    assert sampler.counts.late_spans_sampled == 1 and sampler.counts.late_spans_dropped == 1
    assert sampler.safe_offset() == 0  # both traces are still remembered: a restart must see them whole
    sampler.step(SpanBatch(4, 13_000, progress={0: 13_000}))  # late_span_window passed: forgotten
    assert sampler.safe_offset() == 4  # the tick: restarts begin at a checkpoint
    sampler.step(SpanBatch(5, 13_001, _cols([{"TraceId": f"{n:032x}", "SpanId": str(n)} for n in range(3)]),
                           raw_partition=0))
    assert sampler.counts.forced_out == 1 and sampler.pending_traces == 2


def test_a_stale_tick_never_moves_the_clock_back_and_is_no_checkpoint() -> None:
    config = decode_config({"decision_wait": "1s", "late_span_window": "0s",
                           "policies": [{"name": "all", "type": "always_sample"}]})
    sampler = PartitionSampler(config, raw_partitions=1)
    sampler.step(SpanBatch(0, 1000, progress={0: 1000}))
    sampler.step(SpanBatch(1, 20_000, _cols([{"TraceId": "55" * 16, "SpanId": "a"}]), raw_partition=0))
    assert sampler.clock_ms == 20_000
    sampler.step(SpanBatch(2, 10_000, progress={0: 10_000}))  # written before offset 1 was read
    assert sampler.clock_ms == 20_000
    emitted = sampler.step(SpanBatch(3, 22_000, _cols([{"TraceId": "66" * 16, "SpanId": "b"}]), raw_partition=0))
    assert [e.columns["SpanId"] for e in emitted] == [["a"]]
    sampler.step(SpanBatch(4, 22_001, _cols([]), raw_partition=0))  # the first trace is forgotten now
    # Offsets 1 and 2 hold nothing anyone needs, but the tick at 2 did not hold the state of its offset:
    # a restart there would start with a clock of 10 s instead of 20 s. Only the tick at 0 qualifies.
    assert sampler.safe_offset() == 0
    sampler.step(SpanBatch(5, 30_000, progress={0: 30_000}))  # decides the second trace
    sampler.step(SpanBatch(6, 30_001, progress={0: 30_001}))  # forgets it: nothing left before 6
    assert sampler.safe_offset() == 6


def test_a_raw_partition_that_is_behind_holds_decisions_back() -> None:
    config = decode_config({"decision_wait": "1s", "policies": [{"name": "all", "type": "always_sample"}]})
    sampler = PartitionSampler(config, raw_partitions=2)
    trace = "33" * 16
    sampler.step(SpanBatch(0, 1000, progress={0: 1000, 1: 1000}))
    sampler.step(SpanBatch(1, 1000, _cols([{"TraceId": trace, "SpanId": "a"}]), raw_partition=0))
    # Raw partition 0 races ahead (a backlog being worked off); partition 1 has not caught up yet.
    assert sampler.step(SpanBatch(2, 9000, _cols([{"TraceId": "44" * 16, "SpanId": "x"}]), raw_partition=0)) == []
    assert sampler.pending_traces == 2
    # The rest of the trace arrives through partition 1, then partition 1 moves on: now it is decided, whole.
    sampler.step(SpanBatch(3, 1100, _cols([{"TraceId": trace, "SpanId": "b"}]), raw_partition=1))
    emitted = sampler.step(SpanBatch(4, 2500, _cols([]), raw_partition=1))
    assert [e.columns["SpanId"] for e in emitted] == [["a", "b"]]


def test_two_tenants_with_one_trace_id_are_two_traces_and_emit_apart() -> None:
    """A tenant cannot make another tenant's trace kept (or dropped) by reusing its id, and every emitted
    batch holds one tenant's rows: the sink writes the batch's tenant into each of them."""
    config = decode_config({"decision_wait": "1s", "policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}]})
    sampler = PartitionSampler(config)
    shared = "77" * 16
    sampler.step(SpanBatch(0, 1000, progress={0: 1000}))
    sampler.step(SpanBatch(1, 1000, _cols([{"TraceId": shared, "SpanId": "a1", "StatusCode": "Error"}]),
                           raw_partition=0, tenant="team-a"))
    sampler.step(SpanBatch(2, 1000, _cols([{"TraceId": shared, "SpanId": "b1"}, {"TraceId": "", "SpanId": "b0"}]),
                           raw_partition=0, tenant="team-b"))
    assert sampler.pending_traces == 2
    emitted = sampler.step(SpanBatch(3, 3000, progress={0: 3000}))
    # team-b's trace has no error: dropped, although team-a's trace with the same id was kept.
    assert [(e.first_offset, e.tenant, e.columns["SpanId"]) for e in emitted] == [(1, "team-a", ["a1"])]
    # A late span of each: each follows its own tenant's decision.
    late = sampler.step(SpanBatch(4, 3100, _cols([{"TraceId": shared, "SpanId": "a2"}]), raw_partition=0,
                                  tenant="team-a"))
    late += sampler.step(SpanBatch(5, 3100, _cols([{"TraceId": shared, "SpanId": "b2"}]), raw_partition=0,
                                   tenant="team-b"))
    assert [(e.tenant, e.columns["SpanId"]) for e in late] == [("team-a", ["a2"])]


def test_a_group_of_two_tenants_is_numbered_on_from_the_first() -> None:
    from topologies.sampler import GROUP_PIECES, _sampled_records

    cols = _cols([{"TraceId": "88" * 16, "SpanId": "x"}])
    records = _sampled_records([Emission(7, cols, "a"), Emission(7, cols, "b"), Emission(9, cols, "a")], 3, 42, 4)
    headers = [dict(r.headers) for r in records]
    assert [h["maple.source"] for h in headers] == [
        f"otel.spans/3/42/{7 * GROUP_PIECES}".encode(), f"otel.spans/3/42/{7 * GROUP_PIECES + 1}".encode(),
        f"otel.spans/3/42/{9 * GROUP_PIECES}".encode()]
    assert [h["maple.tenant"] for h in headers] == [b"a", b"b", b"a"]


def test_a_trace_whose_root_arrived_is_decided_after_root_wait_instead_of_decision_wait() -> None:
    config = decode_config({"decision_wait": "10s", "decision_wait_after_root_received": "1s",
                            "policies": [{"name": "all", "type": "always_sample"}]})
    sampler = PartitionSampler(config)
    child = span_columns([{"TraceId": "aa" * 16, "SpanId": "01" * 8, "ParentSpanId": "02" * 8}])
    root = span_columns([{"TraceId": "aa" * 16, "SpanId": "02" * 8},
                         {"TraceId": "bb" * 16, "SpanId": "03" * 8, "ParentSpanId": "04" * 8}])
    assert sampler.step(SpanBatch(0, 1000, child, "otlp.traces.raw/0", (0, 0), 0)) == []
    assert sampler.step(SpanBatch(1, 3000, root, "otlp.traces.raw/0", (1, 0), 0)) == []
    # aa's root came at 3000: decided at 4000, not at 11000; bb has no root yet and waits its full 10 s
    [emission] = sampler.step(SpanBatch(2, 4000, progress={0: 4000}))
    assert emission.first_offset == 0 and emission.columns["SpanId"] == ["01" * 8, "02" * 8]
    assert sampler.pending_traces == 1 and sampler.step(SpanBatch(3, 12_999, progress={0: 12_999})) == []
    [late] = sampler.step(SpanBatch(4, 13_000, progress={0: 13_000}))
    assert late.columns["TraceId"] == ["bb" * 16]


ALL = [{"name": "all", "type": "always_sample"}]


def test_decision_wait_after_root_received_is_checked() -> None:
    with pytest.raises(ConfigError, match="decision_wait_after_root_received"):
        decode_config({"decision_wait": "2s", "decision_wait_after_root_received": "5s", "policies": ALL})
    assert decode_config({"policies": ALL}).decision_wait_after_root_ms is None
    assert decode_config({"decision_wait_after_root_received": "250ms", "policies": ALL}).decision_wait_after_root_ms == 250

"""Tail sampling, RED and repartitioning as pure functions: policies, the sampler's state machine, and the
restart property that makes sampling exactly-once (a restart at any committed offset, with the sink
dropping copies by position, yields exactly the rows of an uninterrupted run)."""

from __future__ import annotations

import os
import random
import time
from collections import Counter as Multiset
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from processors import red
from processors.sampling import DEFAULT_CONFIG, ConfigError, Trace, decide, fnv1a64, parse_config
from processors.tail_sampler import Emission, PartitionSampler, SpanBatch
from topologies.batches import RawRecord, span_partition, trace_batches

NOW = 1_700_000_000_000_000_000


def _cols(spans: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """otel_traces columns (plus StartNs) for spans given as dicts of the fields a test cares about."""
    defaults = {"Timestamp": "0", "SpanId": "", "ParentSpanId": "", "TraceState": "", "SpanName": "op", "SpanKind": "Server",
                "ServiceName": "svc", "ResourceAttributes": {}, "ScopeName": "", "ScopeVersion": "", "SpanAttributes": {},
                "Duration": 1_000_000, "StatusCode": "Unset", "StatusMessage": "", "Events.Timestamp": [],
                "Events.Name": [], "Events.Attributes": [], "Links.TraceId": [], "Links.SpanId": [],
                "Links.TraceState": [], "Links.Attributes": [], "StartNs": NOW}
    return {name: [span.get(name, default) for span in spans]
            for name, default in {"TraceId": "", **defaults}.items()}


def _trace(spans: list[dict[str, Any]], trace_id: str = "ab" * 16) -> Trace:
    cols = _cols([{"TraceId": trace_id, **s} for s in spans])
    return Trace(trace_id, [(cols, i) for i in range(len(spans))])


def _policies(*specs: dict[str, Any]) -> list:
    return list(parse_config({"policies": list(specs)}).policies)


# -- policies -------------------------------------------------------------------------------------

def test_leaf_policies_vote_on_the_whole_trace() -> None:
    slow = _trace([{"StartNs": NOW, "Duration": 200_000_000}, {"StartNs": NOW + 900_000_000, "Duration": 150_000_000}])
    assert slow.latency_ms() == pytest.approx(1050.0)
    assert decide(_policies({"name": "l", "type": "latency", "latency": {"threshold_ms": 1000}}), slow, 0)
    assert not decide(_policies({"name": "l", "type": "latency", "latency": {"threshold_ms": 1100}}), slow, 0)
    assert not decide(_policies({"name": "l", "type": "latency",
                                 "latency": {"threshold_ms": 100, "upper_threshold_ms": 1000}}), slow, 0)

    errored = _trace([{}, {"StatusCode": "Error"}])
    assert decide(_policies({"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}), errored, 0)
    assert not decide(_policies({"name": "e", "type": "status_code", "status_code": {"status_codes": ["OK"]}}), errored, 0)

    tagged = _trace([{"SpanAttributes": {"http.status_code": "503", "cache.hit": "true"}},
                     {"ResourceAttributes": {"deployment.environment": "canary"}}])
    assert decide(_policies({"name": "n", "type": "numeric_attribute",
                             "numeric_attribute": {"key": "http.status_code", "min_value": 500}}), tagged, 0)
    assert not decide(_policies({"name": "n", "type": "numeric_attribute",
                                 "numeric_attribute": {"key": "http.status_code", "max_value": 499}}), tagged, 0)
    assert decide(_policies({"name": "s", "type": "string_attribute",
                             "string_attribute": {"key": "deployment.environment", "values": ["canary"]}}), tagged, 0)
    assert decide(_policies({"name": "s", "type": "string_attribute", "string_attribute": {
        "key": "deployment.environment", "values": ["^can"], "enabled_regex_matching": True}}), tagged, 0)
    assert not decide(_policies({"name": "s", "type": "string_attribute", "string_attribute": {
        "key": "deployment.environment", "values": ["canary"], "invert_match": True}}), tagged, 0)
    assert decide(_policies({"name": "b", "type": "boolean_attribute",
                             "boolean_attribute": {"key": "cache.hit", "value": True}}), tagged, 0)
    assert decide(_policies({"name": "c", "type": "span_count", "span_count": {"min_spans": 2, "max_spans": 2}}),
                  tagged, 0)
    assert not decide(_policies({"name": "c", "type": "span_count", "span_count": {"min_spans": 3}}), tagged, 0)


def test_probabilistic_uses_the_collectors_hash_and_keeps_its_share() -> None:
    # FNV-1a 64 reference values.
    assert fnv1a64(b"") == 0xCBF29CE484222325 and fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    policies = _policies({"name": "p", "type": "probabilistic", "probabilistic": {"sampling_percentage": 20}})
    rng = random.Random(7)
    ids = [rng.randbytes(16).hex() for _ in range(5000)]
    picked = [t for t in ids if decide(policies, _trace([{}], t), 0)]
    assert 0.17 < len(picked) / len(ids) < 0.23
    again = _policies({"name": "p", "type": "probabilistic", "probabilistic": {"sampling_percentage": 20}})
    assert picked == [t for t in ids if decide(again, _trace([{}], t), 0)]  # a re-decision agrees
    salted = _policies({"name": "p", "type": "probabilistic",
                        "probabilistic": {"sampling_percentage": 20, "hash_salt": "other"}})
    assert picked != [t for t in ids if decide(salted, _trace([{}], t), 0)]


def test_combinators_and_drop_and_rate_limits() -> None:
    errored_slow = _trace([{"StatusCode": "Error", "Duration": 2_000_000_000}])
    errored_fast = _trace([{"StatusCode": "Error"}])
    both = {"name": "both", "type": "and", "and": {"and_sub_policy": [
        {"name": "e", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "l", "type": "latency", "latency": {"threshold_ms": 1000}}]}}
    assert decide(_policies(both), errored_slow, 0) and not decide(_policies(both), errored_fast, 0)
    drop_health = {"name": "no-health", "type": "drop", "drop": {"drop_sub_policy": [
        {"name": "h", "type": "string_attribute", "string_attribute": {"key": "http.route", "values": ["/health"]}}]}}
    health = _trace([{"SpanAttributes": {"http.route": "/health"}}])
    assert not decide(_policies({"name": "all", "type": "always_sample"}, drop_health), health, 0)
    assert decide(_policies({"name": "all", "type": "always_sample"}, drop_health), errored_fast, 0)

    limited = _policies({"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 3}})
    three = _trace([{}, {}, {}])
    assert decide(limited, three, 10) and not decide(limited, _trace([{}]), 10)  # budget of second 10 is spent
    assert decide(limited, _trace([{}]), 11)                                      # a new second, a new budget

    composite = _policies({"name": "c", "type": "composite", "composite": {
        "max_total_spans_per_second": 4, "policy_order": ["errors", "rest"],
        "composite_sub_policy": [
            {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
            {"name": "rest", "type": "always_sample"}],
        "rate_allocation": [{"policy": "errors", "percent": 50}, {"policy": "rest", "percent": 50}]}})
    # As in the Collector, the first sub-policy that matches decides: error traces use the errors' share
    # (2 spans in second 5) and are not handed on to "rest" once it is spent.
    assert [decide(composite, errored_fast, 5) for _ in range(4)] == [True, True, False, False]
    assert [decide(composite, _trace([{}]), 6) for _ in range(3)] == [True, True, False]
    unallocated = _policies({"name": "c", "type": "composite", "composite": {
        "max_total_spans_per_second": 4, "composite_sub_policy": [
            {"name": "a", "type": "always_sample"}, {"name": "b", "type": "always_sample"}],
        "rate_allocation": [{"policy": "b", "percent": 0}]}})
    assert not decide(unallocated, _trace([{}]), 1)  # "a" matches first and has no share


@pytest.mark.parametrize(("config", "message"), [
    ({"policies": [{"name": "a", "type": "latncy"}]}, "policies[0].type: unknown policy type 'latncy' (did you mean 'latency'?)"),
    ({"policies": [{"name": "a", "type": "latency", "latency": {"treshold_ms": 1}}]},
     "policies[0].latency.treshold_ms: unknown key (did you mean 'threshold_ms'?)"),
    ({"policies": [{"name": "a", "type": "latency", "latency": {"threshold_ms": "fast"}}]},
     "policies[0].latency.threshold_ms: expected a finite number, got 'fast'"),
    ({"policies": [{"name": "a", "type": "status_code", "status_code": {"status_codes": ["BAD"]}}]},
     "unknown status code 'BAD'"),
    ({"decision_wait": "soon", "policies": [{"name": "a", "type": "always_sample"}]}, "tail_sampling.decision_wait"),
    ({"num_traces": 10}, "tail_sampling.policies: expected a non-empty list"),
    ({"policies": [{"name": "a", "type": "ottl_condition"}]}, "a Collector policy Maple does not implement"),
    ({"policies": [{"name": "a", "type": "always_sample"}, {"name": "a", "type": "always_sample"}]},
     "duplicate policy names: a"),
    ({"polices": []}, "tail_sampling.polices: unknown key (did you mean 'policies'?)"),
    ({"decision_wait": -5, "policies": [{"name": "a", "type": "always_sample"}]}, "tail_sampling.decision_wait"),
    ({"num_traces": float("inf"), "policies": [{"name": "a", "type": "always_sample"}]},
     "num_traces: expected a finite number"),
    ({"policies": [{"name": "a", "type": "string_attribute", "string_attribute": {
        "key": "k", "values": ["(unclosed"], "enabled_regex_matching": True}}]}, "values[0]: '(unclosed' is not a valid"),
    ({"policies": [{"name": "a", "type": "latency", "latency": {"threshold_ms": 500, "upper_threshold_ms": 100}}]},
     "upper_threshold_ms: 100 is not above threshold_ms 500"),
    ({"policies": [{"name": "a", "type": "numeric_attribute", "numeric_attribute": {
        "key": "k", "min_value": 5, "max_value": 1}}]}, "min_value: 5 is above max_value 1"),
])
def test_bad_configs_name_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(config)
    assert message in str(error.value)


def test_a_rate_budget_too_small_for_the_partitions_is_refused() -> None:
    config = {"policies": [{"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 5}}]}
    parse_config(config)  # one partition: 5 spans/s
    with pytest.raises(ConfigError) as error:
        parse_config(config, rate_share=1 / 6)
    assert "5 spans/s over 6 span partitions leaves less than 1 per partition; use at least 6" in str(error.value)


def test_the_collectors_yaml_block_is_read_as_is() -> None:
    config = parse_config({"tail_sampling": {"decision_wait": "2500ms", "num_traces": 50,
                                             "expected_new_traces_per_sec": 10,
                                             "decision_cache": {"sampled_cache_size": 7, "non_sampled_cache_size": 8},
                                             "policies": [{"name": "a", "type": "always_sample"}]}})
    assert (config.decision_wait_ms, config.num_traces, config.sampled_cache_size, config.non_sampled_cache_size) == (
        2500, 50, 7, 8)
    assert parse_config(DEFAULT_CONFIG).decision_wait_ms == 10_000


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
    records = trace_batches(raw, span_partitions=4, metric_partitions=2)
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


def _stream(seed: int, messages: int = 120) -> list[SpanBatch]:
    """Span batches over stream time: traces spread over several messages, late spans, copies and ticks."""
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
                out.append(SpanBatch(offset, clock, previous.columns, previous.source_key, previous.source_position, 0))
                continue
        spans = []
        for _ in range(rng.randint(1, 4)):
            trace_id = rng.randbytes(16).hex()
            open_traces.append((trace_id, clock))
            spans.append({"TraceId": trace_id, "SpanId": rng.randbytes(8).hex(),
                          "StatusCode": "Error" if rng.random() < 0.1 else "Unset"})
        for trace_id, started in rng.sample(open_traces, min(len(open_traces), rng.randint(0, 4))):
            if clock - started < 5000:  # more spans of a recent trace; some arrive after its decision
                spans.append({"TraceId": trace_id, "SpanId": rng.randbytes(8).hex(), "StatusCode": "Unset"})
        raw_offset += 1
        out.append(SpanBatch(offset, clock, _cols(spans), "otlp.traces.raw/0", (raw_offset, 0), 0))
    out.append(SpanBatch(messages, clock + 60_000, progress={0: clock + 60_000}))  # decides and forgets everything
    return out


def _run(batches: list[SpanBatch]) -> list[tuple[tuple[int, int], list[str], int | None]]:
    """Emissions as ((offset, group), span ids), with the safe offset after each message."""
    sampler = PartitionSampler(parse_config(CONFIG))
    out = []
    for batch in batches:
        emissions: list[Emission] = sampler.step(batch)
        safe = sampler.safe_offset()
        out.append(([((batch.offset, e.first_offset), e.columns["SpanId"]) for e in emissions], safe))
    return out


def _sink(emissions: list[tuple[tuple[int, int], list[str]]]) -> Multiset:
    """What the sink keeps: emissions in order, dropping any at or below the position watermark."""
    kept: Multiset = Multiset()
    watermark = (-1, -1)
    for position, span_ids in emissions:
        if position <= watermark:
            continue
        watermark = position
        kept.update(span_ids)
    return kept


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_restart_at_any_committed_offset_emits_exactly_the_uninterrupted_rows(seed: int) -> None:
    batches = _stream(seed)
    full = _run(batches)
    expected = _sink([e for step, _ in full for e in step])
    assert sum(expected.values()) > 0 and all(count == 1 for count in expected.values())
    checked = 0
    for crash in range(0, len(batches), 3):
        # The worker committed the safe offset of some earlier step j (acks lag), and Kafka holds every
        # row emitted up to the crash (the worst case for copies). The successor starts at that commit.
        for j in range(max(0, crash - 6), crash + 1):
            committed = full[j][1]
            if committed is None:
                continue
            before = [e for step, _ in full[:crash + 1] for e in step]
            resumed = _run([b for b in batches if b.offset >= committed])
            after = [e for step, _ in resumed for e in step]
            assert _sink(before + after) == expected, f"crash after {crash}, committed {committed}"
            checked += 1
    assert checked > 50


def test_late_spans_follow_the_cached_decision_and_the_bound_forces_traces_out() -> None:
    config = parse_config({"decision_wait": "1s", "late_span_window": "10s", "num_traces": 2, "policies": [
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
    config = parse_config({"decision_wait": "1s", "late_span_window": "0s",
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
    config = parse_config({"decision_wait": "1s", "policies": [{"name": "all", "type": "always_sample"}]})
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

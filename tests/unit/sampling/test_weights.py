"""Each kept trace's weight (otel_traces.SampleRate): 1 / the probability a trace like it is kept, so that
sum(SampleRate) over the sampled spans estimates the count before sampling."""

import random

from processors.sampling import decide_weight, decode_config
from processors.tail_sampler import PartitionSampler, SpanBatch
from tests.helpers.spans import make_trace, policies
from tests.helpers.spans import span_columns as _cols

ERRORS = {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}}
SLOW = {"name": "slow", "type": "latency", "latency": {"threshold_ms": 1000}}


def _tenth(percent: float = 10) -> dict:
    return {"name": "some", "type": "probabilistic", "probabilistic": {"sampling_percentage": percent}}


def test_kept_for_what_they_are_weigh_1_kept_by_chance_weigh_100_over_p() -> None:
    chosen = policies(ERRORS, SLOW, _tenth(25))
    ids = [random.Random(n).randbytes(16).hex() for n in range(4000)]
    weights = [decide_weight(chosen, make_trace([{}], t), 0) for t in ids]
    kept = [w for w in weights if w is not None]
    assert set(kept) == {4.0}
    assert abs(sum(kept) - len(ids)) < 0.1 * len(ids)  # the re-weighted count estimates the true one
    for trace_id in ids[:50]:  # an error or a slow trace is kept whatever the hash: weight 1
        assert decide_weight(chosen, make_trace([{"StatusCode": "Error"}], trace_id), 0) == 1.0
        assert decide_weight(chosen, make_trace([{"Duration": 2_000_000_000}], trace_id), 0) == 1.0
    assert decide_weight(policies(_tenth(0)), make_trace([{}], ids[0]), 0) is None


def test_a_rate_limit_weighs_its_previous_seconds_ratio_of_offered_to_admitted_spans() -> None:
    limited = policies({"name": "r", "type": "rate_limiting", "rate_limiting": {"spans_per_second": 10}})
    first = [decide_weight(limited, make_trace([{}]), 5) for _ in range(40)]  # 40 spans offered, 10 admitted
    assert first.count(None) == 30 and set(first) - {None} == {1.0}  # nothing known about second 4
    second = [decide_weight(limited, make_trace([{}]), 6) for _ in range(20)]
    assert set(second) - {None} == {4.0} and second.count(4.0) == 10
    third = [decide_weight(limited, make_trace([{}]), 7) for _ in range(5)]   # second 6: 20 offered, 10 kept
    assert third == [2.0] * 5
    assert decide_weight(limited, make_trace([{}]), 9) == 1.0  # second 8 saw nothing


def test_and_multiplies_composite_scales_by_its_budgets_drop_weighs_nothing() -> None:
    both = policies({"name": "a", "type": "and", "and": {"and_sub_policy": [_tenth(50), _tenth(50) | {
        "name": "other", "probabilistic": {"sampling_percentage": 50, "hash_salt": "x"}}]}})
    weights = {decide_weight(both, make_trace([{}], random.Random(n).randbytes(16).hex()), 0) for n in range(400)}
    assert weights == {None, 4.0}
    composite = policies({"name": "c", "type": "composite", "composite": {
        "max_total_spans_per_second": 100, "policy_order": ["errors", "all"],
        "composite_sub_policy": [ERRORS, {"name": "all", "type": "always_sample"}],
        "rate_allocation": [{"policy": "errors", "percent": 50}, {"policy": "all", "percent": 50}]}})
    for _ in range(100):  # second 1: 100 spans offered to "all", its 50 admitted
        decide_weight(composite, make_trace([{}]), 1)
    assert decide_weight(composite, make_trace([{}]), 2) == 2.0
    assert decide_weight(composite, make_trace([{"StatusCode": "Error"}]), 2) == 1.0
    dropped = policies({"name": "d", "type": "drop", "drop": {"drop_sub_policy": [ERRORS]}}, _tenth(100))
    assert decide_weight(dropped, make_trace([{"StatusCode": "Error"}]), 0) is None
    assert decide_weight(dropped, make_trace([{}]), 0) == 1.0


def test_the_sampler_writes_the_weight_on_every_kept_span_and_on_late_ones() -> None:
    config = decode_config({"decision_wait": "1s", "late_span_window": "10s", "policies": [ERRORS, _tenth(50)]})
    sampler = PartitionSampler(config)
    chosen = policies(ERRORS, _tenth(50))
    error = "11" * 16
    other = next(t for t in (random.Random(n).randbytes(16).hex() for n in range(100))
                 if decide_weight(chosen, make_trace([{}], t), 0) == 2.0)  # kept by the 50% hash
    emitted = sampler.step(SpanBatch(0, 1000, progress={0: 1000}))
    emitted += sampler.step(SpanBatch(1, 1000, _cols([{"TraceId": error, "SpanId": "a", "StatusCode": "Error"},
                                                      {"TraceId": other, "SpanId": "b"},
                                                      {"TraceId": "", "SpanId": "n"}]), raw_partition=0))
    emitted += sampler.step(SpanBatch(2, 2000, progress={0: 2000}))
    emitted += sampler.step(SpanBatch(3, 2500, _cols([{"TraceId": other, "SpanId": "c"}]), raw_partition=0))
    weights = {span: weight for e in emitted for span, weight in zip(e.columns["SpanId"], e.columns["SampleRate"])}
    # The error trace weighs 1, the hashed one 2 (its late span too), a span outside any trace 1.
    assert weights == {"a": 1.0, "b": 2.0, "n": 1.0, "c": 2.0}
    sampler = PartitionSampler(decode_config({"decision_wait": "1s", "policies": [ERRORS, _tenth(100 / 3)]}))
    ids = [random.Random(n).randbytes(16).hex() for n in range(300)]
    sampler.step(SpanBatch(0, 1000, progress={0: 1000}))
    sampler.step(SpanBatch(1, 1000, _cols([{"TraceId": t, "SpanId": str(n)} for n, t in enumerate(ids)]),
                           raw_partition=0))
    emitted = sampler.step(SpanBatch(2, 2000, progress={0: 2000}))
    rates = [w for e in emitted for w in e.columns["SampleRate"]]
    assert rates and set(rates) == {3.0}

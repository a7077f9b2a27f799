"""The benchmark's pure helpers: the figures it reports must mean what the docs say they mean."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from apps.bench.e2e import SPANS_PER_TRACE, error_trace_request, latency_summary
from apps.bench.stats import percentile, quantile


def test_quantile_interpolates_between_the_closest_ranks() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert quantile(values, 0.5) == pytest.approx(50.5)
    assert quantile(values, 0.99) == pytest.approx(99.01)
    assert quantile(values, 0.0) == 1.0 and quantile(values, 1.0) == 100.0
    assert quantile([3.0], 0.99) == 3.0
    assert quantile([], 0.5) is None


def test_percentile_is_the_same_figure_and_refuses_an_empty_sample() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.95) == quantile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)


def test_latency_summary_counts_what_was_sent_and_what_arrived() -> None:
    summary = latency_summary([0.5, 1.5, 1.0], sent=4)
    assert summary == {"sent": 4, "queryable": 3, "p50_s": 1.0, "p99_s": pytest.approx(1.49), "max_s": 1.5}
    assert latency_summary([], sent=2)["p99_s"] is None


@pytest.mark.parametrize("root", [True, False])
def test_probe_traces_are_errors_with_or_without_a_root(root: bool) -> None:
    body, trace_id = error_trace_request("probe", 7, root=root)
    request = ExportTraceServiceRequest.FromString(body)
    spans = list(request.resource_spans[0].scope_spans[0].spans)
    assert len(spans) == SPANS_PER_TRACE and {s.trace_id.hex() for s in spans} == {trace_id}
    top = spans[-1]  # sent last, as an SDK exports a parent after its children
    assert top.status.code == Status.STATUS_CODE_ERROR
    assert all(s.parent_span_id == top.span_id for s in spans[:-1])
    roots = [s for s in spans if not s.parent_span_id]
    assert roots == ([top] if root else [])

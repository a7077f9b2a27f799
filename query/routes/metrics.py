"""/api/v1/metrics: names, labels, series, and query (a PromQL subset, or the same in structured form)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from query import metrics, promql
from query.context import Context, context
from query.errors import ApiError
from query.models import LabelsResponse, MetricNamesResponse, MetricQueryResponse, SeriesResponse
from query.routes import ERRORS, checked_list
from query.routes.logs import From, Limit, To

router = APIRouter(prefix="/metrics", tags=["metrics"], responses=ERRORS)

Ctx = Annotated[Context, Depends(context)]
Metric = Annotated[str, Query(min_length=1, max_length=500, description="metric name, as stored (dots) or "
                                                                        "with underscores")]


@router.get("/names", response_model=MetricNamesResponse, summary="metrics with data in the range")
def names(ctx: Ctx, from_: From = None, to: To = None,
          prefix: Annotated[str | None, Query(max_length=500, description="only names starting with this "
                                                                          "(case-insensitive)")] = None
          ) -> MetricNamesResponse:
    rng = ctx.range(from_, to)
    return MetricNamesResponse(range=rng.model(), metrics=metrics.names(ctx, rng, prefix))


@router.get("/labels", response_model=LabelsResponse, summary="label names of a metric")
def labels(ctx: Ctx, metric: Metric, from_: From = None, to: To = None) -> LabelsResponse:
    rng = ctx.range(from_, to)
    name, found = metrics.labels(ctx, metric, rng)
    return LabelsResponse(metric=name, range=rng.model(), labels=found)


@router.get("/series", response_model=SeriesResponse, summary="the label sets (series) of a metric")
def series(ctx: Ctx, metric: Metric, from_: From = None, to: To = None, limit: Limit = None) -> SeriesResponse:
    rng = ctx.range(from_, to)
    name, found, truncated = metrics.series(ctx, metric, rng, ctx.page_size(limit))
    return SeriesResponse(metric=name, range=rng.model(), series=found, truncated=truncated)


def _filters(values: list[str]) -> list[tuple[str, str, str]]:
    out = []
    for text in values:
        for op in ("!~", "=~", "!=", "="):
            label, sep, value = text.partition(op)
            if sep and label.strip():
                out.append((label.strip(), op, value))
                break
        else:
            raise ApiError(400, "invalid_parameter", f"filter: {text!r} is not label=value, label!=value, "
                                                     "label=~regex or label!~regex", field="filter")
    return out


@router.get("/query", response_model=MetricQueryResponse,
            summary="evaluate a metric query over a range: PromQL (subset), or metric + aggregation parameters")
def query(ctx: Ctx,
          query: Annotated[str | None, Query(max_length=4000, description="PromQL in the subset of docs/query.md; "
                                                                         "or leave out and give metric")] = None,
          metric: Annotated[str | None, Query(max_length=500, description="structured form: the metric")] = None,
          filter: Annotated[list[str] | None, Query(description="structured form: label=value, label!=value, "
                                                                "label=~re, label!~re (repeat)")] = None,
          fn: Annotated[str | None, Query(description="structured form: rate, irate or increase (counters)")] = None,
          agg: Annotated[str | None, Query(description="structured form: sum, avg, min, max or count")] = None,
          by: Annotated[list[str] | None, Query(description="structured form: group-by labels (repeat)")] = None,
          quantile: Annotated[float | None, Query(ge=0, le=1, description="structured form: a quantile of a "
                                                                          "histogram, e.g. 0.95")] = None,
          range_s: Annotated[int, Query(ge=1, le=86400, alias="range", description="structured form: the rate "
                                                                                    "window in seconds")] = 300,
          from_: From = None, to: To = None,
          step: Annotated[int | None, Query(ge=1, le=86400, description="seconds between points (default: "
                                                                        "~240 points)")] = None
          ) -> MetricQueryResponse:
    rng = ctx.range(from_, to)
    if query and metric:
        raise ApiError(400, "invalid_parameter", "give either query (PromQL) or metric, not both", field="query")
    if not query:
        if not metric:
            raise ApiError(400, "invalid_parameter", "give query (PromQL) or metric", field="query")
        if fn is not None and fn not in promql.RANGE_FUNCTIONS:
            raise ApiError(400, "invalid_parameter", f"fn: {fn!r} is not one of rate, irate, increase", field="fn")
        if agg is not None and agg not in promql.AGGREGATIONS:
            raise ApiError(400, "invalid_parameter", f"agg: {agg!r} is not one of sum, avg, min, max, count",
                           field="agg")
        query = promql.build(metric, _filters(checked_list(filter, "filter")), fn, range_s, agg,
                             checked_list(by, "by"), quantile)
    plan = promql.parse(query)
    step_s = step or metrics.default_step(rng)
    return MetricQueryResponse(query=query, range=rng.model(), step_s=step_s,
                               series=metrics.evaluate(ctx, plan, rng, step_s))

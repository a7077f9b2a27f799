"""/api/v1/traces: search, one trace, services with RED figures, and the service map."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from query import traces
from query.context import Context, context
from query.errors import ApiError
from query.models import DependenciesResponse, ServicesResponse, TraceResponse, TraceSearchResponse
from query.routes import ERRORS, checked_list
from query.routes.logs import From, Limit, Q, Services, To

router = APIRouter(prefix="/traces", tags=["traces"], responses=ERRORS)

Ctx = Annotated[Context, Depends(context)]
Source = Annotated[str | None, Query(description="source name (default: traces, Maple's otel_traces)",
                                     max_length=64)]


@router.get("/search", response_model=TraceSearchResponse,
            summary="traces with a span matching the filters: one row per trace, newest first")
def search(ctx: Ctx, source: Source = None, q: Q = "", from_: From = None, to: To = None, service: Services = None,
           span_name: Annotated[list[str] | None, Query(description="span names (repeat the parameter)")] = None,
           min_duration_ms: Annotated[float | None, Query(ge=0, le=1e12, description="span duration at least")]
           = None,
           max_duration_ms: Annotated[float | None, Query(ge=0, le=1e12, description="span duration at most")]
           = None,
           status: Annotated[list[str] | None, Query(description="span status: ok, error, unset (repeat)")] = None,
           limit: Limit = None,
           cursor: Annotated[str | None, Query(description="next_cursor of the previous page", max_length=1000)] = None
           ) -> TraceSearchResponse:
    rng = ctx.range(from_, to)
    size = ctx.page_size(limit)
    if min_duration_ms is not None and max_duration_ms is not None and min_duration_ms > max_duration_ms:
        raise ApiError(400, "invalid_parameter", "min_duration_ms is greater than max_duration_ms",
                       field="min_duration_ms")
    src = ctx.sources.get(source, "traces")
    where = traces.build_filter(ctx, src, q, checked_list(service, "service"), checked_list(span_name, "span_name"),
                                min_duration_ms, max_duration_ms, checked_list(status, "status"))
    found, next_cursor = traces.search(ctx, src, rng, where, size, cursor)
    return TraceSearchResponse(source=src.name, range=rng.model(), traces=found, next_cursor=next_cursor)


@router.get("/services", response_model=ServicesResponse,
            summary="services with calls, errors and latency percentiles from the RED metrics")
def services(ctx: Ctx, from_: From = None, to: To = None,
             span_kind: Annotated[list[str] | None, Query(description="span kinds counted: server, consumer, "
                                                                      "client, producer, internal (default: server "
                                                                      "and consumer); all for every kind")] = None
             ) -> ServicesResponse:
    rng = ctx.range(from_, to)
    kinds = [k.lower() for k in checked_list(span_kind, "span_kind")] or list(traces.DEFAULT_SERVICE_KINDS)
    if kinds == ["all"]:
        kinds = []
    for kind in kinds:
        if kind not in traces.SPAN_KINDS:
            raise ApiError(400, "invalid_parameter", f"span_kind: {kind!r} is not one of "
                                                     f"{', '.join(traces.SPAN_KINDS)}, all", field="span_kind")
    return ServicesResponse(range=rng.model(), span_kinds=kinds, services=traces.services(ctx, rng, kinds))


@router.get("/dependencies", response_model=DependenciesResponse,
            summary="the service map: caller -> callee edges from parent/child spans across services")
def dependencies(ctx: Ctx, source: Source = None, from_: From = None, to: To = None) -> DependenciesResponse:
    rng = ctx.range(from_, to)
    src = ctx.sources.get(source, "traces")
    edges = traces.dependencies(ctx, src, rng)
    names = sorted({e.caller for e in edges} | {e.callee for e in edges})
    return DependenciesResponse(source=src.name, range=rng.model(), services=names, edges=edges)


@router.get("/{trace_id}", response_model=TraceResponse,
            summary="one trace: every span with its events and links, in parent/child order")
def get(ctx: Ctx, trace_id: Annotated[str, Path(pattern=r"^[0-9a-fA-F]{32}$", description="32 hex digits")],
        source: Source = None,
        from_: Annotated[str | None, Query(alias="from", description="sources without a TraceId lookup table: "
                                                                     "where to look (default: api.max_range_s)")]
        = None, to: To = None) -> TraceResponse:
    src = ctx.sources.get(source, "traces")
    rng = None if src.spec.trace_id_ts_table else ctx.range(from_, to, ctx.settings.api.max_range_s)
    return traces.get(ctx, src, trace_id.lower(), rng)

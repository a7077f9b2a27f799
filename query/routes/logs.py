"""/api/v1/logs: search, aggregate, top values, fields and the live tail (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from sse_starlette.sse import EventSourceResponse

from maple.settings import ApiSettings
from query import logs
from query.context import Context, context
from query.errors import ApiError
from query.models import FieldsResponse, LogAggregateResponse, LogRecord, LogSearchResponse, TopValuesResponse
from query.routes import ERRORS, checked_list
from query.timerange import NS, format_ns

router = APIRouter(prefix="/logs", tags=["logs"], responses=ERRORS)

Ctx = Annotated[Context, Depends(context)]
Source = Annotated[str | None, Query(description="source name (default: logs, Maple's otel_logs)", max_length=64)]
Q = Annotated[str, Query(description="search query (docs/query.md), e.g. level:error \"connection refused\"",
                         max_length=4000)]
From = Annotated[str | None, Query(alias="from", description="start: RFC 3339, Unix time or now-15m "
                                                             "(default: api.default_range_s before to)")]
To = Annotated[str | None, Query(description="end: RFC 3339, Unix time or now (default: now)")]
Services = Annotated[list[str] | None, Query(description="only these services (repeat the parameter)")]
Severities = Annotated[list[str] | None, Query(description="only these severities, e.g. error (repeat the parameter)")]
# The bounds every deployment has (the largest api.max_page_size the settings accept; a bucket width that
# fits ClickHouse's {interval:UInt32} parameter), so the OpenAPI document states them and a value past them
# answers 400 naming the parameter; the configured page size is checked by Context.page_size.
PAGE_SIZE_CEILING = int(next(f.metadata["maximum"] for f in dataclasses.fields(ApiSettings)
                             if f.name == "max_page_size"))
MAX_INTERVAL_S = 2**31 - 1
Limit = Annotated[int | None, Query(ge=1, le=PAGE_SIZE_CEILING,
                                    description="rows per page (default api.default_page_size, at most "
                                                "api.max_page_size)")]

TAIL_OVERLAP_S = 60
TAIL_FUTURE_S = 60


def _where(ctx: Context, source_name: str | None, q: str, service: list[str] | None,
           severity: list[str] | None) -> tuple[logs.Source, logs.Filter]:
    source = ctx.sources.get(source_name, "logs")
    where = logs.build_filter(ctx, source, q, checked_list(service, "service"), checked_list(severity, "severity"))
    return source, where


@router.get("/search", response_model=LogSearchResponse, summary="search logs, newest first, cursor-paged")
def search(ctx: Ctx, source: Source = None, q: Q = "", from_: From = None, to: To = None, service: Services = None,
           severity: Severities = None, limit: Limit = None,
           cursor: Annotated[str | None, Query(description="next_cursor of the previous page", max_length=1000)] = None
           ) -> LogSearchResponse:
    rng = ctx.range(from_, to)
    size = ctx.page_size(limit)
    src, where = _where(ctx, source, q, service, severity)
    rows, next_cursor = logs.search(ctx, src, rng, where, size, cursor)
    return LogSearchResponse(source=src.name, range=rng.model(), rows=rows, next_cursor=next_cursor)


@router.get("/aggregate", response_model=LogAggregateResponse, summary="log counts over time buckets")
def aggregate(ctx: Ctx, source: Source = None, q: Q = "", from_: From = None, to: To = None,
              service: Services = None, severity: Severities = None,
              interval: Annotated[int | None, Query(ge=1, le=MAX_INTERVAL_S,
                                                    description="bucket width in seconds (default: ~60 buckets)")]
              = None,
              group_by: Annotated[str | None, Query(description="split each bucket by this field (its 10 most "
                                                                "frequent values)", max_length=200)] = None
              ) -> LogAggregateResponse:
    rng = ctx.range(from_, to)
    src, where = _where(ctx, source, q, service, severity)
    width = logs.interval_for(rng, interval)
    buckets, total = logs.histogram(ctx, src, rng, where, width, group_by or None)
    return LogAggregateResponse(source=src.name, range=rng.model(), interval_s=width, group_by=group_by or None,
                                buckets=buckets, total=total)


@router.get("/top", response_model=TopValuesResponse, summary="the most frequent values of a field")
def top(ctx: Ctx, field: Annotated[str, Query(description="a search field: level, service, an attribute key...",
                                              min_length=1, max_length=200)],
        source: Source = None, q: Q = "", from_: From = None, to: To = None, service: Services = None,
        severity: Severities = None, limit: Limit = None) -> TopValuesResponse:
    rng = ctx.range(from_, to)
    size = ctx.page_size(limit if limit is not None else 10)
    src, where = _where(ctx, source, q, service, severity)
    values, total = logs.top_values(ctx, src, rng, where, field, size)
    return TopValuesResponse(source=src.name, range=rng.model(), field=field, values=values, total=total)


@router.get("/fields", response_model=FieldsResponse, summary="what a search can name on a source")
def fields(ctx: Ctx, source: Source = None) -> FieldsResponse:
    src = ctx.sources.get(source, "logs")
    return FieldsResponse(source=src.name, fields=logs.fields(ctx, src))


@router.get("/tail", summary="live tail: new matching rows as Server-Sent Events",
            response_description="text/event-stream: first the `backfill` rows, then one `live` event (its data "
                                 "the time the tail started), then `log` events (a LogRecord as JSON) for the rows "
                                 "stored after that, oldest first",
            responses={200: {"content": {"text/event-stream": {}}}})
async def tail(request: Request, ctx: Ctx, source: Source = None, q: Q = "", service: Services = None,
               severity: Severities = None,
               backfill: Annotated[int, Query(description="rows from before the tail starts to send first",
                                              ge=0, le=1000)] = 50) -> EventSourceResponse:
    src, where = await to_thread.run_sync(lambda: _where(ctx, source, q, service, severity))
    limit = ctx.settings.api.max_page_size
    interval = ctx.settings.api.tail_interval_s

    def row_key(row: LogRecord) -> tuple[int, str]:
        return row.timestamp_ns, row.body + row.span_id + row.service

    async def events() -> AsyncIterator[dict[str, str]]:
        seen: dict[tuple[int, str], int] = {}
        first = True
        while not await request.is_disconnected():
            now = time.time_ns()
            since = now - TAIL_OVERLAP_S * NS
            stored: list[LogRecord] = []
            try:
                rows = await to_thread.run_sync(
                    partial(logs.tail_poll, ctx, src, where, since, now + TAIL_FUTURE_S * NS, limit))
                if first:
                    # What the window holds when the tail starts is not new: it is remembered as sent, so no
                    # later poll of the overlap sends it; only `backfill` rows from before the start are sent
                    # (searched after this poll, so a row stored in between is sent by the one or the other).
                    stored, rows = rows, []
                    if backfill:
                        rng = ctx.range(None, None)
                        rows, _ = await to_thread.run_sync(partial(logs.search, ctx, src, rng, where, backfill,
                                                                   None))
                        rows.reverse()
            except ApiError as exc:
                yield {"event": "error", "data": exc.message}
                return
            for row in rows:
                if row_key(row) in seen:
                    continue
                seen[row_key(row)] = row.timestamp_ns
                yield {"event": "log", "data": row.model_dump_json()}
            if first:
                for row in stored:
                    seen.setdefault(row_key(row), row.timestamp_ns)
                first = False
                yield {"event": "live", "data": format_ns(now)}
            for key in [k for k, t in seen.items() if t <= since]:
                del seen[key]
            await asyncio.sleep(interval)

    return EventSourceResponse(events(), ping=15)

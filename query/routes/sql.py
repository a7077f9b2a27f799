"""/api/v1/sql: a read-only SQL proxy for power users (one statement, SELECT/WITH/SHOW/DESCRIBE/EXPLAIN)."""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from query import sqlguard
from query.context import Context, context
from query.models import SqlColumn, SqlRequest, SqlResponse
from query.reader import Limits
from query.routes import ERRORS

router = APIRouter(tags=["sql"], responses={**ERRORS, 403: ERRORS[400] | {"description": "not read-only"}})

Ctx = Annotated[Context, Depends(context)]


def _json(value: Any) -> Any:
    """ClickHouse values as JSON: dates as RFC 3339, big numbers and other types as strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -(2**53) <= value <= 2**53 else str(value)
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(_json(k)): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return str(value)


@router.post("/sql", response_model=SqlResponse, summary="run one read-only SQL statement (limits apply)")
def sql(ctx: Ctx, body: SqlRequest) -> SqlResponse:
    statement = sqlguard.check(body.sql)
    api = ctx.settings.api
    limits = Limits(api.max_execution_time_s, api.sql_max_rows + 1, api.max_result_bytes, api.max_memory_bytes,
                    max_rows_to_read=api.sql_max_rows_to_read, result_overflow_break=True)
    result = ctx.reader.select(statement, limits=limits, user_sql=True)
    rows = result.rows[: api.sql_max_rows]
    return SqlResponse(columns=[SqlColumn(name=n, type=t) for n, t in zip(result.columns, result.types)],
                       rows=[[_json(v) for v in row] for row in rows], truncated=len(result.rows) > api.sql_max_rows,
                       rows_read=result.rows_read, elapsed_ms=round(result.elapsed_ms, 3))

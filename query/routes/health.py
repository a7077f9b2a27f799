"""/api/v1/health: the pipeline's health from the monitor's last measurement."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends

from query.context import Context, context
from query.errors import ApiError
from query.models import HealthResponse
from query.routes import ERRORS

router = APIRouter(tags=["health"], responses={503: ERRORS[503]})

Ctx = Annotated[Context, Depends(context)]


@router.get("/health", response_model=HealthResponse,
            summary="Kafka and ClickHouse reachable, consumer lag per group, dead letters")
async def health(ctx: Ctx) -> HealthResponse:
    monitor = ctx.health
    if monitor is None:
        raise ApiError(503, "unavailable", "health monitoring is off in this process")
    return await to_thread.run_sync(monitor.snapshot)

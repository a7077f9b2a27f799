"""/api/v1/health: the pipeline's health from the monitor's last measurement."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends

from query.context import Context, context
from query.models import HealthResponse

router = APIRouter(tags=["health"])

Ctx = Annotated[Context, Depends(context)]


@router.get("/health", response_model=HealthResponse,
            summary="Kafka and ClickHouse reachable, consumer lag per group, dead letters")
async def health(ctx: Ctx) -> HealthResponse:
    assert ctx.health is not None
    monitor = ctx.health
    return await to_thread.run_sync(monitor.snapshot)

"""/api/v1/saved-searches and /api/v1/dashboards: per team; viewers read, editors change them."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from query.context import Context, context
from query.errors import ApiError, not_found
from query.models import MAX_ID
from query.routes.access import AUTH_ERRORS
from query.saved import (
    Dashboard,
    DashboardSpec,
    DashboardsResponse,
    SavedSearch,
    SavedSearchesResponse,
    SavedSearchSpec,
)
from query.store.tables import DashboardRow, SavedSearchRow
from query.teams import audit

router = APIRouter(responses={**AUTH_ERRORS, 409: AUTH_ERRORS[400]})

Ctx = Annotated[Context, Depends(context)]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
Row = type[SavedSearchRow] | type[DashboardRow]


def _store(ctx: Context) -> Any:
    if ctx.store is None:
        raise ApiError(503, "unavailable", "the metadata store is not open")
    return ctx.store


def _out(row: Any, model: type[BaseModel]) -> Any:
    return model.model_validate({**json.loads(row.spec), "id": row.id, "name": row.name, "created_by": row.created_by,
                                 "created_at": row.created_at, "updated_at": row.updated_at})


def _one(session: Any, ctx: Context, table: Row, item_id: int, what: str) -> Any:
    row = session.get(table, item_id)
    if row is None or row.team_id != ctx.who.team_id:
        raise not_found(f"no {what} {item_id}", "id")
    return row


def _create(ctx: Context, table: Row, spec: BaseModel, model: type[BaseModel], what: str) -> Any:
    who = ctx.require("editor", f"{what}.create")
    now = time.time()
    name = spec.name  # type: ignore[attr-defined]
    try:
        with _store(ctx).session() as session:
            row = table(team_id=who.team_id, name=name, spec=spec.model_dump_json(by_alias=True), created_by=who.actor,
                        created_at=now, updated_at=now)
            session.add(row)
            session.flush()
            audit(session, who.actor, f"{what}.create", name, team_id=who.team_id, source=ctx.source)
            return _out(row, model)
    except IntegrityError:
        raise ApiError(409, "conflict", f"name: a {what.replace('_', ' ')} {name!r} exists already",
                       field="name") from None


def _update(ctx: Context, table: Row, item_id: int, spec: BaseModel, model: type[BaseModel], what: str) -> Any:
    who = ctx.require("editor", f"{what}.update")
    try:
        with _store(ctx).session() as session:
            row = _one(session, ctx, table, item_id, what.replace("_", " "))
            row.name, row.spec, row.updated_at = spec.name, spec.model_dump_json(by_alias=True), time.time()  # type: ignore[attr-defined]
            audit(session, who.actor, f"{what}.update", row.name, team_id=who.team_id, source=ctx.source)
            session.flush()
            return _out(row, model)
    except IntegrityError:
        raise ApiError(409, "conflict", f"name: a {what.replace('_', ' ')} with that name exists already",
                       field="name") from None


def _delete(ctx: Context, table: Row, item_id: int, what: str) -> Response:
    who = ctx.require("editor", f"{what}.delete")
    with _store(ctx).session() as session:
        row = _one(session, ctx, table, item_id, what.replace("_", " "))
        audit(session, who.actor, f"{what}.delete", row.name, team_id=who.team_id, source=ctx.source)
        session.delete(row)
    return Response(status_code=204)


def _list(ctx: Context, table: Row, model: type[BaseModel]) -> list[Any]:
    with _store(ctx).session() as session:
        rows = session.scalars(select(table).where(table.team_id == ctx.who.team_id).order_by(table.name)).all()
        return [_out(r, model) for r in rows]


@router.get("/saved-searches", response_model=SavedSearchesResponse, tags=["saved searches"],
            summary="the team's saved searches")
def searches(ctx: Ctx) -> SavedSearchesResponse:
    return SavedSearchesResponse(searches=_list(ctx, SavedSearchRow, SavedSearch))


@router.post("/saved-searches", response_model=SavedSearch, status_code=201, tags=["saved searches"],
             summary="save a search (query, time range, columns)")
def create_search(ctx: Ctx, spec: SavedSearchSpec) -> SavedSearch:
    return _create(ctx, SavedSearchRow, spec, SavedSearch, "saved_search")


@router.get("/saved-searches/{item_id}", response_model=SavedSearch, tags=["saved searches"], summary="one")
def get_search(ctx: Ctx, item_id: Id) -> SavedSearch:
    with _store(ctx).session() as session:
        return _out(_one(session, ctx, SavedSearchRow, item_id, "saved search"), SavedSearch)


@router.put("/saved-searches/{item_id}", response_model=SavedSearch, tags=["saved searches"], summary="replace")
def update_search(ctx: Ctx, item_id: Id, spec: SavedSearchSpec) -> SavedSearch:
    return _update(ctx, SavedSearchRow, item_id, spec, SavedSearch, "saved_search")


@router.delete("/saved-searches/{item_id}", status_code=204, response_class=Response, tags=["saved searches"],
               summary="delete")
def delete_search(ctx: Ctx, item_id: Id) -> Response:
    return _delete(ctx, SavedSearchRow, item_id, "saved_search")


@router.get("/dashboards", response_model=DashboardsResponse, tags=["dashboards"], summary="the team's dashboards")
def dashboards(ctx: Ctx) -> DashboardsResponse:
    return DashboardsResponse(dashboards=_list(ctx, DashboardRow, Dashboard))


@router.post("/dashboards", response_model=Dashboard, status_code=201, tags=["dashboards"],
             summary="create a dashboard (panels of searches or metric queries, each with a chart type)")
def create_dashboard(ctx: Ctx, spec: DashboardSpec) -> Dashboard:
    return _create(ctx, DashboardRow, spec, Dashboard, "dashboard")


@router.get("/dashboards/{item_id}", response_model=Dashboard, tags=["dashboards"], summary="one")
def get_dashboard(ctx: Ctx, item_id: Id) -> Dashboard:
    with _store(ctx).session() as session:
        return _out(_one(session, ctx, DashboardRow, item_id, "dashboard"), Dashboard)


@router.put("/dashboards/{item_id}", response_model=Dashboard, tags=["dashboards"], summary="replace")
def update_dashboard(ctx: Ctx, item_id: Id, spec: DashboardSpec) -> Dashboard:
    return _update(ctx, DashboardRow, item_id, spec, Dashboard, "dashboard")


@router.delete("/dashboards/{item_id}", status_code=204, response_class=Response, tags=["dashboards"],
               summary="delete")
def delete_dashboard(ctx: Ctx, item_id: Id) -> Response:
    return _delete(ctx, DashboardRow, item_id, "dashboard")

"""/api/v1/sources: the built-in sources and the team's own (table + field expressions); admins add them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from query.context import Context, context
from query.models import SourceInfo, SourceSpec, SourcesResponse
from query.routes import ERRORS
from query.teams import audit

router = APIRouter(prefix="/sources", tags=["sources"], responses={**ERRORS, 409: ERRORS[400]})

Ctx = Annotated[Context, Depends(context)]
Name = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


@router.get("", response_model=SourcesResponse, summary="every source")
def list_sources(ctx: Ctx) -> SourcesResponse:
    return SourcesResponse(sources=[SourceInfo(spec=s.spec, builtin=s.builtin) for s in ctx.sources.all()])


@router.get("/{name}", response_model=SourceInfo, summary="one source")
def get_source(ctx: Ctx, name: Name) -> SourceInfo:
    for source in ctx.sources.all():
        if source.name == name:
            return SourceInfo(spec=source.spec, builtin=source.builtin)
    from query.errors import not_found

    raise not_found(f"no source named {name!r}", "name")


@router.post("", response_model=SourceInfo, status_code=201,
             summary="add a source for an existing table (checked against ClickHouse, then stored)")
def add_source(ctx: Ctx, spec: SourceSpec) -> SourceInfo:
    who = ctx.require("admin", "sources.create")
    source = ctx.sources.add(spec, superuser=who.superuser)
    _audit(ctx, "source.create", spec.name, {"database": spec.database, "table": spec.table})
    return SourceInfo(spec=source.spec, builtin=False)


@router.delete("/{name}", status_code=204, response_class=Response, summary="remove an operator-added source")
def delete_source(ctx: Ctx, name: Name) -> Response:
    ctx.require("admin", "sources.delete")
    ctx.sources.delete(name)
    _audit(ctx, "source.delete", name, {})
    return Response(status_code=204)


def _audit(ctx: Context, action: str, target: str, detail: dict[str, str]) -> None:
    ctx.forget_source_tables()
    if ctx.store is not None:
        with ctx.store.session() as session:
            audit(session, ctx.who.actor, action, target, team_id=ctx.who.team_id, detail=detail, source=ctx.source)

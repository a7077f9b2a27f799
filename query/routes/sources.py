"""/api/v1/sources: the built-in sources and the operator's (table + field expressions)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from query.context import Context, context
from query.models import SourceInfo, SourceSpec, SourcesResponse
from query.routes import ERRORS

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
    source = ctx.sources.add(spec)
    return SourceInfo(spec=source.spec, builtin=False)


@router.delete("/{name}", status_code=204, response_class=Response, summary="remove an operator-added source")
def delete_source(ctx: Ctx, name: Name) -> Response:
    ctx.sources.delete(name)
    return Response(status_code=204)

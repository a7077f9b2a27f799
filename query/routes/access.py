"""/api/v1/auth (login, logout, who am I, switch team), /api/v1/teams, /api/v1/users, /api/v1/keys and
/api/v1/audit: access to Maple, per team (docs/teams.md)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy import select

from query.auth import SESSION_COOKIE, Principal, forbidden
from query.context import Context, app_context, context
from query.errors import ApiError
from query.models import (
    MAX_ID,
    AuditRecord,
    AuditResponse,
    KeyCreate,
    KeyCreated,
    KeyInfo,
    KeysResponse,
    LoginRequest,
    MeResponse,
    PasswordChange,
    RoleChange,
    TeamCreate,
    TeamInfo,
    TeamsResponse,
    TeamSwitch,
    UserCreate,
    UserInfo,
    UsersResponse,
)
from query.routes import ERRORS
from query.store.tables import AuditRow
from query.teams import (
    create_key,
    create_team,
    create_user,
    list_keys,
    members,
    remove_member,
    revoke_key,
    set_password,
    set_role,
    verify_password,
)

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 401: ERRORS[400] | {"description": "not logged in, session expired, unknown or revoked key"},
    403: ERRORS[400] | {"description": "your role in the team does not allow it"}}
router = APIRouter(responses=AUTH_ERRORS)

Ctx = Annotated[Context, Depends(context)]
App = Annotated[Context, Depends(app_context)]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


def _store(ctx: Context) -> Any:
    if ctx.store is None or ctx.auth is None:
        raise ApiError(503, "unavailable", "the metadata store is not open")
    return ctx.store


def _set_cookie(response: Response, ctx: Context, token: str) -> None:
    api = ctx.settings.api
    response.set_cookie(SESSION_COOKIE, token, max_age=api.session_ttl_s, httponly=True, samesite="lax",
                        secure=api.secure_cookies, path="/")


def _me(ctx: Context, who: Principal) -> MeResponse:
    assert ctx.auth is not None
    teams = [TeamInfo(**t) for t in ctx.auth.teams_of(who)]
    return MeResponse(email=who.email, superuser=who.superuser, team=who.team, role=who.role,
                      teams=teams, key=who.key_prefix)


# -- auth ------------------------------------------------------------------------------------------------


@router.post("/auth/login", response_model=MeResponse, tags=["auth"],
             summary="log in: sets the session cookie (429 after too many failed attempts)")
def login(ctx: App, body: LoginRequest, response: Response) -> MeResponse:
    _store(ctx)
    assert ctx.auth is not None
    token, who = ctx.auth.login(body.email, body.password, ctx.source, body.team)
    _set_cookie(response, ctx, token)
    return _me(ctx, who)


@router.post("/auth/logout", status_code=204, response_class=Response, tags=["auth"], summary="end the session")
def logout(request: Request, ctx: App) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token and ctx.auth is not None:
        ctx.auth.logout(token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=ctx.settings.api.secure_cookies, httponly=True,
                           samesite="lax")
    return response


@router.get("/auth/me", response_model=MeResponse, tags=["auth"], summary="who you are, your team and role")
def me(ctx: Ctx) -> MeResponse:
    return _me(ctx, ctx.who)


@router.put("/auth/team", response_model=MeResponse, tags=["auth"], summary="work in another of your teams")
def switch(ctx: Ctx, body: TeamSwitch) -> MeResponse:
    assert ctx.auth is not None
    return _me(ctx, ctx.auth.switch_team(ctx.who, body.team))


@router.put("/auth/password", status_code=204, response_class=Response, tags=["auth"],
            summary="change your password (ends your other sessions)")
def change_password(ctx: Ctx, body: PasswordChange, request: Request, response: Response) -> Response:
    who = ctx.who
    if who.email is None:
        raise forbidden("an API key has no password")
    store = _store(ctx)
    from query.store.tables import UserRow

    with store.session() as session:
        user = session.scalar(select(UserRow).where(UserRow.email == who.email))
        current = user.password_hash if user is not None else None
    if not verify_password(current, body.current_password):
        raise ApiError(403, "forbidden", "current_password: wrong password", field="current_password")
    set_password(store, who.email, body.new_password, who.actor, ctx.source)
    assert ctx.auth is not None
    token, _ = ctx.auth.login(who.email, body.new_password, ctx.source, who.team)
    out = Response(status_code=204)
    _set_cookie(out, ctx, token)
    return out


# -- teams -----------------------------------------------------------------------------------------------


@router.get("/teams", response_model=TeamsResponse, tags=["teams"], summary="the teams you belong to")
def teams(ctx: Ctx) -> TeamsResponse:
    assert ctx.auth is not None
    return TeamsResponse(teams=[TeamInfo(**t) for t in ctx.auth.teams_of(ctx.who)])


@router.post("/teams", response_model=TeamInfo, status_code=201, tags=["teams"],
             summary="create a team (superusers)")
def add_team(ctx: Ctx, body: TeamCreate) -> TeamInfo:
    who = ctx.who
    if not who.superuser:
        assert ctx.auth is not None
        raise ctx.auth.denied(who, "team.create", "superuser", ctx.source)
    team = create_team(_store(ctx), body.slug, body.name, who.actor, ctx.source)
    return TeamInfo(slug=team["slug"], name=team["name"], role=None)


# -- users -----------------------------------------------------------------------------------------------


def _user(member: Any) -> UserInfo:
    return UserInfo(**member.as_dict())


@router.get("/users", response_model=UsersResponse, tags=["users"], summary="the team's members")
def users(ctx: Ctx) -> UsersResponse:
    who = ctx.require("admin", "users.list")
    return UsersResponse(users=[_user(m) for m in members(_store(ctx), who.team)])


@router.post("/users", response_model=UserInfo, status_code=201, tags=["users"],
             summary="add a user to the team (created if new)")
def add_user(ctx: Ctx, body: UserCreate) -> UserInfo:
    who = ctx.require("admin", "users.create")
    return _user(create_user(_store(ctx), body.email, body.password, who.team, body.role, who.actor,
                             name=body.name, source=ctx.source))


@router.put("/users/{user_id}/role", response_model=UserInfo, tags=["users"], summary="change a member's role")
def change_role(ctx: Ctx, user_id: Id, body: RoleChange) -> UserInfo:
    who = ctx.require("admin", "users.role")
    return _user(set_role(_store(ctx), who.team, user_id, body.role, who.actor, ctx.source))


@router.delete("/users/{user_id}", status_code=204, response_class=Response, tags=["users"],
               summary="remove a member from the team (their sessions in it end)")
def remove_user(ctx: Ctx, user_id: Id) -> Response:
    who = ctx.require("admin", "users.remove")
    remove_member(_store(ctx), who.team, user_id, who.actor, ctx.source)
    return Response(status_code=204)


# -- keys ------------------------------------------------------------------------------------------------


@router.get("/keys", response_model=KeysResponse, tags=["keys"], summary="the team's API keys (never the keys)")
def keys(ctx: Ctx) -> KeysResponse:
    who = ctx.require("admin", "keys.list")
    return KeysResponse(keys=[KeyInfo(**k) for k in list_keys(_store(ctx), who.team)])


@router.post("/keys", response_model=KeyCreated, status_code=201, tags=["keys"],
             summary="create an API key: the answer holds the key, shown this once")
def add_key(ctx: Ctx, body: KeyCreate, response: Response) -> KeyCreated:
    who = ctx.require("admin", "keys.create")
    key, secret = create_key(_store(ctx), who.team, body.kind, body.name, who.actor, role=body.role,
                             source=ctx.source)
    response.headers["Cache-Control"] = "no-store"
    return KeyCreated(key=KeyInfo(**key), secret=secret)


@router.delete("/keys/{key_id}", response_model=KeyInfo, tags=["keys"],
               summary="revoke an API key (the ingest stops accepting it within ingest.keys_refresh_s)")
def delete_key(ctx: Ctx, key_id: Id) -> KeyInfo:
    who = ctx.require("admin", "keys.revoke")
    return KeyInfo(**revoke_key(_store(ctx), key_id, who.actor, who.team, ctx.source))


# -- audit -----------------------------------------------------------------------------------------------


@router.get("/audit", response_model=AuditResponse, tags=["audit"], summary="the team's audit records, newest first")
def audit_log(ctx: Ctx, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditResponse:
    who = ctx.require("admin", "audit.list")
    with _store(ctx).session() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.team_id == who.team_id)
                               .order_by(AuditRow.id.desc()).limit(limit)).all()
        return AuditResponse(records=[AuditRecord(at=r.at, actor=r.actor, action=r.action, target=r.target,
                                                  outcome=r.outcome, detail=json.loads(r.detail),
                                                  source=r.source) for r in rows])

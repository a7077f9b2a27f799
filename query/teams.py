"""Teams, users, memberships and API keys in the metadata store: the operations the API's admin endpoints and
the `maple users` / `maple keys` / `maple teams` commands share, each with its audit record.

A team is a tenant: its `slug` is the value of the Tenant column of its rows (maple/tenants.py) and never
changes. Roles per team, each including the ones below it: viewer (read), editor (also alert rules, saved
searches, dashboards), admin (also users, keys, webhooks, sources). A superuser (an instance operator) may
create teams and act as admin in every team.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from maple import apikeys
from maple.tenants import TenantError
from maple.tenants import check as check_tenant
from query.store import Store
from query.store.tables import ApiKeyRow, AuditRow, MembershipRow, SessionRow, TeamRow, UserRow

ROLES = ("viewer", "editor", "admin")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}")
MIN_PASSWORD = 12
_HASHER = PasswordHasher()  # Argon2id with the library's current defaults
# Verified against when the account does not exist, so that a wrong account costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("maple: no such account")


class TeamsError(ValueError):
    """A request about teams, users or keys that cannot be done; `status` is the HTTP answer, `field` the input."""

    def __init__(self, message: str, *, status: int = 400, field: str | None = None, code: str = "invalid_parameter"
                 ) -> None:
        super().__init__(message)
        self.status, self.field, self.code = status, field, code


def rank(role: str) -> int:
    return ROLES.index(role)


def check_role(role: str, field: str = "role") -> str:
    if role not in ROLES:
        raise TeamsError(f"{field}: {role!r} is not one of {', '.join(ROLES)}", field=field)
    return role


def normal_email(email: str) -> str:
    email = (email or "").strip().lower()
    if not EMAIL.fullmatch(email):
        raise TeamsError(f"email: {email!r} is not an email address", field="email")
    return email


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise TeamsError(f"password: at least {MIN_PASSWORD} characters", field="password")
    if len(password) > 1024:
        raise TeamsError("password: at most 1024 characters", field="password")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(check_password(password))


def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored` (None: no such account; the time taken is the same)."""
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def audit(session: Session, actor: str, action: str, target: str = "", *, team_id: int | None = None,
          outcome: str = "ok", detail: dict[str, Any] | None = None, source: str = "") -> None:
    """One audit record (an admin action, or an attempt refused). Never holds a secret."""
    session.add(AuditRow(at=time.time(), team_id=team_id, actor=actor[:300], action=action, target=target[:300],
                         outcome=outcome, detail=json.dumps(detail or {}, sort_keys=True), source=source[:64]))


# -- teams -----------------------------------------------------------------------------------------------


def team_by_slug(session: Session, slug: str) -> TeamRow:
    team = session.scalar(select(TeamRow).where(TeamRow.slug == slug))
    if team is None:
        raise TeamsError(f"team: no team {slug!r}", status=404, field="team", code="not_found")
    return team


def create_team(store: Store, slug: str, name: str, actor: str, source: str = "") -> dict[str, Any]:
    try:
        check_tenant(slug)
    except TenantError as exc:
        raise TeamsError(f"slug: {exc}", field="slug") from None
    try:
        with store.session() as session:
            team = TeamRow(slug=slug, name=(name or slug)[:200], created_at=time.time())
            session.add(team)
            session.flush()
            audit(session, actor, "team.create", slug, team_id=team.id, source=source)
            return team_dict(team)
    except IntegrityError:
        raise TeamsError(f"slug: a team {slug!r} exists already", status=409, field="slug", code="conflict") from None


def team_dict(team: TeamRow) -> dict[str, Any]:
    return {"slug": team.slug, "name": team.name, "created_at": team.created_at}


def list_teams(store: Store) -> list[dict[str, Any]]:
    with store.session() as session:
        return [team_dict(t) for t in session.scalars(select(TeamRow).order_by(TeamRow.slug))]


# -- users -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    user_id: int
    email: str
    name: str
    role: str
    superuser: bool
    disabled: bool

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.user_id, "email": self.email, "name": self.name, "role": self.role,
                "superuser": self.superuser, "disabled": self.disabled}


def count_users(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(UserRow)) or 0)


def create_user(store: Store, email: str, password: str, team: str, role: str, actor: str, *, name: str = "",
                superuser: bool = False, source: str = "") -> Member:
    """A new user with a role in `team` (or, for an existing user, the role added): 409 if already a member."""
    email, role = normal_email(email), check_role(role)
    with store.session() as session:
        team_row = team_by_slug(session, team)
        user = session.scalar(select(UserRow).where(UserRow.email == email))
        now = time.time()
        if user is None:
            user = UserRow(email=email, name=name[:200], password_hash=hash_password(password), superuser=superuser,
                           disabled=False, created_at=now, password_changed_at=now)
            session.add(user)
            session.flush()
        elif session.get(MembershipRow, (user.id, team_row.id)) is not None:
            raise TeamsError(f"email: {email} is a member of {team} already", status=409, field="email",
                             code="conflict")
        session.add(MembershipRow(user_id=user.id, team_id=team_row.id, role=role, created_at=now))
        audit(session, actor, "user.create", email, team_id=team_row.id, detail={"role": role,
                                                                                   "superuser": superuser},
              source=source)
        return Member(user.id, user.email, user.name, role, user.superuser, user.disabled)


def members(store: Store, team: str) -> list[Member]:
    with store.session() as session:
        team_row = team_by_slug(session, team)
        rows = session.execute(select(UserRow, MembershipRow.role)
                               .join(MembershipRow, MembershipRow.user_id == UserRow.id)
                               .where(MembershipRow.team_id == team_row.id).order_by(UserRow.email)).all()
        return [Member(u.id, u.email, u.name, role, u.superuser, u.disabled) for u, role in rows]


def list_users(store: Store) -> list[dict[str, Any]]:
    """Every user with their teams (the CLI's view of the instance)."""
    with store.session() as session:
        out = []
        for user in session.scalars(select(UserRow).order_by(UserRow.email)):
            teams = session.execute(select(TeamRow.slug, MembershipRow.role).join(
                MembershipRow, MembershipRow.team_id == TeamRow.id).where(MembershipRow.user_id == user.id)).all()
            out.append({"id": user.id, "email": user.email, "superuser": user.superuser, "disabled": user.disabled,
                        "teams": {slug: role for slug, role in teams}})
        return out


def _member(session: Session, team: str, user_id: int) -> tuple[TeamRow, UserRow, MembershipRow]:
    team_row = team_by_slug(session, team)
    user = session.get(UserRow, user_id)
    membership = session.get(MembershipRow, (user_id, team_row.id)) if user is not None else None
    if user is None or membership is None:
        raise TeamsError(f"user: no user {user_id} in team {team}", status=404, field="user", code="not_found")
    return team_row, user, membership


def _admins_left(session: Session, team_id: int, without: int) -> int:
    return int(session.scalar(select(func.count()).select_from(MembershipRow).where(
        MembershipRow.team_id == team_id, MembershipRow.role == "admin", MembershipRow.user_id != without)) or 0)


def set_role(store: Store, team: str, user_id: int, role: str, actor: str, source: str = "") -> Member:
    role = check_role(role)
    with store.session() as session:
        team_row, user, membership = _member(session, team, user_id)
        if membership.role == "admin" and role != "admin" and not _admins_left(session, team_row.id, user_id):
            raise TeamsError("role: the team's last admin cannot be demoted", status=409, field="role",
                             code="conflict")
        before, membership.role = membership.role, role
        audit(session, actor, "user.role", user.email, team_id=team_row.id, detail={"from": before, "to": role},
              source=source)
        return Member(user.id, user.email, user.name, role, user.superuser, user.disabled)


def remove_member(store: Store, team: str, user_id: int, actor: str, source: str = "") -> None:
    with store.session() as session:
        team_row, user, membership = _member(session, team, user_id)
        if membership.role == "admin" and not _admins_left(session, team_row.id, user_id):
            raise TeamsError("user: the team's last admin cannot be removed", status=409, field="user",
                             code="conflict")
        session.delete(membership)
        session.execute(delete(SessionRow).where(SessionRow.user_id == user_id, SessionRow.team_id == team_row.id))
        audit(session, actor, "user.remove", user.email, team_id=team_row.id, source=source)


def set_password(store: Store, email: str, password: str, actor: str, source: str = "") -> None:
    """A new password; every session of the user ends."""
    email = normal_email(email)
    hashed = hash_password(password)
    with store.session() as session:
        user = session.scalar(select(UserRow).where(UserRow.email == email))
        if user is None:
            raise TeamsError(f"email: no user {email}", status=404, field="email", code="not_found")
        user.password_hash, user.password_changed_at = hashed, time.time()
        session.execute(delete(SessionRow).where(SessionRow.user_id == user.id))
        audit(session, actor, "user.password", email, source=source)


def delete_user(store: Store, email: str, actor: str, source: str = "") -> None:
    email = normal_email(email)
    with store.session() as session:
        user = session.scalar(select(UserRow).where(UserRow.email == email))
        if user is None:
            raise TeamsError(f"email: no user {email}", status=404, field="email", code="not_found")
        for membership in session.scalars(select(MembershipRow).where(MembershipRow.user_id == user.id)):
            if membership.role == "admin" and not _admins_left(session, membership.team_id, user.id):
                team = session.get(TeamRow, membership.team_id)
                raise TeamsError(f"email: {email} is the last admin of {team.slug if team else '?'}", status=409,
                                 field="email", code="conflict")
        session.delete(user)
        audit(session, actor, "user.delete", email, source=source)


# -- API keys --------------------------------------------------------------------------------------------


def key_dict(key: ApiKeyRow, team: str) -> dict[str, Any]:
    return {"id": key.id, "team": team, "kind": key.kind, "role": key.role, "name": key.name, "prefix": key.prefix,
            "created_at": key.created_at, "created_by": key.created_by, "last_used_at": key.last_used_at,
            "revoked_at": key.revoked_at}


def create_key(store: Store, team: str, kind: str, name: str, actor: str, *, role: str | None = None,
               source: str = "") -> tuple[dict[str, Any], str]:
    """A new key of `team`: (its description, the key itself, which is never shown again)."""
    if kind not in apikeys.KINDS:
        raise TeamsError(f"kind: {kind!r} is not one of {', '.join(apikeys.KINDS)}", field="kind")
    if kind == "query":
        role = check_role(role or "viewer")
    elif role is not None:
        raise TeamsError("role: an ingest key only sends data; it has no role", field="role")
    new = apikeys.generate(kind)
    with store.session() as session:
        team_row = team_by_slug(session, team)
        key = ApiKeyRow(team_id=team_row.id, kind=kind, role=role, name=(name or "")[:200], prefix=new.prefix,
                        key_hash=new.key_hash, created_at=time.time(), created_by=actor[:300])
        session.add(key)
        session.flush()
        audit(session, actor, "key.create", f"{new.prefix}…", team_id=team_row.id,
              detail={"kind": kind, "role": role, "name": key.name}, source=source)
        return key_dict(key, team), new.secret


def list_keys(store: Store, team: str | None = None) -> list[dict[str, Any]]:
    with store.session() as session:
        query = select(ApiKeyRow, TeamRow.slug).join(TeamRow, TeamRow.id == ApiKeyRow.team_id)
        if team is not None:
            query = query.where(TeamRow.slug == team_by_slug(session, team).slug)
        return [key_dict(k, slug) for k, slug in session.execute(query.order_by(ApiKeyRow.id)).all()]


def revoke_key(store: Store, key_id: int, actor: str, team: str | None = None, source: str = "") -> dict[str, Any]:
    """Revoke a key (of `team`, when given: another team's key is not found)."""
    with store.session() as session:
        key = session.get(ApiKeyRow, key_id)
        owner = session.get(TeamRow, key.team_id) if key is not None else None
        if key is None or owner is None or (team is not None and owner.slug != team):
            raise TeamsError(f"key: no key {key_id}" + (f" in team {team}" if team else ""), status=404, field="key",
                             code="not_found")
        if key.revoked_at is None:
            key.revoked_at = time.time()
        audit(session, actor, "key.revoke", f"{key.prefix}…", team_id=owner.id, source=source)
        return key_dict(key, owner.slug)

"""Who is calling: a login session (a cookie) or a query API key (a bearer token), as a `Principal` with one
team and a role in it. Every API route but login and /readyz needs one (query/context.py).

* **Sessions.** Login checks the password (Argon2id) and sets the cookie ``maple_session`` to a random
  256-bit token; the store keeps its SHA-256, the user, the active team and when it ends
  (`api.session_ttl_s` after the last request). The cookie is HttpOnly and SameSite=Lax, Secure when
  `api.secure_cookies` is set (the API served over TLS). A changed password, a removed membership or a
  logout ends sessions at once: they are looked up on every request.
* **Cross-site requests.** SameSite=Lax keeps the cookie off cross-site POST/PUT/DELETE; requests that
  change something with a cookie must also come from the API's own origin (`Origin`, when the browser
  sends it) and carry JSON bodies, which a cross-site form cannot send.
* **Query API keys** (``Authorization: Bearer mpl_query_...``): a team and a role, looked up by SHA-256.
  An ingest key is refused here: it only sends data.
* **Login rate limits**, per account and source address, per account, per source (`api.login_attempts` in
  `api.login_window_s`), counted in the store so that every replica sees the same counts; checked before
  the password, and a wrong account costs as long as a wrong password.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, func, select

from maple import apikeys
from maple.settings import Settings
from query.store import Store
from query.store.tables import ApiKeyRow, LoginFailureRow, MembershipRow, SessionRow, TeamRow, UserRow
from query.teams import ROLES, TeamsError, audit, normal_email, rank, verify_password

SESSION_COOKIE = "maple_session"
SESSION_TOUCH_S = 300.0   # a session's expiry moves on at most this often (one write per 5 minutes)
KEY_TOUCH_S = 60.0        # a key's last_used_at likewise
FAILURES_KEPT_S = 86400.0


class AuthError(TeamsError):
    """401 (who are you?) or 403 (not allowed), with the message the client gets."""


def unauthorized(message: str) -> AuthError:
    return AuthError(message, status=401, code="unauthorized")


def forbidden(message: str) -> AuthError:
    return AuthError(message, status=403, code="forbidden")


@dataclass(frozen=True)
class Principal:
    team: str                 # the team's slug: the tenant every query is restricted to
    team_id: int
    role: str                 # viewer | editor | admin, in `team`
    user_id: int | None = None
    email: str | None = None
    superuser: bool = False
    key_id: int | None = None
    key_prefix: str | None = None
    session_id: str | None = None

    def can(self, role: str) -> bool:
        return rank(self.role) >= rank(role)

    @property
    def actor(self) -> str:
        """Who did it, for audit records and `created_by`: never a secret."""
        return f"user:{self.email}" if self.email else f"key:{self.key_prefix}…"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def source_of(client_host: str | None) -> str:
    return (client_host or "")[:64]


class Auth:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    # -- login -----------------------------------------------------------------------------------------

    def _limited(self, session: Any, account: str, source: str, now: float) -> float | None:
        """Seconds until the next attempt is allowed, or None when it is allowed now."""
        api = self.settings.api
        since = now - api.login_window_s
        by_account, by_source = LoginFailureRow.account == account, LoginFailureRow.source == source
        checks = (((by_account, by_source), api.login_attempts), ((by_account,), api.login_attempts * 4),
                  ((by_source,), api.login_attempts * 10))
        for conditions, limit in checks:
            count, oldest = session.execute(select(func.count(), func.min(LoginFailureRow.at)).where(
                *conditions, LoginFailureRow.at > since)).one()
            if count >= limit:
                return max(1.0, float(oldest) + api.login_window_s - now)
        return None

    def login(self, email: str, password: str, source: str, team: str | None = None) -> tuple[str, Principal]:
        """A new session for the user: (the cookie's token, who it is). 401 for a wrong account or password
        (the same answer for both), 429 while the rate limit holds."""
        try:
            account = normal_email(email)
        except TeamsError:
            account = (email or "").strip().lower()[:254]
        now = time.time()
        with self.store.session() as session:
            wait = self._limited(session, account, source, now)
            if wait is not None:
                raise AuthError(f"too many failed logins for this account from {source or 'here'}: try again in "
                                f"{int(wait) + 1} s", status=429, code="rate_limited")
            user = session.scalar(select(UserRow).where(UserRow.email == account))
            ok = verify_password(user.password_hash if user is not None else None, password)
        if not ok or user is None or user.disabled:
            with self.store.session() as session:  # committed: the failure counts even though we answer 401
                session.add(LoginFailureRow(account=account, source=source, at=now))
                session.execute(delete(LoginFailureRow).where(LoginFailureRow.at < now - FAILURES_KEPT_S))
            raise unauthorized("wrong email or password")
        with self.store.session() as session:
            session.execute(delete(LoginFailureRow).where(LoginFailureRow.account == account,
                                                          LoginFailureRow.source == source))
            team_row, role = self._team_for(session, user, team)
            token = secrets.token_urlsafe(32)
            session.add(SessionRow(id=_hash(token), user_id=user.id, team_id=team_row.id, created_at=now,
                                   expires_at=now + self.settings.api.session_ttl_s, last_seen_at=now, source=source))
            principal = Principal(team_row.slug, team_row.id, role, user.id, user.email, user.superuser,
                                  session_id=_hash(token))
        return token, principal

    @staticmethod
    def _team_for(session: Any, user: UserRow, wanted: str | None) -> tuple[TeamRow, str]:
        """The team a session works in: `wanted`, else the user's first team; its role (admin for a superuser
        who is not a member)."""
        rows = session.execute(select(TeamRow, MembershipRow.role).join(MembershipRow, MembershipRow.team_id ==
                                                                       TeamRow.id)
                               .where(MembershipRow.user_id == user.id).order_by(TeamRow.slug)).all()
        if wanted:
            for team, role in rows:
                if team.slug == wanted:
                    return team, role
            if user.superuser:
                team = session.scalar(select(TeamRow).where(TeamRow.slug == wanted))
                if team is not None:
                    return team, "admin"
            raise forbidden(f"team: you are not a member of team {wanted!r}")
        if rows:
            return rows[0][0], rows[0][1]
        if user.superuser:
            team = session.scalar(select(TeamRow).order_by(TeamRow.id))
            if team is not None:
                return team, "admin"
        raise forbidden("you are not a member of any team: ask a team's admin to add you")

    def logout(self, token: str) -> None:
        with self.store.session() as session:
            session.execute(delete(SessionRow).where(SessionRow.id == _hash(token)))

    def switch_team(self, principal: Principal, team: str) -> Principal:
        """The session's active team changed to `team` (a member's, or any for a superuser)."""
        if principal.session_id is None or principal.user_id is None:
            raise forbidden("an API key belongs to one team")
        with self.store.session() as session:
            user = session.get(UserRow, principal.user_id)
            row = session.get(SessionRow, principal.session_id)
            if user is None or row is None:
                raise unauthorized("the session has ended: log in again")
            team_row, role = self._team_for(session, user, team)
            row.team_id = team_row.id
            return replace(principal, team=team_row.slug, team_id=team_row.id, role=role)

    def teams_of(self, principal: Principal) -> list[dict[str, Any]]:
        """The teams the caller may switch to, with the role in each."""
        with self.store.session() as session:
            if principal.user_id is None:
                return [{"slug": principal.team, "role": principal.role}]
            user = session.get(UserRow, principal.user_id)
            rows = session.execute(select(TeamRow.slug, TeamRow.name, MembershipRow.role).join(
                MembershipRow, MembershipRow.team_id == TeamRow.id).where(MembershipRow.user_id ==
                                                                           principal.user_id)).all()
            teams = {slug: {"slug": slug, "name": name, "role": role} for slug, name, role in rows}
            if user is not None and user.superuser:
                for team in session.scalars(select(TeamRow)):
                    teams.setdefault(team.slug, {"slug": team.slug, "name": team.name, "role": "admin"})
            return [teams[slug] for slug in sorted(teams)]

    # -- each request ------------------------------------------------------------------------------------

    def from_session(self, token: str) -> Principal:
        now = time.time()
        with self.store.session() as session:
            row = session.get(SessionRow, _hash(token))
            if row is None or row.expires_at <= now:
                if row is not None:
                    session.delete(row)
                raise unauthorized("the session has expired or ended: log in again")
            user = session.get(UserRow, row.user_id)
            team = session.get(TeamRow, row.team_id)
            if user is None or user.disabled or team is None:
                raise unauthorized("the session has ended: log in again")
            membership = session.get(MembershipRow, (user.id, team.id))
            if membership is None and not user.superuser:
                raise unauthorized(f"you are no longer a member of team {team.slug}: log in again")
            if now - row.last_seen_at > SESSION_TOUCH_S:
                row.last_seen_at, row.expires_at = now, now + self.settings.api.session_ttl_s
            return Principal(team.slug, team.id, membership.role if membership is not None else "admin", user.id,
                             user.email, user.superuser, session_id=row.id)

    def from_key(self, secret: str) -> Principal:
        kind = apikeys.kind_of(secret)
        if kind == "ingest":
            raise unauthorized("an ingest key sends data to the OTLP ingest; reading the API needs a query key")
        now = time.time()
        with self.store.session() as session:
            key = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == apikeys.hash_key(secret)))
            if key is None or key.kind != "query":
                raise unauthorized("unknown API key")
            if key.revoked_at is not None:
                raise unauthorized(f"the API key {key.prefix}… has been revoked")
            team = session.get(TeamRow, key.team_id)
            if team is None or key.role not in ROLES:
                raise unauthorized("unknown API key")
            with self._lock:
                touch = now - self._touched.get(key.id, 0.0) > KEY_TOUCH_S
                if touch:
                    self._touched[key.id] = now
            if touch:
                key.last_used_at = now
            return Principal(team.slug, team.id, key.role, key_id=key.id, key_prefix=key.prefix)

    def denied(self, principal: Principal, action: str, needed: str, source: str) -> AuthError:
        """403 for a role below `needed`, recorded in the audit log."""
        with self.store.session() as session:
            audit(session, principal.actor, action, team_id=principal.team_id, outcome="denied",
                  detail={"role": principal.role, "needed": needed}, source=source)
        return forbidden(f"{action} needs the {needed} role in team {principal.team}; you are {principal.role}")

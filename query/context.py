"""What every route needs: the settings, a reader restricted to the caller's team, the team's sources, the
metadata store, the health monitor, and who the caller is.

`context` is the FastAPI dependency every data route takes: it authenticates the request (query/auth.py)
and builds the per-request `Context` whose reader can only read the caller's team's rows. A route cannot
get a reader any other way, which is what makes the restriction hold for every endpoint.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from fastapi import Request

from maple.settings import Settings
from query.auth import SESSION_COOKIE, Auth, AuthError, Principal, source_of, unauthorized
from query.errors import bad_request
from query.reader import Reader
from query.sources import KeysCache, Sources
from query.store import Store
from query.timerange import Range, resolve

if TYPE_CHECKING:
    from query.health import HealthMonitor

SOURCE_TABLES_CACHE_S = 5.0
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Context:
    settings: Settings
    reader: Reader
    sources: Sources
    store: Store | None
    health: HealthMonitor | None = None
    principal: Principal | None = None
    auth: Auth | None = None
    source: str = ""           # the caller's address (audit records, login limits)
    keys: KeysCache = field(default_factory=KeysCache)
    _tables: dict[int, tuple[float, dict[str, bool]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def range(self, start: str | None, end: str | None, default_s: int | None = None) -> Range:
        api = self.settings.api
        return resolve(start, end, default_s or api.default_range_s, api.max_range_s)

    def page_size(self, limit: int | None, name: str = "limit") -> int:
        api = self.settings.api
        if limit is None:
            return min(api.default_page_size, api.max_page_size)
        if limit < 1 or limit > api.max_page_size:
            raise bad_request(f"{name}: {limit} is outside 1..{api.max_page_size} (api.max_page_size)", name)
        return limit

    @property
    def who(self) -> Principal:
        if self.principal is None:
            raise unauthorized("log in, or send a query API key (Authorization: Bearer mpl_query_...)")
        return self.principal

    def require(self, role: str, action: str) -> Principal:
        """The caller, if their role in the team is at least `role`; 403 (and an audit record) otherwise."""
        who = self.who
        if not who.can(role):
            assert self.auth is not None
            raise self.auth.denied(who, action, role, self.source)
        return who

    # -- per request -----------------------------------------------------------------------------------

    def source_tables(self, team_id: int) -> dict[str, bool]:
        with self._lock:
            cached = self._tables.get(team_id)
        if cached is not None and time.monotonic() - cached[0] < SOURCE_TABLES_CACHE_S:
            return cached[1]
        tables = Sources(self.reader, self.store, team_id, self.keys).tables()
        with self._lock:
            self._tables[team_id] = (time.monotonic(), tables)
        return tables

    def forget_source_tables(self) -> None:
        with self._lock:
            self._tables.clear()

    def for_principal(self, principal: Principal, source: str = "") -> Context:
        """This (the app's) context for one caller: the reader and sources restricted to their team."""
        reader = self.reader.scoped(principal.team, self.source_tables(principal.team_id))
        return replace(self, reader=reader, sources=Sources(reader, self.store, principal.team_id, self.keys),
                       principal=principal, source=source)


def authenticate(request: Request, base: Context) -> Principal:
    """The caller of `request`: a query API key (Authorization: Bearer), else the session cookie."""
    auth = base.auth
    if auth is None:
        raise unauthorized("authentication is not available: the metadata store is not open")
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return auth.from_key(credential.strip())
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise unauthorized("log in, or send a query API key (Authorization: Bearer mpl_query_...)")
    if request.method in UNSAFE_METHODS:
        origin = request.headers.get("origin")
        if origin and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
            raise AuthError(f"a request from {origin} may not change anything with this session", status=403,
                            code="forbidden")
    return auth.from_session(token)


def context(request: Request) -> Context:
    """FastAPI dependency: the caller's Context (401 without a valid session or key)."""
    base: Context = request.app.state.context
    principal = authenticate(request, base)
    return base.for_principal(principal, source_of(request.client.host if request.client else None))


def app_context(request: Request) -> Context:
    """FastAPI dependency for the routes that work without a caller (login): the app's Context."""
    base: Context = request.app.state.context
    return replace(base, source=source_of(request.client.host if request.client else None))

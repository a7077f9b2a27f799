"""The query service's ASGI app: the API under /api/v1, OpenAPI at /api/openapi.json, the web UI at /."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maple import __version__
from maple.settings import Settings
from query.context import Context
from query.errors import ApiError
from query.health import HealthMonitor
from query.models import ReadyResponse
from query.reader import QUERY_TIMES, Reader
from query.routes import health, logs, metrics, sources, sql, traces
from query.sources import Sources
from query.store import Store, open_store

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
DESCRIPTION = """Maple's query service: search logs and traces, services and their dependencies, metrics
(a PromQL subset) and read-only SQL over the tables Maple's sinks fill. Errors answer
`{"error": {"code", "message", "field", ...}}`. docs/query.md has the search language and the limits."""


def ui_directory(settings: Settings) -> Path | None:
    """The built web UI to serve at /: api.ui_dir, else ui/dist beside the query package when it exists."""
    configured = settings.api.ui_dir
    path = Path(configured).expanduser() if configured else Path(__file__).resolve().parent.parent / "ui" / "dist"
    return path if (path / "index.html").is_file() else None


class SinglePageApp(StaticFiles):
    """Static files with the single-page app's fallback: an unknown path that is not /api gets index.html
    (the UI's router handles it); /api paths get the API's JSON 404."""

    async def get_response(self, path: str, scope: Scope) -> Any:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or path == "api" or path.startswith("api/"):
                raise
            return FileResponse(Path(str(self.directory)) / "index.html")


class ServerTiming:
    """Adds `Server-Timing: clickhouse;dur=<ms>;desc="<n> queries"` to API answers: the time spent waiting
    for ClickHouse, so a client (and `maple bench query`) can tell it from everything else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        times: list[float] = []
        token = QUERY_TIMES.set(times)

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start" and times:
                value = f'clickhouse;dur={sum(times):.1f};desc="{len(times)} queries"'
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"server-timing", value.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            QUERY_TIMES.reset(token)


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, code, message, field=field).body(), status_code=status)


def create_app(settings: Settings, *, reader: Reader | None = None, store: Store | None = None,
               health_monitor: bool = True, context: Context | None = None) -> FastAPI:
    """The app; the reader, the metadata store (migrated) and the health monitor open in its lifespan.

    A caller that manages them itself (tests driving the app without a lifespan) passes `context`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if context is not None:
            yield
            return
        the_reader = reader or Reader(settings)
        the_store = store or open_store(settings)
        monitor = HealthMonitor(settings, the_reader) if health_monitor else None
        app.state.context = Context(settings, the_reader, Sources(the_reader, the_store), the_store, monitor)
        try:
            yield
        finally:
            if monitor is not None:
                monitor.stop()
            if reader is None:
                the_reader.close()
            if store is None:
                the_store.close()

    app = FastAPI(title="Maple query API", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None)
    if context is not None:
        app.state.context = context

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "body", "path")]
        name = ".".join(loc) or None
        message = f"{name}: {first.get('msg')}" if name else str(first.get("msg"))
        return _error(400, "invalid_parameter", message, name)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = (f"no such endpoint: {request.method} {request.url.path}" if exc.status_code == 404
                   else str(exc.detail))
        return _error(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return _error(500, "internal", f"internal error: {type(exc).__name__}")

    app.add_middleware(ServerTiming)
    for module in (logs, traces, metrics, sql, sources, health):
        app.include_router(module.router, prefix=API_PREFIX)

    @app.get("/readyz", response_model=ReadyResponse, tags=["health"], summary="200 once ClickHouse answers",
             responses={503: {"model": ReadyResponse}})
    def readyz(request: Request) -> Any:
        context: Context = request.app.state.context
        try:
            version = context.reader.ping()
        except ApiError as exc:
            return JSONResponse(ReadyResponse(ready=False, detail=exc.message).model_dump(), status_code=503)
        return ReadyResponse(ready=True, detail=f"ClickHouse {version}")

    ui = ui_directory(settings)
    if ui is not None:
        app.mount("/", SinglePageApp(directory=ui, html=True), name="ui")
    return app


def run(settings: Settings) -> None:
    """Serve the app with uvicorn on api.host:api.port until SIGINT/SIGTERM."""
    import uvicorn

    store = open_store(settings)  # a bad api.metadata_url or a failed migration stops here, with its reason
    app = create_app(settings, store=store)
    config = uvicorn.Config(app, host=settings.api.host, port=settings.api.port, log_config=None,
                            access_log=False, lifespan="on", timeout_graceful_shutdown=10)
    log.info("query API on http://%s:%d (OpenAPI /api/openapi.json)", settings.api.host, settings.api.port)
    try:
        uvicorn.Server(config).run()
    finally:
        store.close()

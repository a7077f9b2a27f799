"""What every route needs: the settings, the reader, the sources, the metadata store and the health monitor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from maple.settings import Settings
from query.errors import bad_request
from query.reader import Reader
from query.sources import Sources
from query.store import Store
from query.timerange import Range, resolve

if TYPE_CHECKING:
    from query.health import HealthMonitor


@dataclass
class Context:
    settings: Settings
    reader: Reader
    sources: Sources
    store: Store | None
    health: HealthMonitor | None = None

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


def context(request: Request) -> Context:
    """FastAPI dependency: the app's Context."""
    ctx: Context = request.app.state.context
    return ctx

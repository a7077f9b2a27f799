"""Saved searches and dashboards: per team, kept as JSON specs in the metadata store (docs/alerts.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from query.models import Model


class SavedSearchSpec(Model):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["logs", "traces"] = "logs"
    source: str | None = Field(None, max_length=64)
    q: str = Field("", max_length=4000)
    services: list[str] = Field(default_factory=list, max_length=100)
    from_: str = Field("now-1h", alias="from", max_length=64, description="the range's start, as the search takes it")
    to: str | None = Field(None, max_length=64)
    columns: list[str] = Field(default_factory=list, max_length=50, description="the columns shown")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SavedSearch(SavedSearchSpec):
    id: int
    created_by: str
    created_at: float
    updated_at: float


class SavedSearchesResponse(Model):
    searches: list[SavedSearch]


class Panel(Model):
    title: str = Field(min_length=1, max_length=200)
    kind: Literal["search", "metric"] = Field(description="search: counts of a log or span search over time; "
                                                         "metric: a PromQL query")
    signal: Literal["logs", "traces"] = "logs"
    source: str | None = Field(None, max_length=64)
    q: str = Field("", max_length=4000, description="search panels: the search")
    query: str = Field("", max_length=4000, description="metric panels: the PromQL")
    group_by: str | None = Field(None, max_length=200, description="search panels: split by this field")
    chart: Literal["line", "bar", "table", "number"] = "line"


class DashboardSpec(Model):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    range: str = Field("now-1h", max_length=64, description="the default time range's start")
    panels: list[Panel] = Field(default_factory=list, max_length=50)


class Dashboard(DashboardSpec):
    id: int
    created_by: str
    created_at: float
    updated_at: float


class DashboardsResponse(Model):
    dashboards: list[Dashboard]

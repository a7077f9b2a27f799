"""HTTP routes of the query service, one module per area; every route answers errors as ErrorResponse."""

from __future__ import annotations

from typing import Any

from query.errors import ApiError
from query.models import ErrorResponse

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "bad input: the message names the parameter or field"},
    404: {"model": ErrorResponse, "description": "no such thing (source, trace, metric)"},
    422: {"model": ErrorResponse, "description": "stopped by a ClickHouse limit (time, rows, memory)"},
    503: {"model": ErrorResponse, "description": "ClickHouse (or the metadata store) is not reachable"},
}
MAX_LIST_ITEMS = 100
MAX_ITEM_LENGTH = 1000


def checked_list(values: list[str] | None, name: str) -> list[str]:
    """A repeated query parameter, bounded; empty strings dropped."""
    values = [v for v in (values or []) if v != ""]
    if len(values) > MAX_LIST_ITEMS:
        raise ApiError(400, "invalid_parameter", f"{name}: at most {MAX_LIST_ITEMS} values", field=name)
    for value in values:
        if len(value) > MAX_ITEM_LENGTH:
            raise ApiError(400, "invalid_parameter", f"{name}: a value is longer than {MAX_ITEM_LENGTH} characters",
                           field=name)
    return values

"""One exception type for every answer that is not a success, turned into the JSON error body by the app."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request that cannot be answered: HTTP status, a machine-readable code and a message naming the problem."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 position: int | None = None, expected: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.field, self.position, self.expected = field, position, expected

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"code": self.code, "message": self.message}
        for key in ("field", "position", "expected"):
            value = getattr(self, key)
            if value is not None:
                detail[key] = value
        return {"error": detail}


def bad_request(message: str, field: str | None = None, code: str = "invalid_parameter") -> ApiError:
    return ApiError(400, code, message, field=field)


def not_found(message: str, field: str | None = None) -> ApiError:
    return ApiError(404, "not_found", message, field=field)

"""Opaque page cursors: a position in an ordering, base64url JSON, checked when it comes back."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from query.errors import bad_request

VERSION = 1


def encode(kind: str, **position: Any) -> str:
    raw = json.dumps({"v": VERSION, "k": kind, **position}, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


UINT64_END = 2**64
INT64_END = 2**63


def decode(text: str, kind: str, fields: dict[str, type], ends: dict[str, int] | None = None) -> dict[str, Any]:
    """The position in `text`; 400 naming `cursor` when it is not a cursor of this endpoint.

    Integers are 0 <= value < ends[name] (default 2**64, a UInt64 parameter): a value the query's parameter
    cannot hold (2**63 for an Int64 timestamp) is damaged, not a position past every row."""
    if len(text) > 1000:
        raise bad_request("cursor: too long to be a cursor of this API", "cursor")
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_request("cursor: not a cursor this API returned (pass next_cursor unchanged)", "cursor") from None
    if not isinstance(data, dict) or data.get("v") != VERSION or data.get("k") != kind:
        raise bad_request(f"cursor: not a cursor of this endpoint ({kind})", "cursor")
    out = {}
    for name, expected in fields.items():
        value = data.get(name)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise bad_request(f"cursor: damaged ({name})", "cursor")
        if isinstance(value, int) and not 0 <= value < (ends or {}).get(name, UINT64_END):
            raise bad_request(f"cursor: damaged ({name})", "cursor")
        if isinstance(value, str) and len(value) > 200:
            raise bad_request(f"cursor: damaged ({name})", "cursor")
        out[name] = value
    return out

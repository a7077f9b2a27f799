"""Tenants (teams): what a tenant name may be, and how a row batch gets its tenant column.

The ingest maps an API key to a tenant and stamps it on the raw record (topics.HEADER_TENANT); the workers
carry it to every row batch they derive; the sink writes it into each row (`stamp`), so the column always
comes from the key, never from the data a sender chose. The query service restricts every read to the
caller's tenant by that column (docs/teams.md).
"""

from __future__ import annotations

import re

import orjson

from maple.topics import DEFAULT_TENANT

__all__ = ["DEFAULT_TENANT", "TENANT_PATTERN", "TenantError", "check", "stamp"]

# Letters, digits and `_ . -`: safe in a URL path, a header, a file name and a ClickHouse string literal.
TENANT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_TENANT = re.compile(TENANT_PATTERN)


class TenantError(ValueError):
    """Not a valid tenant name."""


def check(name: str) -> str:
    """`name` if it is a valid tenant name, else TenantError saying what one looks like."""
    if not isinstance(name, str) or not _TENANT.fullmatch(name):
        raise TenantError(f"{name!r} is not a tenant name: 1 to 64 letters, digits, '_', '.' or '-', starting with a "
                          "letter or digit")
    return name


def stamp(block: bytes, tenant: str, rows: int, column: str, fmt: str = "JSONColumns") -> bytes:
    """One row block (ClickHouse's JSONColumns object or one Native block) with `column` = `tenant` added to
    every row. Works on the bytes: the block is never decoded, so a sink stays a concatenator.

    Deterministic (the same block and tenant give the same bytes), which the insert tokens rely on."""
    if fmt == "JSONColumns":
        return _stamp_json(block, tenant, rows, column)
    if fmt == "Native":
        return _stamp_native(block, tenant, column)
    raise ValueError(f"unknown row batch format {fmt!r}")


def _stamp_json(block: bytes, tenant: str, rows: int, column: str) -> bytes:
    body = block.rstrip()
    if not body.endswith(b"}") or not body.startswith(b"{"):
        raise ValueError("not a JSONColumns object")
    value = orjson.dumps(tenant)
    values = b",".join([value] * rows)
    separator = b"" if body[1:-1].strip() == b"" else b","
    return body[:-1] + separator + orjson.dumps(column) + b":[" + values + b"]}"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("not a Native block: a truncated header")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("not a Native block: a length over 64 bits")


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: bytes) -> bytes:
    return _put_varint(len(value)) + value


def _stamp_native(block: bytes, tenant: str, column: str) -> bytes:
    """ClickHouse's Native format (the HTTP variant: `varuint columns, varuint rows`, then each column's name,
    type and data): one more String column at the end, the column count raised by one. One block per call:
    a processed-topic message holds one block (topics.py)."""
    columns, after = _varint(block, 0)
    rows, _ = _varint(block, after)
    return (_put_varint(columns + 1) + block[after:] + _string(column.encode()) + _string(b"String")
            + _string(tenant.encode()) * rows)

"""Tenants (teams): what a tenant name may be, and how a row batch gets its tenant column.

The ingest maps an API key to a tenant and stamps it on the raw record (topics.HEADER_TENANT); the workers
carry it to every row batch they derive; the sink writes it into each row (`stamp`), so the column always
comes from the key, never from the data a sender chose. The query service restricts every read to the
caller's tenant by that column (docs/teams.md).
"""

from __future__ import annotations

import re

from maple import blocks
from maple.topics import DEFAULT_TENANT, FORMAT_JSON

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


def stamp(block: bytes, tenant: str, rows: int, column: str, fmt: str = FORMAT_JSON) -> bytes:
    """One row block of `fmt` with `column` = `tenant` added to every row, on the bytes (never decoded, so a
    sink stays a concatenator) and deterministically, which the insert tokens rely on."""
    return blocks.with_constant(block, fmt, rows, column, tenant)

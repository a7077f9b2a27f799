"""Tenant names and the sink's tenant column on row blocks (pure byte work; tests/integration/test_tenants.py
inserts stamped blocks of both formats into the real engine)."""

from __future__ import annotations

import orjson
import pytest

from maple import tenants
from maple.tenants import TenantError


def test_tenant_names() -> None:
    for good in ("default", "team-a", "Acme.prod_2", "a" * 64):
        assert tenants.check(good) == good
    for bad in ("", "-a", "a b", "a'b", "a\\b", "é", "a" * 65, "a/b"):
        with pytest.raises(TenantError, match="not a tenant name"):
            tenants.check(bad)


def test_a_jsoncolumns_block_gains_the_column_for_every_row() -> None:
    block = orjson.dumps({"Body": ["x", "y\n\"}"], "SeverityNumber": [1, 2]})
    stamped = tenants.stamp(block, "team-a", 2, "Tenant")
    assert orjson.loads(stamped) == {"Body": ["x", "y\n\"}"], "SeverityNumber": [1, 2], "Tenant": ["team-a"] * 2}
    assert b"\n" not in stamped  # blocks are joined with newlines into one insert
    assert tenants.stamp(block, "team-a", 2, "Tenant") == stamped  # deterministic: insert tokens rely on it
    assert orjson.loads(tenants.stamp(b"{}", "t", 0, "Tenant")) == {"Tenant": []}
    with pytest.raises(ValueError, match="not a JSONColumns object"):
        tenants.stamp(b"[1]", "t", 1, "Tenant")
    with pytest.raises(ValueError, match="unknown row batch format"):
        tenants.stamp(block, "t", 2, "Tenant", "CSV")


def _native(columns: list[tuple[str, str, list[bytes]]], rows: int) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        return bytes(out + bytes([n]))

    out = varint(len(columns)) + varint(rows)
    for name, type_, values in columns:
        out += varint(len(name)) + name.encode() + varint(len(type_)) + type_.encode()
        out += b"".join(varint(len(v)) + v for v in values)
    return out


def test_a_native_block_gains_a_string_column_at_its_end() -> None:
    rows = 200  # a row count past one varint byte
    block = _native([("Body", "String", [b"x"] * rows)], rows)
    stamped = tenants.stamp(block, "team-a", rows, "Tenant", "Native")
    assert stamped == _native([("Body", "String", [b"x"] * rows), ("Tenant", "String", [b"team-a"] * rows)], rows)
    many = _native([(f"c{i}", "String", [b""]) for i in range(130)], 1)  # a column count past one varint byte
    assert tenants.stamp(many, "t", 1, "Tenant", "Native") == _native(
        [*((f"c{i}", "String", [b""]) for i in range(130)), ("Tenant", "String", [b"t"])], 1)
    with pytest.raises(ValueError, match="truncated"):
        tenants.stamp(b"\x81", "t", 1, "Tenant", "Native")

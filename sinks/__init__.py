"""Stage 3, write: idempotent, column-oriented bulk inserts from processed topics into ClickHouse."""

"""Stage 3, write: idempotent, column-oriented bulk inserts from processed topics into ClickHouse.

Not built yet: see the logs/metrics issue. Depends only on the shared `maple` package.
"""

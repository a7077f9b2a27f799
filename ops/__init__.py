"""Operations on a running (or stopped) Maple: replay, dead-letter redrive. See docs/operations.md.

A package of its own because it needs both the shared `maple` package and the sink's state and insert
code (`sinks.batch`, `sinks.writer`), and the stages themselves must not depend on it.
"""

"""The query service (`maple api`): Maple's read side, an HTTP API over the tables the sinks fill.

A stage like the others: it imports only the library (`maple`). Every ClickHouse query goes through
`query.reader.Reader`; operator-added sources live in the metadata store (`query.store`). docs/query.md.
"""

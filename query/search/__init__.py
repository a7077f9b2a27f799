"""The search language: Lucene-style query strings, parsed by luqum and compiled to bound ClickHouse SQL."""

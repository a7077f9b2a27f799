"""Maple's library: what every stage imports and nothing of a stage's own.

Settings, the Kafka contract (topics and headers), the ClickHouse contract (the schema), client
factories, the async producer, consumer-group facts, logging and metrics helpers. It imports no other
first-party package (docs/architecture.md; tests/unit/test_layers.py checks it).
"""

__version__ = "0.1.0"

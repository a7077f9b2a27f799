"""Kafka client rules on plain values: readiness needs consecutive failures; librdkafka's lines are
rate-limited per kind and every client factory routes them through Maple's logging."""

from __future__ import annotations

import logging

from maple import kafka
from maple.log import LIBRDKAFKA_LOGGER, RateLimit, librdkafka_logger
from maple.producer import UNREADY_AFTER_FAILURES, Readiness


def test_one_failed_metadata_check_does_not_make_the_producer_unready() -> None:
    readiness = Readiness()
    assert readiness.observe(True) is True
    assert [readiness.observe(False) for _ in range(UNREADY_AFTER_FAILURES - 1)] == [None] * (UNREADY_AFTER_FAILURES - 1)
    assert readiness.observe(True) is True  # one of three brokers down for a moment: never unready
    verdicts = [readiness.observe(False) for _ in range(UNREADY_AFTER_FAILURES)]
    assert verdicts[-1] is False and set(verdicts[:-1]) == {None}
    assert readiness.observe(False) is False and readiness.observe(True) is True


def _record(message: str, *args: object, name: str = LIBRDKAFKA_LOGGER) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args, None)


def test_the_same_kind_of_line_passes_once_per_interval_and_then_says_how_many_were_held_back() -> None:
    now = [0.0]
    limit = RateLimit(interval_s=10, clock=lambda: now[0])
    line = "%s [%s] %s"
    connect = "127.0.0.1:{}/bootstrap: Connect to ipv4#127.0.0.1:{} failed: Connection refused (after {}ms in state CONNECT)"
    passed = []
    for i in range(200):  # 20 lines a second for 10 s, from two brokers, as librdkafka does in an outage
        now[0] = i * 0.05
        port = 9092 + i % 2
        record = _record(line, "FAIL", "rdkafka#producer-1", connect.format(port, port, i % 3))
        if limit.filter(record):
            passed.append(record.getMessage())
    assert len(passed) == 1
    now[0] = 10.5
    record = _record(line, "FAIL", "rdkafka#producer-1", connect.format(9092, 9092, 0))
    assert limit.filter(record) and record.getMessage().endswith("(199 more like this in the last 10s)")
    other = _record(line, "REQTMOUT", "rdkafka#producer-1", "Timed out 1 in-flight request")
    assert limit.filter(other)  # another kind of line is not held back by the first


def test_a_handler_level_limit_touches_only_the_named_libraries() -> None:
    limit = RateLimit(interval_s=10, prefixes=("aiokafka",), clock=lambda: 0.0)
    assert limit.filter(_record("Unable connect to node 1", name="aiokafka.conn"))
    assert not limit.filter(_record("Unable connect to node 1", name="aiokafka.conn"))
    assert all(limit.filter(_record("a line of Maple's own", name="maple.sink")) for _ in range(3))


def test_every_client_factory_hands_librdkafka_lines_to_the_rate_limited_logger() -> None:
    logger = librdkafka_logger()
    assert any(isinstance(f, RateLimit) for f in logger.filters)
    assert kafka.producer_config("b:9092")["logger"] is logger
    assert kafka.consumer_config("b:9092", "g")["logger"] is logger
    assert kafka.client_logging("lag") == {"logger": logger, "client.id": "lag"}

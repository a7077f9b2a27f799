"""Kafka client rules on plain values: readiness needs consecutive failures; librdkafka's lines are
rate-limited per kind and every client factory routes them through Maple's logging."""

from __future__ import annotations

import logging
import time

from maple import kafka
from maple.log import RateLimit
from maple.producer import UNREADY_AFTER_FAILURES, Readiness


def test_one_failed_metadata_check_does_not_make_the_producer_unready() -> None:
    readiness = Readiness()
    assert readiness.observe(True) is True
    assert [readiness.observe(False) for _ in range(UNREADY_AFTER_FAILURES - 1)] == [None] * (UNREADY_AFTER_FAILURES - 1)
    assert readiness.observe(True) is True  # one of three brokers down for a moment: never unready
    verdicts = [readiness.observe(False) for _ in range(UNREADY_AFTER_FAILURES)]
    assert verdicts[-1] is False and set(verdicts[:-1]) == {None}
    assert readiness.observe(False) is False and readiness.observe(True) is True


def _record(message: str, *args: object, name: str = "maple.kafka.producer") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, args, None)


def test_librdkafka_lines_pass_a_few_per_window_and_then_say_how_many_were_held_back() -> None:
    limit = RateLimit(burst=5, window_s=0.2)
    connect = "127.0.0.1:{}/bootstrap: Connect to ipv4#127.0.0.1:{} failed: Connection refused"
    passed = [limit.filter(_record("%s [%s] %s", "FAIL", "rdkafka#producer-1", connect.format(p, p)))
              for p in (9092, 9093) * 100]  # an outage's worth: 200 lines at once
    assert passed.count(True) == 5
    time.sleep(0.25)  # the next window
    record = _record("%s [%s] %s", "FAIL", "rdkafka#producer-1", connect.format(9092, 9092))
    assert limit.filter(record) and "(195 similar lines suppressed" in record.getMessage()


def test_every_client_factory_hands_librdkafka_lines_to_a_rate_limited_logger() -> None:
    for config in (kafka.producer_config("b:9092"), kafka.consumer_config("b:9092", "g"), kafka.client_logging("x")):
        logger = config["logger"]
        assert logger.name.startswith("maple.kafka.") and any(isinstance(f, RateLimit) for f in logger.filters)

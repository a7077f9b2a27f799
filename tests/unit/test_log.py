"""One log format for Maple and the libraries in its processes, at Maple's level."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from maple.log import LINE_PATTERN, kafka_client_logger, setup_logging


class Stderr:
    """What Maple's handler wrote; it binds sys.stderr when set up, which pytest captures during the test."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys, self.text = capsys, ""

    def getvalue(self) -> str:
        self.text += self.capsys.readouterr().err
        return self.text


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Stderr]:
    yield Stderr(capsys)
    setup_logging("test", "warning")  # leave no handler on a captured stream


def test_library_lines_come_in_maples_format_and_their_info_chatter_only_at_debug(stderr: Stderr) -> None:
    setup_logging("worker", "info")
    logging.getLogger("faust.transport.consumer").info("[^--Consumer]: Starting...")
    logging.getLogger("mode.services").warning("a warning from mode")
    logging.getLogger("aiokafka.consumer.group_coordinator").info("Joined group")
    logging.getLogger("maple.producer").info("Kafka at k:9092 is reachable")
    lines = stderr.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["a warning from mode", "Kafka at k:9092 is reachable"]
    assert all(re.match(LINE_PATTERN, line) for line in lines) and "[worker] mode.services: " in lines[0]
    setup_logging("worker", "debug")
    logging.getLogger("faust.transport.consumer").info("[^--Consumer]: Starting...")
    assert stderr.getvalue().splitlines()[-1].endswith("faust.transport.consumer: [^--Consumer]: Starting...")


def test_librdkafka_lines_are_rate_limited_and_say_how_many_were_dropped(stderr: Stderr,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    setup_logging("sink", "info")
    now = [1000.0]
    monkeypatch.setattr("maple.log.time.monotonic", lambda: now[0])
    logger = kafka_client_logger("consumer")
    for _ in range(25):  # as confluent-kafka calls it: logger.log(level, "%s [%s] %s", facility, name, message)
        logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect to 127.0.0.1:1 failed")
    logger.log(logging.INFO, "%s [%s] %s", "BGQUEUE", "rdkafka#consumer-1", "Purging 1 unserved events")
    now[0] += 11
    logger.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", "Connect to 127.0.0.1:1 failed")
    lines = stderr.getvalue().splitlines()
    # The INFO notice is below the libraries' level at Maple's info; errors come through, rate-limited.
    assert len(lines) == 6 and all("ERROR   [sink] maple.kafka.consumer: FAIL [rdkafka#consumer-1]" in line
                                   for line in lines)
    assert lines[-1].endswith("(20 similar lines suppressed in the last 10s)")

"""`maple lag`'s summary line per group, from partition rows: messages, the oldest age, OK or behind."""

from __future__ import annotations

from maple.lag import PartitionLag, summarize


def _row(topic: str, partition: int, lag: int, seconds: float | None, ticks: int = 0) -> PartitionLag:
    return PartitionLag("g", topic, partition, 10, 0, 10 + lag + ticks, lag, seconds, ticks)


def test_idle_is_ok_at_zero_even_with_ticks_waiting() -> None:
    summary = summarize("g", [_row("otel.spans", 0, 0, 0.0, ticks=4), _row("otlp.logs.raw", 0, 0, 0.0)], 30)
    assert (summary.messages, summary.seconds, summary.status, summary.ticks) == (0, 0.0, "OK", 4)
    assert summary.topics == ("otel.spans", "otlp.logs.raw")


def test_records_in_flight_are_ok_and_old_ones_are_behind() -> None:
    rows = [_row("otel.logs", 0, 3, 1.5), _row("otel.logs", 1, 2, 0.4)]
    assert (summarize("g", rows, 30).messages, summarize("g", rows, 30).seconds) == (5, 1.5)
    assert summarize("g", rows, 30).status == "OK"
    assert summarize("g", rows + [_row("otel.metrics", 0, 1, 45.0)], 30).status == "behind"


def test_an_age_that_could_not_be_read_is_unknown_unless_another_is_already_behind() -> None:
    assert summarize("g", [_row("otel.logs", 0, 3, None), _row("otel.logs", 1, 1, 2.0)], 30).status == "unknown"
    assert summarize("g", [_row("otel.logs", 0, 3, None), _row("otel.logs", 1, 1, 99.0)], 30).status == "behind"
    assert summarize("other", [_row("otel.logs", 0, 3, 1.0)], 30).messages == 0  # only its own rows

"""The sink's flush limits per topic: sampled spans (decided traces someone may be waiting for) are inserted
sooner than the bulk topics, and each interval is its own setting."""

from __future__ import annotations

from maple.settings import load_settings
from maple.topics import LOGS, METRICS, SPANS_SAMPLED
from sinks.batch import PartitionBatch
from sinks.runner import SINK_TOPICS, batch_limits

TOPICS = [t.name for t in SINK_TOPICS]


def test_sampled_spans_flush_sooner_than_the_bulk_topics() -> None:
    limits = batch_limits(load_settings(environ={}).sink, TOPICS)
    assert limits[SPANS_SAMPLED.name].interval_s == 0.25
    assert limits[LOGS.name].interval_s == limits[METRICS.name].interval_s == 1.0
    assert limits[SPANS_SAMPLED.name].rows == limits[LOGS.name].rows  # only the wait differs


def test_each_interval_is_its_own_setting() -> None:
    settings = load_settings(environ={"MAPLE_SINK_SAMPLED_FLUSH_INTERVAL_S": "0.1", "MAPLE_SINK_FLUSH_INTERVAL_S": "3"})
    limits = batch_limits(settings.sink, TOPICS)
    assert (limits[SPANS_SAMPLED.name].interval_s, limits[LOGS.name].interval_s) == (0.1, 3.0)


def test_a_batch_opened_half_a_second_ago_is_due_only_on_the_sampled_topic() -> None:
    limits = batch_limits(load_settings(environ={}).sink, TOPICS)
    for topic, due in ((SPANS_SAMPLED.name, True), (LOGS.name, False)):
        batch = PartitionBatch(topic, 0, -1, {}, None)
        batch.skip(7, now=100.0)  # a message taken at t = 100 s opens the batch
        assert batch.ready(100.5, limits[topic]) is due

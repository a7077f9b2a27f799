"""The broker dies and comes back, again and again, under load: the worker process rides it out.

librdkafka aborts the process (`rd_kafka_enq_once_del_source_return: Assertion 'eonce->refcnt > 0'`) when a
coordinator request of its Admin API loses its connection; a worker that measured its lag through a fresh
AdminClient per measurement died on most broker restarts. The worker must survive them all in the same
process, and keep processing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from apps import localkafka
from maple import kafka
from maple.net import free_port
from maple.topics import DEAD_LETTER, LOGS, RAW_LOGS
from tests.helpers.environment import local_kafka_settings
from tests.helpers.ingest import numbered_log_request
from tests.helpers.stages import Stage

CYCLES = 10


class Load(threading.Thread):
    """Raw log requests straight into the raw topic, about 20 per second, through every outage."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.producer = Producer(kafka.producer_config(bootstrap, **{"message.timeout.ms": 600_000, "log_level": 0}))
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.halt.is_set():
            self.producer.produce(RAW_LOGS.name, value=numbered_log_request("restarts", self.sent, 20))
            self.producer.poll(0)
            self.sent += 1
            time.sleep(0.05)

    def finish(self) -> None:
        self.halt.set()
        self.join(10)
        assert self.producer.flush(120) == 0, "the load's records were not all acknowledged"


def _progress(bootstrap: str, group: str) -> tuple[int, int]:
    """(raw records the group has committed, raw records not committed yet)."""
    consumer = Consumer(kafka.consumer_config(bootstrap, group))
    try:
        partitions = consumer.list_topics(RAW_LOGS.name, timeout=10).topics[RAW_LOGS.name].partitions
        tps = [TopicPartition(RAW_LOGS.name, p) for p in partitions]
        committed = {tp.partition: max(tp.offset, 0) for tp in consumer.committed(tps, timeout=10)}
        ends = {p: consumer.get_watermark_offsets(TopicPartition(RAW_LOGS.name, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()
    return sum(committed.values()), sum(end - committed.get(p, 0) for p, end in ends.items())


def test_worker_survives_ten_broker_kill_9_and_restarts_in_the_same_process(tmp_path: Path) -> None:
    settings = local_kafka_settings(tmp_path)
    bootstrap = localkafka.start(settings)
    kafka.ensure_topics(kafka.admin_client(bootstrap), 2, 1, [RAW_LOGS, LOGS, DEAD_LETTER])
    group = "restarts-worker"
    # A metrics port turns the lag timer on; measuring every second puts a measurement in every outage.
    worker = Stage(["worker"], {"MAPLE_KAFKA_BOOTSTRAP": bootstrap, "MAPLE_KAFKA_PARTITIONS": "2",
                                "MAPLE_WORKER_GROUP": group, "MAPLE_WORKER_SIGNALS": "logs",
                                "MAPLE_WORKER_METRICS_PORT": str(free_port()), "MAPLE_WORKER_LAG_INTERVAL_S": "1"})
    load = Load(bootstrap)
    try:
        worker.start()
        assert worker.proc is not None
        pid = worker.proc.pid
        load.start()
        deadline = time.monotonic() + 90
        while _progress(bootstrap, group)[0] < 20:
            assert worker.alive and time.monotonic() < deadline, f"the worker never got going:\n{worker.output()}"
            time.sleep(1)
        for cycle in range(1, CYCLES + 1):
            assert localkafka.kill(settings) == [1]
            time.sleep(4)  # lag measurements (and everything else) run into the dead broker
            assert worker.alive, f"the worker died while the broker was down (cycle {cycle}):\n{worker.output()}"
            localkafka.start(settings)
            time.sleep(4)
            assert worker.alive, f"the worker died after the broker came back (cycle {cycle}):\n{worker.output()}"
        load.finish()
        deadline = time.monotonic() + 180
        while (left := _progress(bootstrap, group)[1]) > 0:
            assert worker.alive, f"the worker died catching up:\n{worker.output()}"
            assert time.monotonic() < deadline, f"{left} raw records still unprocessed:\n{worker.output()}"
            time.sleep(1)
        assert worker.alive and worker.proc.pid == pid
    finally:
        load.halt.set()
        worker.stop()
        localkafka.stop(settings)

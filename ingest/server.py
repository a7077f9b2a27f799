"""`maple ingest`: run the OTLP/gRPC and OTLP/HTTP receivers in one event loop until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from aiohttp import web

from ingest import grpc as grpc_receiver
from ingest import http as http_receiver
from ingest.decoding import Decoder
from ingest.metrics import IngestMetrics
from ingest.otlp import SIGNALS
from ingest.service import IngestService
from maple import kafka as kafka_clients
from maple.exits import stop_for_safety
from maple.producer import AsyncProducer
from maple.settings import Settings, api_key_tenants

log = logging.getLogger(__name__)


class IngestStartupError(RuntimeError):
    pass


def _exit_on_fatal(err: object) -> None:
    """A fatal producer error cannot be recovered in place: exit so that the supervisor (maple up, or the
    orchestrator) starts a fresh ingest. Requests in flight get no answer and are retried by clients."""
    stop_for_safety(f"the Kafka producer failed for good ({err}); exiting to be restarted")


async def serve(settings: Settings, stop: threading.Event | None = None) -> None:
    cfg = settings.ingest
    bootstrap = kafka_clients.bootstrap_servers(settings)
    metrics = IngestMetrics()
    writer = AsyncProducer(bootstrap, cfg.kafka_timeout_s, on_ready_change=lambda ok: metrics.kafka_ready.set(int(ok)),
                           on_fatal=_exit_on_fatal)
    loop = asyncio.get_running_loop()
    writer.start(loop)
    if not await loop.run_in_executor(None, writer.wait_ready, settings.kafka.start_timeout_s):
        writer.close(0)
        raise IngestStartupError(f"Kafka at {bootstrap} is not reachable; the ingest cannot start without it")
    topics = [s.topic.name for s in SIGNALS.values()]
    await loop.run_in_executor(None, kafka_clients.create_topics, settings)
    max_value = await loop.run_in_executor(None, writer.max_value_bytes, topics)
    if cfg.max_record_bytes:
        max_value = min(max_value, cfg.max_record_bytes)
    decoder = Decoder(max_value, processes=cfg.parse_processes, memory_bytes=cfg.parse_memory_bytes,
                      inline_bytes=cfg.parse_inline_bytes)
    decoder.start()
    service = IngestService(writer, metrics, decoder, max_request_bytes=cfg.max_request_bytes,
                            max_inflight_bytes=cfg.max_inflight_bytes, api_keys=api_key_tenants(settings),
                            api_key_header=cfg.api_key_header)

    runner = web.AppRunner(http_receiver.build_app(service, cfg.retry_after_s), access_log=None,
                           auto_decompress=False, shutdown_timeout=cfg.kafka_timeout_s + 5)
    await runner.setup()
    grpc_server = grpc_receiver.build_server(service, cfg.max_request_bytes, cfg.retry_after_s)
    try:
        await web.TCPSite(runner, cfg.host, cfg.http_port, reuse_address=True).start()
        grpc_server.add_insecure_port(f"{cfg.host}:{cfg.grpc_port}")
        await grpc_server.start()
    except (OSError, RuntimeError) as exc:
        await runner.cleanup()
        decoder.stop()
        writer.close(0)
        raise IngestStartupError(f"cannot listen on {cfg.host}:{cfg.http_port}/{cfg.grpc_port}: {exc}") from exc
    log.info("OTLP ingest: gRPC %s:%d, HTTP %s:%d -> Kafka %s (records up to %d bytes, auth %s)",
             cfg.host, cfg.grpc_port, cfg.host, cfg.http_port, bootstrap, max_value,
             "on" if service.api_keys else "off")

    done = asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
    while not done.is_set() and not (stop is not None and stop.is_set()):
        try:
            await asyncio.wait_for(done.wait(), timeout=0.2)
        except TimeoutError:
            pass

    log.info("OTLP ingest stopping: finishing in-flight requests")
    await grpc_server.stop(grace=cfg.kafka_timeout_s)
    await runner.cleanup()
    decoder.stop()
    unacked = await loop.run_in_executor(None, writer.close, cfg.kafka_timeout_s)
    if unacked:
        log.warning("%d record(s) were still unacknowledged by Kafka at shutdown; their clients were told 503",
                    unacked)
    log.info("OTLP ingest stopped")


def run(settings: Settings) -> None:
    asyncio.run(serve(settings))

"""The local broker's other secured modes, each reached by both client libraries Maple runs: confluent-kafka
(through Maple's factories) and aiokafka (with the credentials Faust is given). The SASL_SSL + SCRAM mode is
covered by the whole pipeline in test_tls_pipeline.py.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from apps import localkafka
from maple import kafka
from maple.net import free_port
from maple.settings import Settings, load_settings
from maple.topics import Topic
from tests.helpers.certs import PKI

MODES = {
    # TLS only, the broker requiring client certificates: the certificate is the only credential.
    "ssl-client-certificates": {"MAPLE_KAFKA_SECURITY_PROTOCOL": "ssl"},
    # SASL PLAIN without TLS: the user from the JAAS line Maple writes.
    "sasl-plain": {"MAPLE_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext", "MAPLE_KAFKA_SECURITY_SASL_MECHANISM": "plain",
                   "MAPLE_KAFKA_SECURITY_SASL_USERNAME": "maple", "MAPLE_KAFKA_SECURITY_SASL_PASSWORD": "plain-pw"},
}


def _settings(mode: str, pki: PKI, root: Path, port: int, controller: int) -> tuple[Settings, dict[str, str]]:
    client = dict(MODES[mode])
    broker = {"MAPLE_DATA_DIR": str(root), "MAPLE_KAFKA_PORT": str(port), "MAPLE_KAFKA_CONTROLLER_PORT": str(controller),
              "MAPLE_KAFKA_HEAP": "384m"}
    if mode == "ssl-client-certificates":
        client.update({"MAPLE_KAFKA_SECURITY_CA_FILE": str(pki.server_ca.cert),
                       "MAPLE_KAFKA_SECURITY_CERT_FILE": str(pki.client.cert),
                       "MAPLE_KAFKA_SECURITY_KEY_FILE": str(pki.client.key)})
        broker.update({"MAPLE_KAFKA_LOCAL_CERT_FILE": str(pki.server.cert),
                       "MAPLE_KAFKA_LOCAL_KEY_FILE": str(pki.server.key),
                       "MAPLE_KAFKA_LOCAL_CLIENT_CA_FILE": str(pki.client_ca.cert)})
    return load_settings(environ={**client, **broker}), {**client, "MAPLE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"}


async def _aiokafka_round_trip(settings: Settings, topic: str) -> bytes:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = dict(credentials_to_aiokafka_auth(kafka.faust_credentials(settings)))
    servers = str(kafka.bootstrap_servers(settings))
    producer = AIOKafkaProducer(bootstrap_servers=servers, **auth)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"through aiokafka")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                                group_id=f"tls-{uuid.uuid4().hex[:6]}", **auth)
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), 30)
        return message.value or b""
    finally:
        await consumer.stop()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_local_broker_mode_serves_both_client_libraries(mode: str, tmp_path: Path) -> None:
    pki = PKI.create(tmp_path / "pki")
    broker, client_env = _settings(mode, pki, tmp_path / "data", free_port(), free_port())
    localkafka.start(broker)
    try:
        settings = load_settings(environ=client_env)
        bootstrap = kafka.bootstrap_servers(settings)
        kafka.probe(bootstrap, timeout=30)  # confluent-kafka: admin, producer and consumer
        topic = f"tls.{uuid.uuid4().hex[:8]}"
        kafka.ensure_topics(kafka.admin_client(bootstrap), 1, 1, [Topic(topic, "test", "test", "")])
        assert asyncio.run(_aiokafka_round_trip(settings, topic)) == b"through aiokafka"
        with pytest.raises(RuntimeError):  # the same cluster without the settings
            kafka.probe(kafka.Bootstrap(str(bootstrap)), timeout=5)
        if mode == "ssl-client-certificates":  # a client certificate from another CA is refused
            foreign = load_settings(environ={**client_env,
                                             "MAPLE_KAFKA_SECURITY_CERT_FILE": str(pki.foreign_client.cert),
                                             "MAPLE_KAFKA_SECURITY_KEY_FILE": str(pki.foreign_client.key)})
            with pytest.raises(RuntimeError):
                kafka.probe(kafka.bootstrap_servers(foreign), timeout=10)
        else:  # a wrong password is refused
            wrong = load_settings(environ={**client_env, "MAPLE_KAFKA_SECURITY_SASL_PASSWORD": "wrong"})
            with pytest.raises(RuntimeError):
                kafka.probe(kafka.bootstrap_servers(wrong), timeout=10)
    finally:
        localkafka.stop(broker)

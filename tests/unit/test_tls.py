"""TLS settings and server certificates: contradictions stop start-up naming the key, secrets stay masked,
and a reload takes new files only when they changed and can be used."""

from __future__ import annotations

import dataclasses
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from maple import tls
from maple.settings import ServerTLSSettings, SettingsError, as_yaml, describe, load_settings
from tests.helpers.certs import PKI, Pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI.create(tmp_path_factory.mktemp("pki"))


def test_every_setting_has_its_own_environment_variable() -> None:
    names = [row["env"] for row in describe(load_settings(environ={}), environ={})]
    assert len(names) == len(set(names))
    assert {"MAPLE_INGEST_TLS_CERT_FILE", "MAPLE_INGEST_TLS_CLIENT_CA_FILE", "MAPLE_INGEST_TLS_MIN_VERSION",
            "MAPLE_KAFKA_SECURITY_PROTOCOL", "MAPLE_KAFKA_SECURITY_SASL_PASSWORD_FILE",
            "MAPLE_CLICKHOUSE_TLS_CA_FILE", "MAPLE_KAFKA_LOCAL_CERT_FILE", "MAPLE_CLICKHOUSE_HOST_TLS_CERT_FILE",
            "MAPLE_API_TLS_CERT_FILE", "MAPLE_API_TLS_CLIENT_CA_FILE"} <= set(names)


def test_tls_settings_from_yaml(tmp_path: Path) -> None:
    config = tmp_path / "maple.yaml"
    config.write_text("ingest_tls:\n  cert_file: /etc/maple/ingest.pem\n  key_file: /etc/maple/ingest-key.pem\n"
                      "  client_ca_file: /etc/maple/clients.pem\n  min_version: '1.3'\n  reload_interval_s: 60\n"
                      "kafka_security:\n  protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-512\n  sasl_username: maple\n"
                      "  sasl_password_file: /run/secrets/kafka\n"
                      "clickhouse:\n  url: https://writer@ch:8443/otel\n"
                      "clickhouse_tls:\n  ca_file: /etc/maple/ch-ca.pem\n")
    settings = load_settings(config, environ={})
    assert settings.ingest_tls.min_version == "1.3" and settings.ingest_tls.reload_interval_s == 60
    assert settings.kafka_security.protocol == "sasl_ssl" and settings.kafka_security.sasl_mechanism == "scram-sha-512"
    assert settings.clickhouse_tls.ca_file == "/etc/maple/ch-ca.pem"


@pytest.mark.parametrize(("environ", "message"), [
    ({"MAPLE_INGEST_TLS_CERT_FILE": "c.pem"}, r"ingest_tls.key_file \(MAPLE_INGEST_TLS_KEY_FILE\)"),
    ({"MAPLE_INGEST_TLS_KEY_FILE": "k.pem"}, r"ingest_tls.cert_file \(MAPLE_INGEST_TLS_CERT_FILE\)"),
    ({"MAPLE_INGEST_TLS_CLIENT_CA_FILE": "ca.pem"}, r"ingest_tls.client_ca_file .*mutual TLS needs TLS"),
    ({"MAPLE_INGEST_TLS_MIN_VERSION": "1.1"}, r"ingest_tls.min_version .*expected one of 1.2, 1.3"),
    ({"MAPLE_API_TLS_CERT_FILE": "c.pem"}, r"api_tls.key_file \(MAPLE_API_TLS_KEY_FILE\)"),
    ({"MAPLE_CLICKHOUSE_HOST_TLS_CLIENT_CA_FILE": "ca.pem"}, r"clickhouse_host_tls.client_ca_file .*mutual TLS"),
    ({"MAPLE_KAFKA_SECURITY_PROTOCOL": "tls"}, r"kafka_security.protocol .*plaintext, ssl, sasl_plaintext, sasl_ssl"),
    ({"MAPLE_KAFKA_SECURITY_CA_FILE": "ca.pem"}, r"kafka_security.ca_file .*protocol is plaintext"),
    ({"MAPLE_KAFKA_SECURITY_SASL_USERNAME": "u"}, r"kafka_security.sasl_username .*protocol is plaintext"),
    ({"MAPLE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl"}, r"kafka_security.sasl_username .*needs a user name"),
    ({"MAPLE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "MAPLE_KAFKA_SECURITY_SASL_USERNAME": "u"},
     r"kafka_security.sasl_password .*exactly one of"),
    ({"MAPLE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "MAPLE_KAFKA_SECURITY_SASL_USERNAME": "u",
      "MAPLE_KAFKA_SECURITY_SASL_PASSWORD": "p", "MAPLE_KAFKA_SECURITY_SASL_PASSWORD_FILE": "f"},
     r"kafka_security.sasl_password .*exactly one of"),
    ({"MAPLE_KAFKA_SECURITY_PROTOCOL": "ssl", "MAPLE_KAFKA_SECURITY_CERT_FILE": "c.pem"}, r"kafka_security.key_file"),
    ({"MAPLE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "MAPLE_KAFKA_SECURITY_SASL_USERNAME": "u",
      "MAPLE_KAFKA_SECURITY_SASL_PASSWORD": "p", "MAPLE_KAFKA_SECURITY_SASL_MECHANISM": "GSSAPI"},
     r"kafka_security.sasl_mechanism .*plain, scram-sha-256, scram-sha-512"),
    ({"MAPLE_CLICKHOUSE_URL": "http://ch:8123", "MAPLE_CLICKHOUSE_TLS_CA_FILE": "ca.pem"},
     r"clickhouse_tls.ca_file .*http://ch:8123 is not an https:// URL"),
    ({"MAPLE_CLICKHOUSE_TLS_CERT_FILE": "c.pem"}, r"clickhouse_tls.key_file"),
])
def test_contradictory_tls_settings_stop_start_up_naming_the_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=environ)


def test_secrets_are_masked_whole_in_config_show() -> None:
    password = "pa=ss://word@x"
    environ = {"MAPLE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "MAPLE_KAFKA_SECURITY_SASL_USERNAME": "maple",
               "MAPLE_KAFKA_SECURITY_SASL_PASSWORD": password, "MAPLE_INGEST_API_KEYS": "k3y=team-a",
               "MAPLE_CLICKHOUSE_URL": "https://w:chpass@ch:8443/otel"}
    settings = load_settings(environ=environ)
    rows = {row["key"]: row["value"] for row in describe(settings, environ)}
    assert rows["kafka_security.sasl_password"] == "****"
    assert rows["ingest.api_keys"] == ["****=team-a"]
    assert rows["clickhouse.url"] == ["https://w:****@ch:8443/otel"]
    shown = as_yaml(settings, environ) + json.dumps(describe(settings, environ))
    for secret in ("pa=ss", "word@x", "k3y", "chpass"):
        assert secret not in shown


# -- server certificates --------------------------------------------------------------------------------


def _server(pair: Pair, client_ca: Path | None = None, **fields: object) -> ServerTLSSettings:
    return dataclasses.replace(ServerTLSSettings(cert_file=str(pair.cert), key_file=str(pair.key),
                                                 client_ca_file=str(client_ca) if client_ca else ""), **fields)


def test_server_context_follows_the_settings(pki: PKI) -> None:
    server = tls.ServerTLS(_server(pki.server, pki.client_ca.cert, min_version="1.3"))
    assert server.mutual
    context = server.http_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert server.current.client_ca == pki.client_ca.cert.read_bytes()
    plain = tls.ServerTLS(_server(pki.server)).http_context()
    assert plain.verify_mode == ssl.CERT_NONE and plain.minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_key_that_does_not_match_stops_start_up(pki: PKI, tmp_path: Path) -> None:
    mixed = Pair(pki.server.cert, pki.client.key)
    with pytest.raises(SettingsError, match=r"ingest_tls.key_file \(MAPLE_INGEST_TLS_KEY_FILE\): the certificate and "
                                            "key cannot be used together"):
        tls.ServerTLS(_server(mixed))
    with pytest.raises(SettingsError, match=r"cannot read ingest_tls.cert_file"):
        tls.ServerTLS(_server(Pair(tmp_path / "none.pem", pki.server.key)))


def test_reload_takes_changed_usable_files_only(pki: PKI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live = Pair(tmp_path / "live.pem", tmp_path / "live-key.pem")
    pki.server.copy_to(live)
    server = tls.ServerTLS(_server(live))
    first = server.current
    assert not server.reload() and server.current is first  # unchanged files: nothing new
    rotated = pki.server_ca.issue("rotated")
    live.cert.write_bytes(rotated.cert.read_bytes())  # half a rotation: the key is still the old one
    assert not server.reload() and server.current is first
    assert "still serving the previous certificate" in caplog.text
    live.key.write_bytes(rotated.key.read_bytes())
    assert server.reload()
    assert server.current.generation == first.generation + 1
    assert server.current.cert_chain == rotated.cert.read_bytes()
    assert not server.reload()
    live.cert.unlink()  # a file missing for a moment: keep serving
    assert not server.reload() and server.current.cert_chain == rotated.cert.read_bytes()


def test_negotiated_versions_against_the_minimum() -> None:
    assert tls.version_allowed("TLSv1.3", "1.3") and tls.version_allowed("TLSv1.3", "1.2")
    assert tls.version_allowed("TLSv1.2", "1.2") and not tls.version_allowed("TLSv1.2", "1.3")
    assert not tls.version_allowed("", "1.2") and not tls.version_allowed("SSLv3", "1.2")


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> ssl.SSLObject:
    """A TLS handshake between two contexts in memory (no sockets); returns the server's side."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname=name)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for side, obj in (("client", client_side), ("server", server_side)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            client_side.write(b"x")  # TLS 1.3: the server checks the client's certificate on its first read
            s_in.write(c_out.read())
            assert server_side.read(1) == b"x"
            return server_side
    raise AssertionError("handshake did not finish")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the documented recipe uses the openssl command")
def test_the_documented_test_certificate_recipe_makes_a_working_mutual_tls_setup(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "apps" / "resources" / "test-certs.sh"
    subprocess.run(["bash", str(script), str(tmp_path), "127.0.0.1", "ingest.example"], check=True,
                   capture_output=True)
    for name in ("server-key.pem", "client-key.pem"):
        assert (tmp_path / name).read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka needs
        assert (tmp_path / name).stat().st_mode & 0o077 == 0
    server = tls.ServerTLS(_server(Pair(tmp_path / "server.pem", tmp_path / "server-key.pem"), tmp_path / "ca.pem"))
    for host in ("127.0.0.1", "ingest.example"):
        client = tls.client_context("test", ca_file=str(tmp_path / "ca.pem"), cert_file=str(tmp_path / "client.pem"),
                                    key_file=str(tmp_path / "client-key.pem"), insecure_skip_verify=False)
        accepted = _handshake(server.http_context(), client, host)
        assert dict(x[0] for x in accepted.getpeercert()["subject"])["commonName"] == "maple-client"


@pytest.mark.parametrize(("scheme", "expected"), [
    ("https", ["session=abc; Path=/; HttpOnly; Secure", "pref=dark; Secure"]),
    ("http", ["session=abc; Path=/; HttpOnly", "pref=dark; Secure"]),
])
def test_query_service_cookies_are_secure_over_tls(scheme: str, expected: list[str]) -> None:
    """Over TLS every cookie the API sets is marked Secure (once); over plain HTTP they are left alone."""
    import asyncio

    from query.app import SecureCookies

    async def app(scope: object, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [  # type: ignore[operator]
            (b"set-cookie", b"session=abc; Path=/; HttpOnly"), (b"set-cookie", b"pref=dark; Secure"),
            (b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def receive() -> dict[str, object]:
        return {"type": "http.request"}

    asyncio.run(SecureCookies(app)({"type": "http", "scheme": scheme}, receive, send))  # type: ignore[arg-type]
    headers = sent[0]["headers"]
    assert [v.decode() for k, v in headers if k == b"set-cookie"] == expected  # type: ignore[attr-defined]
    assert (b"content-type", b"text/plain") in headers  # type: ignore[operator]

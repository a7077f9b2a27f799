"""Every Kafka and ClickHouse client Maple builds connects with the link's security settings: read from the
source, so a client built any other way fails here before it fails against a secured cluster.

The rules: a confluent-kafka Consumer, Producer or AdminClient is built only from `consumer_config`,
`producer_config` or `admin_config` (each merges the cluster's security settings); a Faust app is given
`broker_credentials`; nothing uses aiokafka directly; the bootstrap list is taken from
`bootstrap_servers(settings)` (which carries the security), never from the raw setting; and a clickhouse-connect
client over the network is made only in maple/clickhouse.py (which adds clickhouse_tls.*).
"""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest

from maple import kafka
from maple.kafka import Bootstrap
from maple.settings import SettingsError, load_settings
from tests.helpers.certs import PKI
from tests.helpers.environment import REPO

PACKAGES = ("maple", "ingest", "processors", "topologies", "sinks", "ops", "apps", "query")
FACTORY = {"Consumer": "consumer_config", "Producer": "producer_config", "AdminClient": "admin_config"}
RAW_BOOTSTRAP_ALLOWED = {"maple/kafka.py", "maple/settings.py", "apps/cli.py"}  # cli: only in a message


def _sources() -> list[Path]:
    return [path for package in PACKAGES if (REPO / package).is_dir()
            for path in sorted((REPO / package).rglob("*.py"))]


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _confluent_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> confluent-kafka class, for the client classes a module imports."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka"):
            for alias in node.names:
                if alias.name in FACTORY:
                    names[alias.asname or alias.name] = alias.name
    return names


def test_every_confluent_client_is_built_from_a_factory_config() -> None:
    wrong: list[str] = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        imported = _confluent_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            cls = imported.get(func.id) if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute) and func.attr in FACTORY
                and _name(func.value) == "confluent_kafka" else None)
            if cls is None:
                continue
            arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
            if not (isinstance(arg, ast.Call) and _name(arg.func) == FACTORY[cls]):
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno}: {cls}(...) not built from {FACTORY[cls]}()")
    assert not wrong, "\n".join(wrong)


def test_faust_apps_get_the_broker_credentials_and_nothing_uses_aiokafka_directly() -> None:
    wrong: list[str] = []
    apps = 0
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(m.split(".")[0] == "aiokafka" for m in modules):
                    wrong.append(f"{path.relative_to(REPO)}:{node.lineno}: imports aiokafka (use Faust's app)")
            if isinstance(node, ast.Call) and _name(node.func) == "App" and _name(getattr(node.func, "value", node)) \
                    == "faust":
                apps += 1
                if "broker_credentials" not in {k.arg for k in node.keywords}:
                    wrong.append(f"{path.relative_to(REPO)}:{node.lineno}: faust.App without broker_credentials")
    assert apps >= 1  # the rule is looking at the real thing
    assert not wrong, "\n".join(wrong)


def test_the_raw_bootstrap_setting_is_read_only_where_security_is_added() -> None:
    wrong: list[str] = []
    for path in _sources():
        relative = str(path.relative_to(REPO))
        if relative in RAW_BOOTSTRAP_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "bootstrap" and _name(node.value) == "kafka":
                wrong.append(f"{relative}:{node.lineno}: reads kafka.bootstrap; use kafka.bootstrap_servers(settings)")
    assert not wrong, "\n".join(wrong)


def test_network_clickhouse_clients_come_from_the_one_factory() -> None:
    wrong: list[str] = []
    for path in _sources():
        relative = str(path.relative_to(REPO))
        if relative == "maple/clickhouse.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and _name(node.func) in ("get_client", "get_async_client", "create_client"):
                interface = {k.arg: k.value for k in node.keywords}.get("interface")
                if not (isinstance(interface, ast.Constant) and interface.value == "chdb"):  # in-process: no link
                    wrong.append(f"{relative}:{node.lineno}: a ClickHouse client outside maple/clickhouse.py")
    assert not wrong, "\n".join(wrong)


# -- what the factories and helpers produce -------------------------------------------------------------


SECURED = Bootstrap("b1:9093,b2:9093", {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                         "sasl.username": "maple", "sasl.password": "pw"})


@pytest.mark.parametrize("config", [
    lambda b: kafka.producer_config(b), lambda b: kafka.consumer_config(b, "g"), lambda b: kafka.admin_config(b)])
def test_each_factory_merges_the_clusters_security(config: object) -> None:
    built = config(SECURED)  # type: ignore[operator]
    assert built["security.protocol"] == "SASL_SSL" and built["sasl.password"] == "pw"
    assert built["bootstrap.servers"] == "b1:9093,b2:9093" and type(built["bootstrap.servers"]) is str
    assert "security.protocol" not in config(Bootstrap("b1:9092"))  # type: ignore[operator]


def test_the_bootstrap_prints_without_its_secrets() -> None:
    assert str(SECURED) == "b1:9093,b2:9093" and "pw" not in repr(SECURED) and f"{SECURED}" == "b1:9093,b2:9093"


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"MAPLE_KAFKA_BOOTSTRAP": "kafka:9093", **values}


def test_sasl_ssl_settings_become_librdkafka_settings(tmp_path: Path) -> None:
    pki = PKI.create(tmp_path)
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    settings = load_settings(environ=_env(
        tmp_path, MAPLE_KAFKA_SECURITY_PROTOCOL="SASL_SSL", MAPLE_KAFKA_SECURITY_CA_FILE=str(pki.server_ca.cert),
        MAPLE_KAFKA_SECURITY_CERT_FILE=str(pki.client.cert), MAPLE_KAFKA_SECURITY_KEY_FILE=str(pki.client.key),
        MAPLE_KAFKA_SECURITY_SASL_MECHANISM="SCRAM-SHA-256", MAPLE_KAFKA_SECURITY_SASL_USERNAME="maple",
        MAPLE_KAFKA_SECURITY_SASL_PASSWORD_FILE=str(secret)))
    bootstrap = kafka.bootstrap_servers(settings)
    assert str(bootstrap) == "kafka:9093"
    assert kafka.security_config(bootstrap) == {
        "security.protocol": "SASL_SSL", "ssl.ca.location": str(pki.server_ca.cert),
        "ssl.certificate.location": str(pki.client.cert), "ssl.key.location": str(pki.client.key),
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "maple", "sasl.password": "from-a-file"}
    credentials = kafka.faust_credentials(settings)
    assert type(credentials).__name__ == "SASLCredentials"
    assert credentials.mechanism.value == "SCRAM-SHA-256" and credentials.password == "from-a-file"  # type: ignore[union-attr]
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED  # type: ignore[union-attr]
    assert credentials.ssl_context.check_hostname  # type: ignore[union-attr]


def test_ssl_without_sasl_and_plaintext(tmp_path: Path) -> None:
    pki = PKI.create(tmp_path)
    settings = load_settings(environ=_env(tmp_path, MAPLE_KAFKA_SECURITY_PROTOCOL="ssl",
                                          MAPLE_KAFKA_SECURITY_CA_FILE=str(pki.server_ca.cert)))
    assert kafka.security_config(kafka.bootstrap_servers(settings))["security.protocol"] == "SSL"
    assert type(kafka.faust_credentials(settings)).__name__ == "SSLCredentials"
    plain = load_settings(environ=_env(tmp_path))
    assert kafka.security_config(kafka.bootstrap_servers(plain)) == {"security.protocol": "PLAINTEXT"}
    assert kafka.faust_credentials(plain) is None


def test_insecure_skip_verify_turns_verification_off_and_says_so(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environ=_env(tmp_path, MAPLE_KAFKA_SECURITY_PROTOCOL="ssl",
                                          MAPLE_KAFKA_SECURITY_INSECURE_SKIP_VERIFY="true"))
    config = kafka.client_security(settings)
    assert config["enable.ssl.certificate.verification"] is False
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    context = kafka.faust_credentials(settings).context  # type: ignore[union-attr]
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    assert "NOT verified" in caplog.text


def test_unreadable_files_are_named_by_their_setting(tmp_path: Path) -> None:
    settings = load_settings(environ=_env(tmp_path, MAPLE_KAFKA_SECURITY_PROTOCOL="ssl",
                                          MAPLE_KAFKA_SECURITY_CA_FILE=str(tmp_path / "missing.pem")))
    with pytest.raises(SettingsError, match=r"kafka_security.ca_file \(MAPLE_KAFKA_SECURITY_CA_FILE\)"):
        kafka.bootstrap_servers(settings)
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    settings = load_settings(environ=_env(tmp_path, MAPLE_KAFKA_SECURITY_PROTOCOL="ssl",
                                          MAPLE_KAFKA_SECURITY_CA_FILE=str(not_pem)))
    with pytest.raises(SettingsError, match="no PEM block"):
        kafka.faust_credentials(settings)
    settings = load_settings(environ=_env(tmp_path, MAPLE_KAFKA_SECURITY_PROTOCOL="sasl_plaintext",
                                          MAPLE_KAFKA_SECURITY_SASL_USERNAME="u",
                                          MAPLE_KAFKA_SECURITY_SASL_PASSWORD_FILE=str(tmp_path / "nope")))
    with pytest.raises(SettingsError, match="kafka_security.sasl_password_file"):
        kafka.bootstrap_servers(settings)

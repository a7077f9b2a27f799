"""Maple's one typed settings object.

Values come from, in rising precedence: the defaults below, an optional YAML file (``--config`` or
``MAPLE_CONFIG``), and ``MAPLE_*`` environment variables. The environment variable for a setting is
``MAPLE_<SECTION>_<FIELD>`` (``MAPLE_KAFKA_BOOTSTRAP``) or ``MAPLE_<FIELD>`` for top-level fields
(``MAPLE_DATA_DIR``). Anything invalid stops start-up with a :class:`SettingsError` naming the key,
the value and what would have been accepted: a typo must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

ENV_PREFIX = "MAPLE_"
CONFIG_ENV = "MAPLE_CONFIG"


class SettingsError(ValueError):
    """A setting could not be accepted; the message names the key and the accepted values."""


def setting(default: Any, doc: str, *, choices: tuple[str, ...] | None = None, minimum: float | None = None,
            maximum: float | None = None, secret: bool = False) -> Any:
    """Declare a settings field with the facts the loader needs to validate and explain it."""
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum, "secret": secret}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = setting("", "Bootstrap servers of an existing Kafka cluster (host:port,...). "
                                 "Empty: Maple runs its own local broker from the Maven Central jars.")
    port: int = setting(9092, "Client port of the first local broker; broker N listens on port+N-1.",
                        minimum=1, maximum=65535)
    controller_port: int = setting(9192, "KRaft controller port of the first local node; node N uses +N-1.",
                                   minimum=1, maximum=65535)
    brokers: int = setting(1, "Number of local KRaft nodes (combined broker+controller) that "
                              "`maple kafka start` and `maple up` run.", minimum=1, maximum=5)
    heap: str = setting("512m", "JVM heap of each local broker (-Xmx/-Xms).")
    partitions: int = setting(6, "Partitions of the topics Maple creates: the ceiling for worker and "
                                 "sink processes per consumer group.", minimum=1, maximum=10000)
    replication_factor: int = setting(1, "Replication factor of the topics Maple creates.", minimum=1, maximum=7)
    start_timeout_s: float = setting(90.0, "How long `maple kafka start` waits for produce/consume to work.",
                                     minimum=1)
    local_cert_file: str = setting("", "Certificate (PEM) the local broker's client port presents when "
                                       "kafka_security.protocol is ssl or sasl_ssl.")
    local_key_file: str = setting("", "Private key (PEM, PKCS#8, unencrypted) of local_cert_file.")
    local_client_ca_file: str = setting("", "CA certificates (PEM) the local broker checks client certificates "
                                            "against (ssl.client.auth=required). Empty: none asked for.")


@dataclass(frozen=True)
class ClickHouseSettings:
    url: tuple[str, ...] = setting((), "ClickHouse HTTP URL(s), http[s]://user:pass@host:8123/db; several "
                                       "comma-separated URLs name the shards of a cluster. Empty: the "
                                       "embedded engine (chDB) under data_dir.", secret=True)
    database: str = setting("otel", "Database for Maple's tables, unless the URL names one.")
    cluster: str = setting("", "Name of the ClickHouse cluster (remote_servers) Maple's tables live on. Set: "
                               "`maple schema apply` creates Replicated local tables (<table>_local) and "
                               "Distributed tables ON CLUSTER, and the sink inserts into each shard's local "
                               "tables; with one URL the shards are read from system.clusters. See docs/cluster.md.")
    embedded_host: str = setting("127.0.0.1", "Address the embedded ClickHouse host listens on.")
    embedded_user: str = setting("default", "The user the embedded ClickHouse host accepts (HTTP basic auth, "
                                            "X-ClickHouse-User, or the user parameter).")
    embedded_password: str = setting("", "Password of embedded_user. Empty: no password, which the host only "
                                         "allows on a loopback embedded_host.", secret=True)
    embedded_port: int = setting(8123, "HTTP port of the embedded ClickHouse host (ClickHouse's HTTP "
                                       "protocol, so clickhouse-connect and curl work against it).",
                                 minimum=1, maximum=65535)
    ttl_days: int = setting(30, "Retention of Maple's tables in days (TTL with ttl_only_drop_parts); 0 keeps "
                                "data forever. Applied when `maple schema apply` creates a table.", minimum=0)
    connect_timeout_s: float = setting(10.0, "Connect timeout for ClickHouse HTTP requests.", minimum=0.1)
    query_timeout_s: float = setting(300.0, "Send/receive timeout for ClickHouse HTTP requests.", minimum=1)


@dataclass(frozen=True)
class IngestSettings:
    host: str = setting("127.0.0.1", "Address the OTLP receivers listen on (0.0.0.0 to accept other hosts).")
    grpc_port: int = setting(4317, "OTLP/gRPC port.", minimum=1, maximum=65535)
    http_port: int = setting(4318, "OTLP/HTTP port; also serves /healthz, /readyz and /metrics.",
                             minimum=1, maximum=65535)
    max_request_bytes: int = setting(64 * 1024 * 1024, "Largest request accepted, checked before and after "
                                     "decompression (413 / RESOURCE_EXHAUSTED above it).", minimum=1024)
    max_inflight_bytes: int = setting(256 * 1024 * 1024, "Memory budget for requests received but not yet "
                                      "acknowledged by Kafka; past it clients get 429 / RESOURCE_EXHAUSTED "
                                      "with a retry delay (memory-limiter semantics).", minimum=1024)
    parse_processes: int = setting(2, "Processes that decode OTLP/JSON and protobuf bodies over "
                                   "parse_inline_bytes, one request each at a time, so no request stalls the "
                                   "event loop (or /healthz). Requests beyond them wait their turn, holding only "
                                   "their bytes.",
                                   minimum=1, maximum=64)
    parse_memory_bytes: int = setting(512 * 1024 * 1024, "Memory cap of each parse process (RLIMIT_DATA); a request "
                                      "that needs more to decode gets 413 / RESOURCE_EXHAUSTED (not retried).",
                                      minimum=64 * 1024 * 1024)
    parse_inline_bytes: int = setting(256 * 1024, "Protobuf bodies up to this size are decoded on the event loop "
                                      "(a few ms at worst); larger ones and all OTLP/JSON in the parse processes.",
                                      minimum=0)
    max_record_bytes: int = setting(0, "Largest Kafka record the ingest writes; bigger requests are split at "
                                    "resource/scope boundaries. 0: the raw topics' max.message.bytes.", minimum=0)
    kafka_timeout_s: float = setting(10.0, "How long a request waits for Kafka's acknowledgement before the "
                                     "client gets 503 / UNAVAILABLE.", minimum=0.5)
    retry_after_s: int = setting(5, "Retry-After (and gRPC RetryInfo) given with 429 and 503.", minimum=1)
    api_keys: tuple[str, ...] = setting((), "API keys as key=tenant entries (comma-separated in the "
                                            "environment). Empty: no authentication, tenant 'default'.",
                                        secret=True)
    api_key_header: str = setting("authorization", "Header (gRPC metadata key) carrying the API key; for "
                                  "'authorization' the value is 'Bearer <key>'.")
    require_key: bool = setting(False, "Refuse requests without a valid key even before any key exists. Without "
                                       "it, the ingest takes data without a key (tenant 'default') until the first "
                                       "key is configured (api_keys) or created (`maple keys create`, the API).")
    keys_refresh_s: float = setting(5.0, "How often the ingest re-reads the ingest keys teams created in the "
                                         "metadata store (api.metadata_url): a new or revoked key takes effect "
                                         "within this time.", minimum=0.5)


@dataclass(frozen=True)
class WorkerSettings:
    group: str = setting("maple-worker", "Consumer group (Faust app id) of the processing workers.")
    signals: tuple[str, ...] = setting(("logs", "metrics", "traces"), "Signals a worker process handles (traces: "
                                       "repartitioning with RED metrics, and tail sampling).")
    metrics_port: int = setting(9465, "Prometheus /metrics port of a worker (0: off; a taken port is "
                                      "skipped with a warning).", minimum=0, maximum=65535)
    lag_interval_s: float = setting(15.0, "How often a worker measures its group's consumer lag for "
                                    "/metrics (only with a metrics port).", minimum=0.5)
    session_timeout_s: float = setting(10.0, "Consumer-group session timeout: how soon the partitions of a "
                                       "worker that died move to the others.", minimum=6, maximum=300)
    inflight_batches: int = setting(256, "Raw records processed ahead of Kafka's acknowledgement of their "
                                         "output (acks stay in order).", minimum=1)
    json_max_depth: int = setting(4, "Nesting levels of a JSON log body flattened into LogAttributes.",
                                  minimum=1, maximum=32)
    json_max_body_bytes: int = setting(65536, "Log bodies longer than this are not parsed as JSON.", minimum=0)
    core: str = setting("auto", "Which code turns raw records into rows: 'native' (the compiled core, Native row "
                        "batches; refuse to start without it), 'python' (the Python processors, JSONColumns "
                        "batches: for a rolling upgrade while older sinks run) or 'auto' (native when built).",
                        choices=("auto", "native", "python"))
    severity_from_body: bool = setting(False, "Prefer the level field of a JSON body (level, severity, log.level, "
                                       "...) over the severity the sender set. Off: a sender's severity is kept, "
                                       "and inference runs only for records without one.")


@dataclass(frozen=True)
class TracesSettings:
    sampling_config: str = setting("", "YAML file with the tail-sampling policies in the Collector's tail_sampling "
                                   "format (decision_wait, num_traces, decision_cache, policies). Empty: errors, "
                                   "traces of 1 s or more, and 10% of the rest, decided after 10 s (seed 004).")
    red_dimensions: tuple[str, ...] = setting((), "Extra RED series dimensions: span (else resource) attribute "
                                              "keys; key=default fills in a missing value.")
    red_buckets_ms: tuple[float, ...] = setting((2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0,
                                                 1400.0, 2000.0, 5000.0, 10000.0, 15000.0),
                                                "Bucket bounds of traces.span.metrics.duration, in milliseconds, "
                                                "strictly increasing.")
    tick_interval_s: float = setting(1.0, "How often an idle span partition with undecided traces gets a tick "
                                     "record, so its stream clock (and decisions) move on.", minimum=0.05)
    tick_margin_s: float = setting(1.0, "How far behind now a tick puts a caught-up raw partition's clock: room "
                                   "for requests the ingest received but whose records reach Kafka later. Less "
                                   "decides sooner; a record later than this is a late span.", minimum=0.0,
                                   maximum=60.0)


@dataclass(frozen=True)
class SinkSettings:
    group: str = setting("maple-sink", "Consumer group of the ClickHouse sinks.")
    batch_rows: int = setting(100_000, "Insert once a partition has buffered this many rows...", minimum=1)
    batch_bytes: int = setting(32 * 1024 * 1024, "...or this many bytes...", minimum=1024)
    flush_interval_s: float = setting(1.0, "...or its oldest buffered batch is this old.", minimum=0.05)
    sampled_flush_interval_s: float = setting(0.25, "...but sampled spans (otel.spans.sampled) this old: a decided "
                                              "trace should be queryable soon, and sampled spans are few.",
                                              minimum=0.05)
    session_timeout_s: float = setting(10.0, "Consumer-group session timeout: how soon the partitions of a "
                                       "sink that died move to the others.", minimum=6, maximum=300)
    retry_backoff_max_s: float = setting(30.0, "Longest pause between insert retries.", minimum=0.1)
    metrics_port: int = setting(9464, "Prometheus /metrics port of a sink (0: off; a taken port is skipped "
                                      "with a warning).", minimum=0, maximum=65535)


# TLS and authentication of every link (docs/security.md). Option names and meanings follow the OpenTelemetry
# Collector's configtls where they overlap (cert_file, key_file, ca_file, client_ca_file, min_version,
# insecure_skip_verify, server_name_override, reload_interval), so a Collector user recognises them.

TLS_VERSIONS = ("1.2", "1.3")


@dataclass(frozen=True)
class ServerTLSSettings:
    """A server's TLS: the OTLP ingest's gRPC and HTTP ports (section ingest_tls), the embedded ClickHouse host's
    HTTP port (section clickhouse_host_tls), the query service's port (section api_tls)."""

    cert_file: str = setting("", "Certificate (PEM, leaf first, then intermediates) the server presents; set with "
                                 "key_file to serve TLS only. Empty: plaintext.")
    key_file: str = setting("", "Private key (PEM, unencrypted) of cert_file. Only the path is a setting: the key "
                                "is read from the file and never shown or logged.")
    client_ca_file: str = setting("", "CA certificates (PEM) client certificates must chain to. Set: mutual TLS, a "
                                      "client without a valid certificate from these CAs is refused at the handshake.")
    min_version: str = setting("1.2", "Lowest TLS version accepted.", choices=TLS_VERSIONS)
    reload_interval_s: float = setting(0.0, "How often cert_file, key_file and client_ca_file are checked for "
                                       "changes; changed files are served to new connections, open ones stay. "
                                       "0: only on SIGHUP (which always reloads).", minimum=0)


@dataclass(frozen=True)
class KafkaSecuritySettings:
    """How every Kafka client Maple runs (confluent-kafka and Faust's aiokafka) connects and authenticates."""

    protocol: str = setting("plaintext", "Kafka security protocol of every client (security.protocol).",
                            choices=("plaintext", "ssl", "sasl_plaintext", "sasl_ssl"))
    ca_file: str = setting("", "CA certificates (PEM) the brokers' certificates must chain to (ssl.ca.location). "
                               "Empty: the system's trust store.")
    cert_file: str = setting("", "Client certificate (PEM) for brokers that ask for one (ssl.certificate.location).")
    key_file: str = setting("", "Private key (PEM, unencrypted) of cert_file (ssl.key.location).")
    insecure_skip_verify: bool = setting(False, "Accept any broker certificate and host name. Only for a test "
                                                "setup: anyone on the path can read and change the traffic.")
    sasl_mechanism: str = setting("scram-sha-512", "SASL mechanism with protocol sasl_plaintext or sasl_ssl.",
                                  choices=("plain", "scram-sha-256", "scram-sha-512"))
    sasl_username: str = setting("", "SASL user name.")
    sasl_password: str = setting("", "SASL password (prefer the environment variable or sasl_password_file to a "
                                     "config file).", secret=True)
    sasl_password_file: str = setting("", "File holding the SASL password (a mounted secret); trailing newlines "
                                          "are ignored. Instead of sasl_password.")


@dataclass(frozen=True)
class ClientTLSSettings:
    """A client's TLS towards ClickHouse, used with https:// URLs (section clickhouse_tls)."""

    ca_file: str = setting("", "CA certificates (PEM) the server's certificate must chain to. Empty: the system's "
                               "trust store.")
    cert_file: str = setting("", "Client certificate (PEM) for servers that ask for one.")
    key_file: str = setting("", "Private key (PEM, unencrypted) of cert_file.")
    server_name_override: str = setting("", "Host name the server's certificate is checked against, when it is "
                                            "not the URL's host (e.g. a URL with an IP address).")
    insecure_skip_verify: bool = setting(False, "Accept any server certificate and host name. Only for a test "
                                                "setup: anyone on the path can read and change the traffic.")


@dataclass(frozen=True)
class ApiSettings:
    host: str = setting("127.0.0.1", "Address the query service (`maple api`) listens on (0.0.0.0 to accept other "
                                     "hosts).")
    port: int = setting(8080, "HTTP port of the query service: the API under /api/v1, OpenAPI at /api/openapi.json, "
                              "the web UI at /.", minimum=1, maximum=65535)
    metadata_url: str = setting("", "SQLAlchemy URL of the metadata store (teams, users, API keys, sources, alerts, "
                                    "saved searches, dashboards), e.g. postgresql+psycopg://user:pass@db/maple; "
                                    "several `maple api` replicas need a shared one. Empty: a SQLite file at "
                                    "<data_dir>/api/metadata.db. Migrations run at start. The ingest reads the "
                                    "ingest keys from it too.", secret=True)
    ui_dir: str = setting("", "Directory of the built web UI served at /. Empty: ui/dist next to the query package, "
                              "when it exists.")
    max_execution_time_s: int = setting(30, "ClickHouse max_execution_time for every query the API runs: a slower "
                                            "query is stopped by ClickHouse and answers 422.", minimum=1, maximum=3600)
    max_result_rows: int = setting(100_000, "ClickHouse max_result_rows for every query the API runs.", minimum=100)
    max_result_bytes: int = setting(256 * 1024 * 1024, "ClickHouse max_result_bytes for every query the API runs.",
                                    minimum=1024 * 1024)
    max_memory_bytes: int = setting(2 * 1024 * 1024 * 1024, "ClickHouse max_memory_usage per query.",
                                    minimum=16 * 1024 * 1024)
    sql_max_rows: int = setting(10_000, "Rows the SQL endpoint returns at most (the rest is cut, and the answer "
                                        "says so).", minimum=1)
    sql_max_rows_to_read: int = setting(1_000_000_000, "ClickHouse max_rows_to_read for the SQL endpoint: a "
                                                       "statement that would scan more answers 422 (add a time "
                                                       "filter).", minimum=1000)
    default_range_s: int = setting(3600, "Time range of a request that gives no `from` (seconds before `to`).",
                                   minimum=1)
    max_range_s: int = setting(31 * 86400, "Longest time range a request may ask for, in seconds.", minimum=60)
    default_page_size: int = setting(100, "Rows of a list endpoint without `limit`.", minimum=1)
    max_page_size: int = setting(1000, "Largest `limit` a list endpoint accepts.", minimum=1, maximum=100_000)
    tail_interval_s: float = setting(1.0, "How often a live tail polls ClickHouse for new rows.", minimum=0.1)
    health_interval_s: float = setting(10.0, "How often the health monitor measures Kafka, ClickHouse, lag and dead "
                                             "letters; /api/v1/health answers from its last measurement.",
                                       minimum=1)
    secure_cookies: bool = setting(False, "Mark the login cookie Secure (sent over HTTPS only). Set it when the API "
                                          "is served over TLS, directly or behind a proxy.")
    session_ttl_s: int = setting(7 * 86400, "A login session ends after this long without a request.", minimum=60)
    login_attempts: int = setting(5, "Failed logins allowed per account and source address in login_window_s; then "
                                     "429 until the window passes (four times as many per account from any "
                                     "source, ten times as many per source for any account).", minimum=1)
    login_window_s: int = setting(900, "The window of login_attempts, in seconds.", minimum=1)
    alerts: bool = setting(True, "Evaluate alert rules in this process (one `maple api` of a deployment does at a "
                                 "time: a lease in the metadata store elects it).")
    alert_tick_s: float = setting(5.0, "How often the alert evaluator looks for rules that are due.", minimum=0.1)
    alert_lease_s: float = setting(30.0, "How long the evaluator's lease lasts without renewal: after a leader "
                                         "dies, another replica takes over within this time.", minimum=2)
    alert_workers: int = setting(4, "Rules evaluated at once (a slow query delays only its own rule).", minimum=1,
                                 maximum=64)
    webhook_timeout_s: float = setting(5.0, "Timeout of one webhook attempt.", minimum=0.1)
    webhook_retries: int = setting(6, "Attempts of a webhook delivery before it is given up (backoff doubles from "
                                      "2 s).", minimum=1, maximum=30)
    webhook_private_targets: bool = setting(False, "Allow webhook URLs on loopback, private and link-local "
                                                   "addresses. Off: a team cannot make the API call services "
                                                   "inside its network (ClickHouse, the metadata database).")
    ingest_metrics_urls: tuple[str, ...] = setting((), "The ingest's Prometheus /metrics URLs, for pipeline alerts "
                                                       "on refused requests. Empty: the local ingest "
                                                       "(http://<ingest.host>:<ingest.http_port>/metrics).")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = setting(Path(".maple"), "Where Maple keeps local state: Kafka logs, the embedded "
                                             "ClickHouse data, process files.")
    cache_dir: Path = setting(Path("~/.cache/maple"), "Where downloaded artifacts (the Kafka jars) are cached.")
    log_level: str = setting("info", "Log verbosity.", choices=("debug", "info", "warning", "error"))
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    clickhouse: ClickHouseSettings = field(default_factory=ClickHouseSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    traces: TracesSettings = field(default_factory=TracesSettings)
    sink: SinkSettings = field(default_factory=SinkSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    ingest_tls: ServerTLSSettings = field(default_factory=ServerTLSSettings)
    kafka_security: KafkaSecuritySettings = field(default_factory=KafkaSecuritySettings)
    clickhouse_tls: ClientTLSSettings = field(default_factory=ClientTLSSettings)
    clickhouse_host_tls: ServerTLSSettings = field(default_factory=ServerTLSSettings)
    api_tls: ServerTLSSettings = field(default_factory=ServerTLSSettings)

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def cache_path(self) -> Path:
        return self.cache_dir.expanduser().resolve()

    @property
    def embedded_clickhouse(self) -> bool:
        return not self.clickhouse.url

    @property
    def local_kafka(self) -> bool:
        return not self.kafka.bootstrap


# ---------------------------------------------------------------------------------------------------
# Loading


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if dataclasses.is_dataclass(hints[f.name])}


def _env_name(section: str | None, name: str) -> str:
    return (ENV_PREFIX + (f"{section}_" if section else "") + name).upper()


def env_var(key: str) -> str:
    """The environment variable of a setting key: `ingest.http_port` -> `MAPLE_INGEST_HTTP_PORT`."""
    section, _, name = key.rpartition(".")
    return _env_name(section or None, name)


def _key(section: str | None, name: str) -> str:
    return f"{section}.{name}" if section else name


def _coerce(key: str, env: str, raw: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    """Turn a raw YAML or environment value into the field's type, or raise a SettingsError."""
    where = f"{key} ({env})"

    def fail(expected: str) -> typing.NoReturn:
        raise SettingsError(f"invalid value for {where}: {raw!r}; expected {expected}")

    if hint is bool:
        if isinstance(raw, bool):
            value: Any = raw
        elif str(raw).strip().lower() in ("1", "true", "yes", "on"):
            value = True
        elif str(raw).strip().lower() in ("0", "false", "no", "off"):
            value = False
        else:
            fail("one of true, false, 1, 0, yes, no")
    elif hint is int:
        if isinstance(raw, bool):
            fail("an integer")
        try:
            value = int(str(raw).strip())
        except ValueError:
            fail("an integer")
    elif hint is float:
        if isinstance(raw, bool):
            fail("a number")
        try:
            value = float(str(raw).strip())
        except ValueError:
            fail("a number")
    elif hint is Path:
        if not isinstance(raw, (str, Path)) or not str(raw).strip():
            fail("a path")
        value = Path(str(raw).strip())
    elif hint is str:
        if isinstance(raw, (dict, list)):
            fail("a string")
        value = str(raw).strip()
    elif typing.get_origin(hint) is tuple:
        # tuple[X, ...]: a YAML list or a comma-separated string, each item checked as an X.
        item_hint = typing.get_args(hint)[0]
        if isinstance(raw, str):
            items: list[Any] = raw.split(",")
        elif isinstance(raw, (list, tuple)):
            items = list(raw)
        else:
            fail("a list or a comma-separated string")
        items = [item for item in items if item is not None and not (isinstance(item, str) and not item.strip())]
        value = tuple(_coerce(key, env, item, item_hint, {}) for item in items)
    else:  # pragma: no cover - a programming error, not user input
        raise TypeError(f"unsupported settings type {hint!r} for {key}")

    choices = meta.get("choices")
    if choices:
        value = value.lower()
        if value not in choices:
            fail("one of " + ", ".join(choices))
    low, high = meta.get("minimum"), meta.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        fail(f"a number {bounds}")
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def _unknown(kind: str, name: str, known: list[str]) -> SettingsError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
    return SettingsError(f"unknown {kind} {name}{hint}")


def load_settings(config: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the effective Settings from defaults, the YAML file and the environment."""
    environ = os.environ if environ is None else environ
    config = config or environ.get(CONFIG_ENV) or None
    file_values = _read_yaml(Path(config)) if config else {}
    sections = _sections()

    # Every field: (section or None, field, type hint, metadata)
    fields: list[tuple[str | None, dataclasses.Field[Any], Any]] = []
    top_hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if f.name not in sections:
            fields.append((None, f, top_hints[f.name]))
    for section_name, cls in sections.items():
        hints = typing.get_type_hints(cls)
        fields.extend((section_name, f, hints[f.name]) for f in dataclasses.fields(cls))

    known_env = {_env_name(s, f.name) for s, f, _ in fields} | {CONFIG_ENV}
    for name in environ:
        if name.startswith(ENV_PREFIX) and name not in known_env:
            raise _unknown("environment variable", name, sorted(known_env))

    known_top = [f.name for s, f, _ in fields if s is None] + list(sections)
    for name, value in file_values.items():
        if name not in known_top:
            raise _unknown("setting", str(name), known_top)
        if name in sections:
            if not isinstance(value, dict):
                raise SettingsError(f"setting {name} must be a mapping of {name}.* keys")
            known = [f.name for s, f, _ in fields if s == name]
            for sub in value:
                if sub not in known:
                    raise _unknown("setting", f"{name}.{sub}", [f"{name}.{k}" for k in known])

    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {s: {} for s in sections}
    for section, f, hint in fields:
        env = _env_name(section, f.name)
        source = file_values.get(section, {}) if section else file_values
        raw: Any = None
        if env in environ:
            raw = environ[env]
        elif f.name in source:
            raw = source[f.name]
        if raw is None:
            continue
        value = _coerce(_key(section, f.name), env, raw, hint, f.metadata)
        (nested[section] if section else top)[f.name] = value

    for section, cls in sections.items():
        top[section] = cls(**nested[section])
    settings = Settings(**top)
    _check_urls(settings)
    _check_cluster(settings)
    _check_embedded_bind(settings)
    _check_api_keys(settings)
    _check_tls(settings)
    unknown = set(settings.worker.signals) - {"logs", "metrics", "traces"}
    if unknown:
        raise SettingsError(f"invalid value for worker.signals (MAPLE_WORKER_SIGNALS): {sorted(unknown)}; "
                            "expected some of logs, metrics, traces")
    return settings


def _check_cluster(settings: Settings) -> None:
    """A cluster name goes into DDL and into Distributed engine arguments: keep it a plain name."""
    name = settings.clickhouse.cluster
    if not name:
        return
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name):
        raise SettingsError(f"invalid value for clickhouse.cluster (MAPLE_CLICKHOUSE_CLUSTER): {name!r}; expected a "
                            "cluster name as in remote_servers (letters, digits, _ . -)")


def _check_embedded_bind(settings: Settings) -> None:
    """The embedded host gives whoever reaches it the whole engine: beyond loopback it needs a password."""
    ch = settings.clickhouse
    host = ch.embedded_host
    if ch.url:  # no embedded host runs
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not ch.embedded_password:
        raise SettingsError(
            f"invalid value for clickhouse.embedded_host (MAPLE_CLICKHOUSE_EMBEDDED_HOST): {host!r} is not a loopback "
            "address; set clickhouse.embedded_password (MAPLE_CLICKHOUSE_EMBEDDED_PASSWORD) so that other hosts must "
            "authenticate, or bind 127.0.0.1")


def _check_api_keys(settings: Settings) -> None:
    from maple.tenants import TenantError, check

    for entry in settings.ingest.api_keys:
        key, sep, tenant = entry.partition("=")
        if not sep or not key.strip() or not tenant.strip():
            raise SettingsError("invalid value for ingest.api_keys (MAPLE_INGEST_API_KEYS): an entry is not "
                                "key=tenant; expected entries like 's3cr3t=team-a'")
        try:
            check(tenant.strip())
        except TenantError as exc:
            raise SettingsError(f"invalid value for ingest.api_keys (MAPLE_INGEST_API_KEYS): the tenant of an entry: "
                                f"{exc}") from None


def _check_tls(settings: Settings) -> None:
    """Settings that contradict each other stop start-up; whether the files exist is checked where they are read
    (maple/tls.py), so a process that does not serve or reach a link need not have that link's files."""

    def fail(key: str, message: str) -> typing.NoReturn:
        raise SettingsError(f"invalid value for {key} ({_env_name(*key.split('.'))}): {message}")

    for section in ("ingest_tls", "clickhouse_host_tls", "api_tls"):
        server = getattr(settings, section)
        if bool(server.cert_file) != bool(server.key_file):
            missing = f"{section}.key_file" if server.cert_file else f"{section}.cert_file"
            fail(missing, "cert_file and key_file go together; set both to serve TLS, or neither")
        if server.client_ca_file and not server.cert_file:
            fail(f"{section}.client_ca_file", f"mutual TLS needs TLS: set {section}.cert_file and key_file too")

    kafka = settings.kafka_security
    uses_tls = kafka.protocol in ("ssl", "sasl_ssl")
    uses_sasl = kafka.protocol in ("sasl_plaintext", "sasl_ssl")
    for name in ("ca_file", "cert_file", "key_file", "insecure_skip_verify"):
        if getattr(kafka, name) and not uses_tls:
            fail(f"kafka_security.{name}", f"set, but kafka_security.protocol is {kafka.protocol}; TLS settings "
                                           "need protocol ssl or sasl_ssl")
    if bool(kafka.cert_file) != bool(kafka.key_file):
        missing = "kafka_security.key_file" if kafka.cert_file else "kafka_security.cert_file"
        fail(missing, "cert_file and key_file go together")
    for name in ("sasl_username", "sasl_password", "sasl_password_file"):
        if getattr(kafka, name) and not uses_sasl:
            fail(f"kafka_security.{name}", f"set, but kafka_security.protocol is {kafka.protocol}; SASL settings "
                                           "need protocol sasl_plaintext or sasl_ssl")
    if uses_sasl:
        if not kafka.sasl_username:
            fail("kafka_security.sasl_username", f"protocol {kafka.protocol} needs a user name")
        if bool(kafka.sasl_password) == bool(kafka.sasl_password_file):
            fail("kafka_security.sasl_password", f"protocol {kafka.protocol} needs exactly one of sasl_password "
                                                 "and sasl_password_file")

    client = settings.clickhouse_tls
    if bool(client.cert_file) != bool(client.key_file):
        missing = "clickhouse_tls.key_file" if client.cert_file else "clickhouse_tls.cert_file"
        fail(missing, "cert_file and key_file go together")
    plain = [url for url in settings.clickhouse.url if urlsplit(url).scheme == "http"]
    used = [f.name for f in dataclasses.fields(client) if getattr(client, f.name)]
    if plain and used:
        fail(f"clickhouse_tls.{used[0]}", f"set, but {mask_url(plain[0])} is not an https:// URL")


def api_key_tenants(settings: Settings) -> dict[str, str]:
    """API key -> tenant name, from the key=tenant entries."""
    return {key.strip(): tenant.strip() for key, _, tenant in (e.partition("=") for e in settings.ingest.api_keys)}


def _check_urls(settings: Settings) -> None:
    for url in settings.clickhouse.url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"invalid value for clickhouse.url (MAPLE_CLICKHOUSE_URL): {mask_url(url)!r}; "
                                "expected http[s]://[user[:password]@]host[:port][/database]")


# ---------------------------------------------------------------------------------------------------
# Showing


def mask_url(url: str) -> str:
    """Replace the password in a URL with ****."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:****@{netloc[1]}"))


def _masked(value: Any) -> Any:
    """A secret as shown: URLs keep all but their password, key=tenant entries their tenant; anything else
    (a password, which may well contain '=' or '://') is hidden whole."""
    if isinstance(value, tuple):
        return [_masked_item(v) for v in value]
    return "****" if value else value


def _masked_item(value: str) -> str:
    if re.match(r"^[a-z][a-z0-9+.-]*://", value):
        return mask_url(value)
    if "=" in value:  # key=tenant: the tenant is not secret
        return "****=" + value.partition("=")[2]
    return "****" if value else value


SOURCES = ("default", "file", "environment")


def setting_sources(config: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where each setting's effective value came from: "environment", "file" (the YAML) or "default".

    Same precedence as `load_settings`; call it with the same arguments (after `load_settings` accepted them)."""
    environ = os.environ if environ is None else environ
    config = config or environ.get(CONFIG_ENV) or None
    file_values = _read_yaml(Path(config)) if config else {}
    sections = _sections()
    out: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        names = [(f.name, sub.name) for sub in dataclasses.fields(sections[f.name])] if f.name in sections \
            else [(None, f.name)]
        for section, name in names:
            in_file = file_values.get(section, {}) if section else file_values
            source = "environment" if _env_name(section, name) in environ else \
                "file" if isinstance(in_file, dict) and in_file.get(name) is not None else "default"
            out[_key(section, name)] = source
    return out


def describe(settings: Settings, environ: Mapping[str, str] | None = None,
             sources: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every setting as key, env var, effective value (secrets masked), its source and documentation.

    `sources` comes from `setting_sources`; without it a value is "environment" when its variable is set,
    else "default"."""
    environ = os.environ if environ is None else environ
    rows: list[dict[str, Any]] = []
    sections = _sections()
    for f in dataclasses.fields(Settings):
        if f.name in sections:
            section_value = getattr(settings, f.name)
            for sub in dataclasses.fields(section_value):
                rows.append(_row(f.name, sub, getattr(section_value, sub.name), environ, sources))
        else:
            rows.append(_row(None, f, getattr(settings, f.name), environ, sources))
    return rows


def _row(section: str | None, f: dataclasses.Field[Any], value: Any, environ: Mapping[str, str],
         sources: Mapping[str, str] | None) -> dict[str, Any]:
    env, key = _env_name(section, f.name), _key(section, f.name)
    shown = _masked(value) if f.metadata.get("secret") else value
    if isinstance(shown, Path):
        shown = str(shown)
    if isinstance(shown, tuple):
        shown = list(shown)
    source = sources[key] if sources is not None else ("environment" if env in environ else "default")
    return {"key": key, "env": env, "value": shown, "source": source, "doc": f.metadata.get("doc", "")}


def as_yaml(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The effective settings as a YAML document that `--config` accepts back (secrets masked)."""
    tree: dict[str, Any] = {}
    for row in describe(settings, environ):
        section, _, name = row["key"].rpartition(".")
        (tree.setdefault(section, {}) if section else tree)[name] = row["value"]
    return yaml.safe_dump(tree, sort_keys=False, default_flow_style=False)

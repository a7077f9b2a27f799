"""Settings: defaults, YAML, environment precedence, and errors that name the key and accepted values."""

from __future__ import annotations

from pathlib import Path

import pytest

from maple.settings import SettingsError, as_yaml, describe, load_settings, mask_url, setting_sources


def test_defaults_select_embedded_clickhouse_and_local_kafka() -> None:
    settings = load_settings(environ={})
    assert settings.embedded_clickhouse and settings.local_kafka
    assert settings.data_dir == Path(".maple")
    assert settings.kafka.port == 9092 and settings.clickhouse.database == "otel"


def test_environment_overrides_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    config = tmp_path / "maple.yaml"
    config.write_text("log_level: debug\nkafka:\n  partitions: 12\n  port: 19092\n")
    settings = load_settings(config, environ={"MAPLE_KAFKA_PORT": "29092"})
    assert settings.log_level == "debug"
    assert settings.kafka.partitions == 12
    assert settings.kafka.port == 29092


def test_config_path_from_maple_config_variable(tmp_path: Path) -> None:
    config = tmp_path / "maple.yaml"
    config.write_text("clickhouse:\n  database: telemetry\n")
    assert load_settings(environ={"MAPLE_CONFIG": str(config)}).clickhouse.database == "telemetry"


def test_several_clickhouse_urls_are_shards() -> None:
    settings = load_settings(environ={"MAPLE_CLICKHOUSE_URL": "http://a:8123/otel, http://b:8123/otel"})
    assert settings.clickhouse.url == ("http://a:8123/otel", "http://b:8123/otel")
    assert not settings.embedded_clickhouse


@pytest.mark.parametrize(("environ", "expected"), [
    ({"MAPLE_KAFKA_PORT": "abc"}, "kafka.port (MAPLE_KAFKA_PORT): 'abc'; expected an integer"),
    ({"MAPLE_KAFKA_PORT": "70000"}, "kafka.port (MAPLE_KAFKA_PORT): '70000'; expected a number between 1 and 65535"),
    ({"MAPLE_LOG_LEVEL": "loud"}, "expected one of debug, info, warning, error"),
    ({"MAPLE_KAFKA_BOOTSTRAPS": "x:1"}, "unknown environment variable MAPLE_KAFKA_BOOTSTRAPS; did you mean "
                                        "MAPLE_KAFKA_BOOTSTRAP?"),
    ({"MAPLE_CLICKHOUSE_URL": "ftp://host/db"}, "expected http[s]://"),
])
def test_invalid_environment_values_name_key_and_accepted_values(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ=environ)
    assert expected in str(info.value)


def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "maple.yaml"
    config.write_text("kafka:\n  partitons: 3\n")
    with pytest.raises(SettingsError, match=r"unknown setting kafka.partitons; did you mean kafka.partitions\?"):
        load_settings(config, environ={})


def test_yaml_wrong_type_and_bad_file_are_clear_errors(tmp_path: Path) -> None:
    config = tmp_path / "maple.yaml"
    config.write_text("kafka: 3\n")
    with pytest.raises(SettingsError, match="setting kafka must be a mapping"):
        load_settings(config, environ={})
    config.write_text("kafka: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings(config, environ={})
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "missing.yaml", environ={})


def test_secrets_are_masked_when_shown() -> None:
    environ = {"MAPLE_CLICKHOUSE_URL": "https://writer:s3cret@ch.example:8443/otel"}
    settings = load_settings(environ=environ)
    shown = {row["key"]: row["value"] for row in describe(settings, environ)}
    assert shown["clickhouse.url"] == ["https://writer:****@ch.example:8443/otel"]
    assert "s3cret" not in as_yaml(settings, environ)
    assert mask_url("http://host:8123/db") == "http://host:8123/db"


def test_shown_yaml_loads_back_to_the_same_settings(tmp_path: Path) -> None:
    settings = load_settings(environ={"MAPLE_KAFKA_PARTITIONS": "9", "MAPLE_LOG_LEVEL": "warning"})
    config = tmp_path / "round-trip.yaml"
    config.write_text(as_yaml(settings, {}))
    assert load_settings(config, environ={}) == settings


def test_lists_of_numbers_are_numbers_from_yaml_and_environment(tmp_path: Path) -> None:
    assert load_settings(environ={}).traces.red_buckets_ms[:3] == (2.0, 4.0, 6.0)
    config = tmp_path / "maple.yaml"
    config.write_text("traces:\n  red_buckets_ms: [0.5, 1, 25]\n")
    assert load_settings(config, environ={}).traces.red_buckets_ms == (0.5, 1.0, 25.0)
    assert load_settings(environ={"MAPLE_TRACES_RED_BUCKETS_MS": "1, 2.5,10"}).traces.red_buckets_ms == (1.0, 2.5, 10.0)
    with pytest.raises(SettingsError, match=r"traces.red_buckets_ms \(MAPLE_TRACES_RED_BUCKETS_MS\): 'ten'; "
                                            r"expected a number"):
        load_settings(environ={"MAPLE_TRACES_RED_BUCKETS_MS": "1,ten"})
    shown = {row["key"]: row["value"] for row in describe(load_settings(environ={}), {})}
    assert shown["traces.red_buckets_ms"][:2] == [2.0, 4.0]  # numbers, not strings


def test_each_value_says_whether_it_came_from_the_default_the_file_or_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "maple.yaml"
    config.write_text("kafka:\n  partitions: 12\n  port: 19092\nlog_level: debug\n")
    environ = {"MAPLE_KAFKA_PORT": "29092"}
    settings = load_settings(config, environ)
    rows = {row["key"]: row for row in describe(settings, environ, setting_sources(config, environ))}
    assert {key: rows[key]["source"] for key in ("kafka.partitions", "kafka.port", "log_level", "kafka.brokers")} == {
        "kafka.partitions": "file", "kafka.port": "environment", "log_level": "file", "kafka.brokers": "default"}
    assert rows["kafka.port"]["value"] == 29092
    assert set(setting_sources(environ={"MAPLE_CONFIG": str(config)}).values()) == {"file", "default"}


def test_the_embedded_host_needs_a_password_beyond_loopback() -> None:
    from maple.settings import SettingsError, load_settings

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        load_settings(environ={"MAPLE_CLICKHOUSE_EMBEDDED_HOST": host})
    with pytest.raises(SettingsError, match=r"clickhouse.embedded_host \(MAPLE_CLICKHOUSE_EMBEDDED_HOST\): '0.0.0.0' "
                                            r"is not a loopback address; set clickhouse.embedded_password"):
        load_settings(environ={"MAPLE_CLICKHOUSE_EMBEDDED_HOST": "0.0.0.0"})
    settings = load_settings(environ={"MAPLE_CLICKHOUSE_EMBEDDED_HOST": "0.0.0.0",
                                      "MAPLE_CLICKHOUSE_EMBEDDED_PASSWORD": "s3cret"})
    assert settings.clickhouse.embedded_password == "s3cret"
    # With a server URL no embedded host runs, so its address does not matter.
    load_settings(environ={"MAPLE_CLICKHOUSE_EMBEDDED_HOST": "0.0.0.0", "MAPLE_CLICKHOUSE_URL": "http://ch:8123"})

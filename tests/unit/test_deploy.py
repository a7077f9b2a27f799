"""Static checks of the deploy files: they parse, and agree with Maple's settings, commands, topics and versions.

Nothing here starts a container (CI has no Docker daemon); what these checks cannot prove is listed in
docs/deploy.md ("What is and is not verified").
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import time
import tomllib
import typing
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from apps import localkafka
from apps.cli import build_parser
from ingest.otlp import SIGNALS, parse_json
from maple.settings import Settings, load_settings
from maple.topics import LOGS, METRICS, RAW_LOGS, RAW_METRICS, RAW_TRACES, SPANS, SPANS_SAMPLED
from tests.helpers.environment import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
CLICKHOUSE = DEPLOY / "clickhouse"
DEFAULTS = load_settings(environ={})
# Introduced by issue 7a (cluster schema) in parallel with these files. Until that lands the names are
# accepted here without validation; once they are real settings/flags they are validated like the rest.
PENDING_ENV = {"MAPLE_CLICKHOUSE_CLUSTER"}
PENDING_FLAGS = {"--cluster"}

# Worker group reads the raw topics and (sampler agent) otel.spans; the sink group the processed topics.
WORKER_TOPICS = {RAW_TRACES.name, RAW_LOGS.name, RAW_METRICS.name, SPANS.name}
SINK_TOPICS = {LOGS.name, METRICS.name, SPANS_SAMPLED.name}


# -- helpers ---------------------------------------------------------------------------------------------


def _yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _compose(path: Path = REPO / "docker-compose.yml") -> dict:
    return yaml.safe_load(path.read_text())


def _k8s_objects() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in _yaml_docs(K8S / name)]


def _k8s(kind: str, name: str) -> dict:
    matches = [o for o in _k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def _env_names() -> set[str]:
    """Every MAPLE_* variable Maple accepts, enumerated from the settings dataclasses."""
    names = {"MAPLE_CONFIG"}
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if dataclasses.is_dataclass(hints[f.name]):
            names |= {f"MAPLE_{f.name}_{sub.name}".upper() for sub in dataclasses.fields(hints[f.name])}
        else:
            names.add(f"MAPLE_{f.name}".upper())
    return names


def _check_maple_env(env: dict[str, Any], where: str) -> Settings:
    """Every MAPLE_* name is a real setting (or pending from 7a) and the values load."""
    env = {k: str(v) for k, v in env.items()}
    known = _env_names()
    for name in env:
        if name.startswith("MAPLE_"):
            assert name in known or name in PENDING_ENV, f"{where}: {name} is not a Maple setting"
    return load_settings(environ={k: v for k, v in env.items() if k in known})


def _parse_command(args: list[str]) -> None:
    """The command line parses with Maple's CLI; flags still pending from 7a are dropped if unknown."""
    parser = build_parser()
    try:
        parser.parse_args(args)
        return
    except SystemExit:
        pass
    stripped, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in PENDING_FLAGS:
            skip = True
        else:
            stripped.append(arg)
    assert stripped != args, f"`maple {' '.join(args)}` does not parse"
    parser.parse_args(stripped)


def _image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image} has no tag"
    return tag


# -- every file parses ------------------------------------------------------------------------------------


def test_every_deploy_yaml_and_xml_file_parses() -> None:
    yaml_files = [REPO / "docker-compose.yml", *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]
    assert len(yaml_files) >= 12
    for path in yaml_files:
        assert _yaml_docs(path), path
    xml_files = list(CLICKHOUSE.rglob("*.xml"))
    assert len(xml_files) == 9
    for path in xml_files:
        assert ET.parse(path).getroot().tag == "clickhouse", path   # "--" in a comment would fail here too


# -- compose ----------------------------------------------------------------------------------------------


def _maple_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image") == "maple:dev"}


@pytest.mark.parametrize("path", [REPO / "docker-compose.yml", DEPLOY / "compose" / "single-node.yml"],
                         ids=["full", "single-node"])
def test_compose_maple_services_use_real_settings_and_commands(path: Path) -> None:
    compose = _compose(path)
    services = _maple_services(compose)
    assert {"schema", "ingest", "worker", "sink"} <= set(services)
    for name, service in services.items():
        settings = _check_maple_env(service["environment"], f"{path.name}:{name}")
        brokers = settings.kafka.bootstrap.split(",")
        for broker in brokers:
            host, _, port = broker.rpartition(":")
            assert host in compose["services"] and port == "9092", broker
        assert settings.kafka.replication_factor <= len(brokers)
        for url in settings.clickhouse.url:
            assert re.match(r"http://maple:maple@[a-z0-9-]+:8123/otel$", url), url
        _parse_command(service["command"])
    assert services["ingest"]["environment"]["MAPLE_INGEST_HOST"] == "0.0.0.0"
    published = {p.split(":")[-1] for p in services["ingest"]["ports"]}
    assert published == {str(DEFAULTS.ingest.grpc_port), str(DEFAULTS.ingest.http_port)}
    assert "ports" not in services["worker"] and "ports" not in services["sink"], "published ports block --scale"


def test_full_compose_kafka_is_three_kraft_nodes_with_replication_3_and_min_isr_2() -> None:
    compose = _compose()
    kafka = {name: svc for name, svc in compose["services"].items() if name.startswith("kafka-")
             and svc["image"].startswith("apache/kafka:")}
    assert sorted(kafka) == ["kafka-1", "kafka-2", "kafka-3"]
    voters = {f"{i}@kafka-{i}:9093" for i in (1, 2, 3)}
    assert len({svc["environment"]["CLUSTER_ID"] for svc in kafka.values()}) == 1, "one cluster id for all nodes"
    for name, svc in kafka.items():
        env = svc["environment"]
        assert svc["image"] == f"apache/kafka:{localkafka.KAFKA_VERSION}"
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_NODE_ID"] == int(name[-1])
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3 and env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        # Maple's records are up to 16 MiB (maple/kafka.py); the brokers must accept them.
        assert env["KAFKA_MESSAGE_MAX_BYTES"] >= 16 * 1024 * 1024
    for svc in _maple_services(compose).values():
        assert svc["environment"]["MAPLE_KAFKA_REPLICATION_FACTOR"] == "3"


def test_full_compose_has_the_cluster_keepers_and_monitoring_wired_to_the_config_files() -> None:
    services = _compose()["services"]
    ch = {n: s for n, s in services.items() if s.get("image", "").startswith("clickhouse/clickhouse-server:")}
    keepers = {n: s for n, s in services.items() if s.get("image", "").startswith("clickhouse/clickhouse-keeper:")}
    assert sorted(ch) == ["clickhouse-s1r1", "clickhouse-s1r2", "clickhouse-s2r1", "clickhouse-s2r2"]
    assert sorted(keepers) == ["keeper-1", "keeper-2", "keeper-3"]
    # Every bind-mounted file exists (the dashboards directory is issue 7c's), and each node mounts its own file.
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists() or source == "./deploy/grafana/dashboards", f"{name}: {source}"
    for name, svc in ch.items():
        assert f"./deploy/clickhouse/nodes/{name.split('-')[1]}.xml" in " ".join(svc["volumes"])
    for name, svc in keepers.items():
        assert f"./deploy/clickhouse/keeper/{name}.xml" in " ".join(svc["volumes"])
    assert len({_image_tag(s["image"]) for s in (*ch.values(), *keepers.values())}) == 1, "server == keeper version"
    assert services["schema"]["command"] == ["schema", "apply", "--cluster", "maple"]
    assert services["schema"]["environment"]["MAPLE_CLICKHOUSE_CLUSTER"] == "maple"
    assert services["sink"]["depends_on"]["schema"]["condition"] == "service_completed_successfully"
    grafana = services["grafana"]
    assert grafana["environment"]["GF_PLUGINS_PREINSTALL_SYNC"].startswith("grafana-clickhouse-datasource@")
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


def test_every_image_is_pinned() -> None:
    images = [svc["image"] for path in (REPO / "docker-compose.yml", DEPLOY / "compose" / "single-node.yml")
              for svc in _compose(path)["services"].values()]
    images += [c["image"] for o in _k8s_objects() if o["kind"] in ("Deployment", "Job")
               for c in o["spec"]["template"]["spec"]["containers"]]
    for image in images:
        if image in ("maple:dev", "maple"):   # built here / set by kustomize `images`
            continue
        tag = _image_tag(image)
        assert tag not in ("latest", "") and re.search(r"\d", tag), image
    plugin = _compose()["services"]["grafana"]["environment"]["GF_PLUGINS_PREINSTALL_SYNC"]
    assert re.fullmatch(r"grafana-clickhouse-datasource@\d+\.\d+\.\d+", plugin)
    kustomize = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (maple_image,) = kustomize["images"]
    assert maple_image["name"] == "maple" and maple_image["newTag"] != "latest"


def test_compose_kafka_matches_the_pinned_broker_version_everywhere() -> None:
    for path in (REPO / "docker-compose.yml", DEPLOY / "compose" / "single-node.yml"):
        for svc in _compose(path)["services"].values():
            if svc.get("image", "").startswith("apache/kafka:"):
                assert svc["image"] == f"apache/kafka:{localkafka.KAFKA_VERSION}", path


def test_single_node_compose_database_matches_settings() -> None:
    compose = _compose(DEPLOY / "compose" / "single-node.yml")
    assert compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_DB"] == DEFAULTS.clickhouse.database
    assert compose["x-maple"]["build"]["context"] == "../.."


# -- ClickHouse cluster ----------------------------------------------------------------------------------


def test_clickhouse_cluster_is_2_shards_by_2_replicas_with_3_keepers_and_unique_macros() -> None:
    root = ET.parse(CLICKHOUSE / "config.d" / "cluster.xml").getroot()
    shards = root.findall("./remote_servers/maple/shard")
    assert len(shards) == 2
    hosts_by_shard = []
    for shard in shards:
        assert shard.findtext("internal_replication") == "true"
        replicas = [(r.findtext("host"), r.findtext("port")) for r in shard.findall("replica")]
        assert len(replicas) == 2 and all(port == "9000" for _, port in replicas)
        hosts_by_shard.append([host for host, _ in replicas])
    keepers = [(n.findtext("host"), n.findtext("port")) for n in root.findall("./zookeeper/node")]
    assert keepers == [(f"keeper-{i}", "9181") for i in (1, 2, 3)]
    assert root.findtext("./prometheus/port") == "9363"

    macros = {}
    for shard_no, hosts in enumerate(hosts_by_shard, start=1):
        for host in hosts:
            node = ET.parse(CLICKHOUSE / "nodes" / f"{host.split('-')[1]}.xml").getroot()
            assert node.findtext("./macros/shard") == str(shard_no), host
            assert node.findtext("./macros/cluster") == "maple"
            assert node.findtext("interserver_http_host") == host
            macros[host] = (node.findtext("./macros/shard"), node.findtext("./macros/replica"))
    assert len(macros) == 4 and len(set(macros.values())) == 4
    assert len({replica for _, replica in macros.values()}) == 4, "replica macros must be unique per node"

    raft, ids = None, []
    for i in (1, 2, 3):
        keeper = ET.parse(CLICKHOUSE / "keeper" / f"keeper-{i}.xml").getroot()
        ids.append(keeper.findtext("./keeper_server/server_id"))
        assert keeper.findtext("./keeper_server/tcp_port") == "9181"
        members = [(s.findtext("id"), s.findtext("hostname"), s.findtext("port"))
                   for s in keeper.findall("./keeper_server/raft_configuration/server")]
        assert raft in (None, members), "raft_configuration differs between keepers"
        raft = members
    assert ids == ["1", "2", "3"]
    assert raft == [(str(i), f"keeper-{i}", "9234") for i in (1, 2, 3)]


def test_clickhouse_users_match_the_credentials_that_use_them() -> None:
    users = ET.parse(CLICKHOUSE / "users.d" / "maple.xml").getroot()
    passwords = {u.tag: u.findtext("password") for u in users.find("users")}
    for svc in _maple_services(_compose()).values():
        for url in svc["environment"]["MAPLE_CLICKHOUSE_URL"].split(","):
            assert url.startswith(f"http://maple:{passwords['maple']}@")
    (ds,) = [d for d in _grafana_datasources() if d["uid"] == "clickhouse"]
    assert ds["secureJsonData"]["password"] == passwords[ds["jsonData"]["username"]]


# -- Prometheus and Grafana ------------------------------------------------------------------------------


def test_prometheus_scrapes_every_maple_service_on_its_settings_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    expected = {"ingest": DEFAULTS.ingest.http_port, "worker": DEFAULTS.worker.metrics_port,
                "sink": DEFAULTS.sink.metrics_port}
    services = _compose()["services"]
    for service, port in expected.items():
        (sd,) = jobs[f"maple-{service}"]["dns_sd_configs"]
        assert sd["names"] == [service] and sd["port"] == port and sd["type"] == "A"
        assert service in services
    assert (DEFAULTS.ingest.http_port, DEFAULTS.worker.metrics_port, DEFAULTS.sink.metrics_port) == (4318, 9465, 9464)
    ch_targets = set(jobs["clickhouse"]["static_configs"][0]["targets"])
    assert ch_targets == {f"{n}:9363" for n in services if n.startswith("clickhouse-")}
    assert set(jobs["keeper"]["static_configs"][0]["targets"]) == {f"keeper-{i}:9363" for i in (1, 2, 3)}
    assert jobs["kafka"]["static_configs"][0]["targets"] == ["kafka-exporter:9308"]
    # Every host Prometheus scrapes is a compose service.
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                assert target.split(":")[0] in (*services, "localhost"), target


def _grafana_datasources() -> list[dict]:
    path = DEPLOY / "grafana" / "provisioning" / "datasources" / "maple.yaml"
    return yaml.safe_load(path.read_text())["datasources"]


def test_grafana_datasources_have_stable_uids_and_point_at_the_stack() -> None:
    by_uid = {d["uid"]: d for d in _grafana_datasources()}
    assert set(by_uid) == {"clickhouse", "prometheus"}
    ch = by_uid["clickhouse"]
    assert ch["type"] == "grafana-clickhouse-datasource"
    assert ch["jsonData"]["host"] in _compose()["services"]
    assert ch["jsonData"]["defaultDatabase"] == DEFAULTS.clickhouse.database
    assert ch["jsonData"]["logs"]["defaultTable"] == "otel_logs"
    assert ch["jsonData"]["traces"]["defaultTable"] == "otel_traces"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "maple.yaml").read_text())
    (provider,) = providers["providers"]
    mounts = _compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts


# -- Kubernetes ------------------------------------------------------------------------------------------


def test_k8s_settings_are_real_and_parse() -> None:
    config = _k8s("ConfigMap", "maple-config")["data"]
    secret = _k8s("Secret", "maple-secrets")["stringData"]
    assert set(secret) == {"MAPLE_CLICKHOUSE_URL", "MAPLE_INGEST_API_KEYS"}
    assert not any(k in config for k in secret), "secrets belong in the Secret"
    settings = _check_maple_env({**config, **secret}, "k8s config")
    assert settings.kafka.replication_factor == 3 and len(settings.clickhouse.url) >= 1
    for obj in _k8s_objects():
        if obj["kind"] in ("Deployment", "Job"):
            for container in obj["spec"]["template"]["spec"]["containers"]:
                env = {e["name"]: e["value"] for e in container.get("env", [])}
                _check_maple_env({**config, **secret, **env}, obj["metadata"]["name"])
                refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
                assert refs == {"maple-config", "maple-secrets"}
                _parse_command(container["args"])


def test_k8s_ports_and_probes_agree_with_settings() -> None:
    ingest = _k8s("Deployment", "maple-ingest")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in ingest["ports"]}
    assert ports == {"otlp-grpc": DEFAULTS.ingest.grpc_port, "otlp-http": DEFAULTS.ingest.http_port}
    assert ingest["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "otlp-http"}
    assert ingest["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "otlp-http"}
    assert {"name": "MAPLE_INGEST_HOST", "value": "0.0.0.0"} in ingest["env"]
    service = _k8s("Service", "maple-ingest")
    assert {p["port"] for p in service["spec"]["ports"]} == {4317, 4318}
    hpa = _k8s("HorizontalPodAutoscaler", "maple-ingest")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for name, port in (("maple-worker", DEFAULTS.worker.metrics_port), ("maple-sink", DEFAULTS.sink.metrics_port)):
        template = _k8s("Deployment", name)["spec"]["template"]
        container = template["spec"]["containers"][0]
        assert container["ports"] == [{"name": "metrics", "containerPort": port}]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        assert template["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        assert "requests" in container["resources"]
        assert _k8s("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == \
            template["metadata"]["labels"]


def test_keda_scaled_objects_name_maples_groups_topics_and_partition_ceiling() -> None:
    settings = _check_maple_env(_k8s("ConfigMap", "maple-config")["data"], "k8s config")
    for name, group, topics in (("maple-worker", DEFAULTS.worker.group, WORKER_TOPICS),
                                ("maple-sink", DEFAULTS.sink.group, SINK_TOPICS)):
        scaled = _k8s("ScaledObject", name)
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        assert scaled["spec"]["scaleTargetRef"]["name"] == name
        assert _k8s("Deployment", name)
        spec = scaled["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= settings.kafka.partitions
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        assert {t["metadata"]["topic"] for t in triggers} == topics
        for trigger in triggers:
            meta = trigger["metadata"]
            assert meta["consumerGroup"] == group
            assert meta["bootstrapServers"] == settings.kafka.bootstrap
            assert int(meta["lagThreshold"]) > 0


def test_k8s_schema_job_applies_on_the_cluster() -> None:
    job = _k8s("Job", "maple-schema")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["schema", "apply", "--cluster", "maple"]
    assert _k8s("ConfigMap", "maple-config")["data"]["MAPLE_CLICKHOUSE_CLUSTER"] == "maple"


def test_kustomize_renders_where_kubectl_exists() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc)
    assert kinds.count("Deployment") == 3 and kinds.count("ScaledObject") == 2
    assert "registry.example.com/maple:0.1.0" in result.stdout


# -- the rest --------------------------------------------------------------------------------------------


def test_dockerfile_copies_every_package_the_project_ships() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (REPO / "deploy" / "docker" / "Dockerfile").read_text()
    for package in packages:
        assert re.search(rf"^COPY {package} \./{package}$", dockerfile, re.MULTILINE), package


def test_stack_makefile_has_the_seed_targets_and_leaves_the_root_makefile_alone() -> None:
    stack = (DEPLOY / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", stack, re.MULTILINE))
    assert {"start", "stop", "restart", "logs", "status", "health", "test", "query", "query-traces",
            "query-stats", "clean", "reset", "dashboard", "help"} <= targets
    assert "docker-compose.yml" in stack
    root = (REPO / "Makefile").read_text()
    assert re.search(r"^test: install.*\n(?:\t.*\n)*\t\$\(BIN\)/python -m pytest", root, re.MULTILINE)
    assert re.search(r"^up: install.*\n\t\$\(BIN\)/maple up", root, re.MULTILINE)


def test_test_data_script_sends_valid_otlp_json() -> None:
    # Loaded from its file as the stack's Makefile runs it (python3 apps/testdata.py): standard library only.
    spec = importlib.util.spec_from_file_location("send_test_data", REPO / "apps" / "testdata.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    now = time.time_ns()
    counts = {name: SIGNALS[name].count(parse_json(SIGNALS[name], orjson.dumps(build(5, now, "run-1"))))
              for name, build in module.PAYLOADS.items()}
    assert counts == {"traces": 15, "logs": 5, "metrics": 10}
    request = parse_json(SIGNALS["logs"], orjson.dumps(module.logs_payload(1, now, "run-1")))
    resource = {a.key: a.value.string_value for a in request.resource_logs[0].resource.attributes}
    assert resource[module.RUN_ATTRIBUTE] == "run-1"


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/compose/single-node.yml"])
def test_docker_compose_config_validates_where_the_plugin_exists(path: str) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here")
    result = subprocess.run([docker, "compose", "-f", str(REPO / path), "config", "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

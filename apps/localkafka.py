"""A real Apache Kafka on this machine, without Docker: the broker jars from Maven Central, KRaft mode.

`maple kafka start` and `maple up` use this. Each node is a combined broker+controller JVM
(``kafka.Kafka``) with its own directory under ``<data_dir>/kafka/node-<id>``: server.properties, the
log segments, ``broker.log`` and a pid file. Data survives a stop; a later start resumes on it.

Why 4.1.2: Kafka 4.x is KRaft-only (no ZooKeeper code path to configure around), its broker targets
Java 17 as this machine has, and both clients Maple uses (confluent-kafka 2.x and aiokafka >= 0.13 under
Faust) speak its protocol. 4.1.2 is a patch release of a line that had two rounds of fixes.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from maple import kafka as kafka_clients
from maple.settings import Settings

KAFKA_VERSION = "4.1.2"
log = logging.getLogger(__name__)


class LocalKafkaError(RuntimeError):
    """The local broker could not be resolved, started or reached; the message says why and what to do."""


@dataclass(frozen=True)
class Node:
    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def properties(self) -> Path:
        return self.directory / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.directory / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "broker.log"

    @property
    def jvm_output(self) -> Path:
        return self.directory / "jvm.out"


@dataclass(frozen=True)
class LocalCluster:
    """The layout of the local KRaft cluster that the settings describe."""

    settings: Settings

    @property
    def root(self) -> Path:
        return self.settings.data_path / "kafka"

    @property
    def nodes(self) -> list[Node]:
        k = self.settings.kafka
        return [Node(i + 1, k.port + i, k.controller_port + i, self.root / f"node-{i + 1}") for i in range(k.brokers)]

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def libs(self) -> Path:
        return self.settings.cache_path / f"kafka-{KAFKA_VERSION}" / "libs"


# ---------------------------------------------------------------------------------------------------
# Jars


def resolve_jars(cluster: LocalCluster, say: Callable[[str], None] = log.info) -> Path:
    """Copy the broker jars from Maven Central into the cache with mvn, once; returns the libs dir."""
    libs = cluster.libs
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError("Maven (mvn) is not on PATH; it is needed once to fetch the Kafka jars "
                              "(or point Maple at an existing cluster with MAPLE_KAFKA_BOOTSTRAP)")
    if shutil.which("java") is None:
        raise LocalKafkaError("java is not on PATH; the local Kafka broker needs Java 17 or newer")
    say(f"resolving Apache Kafka {KAFKA_VERSION} from Maven Central into {libs.parent} (once)")
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    template = resources.files("apps").joinpath("resources/kafka-pom.xml").read_text()
    pom.write_text(template.replace("@KAFKA_VERSION@", KAFKA_VERSION))
    staging = work / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise LocalKafkaError("mvn could not resolve the Kafka jars:\n" + (result.stdout + result.stderr)[-3000:])
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(KAFKA_VERSION + "\n")
    say(f"Kafka jars ready: {len(list(libs.glob('*.jar')))} jars")
    return libs


# ---------------------------------------------------------------------------------------------------
# Configuration and storage


def _cluster_id() -> str:
    """A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _server_properties(cluster: LocalCluster, node: Node) -> str:
    count = len(cluster.nodes)
    replicas = min(3, count)
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster.nodes)
    props = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": node.directory / "data",
        "num.partitions": cluster.settings.kafka.partitions,
        "default.replication.factor": replicas,
        "min.insync.replicas": min(2, count),
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min(2, count),
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min(2, count),
        # One OTLP request is one record; allow big ones (ingest splits above the topic limit).
        "message.max.bytes": 16 * 1024 * 1024,
        "replica.fetch.max.bytes": 16 * 1024 * 1024,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "true",
        "log.retention.hours": 168,
    }
    lines = ["# Written by maple (maple/localkafka.py); regenerated on every start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _java_base(cluster: LocalCluster, node: Node, libs: Path) -> list[str]:
    log4j = node.directory / "log4j2.properties"
    log4j.write_text(resources.files("apps").joinpath("resources/kafka-log4j2.properties").read_text())
    heap = cluster.settings.kafka.heap
    return ["java", f"-Xmx{heap}", f"-Xms{heap}", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={node.directory}",
            "-cp", f"{libs}/*"]


def _prepare(cluster: LocalCluster, libs: Path) -> None:
    """Write each node's config and format its KRaft storage the first time."""
    cluster.root.mkdir(parents=True, exist_ok=True)
    layout_file = cluster.root / "cluster.id"
    count = len(cluster.nodes)
    if layout_file.exists():
        cid, _, nodes = layout_file.read_text().strip().partition(" ")
        if nodes and int(nodes) != count:
            raise LocalKafkaError(
                f"{cluster.root} holds a {nodes}-node cluster but kafka.brokers is {count}; "
                f"use the same count, another MAPLE_DATA_DIR, or delete {cluster.root} to start over")
    else:
        cid = _cluster_id()
        layout_file.write_text(f"{cid} {count}\n")
    for node in cluster.nodes:
        node.directory.mkdir(parents=True, exist_ok=True)
        node.properties.write_text(_server_properties(cluster, node))
        if (node.directory / "data" / "meta.properties").exists():
            continue
        cmd = _java_base(cluster, node, libs) + ["kafka.tools.StorageTool", "format", "-t", cid,
                                                   "-c", str(node.properties)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise LocalKafkaError(f"formatting KRaft storage of node {node.node_id} failed:\n"
                                  + (result.stdout + result.stderr)[-3000:])


# ---------------------------------------------------------------------------------------------------
# Processes


def _pid_of(node: Node) -> int | None:
    """The pid of this node's running JVM, verified against /proc so a stale pid file never matches."""
    try:
        pid = int(node.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if str(node.properties).encode() in cmdline and b"kafka.Kafka" in cmdline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        return None if state == "Z" else pid
    return None


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running_nodes(cluster: LocalCluster) -> dict[int, int]:
    """node id -> pid for every node whose JVM is alive."""
    return {n.node_id: pid for n in cluster.nodes if (pid := _pid_of(n)) is not None}


def spawn(cluster: LocalCluster, *, detach: bool, say: Callable[[str], None] = log.info,
          preexec_fn: Callable[[], None] | None = None) -> list[subprocess.Popen[bytes]]:
    """Start every node that is not running yet; returns the new processes (does not wait for health)."""
    libs = resolve_jars(cluster, say)
    _prepare(cluster, libs)
    started = []
    for node in cluster.nodes:
        if _pid_of(node) is not None:
            continue
        for port in (node.port, node.controller_port):
            if _port_open(port):
                raise LocalKafkaError(f"port {port} on 127.0.0.1 is taken by another process; stop it or "
                                      "choose other ports with MAPLE_KAFKA_PORT / MAPLE_KAFKA_CONTROLLER_PORT")
        cmd = _java_base(cluster, node, libs) + ["kafka.Kafka", str(node.properties)]
        with open(node.jvm_output, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=detach, preexec_fn=preexec_fn, cwd=node.directory)
        node.pid_file.write_text(f"{proc.pid}\n")
        say(f"kafka node {node.node_id} started (pid {proc.pid}) on 127.0.0.1:{node.port}, log {node.log_file}")
        started.append(proc)
    return started


def wait_healthy(cluster: LocalCluster, timeout: float) -> None:
    """Return once a record can be produced (acks=all) and consumed; raise with the broker log tail if not."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    misses: dict[int, int] = {}
    while time.monotonic() < deadline:
        for n in cluster.nodes:
            misses[n.node_id] = 0 if _pid_of(n) is not None else misses.get(n.node_id, 0) + 1
        # Two misses in a row, half a second apart: a JVM that is really gone, not one caught mid-exec.
        dead = [n for n in cluster.nodes if misses[n.node_id] >= 2]
        if dead:
            raise LocalKafkaError(f"kafka node {dead[0].node_id} exited during start-up; last lines of "
                                  f"{dead[0].log_file}:\n{_tail(dead[0])}")
        try:
            kafka_clients.probe(cluster.bootstrap, timeout=min(10.0, max(1.0, deadline - time.monotonic())))
            return
        except RuntimeError as exc:
            last = str(exc)
            time.sleep(0.5)
    raise LocalKafkaError(f"local Kafka did not become healthy in {timeout:.0f}s: {last}")


def _tail(node: Node, lines: int = 20) -> str:
    for path in (node.log_file, node.jvm_output):
        if path.exists():
            text = path.read_text(errors="replace").splitlines()
            if text:
                return "\n".join(text[-lines:])
    return "(no log output)"


def start(settings: Settings, say: Callable[[str], None] = log.info) -> str:
    """Start the local cluster detached from this process (for `maple kafka start`); returns bootstrap."""
    cluster = LocalCluster(settings)
    spawn(cluster, detach=True, say=say)
    wait_healthy(cluster, settings.kafka.start_timeout_s)
    return cluster.bootstrap


def stop(settings: Settings, timeout: float = 60.0, say: Callable[[str], None] = log.info) -> int:
    """Stop every running node: SIGTERM (controlled shutdown), SIGKILL after `timeout`. Idempotent.

    Returns how many nodes were stopped.
    """
    cluster = LocalCluster(settings)
    pids = running_nodes(cluster)
    for pid in pids.values():
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running_nodes(cluster):
        time.sleep(0.2)
    for node_id, pid in running_nodes(cluster).items():
        say(f"kafka node {node_id} did not stop within {timeout:.0f}s; killing pid {pid}")
        _signal(pid, signal.SIGKILL)
    for node in cluster.nodes:
        if node.node_id in pids:
            node.pid_file.unlink(missing_ok=True)
            say(f"kafka node {node.node_id} stopped")
    return len(pids)


def kill(settings: Settings, node_ids: list[int] | None = None, timeout: float = 30.0) -> list[int]:
    """kill -9 the given nodes (default: all): no controlled shutdown, as a crashed host or an OOM kill.

    For fault injection (tests, `maple bench chaos`). Waits until the JVMs are gone and reaps them when
    they are this process's children; returns the node ids killed. `start` brings them back with their data."""
    cluster = LocalCluster(settings)
    pids = {n: p for n, p in running_nodes(cluster).items() if node_ids is None or n in node_ids}
    for pid in pids.values():
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break  # our child, now reaped
            except ChildProcessError:
                pass  # not our child: its parent reaps it
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                break
            time.sleep(0.05)
    for node in cluster.nodes:
        if node.node_id in pids:
            node.pid_file.unlink(missing_ok=True)
    return sorted(pids)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def status(settings: Settings) -> list[dict[str, object]]:
    """One row per node: id, port, pid (or None) and whether its client port answers."""
    cluster = LocalCluster(settings)
    return [{"node": n.node_id, "port": n.port, "pid": _pid_of(n), "listening": _port_open(n.port),
             "log": str(n.log_file)} for n in cluster.nodes]
